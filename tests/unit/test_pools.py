"""Pool assembly: exclusivity, eligibility, topology, explanations (model only, no I/O)."""

from __future__ import annotations

import pytest

from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import DeviceKind, Inventory, PciFunction
from sriovdp.model.diff import diff
from sriovdp.model.pools import build_pools, explain, nearest_misses, unmatched_identifiers
from sriovdp.model.selectors import AccelSelector, NetSelector, parse_function_range


def vf(addr: str, pf: str, idx: int, pf_netdev: str, *, device: str = "154c",
       driver: str = "iavf", vendor: str = "8086", numa: int | None = 0,
       group: str | None = None) -> PciFunction:
    return PciFunction(address=addr, vendor=vendor, device=device, class_code=0x020000,
                       driver=driver, numa_node=numa, physfn=pf, vf_index=idx,
                       pf_netdev=pf_netdev, iommu_group=group, link_type="ether")


def pf(addr: str, netdev: str, numvfs: int, **kw: object) -> PciFunction:
    return PciFunction(address=addr, vendor="8086", device="1572", class_code=0x020000,
                       driver="i40e", total_vfs=64, num_vfs=numvfs, netdevs=(netdev,),
                       link_type="ether", **kw)  # type: ignore[arg-type]


def inv(*fns: PciFunction) -> Inventory:
    return Inventory(functions={f.address: f for f in sorted(fns, key=lambda f: f.address)})


def res(name: str, *selectors: object, **kw: object) -> ResourceConfig:
    return ResourceConfig(name=name, selectors=tuple(selectors), **kw)  # type: ignore[arg-type]


def pools_of(inventory: Inventory, *configs: ResourceConfig) -> dict[str, list[str]]:
    pools = build_pools(inventory, configs, default_prefix="intel.com")
    return {k: list(p.devices) for k, p in pools.items()}


F24_HOST = inv(
    pf("0000:3b:00.1", "ens3f1", 2), pf("0000:3b:00.2", "ens3f2", 2),
    vf("0000:3b:0a.0", "0000:3b:00.1", 0, "ens3f1", driver="i40evf"),
    vf("0000:3b:0a.1", "0000:3b:00.1", 1, "ens3f1", driver="i40evf"),
    vf("0000:3b:0e.0", "0000:3b:00.2", 0, "ens3f2", driver="i40evf"),
    vf("0000:3b:0e.1", "0000:3b:00.2", 1, "ens3f2", driver="i40evf"),
)
ALL = res("all", NetSelector(vendors=frozenset({"8086"}), devices=frozenset({"154c"}),
                             drivers=frozenset({"i40evf"})))
F2 = res("f2", NetSelector(pf_names=(parse_function_range("ens3f2"),)))


def test_first_pool_wins_when_selectors_overlap_f24() -> None:
    assert pools_of(F24_HOST, ALL, F2) == {
        "intel.com/all": ["0000:3b:0a.0", "0000:3b:0a.1", "0000:3b:0e.0", "0000:3b:0e.1"],
        "intel.com/f2": [],
    }


def test_reverse_order_splits_the_pfs_when_the_narrow_pool_comes_first_f24() -> None:
    assert pools_of(F24_HOST, F2, ALL) == {
        "intel.com/f2": ["0000:3b:0e.0", "0000:3b:0e.1"],
        "intel.com/all": ["0000:3b:0a.0", "0000:3b:0a.1"],
    }


def test_explain_names_the_owner_when_a_device_was_taken_first() -> None:
    pools = build_pools(F24_HOST, (ALL, F2), default_prefix="intel.com")
    verdicts = explain(F24_HOST, (ALL, F2), pools, default_prefix="intel.com")
    reasons = {v.address: v.reason for v in verdicts["intel.com/f2"]}
    assert reasons["0000:3b:0e.0"] == "taken by intel.com/all"
    assert reasons["0000:3b:0a.0"] == "selectors[0].pfNames"
    assert reasons["0000:3b:00.1"] == "selectors[0].pfNames"  # a PF has no PF name


def test_explain_gives_the_eligibility_reason_when_the_selectors_match() -> None:
    cfg = res("any", NetSelector())
    pools = build_pools(F24_HOST, (cfg,), default_prefix="intel.com")
    reasons = {v.address: v.reason for v in
               explain(F24_HOST, (cfg,), pools, default_prefix="intel.com")["intel.com/any"]}
    assert "SR-IOV PF with 2 VFs" in reasons["0000:3b:00.1"]


def test_one_pf_splits_between_vfio_and_kernel_pools_f25() -> None:
    host = inv(
        pf("0000:01:00.0", "ens1f0", 4),
        vf("0000:01:02.0", "0000:01:00.0", 0, "ens1f0", driver="vfio-pci", group="20"),
        vf("0000:01:02.1", "0000:01:00.0", 1, "ens1f0", driver="vfio-pci", group="21"),
        vf("0000:01:02.2", "0000:01:00.0", 2, "ens1f0"),
        vf("0000:01:02.3", "0000:01:00.0", 3, "ens1f0"),
    )
    vfio = res("vfio", NetSelector(pf_names=(parse_function_range("ens1f0"),),
                                   drivers=frozenset({"vfio-pci"})))
    kern = res("kern", NetSelector(pf_names=(parse_function_range("ens1f0#2"),)))
    assert pools_of(host, vfio, kern) == {
        "intel.com/vfio": ["0000:01:02.0", "0000:01:02.1"],
        "intel.com/kern": ["0000:01:02.2"],
    }


