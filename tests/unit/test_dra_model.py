"""DRA mode's pure model: names, attributes, ResourceSlices, generation, health, prepare.

ResourceSlices are checked against the ``resource.k8s.io/v1`` JSON schema (strict, 1.34,
from kubernetes-validate) and per-claim CDI specs against the CDI 0.5.0 schema of
``tests/data``; the limits the schemas cannot express (128 devices, 32 attributes, 64
characters, DNS labels) are checked here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import (
    AuxFunction,
    DeviceKind,
    HostFacts,
    Inventory,
    PciFunction,
    RdmaInfo,
    VdpaInfo,
)
from sriovdp.model.dra.attributes import MAX_ATTRIBUTES, MAX_STRING, pcie_root_of
from sriovdp.model.dra.names import (
    DraNameError,
    check_attribute_name,
    check_driver_name,
    device_name,
    device_names,
    is_dns_label,
)
from sriovdp.model.dra.prepare import (
    AllocatedDevice,
    ClaimAllocation,
    ClaimRef,
    PrepareError,
    prepare_claim,
)
from sriovdp.model.dra.publish import plan_sync, published_state
from sriovdp.model.dra.slices import (
    MAX_DEVICES,
    DraDeviceSet,
    HealthPolicy,
    PoolState,
    advance,
    dra_devices,
    resource_slices,
    slice_devices,
    slice_name,
)
from sriovdp.model.health import Health
from sriovdp.model.pools import build_pools
from sriovdp.model.selectors import AuxNetSelector, FunctionRange, NetSelector

DRIVER = "sriov.network.k8s.io"
NODE = "worker-1"
CDI_SCHEMA = jsonschema.Draft7Validator(
    json.loads((Path(__file__).parents[1] / "data" / "cdi-schema.json").read_text()))


def vf(addr: str, idx: int, *, pf: str = "0000:3b:00.0", pf_netdev: str = "ens1f0",
       driver: str = "iavf", **kw: Any) -> PciFunction:
    return PciFunction(address=addr, vendor="8086", device="154c", class_code=0x020000,
                       driver=driver, numa_node=kw.pop("numa_node", 0), physfn=pf, vf_index=idx,
                       pf_netdev=pf_netdev, iommu_group=kw.pop("iommu_group", str(80 + idx)),
                       link_type="ether", **kw)


def vfs(count: int, bus: int = 0x3b) -> list[PciFunction]:
    return [vf(f"0000:{bus + i // 256:02x}:{(i % 256) // 8 + 2:02x}.{i % 8}", i)
            for i in range(count)]


def pools_for(fns: list[PciFunction], *configs: ResourceConfig,
              aux: tuple[AuxFunction, ...] = (), health: dict[str, str] | None = None) -> Any:
    inventory = Inventory(functions={f.address: f for f in sorted(fns, key=lambda f: f.address)},
                          aux={a.name: a for a in aux})
    configs = configs or (ResourceConfig(name="sriov_net", selectors=(NetSelector(),)),)
    return build_pools(inventory, configs, default_prefix="intel.com", health=health)


def slices_for(pools: Any, *, policy: HealthPolicy = HealthPolicy.WITHDRAW,
               roots: dict[str, str] | None = None) -> list[dict[str, Any]]:
    devices = slice_devices(dra_devices(pools), driver=DRIVER, policy=policy, pcie_roots=roots)
    return resource_slices(advance(None, devices), driver=DRIVER, node_name=NODE,
                           node_uid="5b2f0c1e-0000-4000-8000-000000000001", policy=policy)


def assert_valid_slices(slices: list[dict[str, Any]]) -> None:
    for s in slices:
        kubernetes_validate.validate(s, "1.34.0", strict=True)
        devices = s["spec"]["devices"]
        assert len(devices) <= MAX_DEVICES
        for d in devices:
            assert is_dns_label(d["name"]), d["name"]
            assert len(d["attributes"]) <= MAX_ATTRIBUTES
            for name, value in d["attributes"].items():
                check_attribute_name(name)
                assert len(value) == 1
                if "string" in value:
                    assert len(value["string"]) <= MAX_STRING
    names = [d["name"] for s in slices for d in s["spec"]["devices"]]
    assert len(names) == len(set(names))


# --------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize("name", [DRIVER, "a.b", "gpu.example.com", "x"])
def test_driver_name_is_accepted_when_a_lower_case_dns_subdomain(name: str) -> None:
    assert check_driver_name(name) == name


@pytest.mark.parametrize("name", ["", "Sriov.io", "sriov_net.io", "-a.io", "a..b", "a" * 64,
                                  "sriov.network.k8s.io/x"])
def test_driver_name_is_refused_when_not_a_dns_subdomain_of_63(name: str) -> None:
    with pytest.raises(DraNameError, match="DNS subdomain"):
        check_driver_name(name)


def test_device_name_keeps_every_digit_when_the_id_is_a_pci_address() -> None:
    assert device_name("0000:3b:02.1") == "0000-3b-02-1"
    assert device_name("0000:AF:1f.7") == "0000-af-1f-7"


def test_device_name_is_a_dns_label_when_the_id_is_an_aux_name() -> None:
    assert device_name("mlx5_core.sf.4") == "mlx5-core-sf-4"
    assert device_name("Weird__Name..7") == "weird-name-7"


def test_device_name_is_cut_to_63_with_a_hash_when_the_id_is_long() -> None:
    long_id = "x" * 100
    name = device_name(long_id)
    assert len(name) <= 63 and is_dns_label(name)
    assert name != device_name("x" * 101)


def test_device_names_are_unique_and_order_free_when_sanitised_ids_collide() -> None:
    ids = ["mlx5_core.sf.4", "mlx5-core.sf.4", "mlx5-core-sf-4", "0000:3b:02.1"]
    names = device_names(ids)
    assert len(set(names.values())) == 4
    assert names == device_names(reversed(ids))
    assert all(is_dns_label(n) for n in names.values())


@pytest.mark.parametrize("name", ["pfName", "resource.kubernetes.io/pciBusID",
                                  "k8s.cni.cncf.io/deviceID", "_x"])
def test_attribute_name_is_accepted_when_a_qualified_name(name: str) -> None:
    assert check_attribute_name(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "pf-name", "/x", "Bad_Domain/x", "a" * 33])
def test_attribute_name_is_refused_when_not_a_qualified_name(name: str) -> None:
    with pytest.raises(DraNameError):
        check_attribute_name(name)


# --------------------------------------------------------------------------------------------
# Attributes


def test_vf_attributes_carry_the_selector_terms_when_published() -> None:
    fn = vf("0000:3b:02.1", 1, rdma=RdmaInfo(devices=("mlx5_2",)))
    slices = slices_for(pools_for([fn]), roots={"0000:3b:02.1": "pci0000:3a"})
    assert_valid_slices(slices)
    (device,) = slices[0]["spec"]["devices"]
    assert device["name"] == "0000-3b-02-1"
    assert device["attributes"] == {
        "deviceID": {"string": "154c"},
        "deviceType": {"string": "netDevice"},
        "driver": {"string": "iavf"},
        "iommuGroup": {"int": 81},
        "k8s.cni.cncf.io/deviceID": {"string": "0000:3b:02.1"},
        "k8s.cni.cncf.io/resourceName": {"string": "intel.com/sriov_net"},
        "linkType": {"string": "ether"},
        "numaNode": {"int": 0},
        "pciAddress": {"string": "0000:3b:02.1"},
        "pfName": {"string": "ens1f0"},
        "pfPciAddress": {"string": "0000:3b:00.0"},
        "rdma": {"bool": True},
        "rdmaDevices": {"string": "mlx5_2"},
        "resource.kubernetes.io/numaNode": {"int": 0},
        "resource.kubernetes.io/pciBusID": {"string": "0000:3b:02.1"},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0000:3a"},
        "resourceName": {"string": "intel.com/sriov_net"},
        "vendor": {"string": "8086"},
        "vfIndex": {"int": 1},
    }


def test_numa_attributes_are_absent_when_the_pool_excludes_topology() -> None:
    config = ResourceConfig(name="net", selectors=(NetSelector(),), exclude_topology=True)
    attrs = slices_for(pools_for([vf("0000:3b:02.0", 0)], config))[0]["spec"]["devices"][0]
    assert "numaNode" not in attrs["attributes"]
    assert "resource.kubernetes.io/numaNode" not in attrs["attributes"]


def test_vdpa_type_is_published_when_the_vf_has_a_vdpa_device() -> None:
    fn = vf("0000:3b:02.0", 0, vdpa=VdpaInfo(name="vdpa0", driver="vhost_vdpa",
                                              vhost_path="/dev/vhost-vdpa-0"))
    attrs = slices_for(pools_for([fn]))[0]["spec"]["devices"][0]["attributes"]
    assert attrs["vdpaType"] == {"string": "vhost"}
    assert attrs["rdma"] == {"bool": False}


def test_sf_attributes_name_the_parent_and_sf_number_when_the_pool_is_aux() -> None:
    parent = PciFunction(address="0000:3b:00.0", vendor="15b3", device="101d",
                         class_code=0x020000, driver="mlx5_core", netdevs=("p0",),
                         link_type="ether")
    sf = AuxFunction(name="mlx5_core.sf.4", aux_type="sf", parent=parent,
                     pf_address="0000:3b:00.0", pf_netdev="p0", sf_num=4, link_type="ether")
    config = ResourceConfig(name="sf", kind=DeviceKind.AUX_NET,
                            selectors=(AuxNetSelector(aux_types=frozenset({"sf"})),))
    slices = slices_for(pools_for([parent], config, aux=(sf,)))
    assert_valid_slices(slices)
    (device,) = slices[0]["spec"]["devices"]
    attrs = device["attributes"]
    assert attrs["auxName"] == {"string": "mlx5_core.sf.4"}
    assert attrs["sfNum"] == {"int": 4}
    assert attrs["pfName"] == {"string": "p0"}
    assert attrs["k8s.cni.cncf.io/deviceID"] == {"string": "mlx5_core.sf.4"}
    assert attrs["resource.kubernetes.io/pciBusID"] == {"string": "0000:3b:00.0"}


def test_a_string_attribute_is_left_out_when_longer_than_64() -> None:
    fn = vf("0000:3b:02.0", 0, rdma=RdmaInfo(devices=tuple(f"mlx5_{i}" for i in range(20))))
    attrs = slices_for(pools_for([fn]))[0]["spec"]["devices"][0]["attributes"]
    assert "rdmaDevices" not in attrs and attrs["rdma"] == {"bool": True}


@pytest.mark.parametrize(("path", "root"), [
    ("../../../devices/pci0000:3a/0000:3a:00.0/0000:3b:02.1", "pci0000:3a"),
    ("/sys/devices/pci0001:00/0001:00:02.0", "pci0001:00"),
    ("../../../devices/platform/foo", None),
    ("../../../devices/pcixxxx:00/x", None),
])
def test_pcie_root_is_read_from_the_device_path_when_present(path: str, root: str | None) -> None:
    assert pcie_root_of(path) == root


# --------------------------------------------------------------------------------------------
# Slices, generation, health


def test_one_slice_names_the_node_pool_and_owner_when_the_pool_is_small() -> None:
    slices = slices_for(pools_for(vfs(4)))
    assert_valid_slices(slices)
    (s,) = slices
    assert s["apiVersion"] == "resource.k8s.io/v1" and s["kind"] == "ResourceSlice"
    assert s["metadata"]["name"] == f"{NODE}-{DRIVER}-0"
    assert s["metadata"]["ownerReferences"] == [{
        "apiVersion": "v1", "kind": "Node", "name": NODE,
        "uid": "5b2f0c1e-0000-4000-8000-000000000001", "controller": True}]
    assert s["spec"]["driver"] == DRIVER and s["spec"]["nodeName"] == NODE
    assert s["spec"]["pool"] == {"name": NODE, "generation": 1, "resourceSliceCount": 1}
    assert [d["name"] for d in s["spec"]["devices"]] == sorted(
        d["name"] for d in s["spec"]["devices"])


def test_devices_are_split_over_slices_of_128_when_the_node_has_300() -> None:
    slices = slices_for(pools_for(vfs(300)))
    assert_valid_slices(slices)
    assert [len(s["spec"]["devices"]) for s in slices] == [128, 128, 44]
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {3}
    assert [s["metadata"]["name"] for s in slices] == [slice_name(NODE, DRIVER, i)
                                                        for i in range(3)]


def test_an_empty_pool_still_has_one_slice_when_no_device_matches() -> None:
    slices = slices_for(pools_for([]))
    assert_valid_slices(slices)
    assert [s["spec"]["devices"] for s in slices] == [[]]


def test_owner_reference_is_left_out_when_the_node_uid_is_unknown() -> None:
    (s,) = resource_slices(PoolState(1, []), driver=DRIVER, node_name=NODE)
    assert "ownerReferences" not in s["metadata"]


def test_slices_are_refused_when_the_driver_name_is_invalid() -> None:
    with pytest.raises(DraNameError):
        resource_slices(PoolState(1, []), driver="Bad_Driver", node_name=NODE)


def test_slice_name_stays_within_253_when_the_node_name_is_long() -> None:
    name = slice_name("n" * 253, DRIVER, 3)
    assert len(name) <= 253 and name.endswith(f"-{DRIVER}-3")


def test_generation_is_kept_when_the_devices_are_unchanged() -> None:
    devices = slice_devices(dra_devices(pools_for(vfs(3))), driver=DRIVER)
    first = advance(None, devices)
    again = slice_devices(dra_devices(pools_for(vfs(3))), driver=DRIVER)
    assert first.generation == 1
    assert advance(first, again) is first


def test_generation_is_bumped_when_a_device_appears_or_changes() -> None:
    state = advance(None, slice_devices(dra_devices(pools_for(vfs(3))), driver=DRIVER))
    grown = advance(state, slice_devices(dra_devices(pools_for(vfs(4))), driver=DRIVER))
    rebound = [vf(f.address, f.vf_index or 0, driver="vfio-pci") for f in vfs(4)]
    changed = advance(grown, slice_devices(dra_devices(pools_for(rebound)), driver=DRIVER))
    assert (state.generation, grown.generation, changed.generation) == (1, 2, 3)


def test_generation_continues_when_restarted_from_the_published_state() -> None:
    devices = slice_devices(dra_devices(pools_for(vfs(3))), driver=DRIVER)
    read_back = PoolState(7, devices)
    assert advance(read_back, devices).generation == 7
    assert advance(read_back, devices[:2]).generation == 8


def test_unhealthy_device_is_withdrawn_when_the_policy_is_withdraw() -> None:
    fns = vfs(3)
    pools = pools_for(fns, health={fns[1].address: Health.UNHEALTHY})
    names = [d["name"] for d in slices_for(pools)[0]["spec"]["devices"]]
    assert names == ["0000-3b-02-0", "0000-3b-02-2"]
    assert "0000-3b-02-1" in dra_devices(pools)  # still preparable


def test_unhealthy_device_is_tainted_and_slices_cut_at_64_when_the_policy_is_taint() -> None:
    fns = vfs(100)
    pools = pools_for(fns, health={fns[1].address: Health.UNHEALTHY})
    slices = slices_for(pools, policy=HealthPolicy.TAINT)
    assert_valid_slices(slices)
    assert [len(s["spec"]["devices"]) for s in slices] == [64, 36]
    tainted = [d for s in slices for d in s["spec"]["devices"] if "taints" in d]
    assert [d["name"] for d in tainted] == ["0000-3b-02-1"]
    assert tainted[0]["taints"] == [{"key": f"{DRIVER}/unhealthy", "effect": "NoSchedule"}]


# --------------------------------------------------------------------------------------------
# Prepare


CLAIM = ClaimRef(namespace="default", name="net-claim", uid="0b9a4f4e-1d2c-4e5f-8a9b-1c2d3e4f5a6b")


def claim(*results: tuple[str, str]) -> ClaimAllocation:
    return ClaimAllocation(CLAIM, tuple(
        AllocatedDevice(request=req, driver=DRIVER, pool=NODE, device=dev)
        for req, dev in results))


def test_prepare_gives_vfio_nodes_and_request_env_when_vfs_are_allocated() -> None:
    fns = [vf("0000:3b:02.0", 0, driver="vfio-pci"), vf("0000:3b:02.1", 1, driver="vfio-pci")]
    devices = dra_devices(pools_for(fns))
    prepared = prepare_claim(claim(("nic", "0000-3b-02-0"), ("nic", "0000-3b-02-1")),
                             driver=DRIVER, pool_name=NODE, devices=devices, facts=HostFacts())
    assert prepared.spec_file == f"sriov-dra-{CLAIM.uid}.yaml"
    spec = prepared.spec
    assert spec is not None
    assert not list(CDI_SCHEMA.iter_errors(spec))
    assert spec["kind"] == f"{DRIVER}/claim"
    by_name = {d["name"]: d["containerEdits"] for d in spec["devices"]}
    env = by_name[f"{CLAIM.uid}-nic"]["env"]
    assert env[0] == "PCIDEVICE_INTEL_COM_SRIOV_NET=0000:3b:02.0,0000:3b:02.1"
    assert env[1].startswith("PCIDEVICE_INTEL_COM_SRIOV_NET_INFO={")
    assert by_name[f"{CLAIM.uid}-0000-3b-02-1"]["deviceNodes"] == [
        {"path": "/dev/vfio/vfio", "hostPath": "/dev/vfio/vfio", "permissions": "rw"},
        {"path": "/dev/vfio/81", "hostPath": "/dev/vfio/81", "permissions": "rw"}]
    first, second = prepared.devices
    assert first.cdi_device_ids == (f"{DRIVER}/claim={CLAIM.uid}-nic",
                                    f"{DRIVER}/claim={CLAIM.uid}-0000-3b-02-0")
    assert second.cdi_device_ids == (f"{DRIVER}/claim={CLAIM.uid}-0000-3b-02-1",)
    assert (second.pool_name, second.device_name, second.request_names) == (
        NODE, "0000-3b-02-1", ("nic",))
    assert prepared.device_info == (("intel.com/sriov_net", "0000:3b:02.0"),
                                    ("intel.com/sriov_net", "0000:3b:02.1"))


def test_prepare_gives_rdma_and_vhost_nodes_when_the_selector_asked_for_them() -> None:
    fn = vf("0000:3b:02.0", 0, rdma=RdmaInfo(devices=("mlx5_2",), char_devices=(
        "/dev/infiniband/uverbs2", "/dev/infiniband/rdma_cm")))
    config = ResourceConfig(name="rdma", selectors=(
        NetSelector(is_rdma=True, need_vhost_net=True),))
    devices = dra_devices(pools_for([fn], config))
    prepared = prepare_claim(claim(("r", "0000-3b-02-0")), driver=DRIVER, pool_name=NODE,
                             devices=devices, facts=HostFacts(vhost_net=True))
    assert prepared.spec is not None
    nodes = {d["name"]: d["containerEdits"] for d in prepared.spec["devices"]}[
        f"{CLAIM.uid}-0000-3b-02-0"]["deviceNodes"]
    assert [n["path"] for n in nodes] == ["/dev/infiniband/uverbs2", "/dev/infiniband/rdma_cm",
                                          "/dev/vhost-net", "/dev/net/tun"]


def test_prepare_lists_no_node_device_when_a_kernel_vf_has_no_device_nodes() -> None:
    devices = dra_devices(pools_for([vf("0000:3b:02.0", 0)]))
    prepared = prepare_claim(claim(("nic", "0000-3b-02-0")), driver=DRIVER, pool_name=NODE,
                             devices=devices, facts=HostFacts())
    assert prepared.spec is not None and not list(CDI_SCHEMA.iter_errors(prepared.spec))
    assert prepared.devices[0].cdi_device_ids == (f"{DRIVER}/claim={CLAIM.uid}-nic",)


def test_prepare_ignores_results_of_other_drivers_when_the_claim_mixes_drivers() -> None:
    devices = dra_devices(pools_for([vf("0000:3b:02.0", 0)]))
    mixed = ClaimAllocation(CLAIM, (
        AllocatedDevice("gpu", "gpu.example.com", "other", "gpu-0"),
        AllocatedDevice("nic", DRIVER, NODE, "0000-3b-02-0")))
    prepared = prepare_claim(mixed, driver=DRIVER, pool_name=NODE, devices=devices,
                             facts=HostFacts())
    assert [d.device_name for d in prepared.devices] == ["0000-3b-02-0"]
    only_other = ClaimAllocation(CLAIM, mixed.results[:1])
    empty = prepare_claim(only_other, driver=DRIVER, pool_name=NODE, devices=devices,
                          facts=HostFacts())
    assert (empty.spec_file, empty.devices) == (None, ())


def test_prepare_is_refused_naming_the_device_when_it_is_not_on_this_node() -> None:
    devices = dra_devices(pools_for([vf("0000:3b:02.0", 0)]))
    with pytest.raises(PrepareError, match="'0000-3b-09-0' .* is not on this node"):
        prepare_claim(claim(("nic", "0000-3b-09-0")), driver=DRIVER, pool_name=NODE,
                      devices=devices, facts=HostFacts())
    other_pool = ClaimAllocation(CLAIM, (AllocatedDevice("nic", DRIVER, "worker-2",
                                                         "0000-3b-02-0"),))
    with pytest.raises(PrepareError, match="pool 'worker-2', not this node's pool"):
        prepare_claim(other_pool, driver=DRIVER, pool_name=NODE, devices=devices,
                      facts=HostFacts())


def test_prepare_finds_the_device_when_it_went_unhealthy_after_allocation() -> None:
    fn = vf("0000:3b:02.0", 0, driver="vfio-pci")
    devices = dra_devices(pools_for([fn], health={fn.address: Health.UNHEALTHY}))
    prepared = prepare_claim(claim(("nic", "0000-3b-02-0")), driver=DRIVER, pool_name=NODE,
                             devices=devices, facts=HostFacts())
    assert len(prepared.devices[0].cdi_device_ids) == 2


def test_prepare_is_refused_when_the_claim_uid_is_not_a_safe_file_name() -> None:
    devices = dra_devices(pools_for([vf("0000:3b:02.0", 0)]))
    bad = ClaimAllocation(ClaimRef("default", "c", "../etc"), claim(
        ("nic", "0000-3b-02-0")).results)
    with pytest.raises(PrepareError, match="UID"):
        prepare_claim(bad, driver=DRIVER, pool_name=NODE, devices=devices, facts=HostFacts())


# --------------------------------------------------------------------------------------------
# Publishing: read-back after a restart, sync plans


def listed(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The slices as the apiserver lists them: with server fields and taint timestamps."""
    out = json.loads(json.dumps(slices))
    for s in out:
        s["metadata"]["resourceVersion"] = "4711"
        s["metadata"]["uid"] = "0000"
        for d in s["spec"]["devices"]:
            for t in d.get("taints", []):
                t["timeAdded"] = "2026-12-04T14:00:00Z"
    return out


