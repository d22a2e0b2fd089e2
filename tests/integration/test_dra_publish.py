"""Publishing ResourceSlices: only the difference is sent, the generation survives restarts.

The apiserver is the in-memory :class:`~sriovdp.testing.dra.FakeSliceApi` port (the real
kube-apiserver comes with the conformance suite); the node's devices come from a real
sysfs scan of a FakeHost. The slices the official client would carry are checked by
round-tripping them through its ``V1ResourceSlice`` model.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.client import ApiClient

from sriovdp.host.sysfs import scan
from sriovdp.kubelet.dra.publisher import SliceApiError, SlicePublisher
from sriovdp.model.config import ResourceConfig
from sriovdp.model.dra.slices import DraDevice, HealthPolicy, dra_devices
from sriovdp.model.health import Health
from sriovdp.model.pools import build_pools
from sriovdp.model.selectors import NetSelector
from sriovdp.testing.dra import FakeSliceApi
from sriovdp.testing.fakehost import FakeHost

DRIVER = "sriov.network.k8s.io"
NODE = "worker-1"
NODE_UID = "5b2f0c1e-0000-4000-8000-000000000001"
CONFIG = (ResourceConfig(name="sriov_net", selectors=(NetSelector(),)),)


@pytest.fixture(scope="module")
def big_host(tmp_path_factory: pytest.TempPathFactory) -> FakeHost:
    """Two PFs with 150 VFs each: 300 devices, three slices."""
    host = FakeHost(tmp_path_factory.mktemp("dra-pub"))
    for n, bus in enumerate(("3b", "5e")):
        pf = host.add_pf(f"0000:{bus}:00.0", vendor="8086", device="1592", driver="ice",
                         ifname=f"ens{n}f0", numa_node=n, total_vfs=256, iommu_group=10 + n)
        host.add_vfs(pf, 150, device="1889", driver="iavf", iommu_group_base=100 + 200 * n)
    return host


def devices_of(host: FakeHost, *, health: dict[str, str] | None = None,
               drop: int = 0) -> dict[str, DraDevice]:
    pools = build_pools(scan(host.paths), CONFIG, default_prefix="intel.com", health=health)
    devices = dra_devices(pools)
    return dict(list(devices.items())[drop:])


def publisher(api: FakeSliceApi, policy: HealthPolicy = HealthPolicy.WITHDRAW) -> SlicePublisher:
    return SlicePublisher(api, driver=DRIVER, node_name=NODE, node_uid=NODE_UID, policy=policy)


def generations(api: FakeSliceApi) -> set[int]:
    return {s["spec"]["pool"]["generation"] for s in api.slices.values()}


async def test_first_publish_creates_every_slice_when_the_apiserver_has_none(
        big_host: FakeHost) -> None:
    api = FakeSliceApi()
    plan = await publisher(api).publish(devices_of(big_host))
    assert [s["metadata"]["name"] for s in plan.create] == [
        f"{NODE}-{DRIVER}-{i}" for i in range(3)]
    assert sum(len(s["spec"]["devices"]) for s in api.slices.values()) == 300
    assert generations(api) == {1}
    for s in api.slices.values():
        kubernetes_validate.validate(s, "1.34.0", strict=True)


async def test_nothing_is_sent_when_a_rescan_finds_the_same_devices(big_host: FakeHost) -> None:
    api = FakeSliceApi()
    pub = publisher(api)
    await pub.publish(devices_of(big_host))
    api.calls.clear()
    assert (await pub.publish(devices_of(big_host))).empty
    assert api.calls == []


async def test_one_slice_is_replaced_and_the_generation_bumped_when_a_vf_goes_unhealthy(
        big_host: FakeHost) -> None:
    api = FakeSliceApi()
    pub = publisher(api)
    await pub.publish(devices_of(big_host))
    api.calls.clear()
    await pub.publish(devices_of(big_host, health={"0000:5e:11.0": Health.UNHEALTHY}))
    # every slice carries the pool generation, so all are replaced; none created or deleted;
    # the slices' resourceVersions are known from the last writes: no list
    assert sorted(v for v, _ in api.calls) == ["replace", "replace", "replace"]
    assert generations(api) == {2}
    names = {d["name"] for s in api.slices.values() for d in s["spec"]["devices"]}
    assert "0000-5e-11-0" not in names and len(names) == 299


async def test_a_tainted_device_stays_published_when_the_policy_is_taint(
        big_host: FakeHost) -> None:
    api = FakeSliceApi()
    pub = publisher(api, HealthPolicy.TAINT)
    await pub.publish(devices_of(big_host, health={"0000:5e:11.0": Health.UNHEALTHY}))
    assert len(api.slices) == 5  # 300 devices at 64 per slice
    tainted = [d for s in api.slices.values() for d in s["spec"]["devices"] if "taints" in d]
    assert [d["name"] for d in tainted] == ["0000-5e-11-0"]
    api.calls.clear()
    # the apiserver added timeAdded to the taint: a restart still sees nothing to change
    restarted = publisher(api, HealthPolicy.TAINT)
    plan = await restarted.publish(devices_of(big_host, health={"0000:5e:11.0": Health.UNHEALTHY}))
    assert plan.empty and api.calls == [("list", "")]


async def test_stale_slices_are_deleted_last_when_the_pool_shrinks(big_host: FakeHost) -> None:
    api = FakeSliceApi()
    pub = publisher(api)
    await pub.publish(devices_of(big_host))
    api.calls.clear()
    await pub.publish(devices_of(big_host, drop=200))
    assert api.calls == [("replace", f"{NODE}-{DRIVER}-0"),
                         ("delete", f"{NODE}-{DRIVER}-1"), ("delete", f"{NODE}-{DRIVER}-2")]
    (only,) = api.slices.values()
    assert only["spec"]["pool"] == {"name": NODE, "generation": 2, "resourceSliceCount": 1}


async def test_generation_continues_when_a_new_process_publishes_changed_devices(
        big_host: FakeHost) -> None:
    api = FakeSliceApi()
    await publisher(api).publish(devices_of(big_host))
    await publisher(api).publish(devices_of(big_host, drop=1))
    assert generations(api) == {2}
    api.calls.clear()
    assert (await publisher(api).publish(devices_of(big_host, drop=1))).empty
    assert api.calls == [("list", "")]


async def test_publish_resumes_after_the_apiserver_comes_back_when_it_was_unreachable(
        big_host: FakeHost) -> None:
    api = FakeSliceApi()
    pub = publisher(api)
    await pub.publish(devices_of(big_host))
    api.unreachable = True
    with pytest.raises(SliceApiError, match="connection refused"):
        await pub.publish(devices_of(big_host, drop=1))
    assert pub.state is None  # nothing half-recorded: it may have been stored or not
    api.unreachable = False
    api.calls.clear()
    await pub.publish(devices_of(big_host, drop=1))
    assert api.calls[0] == ("list", ""), "not listed again after a failure"
    assert generations(api) == {2}
    assert sum(len(s["spec"]["devices"]) for s in api.slices.values()) == 299


async def test_force_repairs_a_slice_when_someone_else_deleted_it(big_host: FakeHost) -> None:
    api = FakeSliceApi()
    pub = publisher(api)
    await pub.publish(devices_of(big_host))
    del api.slices[f"{NODE}-{DRIVER}-1"]
    assert (await pub.publish(devices_of(big_host))).empty  # no change seen, nothing sent
    plan = await pub.publish(devices_of(big_host), force=True)
    assert [s["metadata"]["name"] for s in plan.create] == [f"{NODE}-{DRIVER}-1"]
    assert len(api.slices) == 3


async def test_slices_are_not_listed_when_the_last_publication_left_them_known(
        big_host: FakeHost) -> None:
    api = FakeSliceApi()
    pub = publisher(api)
    await pub.publish(devices_of(big_host))
    api.calls.clear()
    for n in range(1, 4):  # changes in a row: each replaces at the versions it stored
        await pub.publish(devices_of(big_host, drop=n))
    assert ("list", "") not in api.calls
    assert generations(api) == {4}
    assert sum(len(s["spec"]["devices"]) for s in api.slices.values()) == 297


async def test_a_conflict_makes_the_publisher_list_and_publish_again_when_a_slice_changed(
        big_host: FakeHost) -> None:
    api = FakeSliceApi()
    pub = publisher(api)
    await pub.publish(devices_of(big_host))
    # someone else wrote a slice (a new resourceVersion): our replace of it gets a 409
    other = api.slices[f"{NODE}-{DRIVER}-1"]
    other["metadata"]["resourceVersion"] = "written-by-someone-else"
    api.calls.clear()
    await pub.publish(devices_of(big_host, drop=1))  # no error: listed and published again
    verbs = [v for v, _ in api.calls]
    assert "list" in verbs and verbs.index("list") > 0, "listed before the conflict"
    assert len(generations(api)) == 1
    assert sum(len(s["spec"]["devices"]) for s in api.slices.values()) == 299
    api.calls.clear()
    await pub.publish(devices_of(big_host, drop=2))  # known again: no list
    assert ("list", "") not in api.calls and len(generations(api)) == 1


async def test_a_slice_deleted_behind_our_back_is_created_again_when_the_devices_change(
        big_host: FakeHost) -> None:
    api = FakeSliceApi()
    pub = publisher(api)
    await pub.publish(devices_of(big_host))
    del api.slices[f"{NODE}-{DRIVER}-2"]
    await pub.publish(devices_of(big_host, drop=1))  # its replace finds none (404): listed
    assert sorted(api.slices) == [f"{NODE}-{DRIVER}-{i}" for i in range(3)]
    assert len(generations(api)) == 1
    assert sum(len(s["spec"]["devices"]) for s in api.slices.values()) == 299


class ConflictingSliceApi(FakeSliceApi):
    """FakeSliceApi whose replaces all fail with 409, as when another writer keeps
    changing the slices."""

    async def replace(self, doc: Mapping[str, Any], resource_version: str) -> dict[str, Any]:
        self.calls.append(("replace", doc["metadata"]["name"]))
        raise SliceApiError(f"replacing ResourceSlice {doc['metadata']['name']}: 409 Conflict",
                            409)


async def test_a_conflict_is_raised_when_it_comes_again_right_after_a_list(
        big_host: FakeHost) -> None:
    api = ConflictingSliceApi()
    pub = publisher(api)
    await pub.publish(devices_of(big_host))  # creates
    api.calls.clear()
    with pytest.raises(SliceApiError, match="409"):
        await pub.publish(devices_of(big_host, drop=1))
    assert [v for v, _ in api.calls].count("list") == 1, "listed once, then left to SliceSync"
    assert pub.state is None


@dataclass
class _Response:
    data: str


async def test_the_official_client_carries_the_slices_unchanged_when_serialised(
        big_host: FakeHost) -> None:
    plan = await publisher(FakeSliceApi(), HealthPolicy.TAINT).publish(
        devices_of(big_host, health={"0000:5e:11.0": Health.UNHEALTHY}))
    client = ApiClient()
    assert plan.create
    for doc in plan.create:
        model = client.deserialize(_Response(json.dumps(doc)), "V1ResourceSlice")
        assert client.sanitize_for_serialization(model) == doc


async def test_a_slice_is_sent_as_the_stock_client_sends_it_when_it_skips_the_walk(
        big_host: FakeHost) -> None:
    from kubernetes.client import Configuration

    from sriovdp.kubelet.dra.apiserver import _api_client
    from sriovdp.kubelet.dra.publisher import JsonBody

    plan = await publisher(FakeSliceApi(), HealthPolicy.TAINT).publish(
        devices_of(big_host, health={"0000:5e:11.0": Health.UNHEALTHY}))
    ours, stock = _api_client(Configuration()), ApiClient()
    for doc in plan.create:
        sent = ours.sanitize_for_serialization(JsonBody(doc))
        assert json.dumps(sent) == json.dumps(stock.sanitize_for_serialization(doc))


class _Answering(BaseHTTPRequestHandler):
    """An apiserver that answers every write with its body, counting connections."""

    protocol_version = "HTTP/1.1"
    connections: list[tuple[str, int]] = []

    def setup(self) -> None:
        super().setup()
        self.connections.append(self.client_address)

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}"
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


async def test_slice_writes_share_a_connection_when_made_one_after_another(
        big_host: FakeHost) -> None:
    from kubernetes.client import Configuration, ResourceV1Api

    from sriovdp.kubelet.dra.apiserver import _api_client
    from sriovdp.kubelet.dra.publisher import KubernetesSliceApi

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    configuration = Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_port}"
    client = _api_client(configuration)
    try:
        api = KubernetesSliceApi(ResourceV1Api(client))
        plan = await publisher(FakeSliceApi()).publish(devices_of(big_host))
        _Answering.connections = []
        for doc in plan.create:
            await api.create(doc)
            await api.replace(doc, "1")
        await api.delete(plan.create[0]["metadata"]["name"])
        assert len(_Answering.connections) == 1, "a new connection (TLS handshake) per write"
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        serving.join()


# --- writing a generation concurrently --------------------------------------------------------


@pytest.fixture(scope="module")
def huge_host(tmp_path_factory: pytest.TempPathFactory) -> FakeHost:
    """Four PFs with 256 VFs each: 1,024 devices, eight slices (16 under taint)."""
    return FakeHost.scaled(tmp_path_factory.mktemp("dra-pub-huge"), pfs=4, vfs_per_pf=256)


class SlowSliceApi(FakeSliceApi):
    """FakeSliceApi whose writes each take a turn of the loop, counting how many are in
    flight at once; ``fail_on`` names a slice whose next write fails."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail_on: str | None = None
        self.started: list[str] = []
        self.events: list[str] = []

    async def _slow(self, name: str) -> None:
        self.started.append(name)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.events.append(f"start {name}")
        try:
            for _ in range(3):
                await asyncio.sleep(0)
        finally:
            self.in_flight -= 1
            self.events.append(f"end {name}")
        if name == self.fail_on:
            self.fail_on = None
            raise SliceApiError(f"replacing ResourceSlice {name}: 500 etcd timeout", 500)

    async def create(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        await self._slow(doc["metadata"]["name"])
        return await super().create(doc)

    async def replace(self, doc: Mapping[str, Any], resource_version: str) -> dict[str, Any]:
        await self._slow(doc["metadata"]["name"])
        return await super().replace(doc, resource_version)


def devices_of_huge(host: FakeHost, **health: str) -> dict[str, DraDevice]:
    config = (ResourceConfig(name="pf", selectors=(NetSelector(),)),)
    return dra_devices(build_pools(scan(host.paths), config, default_prefix="intel.com",
                                   health=health))


async def test_slices_of_a_generation_are_written_at_once_when_the_devices_change(
        huge_host: FakeHost) -> None:
    api = SlowSliceApi()
    pub = SlicePublisher(api, driver=DRIVER, node_name=NODE, concurrency=4)
    await pub.publish(devices_of_huge(huge_host))
    assert len(api.slices) == 8 and api.most_in_flight == 4
    api.started.clear()
    devices = devices_of_huge(huge_host)
    vf = devices[sorted(devices)[300]].device.id  # in the third slice (128 a slice)
    await pub.publish(devices_of_huge(huge_host, **{vf: Health.UNHEALTHY}))
    assert api.started[0] == f"{NODE}-{DRIVER}-2", "the changed slice not written first"
    assert len(api.started) == 8 and generations(api) == {2}


async def test_the_first_slice_of_a_generation_is_written_alone_when_the_devices_change(
        huge_host: FakeHost) -> None:
    api = SlowSliceApi()
    pub = SlicePublisher(api, driver=DRIVER, node_name=NODE, concurrency=4)
    await pub.publish(devices_of_huge(huge_host))
    api.events.clear()
    devices = devices_of_huge(huge_host)
    vf = devices[sorted(devices)[700]].device.id  # in the sixth slice (128 a slice)
    await pub.publish(devices_of_huge(huge_host, **{vf: Health.UNHEALTHY}))
    first = f"{NODE}-{DRIVER}-5"
    assert api.events[:2] == [f"start {first}", f"end {first}"], \
        "the first write shared the apiserver with others"
    assert api.most_in_flight == 4 and generations(api) == {2}


async def test_a_whole_new_generation_is_written_when_the_last_one_failed_half_way(
        huge_host: FakeHost) -> None:
    api = SlowSliceApi()
    pub = SlicePublisher(api, driver=DRIVER, node_name=NODE, concurrency=4)
    await pub.publish(devices_of_huge(huge_host))
    api.fail_on = f"{NODE}-{DRIVER}-6"
    with pytest.raises(SliceApiError, match="etcd timeout"):
        await pub.publish(devices_of_huge(huge_host, **{"0000:18:02.0": Health.UNHEALTHY}))
    assert api.in_flight == 0, "a write outlived the failed publication"
    half = {s["spec"]["pool"]["generation"] for s in api.slices.values()}
    assert half == {1, 2}, "the failed generation half written (what this test is about)"
    # meanwhile the devices changed again: another cut of the devices into slices
    await pub.publish(devices_of_huge(huge_host, **{"0000:18:02.1": Health.UNHEALTHY}))
    assert generations(api) == {3}, "the new content written under the half-written generation"
    names = [d["name"] for s in api.slices.values() for d in s["spec"]["devices"]]
    assert len(names) == len(set(names)) == 1023
