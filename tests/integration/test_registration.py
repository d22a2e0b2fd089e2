"""Who may make a pool re-register: kubelet restarts in watcher mode, clients that are not
the kubelet, and spoofed registration status (issue 8, issue 11 item 11)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from daemon_kit import ALL_NET, DPDK, NET, running, settings_for

from sriovdp.kubelet.api import (
    deviceplugin_pb2 as pb,
    deviceplugin_pb2_grpc as pb_grpc,
    pluginregistration_pb2 as reg_pb,
    pluginregistration_pb2_grpc as reg_grpc,
)
from sriovdp.kubelet.endpoint import KubeletDirs, PluginEndpoint
from sriovdp.kubelet.feed import LatestValue
from sriovdp.kubelet.watch import watch_socket_dirs
from sriovdp.model.config import parse_config
from sriovdp.model.devices import HostFacts
from sriovdp.model.pools import ResourcePool
from sriovdp.testing import eventually
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator


def accepted(kubelet: KubeletEmulator, resource: str) -> int:
    return sum(1 for r in kubelet.registrations if r.resource == resource and r.accepted)


async def drop_stream(socket_path: Path) -> None:
    """What a probe or grpcurl does: open ListAndWatch, read the list, hang up."""
    async with grpc.aio.insecure_channel(f"unix://{socket_path}") as channel:
        call = pb_grpc.DevicePluginStub(channel).ListAndWatch(pb.Empty())
        await call.read()
        call.cancel()


@contextlib.asynccontextmanager
async def emulator(settings_dp: Path, reg: Path, watcher: bool) -> AsyncIterator[KubeletEmulator]:
    async with KubeletEmulator(settings_dp, reg if watcher else None, watcher=watcher) as k:
        yield k


# --- issue 8: watcher mode keeps its socket across a kubelet restart -------------------------


@pytest.mark.parametrize("downtime", [0.0, 0.3])
async def test_watcher_socket_is_kept_and_registered_again_when_the_kubelet_restarts(
    workdir: Path, host: FakeHost, downtime: float
) -> None:
    settings = settings_for(workdir, host, watcher=True)
    sock = settings.plugins_registry_dir / "intel.com_net.sock"
    async with KubeletEmulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                               watcher=True) as kubelet, running(settings) as daemon:
        await kubelet.wait_capacity(NET, (4, 4))
        await kubelet.wait_capacity(DPDK, (4, 4))
        inode = sock.stat().st_ino
        await kubelet.restart(downtime=downtime)
        for name in (NET, DPDK):
            await kubelet.wait_registered(name, count=2, timeout=5)
            await kubelet.wait_capacity(name, (4, 4), timeout=5)
        assert set(kubelet.devices(NET)) == ALL_NET
        assert sock.stat().st_ino == inode  # the same socket, never deleted
        assert kubelet.watcher_errors == []  # no GetInfo hit a missing socket
        assert daemon.endpoints[NET].restarts == 0


async def test_watcher_socket_is_kept_when_the_dying_kubelet_socket_accepts_for_a_moment(
    workdir: Path, host: FakeHost
) -> None:
    """A kubelet process that exits ends our streams a moment before its ``kubelet.sock``
    stops accepting connections (seen against the real kubelet): that is a kubelet going
    away, not one that keeps running, so the socket stays for the new plugin watcher."""
    settings = settings_for(workdir, host, watcher=True)
    sock = settings.plugins_registry_dir / "intel.com_net.sock"
    async with KubeletEmulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                               watcher=True) as kubelet, running(settings) as daemon:
        await kubelet.wait_capacity(NET, (4, 4))
        before = sock.stat().st_ino, sock.stat().st_ctime_ns
        await kubelet.restart(exit_lag=0.2)
        await kubelet.wait_registered(NET, count=2, timeout=5)
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        assert (sock.stat().st_ino, sock.stat().st_ctime_ns) == before
        assert kubelet.watcher_errors == []
        assert daemon.endpoints[NET].restarts == 0


async def test_watcher_socket_is_recreated_when_the_running_kubelet_ends_the_stream(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host, watcher=True)
    async with KubeletEmulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                               watcher=True) as kubelet, running(settings) as daemon:
        await kubelet.wait_capacity(NET, (4, 4))
        # the kubelet keeps running: its plugin watcher only registers a new socket again
        await kubelet.disconnect(NET)
        await kubelet.wait_registered(NET, count=2, timeout=5)
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        assert daemon.endpoints[NET].restarts == 1


# --- issue 11 item 11: only the registered kubelet's stream counts ---------------------------


@pytest.mark.parametrize("watcher", [False, True], ids=["socket", "watcher"])
async def test_pool_keeps_its_registration_when_other_clients_drop_listandwatch_streams(
    workdir: Path, host: FakeHost, watcher: bool
) -> None:
    settings = settings_for(workdir, host, watcher=watcher)
    async with emulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                        watcher) as kubelet, running(settings) as daemon:
        await kubelet.wait_capacity(NET, (4, 4))
        endpoint = daemon.endpoints[NET]
        for _ in range(20):
            await drop_stream(endpoint.socket_path)
        await asyncio.sleep(0.3)  # let the server see the last hang-up
        assert accepted(kubelet, NET) == 1
        assert endpoint.restarts == 0
        assert endpoint.streaming and daemon.is_ready
        # the kubelet's own stream is the same one and still gets updates
        host.bind("0000:3b:02.0", "vfio-pci", iommu_group=99)
        daemon.trigger("test: rebind")
        await kubelet.wait_for(NET, lambda d: "0000:3b:02.0" not in d, timeout=3)
        assert kubelet.capacity(NET) == (3, 3)
        assert accepted(kubelet, NET) == 1


async def test_pod_admissions_succeed_when_a_client_drops_streams_every_100ms(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, \
            running(settings) as daemon:
        await kubelet.wait_capacity(NET, (4, 4))
        socket_path = daemon.endpoints[NET].socket_path
        dropped = 0

        async def prober() -> None:
            nonlocal dropped
            for _ in range(30):  # bounded: about 3 s
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await drop_stream(socket_path)
                    dropped += 1
                await asyncio.sleep(0.1)  # paced: drops spread over the admissions

        probe = asyncio.create_task(prober())
        failures = []
        for i in range(30):
            try:
                await kubelet.admit(NET, 1, pod=f"pod-{i}")
            except Exception as exc:  # noqa: BLE001 - counted, reported below
                failures.append(repr(exc))
            kubelet.release(f"pod-{i}")
            await asyncio.sleep(0.1)  # paced: admissions spread over the drops
        await probe
        assert failures == []
        assert dropped == 30
        assert accepted(kubelet, NET) == 1 and daemon.endpoints[NET].restarts == 0


async def test_spoofed_registration_failure_is_ignored_when_the_pool_is_registered(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host, watcher=True)
    async with KubeletEmulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                               watcher=True) as kubelet, running(settings) as daemon:
        await kubelet.wait_capacity(NET, (4, 4))
        endpoint = daemon.endpoints[NET]
        async with grpc.aio.insecure_channel(f"unix://{endpoint.socket_path}") as channel:
            stub = reg_grpc.RegistrationStub(channel)
            await stub.NotifyRegistrationStatus(
                reg_pb.RegistrationStatus(plugin_registered=False, error="spoofed"))
            # nor does a GetInfo first make it credible while the kubelet streams
            await stub.GetInfo(reg_pb.InfoRequest())
            await stub.NotifyRegistrationStatus(
                reg_pb.RegistrationStatus(plugin_registered=False, error="spoofed"))
        await asyncio.sleep(1.5)  # a credible refusal re-registers after 1 s
        assert accepted(kubelet, NET) == 1
        assert endpoint.restarts == 0 and kubelet.capacity(NET) == (4, 4)


async def test_refused_watcher_registration_is_retried_when_the_kubelet_rejects_it_once(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host, watcher=True)
    async with KubeletEmulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                               watcher=True) as kubelet:
        kubelet.reject_next_registration("try later")
        async with running(settings):
            for name in (NET, DPDK):
                await kubelet.wait_registered(name, timeout=5)
                await kubelet.wait_capacity(name, (4, 4), timeout=5)
        assert [r.error for r in kubelet.registrations if not r.accepted] == [
            "RegisterPlugin error -- plugin registration failed with err: try later"]


# --- issue 11 item 4: a relocated kubelet root -----------------------------------------------


async def test_getinfo_reports_the_host_path_when_the_kubelet_root_is_relocated(
    workdir: Path, host: FakeHost
) -> None:
    # The kubelet runs with --root-dir=<workdir>/data-kubelet; this process sees its
    # plugins_registry at another path (a container's mount, here a symlink).
    settings = settings_for(workdir, host, watcher=True)
    root = workdir / "data-kubelet"
    root.mkdir()
    (root / "plugins_registry").symlink_to(settings.plugins_registry_dir)
    settings = replace(settings, kubelet_root_dir=root)
    async with KubeletEmulator(settings.device_plugin_dir, root / "plugins_registry",
                               watcher=True) as kubelet, running(settings):
        reg = await kubelet.wait_registered(NET)
        assert reg.endpoint == str(root / "plugins_registry" / "intel.com_net.sock")
        await kubelet.wait_capacity(NET, (4, 4))
        async with grpc.aio.insecure_channel(
                f"unix://{settings.plugins_registry_dir / 'intel.com_dpdk.sock'}") as channel:
            info = await reg_grpc.RegistrationStub(channel).GetInfo(reg_pb.InfoRequest())
        assert info.endpoint == str(root / "plugins_registry" / "intel.com_dpdk.sock")


@contextlib.asynccontextmanager
async def endpoint_alone(work: Path, **kwargs: float) -> AsyncIterator[PluginEndpoint]:
    """One pool's endpoint in watcher mode, without the rest of the daemon."""
    (work / "reg").mkdir(exist_ok=True)
    config = parse_config(json.dumps({"resourceList": [
        {"resourceName": "net", "selectors": [{"drivers": ["iavf"]}]}]})).resources[0]
    dirs = KubeletDirs.detect(work / "dp", work / "reg")
    endpoint = PluginEndpoint(LatestValue(ResourcePool(config=config, prefix="intel.com")),
                              dirs, HostFacts, **kwargs)
    task = asyncio.create_task(endpoint.run())
    watch = asyncio.create_task(watch_socket_dirs(
        [dirs.device_plugin_dir, dirs.plugins_registry_dir],
        lambda d, name, created: endpoint.socket_dir_event(name, created)))
    try:
        yield endpoint
    finally:
        watch.cancel()
        await endpoint.stop()
        await asyncio.wait_for(task, 5)


