"""Pool assembly: exclusivity, eligibility, topology, explanations (model only, no I/O)."""

from __future__ import annotations

import pytest

from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import (
    AuxFunction,
    DeviceKind,
    Inventory,
    PciFunction,
    RdmaInfo,
    VdpaInfo,
)
from sriovdp.model.diff import diff
from sriovdp.model.pools import build_pools, explain, nearest_misses, unmatched_identifiers
from sriovdp.model.selectors import (
    AccelSelector,
    AuxNetSelector,
    NetSelector,
    parse_function_range,
)


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


# --------------------------------------------------------------------------------------------
# §10.12: filtering + assembly over the four factory mocks (ddpProfiles and pKeys included)


def _factory_mock(i: int, driver: str, pf_name: str, link: str, ddp: str, pkey: str
                  ) -> PciFunction:
    return PciFunction(address=f"0000:03:02.{i}", vendor="8086", device="1111",
                       class_code=0x020000, driver=driver, pf_netdev=pf_name,
                       physfn=f"0000:86:00.{i}", link_type=link, ddp_profile=ddp, pkey=pkey)


FACTORY_HOST = inv(
    _factory_mock(0, "iavf", "enp2s0f2", "ether", "GTP", "0x1"),
    _factory_mock(1, "iavf", "ens0", "infiniband", "PPPoE", "0x2"),
    _factory_mock(2, "vfio-pci", "eth0", "other", "GTP", "0xABCD"),
    _factory_mock(3, "vfio-pci", "net2", "other2", "PPPoE", "0x50"),
)
FACTORY_SEL0 = NetSelector(
    vendors=frozenset({"8086"}), devices=frozenset({"1111"}),
    drivers=frozenset({"iavf", "vfio-pci"}), pci_addresses=frozenset({"0000:03:02.0"}),
    pf_names=(parse_function_range("enp2s0f2"),),
    root_devices=(parse_function_range("0000:86:00.0"),), link_types=frozenset({"ether"}),
    ddp_profiles=frozenset({"GTP"}), pkeys=frozenset({"0x1"}))
FACTORY_SEL1 = NetSelector(
    drivers=frozenset({"vfio-pci"}), pci_addresses=frozenset({"0000:03:02.3"}),
    pf_names=(parse_function_range("net2"),), root_devices=(parse_function_range("0000:86:00.3"),),
    link_types=frozenset({"other2"}), ddp_profiles=frozenset({"PPPoE"}),
    pkeys=frozenset({"0x50"}))


def test_pool_takes_the_one_mock_when_one_selector_sets_every_field_10_12() -> None:
    assert pools_of(FACTORY_HOST, res("p", FACTORY_SEL0)) == {"intel.com/p": ["0000:03:02.0"]}


def test_pool_takes_both_mocks_when_a_second_selector_matches_another_10_12() -> None:
    assert pools_of(FACTORY_HOST, res("p", FACTORY_SEL0, FACTORY_SEL1)) == {
        "intel.com/p": ["0000:03:02.0", "0000:03:02.3"]}


# --------------------------------------------------------------------------------------------
# §3.4 / N2 / N5: the selector that took a device decides is_rdma and vdpa_type

RDMA = RdmaInfo(devices=("mlx5_1",), char_devices=("/dev/infiniband/uverbs1",))
VHOST = VdpaInfo(name="vdpa1", driver="vhost_vdpa", vhost_path="/dev/vhost-vdpa-1")


def mlx_vf(addr: str, **kw: object) -> PciFunction:
    return PciFunction(address=addr, vendor="15b3", device="101e", class_code=0x020000,
                       driver="mlx5_core", **kw)  # type: ignore[arg-type]


def test_device_is_rdma_when_taken_by_an_is_rdma_selector_n2() -> None:
    host = inv(mlx_vf("0000:00:00.1", rdma=RDMA), mlx_vf("0000:00:00.2"))
    pools = build_pools(host, (res("p", NetSelector(is_rdma=True), NetSelector()),),
                        default_prefix="intel.com")
    devs = pools["intel.com/p"].devices
    assert devs["0000:00:00.1"].is_rdma is True
    assert devs["0000:00:00.2"].is_rdma is False  # taken by selector 1, and not capable