def test_sync_plan_is_empty_when_the_apiserver_has_the_desired_slices() -> None:
    fns = vfs(200)
    slices = slices_for(pools_for(fns, health={fns[0].address: Health.UNHEALTHY}),
                        policy=HealthPolicy.TAINT)
    assert plan_sync(listed(slices), slices).empty


def test_sync_plan_creates_replaces_and_deletes_stale_when_the_pool_shrinks() -> None:
    before = listed(slices_for(pools_for(vfs(300))))
    state = published_state(before, node_name=NODE)
    devices = slice_devices(dra_devices(pools_for(vfs(100))), driver=DRIVER)
    after = resource_slices(advance(state, devices), driver=DRIVER, node_name=NODE,
                            node_uid="5b2f0c1e-0000-4000-8000-000000000001")
    plan = plan_sync(before, after)
    assert plan.create == ()
    assert [s["metadata"]["name"] for s in plan.replace] == [slice_name(NODE, DRIVER, 0)]
    assert plan.replace[0]["spec"]["pool"]["generation"] == 2
    assert plan.delete == (slice_name(NODE, DRIVER, 1), slice_name(NODE, DRIVER, 2))
    assert plan_sync([], after).create == tuple(after)


def test_published_state_continues_the_generation_when_read_back_after_a_restart() -> None:
    devices = slice_devices(dra_devices(pools_for(vfs(300))), driver=DRIVER)
    published = listed(resource_slices(PoolState(5, devices), driver=DRIVER, node_name=NODE))
    state = published_state(published, node_name=NODE)
    assert state is not None and state.generation == 5
    assert advance(state, devices) is state  # nothing changed: nothing rewritten
    assert advance(state, devices[1:]).generation == 6


