"""DRA mode's kubelet plugin over real unix sockets: registration, prepare, unprepare, health.

The node is the demo FakeHost scanned by the real sysfs reader; claims come from the
in-memory claim reader; CDI specs and the checkpoint are real files in a temp dir; the
kubelet side is the generated gRPC stubs on ``grpc.aio`` channels, as the kubelet dials.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from sriovdp.host.cdi import CdiStore
from sriovdp.host.devinfo import DeviceInfoStore
from sriovdp.host.draclaims import ClaimCheckpoint
from sriovdp.host.sysfs import scan
from sriovdp.kubelet.api import (
    dra_v1_pb2,
    dra_v1_pb2_grpc,
    dra_v1beta1_pb2,
    dra_v1beta1_pb2_grpc,
    drahealth_v1_pb2,
    drahealth_v1_pb2_grpc,
    drahealth_v1alpha1_pb2,
    drahealth_v1alpha1_pb2_grpc,
    pluginregistration_pb2,
    pluginregistration_pb2_grpc,
)
from sriovdp.kubelet.dra.preparer import ClaimPreparer
from sriovdp.kubelet.dra.server import DraPluginServer, plugin_socket, registration_socket
from sriovdp.kubelet.dra.servicer import DraRegistrationServicer
from sriovdp.kubelet.feed import LatestValue
from sriovdp.model.config import parse_config
from sriovdp.model.dra.prepare import SPEC_FILE_PREFIX, AllocatedDevice, ClaimAllocation, ClaimRef
from sriovdp.model.dra.slices import DraDevice, dra_devices
from sriovdp.model.health import Health
from sriovdp.model.pools import build_pools
from sriovdp.testing.demo import DEMO_CONFIG
from sriovdp.testing.dra import DraKubelet, FakeClaimReader
from sriovdp.testing.fakehost import FakeHost

DRIVER = "sriov.network.k8s.io"
NODE = "worker-1"
UID = "6c1f3b8e-2a4d-4c5e-9f70-0123456789ab"
REF = ClaimRef("default", "dpdk", UID)


@dataclass
class Plugin:
    """The plugin's server, its files, and a kubelet-side channel to ``dra.sock``."""

    socket: Path
    reg_socket: Path
    cdi_dir: Path
    checkpoint: Path
    reader: FakeClaimReader
    devices: LatestValue[Mapping[str, DraDevice]]
    channel: grpc.aio.Channel
    server: DraPluginServer

    def v1(self) -> dra_v1_pb2_grpc.DRAPluginStub:
        return dra_v1_pb2_grpc.DRAPluginStub(self.channel)

    def specs(self) -> dict[str, Any]:
        return {p.name: yaml.safe_load(p.read_text())
                for p in sorted(self.cdi_dir.glob(f"{SPEC_FILE_PREFIX}*.yaml"))}


def node_devices(host: FakeHost, health: dict[str, str] | None = None) -> dict[str, DraDevice]:
    config = parse_config(json.dumps(DEMO_CONFIG))
    pools = build_pools(scan(host.paths), config.resources, default_prefix="intel.com",
                        health=health)
    return dra_devices(pools)


async def start(workdir: Path, host: FakeHost, reader: FakeClaimReader | None = None,
                health_resend: float = 10.0) -> Plugin:
    reader = reader or FakeClaimReader()
    devices: LatestValue[Mapping[str, DraDevice]] = LatestValue(node_devices(host))
    socket = plugin_socket(workdir / "plugins", DRIVER)
    cdi_dir, checkpoint = workdir / "cdi", socket.parent / "checkpoint.json"
    preparer = ClaimPreparer(
        driver=DRIVER, pool_name=NODE, reader=reader, devices=lambda: devices.value,
        facts=lambda: scan(host.paths).facts,
        cdi=CdiStore(cdi_dir, prefix=SPEC_FILE_PREFIX), checkpoint=ClaimCheckpoint(checkpoint),
        device_info=DeviceInfoStore(workdir / "devinfo"))
    server = DraPluginServer(preparer, socket=socket, health=devices,
                             registration=registration_socket(workdir / "registry", DRIVER),
                             health_resend=health_resend)
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{socket}")
    return Plugin(socket, server.registration, cdi_dir, checkpoint, reader, devices, channel,
                  server)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> FakeHost:
    """The demo host, built once: these tests never change it."""
    from sriovdp.testing.demo import build_demo_host

    return build_demo_host(tmp_path_factory.mktemp("dra-host"))