def test_device_is_not_rdma_when_an_earlier_selector_without_is_rdma_took_it_n2() -> None:
    host = inv(mlx_vf("0000:00:00.1", rdma=RDMA))
    pools = build_pools(host, (res("p", NetSelector(), NetSelector(is_rdma=True)),),
                        default_prefix="intel.com")
    assert pools["intel.com/p"].devices["0000:00:00.1"].is_rdma is False


def test_device_gets_the_selector_vdpa_type_when_taken_by_a_vdpa_selector_n5() -> None:
    host = inv(mlx_vf("0000:00:00.1", vdpa=VHOST, rdma=RDMA), mlx_vf("0000:00:00.2"))
    cfg = res("p", NetSelector(vdpa_type="vhost", is_rdma=True), NetSelector())
    devs = build_pools(host, (cfg,), default_prefix="intel.com")["intel.com/p"].devices
    assert (devs["0000:00:00.1"].vdpa_type, devs["0000:00:00.1"].is_rdma) == ("vhost", True)
    assert devs["0000:00:00.2"].vdpa_type is None


def test_second_selector_gets_nothing_when_the_first_took_every_device_3_4() -> None:
    host = inv(vf("0000:3b:02.0", "0000:3b:00.0", 0, "p0"))
    cfg = res("p", NetSelector(vendors=frozenset({"8086"}), need_vhost_net=True),
              NetSelector(vendors=frozenset({"8086"}), devices=frozenset({"154c"})))
    dev = build_pools(host, (cfg,), default_prefix="intel.com")["intel.com/p"].devices
    assert dev["0000:3b:02.0"].need_vhost_net is True


# --------------------------------------------------------------------------------------------
# auxNetDevice pools (F41, §3.1, §10.12)

MLX_PF = PciFunction(address="0000:3b:00.0", vendor="15b3", device="101d", class_code=0x020000,
                     driver="mlx5_core", numa_node=1, netdevs=("enp59s0f0np0",),
                     link_type="ether", default_route=True)


def sf(name: str, sf_num: int, **kw: object) -> AuxFunction:
    return AuxFunction(name=name, aux_type=name.split(".")[1], parent=MLX_PF,
                       pf_address=MLX_PF.address, pf_netdev="enp59s0f0np0", sf_num=sf_num,
                       link_type="ether", **kw)  # type: ignore[arg-type]


def aux_inv(*auxes: AuxFunction, functions: tuple[PciFunction, ...] = (MLX_PF,)) -> Inventory:
    return Inventory(functions={f.address: f for f in functions},
                     aux={a.name: a for a in sorted(auxes, key=lambda a: a.name)})


def test_aux_pool_takes_sfs_by_name_when_the_parent_carries_the_default_route_f41() -> None:
    host = aux_inv(sf("mlx5_core.sf.2", 0), sf("mlx5_core.sf.3", 1))
    cfg = res("sf", AuxNetSelector(aux_types=frozenset({"sf"})), kind=DeviceKind.AUX_NET)
    pools = build_pools(host, (cfg,), default_prefix="nvidia.com")
    pool = pools["nvidia.com/sf"]
    assert list(pool.devices) == ["mlx5_core.sf.2", "mlx5_core.sf.3"]
    dev = pool.devices["mlx5_core.sf.2"]
    assert (dev.id, dev.function.address, dev.numa_node) == ("mlx5_core.sf.2",) * 2 + (1,)
    assert (pool.cdi_class, pool.cdi_kind) == ("net-sf", "nvidia.com/net-sf")


def test_pf_joins_a_netdevice_pool_when_its_sfs_are_in_an_aux_pool_3_1() -> None:
    pf_ok = PciFunction(address="0000:3b:00.0", vendor="15b3", device="101d",
                        class_code=0x020000, driver="mlx5_core", netdevs=("p0",))
    host = aux_inv(sf("mlx5_core.sf.2", 0), functions=(pf_ok,))
    pools = pools_of(host, res("net", NetSelector()),
                     res("sf", AuxNetSelector(), kind=DeviceKind.AUX_NET))
    assert pools == {"intel.com/net": ["0000:3b:00.0"], "intel.com/sf": ["mlx5_core.sf.2"]}


def test_aux_pool_takes_every_aux_device_when_given_the_four_factory_mocks_10_12() -> None:
    names = ["igb.eth.0", "igb.eth.1", "mlx5_core.eth.0", "mlx5_core.sf.1"]
    host = aux_inv(*(sf(n, i) for i, n in enumerate(names)))
    assert pools_of(host, res("aux", AuxNetSelector(), kind=DeviceKind.AUX_NET)) == {
        "intel.com/aux": names}


