"""CDI spec documents, qualified names and CDI-mode Allocate (§7.2, §10.14, F39; no I/O).

Every generated spec is checked against ``tests/data/cdi-schema.json``, a strict JSON
schema of CDI 0.5.0 that also encodes the CDI library's "no empty device edits" rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sriovdp.errors import AllocationError
from sriovdp.model.allocation import allocate
from sriovdp.model.cdi import (
    CDI_VERSION,
    CdiError,
    cdi_allocation,
    cdi_env_name,
    cdi_spec,
    cdi_spec_file_name,
    pool_spec_file_name,
    qualified_name,
    resource_annotation_key,
)
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
from sriovdp.model.pools import ResourcePool, build_pools
from sriovdp.model.selectors import AccelSelector, AuxNetSelector, NetSelector, Selector

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "cdi-schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
FACTS = HostFacts(vhost_net=True)


def assert_valid(doc: dict[str, Any] | None) -> None:
    assert doc is not None
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(doc)]
    assert errors == []
    names = [d["name"] for d in doc["devices"]]
    assert len(names) == len(set(names))  # the schema cannot say "unique by name"


def vf(addr: str, driver: str = "iavf", **kw: object) -> PciFunction:
    return PciFunction(address=addr, vendor="8086", device="154c", class_code=0x020000,
                       driver=driver, **kw)  # type: ignore[arg-type]


def make_pool(*fns: PciFunction, selectors: tuple[Selector, ...] = (NetSelector(),),
              kind: DeviceKind = DeviceKind.NET, prefix: str = "intel.com",
              name: str = "net", aux: tuple[AuxFunction, ...] = ()) -> ResourcePool:
    inventory = Inventory(functions={f.address: f for f in fns}, aux={a.name: a for a in aux})
    cfg = ResourceConfig(name=name, kind=kind, selectors=selectors)
    return build_pools(inventory, (cfg,), default_prefix=prefix)[f"{prefix}/{name}"]


def edits(doc: dict[str, Any] | None) -> dict[str, Any]:
    assert doc is not None
    return {d["name"]: d["containerEdits"] for d in doc["devices"]}


# --------------------------------------------------------------------------------------------
# Spec documents


def test_vfio_pool_spec_lists_each_device_nodes_when_written() -> None:
    p = make_pool(vf("0000:3b:02.0", "vfio-pci", iommu_group="87"),
                  vf("0000:3b:02.1", "vfio-pci", iommu_group="88"), name="intel_sriov_dpdk")
    doc = cdi_spec(p, FACTS)
    assert_valid(doc)
    assert doc == {
        "cdiVersion": "0.5.0",
        "kind": "intel.com/net-pci",
        "devices": [
            {"name": "0000:3b:02.0", "containerEdits": {"deviceNodes": [
                {"path": "/dev/vfio/vfio", "hostPath": "/dev/vfio/vfio", "permissions": "rw"},
                {"path": "/dev/vfio/87", "hostPath": "/dev/vfio/87", "permissions": "rw"}]}},
            {"name": "0000:3b:02.1", "containerEdits": {"deviceNodes": [
                {"path": "/dev/vfio/vfio", "hostPath": "/dev/vfio/vfio", "permissions": "rw"},
                {"path": "/dev/vfio/88", "hostPath": "/dev/vfio/88", "permissions": "rw"}]}},
        ],
    }


def test_noiommu_device_maps_the_noiommu_host_node_when_the_host_has_no_iommu() -> None:
    p = make_pool(vf("0000:00:08.0", "vfio-pci", iommu_group="3", vfio_noiommu=True))
    doc = cdi_spec(p, FACTS)
    assert_valid(doc)
    assert edits(doc)["0000:00:08.0"]["deviceNodes"][1] == {
        "path": "/dev/vfio/3", "hostPath": "/dev/vfio/noiommu-3", "permissions": "rw"}


def test_kernel_vf_pool_spec_is_valid_when_no_device_has_a_node_f39() -> None:
    p = make_pool(vf("0000:03:02.1"), vf("0000:03:02.2"), name="sriov-net")
    doc = cdi_spec(p, FACTS)
    assert_valid(doc)
    assert edits(doc) == {
        "0000:03:02.1": {"env": ["SRIOVDP_CDI_INTEL_COM_SRIOV-NET=intel.com/sriov-net"]},
        "0000:03:02.2": {"env": ["SRIOVDP_CDI_INTEL_COM_SRIOV-NET=intel.com/sriov-net"]},
    }


@pytest.mark.parametrize(
    "bad_edits",
    [pytest.param({}, id="no-edits"), pytest.param({"deviceNodes": []}, id="empty-nodes"),
     pytest.param({"env": []}, id="empty-env")],
)
def test_schema_rejects_a_device_when_it_has_no_edits_as_go_would_write_it(
    bad_edits: dict[str, Any]
) -> None:
    doc = cdi_spec(make_pool(vf("0000:03:02.1")), FACTS)
    assert doc is not None
    doc["devices"][0]["containerEdits"] = bad_edits
    assert not VALIDATOR.is_valid(doc)


def test_mixed_pool_spec_gives_env_only_to_devices_without_nodes_when_drivers_differ() -> None:
    p = make_pool(vf("0000:3b:02.0", "vfio-pci", iommu_group="87"), vf("0000:3b:02.1"))
    doc = cdi_spec(p, FACTS)
    assert_valid(doc)
    assert set(edits(doc)["0000:3b:02.0"]) == {"deviceNodes"}
    assert set(edits(doc)["0000:3b:02.1"]) == {"env"}


def test_rdma_pool_spec_lists_the_char_devices_once_when_rdma_cm_repeats_g8() -> None:
    rdma = RdmaInfo(devices=("mlx5_0", "mlx5_1"), char_devices=(
        "/dev/infiniband/issm0", "/dev/infiniband/umad0", "/dev/infiniband/uverbs0",
        "/dev/infiniband/rdma_cm", "/dev/infiniband/rdma_cm"))
    p = make_pool(vf("0000:5e:00.2", "mlx5_core", rdma=rdma),
                  selectors=(NetSelector(is_rdma=True),))
    doc = cdi_spec(p, FACTS)
    assert_valid(doc)
    assert [n["path"] for n in edits(doc)["0000:5e:00.2"]["deviceNodes"]] == [
        "/dev/infiniband/issm0", "/dev/infiniband/umad0", "/dev/infiniband/uverbs0",
        "/dev/infiniband/rdma_cm"]


def test_vdpa_pool_spec_lists_the_vhost_vdpa_node_when_taken_with_vdpa_type_vhost() -> None:
    vdpa = VdpaInfo(name="vdpa0", driver="vhost_vdpa", vhost_path="/dev/vhost-vdpa-0")
    p = make_pool(vf("0000:65:00.2", "mlx5_core", vdpa=vdpa),
                  selectors=(NetSelector(vdpa_type="vhost", need_vhost_net=True),))
    doc = cdi_spec(p, FACTS)
    assert_valid(doc)
    assert [n["path"] for n in edits(doc)["0000:65:00.2"]["deviceNodes"]] == [
        "/dev/vhost-vdpa-0", "/dev/vhost-net", "/dev/net/tun"]


def test_aux_pool_spec_uses_sf_names_and_the_net_sf_class_when_the_pool_is_aux_f41() -> None:
    parent = PciFunction(address="0000:3b:00.0", vendor="15b3", device="101d",
                         class_code=0x020000, driver="mlx5_core")
    sfs = tuple(AuxFunction(name=f"mlx5_core.sf.{n}", aux_type="sf", parent=parent,
                            pf_address=parent.address, pf_netdev="p0", sf_num=n)
                for n in (2, 4))
    p = make_pool(kind=DeviceKind.AUX_NET, selectors=(AuxNetSelector(),), aux=sfs,
                  prefix="nvidia.com", name="sf_pool")
    doc = cdi_spec(p, FACTS)
    assert_valid(doc)
    assert doc is not None and doc["kind"] == "nvidia.com/net-sf"
    assert list(edits(doc)) == ["mlx5_core.sf.2", "mlx5_core.sf.4"]


def test_accelerator_pool_spec_uses_the_net_accel_class_when_the_pool_is_an_accelerator() -> None:
    acc = PciFunction(address="0000:f7:00.1", vendor="8086", device="0d5d",
                      class_code=0x120000, driver="vfio-pci", iommu_group="190")
    p = make_pool(acc, kind=DeviceKind.ACCEL, selectors=(AccelSelector(),), name="acc100")
    doc = cdi_spec(p, FACTS)
    assert_valid(doc)
    assert doc is not None and doc["kind"] == "intel.com/net-accel"


def test_spec_is_none_when_the_pool_is_empty() -> None:
    assert cdi_spec(make_pool(), FACTS) is None


def test_spec_version_is_0_5_0_when_written() -> None:
    assert CDI_VERSION == "0.5.0"
    assert SCHEMA["properties"]["cdiVersion"]["const"] == CDI_VERSION


@pytest.mark.parametrize(
    "prefix",
    [pytest.param("1and1.com", id="digit-first"), pytest.param("intel.com.", id="dot-last"),
     pytest.param("intel com", id="space")],
)
def test_spec_is_refused_when_the_prefix_is_not_a_cdi_vendor(prefix: str) -> None:
    with pytest.raises(CdiError, match="invalid CDI vendor"):
        cdi_spec(make_pool(vf("0000:03:02.1"), prefix=prefix), FACTS)


def test_spec_file_name_follows_go_when_built() -> None:
    assert cdi_spec_file_name("intel.com", "net-pci", "intel_sriov_dpdk") == \
        "sriov-dp-intel.com-net-pci-intel_sriov_dpdk.yaml"
    p = make_pool(prefix="nvidia.com", name="sf_pool", kind=DeviceKind.AUX_NET,
                  selectors=(AuxNetSelector(),))
    assert pool_spec_file_name(p) == "sriov-dp-nvidia.com-net-sf-sf_pool.yaml"


def test_cdi_env_name_keeps_hyphens_when_the_resource_name_has_them() -> None:
    p = make_pool(prefix="example.com", name="sriov-net")
    assert cdi_env_name(p) == "SRIOVDP_CDI_EXAMPLE_COM_SRIOV-NET"


# --------------------------------------------------------------------------------------------
# Names and annotations (§10.14)


def test_qualified_name_joins_vendor_class_and_device_when_each_is_valid_10_14() -> None:
    assert qualified_name("example.com", "net", "0000:00:00.1") == "example.com/net=0000:00:00.1"


@pytest.mark.parametrize(
    ("device", "ok"),
    [
        pytest.param("0000:3b:02.1", True, id="pci-address"),
        pytest.param("mlx5_core.sf.4", True, id="aux-name"),
        pytest.param("-x", False, id="dash-first"),
        pytest.param("x:", False, id="colon-last"),
        pytest.param("a/b", False, id="slash"),
    ],
)
def test_qualified_name_checks_the_device_name_when_built(device: str, ok: bool) -> None:
    if ok:
        assert qualified_name("intel.com", "net-pci", device) == f"intel.com/net-pci={device}"
    else:
        with pytest.raises(CdiError, match="device name"):
            qualified_name("intel.com", "net-pci", device)


# --------------------------------------------------------------------------------------------
# CDI-mode Allocate (F39)


def test_cdi_allocation_gives_names_and_annotation_instead_of_specs_when_in_cdi_mode_f39(
) -> None:
    p = make_pool(vf("0000:00:00.1", "vfio-pci", iommu_group="1"),
                  vf("0000:00:00.2", "vfio-pci", iommu_group="2"), prefix="example.com")
    ids = ["0000:00:00.2", "0000:00:00.1"]
    alloc = cdi_allocation(p, ids, FACTS)
    assert alloc.devices == () and alloc.mounts == ()
    assert alloc.cdi_devices == ("example.com/net-pci=0000:00:00.2",
                                 "example.com/net-pci=0000:00:00.1")
    assert alloc.annotations == {
        "cdi.k8s.io/example.com_net":
            "example.com/net-pci=0000:00:00.2,example.com/net-pci=0000:00:00.1"}
    assert alloc.envs == allocate(p, ids, FACTS).envs


def test_cdi_allocation_keeps_cdi_names_and_adds_posix_envs_when_the_name_has_a_hyphen(
) -> None:
    p = make_pool(vf("0000:00:00.1", "vfio-pci", iommu_group="1"), prefix="example.com",
                  name="e810-c")
    alloc = cdi_allocation(p, ["0000:00:00.1"], FACTS)
    assert alloc.cdi_devices == ("example.com/net-pci=0000:00:00.1",)
    assert alloc.annotations == {
        "cdi.k8s.io/example.com_e810-c": "example.com/net-pci=0000:00:00.1"}
    assert alloc.envs["PCIDEVICE_EXAMPLE_COM_E810_C"] == "0000:00:00.1"
    assert alloc.envs["PCIDEVICE_EXAMPLE_COM_E810-C"] == "0000:00:00.1"
    assert cdi_env_name(p) == "SRIOVDP_CDI_EXAMPLE_COM_E810-C"  # the spec is unchanged


def test_cdi_allocation_has_no_annotation_when_the_request_is_empty() -> None:
    alloc = cdi_allocation(make_pool(vf("0000:00:00.1")), [], FACTS)
    assert alloc.annotations == {} and alloc.cdi_devices == ()
    assert alloc.envs == {"PCIDEVICE_INTEL_COM_NET": "", "PCIDEVICE_INTEL_COM_NET_INFO": "{}"}


def test_cdi_allocation_refuses_unknown_ids_when_not_in_the_pool() -> None:
    with pytest.raises(AllocationError):
        cdi_allocation(make_pool(vf("0000:00:00.1")), ["0000:99:00.0"], FACTS)


def test_cdi_annotation_keys_differ_when_two_pools_share_prefix_and_class() -> None:
    # the kubelet merges a container's annotations by key: one key per pool, or one
    # resource's CDI names are dropped ("Annotation has conflicting setting")
    a = make_pool(vf("0000:00:00.1"), name="net_a")
    b = make_pool(vf("0000:00:00.2"), name="net_b")
    assert a.cdi_class == b.cdi_class
    key_a, = cdi_allocation(a, ["0000:00:00.1"], FACTS).annotations
    key_b, = cdi_allocation(b, ["0000:00:00.2"], FACTS).annotations
    assert (key_a, key_b) == ("cdi.k8s.io/intel.com_net_a", "cdi.k8s.io/intel.com_net_b")


@pytest.mark.parametrize(
    ("prefix", "name"),
    [
        pytest.param("a" * 60 + ".com", "net", id="too-long"),
        pytest.param("intel.com", "net-", id="dash-last"),
        pytest.param("intel.com", "net_", id="underscore-last"),
    ],
)
def test_cdi_annotation_key_is_a_valid_hashed_name_when_prefix_and_name_do_not_fit(
    prefix: str, name: str
) -> None:
    p = make_pool(vf("0000:00:00.1"), prefix=prefix, name=name)
    (key,) = cdi_allocation(p, ["0000:00:00.1"], FACTS).annotations
    assert key == resource_annotation_key(prefix, name)
    assert key.startswith("cdi.k8s.io/sriovdp_") and len(key) - len("cdi.k8s.io/") <= 63
    other = make_pool(vf("0000:00:00.1"), prefix=prefix, name=name + "x")
    assert resource_annotation_key(other.prefix, other.name) != key


def test_cdi_allocation_names_every_device_of_the_spec_when_all_are_requested() -> None:
    p = make_pool(vf("0000:00:00.1"), vf("0000:00:00.2", "vfio-pci", iommu_group="2"))
    doc = cdi_spec(p, FACTS)
    assert doc is not None
    alloc = cdi_allocation(p, list(p.devices), FACTS)
    assert alloc.cdi_devices == tuple(f"{doc['kind']}={d['name']}" for d in doc["devices"])