def test_published_state_forces_a_bump_when_the_last_publication_was_cut_short() -> None:
    devices = slice_devices(dra_devices(pools_for(vfs(300))), driver=DRIVER)
    partial = listed(resource_slices(PoolState(3, devices), driver=DRIVER,
                                     node_name=NODE))[:2]
    state = published_state(partial, node_name=NODE)
    assert state == PoolState(3, [])
    assert advance(state, devices).generation == 4
    assert published_state([], node_name=NODE) is None


def test_attributes_are_reused_when_only_the_health_changes() -> None:
    fns = vfs(3)
    healthy = slice_devices(dra_devices(pools_for(fns)), driver=DRIVER,
                            policy=HealthPolicy.TAINT)
    sick = slice_devices(dra_devices(pools_for(fns, health={fns[0].address: Health.UNHEALTHY})),
                         driver=DRIVER, policy=HealthPolicy.TAINT)
    assert all(a["attributes"] is b["attributes"] for a, b in zip(healthy, sick, strict=True))
    assert "taints" in sick[0] and "taints" not in healthy[0]


def test_the_generation_grows_when_the_same_devices_are_cut_into_other_slices() -> None:
    from sriovdp.model.dra.slices import HealthPolicy, PoolState, advance, slice_sizes

    devices = [{"name": f"d{i}"} for i in range(100)]
    withdraw = advance(None, devices, HealthPolicy.WITHDRAW)
    assert withdraw.slice_sizes == (100,) == slice_sizes(100, HealthPolicy.WITHDRAW)
    assert advance(withdraw, devices, HealthPolicy.WITHDRAW) is withdraw
    taint = advance(withdraw, devices, HealthPolicy.TAINT)  # a restart with --dra-health=taint
    assert (taint.generation, taint.slice_sizes) == (withdraw.generation + 1, (64, 36))
    unknown = PoolState(3, devices)  # sizes not known: devices alone decide
    assert advance(unknown, devices, HealthPolicy.TAINT) is unknown
    assert slice_sizes(0, HealthPolicy.TAINT) == (0,)