async def test_watcher_socket_is_recreated_when_a_new_kubelet_never_calls_getinfo(
    workdir: Path,
) -> None:
    dp, reg = workdir / "dp", workdir / "reg"
    dp.mkdir()
    async with endpoint_alone(workdir, watcher_grace=0.5) as endpoint:
        async with KubeletEmulator(dp, reg, watcher=True) as kubelet:
            await kubelet.wait_registered(NET)
            await kubelet.wait_for(NET, lambda d: d == {})
        await asyncio.sleep(0.8)  # no kubelet listening: the socket is kept however long
        assert endpoint.restarts == 0
        # a kubelet whose plugin watcher never comes to the socket (here: it has none)
        async with KubeletEmulator(dp, reg, watcher=False):
            await eventually(lambda: endpoint.restarts > 0, what="the endpoint restarted")


async def test_one_endpoint_owns_the_socket_when_the_lock_file_is_deleted_under_two(
    workdir: Path,
) -> None:
    dp, reg = workdir / "dp", workdir / "reg"
    dp.mkdir()
    lock = reg / ".intel.com_net.sock.lock"
    async with KubeletEmulator(dp, reg, watcher=True) as kubelet, \
            endpoint_alone(workdir) as first:
        await kubelet.wait_registered(NET)
        async with endpoint_alone(workdir) as second:
            await eventually(lambda: second.state == "waiting", what="second endpoint waiting")
            lock.unlink()  # an old kubelet's cleanup, an operator
            await eventually(lock.exists, what="the lock file taken again")
            await asyncio.sleep(0.5)  # time for a second owner to appear, proving none does
            states = sorted([first.state, second.state])
            assert states == ["registered", "waiting"], states
            owner = first if first.state == "registered" else second
            await kubelet.wait_registered(NET, count=1 + owner.restarts + (owner is second))
            await kubelet.wait_for(NET, lambda d: d == {})
            assert kubelet.is_connected(NET) and owner.streaming