@pytest.fixture
async def plugin(workdir: Path, host: FakeHost) -> AsyncIterator[Plugin]:
    p = await start(workdir, host)
    try:
        yield p
    finally:
        await p.channel.close()
        await p.server.stop()


def allocate(reader: FakeClaimReader, *devices: str, ref: ClaimRef = REF,
             request: str = "nic") -> None:
    reader.put(ClaimAllocation(ref, tuple(
        AllocatedDevice(request, DRIVER, NODE, d) for d in devices)))


def claim_msg(pb: Any, ref: ClaimRef = REF) -> Any:
    return pb.Claim(namespace=ref.namespace, name=ref.name, uid=ref.uid)


async def test_get_info_registers_the_driver_and_dra_sock_when_the_watcher_asks(
        plugin: Plugin) -> None:
    async with grpc.aio.insecure_channel(f"unix:{plugin.reg_socket}") as channel:
        info = await pluginregistration_pb2_grpc.RegistrationStub(channel).GetInfo(
            pluginregistration_pb2.InfoRequest())
    assert info.type == "DRAPlugin"
    assert info.name == DRIVER
    assert info.endpoint == str(plugin.socket)
    assert list(info.supported_versions) == [
        "v1.DRAPlugin", "v1beta1.DRAPlugin", "v1.DRAResourceHealth", "v1alpha1.DRAResourceHealth"]


async def test_prepare_writes_the_cdi_spec_before_answering_when_vfio_vfs_are_allocated(
        plugin: Plugin) -> None:
    allocate(plugin.reader, "0000-3b-02-4", "0000-3b-02-5")
    response = await plugin.v1().NodePrepareResources(
        dra_v1_pb2.NodePrepareResourcesRequest(claims=[claim_msg(dra_v1_pb2)]))
    answer = response.claims[UID]
    assert answer.error == ""
    assert [(d.pool_name, d.device_name, list(d.request_names)) for d in answer.devices] == [
        (NODE, "0000-3b-02-4", ["nic"]), (NODE, "0000-3b-02-5", ["nic"])]
    kind = f"{DRIVER}/claim"
    assert list(answer.devices[0].cdi_device_ids) == [f"{kind}={UID}-nic",
                                                      f"{kind}={UID}-0000-3b-02-4"]
    spec = plugin.specs()[f"sriov-dra-{UID}.yaml"]
    by_name = {d["name"]: d["containerEdits"] for d in spec["devices"]}
    assert by_name[f"{UID}-nic"]["env"][0] == (
        "PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK=0000:3b:02.4,0000:3b:02.5")
    nodes = by_name[f"{UID}-0000-3b-02-4"]["deviceNodes"]
    assert [n["path"] for n in nodes] == ["/dev/vfio/vfio", "/dev/vfio/104"]
    # every CDI id answered names a device of the written spec
    names = {f"{kind}={d['name']}" for d in spec["devices"]}
    assert {i for d in answer.devices for i in d.cdi_device_ids} <= names


async def test_prepare_gives_rdma_char_devices_when_an_rdma_vf_is_allocated(
        plugin: Plugin) -> None:
    allocate(plugin.reader, "0000-d8-00-2")
    response = await plugin.v1().NodePrepareResources(
        dra_v1_pb2.NodePrepareResourcesRequest(claims=[claim_msg(dra_v1_pb2)]))
    assert response.claims[UID].error == ""
    spec = plugin.specs()[f"sriov-dra-{UID}.yaml"]
    paths = [n["path"] for d in spec["devices"] for n in d["containerEdits"].get(
        "deviceNodes", [])]
    assert any(p.startswith("/dev/infiniband/uverbs") for p in paths)


async def test_prepare_is_answered_again_without_the_apiserver_when_repeated(
        plugin: Plugin) -> None:
    allocate(plugin.reader, "0000-3b-02-4")
    request = dra_v1_pb2.NodePrepareResourcesRequest(claims=[claim_msg(dra_v1_pb2)])
    first = await plugin.v1().NodePrepareResources(request)
    plugin.reader.delete("default", "dpdk")
    again = await plugin.v1().NodePrepareResources(request)
    assert again == first and plugin.reader.reads == 1


