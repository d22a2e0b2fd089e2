"""Break-it pass 6 against the kubelet's own device manager: the allocation log
(``.sriovdp-allocations``) a restarted daemon reads to hold what its predecessor allocated
while the admission still waits on another plugin. Each test reproduced a defect of that
pass and passes since its fix."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from nodekit import POOLS, Node
from slowplugin import SlowPlugin
from test_breakit2_real_kubelet import _offered, _second_pod_gets
from test_breakit4_real_kubelet import SLOW, _init_container_allocated_before_a_slow_plugin
from test_real_kubelet import DPDK, NET, _move_one_net_vf_to_a_new_pool

from sriovdp.host.allocationlog import FILE_NAME
from sriovdp.kubelet.api import deviceplugin_pb2 as pb


async def test_an_init_container_vf_is_never_offered_by_a_new_pool_when_the_allocation_log_was_removed_under_the_daemon(  # noqa: E501
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        proc = await node.start_daemon("--resync-interval", "1")
        await kubelet.wait_allocatable(POOLS, timeout=20)
        async with SlowPlugin(node.device_plugin_dir, SLOW, delay=6.0) as slow:
            await kubelet.wait_allocatable({SLOW: 4}, timeout=10)
            await kubelet.admit("warm", {"c0": {DPDK: 1}})  # the daemon opens its log
            (node.device_info_dir / FILE_NAME).unlink()
            uid, dev, admit = await _init_container_allocated_before_a_slow_plugin(
                node, kubelet, slow)
            await node.stop_daemon(proc)
            other = _move_one_net_vf_to_a_new_pool(node, dev)  # rolled out by the restart
            await node.start_daemon("--resync-interval", "1")
            offered = await _offered(kubelet, other, dev, timeout=4)
            await admit  # the kubelet writes its checkpoint now, with the VF
            await asyncio.sleep(2.5)
            got = await _second_pod_gets(kubelet, other)
            assert (await kubelet.devices(uid, "setup"))[NET] == [dev]
            assert dev not in got, f"{dev} given to two pods ({uid} via {NET}, second via {other})"
            assert not offered, f"{other} offered {dev} Healthy while pod {uid} holds it"


class _SlowAfterNet(SlowPlugin):
    """Slow (``delay`` s) only when the kubelet allocated the VF first (its device-info file
    is there), else at once: the retries of the random Go map order cost nothing."""

    def __init__(self, node: Node, *, delay: float) -> None:
        super().__init__(node.device_plugin_dir, SLOW, delay=delay)
        self._devinfo = node.device_info_dir

    async def Allocate(self, request: Any, context: Any) -> Any:  # noqa: N802
        slow = any(self._devinfo.glob("*-device.json"))
        self.called.set()
        await asyncio.sleep(self.delay if slow else 0.0)
        return pb.AllocateResponse(container_responses=[
            pb.ContainerAllocateResponse() for _ in request.container_requests])


async def test_an_init_container_vf_is_never_offered_by_a_new_pool_when_another_plugin_is_slower_than_the_grace(  # noqa: E501
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon("--resync-interval", "1")
        await kubelet.wait_allocatable(POOLS, timeout=20)
        async with _SlowAfterNet(node, delay=70.0) as slow:
            await kubelet.wait_allocatable({SLOW: 4}, timeout=10)
            uid, dev, admit = await _init_container_allocated_before_a_slow_plugin(
                node, kubelet, slow)
            await asyncio.sleep(61.0)  # past the daemon's allocation grace (60 s)
            other = _move_one_net_vf_to_a_new_pool(node, dev)
            offered = await _offered(kubelet, other, dev, timeout=4)
            await admit  # the kubelet has the grant in its file since the new pool came
            await asyncio.sleep(2.5)  # a resync and a hold poll's time to see it
            got = await _second_pod_gets(kubelet, other)
            assert (await kubelet.devices(uid, "setup"))[NET] == [dev]
            assert dev not in got, f"{dev} given to two pods ({uid} via {NET}, second via {other})"
            assert not offered, f"{other} offered {dev} Healthy while pod {uid} holds it"
