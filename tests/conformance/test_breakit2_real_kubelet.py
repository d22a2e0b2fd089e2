"""Break-it pass 2 against the kubelet's own device manager and pod resources server.

A real kubelet serves the pod resources API as soon as it starts (``ListenAndServePodResources``
runs beside ``Run``), before its pod manager has the pods from the API server: for that
window ``List`` answers with no pods at all, although the device manager's checkpoint still
assigns their devices. The peer below starts the manager and the pod resources server first
and gets the pods later (``add_pods``), as that kubelet does.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from nodekit import POOLS, Node
from test_real_kubelet import NET, _move_one_net_vf_to_a_new_pool

from sriovdp.kubelet.checkpoint import CHECKPOINT_NAME, KubeletCheckpoint
from sriovdp.testing.realkubelet import PeerError, RealKubelet

#: The daemon's own pod, as the DaemonSet's downward API tells it (POD_NAMESPACE/POD_NAME):
#: a pod resources answer without it comes from a kubelet whose pods have not arrived yet.
OWN_POD = {"POD_NAMESPACE": "kube-system", "POD_NAME": "sriovdp-x7k2p"}


async def _admit_own_pod(kubelet: RealKubelet) -> None:
    await kubelet.admit("sriovdp-uid", {"sriovdp": {}}, name=OWN_POD["POD_NAME"],
                        namespace=OWN_POD["POD_NAMESPACE"])


async def _restart_with_pods_late(kubelet: RealKubelet) -> None:
    """Kubelet restart in the order a real kubelet comes up: device manager (checkpoint
    read) and pod resources server first, the API server's pods later (see
    :func:`_pods_arrive`)."""
    proc = kubelet._proc
    assert proc is not None
    proc.terminate()
    await proc.wait()
    await kubelet._spawn()
    await kubelet._call(
        "start", device_plugin_dir=str(kubelet.device_plugin_dir),
        plugins_registry=str(kubelet.plugins_registry) if kubelet.plugins_registry else "",
        pod_resources=str(kubelet.pod_resources) if kubelet.pod_resources else "",
        numa_nodes=list(kubelet.numa_nodes), pods_late=True)


async def _pods_arrive(kubelet: RealKubelet) -> None:
    await kubelet._call("add_pods", pods=list(kubelet._pods.values()))


async def _offered(kubelet: RealKubelet, resource: str, dev: str, timeout: float) -> bool:
    """Does ``resource`` become allocatable with ``dev`` within ``timeout`` seconds?"""
    with contextlib.suppress(TimeoutError):
        await kubelet.wait_allocatable({resource: 1}, timeout=timeout)
    devices = await kubelet.allocatable_devices()
    return dev in [d["id"] for d in devices.get(resource, [])]


async def _second_pod_gets(kubelet: RealKubelet, resource: str) -> list[str]:
    try:
        pod = await kubelet.admit("second", {"c0": {resource: 1}})
    except PeerError:
        return []
    return list(pod["c0"]["devices"].get(resource, []))


async def _held_by_one_pod_only(kubelet: RealKubelet, dev: str, other: str, offered: bool, *,
                                holder: tuple[str, str]) -> None:
    """The verdict: ``dev`` stays with ``holder`` (pod uid, container), a second pod asking
    ``other`` does not get it, and ``other`` never offered it Healthy meanwhile."""
    got = await _second_pod_gets(kubelet, other)
    pod, container = holder
    assert await kubelet.devices(pod, container) == {NET: [dev]}
    assert dev not in got, f"{dev} given to two pods ({pod} via {NET}, second via {other})"
    assert not offered, f"{other} offered {dev} Healthy while pod {pod} holds it"


async def test_a_kept_vf_is_never_offered_by_its_new_pool_when_the_kubelet_restarts_pods_late(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await _admit_own_pod(kubelet)
        await node.start_daemon("--resync-interval", "1", "--kubelet-settle", "10", env=OWN_POD)
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("busy", {"c0": {NET: 1}})
        (dev,) = pod["c0"]["devices"][NET]
        other = _move_one_net_vf_to_a_new_pool(node, dev)
        await kubelet.wait_allocatable({NET: 4, other: 0}, timeout=10)  # kept in net
        await _restart_with_pods_late(kubelet)
        # the daemon polls pod resources every 2 s while it keeps dev out of `other`
        offered = await _offered(kubelet, other, dev, timeout=6)
        await _pods_arrive(kubelet)
        await _held_by_one_pod_only(kubelet, dev, other, offered, holder=("busy", "c0"))


async def test_a_held_vf_is_never_offered_by_a_new_pool_when_both_restart_and_pods_sync_late(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await _admit_own_pod(kubelet)
        proc = await node.start_daemon("--kubelet-settle", "10", env=OWN_POD)
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("busy", {"c0": {NET: 1}})
        (dev,) = pod["c0"]["devices"][NET]
        await node.stop_daemon(proc)
        other = _move_one_net_vf_to_a_new_pool(node, dev)  # rolled out by the restart
        await _restart_with_pods_late(kubelet)
        await node.start_daemon("--kubelet-settle", "10", env=OWN_POD)
        offered = await _offered(kubelet, other, dev, timeout=8)
        await _pods_arrive(kubelet)
        await asyncio.sleep(0.5)
        await _held_by_one_pod_only(kubelet, dev, other, offered, holder=("busy", "c0"))


async def _admit_init_only(node: Node, kubelet: RealKubelet) -> str:
    """The daemon serves the kubelet, and a pod whose plain init container alone asks for a
    VF is admitted (pod resources ``List`` reports app and sidecar containers only,
    podresources/server_v1.go): its VF."""
    await node.start_daemon("--resync-interval", "1")
    await kubelet.wait_allocatable(POOLS, timeout=20)
    spec = {"uid": "init", "name": "init", "namespace": "default",
            "init_containers": [{"name": "setup", "resources": {NET: 1}}],
            "containers": [{"name": "c0", "resources": {}}]}
    pod = await kubelet._call("admit", pod=spec)
    kubelet._pods["init"] = spec
    (dev,) = pod["containers"]["setup"]["devices"][NET]
    return str(dev)


async def test_a_vf_held_by_an_init_container_is_never_offered_by_a_new_pool_when_a_reload_moves_it(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        dev = await _admit_init_only(node, kubelet)
        other = _move_one_net_vf_to_a_new_pool(node, dev)  # a live reload
        offered = await _offered(kubelet, other, dev, timeout=6)
        await _held_by_one_pod_only(kubelet, dev, other, offered, holder=("init", "setup"))


async def test_a_vf_held_by_an_init_container_joins_its_new_pool_when_the_kubelet_drops_the_pod(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        dev = await _admit_init_only(node, kubelet)
        granted = KubeletCheckpoint(kubelet.device_plugin_dir / CHECKPOINT_NAME).granted()
        assert granted == {NET: {dev: "init"}}  # the real device manager's file, parsed
        other = _move_one_net_vf_to_a_new_pool(node, dev)
        await _registered(kubelet, other)
        assert not await _offered(kubelet, other, dev, timeout=3)
        # the pod ended: the kubelet forgets it but its file keeps the entry until the next
        # write, which the daemon asks for by resending a device list; nothing is admitted
        await kubelet._call("remove", uid="init")
        kubelet._pods.pop("init")
        assert await _offered(kubelet, other, dev, timeout=15)
        assert KubeletCheckpoint(kubelet.device_plugin_dir / CHECKPOINT_NAME).granted() == {}


async def _registered(kubelet: RealKubelet, resource: str) -> None:
    """Wait until ``resource`` is registered (the daemon applied the reload)."""
    for _ in range(200):
        if resource in (await kubelet.capacity())[0]:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{resource} never registered")


async def _own_pod_first(node: Node, peer_binary: Path, *, api_server_late: float) -> None:
    """The kubelet restarts with a kept VF; ``api_server_late`` seconds after its start the
    API server's pods reach it and it adds them one by one in creation order: the daemon's
    own pod (older) first, then, after the admissions in between (held open here for the
    2 s hold poll), the pod holding the VF."""
    async with node.kubelet(peer_binary) as kubelet:
        await _admit_own_pod(kubelet)  # the DaemonSet pod is older than the workload
        await node.start_daemon("--resync-interval", "1", "--kubelet-settle", "10",
                                env=OWN_POD)
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("busy", {"c0": {NET: 1}})
        (dev,) = pod["c0"]["devices"][NET]
        other = _move_one_net_vf_to_a_new_pool(node, dev)
        await _registered(kubelet, other)
        await kubelet.wait_allocatable({NET: 4, other: 0}, timeout=10)  # kept in net
        await _restart_with_pods_late(kubelet)
        await asyncio.sleep(api_server_late)
        await kubelet._call("add_pods", pods=[kubelet._pods["sriovdp-uid"]], pods_late=True)
        offered = await _offered(kubelet, other, dev, timeout=6)
        await _pods_arrive(kubelet)
        await _held_by_one_pod_only(kubelet, dev, other, offered, holder=("busy", "c0"))


async def test_a_kept_vf_is_never_offered_by_its_new_pool_when_the_own_pod_arrives_first(
    node: Node, peer_binary: Path
) -> None:
    await _own_pod_first(node, peer_binary, api_server_late=0.0)


async def test_a_kept_vf_is_never_offered_by_its_new_pool_when_pods_arrive_after_the_settle(
    node: Node, peer_binary: Path
) -> None:
    await _own_pod_first(node, peer_binary, api_server_late=11.0)


async def test_a_held_vf_is_never_offered_by_a_new_pool_when_a_reload_meets_a_young_kubelet(
    node: Node, peer_binary: Path
) -> None:
    """A pod got its VF through the daemon and nothing asked pod resources since; the
    kubelet restarts and, while it adds its pods (the daemon's own first), a reload moves
    the VF to a new pool."""
    async with node.kubelet(peer_binary) as kubelet:
        await _admit_own_pod(kubelet)
        await node.start_daemon("--resync-interval", "1", "--kubelet-settle", "10",
                                env=OWN_POD)
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("busy", {"c0": {NET: 1}})
        (dev,) = pod["c0"]["devices"][NET]
        await asyncio.sleep(1.5)  # past the allocation grace; nothing asks meanwhile
        await _restart_with_pods_late(kubelet)
        await kubelet._call("add_pods", pods=[kubelet._pods["sriovdp-uid"]], pods_late=True)
        other = _move_one_net_vf_to_a_new_pool(node, dev)
        offered = await _offered(kubelet, other, dev, timeout=6)
        await _pods_arrive(kubelet)
        await _held_by_one_pod_only(kubelet, dev, other, offered, holder=("busy", "c0"))