async def test_prepare_fails_that_claim_only_when_its_uid_is_not_the_apiserver_one(
        plugin: Plugin) -> None:
    allocate(plugin.reader, "0000-3b-02-4")
    other = ClaimRef("default", "second", "0e0e0e0e-0000-4000-8000-000000000002")
    allocate(plugin.reader, "0000-3b-02-5", ref=other)
    stale = ClaimRef("default", "dpdk", "99999999-0000-4000-8000-000000000000")
    response = await plugin.v1().NodePrepareResources(dra_v1_pb2.NodePrepareResourcesRequest(
        claims=[claim_msg(dra_v1_pb2, stale), claim_msg(dra_v1_pb2, other)]))
    assert "deleted and created again" in response.claims[stale.uid].error
    assert response.claims[other.uid].error == ""
    assert list(plugin.specs()) == [f"sriov-dra-{other.uid}.yaml"]


async def test_prepare_fails_naming_the_device_when_it_is_not_on_this_node(
        plugin: Plugin) -> None:
    allocate(plugin.reader, "0000-3b-09-0")
    response = await plugin.v1().NodePrepareResources(
        dra_v1_pb2.NodePrepareResourcesRequest(claims=[claim_msg(dra_v1_pb2)]))
    assert "'0000-3b-09-0'" in response.claims[UID].error
    assert plugin.specs() == {} and not plugin.checkpoint.exists()


async def test_prepare_reports_the_apiserver_error_when_it_is_unreachable(
        plugin: Plugin) -> None:
    plugin.reader.unreachable = True
    response = await plugin.v1().NodePrepareResources(
        dra_v1_pb2.NodePrepareResourcesRequest(claims=[claim_msg(dra_v1_pb2)]))
    assert "connection refused" in response.claims[UID].error


async def test_v1beta1_prepares_and_unprepares_when_the_kubelet_is_older(
        plugin: Plugin) -> None:
    allocate(plugin.reader, "0000-3b-02-4")
    stub = dra_v1beta1_pb2_grpc.DRAPluginStub(plugin.channel)
    prepared = await stub.NodePrepareResources(dra_v1beta1_pb2.NodePrepareResourcesRequest(
        claims=[claim_msg(dra_v1beta1_pb2)]))
    assert prepared.claims[UID].devices[0].device_name == "0000-3b-02-4"
    undone = await stub.NodeUnprepareResources(dra_v1beta1_pb2.NodeUnprepareResourcesRequest(
        claims=[claim_msg(dra_v1beta1_pb2)]))
    assert undone.claims[UID].error == "" and plugin.specs() == {}


async def test_unprepare_removes_the_spec_after_a_restart_when_the_claim_is_gone(
        workdir: Path, host: FakeHost, plugin: Plugin) -> None:
    allocate(plugin.reader, "0000-3b-02-4")
    await plugin.v1().NodePrepareResources(
        dra_v1_pb2.NodePrepareResourcesRequest(claims=[claim_msg(dra_v1_pb2)]))
    await plugin.channel.close()
    await plugin.server.stop()
    # a new daemon process: new server, checkpoint read from the file, the claim deleted
    restarted = await start(workdir, host, FakeClaimReader())
    try:
        assert list(restarted.specs()) == [f"sriov-dra-{UID}.yaml"]
        response = await restarted.v1().NodeUnprepareResources(
            dra_v1_pb2.NodeUnprepareResourcesRequest(claims=[claim_msg(dra_v1_pb2)]))
        assert response.claims[UID].error == ""
        assert restarted.specs() == {}
        assert json.loads(restarted.checkpoint.read_text())["claims"] == {}
        assert restarted.reader.reads == 0
    finally:
        await restarted.channel.close()
        await restarted.server.stop()


