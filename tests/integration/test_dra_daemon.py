"""DRA mode through the daemon: the Reconciler with ``--dra`` on the demo FakeHost, device
plugin pools seen by the KubeletEmulator, DRA pools by the in-memory apiserver
(:class:`FakeSliceApi`) and the kubelet's DRA side (:class:`DraKubelet` on the real sockets).

Never one device to two pods across the two modes: a VF a pod holds through a device plugin
pool is not published in a ResourceSlice when the config moves its pool to DRA, and a VF
prepared for a DRA claim is not offered by a device plugin pool when the config moves it
back, until released (live reload and restart alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_kit import (
    ALL_DPDK,
    ALL_NET,
    CONFIG,
    DPDK,
    NET,
    free_port,
    http_get,
    settings_for,
    write,
)

from sriovdp.daemon.reconciler import Reconciler
from sriovdp.daemon.settings import Settings
from sriovdp.kubelet.dra.apiserver import DraApis
from sriovdp.kubelet.dra.server import registration_socket
from sriovdp.model.config import parse_config
from sriovdp.model.dra.modes import DraMode
from sriovdp.model.dra.names import device_name
from sriovdp.model.dra.prepare import AllocatedDevice, ClaimAllocation, ClaimRef
from sriovdp.model.health import LinkState
from sriovdp.testing import eventually
from sriovdp.testing.dra import DraKubelet, FakeClaimReader, FakeNodeReader, FakeSliceApi
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator
from sriovdp.testing.links import FakeLinkSource
from sriovdp.testing.podresources import FakePodResources

DRIVER = "sriov.network.k8s.io"
NODE = "worker-1"
NODE_UID = "0b0e5a55-1111-4222-8333-444455556666"
DEV = "0000:3b:02.0"
UID = "7d3c2b1a-0000-4000-8000-00000000c1a1"
REF = ClaimRef("default", "c1", UID)


def marked(config: dict[str, Any], *names: str) -> dict[str, Any]:
    """``config`` with ``"dra": true`` on the resources named ``names``."""
    out = json.loads(json.dumps(config))
    for resource in out["resourceList"]:
        if resource["resourceName"] in names:
            resource["dra"] = True
    return out


DRA_NET = marked(CONFIG, "net")
"""intel.com/net through DRA, intel.com/dpdk through a device plugin socket."""


@dataclass
class Apiserver:
    slices: FakeSliceApi = field(default_factory=FakeSliceApi)
    claims: FakeClaimReader = field(default_factory=FakeClaimReader)
    nodes: FakeNodeReader = field(default_factory=lambda: FakeNodeReader({NODE: NODE_UID}))

    def apis(self) -> DraApis:
        return DraApis(slices=self.slices, claims=self.claims, nodes=self.nodes)

    def devices(self) -> dict[str, dict[str, Any]]:
        """Device name → device of the node's slices (the highest generation)."""
        mine = [s for s in self.slices.slices.values() if s["spec"]["nodeName"] == NODE]
        if not mine:
            return {}
        top = max(s["spec"]["pool"]["generation"] for s in mine)
        return {d["name"]: d for s in mine if s["spec"]["pool"]["generation"] == top
                for d in s["spec"].get("devices") or []}

    def ids(self) -> set[str]:
        return {d["attributes"]["pciAddress"]["string"] for d in self.devices().values()}

    def allocate(self, dev_id: str, ref: ClaimRef = REF) -> None:
        """What the scheduler writes into the claim's status."""
        self.claims.put(ClaimAllocation(ref, (AllocatedDevice("nic", DRIVER, NODE,
                                                              device_name(dev_id)),)))


def dra_settings(workdir: Path, host: FakeHost, config: dict[str, Any] = DRA_NET,
                 **extra: Any) -> Settings:
    settings = replace(settings_for(workdir, host), dra=DraMode.MARKED, node_name=NODE,
                       kubelet_plugins_dir=workdir / "plugins",
                       **{"resync_interval": 0.5, **extra})
    write(settings.config_file, config)
    return settings