PER_PF = (ResourceConfig(name="pf0", selectors=(NetSelector(pf_names=(FunctionRange("ens1f0"),)),)),
          ResourceConfig(name="pf1", selectors=(NetSelector(pf_names=(FunctionRange("ens2f0"),)),)))


def two_pf_pools() -> Any:
    return pools_for(vfs(4) + [vf(f"0000:5e:02.{i}", i, pf="0000:5e:00.0", pf_netdev="ens2f0")
                               for i in range(3)], *PER_PF)


def test_device_set_keeps_every_entry_when_no_pool_changed() -> None:
    pools = two_pf_pools()
    before = DraDeviceSet.of(pools)
    assert before.updated(dict(pools)) is before


def test_device_set_rebuilds_only_the_changed_pool_when_only_its_health_changed() -> None:
    from sriovdp.model.pools import with_health

    pools = two_pf_pools()
    before = DraDeviceSet.of(pools)
    sick = with_health(pools, {"0000:5e:02.1": Health.UNHEALTHY})
    after = before.updated(sick)
    assert after.devices == dra_devices(sick)
    assert list(after.devices) == list(dra_devices(sick))  # name order kept
    for name, entry in after.devices.items():
        kept = entry is before.devices[name]
        assert kept == (entry.pool.resource_name == "intel.com/pf0"), name
        assert any(entry.pool is pool for pool in sick.values())
    assert after.devices["0000-5e-02-1"].device.health == Health.UNHEALTHY


