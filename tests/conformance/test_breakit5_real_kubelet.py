"""Break-it pass 5 against the kubelet's own device manager and pod resources server: ways
one VF reached two pods. Each test reproduced a defect of that pass and passes since its fix.

A real kubelet serves pod resources as soon as it starts (``ListenAndServePodResources``
beside ``Run``), but its device manager starts only once the container runtime is up
(``initializeRuntimeDependentModules``): until then the manager has not read its checkpoint
(``GetDevices`` answers nothing) and ``kubelet.sock`` is still the file the killed kubelet
left behind. The peer's ``devices_late_ms`` serves pod resources that long before the
manager starts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from nodekit import POOLS, Node
from slowplugin import SlowPlugin
from test_breakit2_real_kubelet import (
    OWN_POD,
    _admit_own_pod,
    _held_by_one_pod_only,
    _offered,
    _second_pod_gets,
)
from test_breakit4_real_kubelet import SLOW, _init_container_allocated_before_a_slow_plugin
from test_real_kubelet import NET, _move_one_net_vf_to_a_new_pool

from sriovdp.testing.realkubelet import RealKubelet


async def _restart_with_devices_late(kubelet: RealKubelet, late_ms: int) -> None:
    """Kubelet restart with the API server's pods in time but the device manager
    ``late_ms`` late (the container runtime slow to answer): pod resources answers list
    the pods without their devices meanwhile."""
    proc = kubelet._proc
    assert proc is not None
    proc.terminate()
    await proc.wait()
    await kubelet._spawn()
    await kubelet._call("add_pods", pods=list(kubelet._pods.values()))
    await kubelet._call(
        "start", device_plugin_dir=str(kubelet.device_plugin_dir),
        plugins_registry=str(kubelet.plugins_registry) if kubelet.plugins_registry else "",
        pod_resources=str(kubelet.pod_resources) if kubelet.pod_resources else "",
        numa_nodes=list(kubelet.numa_nodes), devices_late_ms=late_ms)


async def test_a_kept_vf_is_never_offered_by_its_new_pool_when_the_kubelet_restarts_devices_late(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await _admit_own_pod(kubelet)
        await node.start_daemon("--kubelet-settle", "10", env=OWN_POD)
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("busy", {"c0": {NET: 1}})
        (dev,) = pod["c0"]["devices"][NET]
        other = _move_one_net_vf_to_a_new_pool(node, dev)
        await kubelet.wait_allocatable({NET: 4, other: 0}, timeout=10)  # kept in net
        await asyncio.sleep(3)  # a hold poll: List shows busy's grant (no longer our own)
        await _restart_with_devices_late(kubelet, 5000)  # two hold polls meanwhile
        offered = await _offered(kubelet, other, dev, timeout=6)
        await _held_by_one_pod_only(kubelet, dev, other, offered, holder=("busy", "c0"))


async def test_an_init_container_vf_is_never_offered_by_a_new_pool_when_the_daemon_restarts_mid_admission(  # noqa: E501
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        proc = await node.start_daemon("--resync-interval", "1")
        await kubelet.wait_allocatable(POOLS, timeout=20)
        async with SlowPlugin(node.device_plugin_dir, SLOW, delay=6.0) as slow:
            await kubelet.wait_allocatable({SLOW: 4}, timeout=10)
            uid, dev, admit = await _init_container_allocated_before_a_slow_plugin(
                node, kubelet, slow)
            await node.stop_daemon(proc)
            other = _move_one_net_vf_to_a_new_pool(node, dev)  # rolled out by the restart
            await node.start_daemon("--resync-interval", "1")
            offered = await _offered(kubelet, other, dev, timeout=4)
            await admit  # the kubelet writes its checkpoint now, with the VF
            await asyncio.sleep(2.5)  # a resync and a hold poll's time to see it
            got = await _second_pod_gets(kubelet, other)
            assert (await kubelet.devices(uid, "setup"))[NET] == [dev]
            assert dev not in got, f"{dev} given to two pods ({uid} via {NET}, second via {other})"
            assert not offered, f"{other} offered {dev} Healthy while pod {uid} holds it"
