"""The stand-in device plugin endpoint: with no endpoint of ours streaming (every pool served
through DRA), a short-lived endpoint with no devices registers so that the kubelet's device
manager rewrites its checkpoint (it does after every list it gets) without the grants of
pods that ended. It is no pool: it allocates nothing, does not count for ``/readyz`` or the
pool metrics, and is gone (socket removed) once the kubelet took its list, after its time,
or when the daemon stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from daemon_kit import ALL_DPDK, ALL_NET, CONFIG, NET, free_port, http_get
from test_breakit4 import _stale_checkpoint
from test_dra_daemon import Apiserver, dra_daemon, dra_settings, emulator, published

from sriovdp.daemon.endpoints import EndpointSet
from sriovdp.daemon.supervisor import Supervisor
from sriovdp.kubelet.api import deviceplugin_pb2 as pb, deviceplugin_pb2_grpc as pb_grpc
from sriovdp.kubelet.endpoint import KubeletDirs, State
from sriovdp.model.config import parse_config
from sriovdp.model.devices import HostFacts
from sriovdp.model.diff import PoolChanges
from sriovdp.model.dra.modes import DraMode
from sriovdp.model.pools import ResourcePool
from sriovdp.testing import eventually
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator
from sriovdp.testing.podresources import FakePodResources

DEV = sorted(ALL_NET)[0]
STANDIN_LOG = "opening a stand-in device plugin endpoint"


def _all_dra(workdir: Path, host: FakeHost, **extra: Any) -> Any:
    return replace(dra_settings(workdir, host, CONFIG, **extra), dra=DraMode.ALL)


def _pool(name: str = "net") -> ResourcePool:
    config = parse_config(f'{{"resourceList": [{{"resourceName": "{name}", "selectors": '
                          '[{"drivers": ["iavf"]}]}]}').resources[0]
    return ResourcePool(config=config, prefix="intel.com")


@contextlib.asynccontextmanager
async def endpoint_set(dp: Path, *, timeout: float = 10.0) -> AsyncIterator[EndpointSet]:
    """An EndpointSet in socket mode on ``dp`` (no registry dir)."""
    dirs = KubeletDirs.detect(dp, dp.parent / "no-registry")
    async with Supervisor() as supervisor:
        endpoints = EndpointSet(dirs, supervisor, HostFacts, on_allocate=lambda *a: None,
                                cdi=False, standin_timeout=timeout)
        try:
            yield endpoints
        finally:
            await endpoints.stop_all()


def _added(pool: ResourcePool) -> PoolChanges:
    return PoolChanges(added={pool.resource_name: pool}, updated={}, removed=frozenset())


async def _allocate(socket: Path, ids: list[str]) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
        try:
            await pb_grpc.DevicePluginStub(channel).Allocate(pb.AllocateRequest(
                container_requests=[pb.ContainerAllocateRequest(devices_ids=ids)]), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


# --- the stand-in's life ---------------------------------------------------------------------


async def test_a_vf_of_an_ended_pod_is_published_when_every_pool_is_dra_in_watcher_mode(
        workdir: Path, host: FakeHost) -> None:
    """The kubelet's plugin watcher registers the stand-in from the registry dir (where the
    DRA plugin's socket is too)."""
    settings = _all_dra(workdir, host)
    settings.plugins_registry_dir.mkdir()
    api = Apiserver()
    kubelet = KubeletEmulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                              watcher=True)
    async with kubelet:
        _stale_checkpoint(kubelet, NET, DEV)
        async with dra_daemon(settings, api, CONFIG, pods=FakePodResources()) as daemon:
            assert daemon.dirs.mode == "watcher"
            await published(api, ALL_NET - {DEV} | ALL_DPDK, "the free VFs")
            await eventually(lambda: DEV in api.ids(), timeout=10,
                             what=f"{DEV} published once the kubelet rewrote its file")
            assert [r.mode for r in kubelet.registrations if r.resource == NET] == ["watcher"]
            assert kubelet.streams[NET] == [[]], "one empty list, nothing else"
            await eventually(lambda: not (settings.plugins_registry_dir
                                          / "intel.com_net.sock").exists(),
                             what="the stand-in's socket removed")