@pytest.mark.parametrize("change", ["vf added", "pool removed", "device in two pools"])
def test_device_set_is_built_again_when_the_devices_or_pools_differ(change: str) -> None:
    pools = two_pf_pools()
    if change == "vf added":
        new = pools_for(vfs(5) + [vf("0000:5e:02.0", 0, pf="0000:5e:00.0", pf_netdev="ens2f0")],
                        *PER_PF)
    elif change == "pool removed":
        new = dict(list(pools.items())[:1])
    else:
        new = {**pools, "all": next(iter(pools_for(vfs(4)).values()))}
    before = DraDeviceSet.of(pools)
    after = before.updated(new)
    assert after.devices == dra_devices(new)
    assert list(after.devices) == list(dra_devices(new))
    assert after.updated(new) is after
    if change == "device in two pools":  # always built again: which pool wins is the build's
        from sriovdp.model.pools import with_health

        sick = with_health(new, {"0000:3b:02.0": Health.UNHEALTHY})
        assert after.updated(sick).devices == dra_devices(sick)


def _prepared(uid: str, *device_names: str, ids: tuple[str, ...] = ()) -> Any:
    from sriovdp.model.dra.prepare import ClaimRef, PreparedClaim, PreparedDevice

    return PreparedClaim(ClaimRef("default", f"claim-{uid}", uid), None, None, tuple(
        PreparedDevice(("nic",), NODE, name, (), device_id=dev_id)
        for name, dev_id in zip(device_names, ids or ("",) * len(device_names), strict=True)))