def test_aux_devices_are_exclusive_when_two_aux_pools_overlap() -> None:
    host = aux_inv(sf("mlx5_core.sf.2", 0), sf("mlx5_core.sf.3", 1))
    first = res("a", AuxNetSelector(pf_names=(parse_function_range("enp59s0f0np0#1"),)),
                kind=DeviceKind.AUX_NET)
    second = res("b", AuxNetSelector(), kind=DeviceKind.AUX_NET)
    assert pools_of(host, first, second) == {
        "intel.com/a": ["mlx5_core.sf.3"], "intel.com/b": ["mlx5_core.sf.2"]}


def test_aux_device_is_rdma_when_taken_by_an_is_rdma_aux_selector_x4() -> None:
    host = aux_inv(sf("mlx5_core.eth.1", 1, rdma=RDMA), sf("mlx5_core.eth-rep.2", 2))
    cfg = res("aux", AuxNetSelector(is_rdma=True), AuxNetSelector(), kind=DeviceKind.AUX_NET)
    devs = build_pools(host, (cfg,), default_prefix="intel.com")["intel.com/aux"].devices
    assert {k: d.is_rdma for k, d in devs.items()} == {
        "mlx5_core.eth-rep.2": False, "mlx5_core.eth.1": True}


def test_aux_topology_is_hidden_when_the_pool_excludes_topology() -> None:
    host = aux_inv(sf("mlx5_core.sf.2", 0))
    cfg = res("sf", AuxNetSelector(), kind=DeviceKind.AUX_NET, exclude_topology=True)
    pool = build_pools(host, (cfg,), default_prefix="intel.com")["intel.com/sf"]
    assert pool.devices["mlx5_core.sf.2"].numa_node is None


def test_explain_gives_aux_verdicts_when_the_pool_is_an_aux_pool() -> None:
    host = aux_inv(sf("mlx5_core.sf.2", 0), sf("mlx5_core.sf.3", 1))
    cfg = res("sf", AuxNetSelector(pf_names=(parse_function_range("enp59s0f0np0#0"),)),
              kind=DeviceKind.AUX_NET)
    pools = build_pools(host, (cfg,), default_prefix="intel.com")
    verdicts = explain(host, (cfg,), pools, default_prefix="intel.com")["intel.com/sf"]
    assert [(v.address, v.member, v.reason) for v in verdicts] == [
        ("mlx5_core.sf.2", True, ""), ("mlx5_core.sf.3", False, "selectors[0].pfNames")]


def test_net_pools_ignore_aux_devices_when_explaining() -> None:
    host = aux_inv(sf("mlx5_core.sf.2", 0))
    cfg = res("net", NetSelector())
    pools = build_pools(host, (cfg,), default_prefix="intel.com")
    verdicts = explain(host, (cfg,), pools, default_prefix="intel.com")["intel.com/net"]
    assert [v.address for v in verdicts] == ["0000:3b:00.0"]


def test_unmatched_identifiers_know_sf_uplinks_when_aux_selectors_name_them() -> None:
    host = aux_inv(sf("mlx5_core.sf.2", 0), functions=())
    cfg = res("sf", AuxNetSelector(pf_names=(parse_function_range("enp59s0f0np0"),),
                                   root_devices=(parse_function_range("0000:3b:00.0"),)),
              kind=DeviceKind.AUX_NET)
    assert unmatched_identifiers(host, (cfg,)) == []


@pytest.mark.parametrize(
    ("kind", "selector", "cls"),
    [
        pytest.param(DeviceKind.NET, NetSelector(), "net-pci", id="netDevice"),
        pytest.param(DeviceKind.ACCEL, AccelSelector(), "net-accel", id="accelerator"),
        pytest.param(DeviceKind.AUX_NET, AuxNetSelector(), "net-sf", id="auxNetDevice"),
    ],
)
def test_pool_cdi_kind_uses_the_go_pool_type_when_the_device_type_is_given(
    kind: DeviceKind, selector: object, cls: str
) -> None:
    pool = build_pools(inv(), (res("r", selector, kind=kind, prefix="example.com"),),
                       default_prefix="intel.com")["example.com/r"]
    assert pool.cdi_kind == f"example.com/{cls}"
