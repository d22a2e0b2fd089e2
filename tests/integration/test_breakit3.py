"""Break-it pass 3 on DRA mode: ways one device reaches two consumers, or a prepared claim
loses its clean-up. Each test is a strict xfail naming the root cause; it passes once fixed.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from daemon_kit import ALL_DPDK, ALL_NET, CONFIG, DPDK, NET, write
from test_dra_daemon import (
    DEV,
    DRA_NET,
    REF,
    UID,
    Apiserver,
    dra_daemon,
    dra_kubelet,
    dra_settings,
    emulator,
    prepared,
    published,
)
from test_dra_publish import devices_of

from sriovdp.errors import SriovdpError
from sriovdp.host.cdi import CdiStore
from sriovdp.host.devinfo import DeviceInfoStore
from sriovdp.host.draclaims import ClaimCheckpoint
from sriovdp.host.sysfs import scan
from sriovdp.kubelet.dra.apiserver import DraApis
from sriovdp.kubelet.dra.claims import KubernetesClaimReader
from sriovdp.kubelet.dra.preparer import ClaimPreparer
from sriovdp.kubelet.dra.publisher import SlicePublisher
from sriovdp.model.config import parse_config
from sriovdp.model.dra.prepare import (
    SPEC_FILE_PREFIX,
    AllocatedDevice,
    ClaimAllocation,
    ClaimRef,
)
from sriovdp.model.dra.slices import DraDevice, HealthPolicy, dra_devices
from sriovdp.model.pools import build_pools
from sriovdp.testing.dra import FakeClaimReader, FakeSliceApi
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.podresources import FakePodResources

DRIVER = "sriov.network.k8s.io"
NODE = "worker-1"


# --- one device, two consumers across a restart with other DRA flags ------------------------


async def test_a_prepared_vf_is_not_offered_when_the_daemon_restarts_without_dra(
        workdir: Path, host: FakeHost) -> None:
    """The operator moves the node back to the device plugin by dropping --dra (and the
    "dra" marks) while a pod still runs with a prepared claim's VF."""
    settings = dra_settings(workdir, host)
    api = Apiserver()
    async with emulator(settings) as kubelet:
        async with dra_daemon(settings, api), dra_kubelet(settings) as dra:
            await prepared(api, dra)
        write(settings.config_file, CONFIG)
        plain = replace(settings, dra=None)
        async with dra_daemon(plain, api, CONFIG):
            await kubelet.wait_for(NET, lambda d: bool(d), timeout=5)
            await asyncio.sleep(1.0)
            assert DEV not in kubelet.devices(NET), "the claim's VF offered to pods too"