async def test_device_info_files_follow_the_claim_when_kernel_vfs_and_sfs_are_prepared(
        workdir: Path, host: FakeHost, plugin: Plugin) -> None:
    allocate(plugin.reader, "0000-3b-02-0", "mlx5-core-sf-2")
    request = dra_v1_pb2.NodePrepareResourcesRequest(claims=[claim_msg(dra_v1_pb2)])
    assert (await plugin.v1().NodePrepareResources(request)).claims[UID].error == ""
    devinfo = workdir / "devinfo"
    assert sorted(p.name for p in devinfo.iterdir()) == [
        "intel.com-intel_sriov_netdevice-0000:3b:02.0-device.json"]  # SFs have none
    doc = json.loads(next(devinfo.iterdir()).read_text())
    assert doc == {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:3b:02.0"}}
    await plugin.channel.close()
    await plugin.server.stop()
    restarted = await start(workdir, host, FakeClaimReader())
    try:
        await restarted.v1().NodeUnprepareResources(
            dra_v1_pb2.NodeUnprepareResourcesRequest(claims=[claim_msg(dra_v1_pb2)]))
        assert list(devinfo.iterdir()) == []
    finally:
        await restarted.channel.close()
        await restarted.server.stop()


async def test_unprepare_succeeds_when_the_claim_was_never_prepared_or_twice(
        plugin: Plugin) -> None:
    request = dra_v1_pb2.NodeUnprepareResourcesRequest(claims=[claim_msg(dra_v1_pb2)])
    for _ in range(2):
        response = await plugin.v1().NodeUnprepareResources(request)
        assert UID in response.claims and response.claims[UID].error == ""


async def test_health_streams_every_device_and_the_change_when_a_vf_goes_unhealthy(
        host: FakeHost, plugin: Plugin) -> None:
    for pb, grpc_mod in ((drahealth_v1_pb2, drahealth_v1_pb2_grpc),
                         (drahealth_v1alpha1_pb2, drahealth_v1alpha1_pb2_grpc)):
        stream = grpc_mod.DRAResourceHealthStub(plugin.channel).NodeWatchResources(
            pb.NodeWatchResourcesRequest())
        first = await asyncio.wait_for(stream.read(), 10)
        health = {d.device.device_name: d.health for d in first.devices}
        assert health["0000-3b-02-4"] == pb.HEALTHY
        assert {d.device.pool_name for d in first.devices} == {NODE}
        plugin.devices.publish(node_devices(host, health={"0000:3b:02.4": Health.UNHEALTHY}))
        second = await asyncio.wait_for(stream.read(), 10)
        assert {d.device.device_name: d.health for d in second.devices}["0000-3b-02-4"] == (
            pb.UNHEALTHY)
        assert all(d.last_updated_time > 0 for d in second.devices)
        stream.cancel()
        plugin.devices.publish(node_devices(host))


async def test_health_is_sent_again_when_nothing_changed_for_the_resend_interval(
        host: FakeHost) -> None:
    """The kubelet turns a device's health to Unknown when the stream has not repeated it
    within its health check timeout (30 s by default), so an unchanged list is re-sent."""
    from sriovdp.kubelet.dra.servicer import DraHealthServicer

    feed: LatestValue[Mapping[str, DraDevice]] = LatestValue(node_devices(host))
    clock = iter(range(1000, 2000))
    servicer = DraHealthServicer(NODE, feed, drahealth_v1_pb2, resend=0.05,
                                 clock=lambda: next(clock))
    stream = servicer.NodeWatchResources(drahealth_v1_pb2.NodeWatchResourcesRequest(), None)
    try:
        answers = [await asyncio.wait_for(anext(stream), 5) for _ in range(3)]
    finally:
        await stream.aclose()
    assert [a.devices[0].last_updated_time for a in answers] == [1000, 1001, 1002]
    assert [len(a.devices) for a in answers] == [len(feed.value)] * 3
    assert {d.health_check_timeout_seconds for d in answers[0].devices} == {1}


def _told(message: Any) -> dict[str, int]:
    return {d.device.device_name: d.health for d in message.devices}


async def test_health_sends_only_the_changed_devices_when_a_vf_changes_then_all_on_resend(
        tmp_path: Path, host: FakeHost) -> None:
    """A change is reported alone (the kubelet merges it into what it knows); the stream's
    first message and each periodic one name every device."""
    p = await start(tmp_path / "w", host, health_resend=0.5)
    try:
        for pb, grpc_mod in ((drahealth_v1_pb2, drahealth_v1_pb2_grpc),
                             (drahealth_v1alpha1_pb2, drahealth_v1alpha1_pb2_grpc)):
            stream = grpc_mod.DRAResourceHealthStub(p.channel).NodeWatchResources(
                pb.NodeWatchResourcesRequest())
            first = _told(await asyncio.wait_for(stream.read(), 10))
            assert first.keys() == p.devices.value.keys()
            p.devices.publish(node_devices(host, health={"0000:3b:02.4": Health.UNHEALTHY}))
            assert _told(await asyncio.wait_for(stream.read(), 10)) == {
                "0000-3b-02-4": pb.UNHEALTHY}
            p.devices.publish(node_devices(host, health={"0000:3b:02.4": Health.UNHEALTHY,
                                                         "0000:3b:02.5": Health.UNHEALTHY}))
            assert _told(await asyncio.wait_for(stream.read(), 10)) == {
                "0000-3b-02-5": pb.UNHEALTHY}
            p.devices.publish(node_devices(host, health={"0000:3b:02.5": Health.UNHEALTHY}))
            assert _told(await asyncio.wait_for(stream.read(), 10)) == {
                "0000-3b-02-4": pb.HEALTHY}
            full = _told(await asyncio.wait_for(stream.read(), 10))  # the periodic report
            assert full == {**first, "0000-3b-02-5": pb.UNHEALTHY}
            stream.cancel()
            p.devices.publish(node_devices(host))
    finally:
        await p.channel.close()
        await p.server.stop()


async def test_health_sends_nothing_when_a_published_value_changes_no_health(
        tmp_path: Path, host: FakeHost) -> None:
    p = await start(tmp_path / "w", host, health_resend=30)
    try:
        stream = drahealth_v1_pb2_grpc.DRAResourceHealthStub(p.channel).NodeWatchResources(
            drahealth_v1_pb2.NodeWatchResourcesRequest())
        await asyncio.wait_for(stream.read(), 10)
        p.devices.publish(node_devices(host))  # a new value, the same health
        p.devices.publish(node_devices(host, health={"0000:3b:02.4": Health.UNHEALTHY}))
        assert _told(await asyncio.wait_for(stream.read(), 10)) == {
            "0000-3b-02-4": drahealth_v1_pb2.UNHEALTHY}
        stream.cancel()
    finally:
        await p.channel.close()
        await p.server.stop()


async def test_health_sends_the_change_when_only_the_changed_pool_entries_are_new(
        tmp_path: Path, host: FakeHost) -> None:
    """The daemon's feed keeps the entries of unchanged pools as the same objects
    (:class:`DraDeviceSet`); the stream compares only the new ones, and still tells every
    change, and nothing when a value keeps every entry."""
    from sriovdp.model.dra.slices import DraDeviceSet
    from sriovdp.model.pools import with_health

    config = parse_config(json.dumps(DEMO_CONFIG))
    pools = build_pools(scan(host.paths), config.resources, default_prefix="intel.com")
    healthy = DraDeviceSet.of(pools)
    p = await start(tmp_path / "w", host, health_resend=30)
    try:
        p.devices.publish(healthy.devices)
        stream = drahealth_v1_pb2_grpc.DRAResourceHealthStub(p.channel).NodeWatchResources(
            drahealth_v1_pb2.NodeWatchResourcesRequest())
        first = _told(await asyncio.wait_for(stream.read(), 10))
        sick = healthy.updated(with_health(pools, {"0000:3b:02.4": Health.UNHEALTHY}))
        assert any(sick.devices[n] is healthy.devices[n] for n in sick.devices)  # kept ones
        p.devices.publish(dict(sick.devices))  # a new value: the same entries, no change
        p.devices.publish(sick.devices)
        assert _told(await asyncio.wait_for(stream.read(), 10)) == {
            "0000-3b-02-4": drahealth_v1_pb2.UNHEALTHY}
        well = sick.updated(with_health(sick.pools, {}))
        p.devices.publish(well.devices)
        assert _told(await asyncio.wait_for(stream.read(), 10)) == {
            "0000-3b-02-4": drahealth_v1_pb2.HEALTHY}
        assert first["0000-3b-02-4"] == drahealth_v1_pb2.HEALTHY
        stream.cancel()
    finally:
        await p.channel.close()
        await p.server.stop()


async def test_health_sends_every_device_when_the_set_of_devices_changes(
        tmp_path: Path, host: FakeHost) -> None:
    """A device gone is simply no longer reported (the kubelet turns it Unknown after its
    timeout); the report after a device set change is full, so nothing is missed."""
    p = await start(tmp_path / "w", host, health_resend=30)
    try:
        stream = drahealth_v1_pb2_grpc.DRAResourceHealthStub(p.channel).NodeWatchResources(
            drahealth_v1_pb2.NodeWatchResourcesRequest())
        first = _told(await asyncio.wait_for(stream.read(), 10))
        fewer = dict(p.devices.value)
        del fewer["0000-3b-02-4"]
        p.devices.publish(fewer)
        assert _told(await asyncio.wait_for(stream.read(), 10)) == {
            n: h for n, h in first.items() if n != "0000-3b-02-4"}
        p.devices.publish(node_devices(host))
        assert _told(await asyncio.wait_for(stream.read(), 10)) == first
        stream.cancel()
    finally:
        await p.channel.close()
        await p.server.stop()


async def test_health_resends_every_device_on_time_when_changes_keep_coming(
        host: FakeHost) -> None:
    """A stream of changes does not push the next full report back: it is due ``resend``
    seconds after the last one, whatever was sent in between."""
    from sriovdp.kubelet.dra.servicer import DraHealthServicer

    feed: LatestValue[Mapping[str, DraDevice]] = LatestValue(node_devices(host))
    servicer = DraHealthServicer(NODE, feed, drahealth_v1_pb2, resend=0.3)
    stream = servicer.NodeWatchResources(drahealth_v1_pb2.NodeWatchResourcesRequest(), None)
    sizes: list[int] = []

    async def flap() -> None:
        down = False
        while True:
            await asyncio.sleep(0.02)
            down = not down
            feed.publish(node_devices(host, health={"0000:3b:02.4": Health.UNHEALTHY}
                                      if down else {}))

    flapper = asyncio.ensure_future(flap())
    try:
        while sizes.count(len(feed.value)) < 3 and len(sizes) < 2000:
            sizes.append(len((await asyncio.wait_for(anext(stream), 5)).devices))
    finally:
        flapper.cancel()
        await stream.aclose()
    assert sizes.count(len(feed.value)) == 3
    assert sizes.count(1) > 0


def test_checkpoint_is_refused_naming_the_file_when_it_is_corrupt(tmp_path: Path) -> None:
    from sriovdp.errors import HostError

    path = tmp_path / "checkpoint.json"
    path.write_text("{not json")
    with pytest.raises(HostError, match=str(path)):
        ClaimCheckpoint(path)


def test_a_device_plugin_cleanup_keeps_claim_specs_when_they_share_the_cdi_dir(
        tmp_path: Path) -> None:
    claims = CdiStore(tmp_path, prefix=SPEC_FILE_PREFIX)
    claims.write({"cdiVersion": "0.5.0", "kind": "a.b/claim", "devices": []},
                 f"sriov-dra-{UID}.yaml")
    assert CdiStore(tmp_path).cleanup() == []
    assert claims.files() == {f"sriov-dra-{UID}.yaml"}


async def test_sockets_are_removed_when_the_server_stops(workdir: Path, host: FakeHost) -> None:
    p = await start(workdir, host)
    assert p.socket.exists() and p.reg_socket.exists()
    await p.channel.close()
    await p.server.stop()
    assert not p.socket.exists() and not p.reg_socket.exists()


async def test_a_stale_socket_file_is_replaced_when_the_server_starts(
        workdir: Path, host: FakeHost) -> None:
    stale = plugin_socket(workdir / "plugins", DRIVER)
    stale.parent.mkdir(parents=True)
    stale.write_text("left by a killed process")
    p = await start(workdir, host)
    try:
        response = await p.v1().NodeUnprepareResources(
            dra_v1_pb2.NodeUnprepareResourcesRequest(claims=[claim_msg(dra_v1_pb2)]))
        assert response.claims[UID].error == ""
    finally:
        await p.channel.close()
        await p.server.stop()


async def test_kubelet_registers_v1_and_prepares_through_it_when_the_plugin_offers_it(
        plugin: Plugin) -> None:
    allocate(plugin.reader, "0000-3b-02-4")
    async with DraKubelet() as kubelet:
        assert await kubelet.register(plugin.reg_socket) == (True, "")
        assert (kubelet.driver, kubelet.service, kubelet.endpoint) == (
            DRIVER, "v1.DRAPlugin", str(plugin.socket))
        answer = (await kubelet.prepare(REF))[UID]
        assert [d.device_name for d in answer.devices] == ["0000-3b-02-4"]
        assert (await kubelet.unprepare(REF))[UID].error == ""
    assert plugin.specs() == {}


async def test_registration_is_refused_and_reported_when_no_version_is_known(
        workdir: Path) -> None:
    statuses: list[tuple[bool, str]] = []
    # an old plugin build that offers only an API the kubelet dropped
    servicer = DraRegistrationServicer(DRIVER, str(workdir / "dra.sock"),
                                       services=("v1alpha4.Node",),
                                       on_status=lambda ok, err: statuses.append((ok, err)))
    old = grpc.aio.server()
    pluginregistration_pb2_grpc.add_RegistrationServicer_to_server(servicer, old)
    old.add_insecure_port(f"unix:{workdir / 'old-reg.sock'}")
    await old.start()
    try:
        async with DraKubelet() as kubelet:
            ok, error = await kubelet.register(workdir / "old-reg.sock")
        assert not ok and "none of services supported by the plugin" in error
        assert statuses == [(False, error)]
    finally:
        await old.stop(None)