def test_prepare_is_refused_naming_the_holder_when_another_claim_still_has_the_device() -> None:
    from sriovdp.model.dra.prepare import check_not_prepared_elsewhere

    with pytest.raises(PrepareError) as err:
        check_not_prepared_elsewhere(_prepared("new", "0000-3b-02-1", "0000-3b-02-2"),
                                     [_prepared("old", "0000-3b-02-2")])
    assert "'0000-3b-02-2' is still prepared for claim default/claim-old (old)" in str(err.value)
    assert "0000-3b-02-1'" not in str(err.value)


def test_prepare_passes_when_the_device_is_held_by_the_same_claim_or_by_none() -> None:
    from sriovdp.model.dra.prepare import check_not_prepared_elsewhere

    check_not_prepared_elsewhere(_prepared("same", "0000-3b-02-1"),
                                 [_prepared("same", "0000-3b-02-1"),
                                  _prepared("other", "0000-3b-02-3")])
    check_not_prepared_elsewhere(_prepared("empty"), [_prepared("other", "0000-3b-02-3")])


def test_prepare_is_refused_when_the_device_was_prepared_under_another_name() -> None:
    """An aux name that came to collide renames its DRA device; the id is the same device."""
    from sriovdp.model.dra.prepare import check_not_prepared_elsewhere

    with pytest.raises(PrepareError, match="still prepared for claim default/claim-old"):
        check_not_prepared_elsewhere(
            _prepared("new", "mlx5-core-sf-4-1a2b3c4d", ids=("mlx5_core.sf.4",)),
            [_prepared("old", "mlx5-core-sf-4", ids=("mlx5_core.sf.4",))])