async def test_a_prepared_vf_is_not_published_again_when_the_dra_driver_name_changes(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    async with dra_daemon(settings, api, pods=FakePodResources()), \
            dra_kubelet(settings) as dra:
        await prepared(api, dra)
    other = Apiserver()
    renamed = replace(settings, dra_driver="sriov.example.com")
    async with dra_daemon(renamed, other, pods=FakePodResources()):
        await asyncio.sleep(1.0)
        ids = {d["attributes"]["pciAddress"]["string"]
               for s in other.slices.slices.values() for d in s["spec"].get("devices") or []}
        assert ids, "the renamed driver published its slices"
        assert DEV not in ids, "the prepared VF offered to new claims by the new driver"


# --- concurrent calls for one claim UID ----------------------------------------------------


class GatedReader:
    """A claim reader whose every read waits until the test opens its own gate."""

    def __init__(self, inner: FakeClaimReader) -> None:
        self.inner = inner
        self.gates: list[asyncio.Event] = []

    async def read(self, ref: ClaimRef) -> ClaimAllocation:
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        return await self.inner.read(ref)


def _devices(host: FakeHost) -> dict[str, DraDevice]:
    config = parse_config(json.dumps(DRA_NET))
    return dra_devices(build_pools(scan(host.paths), config.resources,
                                   default_prefix="intel.com"))


async def _until(cond: object, what: str) -> None:
    for _ in range(200):
        if callable(cond) and cond():
            return
        await asyncio.sleep(0)
    raise AssertionError(what)


def _gated_preparer(workdir: Path, host: FakeHost
                    ) -> tuple[ClaimPreparer, GatedReader, ClaimCheckpoint, Path]:
    """A preparer of the claim REF (one VF) whose claim reads wait on the test's gates."""
    devices = _devices(host)
    name = next(n for n, d in devices.items() if d.device.id == DEV)
    inner = FakeClaimReader()
    inner.put(ClaimAllocation(REF, (AllocatedDevice("nic", DRIVER, NODE, name),)))
    reader = GatedReader(inner)
    cdi_dir = workdir / "cdi"
    checkpoint = ClaimCheckpoint(workdir / "plugin" / "checkpoint.json")
    preparer = ClaimPreparer(driver=DRIVER, pool_name=NODE, reader=reader,
                             devices=lambda: devices, facts=lambda: scan(host.paths).facts,
                             cdi=CdiStore(cdi_dir, prefix=SPEC_FILE_PREFIX),
                             checkpoint=checkpoint)
    return preparer, reader, checkpoint, cdi_dir


async def test_claim_stays_unprepared_when_an_unprepare_follows_queued_calls_for_its_uid(
        workdir: Path, host: FakeHost) -> None:
    preparer, reader, checkpoint, cdi_dir = _gated_preparer(workdir, host)
    # the kubelet's calls for one claim, in this order: prepare, unprepare, prepare, unprepare
    p1 = asyncio.create_task(preparer.prepare(REF))
    await _until(lambda: len(reader.gates) == 1, "the first prepare reading")
    u1 = asyncio.create_task(preparer.unprepare(REF))
    p2 = asyncio.create_task(preparer.prepare(REF))
    await asyncio.sleep(0)
    reader.gates[0].set()
    await p1
    await u1
    await _until(lambda: len(reader.gates) == 2, "the second prepare reading")
    u2 = asyncio.create_task(preparer.unprepare(REF))
    await asyncio.sleep(0.05)
    reader.gates[1].set()
    await asyncio.gather(p2, u2)
    # the last call was an unprepare: nothing may be left prepared
    assert checkpoint.get(UID) is None, "the claim left in the checkpoint (a hold forever)"
    assert not list(cdi_dir.glob(f"{SPEC_FILE_PREFIX}*")), "the claim's CDI spec left"


async def test_calls_for_a_uid_run_in_arrival_order_when_one_waiting_call_is_cancelled(
        workdir: Path, host: FakeHost) -> None:
    preparer, reader, checkpoint, cdi_dir = _gated_preparer(workdir, host)
    p1 = asyncio.create_task(preparer.prepare(REF))
    await _until(lambda: len(reader.gates) == 1, "the first prepare reading")
    gone = asyncio.create_task(preparer.unprepare(REF))  # the kubelet's call times out
    u1 = asyncio.create_task(preparer.unprepare(REF))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    p2 = asyncio.create_task(preparer.prepare(REF))
    await asyncio.sleep(0)
    reader.gates[0].set()
    await asyncio.gather(p1, u1)
    await _until(lambda: len(reader.gates) == 2, "the second prepare reading")
    assert checkpoint.get(UID) is None, "the unprepare ran before the first prepare ended"
    reader.gates[1].set()
    await p2
    assert checkpoint.get(UID) is not None, "the last call, a prepare, left nothing prepared"
    await preparer.unprepare(REF)
    assert preparer._locks == {}, "a claim's lock kept after its last call"



# --- the device plugin side waiting on the apiserver -----------------------------------------


class BlackHole:
    """A TCP port that accepts connections and never answers (an apiserver behind a dead
    load balancer, or a firewall that drops replies)."""

    def __init__(self) -> None:
        self.accepted: list[asyncio.StreamWriter] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(writer)

    async def close(self) -> None:
        for writer in self.accepted:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_device_plugin_pool_gets_a_new_vf_when_claim_reads_hang_on_the_apiserver(
        workdir: Path, host: FakeHost) -> None:
    from kubernetes import client

    hole = BlackHole()
    await hole.start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{hole.port}"
    resource_api = client.ResourceV1Api(client.ApiClient(configuration))
    api = Apiserver()
    apis = DraApis(slices=api.slices, claims=KubernetesClaimReader(resource_api),
                   nodes=api.nodes)
    api.apis = lambda: apis  # type: ignore[method-assign]
    settings = dra_settings(workdir, host)
    workers = min(32, (os.cpu_count() or 1) + 4)  # the default executor's size
    refs = [ClaimRef("default", f"c{i}", f"00000000-0000-4000-8000-{i:012d}")
            for i in range(workers + 2)]
    try:
        async with emulator(settings) as kubelet, dra_daemon(settings, api), \
                dra_kubelet(settings) as dra:
            await published(api, ALL_NET)
            await kubelet.wait_for(DPDK, lambda d: set(d) == ALL_DPDK, timeout=5)
            # pods with claims start while the apiserver does not answer
            prepares = [asyncio.create_task(dra.prepare(r)) for r in refs]
            for _ in range(100):
                if len(hole.accepted) >= workers:
                    break
                await asyncio.sleep(0.05)
            assert len(hole.accepted) >= workers, "the claim reads reached the apiserver"
            # meanwhile a VF is bound to vfio-pci: the device plugin pool should get it
            host.bind("0000:3b:02.3", "vfio-pci", iommu_group=98)
            await kubelet.wait_for(DPDK, lambda d: "0000:3b:02.3" in d, timeout=8)
            assert not any(p.done() for p in prepares), \
                "the device plugin pool waited for the claim reads to time out"
            await asyncio.gather(*prepares)
    finally:
        await hole.close()


# --- the pool as the allocator sees it during a publication ------------------------------------


@pytest.fixture(scope="module")
def many_vfs(tmp_path_factory: pytest.TempPathFactory) -> FakeHost:
    """Two PFs with 150 VFs each: 300 devices."""
    host = FakeHost(tmp_path_factory.mktemp("breakit3-vfs"))
    for n, bus in enumerate(("3b", "5e")):
        pf = host.add_pf(f"0000:{bus}:00.0", vendor="8086", device="1592", driver="ice",
                         ifname=f"ens{n}f0", numa_node=n, total_vfs=256, iommu_group=10 + n)
        host.add_vfs(pf, 150, device="1889", driver="iavf", iommu_group_base=100 + 200 * n)
    return host


class CheckedSliceApi(FakeSliceApi):
    """FakeSliceApi that, after every write, looks at the node's pool as the allocator does
    (the slices of the highest generation) and records what is wrong with it."""

    def __init__(self) -> None:
        super().__init__()
        self.wrong: list[str] = []

    def _look(self, after: str) -> None:
        mine = list(self.slices.values())
        if not mine:
            return
        top = max(s["spec"]["pool"]["generation"] for s in mine)
        current = [s for s in mine if s["spec"]["pool"]["generation"] == top]
        names = Counter(d["name"] for s in current for d in s["spec"].get("devices") or [])
        twice = sorted(n for n, k in names.items() if k > 1)
        if twice:
            self.wrong.append(f"after {after}: {len(twice)} devices in two slices of "
                              f"generation {top}, e.g. {twice[0]}")

    async def create(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        stored = await super().create(doc)
        self._look(f"create {doc['metadata']['name']}")
        return stored

    async def replace(self, doc: Mapping[str, Any], resource_version: str) -> dict[str, Any]:
        stored = await super().replace(doc, resource_version)
        self._look(f"replace {doc['metadata']['name']}")
        return stored

    async def delete(self, name: str) -> None:
        await super().delete(name)
        self._look(f"delete {name}")


@pytest.mark.parametrize(("before", "after"), [
    (HealthPolicy.TAINT, HealthPolicy.WITHDRAW), (HealthPolicy.WITHDRAW, HealthPolicy.TAINT)])
async def test_no_device_is_in_two_slices_when_the_daemon_restarts_with_another_dra_health(
        many_vfs: FakeHost, before: HealthPolicy, after: HealthPolicy) -> None:
    api = CheckedSliceApi()
    devices = devices_of(many_vfs)  # 300 devices: 5 slices under taint, 3 under withdraw
    await SlicePublisher(api, driver=DRIVER, node_name=NODE, policy=before).publish(devices)
    assert api.wrong == []
    restarted = SlicePublisher(api, driver=DRIVER, node_name=NODE, policy=after)
    await restarted.publish(devices)
    assert api.wrong == [], api.wrong[0]


# --- a damaged checkpoint ------------------------------------------------------------------


async def test_device_plugin_pools_are_served_when_the_dra_checkpoint_is_empty_at_start(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    checkpoint = settings.plugins_dir / DRIVER / "checkpoint.json"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_text("")  # a rename without fsync, then a power loss
    api = Apiserver()
    async with emulator(settings) as kubelet, dra_daemon(settings, api) as daemon:
        await kubelet.wait_for(DPDK, lambda d: set(d) == ALL_DPDK, timeout=5)
        assert any("checkpoint" in p for p in daemon.status().not_ready())


# --- the Node re-created -------------------------------------------------------------------


def collect_garbage(api: Apiserver) -> None:
    """What the garbage collector does: a slice whose owner Node (by UID) is gone is deleted."""
    live = set(api.nodes.uids.values())
    for name, s in list(api.slices.slices.items()):
        owners = s["metadata"].get("ownerReferences") or []
        if any(o["kind"] == "Node" and o["uid"] not in live for o in owners):
            del api.slices.slices[name]


async def test_slices_stay_published_when_the_node_is_registered_again_with_a_new_uid(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    async with dra_daemon(settings, api, pods=FakePodResources()), dra_kubelet(settings):
        await published(api, ALL_NET)
        # `kubectl delete node`, then the restarted kubelet registers the Node again (new
        # UID), wipes the node's slices and registers the DRA plugin again
        api.nodes.uids[NODE] = "9f9f9f9f-0000-4000-8000-000000000002"
        api.slices.slices.clear()
        async with dra_kubelet(settings):
            for _ in range(8):
                await asyncio.sleep(0.5)
                collect_garbage(api)
            await published(api, ALL_NET, "the slices, owned by the Node that exists")
            collect_garbage(api)
            assert api.ids() == ALL_NET, "the garbage collector took the slices again"


# --- a prepare that fails half-way ---------------------------------------------------------


async def test_nothing_is_left_when_a_prepare_fails_to_record_and_the_claim_is_unprepared(
        workdir: Path, host: FakeHost) -> None:
    devices = _devices(host)
    name = next(n for n, d in devices.items() if d.device.id == DEV)
    reader = FakeClaimReader()
    reader.put(ClaimAllocation(REF, (AllocatedDevice("nic", DRIVER, NODE, name),)))
    cdi_dir, info_dir = workdir / "cdi", workdir / "devinfo"
    path = workdir / "plugin" / "checkpoint.json"
    preparer = ClaimPreparer(driver=DRIVER, pool_name=NODE, reader=reader,
                             devices=lambda: devices, facts=lambda: scan(host.paths).facts,
                             cdi=CdiStore(cdi_dir, prefix=SPEC_FILE_PREFIX),
                             checkpoint=ClaimCheckpoint(path),
                             device_info=DeviceInfoStore(info_dir))
    path.mkdir(parents=True)  # the checkpoint cannot be written (as on a full disk)
    (path / "x").write_text("")
    with pytest.raises(SriovdpError):
        await preparer.prepare(REF)
    reader.delete("default", "c1")  # the pod is deleted: the kubelet unprepares
    await preparer.unprepare(REF)
    assert not list(cdi_dir.glob("*")), "the claim's CDI spec left"
    assert not list(info_dir.glob("*")), "the claim's device-info file left for ever"
