"""KubeletEmulator against a tiny in-test device plugin, over real unix sockets."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from asyncinotify import Inotify, Mask

from sriovdp.kubelet.api import (
    deviceplugin_pb2 as dp,
    deviceplugin_pb2_grpc as dp_grpc,
    pluginregistration_pb2 as reg,
    pluginregistration_pb2_grpc as reg_grpc,
)
from sriovdp.testing import eventually
from sriovdp.testing.kubelet import (
    AdmissionError,
    DeviceRecord,
    DraPluginRecord,
    EmulatorClock,
    KubeletEmulator,
    PluginOptions,
    RpcCall,
    is_extended_resource_name,
)

RES = "example.com/nic"


# ------------------------------------------------------------------ the test plugin


class FakePlugin(dp_grpc.DevicePluginServicer, reg_grpc.RegistrationServicer):
    """Two devices (``dev-0`` on NUMA 0, ``dev-1`` on NUMA 1) behind one socket.

    Serves DevicePlugin and, for the plugin watcher, pluginregistration.Registration.
    """

    def __init__(
        self,
        socket: Path,
        *,
        name: str = RES,
        options: dp.DevicePluginOptions | None = None,
        options_error: str | None = None,
        law_error: str | None = None,
        allocate_error: str | None = None,
        supported_versions: tuple[str, ...] = ("v1beta1",),
        plugin_type: str = "DevicePlugin",
        endpoint: str = "",
    ) -> None:
        self.socket = socket
        self.name = name
        self.options = options or dp.DevicePluginOptions()
        self.options_error = options_error
        self.law_error = law_error
        self.allocate_error = allocate_error
        self.supported_versions = supported_versions
        self.plugin_type = plugin_type
        self.endpoint = endpoint
        self.health = {"dev-0": "Healthy", "dev-1": "Healthy"}
        self.calls: list[str] = []
        self.requests: list[Any] = []
        self.notifications: list[reg.RegistrationStatus] = []
        self._version = 0
        self._ended = False
        self._waiters: set[asyncio.Future[None]] = set()
        self._server: grpc.aio.Server | None = None
        self._rpc_tasks: set[asyncio.Task[Any]] = set()

    def _track(self, method: str) -> None:
        self.calls.append(method)
        task = asyncio.current_task()
        if task is not None:  # grpc.aio's per-call task; stop() does not wait for it
            self._rpc_tasks.add(task)
            task.add_done_callback(self._rpc_tasks.discard)

    async def __aenter__(self) -> FakePlugin:
        server = grpc.aio.server()
        dp_grpc.add_DevicePluginServicer_to_server(self, server)
        reg_grpc.add_RegistrationServicer_to_server(self, server)
        server.add_insecure_port(f"unix:{self.socket}")
        await server.start()
        self._server = server
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(None)
            if self._rpc_tasks:
                await asyncio.wait(set(self._rpc_tasks), timeout=5.0)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def set_health(self, device: str, health: str) -> None:
        self.health[device] = health
        self._version += 1
        self._wake()

    def end_streams(self) -> None:
        """Return from every ListAndWatch (a clean stream end)."""
        self._ended = True
        self._wake()

    def _list(self) -> dp.ListAndWatchResponse:
        return dp.ListAndWatchResponse(
            devices=[
                dp.Device(
                    ID=dev,
                    health=health,
                    topology=dp.TopologyInfo(nodes=[dp.NUMANode(ID=int(dev[-1]))]),
                )
                for dev, health in self.health.items()
            ]
        )

    # DevicePlugin
    async def GetDevicePluginOptions(  # noqa: N802
        self, request: dp.Empty, context: Any
    ) -> dp.DevicePluginOptions:
        self._track("GetDevicePluginOptions")
        if self.options_error is not None:
            await context.abort(grpc.StatusCode.INTERNAL, self.options_error)
        return self.options

    async def ListAndWatch(  # noqa: N802
        self, request: dp.Empty, context: Any
    ) -> AsyncIterator[dp.ListAndWatchResponse]:
        self._track("ListAndWatch")
        if self.law_error is not None:
            await context.abort(grpc.StatusCode.INTERNAL, self.law_error)
        sent = -1
        loop = asyncio.get_running_loop()
        while not self._ended:
            if sent != self._version:
                sent = self._version
                yield self._list()
                continue
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)

    async def GetPreferredAllocation(  # noqa: N802
        self, request: dp.PreferredAllocationRequest, context: Any
    ) -> dp.PreferredAllocationResponse:
        self._track("GetPreferredAllocation")
        self.requests.append(request)
        return dp.PreferredAllocationResponse(
            container_responses=[
                dp.ContainerPreferredAllocationResponse(
                    deviceIDs=sorted(r.available_deviceIDs, reverse=True)[: r.allocation_size]
                )
                for r in request.container_requests
            ]
        )

    async def Allocate(self, request: dp.AllocateRequest, context: Any) -> dp.AllocateResponse:  # noqa: N802
        self._track("Allocate")
        self.requests.append(request)
        if self.allocate_error is not None:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self.allocate_error)
        responses = []
        for creq in request.container_requests:
            unknown = [i for i in creq.devices_ids if i not in self.health]
            if unknown:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown devices {unknown}")
            responses.append(
                dp.ContainerAllocateResponse(
                    envs={"NIC_IDS": ",".join(creq.devices_ids)},
                    devices=[
                        dp.DeviceSpec(
                            container_path="/dev/vfio/vfio",
                            host_path="/dev/vfio/vfio",
                            permissions="rw",
                        )
                    ],
                )
            )
        return dp.AllocateResponse(container_responses=responses)

    async def PreStartContainer(  # noqa: N802
        self, request: dp.PreStartContainerRequest, context: Any
    ) -> dp.PreStartContainerResponse:
        self._track("PreStartContainer")
        self.requests.append(request)
        return dp.PreStartContainerResponse()

    # pluginregistration.Registration
    async def GetInfo(self, request: reg.InfoRequest, context: Any) -> reg.PluginInfo:  # noqa: N802
        self._track("GetInfo")
        return reg.PluginInfo(
            type=self.plugin_type,
            name=self.name,
            endpoint=self.endpoint,
            supported_versions=list(self.supported_versions),
        )

    async def NotifyRegistrationStatus(  # noqa: N802
        self, request: reg.RegistrationStatus, context: Any
    ) -> reg.RegistrationStatusResponse:
        self._track("NotifyRegistrationStatus")
        self.notifications.append(request)
        return reg.RegistrationStatusResponse()


async def register(
    emu: KubeletEmulator,
    endpoint: str,
    resource: str = RES,
    version: str = "v1beta1",
    options: dp.DevicePluginOptions | None = None,
) -> None:
    """Call Register on kubelet.sock like a plugin in socket mode."""
    async with grpc.aio.insecure_channel(f"unix:{emu.kubelet_socket}") as channel:
        request = dp.RegisterRequest(
            version=version, endpoint=endpoint, resource_name=resource, options=options
        )
        await dp_grpc.RegistrationStub(channel).Register(request, timeout=15)


def all_healthy(count: int) -> Any:
    return lambda devs: len(devs) == count and all(d.healthy for d in devs.values())


# ----------------------------------------------------------------------- fixtures


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 108-byte unix socket path limit.
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="kemu-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def dirs(short_dir: Path) -> tuple[Path, Path]:
    return short_dir / "dp", short_dir / "reg"


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    before = set(asyncio.all_tasks())
    yield
    # grpc.aio finishes its per-call bookkeeping tasks a few loop iterations after a
    # call or channel is closed; anything still pending after that is a real leak.
    leaked: list[asyncio.Task[Any]] = []
    for _ in range(50):
        await asyncio.sleep(0)
        leaked = [
            t
            for t in asyncio.all_tasks() - before
            if t is not asyncio.current_task() and not t.done()
        ]
        if not leaked:
            break
    assert not leaked, leaked


@pytest.fixture
async def kubelet(dirs: tuple[Path, Path]) -> AsyncIterator[KubeletEmulator]:
    async with KubeletEmulator(dirs[0], dial_timeout=2.0) as emu:
        yield emu


@pytest.fixture
async def registered(kubelet: KubeletEmulator) -> AsyncIterator[FakePlugin]:
    async with FakePlugin(kubelet.device_plugin_dir / "nic.sock") as plugin:
        await register(kubelet, "nic.sock")
        await kubelet.wait_for(RES, all_healthy(2))
        yield plugin


# ------------------------------------------------------------------- socket mode


async def test_register_dials_back_and_records_stream_when_request_is_valid(
    kubelet: KubeletEmulator,
) -> None:
    opts = dp.DevicePluginOptions(get_preferred_allocation_available=True)
    async with FakePlugin(kubelet.device_plugin_dir / "nic.sock", options=opts) as plugin:
        await register(kubelet, "nic.sock", options=dp.DevicePluginOptions(pre_start_required=True))
        registration = await kubelet.wait_registered(RES)
        devices = await kubelet.wait_for(RES, all_healthy(2))

    assert registration.accepted and registration.error is None
    assert registration.mode == "socket"
    assert registration.endpoint == "nic.sock"
    assert registration.socket_path == str(kubelet.device_plugin_dir / "nic.sock")
    assert registration.version == "v1beta1"
    # The kubelet uses GetDevicePluginOptions, not RegisterRequest.options (>= 1.25).
    assert registration.options == PluginOptions(get_preferred_allocation_available=True)
    assert registration.requested_options == PluginOptions(pre_start_required=True)
    assert kubelet.endpoint_options(RES) == registration.options
    assert devices["dev-1"] == DeviceRecord("dev-1", "Healthy", (1,))
    assert kubelet.streams[RES][0] == [
        DeviceRecord("dev-0", "Healthy", (0,)),
        DeviceRecord("dev-1", "Healthy", (1,)),
    ]
    assert kubelet.rpc_log[:2] == [
        RpcCall(RES, "GetDevicePluginOptions"),
        RpcCall(RES, "ListAndWatch"),
    ]
    assert plugin.calls[:2] == ["GetDevicePluginOptions", "ListAndWatch"]


async def test_register_fails_with_kubelet_text_when_version_unsupported(
    kubelet: KubeletEmulator,
) -> None:
    async with FakePlugin(kubelet.device_plugin_dir / "nic.sock") as plugin:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await register(kubelet, "nic.sock", version="v1alpha")
    assert info.value.code() is grpc.StatusCode.UNKNOWN
    expected = (
        'requested API version "v1alpha" is not supported by kubelet. '
        'Supported version is ["v1beta1"]'
    )
    assert info.value.details() == expected
    assert kubelet.registrations[-1].accepted is False
    assert kubelet.registrations[-1].error == expected
    assert plugin.calls == [] and kubelet.rpc_log == []


@pytest.mark.parametrize(
    "name",
    [
        "kubernetes.io/x",
        "Example.com/x",
        "x",
        "foo.kubernetes.io/x",
        "a.com/b/c",
        "example.com/-x",
        "requests.example.com/x",
    ],
)
async def test_register_fails_when_resource_name_is_not_extended(
    kubelet: KubeletEmulator, name: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await register(kubelet, "nic.sock", resource=name)
    assert info.value.code() is grpc.StatusCode.UNKNOWN
    assert info.value.details() == f'the ResourceName "{name}" is invalid'
    assert kubelet.capacity(name) == (-1, -1)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("nvidia.com/gpu", True),
        ("example.com/Foo_1.x", True),
        ("intel.com/intel_sriov_netdevice", True),
        ("gpu", False),
        ("kubernetes.io/gpu", False),
        ("Example.com/gpu", False),
        ("example.com/", False),
        ("/gpu", False),
        ("example.com/-x", False),
        ("example.com/" + "x" * 64, False),
        ("a" * 245 + ".com/x", False),
    ],
)
def test_is_extended_resource_name_matches_kubelet_rules_when_given(name: str, valid: bool) -> None:
    assert is_extended_resource_name(name) is valid


async def test_register_fails_after_dial_timeout_when_endpoint_has_no_socket(
    dirs: tuple[Path, Path],
) -> None:
    async with KubeletEmulator(dirs[0], dial_timeout=0.2) as kubelet:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await register(kubelet, "missing.sock")
    assert info.value.details() == "failed to dial device plugin: context deadline exceeded"
    assert kubelet.registrations[-1].socket_path == str(dirs[0] / "missing.sock")


async def test_register_fails_and_never_lists_when_get_options_fails(
    kubelet: KubeletEmulator,
) -> None:
    async with FakePlugin(kubelet.device_plugin_dir / "nic.sock", options_error="boom") as plugin:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await register(kubelet, "nic.sock")
        await asyncio.sleep(0.1)
    assert (
        info.value.details()
        == "failed to get device plugin options: rpc error: code = Internal desc = boom"
    )
    assert plugin.calls == ["GetDevicePluginOptions"]
    assert kubelet.rpc_log == [RpcCall(RES, "GetDevicePluginOptions")]
    assert kubelet.capacity(RES) == (-1, -1)


@pytest.mark.parametrize("endpoint", ["/nic.sock", "sub/../nic.sock", "./nic.sock"])
async def test_endpoint_is_joined_and_cleaned_when_not_a_bare_name(
    kubelet: KubeletEmulator, endpoint: str
) -> None:
    async with FakePlugin(kubelet.device_plugin_dir / "nic.sock"):
        await register(kubelet, endpoint)
        registration = await kubelet.wait_registered(RES)
    assert registration.endpoint == endpoint
    assert registration.socket_path == str(kubelet.device_plugin_dir / "nic.sock")


async def test_capacity_counts_unhealthy_devices_when_health_flips(
    kubelet: KubeletEmulator, registered: FakePlugin
) -> None:
    assert kubelet.capacity(RES) == (2, 2)
    registered.set_health("dev-0", "Unhealthy")
    await kubelet.wait_for(RES, lambda d: not d["dev-0"].healthy)
    assert kubelet.capacity(RES) == (2, 1)
    assert kubelet.healthy_ids(RES) == {"dev-1"}
    registered.set_health("dev-0", "healthy")  # not exactly "Healthy": unhealthy for the kubelet
    await kubelet.wait_for(RES, lambda d: d["dev-0"].health == "healthy")
    assert kubelet.capacity(RES) == (2, 1)
    registered.set_health("dev-0", "Healthy")
    await kubelet.wait_for(RES, all_healthy(2))
    assert kubelet.capacity(RES) == (2, 2)
    assert len(kubelet.streams[RES]) == 4


async def test_devices_go_unhealthy_then_removed_after_grace_when_stream_ends(
    kubelet: KubeletEmulator, registered: FakePlugin
) -> None:
    rpcs = list(kubelet.rpc_log)
    registered.end_streams()
    await kubelet.wait_capacity(RES, (2, 0))
    assert not kubelet.is_connected(RES)
    await asyncio.sleep(0.2)  # time to re-dial, proving the kubelet does not
    assert kubelet.rpc_log == rpcs  # never re-dialled
    assert registered.calls.count("ListAndWatch") == 1
    kubelet.advance(299)
    assert kubelet.capacity(RES) == (2, 0)
    kubelet.advance(2)
    assert kubelet.capacity(RES) == (0, 0)
    kubelet.advance(600)
    assert kubelet.capacity(RES) == (0, 0)  # removed resources stay at an explicit 0


async def test_resource_reads_zero_when_list_and_watch_fails_immediately(
    kubelet: KubeletEmulator,
) -> None:
    async with FakePlugin(kubelet.device_plugin_dir / "nic.sock", law_error="nope") as plugin:
        await register(kubelet, "nic.sock")  # Register still succeeds
        await kubelet.wait_capacity(RES, (0, 0))
        await asyncio.sleep(0.1)
    assert plugin.calls == ["GetDevicePluginOptions", "ListAndWatch"]
    assert kubelet.streams[RES] == []


async def test_reregistration_replaces_endpoint_when_same_resource_registers_again(
    kubelet: KubeletEmulator, registered: FakePlugin
) -> None:
    opts = dp.DevicePluginOptions(pre_start_required=True)
    async with FakePlugin(kubelet.device_plugin_dir / "nic2.sock", options=opts) as second:
        second.set_health("dev-1", "Unhealthy")
        await register(kubelet, "nic2.sock")
        await kubelet.wait_registered(RES, count=2)
        await kubelet.wait_for(RES, lambda d: not d["dev-1"].healthy)
        assert kubelet.endpoint_options(RES) == PluginOptions(pre_start_required=True)
        assert kubelet.capacity(RES) == (2, 1)
        assert kubelet.registrations[-1].socket_path.endswith("/nic2.sock")


async def test_clock_can_be_frozen_when_injected(dirs: tuple[Path, Path]) -> None:
    clock = EmulatorClock(base=lambda: 1000.0)
    async with KubeletEmulator(dirs[0], clock=clock) as kubelet:
        async with FakePlugin(kubelet.device_plugin_dir / "nic.sock") as plugin:
            await register(kubelet, "nic.sock")
            await kubelet.wait_for(RES, all_healthy(2))
            await plugin.stop()
            await kubelet.wait_capacity(RES, (2, 0))
        kubelet.advance(300)
        assert kubelet.capacity(RES) == (2, 0)  # exactly the grace period: not expired yet
        kubelet.advance(0.001)
        assert kubelet.capacity(RES) == (0, 0)


# ------------------------------------------------------------------------- restart


async def test_restart_deletes_every_socket_and_serves_new_kubelet_sock_when_called(
    kubelet: KubeletEmulator, registered: FakePlugin
) -> None:
    dp_dir = kubelet.device_plugin_dir
    (dp_dir / "notes.txt").write_text("keep")
    (dp_dir / "subdir").mkdir()
    allocation = await kubelet.admit(RES, 1, pod="p")
    assert kubelet.checkpoint_path.exists()

    with Inotify() as inotify:
        inotify.add_watch(dp_dir, Mask.CREATE | Mask.DELETE)
        await kubelet.restart()
        events = []
        while (event := await asyncio.wait_for(inotify.get(), 1.0)).name != Path(
            "kubelet.sock"
        ) or (Mask.CREATE not in event.mask):
            events.append((str(event.name), Mask.DELETE in event.mask))
    # Every socket went (plugin socket and the old kubelet.sock), then kubelet.sock came back.
    assert ("nic.sock", True) in events and ("kubelet.sock", True) in events
    assert not (dp_dir / "nic.sock").exists()
    assert stat.S_ISSOCK(kubelet.kubelet_socket.stat().st_mode)
    assert (dp_dir / "notes.txt").read_text() == "keep"
    assert (dp_dir / "subdir").is_dir()
    assert kubelet.checkpoint_path.exists()
    # Registered resources come back empty with a stopped endpoint; allocations survive.
    assert kubelet.capacity(RES) == (0, 0)
    assert kubelet.devices(RES) == {}
    assert [a.device_ids for a in kubelet.allocations("p")] == [allocation.device_ids]
    with pytest.raises(AdmissionError) as info:
        await kubelet.admit(RES, 1, pod="q")
    assert (
        info.value.error == f"no healthy devices present; cannot allocate unhealthy devices {RES}"
    )

    # The plugin re-creates its socket and registers again.
    await registered.stop()
    async with FakePlugin(dp_dir / "nic.sock"):
        await register(kubelet, "nic.sock")
        await kubelet.wait_for(RES, all_healthy(2))
        assert kubelet.capacity(RES) == (2, 2)
        again = await kubelet.admit(RES, 1, pod="q")
    assert again.device_ids != allocation.device_ids


async def test_restart_zeroes_resources_after_grace_when_plugin_never_returns(
    kubelet: KubeletEmulator, registered: FakePlugin
) -> None:
    await kubelet.restart()
    kubelet.advance(301)
    assert kubelet.capacity(RES) == (0, 0)
    assert RES not in json.loads(kubelet.checkpoint_path.read_text())["Data"]["RegisteredDevices"]


# ----------------------------------------------------------------------- admission


async def test_admit_takes_devices_in_id_order_when_plugin_has_no_preference(
    kubelet: KubeletEmulator, registered: FakePlugin
) -> None:
    first = await kubelet.admit(RES, 1, pod="a")
    second = await kubelet.admit(RES, 1, pod="b")
    assert (first.device_ids, second.device_ids) == (("dev-0",), ("dev-1",))
    assert first.preferred is None
    assert first.response.envs["NIC_IDS"] == "dev-0"
    assert "GetPreferredAllocation" not in registered.calls
    with pytest.raises(AdmissionError) as info:
        await kubelet.admit(RES, 1, pod="c")
    assert (
        info.value.error
        == f"requested number of devices unavailable for {RES}. Requested: 1, Available: 0"
    )
    assert info.value.reason == "UnexpectedAdmissionError"
    assert str(info.value) == f"Allocate failed due to {info.value.error}, which is unexpected"
    # Allocated devices do not reduce allocatable.
    assert kubelet.capacity(RES) == (2, 2)
    assert [a.pod for a in kubelet.release("a")] == ["a"]
    third = await kubelet.admit(RES, 1, pod="c")
    assert third.device_ids == ("dev-0",)
    # The same container asking again reuses its devices without an RPC.
    calls = registered.calls.count("Allocate")
    assert await kubelet.admit(RES, 1, pod="c") == third
    assert registered.calls.count("Allocate") == calls
    checkpoint = json.loads(kubelet.checkpoint_path.read_text())["Data"]
    assert {(e["PodUID"], e["ResourceName"]) for e in checkpoint["PodDeviceEntries"]} == {
        ("b", RES),
        ("c", RES),
    }


async def test_admit_follows_preferred_allocation_when_plugin_offers_it(
    kubelet: KubeletEmulator,
) -> None:
    opts = dp.DevicePluginOptions(get_preferred_allocation_available=True)
    async with FakePlugin(kubelet.device_plugin_dir / "nic.sock", options=opts) as plugin:
        await register(kubelet, "nic.sock")
        await kubelet.wait_for(RES, all_healthy(2))
        allocation = await kubelet.admit(RES, 1)
    assert allocation.device_ids == ("dev-1",)
    assert allocation.preferred == ("dev-1",)
    (request,) = [r for r in plugin.requests if isinstance(r, dp.PreferredAllocationRequest)]
    (creq,) = request.container_requests
    assert sorted(creq.available_deviceIDs) == ["dev-0", "dev-1"]
    assert list(creq.must_include_deviceIDs) == []
    assert creq.allocation_size == 1
    assert [c.method for c in kubelet.rpc_log][-2:] == ["GetPreferredAllocation", "Allocate"]


async def test_admit_uses_aligned_devices_when_numa_hint_given(
    kubelet: KubeletEmulator, registered: FakePlugin
) -> None:
    allocation = await kubelet.admit(RES, 1, numa_affinity=[1])
    assert allocation.device_ids == ("dev-1",)


async def test_admit_skips_unhealthy_devices_when_choosing(
    kubelet: KubeletEmulator, registered: FakePlugin
) -> None:
    registered.set_health("dev-0", "Unhealthy")
    await kubelet.wait_for(RES, lambda d: not d["dev-0"].healthy)
    with pytest.raises(AdmissionError) as info:
        await kubelet.admit(RES, 2)
    assert info.value.error.endswith("Requested: 2, Available: 1")
    assert (await kubelet.admit(RES, 1)).device_ids == ("dev-1",)


async def test_admit_fails_when_resource_never_registered(kubelet: KubeletEmulator) -> None:
    with pytest.raises(AdmissionError) as info:
        await kubelet.admit("example.com/none", 1)
    assert info.value.error == "cannot allocate unregistered device example.com/none"


async def test_admit_reports_plugin_error_when_allocate_fails(kubelet: KubeletEmulator) -> None:
    async with FakePlugin(
        kubelet.device_plugin_dir / "nic.sock", allocate_error="no vfio"
    ) as plugin:
        await register(kubelet, "nic.sock")
        await kubelet.wait_for(RES, all_healthy(2))
        with pytest.raises(grpc.aio.AioRpcError) as raw:
            await kubelet.allocate(RES, ["dev-0"])
        assert raw.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(AdmissionError) as info:
            await kubelet.admit(RES, 1)
        plugin.allocate_error = None
        # The failed admission was rolled back: both devices are still free.
        assert (await kubelet.admit(RES, 2)).device_ids == ("dev-0", "dev-1")
    assert info.value.error == "rpc error: code = ResourceExhausted desc = no vfio"


async def test_start_container_calls_pre_start_and_merges_when_required(
    kubelet: KubeletEmulator,
) -> None:
    opts = dp.DevicePluginOptions(pre_start_required=True)
    async with FakePlugin(kubelet.device_plugin_dir / "nic.sock", options=opts) as plugin:
        await register(kubelet, "nic.sock")
        await kubelet.wait_for(RES, all_healthy(2))
        await kubelet.admit(RES, 2, pod="p", container="app")
        config = await kubelet.start_container("p", "app")
    (request,) = [r for r in plugin.requests if isinstance(r, dp.PreStartContainerRequest)]
    assert sorted(request.devices_ids) == ["dev-0", "dev-1"]
    assert config.envs == {"NIC_IDS": "dev-0,dev-1"}
    assert [d.container_path for d in config.devices] == ["/dev/vfio/vfio"]


async def test_raw_rpcs_raise_lookup_error_when_resource_has_no_endpoint(
    kubelet: KubeletEmulator,
) -> None:
    with pytest.raises(LookupError):
        await kubelet.allocate(RES, ["dev-0"])
    with pytest.raises(LookupError):
        await kubelet.pre_start(RES, ["dev-0"])


async def test_raw_preferred_allocation_returns_first_container_ids_when_called(
    kubelet: KubeletEmulator, registered: FakePlugin
) -> None:
    assert await kubelet.preferred_allocation(RES, ["dev-0", "dev-1"], [], 1) == ["dev-1"]
    assert await kubelet.pre_start(RES, ["dev-0"]) == dp.PreStartContainerResponse()


# ------------------------------------------------------------ rejection (socket mode)


async def test_reject_next_registration_fails_once_when_set(kubelet: KubeletEmulator) -> None:
    kubelet.reject_next_registration("go away")
    async with FakePlugin(kubelet.device_plugin_dir / "nic.sock") as plugin:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await register(kubelet, "nic.sock")
        assert info.value.code() is grpc.StatusCode.UNKNOWN
        assert info.value.details() == "go away"
        assert plugin.calls == []
        await register(kubelet, "nic.sock")
        await kubelet.wait_for(RES, all_healthy(2))
    assert [r.accepted for r in kubelet.registrations] == [False, True]


# ------------------------------------------------------------------ watcher mode


@pytest.fixture
async def watcher(dirs: tuple[Path, Path]) -> AsyncIterator[KubeletEmulator]:
    async with KubeletEmulator(
        dirs[0], dirs[1], watcher=True, dial_timeout=2.0, watcher_retry=0.05,
        watcher_period=0.02,
    ) as emu:
        yield emu


async def test_watcher_registers_plugin_when_socket_appears(watcher: KubeletEmulator) -> None:
    assert watcher.plugins_registry_dir is not None
    path = watcher.plugins_registry_dir / "example.com_nic.sock"
    async with FakePlugin(path) as plugin:
        registration = await watcher.wait_registered(RES)
        await watcher.wait_for(RES, all_healthy(2))
        await eventually(lambda: plugin.notifications)
        assert watcher.capacity(RES) == (2, 2)
    assert registration.mode == "watcher"
    assert registration.socket_path == str(path)  # empty PluginInfo.endpoint: the registry socket
    assert registration.supported_versions == ("v1beta1",)
    assert plugin.calls[:2] == ["GetInfo", "GetDevicePluginOptions"]
    assert set(plugin.calls) == {
        "GetInfo",
        "GetDevicePluginOptions",
        "ListAndWatch",
        "NotifyRegistrationStatus",
    }
    assert [(n.plugin_registered, n.error) for n in plugin.notifications] == [(True, "")]
    assert watcher.rpc_log[0] == RpcCall(str(path), "GetInfo")


async def test_watcher_registers_socket_when_present_before_start(dirs: tuple[Path, Path]) -> None:
    dirs[1].mkdir(parents=True)
    async with (
        FakePlugin(dirs[1] / "nic.sock") as plugin,
        KubeletEmulator(dirs[0], dirs[1], watcher=True) as emu,
    ):
        await emu.wait_for(RES, all_healthy(2))
        await eventually(lambda: plugin.notifications)
    assert plugin.notifications[0].plugin_registered


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (
            {"supported_versions": ("v1alpha1",)},
            "RegisterPlugin error -- plugin validation failed with err: "
            "manager version, v1beta1, is not among plugin supported versions [v1alpha1]",
        ),
        (
            {"name": "kubernetes.io/x"},
            "RegisterPlugin error -- plugin validation failed with err: "
            'invalid name of device plugin socket: the ResourceName "kubernetes.io/x" is invalid',
        ),
        (
            {"plugin_type": "CSIPlugin"},
            "RegisterPlugin error -- no handler registered for plugin type: CSIPlugin "
            "at socket {path}",
        ),
    ],
)
async def test_watcher_notifies_failure_and_retries_when_validation_fails(
    watcher: KubeletEmulator, kwargs: dict[str, Any], error: str
) -> None:
    assert watcher.plugins_registry_dir is not None
    path = watcher.plugins_registry_dir / "bad.sock"
    async with FakePlugin(path, **kwargs) as plugin:
        await eventually(lambda: len(plugin.notifications) >= 2)  # retried with back-off
    first = plugin.notifications[0]
    assert (first.plugin_registered, first.error) == (False, error.format(path=path))
    assert "GetDevicePluginOptions" not in plugin.calls
    assert not any(r.accepted for r in watcher.registrations)


async def test_watcher_notifies_failure_once_when_registration_rejected(
    watcher: KubeletEmulator,
) -> None:
    assert watcher.plugins_registry_dir is not None
    watcher.reject_next_registration("not today")
    async with FakePlugin(watcher.plugins_registry_dir / "nic.sock") as plugin:
        await eventually(lambda: plugin.notifications)
        await asyncio.sleep(0.3)  # more than the retry back-off: no second attempt
    assert [(n.plugin_registered, n.error) for n in plugin.notifications] == [
        (False, "RegisterPlugin error -- plugin registration failed with err: not today")
    ]
    assert plugin.calls == ["GetInfo", "NotifyRegistrationStatus"]


async def test_watcher_deregisters_plugin_when_socket_deleted(watcher: KubeletEmulator) -> None:
    assert watcher.plugins_registry_dir is not None
    path = watcher.plugins_registry_dir / "nic.sock"
    async with FakePlugin(path):
        await watcher.wait_for(RES, all_healthy(2))
        path.unlink()
        await watcher.wait_capacity(RES, (2, 0))
        assert not watcher.is_connected(RES)


async def test_watcher_mode_still_serves_kubelet_sock_when_enabled(
    watcher: KubeletEmulator,
) -> None:
    async with FakePlugin(watcher.device_plugin_dir / "nic.sock"):
        await register(watcher, "nic.sock")
        await watcher.wait_for(RES, all_healthy(2))
    assert watcher.registrations[-1].mode == "socket"


async def test_restart_registers_watcher_plugins_again_when_sockets_remain(
    watcher: KubeletEmulator,
) -> None:
    assert watcher.plugins_registry_dir is not None
    async with FakePlugin(watcher.plugins_registry_dir / "nic.sock") as plugin:
        await eventually(lambda: plugin.notifications)
        await watcher.restart()
        assert (watcher.plugins_registry_dir / "nic.sock").exists()  # registry is not cleaned
        await watcher.wait_registered(RES, count=2)
        await watcher.wait_for(RES, all_healthy(2))
        await eventually(lambda: len(plugin.notifications) == 2)
    assert plugin.calls.count("GetInfo") == 2


# ------------------------------------------------------------- watcher mode: DRA plugins

DRIVER = "dra.example.com"
DRA_SERVICES = ("v1beta1.DRAPlugin", "v1.DRAPlugin", "v1.DRAResourceHealth")


def dra_plugin(watcher: KubeletEmulator, **kwargs: Any) -> FakePlugin:
    """A DRA driver's registration socket; its ``dra.sock`` is only named (the kubelet's DRA
    manager does not dial it to register)."""
    assert watcher.plugins_registry_dir is not None
    kwargs = {"name": DRIVER, "plugin_type": "DRAPlugin", "supported_versions": DRA_SERVICES,
              "endpoint": str(watcher.device_plugin_dir.parent / "dra.sock"), **kwargs}
    return FakePlugin(watcher.plugins_registry_dir / f"{DRIVER}-reg.sock", **kwargs)


async def test_watcher_records_dra_plugin_when_get_info_says_dra_plugin(
    watcher: KubeletEmulator,
) -> None:
    async with dra_plugin(watcher) as plugin:
        record = await watcher.wait_dra_registered(DRIVER)
        await eventually(lambda: plugin.notifications)
        assert watcher.dra_plugins == {DRIVER: [record]}  # until the socket goes
    assert record == DraPluginRecord(
        driver=DRIVER, endpoint=plugin.endpoint, socket_path=str(plugin.socket),
        service="v1beta1.DRAPlugin",  # the first the plugin lists that the kubelet knows
        health_service="v1.DRAResourceHealth")
    assert [(n.plugin_registered, n.error) for n in plugin.notifications] == [(True, "")]
    assert plugin.calls == ["GetInfo", "NotifyRegistrationStatus"]  # no device plugin RPC
    (registration,) = watcher.registrations
    assert (registration.plugin_type, registration.resource, registration.accepted,
            registration.version) == ("DRAPlugin", DRIVER, True, "v1beta1.DRAPlugin")


@pytest.mark.parametrize(
    ("services", "reason"),
    [
        pytest.param((), "empty list of supported gRPC services (aka supported versions)",
                     id="none"),
        pytest.param(("v1alpha3.DRAPlugin", "v1.DRAResourceHealth"),
                     'none of services supported by the plugin (["v1alpha3.DRAPlugin" '
                     '"v1.DRAResourceHealth"]) are supported by the kubelet (["v1.DRAPlugin" '
                     '"v1beta1.DRAPlugin"])', id="unknown"),
    ],
)
async def test_watcher_refuses_dra_plugin_when_it_offers_no_known_service(
    watcher: KubeletEmulator, services: tuple[str, ...], reason: str
) -> None:
    async with dra_plugin(watcher, supported_versions=services) as plugin:
        await eventually(lambda: len(plugin.notifications) >= 2)  # retried with back-off
    first = plugin.notifications[0]
    assert (first.plugin_registered, first.error) == (
        False, "RegisterPlugin error -- plugin validation failed with err: invalid supported "
        f"gRPC versions of DRA driver plugin {DRIVER} at endpoint {plugin.endpoint}: {reason}")
    assert watcher.dra_plugins == {}


async def test_watcher_keeps_both_dra_instances_when_a_rolling_update_adds_one(
    watcher: KubeletEmulator,
) -> None:
    assert watcher.plugins_registry_dir is not None
    second = FakePlugin(watcher.plugins_registry_dir / f"{DRIVER}-2-reg.sock", name=DRIVER,
                        plugin_type="DRAPlugin", supported_versions=("v1.DRAPlugin",),
                        endpoint=str(watcher.device_plugin_dir.parent / "dra-2.sock"))
    async with dra_plugin(watcher), second:
        await eventually(lambda: len(watcher.dra_plugins.get(DRIVER, ())) == 2)
        assert sorted(r.service for r in watcher.dra_plugins[DRIVER]) == [
            "v1.DRAPlugin", "v1beta1.DRAPlugin"]


async def test_watcher_refuses_dra_plugin_when_its_endpoint_is_already_registered(
    watcher: KubeletEmulator,
) -> None:
    assert watcher.plugins_registry_dir is not None
    same = FakePlugin(watcher.plugins_registry_dir / "other-reg.sock", name=DRIVER,
                      plugin_type="DRAPlugin", supported_versions=("v1.DRAPlugin",),
                      endpoint=str(watcher.device_plugin_dir.parent / "dra.sock"))
    async with dra_plugin(watcher):
        await watcher.wait_dra_registered(DRIVER)
        async with same:
            await eventually(lambda: len(same.notifications) >= 2)  # tried again later
        same.socket.unlink(missing_ok=True)  # deregisters nothing: it was never registered
        await asyncio.sleep(0.1)
        assert len(watcher.dra_plugins[DRIVER]) == 1
    assert (same.notifications[0].plugin_registered, same.notifications[0].error) == (
        False, "RegisterPlugin error -- plugin registration failed with err: endpoint "
        f"{same.endpoint} already registered for DRA driver plugin {DRIVER}")


async def test_watcher_deregisters_dra_plugin_when_its_socket_is_deleted(
    watcher: KubeletEmulator,
) -> None:
    async with dra_plugin(watcher) as plugin:
        await watcher.wait_dra_registered(DRIVER)
        plugin.socket.unlink()
        await eventually(lambda: DRIVER not in watcher.dra_plugins)


async def test_restart_registers_dra_plugin_again_when_its_socket_remains(
    watcher: KubeletEmulator,
) -> None:
    async with dra_plugin(watcher) as plugin:
        await eventually(lambda: plugin.notifications)
        await watcher.restart()
        await eventually(lambda: len(plugin.notifications) == 2)
        await watcher.wait_dra_registered(DRIVER)
        assert len(watcher.dra_plugins[DRIVER]) == 1  # a new kubelet: a new DRA manager
    assert plugin.calls.count("GetInfo") == 2


async def test_exit_removes_kubelet_sock_when_leaving_context(dirs: tuple[Path, Path]) -> None:
    async with KubeletEmulator(dirs[0]) as emu:
        assert stat.S_ISSOCK(emu.kubelet_socket.stat().st_mode)
    assert not emu.kubelet_socket.exists()
    assert os.listdir(dirs[0]) == []