@contextlib.asynccontextmanager
async def dra_daemon(settings: Settings, api: Apiserver, config: dict[str, Any] = DRA_NET, *,
                     links: FakeLinkSource | None = None,
                     pods: FakePodResources | None = None) -> AsyncIterator[Reconciler]:
    """The daemon; ``pods``: what pods hold when no KubeletEmulator runs (the first
    publication waits for the kubelet's pod resources API)."""
    daemon = Reconciler(settings, parse_config(json.dumps(config)), links=links,
                        dra_apis=api.apis(), pod_resources=pods)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 5)
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)
        # the next daemon of the test registers device plugins through kubelet.sock again
        # (the emulator runs in socket mode; the DRA registration dir is ours only)
        shutil.rmtree(settings.plugins_registry_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def dra_kubelet(settings: Settings) -> AsyncIterator[DraKubelet]:
    """The kubelet's DRA side, registered with the daemon's plugin."""
    async with DraKubelet() as kubelet:
        socket = registration_socket(settings.plugins_registry_dir, DRIVER)
        await eventually(socket.exists, what="the DRA registration socket")
        assert await kubelet.register(socket) == (True, "")
        yield kubelet


def emulator(settings: Settings) -> KubeletEmulator:
    return KubeletEmulator(settings.device_plugin_dir,
                           pod_resources_socket=settings.pod_resources_socket)


async def published(api: Apiserver, want: set[str], what: str = "slices") -> None:
    await eventually(lambda: api.ids() == want, timeout=5,
                     what=f"{what}: {sorted(want)} (have {sorted(api.ids())})")


async def prepared(api: Apiserver, dra: DraKubelet) -> None:
    """Every net VF published, then ``DEV`` allocated to claim ``REF`` and prepared."""
    await published(api, ALL_NET)
    api.allocate(DEV)
    assert (await dra.prepare(REF))[UID].error == ""


# --- pools split between the two modes ------------------------------------------------------


async def test_dra_pools_are_published_and_device_plugin_pools_registered_when_dra_is_on(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    async with emulator(settings) as kubelet, dra_daemon(settings, api) as daemon:
        await published(api, ALL_NET)
        await kubelet.wait_for(DPDK, lambda d: set(d) == ALL_DPDK, timeout=5)
        assert NET not in {r.resource for r in kubelet.registrations}  # never both ways
        assert set(daemon.endpoints) == {DPDK}
        (slice_,) = api.slices.slices.values()
        assert slice_["metadata"]["ownerReferences"][0]["uid"] == NODE_UID
        vf = api.devices()[device_name(DEV)]["attributes"]
        assert vf["resourceName"] == {"string": NET}
        assert vf["k8s.cni.cncf.io/resourceName"] == {"string": NET}


async def test_every_pool_is_published_and_none_registered_when_dra_is_all(
        workdir: Path, host: FakeHost) -> None:
    settings = replace(dra_settings(workdir, host, CONFIG), dra=DraMode.ALL)
    api = Apiserver()
    async with emulator(settings) as kubelet, dra_daemon(settings, api, CONFIG) as daemon:
        await published(api, ALL_NET | ALL_DPDK)
        assert daemon.endpoints == {}
        assert kubelet.registrations == []


async def test_device_plugin_pools_work_unchanged_when_no_pool_is_marked(
        workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    settings = dra_settings(workdir, host, CONFIG)
    api = Apiserver()
    async with emulator(settings) as kubelet, dra_daemon(settings, api, CONFIG):
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        await kubelet.wait_capacity(DPDK, (4, 4), timeout=5)
        await published(api, set())  # the node's pool is there, empty
        assert len(api.slices.slices) == 1
    said = [r.getMessage() for r in caplog.records if "no pool is served through DRA" in
            r.getMessage()]
    assert len(said) == 1, said  # once, not at every pass


async def test_claim_is_prepared_with_env_and_device_info_when_the_kubelet_asks(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    async with dra_daemon(settings, api, pods=FakePodResources()) as daemon, \
            dra_kubelet(settings) as kubelet:
        await published(api, ALL_NET)
        api.allocate(DEV)
        answer = (await kubelet.prepare(REF))[UID]
        assert answer.error == ""
        (device,) = answer.devices
        assert (device.pool_name, device.device_name) == (NODE, "0000-3b-02-0")
        (spec_file,) = settings.cdi_dir.glob("sriov-dra-*.yaml")
        env = [e for d in yaml.safe_load(spec_file.read_text())["devices"]
               for e in d["containerEdits"].get("env", [])]
        assert f"PCIDEVICE_INTEL_COM_NET={DEV}" in env
        info = settings.device_info_dir / f"intel.com-net-{DEV}-device.json"
        assert info.exists()
        assert daemon.status().dra is not None and daemon.status().dra.prepared_claims == 1
        assert (await kubelet.unprepare(REF))[UID].error == ""
        assert not info.exists() and not list(settings.cdi_dir.glob("sriov-dra-*"))


# --- health ---------------------------------------------------------------------------------


async def test_a_vf_is_withdrawn_from_the_slices_when_its_link_loses_carrier(
        workdir: Path, host: FakeHost) -> None:
    settings = replace(dra_settings(workdir, host), resync_interval=3600)
    api = Apiserver()
    links = FakeLinkSource([LinkState("ens785f0", True, "UP"), LinkState("ens785f0v1", True,
                                                                          "UP")])
    async with dra_daemon(settings, api, links=links, pods=FakePodResources()):
        await published(api, ALL_NET)
        links.set_carrier("ens785f0v1", False)
        await published(api, ALL_NET - {"0000:3b:02.1"}, "the VF without carrier withdrawn")
        links.set_carrier("ens785f0v1", True)
        await published(api, ALL_NET, "back with its carrier")
        links.set_carrier("ens785f0", False)  # the PF: every VF of it
        await published(api, set(), "every VF of the PF withdrawn")


# --- the apiserver failing ------------------------------------------------------------------


async def test_device_plugin_pools_serve_and_readyz_names_dra_when_the_apiserver_fails(
        workdir: Path, host: FakeHost) -> None:
    port = free_port()
    settings = dra_settings(workdir, host, health_address=f"127.0.0.1:{port}",
                            metrics_address="")
    api = Apiserver()
    api.slices.unreachable = True
    async with emulator(settings) as kubelet, dra_daemon(settings, api) as daemon, \
            dra_kubelet(settings):
        await eventually(lambda: any("publishing ResourceSlices failed" in p
                                     for p in daemon.status().not_ready()),
                         what="the failure in /readyz")
        code, body = await http_get(port, "/readyz")
        assert code != 200
        assert "dra: publishing ResourceSlices failed" in body and "retrying in" in body
        # the device plugin pools do not wait for the apiserver
        allocation = await kubelet.admit(DPDK, 1, pod="p")
        assert allocation.device_ids
        # the host changes meanwhile: nothing lost when the apiserver returns
        host.bind("0000:3b:02.3", "vfio-pci", iommu_group=98)
        daemon.trigger("test")
        await eventually(lambda: api.slices.calls.count(("list", "")) >= 3,
                         what="retries with back-off")
        api.slices.unreachable = False
        await published(api, ALL_NET - {"0000:3b:02.3"}, "published once it answers")
        await eventually(lambda: daemon.is_ready, timeout=5, what="ready again")
        status = daemon.status().dra
        assert status is not None and status.publish_errors >= 2
        assert status.devices_published == 3


async def test_slices_are_restored_when_someone_deletes_them(workdir: Path,
                                                            host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    async with dra_daemon(settings, api, pods=FakePodResources()):
        await published(api, ALL_NET)
        api.slices.slices.clear()  # a restarting kubelet wipes the node's slices
        await published(api, ALL_NET, "restored by the periodic forced publication")


async def test_slices_are_restored_at_once_when_the_kubelet_registers_the_plugin_again(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host, resync_interval=3600)
    api = Apiserver()
    async with dra_daemon(settings, api, pods=FakePodResources()), dra_kubelet(settings):
        await published(api, ALL_NET)
        api.slices.slices.clear()
        async with dra_kubelet(settings):  # the kubelet restarted: it registers again
            await published(api, ALL_NET, "restored after the registration")


async def test_slices_are_restored_when_the_kubelet_deletes_them_after_registering_the_plugin(
        workdir: Path, host: FakeHost) -> None:
    """A starting kubelet wipes its node's slices in the background: the wipe may land after
    the registration's forced publication."""
    settings = dra_settings(workdir, host, resync_interval=3600)
    api = Apiserver()
    async with dra_daemon(settings, api, pods=FakePodResources()), dra_kubelet(settings):
        await published(api, ALL_NET)
        await asyncio.sleep(1.5)
        api.slices.slices.clear()  # the late wipe
        await published(api, ALL_NET, "restored by a later forced publication")


async def test_the_plugin_is_served_again_when_its_registration_socket_is_deleted(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    socket = registration_socket(settings.plugins_registry_dir, DRIVER)
    async with dra_daemon(settings, api, pods=FakePodResources()) as daemon, dra_kubelet(settings):
        await eventually(lambda: daemon.dra is not None and daemon.dra.registered,
                         what="registered")
        socket.unlink()
        await eventually(lambda: daemon.supervisor.failures.get("dra plugin"),
                         what="the failure shown")
        await eventually(socket.exists, what="the registration socket back")
        async with dra_kubelet(settings):  # the plugin watcher registers it again
            await eventually(lambda: "dra plugin" not in daemon.supervisor.failures
                             and daemon.dra is not None and daemon.dra.registered,
                             what="registered again")


async def test_readyz_names_the_plugin_while_the_kubelet_has_not_registered_it(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    async with emulator(settings) as kubelet, dra_daemon(settings, api) as daemon:
        await published(api, ALL_NET)
        await kubelet.wait_capacity(DPDK, (4, 4), timeout=5)
        assert any("not registered with the kubelet" in p for p in daemon.status().not_ready())
        async with dra_kubelet(settings):
            await eventually(lambda: not daemon.status().not_ready(), what="ready")


async def test_the_watcher_mode_emulator_registers_the_dra_plugin_beside_the_pools(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    async with KubeletEmulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                               watcher=True, pod_resources_socket=settings.pod_resources_socket,
                               watcher_period=0.05) as kubelet, \
            dra_daemon(settings, api) as daemon:
        record = await kubelet.wait_dra_registered(DRIVER)
        await kubelet.wait_capacity(DPDK, (4, 4), timeout=5)
        await eventually(lambda: not daemon.status().not_ready(), what="ready")
        assert daemon.dra is not None and daemon.dra.registered
    assert (record.endpoint, record.service, record.health_service) == (
        str(daemon.dra.socket), "v1.DRAPlugin", "v1.DRAResourceHealth")
    assert record.socket_path == str(registration_socket(settings.plugins_registry_dir, DRIVER))
    assert {r.mode for r in kubelet.registrations} == {"watcher"}


async def test_dra_metrics_count_publications_devices_and_claims_when_scraped(
        workdir: Path, host: FakeHost) -> None:
    port = free_port()
    settings = dra_settings(workdir, host, metrics_address=f"127.0.0.1:{port}")
    api = Apiserver()
    async with dra_daemon(settings, api, pods=FakePodResources()), dra_kubelet(settings) as kubelet:
        await published(api, ALL_NET)
        api.allocate(DEV)
        assert (await kubelet.prepare(REF))[UID].error == ""
        _, body = await http_get(port, "/metrics")
        assert "sriovdp_dra_publish_errors_total 0.0" in body
        assert "sriovdp_dra_devices_published 4.0" in body
        assert "sriovdp_dra_prepared_claims 1.0" in body


async def test_pool_metrics_cover_dra_pools_and_say_how_each_pool_is_served_when_scraped(
        workdir: Path, host: FakeHost) -> None:
    port = free_port()
    settings = dra_settings(workdir, host, metrics_address=f"127.0.0.1:{port}")
    api = Apiserver()
    async with emulator(settings) as kubelet, dra_daemon(settings, api), dra_kubelet(settings):
        await published(api, ALL_NET)
        await kubelet.wait_capacity(DPDK, (4, 4), timeout=5)
        _, body = await http_get(port, "/metrics")
    for line in ('sriovdp_pool_info{resource="intel.com/net",served="dra"} 1.0',
                 'sriovdp_pool_info{resource="intel.com/dpdk",served="device-plugin"} 1.0',
                 'sriovdp_pool_devices{resource="intel.com/net"} 4.0',
                 'sriovdp_pool_healthy_devices{resource="intel.com/net"} 4.0',
                 'sriovdp_pool_unhealthy_devices{resource="intel.com/net"} 0.0',
                 'sriovdp_pool_devices{resource="intel.com/dpdk"} 4.0',
                 'sriovdp_pool_registered{resource="intel.com/dpdk"} 1.0'):
        assert line in body, line
    # the device plugin's per-endpoint series stay what they were: no socket, no series
    assert 'sriovdp_pool_registered{resource="intel.com/net"}' not in body
    assert 'sriovdp_registrations_total{resource="intel.com/net"}' not in body


# --- never one device to two pods across the two modes --------------------------------------


async def hold_one(kubelet: KubeletEmulator, pod: str = "busy") -> str:
    await kubelet.wait_capacity(NET, (4, 4), timeout=5)
    (dev,) = (await kubelet.admit(NET, 1, pod=pod)).device_ids
    return dev


async def test_a_held_vf_is_not_published_when_a_reload_moves_its_pool_to_dra(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host, CONFIG)
    api = Apiserver()
    async with emulator(settings) as kubelet, dra_daemon(settings, api, CONFIG) as daemon:
        dev = await hold_one(kubelet)
        write(settings.config_file, DRA_NET)
        assert daemon.reload_config("test")
        await published(api, ALL_NET - {dev}, "the pool's free VFs")
        # the granting pool drains: still offers the held VF, nothing else
        await kubelet.wait_for(NET, lambda d: set(d) == {dev}, timeout=5)
        for _ in range(3):  # a few passes (resync 0.5 s): still held, still not published
            await asyncio.sleep(0.5)
            assert dev not in api.ids()
        kubelet.release("busy")
        await published(api, ALL_NET, "the released VF")
        await eventually(lambda: NET not in daemon.endpoints, what="the drained pool gone")


async def test_a_held_vf_is_not_published_when_its_pool_moved_to_dra_across_a_restart(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host, CONFIG)
    api = Apiserver()
    async with emulator(settings) as kubelet:
        async with dra_daemon(settings, api, CONFIG):
            dev = await hold_one(kubelet)
        write(settings.config_file, DRA_NET)
        async with dra_daemon(settings, api):
            await published(api, ALL_NET - {dev}, "the pool's free VFs")
            await asyncio.sleep(1.0)
            assert dev not in api.ids()
            kubelet.release("busy")
            await published(api, ALL_NET, "the released VF")


async def test_a_prepared_vf_is_not_offered_when_a_reload_moves_its_pool_back_to_the_device_plugin(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    async with emulator(settings) as kubelet, dra_daemon(settings, api) as daemon, \
            dra_kubelet(settings) as dra:
        await prepared(api, dra)
        write(settings.config_file, CONFIG)
        assert daemon.reload_config("test")
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET - {DEV}, timeout=5)
        for _ in range(3):
            await asyncio.sleep(0.5)
            assert DEV not in kubelet.devices(NET)
        assert api.ids() == {DEV}  # kept in its (draining) DRA pool
        assert (await dra.unprepare(REF))[UID].error == ""
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET, timeout=5)
        await published(api, set(), "the drained DRA pool")


async def test_a_prepared_vf_is_not_offered_when_its_pool_moved_back_across_a_restart(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    info = settings.device_info_dir / f"intel.com-net-{DEV}-device.json"
    async with emulator(settings) as kubelet:
        async with dra_daemon(settings, api), dra_kubelet(settings) as dra:
            await prepared(api, dra)
        assert info.exists()
        write(settings.config_file, CONFIG)
        async with dra_daemon(settings, api, CONFIG), dra_kubelet(settings) as dra:
            await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET - {DEV}, timeout=5)
            await asyncio.sleep(1.0)
            assert DEV not in kubelet.devices(NET)
            # the claim's device-info file is not the device plugin's "stale" file
            assert info.exists()
            api.claims.delete("default", "c1")  # the claim is gone: unprepare still works
            assert (await dra.unprepare(REF))[UID].error == ""
            assert not info.exists()
            await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET, timeout=5)


# --- bad input ------------------------------------------------------------------------------


async def test_the_daemon_starts_when_the_apiserver_is_down_and_publishes_when_it_returns(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    api.nodes.unreachable = True
    async with dra_daemon(settings, api, pods=FakePodResources()) as daemon:
        await eventually(lambda: daemon.status().dra is not None
                         and daemon.status().dra.publish_errors >= 1, what="a failure")
        assert api.slices.slices == {}
        api.nodes.unreachable = False
        await published(api, ALL_NET)


def test_a_pool_marked_for_dra_is_a_config_error_when_the_daemon_runs_without_dra(
        workdir: Path) -> None:
    from sriovdp.daemon.configfile import load_config
    from sriovdp.errors import ConfigError

    path = workdir / "c.json"
    write(path, marked(CONFIG, "dpdk"))
    with pytest.raises(ConfigError) as err:
        load_config(path, default_prefix="intel.com")
    (problem,) = err.value.problems
    assert problem.path == "resourceList[1].dra"
    assert "got true" in problem.message and "--dra" in problem.message
    assert load_config(path, default_prefix="intel.com", dra=DraMode.MARKED).resources[1].dra


def test_a_dra_key_that_is_not_a_boolean_is_a_config_error_when_parsed() -> None:
    from sriovdp.errors import ConfigError

    doc = json.loads(json.dumps(CONFIG))
    doc["resourceList"][0]["dra"] = "yes"
    with pytest.raises(ConfigError) as err:
        parse_config(json.dumps(doc))
    (problem,) = err.value.problems
    assert problem.path == "resourceList[0].dra"
    assert problem.message == 'expected a boolean, got "yes"'


async def test_a_reload_marking_a_pool_for_dra_is_rejected_when_the_daemon_runs_without_dra(
        workdir: Path, host: FakeHost) -> None:
    from daemon_kit import running

    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    async with emulator(settings) as kubelet, running(settings) as daemon:
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        write(settings.config_file, DRA_NET)
        assert daemon.reload_config("test")
        await eventually(lambda: daemon.config_source.reloads["failed"] == 1, what="rejected")
        assert not daemon.config.resources[0].dra
        assert set(daemon.endpoints) == {NET, DPDK}


async def test_a_second_instance_serves_dra_only_after_the_first_exits_when_both_run(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    first_api, second_api = Apiserver(), Apiserver()
    async with dra_daemon(settings, first_api, pods=FakePodResources()) as first, \
            dra_kubelet(settings) as kubelet:
        await published(first_api, ALL_NET)
        first_api.allocate(DEV)
        assert (await kubelet.prepare(REF))[UID].error == ""
        second = Reconciler(settings, parse_config(json.dumps(DRA_NET)),
                            dra_apis=second_api.apis(), pod_resources=FakePodResources())
        task = asyncio.create_task(second.run())
        try:
            assert second.dra is not None
            await eventually(lambda: second.dra is not None and second.dra.waiting,
                             what="the second instance waiting")
            assert any("dra: waiting for another sriovdp instance" in p
                       for p in second.status().not_ready())
            await asyncio.sleep(0.5)
            assert second_api.slices.calls == []  # it publishes nothing meanwhile
            first.stop()
            await eventually(lambda: second.dra is not None and second.dra.waiting is None,
                             what="the second instance taking over")
            # it read the claim the first prepared: a hold, and its file is not stale
            assert second.dra.holds() == {f"dra:{NET}": frozenset({DEV})}
            await published(second_api, ALL_NET)
        finally:
            second.stop()
            await asyncio.wait_for(task, 10)
