"""Publishing ResourceSlices: only the difference is sent, the generation survives restarts.

The apiserver is the in-memory :class:`~sriovdp.testing.dra.FakeSliceApi` port (the real
kube-apiserver comes with the conformance suite); the node's devices come from a real
sysfs scan of a FakeHost. The slices the official client would carry are checked by
round-tripping them through its ``V1ResourceSlice`` model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

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
    # every slice carries the pool generation, so all are replaced; none created or deleted
    assert sorted(v for v, _ in api.calls) == ["list", "replace", "replace", "replace"]
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
    assert api.calls == [("list", ""), ("replace", f"{NODE}-{DRIVER}-0"),
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
    assert pub.state is not None and pub.state.generation == 1  # nothing half-recorded
    api.unreachable = False
    await pub.publish(devices_of(big_host, drop=1))
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