def test_pf_is_pool_member_when_it_has_no_vfs_enabled() -> None:
    host = inv(pf("0000:3b:00.0", "ens1", 0))
    assert pools_of(host, res("p", NetSelector())) == {"intel.com/p": ["0000:3b:00.0"]}


def test_device_is_excluded_when_its_netdev_carries_the_default_route() -> None:
    host = inv(PciFunction(address="0000:00:03.0", vendor="1af4", device="1000",
                           class_code=0x020000, driver="virtio-pci", netdevs=("eth0",),
                           default_route=True))
    pools = build_pools(host, (res("p", NetSelector()),), default_prefix="intel.com")
    assert not pools["intel.com/p"].devices
    verdicts = explain(host, (res("p", NetSelector()),), pools, default_prefix="intel.com")
    assert verdicts["intel.com/p"][0].reason == "netdev eth0 carries the default route"


def test_accelerator_pool_takes_class_0x12_even_from_a_pf_with_vfs() -> None:
    qat = PciFunction(address="0000:3d:00.0", vendor="8086", device="37c8", class_code=0x120000,
                      driver="c6xx", total_vfs=16, num_vfs=16)
    host = inv(qat, pf("0000:3b:00.0", "ens1", 0))
    cfg = res("qat", AccelSelector(), kind=DeviceKind.ACCEL)
    assert pools_of(host, cfg) == {"intel.com/qat": ["0000:3d:00.0"]}


@pytest.mark.parametrize(
    ("exclude", "numa", "expected"),
    [
        pytest.param(False, 0, 0, id="numa-0"),
        pytest.param(False, 1, 1, id="numa-1"),
        pytest.param(False, None, None, id="vm-no-numa"),
        pytest.param(True, 1, None, id="excludeTopology"),
    ],
)
def test_numa_node_is_advertised_unless_unknown_or_excluded_f33_f34(
    exclude: bool, numa: int | None, expected: int | None
) -> None:
    host = inv(vf("0000:3b:02.0", "0000:3b:00.0", 0, "p0", numa=numa))
    pools = build_pools(host, (res("p", NetSelector(), exclude_topology=exclude),),
                        default_prefix="intel.com")
    assert pools["intel.com/p"].devices["0000:3b:02.0"].numa_node == expected


def test_resource_prefix_override_names_the_pool_and_socket() -> None:
    host = inv(vf("0000:3b:02.0", "0000:3b:00.0", 0, "p0"))
    pools = build_pools(host, (res("net", NetSelector(), prefix="example.org"),),
                        default_prefix="intel.com")
    pool = pools["example.org/net"]
    assert pool.socket_name == "example.org_net.sock"
    assert pool.env_name == "PCIDEVICE_EXAMPLE_ORG_NET"


def test_empty_pool_lists_its_nearest_misses_when_devices_do_not_match_f19() -> None:
    host = inv(pf("0000:5e:00.0", "ens2f0", 2),
               vf("0000:5e:10.0", "0000:5e:00.0", 0, "ens2f0", device="1520", driver="igbvf"),
               vf("0000:5e:10.4", "0000:5e:00.0", 1, "ens2f0", device="1520", driver="igbvf"))
    cfg = res("intel_sriov_netdevice", NetSelector(
        vendors=frozenset({"8086"}), devices=frozenset({"154c", "10ed"}),
        drivers=frozenset({"iavf", "ixgbevf"})))
    pools = build_pools(host, (cfg,), default_prefix="intel.com")
    verdicts = explain(host, (cfg,), pools, default_prefix="intel.com")
    misses = nearest_misses(verdicts["intel.com/intel_sriov_netdevice"])
    assert {(v.address, v.reason) for v in misses} >= {
        ("0000:5e:10.0", "selectors[0].devices"), ("0000:5e:10.4", "selectors[0].devices")}


def test_unmatched_identifiers_are_reported_when_a_pf_name_does_not_exist_f28() -> None:
    host = inv(pf("0000:01:00.0", "ens1f0", 1), vf("0000:01:02.0", "0000:01:00.0", 0, "ens1f0"))
    cfg = res("p", NetSelector(pf_names=(parse_function_range("ens1f0"),
                                         parse_function_range("ens9f9"))))
    assert pools_of(host, cfg) == {"intel.com/p": ["0000:01:02.0"]}
    assert unmatched_identifiers(host, (cfg,)) == [
        ("resourceList[0].selectors[0].pfNames[1]", "ens9f9")]


def test_diff_reports_added_updated_removed_when_pools_change() -> None:
    host = inv(vf("0000:3b:02.0", "0000:3b:00.0", 0, "p0"))
    a = build_pools(host, (res("a", NetSelector()), res("b", NetSelector())),
                    default_prefix="intel.com")
    b = build_pools(host, (res("b", NetSelector()), res("c", NetSelector())),
                    default_prefix="intel.com")
    changes = diff(a, b)
    assert set(changes.added) == {"intel.com/c"}
    assert set(changes.updated) == {"intel.com/b"}  # b now gets the device a had
    assert changes.removed == frozenset({"intel.com/a"})
    assert diff(b, b).empty