async def test_no_stand_in_is_opened_when_a_device_plugin_endpoint_can_resend(
        workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    """``--dra`` with the net pool marked: dpdk is still a device plugin pool, and its lists
    (the first, or one sent again) make the kubelet rewrite the file."""
    config: dict[str, Any] = {"resourceList": [dict(CONFIG["resourceList"][0], dra=True),
                                               CONFIG["resourceList"][1]]}
    settings = dra_settings(workdir, host, config)
    api = Apiserver()
    caplog.set_level(logging.INFO, "sriovdp")
    async with emulator(settings) as kubelet:
        _stale_checkpoint(kubelet, NET, DEV)
        async with dra_daemon(settings, api, config, pods=FakePodResources()):
            await eventually(lambda: DEV in api.ids(), timeout=10,
                             what=f"{DEV} published once the kubelet rewrote its file")
    assert NET not in kubelet.streams
    assert STANDIN_LOG not in caplog.text


async def test_stand_ins_follow_the_back_off_when_a_live_grant_stays_in_every_rewrite(
        workdir: Path, host: FakeHost) -> None:
    """A live plain init container's grant (pod resources never lists it) stays in every
    file the kubelet writes: stand-ins come again only after the rewrite back-off (2 s,
    4 s, ... up to 5 min), never at each hold poll (2 s)."""
    settings = _all_dra(workdir, host)
    api = Apiserver()
    kubelet = emulator(settings)
    _stale_checkpoint(kubelet, NET, DEV)  # read back at the kubelet's start: its pod lives
    async with kubelet, dra_daemon(settings, api, CONFIG, pods=FakePodResources()) as daemon:
        standins = daemon._endpoints
        await eventually(lambda: standins.standins >= 1, timeout=10, what="a stand-in")
        await asyncio.sleep(9)  # stand-ins due at 0, 2 and 6 s; at each poll: 5 or more
        assert 1 <= standins.standins <= 3
        assert DEV not in api.ids(), "the init container's pod still holds it"
        assert kubelet.allocations("ended"), "the kubelet kept the live grant"


async def test_a_stand_in_is_no_pool_and_refuses_allocate_while_it_waits_for_the_kubelet(
        workdir: Path, host: FakeHost) -> None:
    """No kubelet listens yet: the stand-in serves its socket and waits. ``/readyz`` and
    the pool metrics do not show it; an Allocate of any id gets a clear refusal; the
    daemon's stop removes its socket."""
    port = free_port()
    settings = _all_dra(workdir, host, health_address=f"127.0.0.1:{port}",
                        metrics_address=f"127.0.0.1:{port}")
    _stale_checkpoint(KubeletEmulator(settings.device_plugin_dir), NET, DEV)
    socket = settings.device_plugin_dir / "intel.com_net.sock"
    async with dra_daemon(settings, Apiserver(), CONFIG, pods=FakePodResources()) as daemon:
        await eventually(socket.exists, timeout=10, what="the stand-in's socket")
        assert daemon._endpoints.standin is not None
        assert not daemon.endpoints
        reasons = " ".join(daemon.status().not_ready())
        assert "stand-in" not in reasons and NET not in reasons, reasons
        _, metrics = await http_get(port, "/metrics")
        assert f'sriovdp_pool_registered{{resource="{NET}"}}' not in metrics
        assert f'sriovdp_pool_info{{resource="{NET}",served="dra"}} 1.0' in metrics
        assert await _allocate(socket, [DEV]) == grpc.StatusCode.INVALID_ARGUMENT
    assert not socket.exists(), "the daemon's stop removed the stand-in's socket"


# --- the EndpointSet's mechanics --------------------------------------------------------------


async def test_a_stand_in_registers_one_empty_list_and_stops_when_the_kubelet_took_it(
        workdir: Path) -> None:
    dp = workdir / "dp"
    dp.mkdir()
    async with KubeletEmulator(dp) as kubelet, endpoint_set(dp) as endpoints:
        assert endpoints.stand_in(_pool(), "test") == NET
        assert endpoints.stand_in(_pool("dpdk"), "test") == NET, "one at a time"
        await eventually(lambda: endpoints.standin is None, timeout=10, what="stopped")
        assert kubelet.streams[NET] == [[]]
        assert not kubelet.is_connected(NET)
        assert kubelet.checkpoint_path.exists(), "the kubelet wrote its file"
        assert not (dp / "intel.com_net.sock").exists()
        assert endpoints.standins == 1 and not endpoints.endpoints


async def test_a_stand_in_stops_after_its_time_when_no_kubelet_takes_its_list(
        workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    dp = workdir / "dp"
    dp.mkdir()
    async with endpoint_set(dp, timeout=0.3) as endpoints:
        endpoints.stand_in(_pool(), "test")
        await eventually((dp / "intel.com_net.sock").exists, what="served")
        await eventually(lambda: endpoints.standin is None, timeout=5, what="stopped")
        assert not (dp / "intel.com_net.sock").exists()
    assert "did not take the stand-in's list" in caplog.text


async def test_no_stand_in_is_opened_for_the_resource_of_a_pool_endpoint(workdir: Path) -> None:
    dp = workdir / "dp"
    dp.mkdir()
    async with endpoint_set(dp) as endpoints:
        pool = _pool()
        endpoints.publish({NET: pool}, _added(pool))
        assert endpoints.stand_in(pool, "test") is None
        assert endpoints.standin is None and endpoints.standins == 0


async def test_a_pool_added_under_the_stand_ins_resource_takes_its_socket_over(
        workdir: Path) -> None:
    """A reload makes the stand-in's resource a device plugin pool again: the stand-in
    stops and the pool's endpoint serves the socket."""
    dp = workdir / "dp"
    dp.mkdir()
    async with endpoint_set(dp) as endpoints:
        endpoints.stand_in(_pool(), "test")
        await eventually((dp / "intel.com_net.sock").exists, what="the stand-in serves")
        pool = _pool()
        endpoints.publish({NET: pool}, _added(pool))
        await eventually(lambda: endpoints.standin is None, timeout=5, what="stand-in stopped")
        await eventually(lambda: endpoints.endpoints[NET].state is State.REGISTERING,
                         timeout=5, what="the pool's endpoint owns the socket")
        assert (dp / "intel.com_net.sock").exists()
