"""Break-it pass 4 on the holds read from the kubelet's device checkpoint, against the
kubelet's own device manager and pod resources server.

Each test reproduced a defect of that pass and passes since its fix; a strict xfail names
what is still open.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from nodekit import POOLS, Node
from slowplugin import SlowPlugin
from test_breakit2_real_kubelet import _offered, _second_pod_gets
from test_real_kubelet import DPDK, NET, _move_one_net_vf_to_a_new_pool

from sriovdp.testing.realkubelet import RealKubelet

SLOW = "example.com/slow"


def _net_info_files(node: Node) -> set[str]:
    """VFs whose device-info file the daemon wrote (it does so in Allocate)."""
    prefix = "intel.com-intel_sriov_netdevice-"
    return {p.name[len(prefix):-len("-device.json")]
            for p in node.device_info_dir.glob(f"{prefix}*-device.json")}


async def _init_container_allocated_before_a_slow_plugin(
        node: Node, kubelet: RealKubelet, slow: SlowPlugin) -> tuple[str, str, asyncio.Task[Any]]:
    """Admit pods whose plain init container asks for a VF and a device of ``slow`` until
    the kubelet allocates the VF first (it walks the container's limits, a Go map, in
    random order); returns (pod uid, VF, the admission still waiting on ``slow``)."""
    for attempt in range(10):
        for f in node.device_info_dir.glob("*-device.json"):
            f.unlink()
        uid = f"init-{attempt}"
        spec = {"uid": uid, "name": uid, "namespace": "default",
                "init_containers": [{"name": "setup", "resources": {NET: 1, SLOW: 1}}],
                "containers": [{"name": "c0", "resources": {}}]}
        slow.called.clear()
        admit = asyncio.create_task(kubelet._call("admit", pod=spec))
        await asyncio.wait_for(slow.called.wait(), 10)
        allocated = _net_info_files(node)
        if allocated:
            kubelet._pods[uid] = spec
            (dev,) = allocated
            return uid, dev, admit
        await admit  # the slow plugin came first: the VF's grant is written at once
        await kubelet._call("remove", uid=uid)
        # an admission writes the file without the removed pod (else its stale entry
        # would hold the next attempt's VF, the same one)
        await kubelet.admit(f"flush-{attempt}", {"c0": {DPDK: 1}})
        await kubelet.remove(f"flush-{attempt}")
    raise AssertionError("the kubelet never allocated the VF first in 10 pods")


async def test_an_init_container_vf_is_never_offered_by_a_new_pool_when_another_plugin_is_slow(
    node: Node, peer_binary: Path
) -> None:
    """A pod's plain init container asks for a VF and another vendor's device whose
    Allocate takes 4 s. A reload moving the VF to a new pool lands in between."""
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon("--resync-interval", "1")
        await kubelet.wait_allocatable(POOLS, timeout=20)
        async with SlowPlugin(node.device_plugin_dir, SLOW, delay=4.0) as slow:
            await kubelet.wait_allocatable({SLOW: 4}, timeout=10)
            uid, dev, admit = await _init_container_allocated_before_a_slow_plugin(
                node, kubelet, slow)
            await asyncio.sleep(1.3)  # past the daemon's allocation grace
            other = _move_one_net_vf_to_a_new_pool(node, dev)
            await admit  # the kubelet writes its checkpoint now, with the VF
            offered = await _offered(kubelet, other, dev, timeout=4)
            got = await _second_pod_gets(kubelet, other)
            assert (await kubelet.devices(uid, "setup"))[NET] == [dev]
            assert dev not in got, f"{dev} given to two pods ({uid} via {NET}, second via {other})"
            assert not offered, f"{other} offered {dev} Healthy while pod {uid} holds it"
