"""Per-attribute sysfs reading (upstream-behavior §2.4, §2.5 and the sysfs rows of §10.16)."""

from __future__ import annotations

import os

import pytest
from sysfs_fixtures import FlatSysfs

from sriovdp.host.sysfs import read_default_route_ifnames, scan
from sriovdp.model.devices import PciFunction
from sriovdp.testing.fakehost import FakeHost

VF = "0000:01:10.0"
PF = "0000:01:00.0"


def one(flat: FlatSysfs, addr: str = VF) -> PciFunction:
    return scan(flat.paths).functions[addr]


def skip_reason(flat: FlatSysfs, addr: str = VF) -> str:
    inventory = scan(flat.paths)
    assert addr not in inventory.functions
    (reason,) = [s.reason for s in inventory.skipped if s.address == addr]
    return reason


# -- ids and class ------------------------------------------------------------------------


def test_ids_read_from_vendor_and_device_files_when_present(flat: FlatSysfs) -> None:
    flat.nic(VF, device="1889")
    flat.file(f"pci/{VF}/modalias", "pci:v00001111d00002222sv00000000sd00000000bc02sc00i00\n")

    fn = one(flat)

    assert (fn.vendor, fn.device, fn.class_code) == ("8086", "1889", 0x020000)


def test_ids_fall_back_to_modalias_when_id_files_missing(flat: FlatSysfs) -> None:
    flat.dirs("drv/mlx5_core").link(f"pci/{VF}/driver", "../../../../bus/pci/drivers/mlx5_core")
    flat.file(f"pci/{VF}/modalias", "pci:v000015B3d0000101Esv000015B3sd00000000bc02sc00i00\n")

    fn = one(flat)

    assert (fn.vendor, fn.device, fn.class_code) == ("15b3", "101e", 0x020000)


@pytest.mark.parametrize("cls", ["0x020000", "0x020700", "0x028000", "0x120000"])
def test_function_kept_when_base_class_is_network_or_accelerator(flat: FlatSysfs, cls: str) -> None:
    flat.nic(VF, cls=cls)

    assert one(flat).class_code == int(cls, 16)


@pytest.mark.parametrize("cls", ["0x060400", "0x0b4000", "0x010802", "0xffff00"])
def test_function_ignored_when_base_class_is_something_else(flat: FlatSysfs, cls: str) -> None:
    flat.nic(VF, cls=cls)

    inventory = scan(flat.paths)

    assert (inventory.functions, inventory.skipped) == ({}, ())


def test_entries_ignored_when_name_is_not_a_pci_address(flat: FlatSysfs) -> None:
    flat.nic(VF).nic("01:10.1").nic("junk")

    assert list(scan(flat.paths).functions) == [VF]


# -- driver, NUMA, acpi_index ---------------------------------------------------------------


def test_driver_is_link_basename_when_target_is_relative(flat: FlatSysfs) -> None:
    flat.nic(VF, driver="fake")

    assert one(flat).driver == "fake"


@pytest.mark.parametrize(("content", "expected"), [
    (None, None), ("invalid content", None), ("1", 1), ("0", 0), ("-1", None), ("1\n", 1)])
def test_numa_node_parsed_when_file_is(flat: FlatSysfs, content: str | None,
                                       expected: int | None) -> None:
    flat.nic(VF)
    if content is not None:
        flat.file(f"pci/{VF}/numa_node", content)

    assert one(flat).numa_node == expected


def test_acpi_index_trimmed_when_present(flat: FlatSysfs) -> None:
    flat.nic(VF).nic(PF).file(f"pci/{VF}/acpi_index", "101\n")

    functions = scan(flat.paths).functions

    assert (functions[VF].acpi_index, functions[PF].acpi_index) == ("101", "")


def test_acpi_index_read_when_function_is_a_vf(flat: FlatSysfs) -> None:
    flat.nic(PF).nic(VF).link(f"pci/{VF}/physfn", f"../{PF}").file(f"pci/{VF}/acpi_index", "7")

    assert one(flat).acpi_index == "7"


# -- SR-IOV: PF side ------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "expected"), [
    ("32", 32), ("0", 0), ("junk", 0), (None, None)])
def test_total_vfs_read_when_sriov_totalvfs_is(flat: FlatSysfs, content: str | None,
                                               expected: int | None) -> None:
    flat.nic(PF)
    if content is not None:
        flat.file(f"pci/{PF}/sriov_totalvfs", content)

    assert one(flat, PF).total_vfs == expected


@pytest.mark.parametrize(("content", "expected"), [
    (None, 0), ("invalid content", 0), ("32", 32)])
def test_num_vfs_read_when_sriov_numvfs_is(flat: FlatSysfs, content: str | None,
                                           expected: int) -> None:
    flat.nic(PF).file(f"pci/{PF}/sriov_totalvfs", "64")
    if content is not None:
        flat.file(f"pci/{PF}/sriov_numvfs", content)

    assert one(flat, PF).num_vfs == expected


# -- SR-IOV: VF side ------------------------------------------------------------------------


def test_pf_address_from_physfn_when_link_present(flat: FlatSysfs) -> None:
    flat.nic(PF).nic(VF).link(f"pci/{VF}/physfn", f"../{PF}")

    functions = scan(flat.paths).functions

    assert (functions[VF].physfn, functions[VF].is_vf) == (PF, True)
    assert (functions[PF].physfn, functions[PF].vf_index) == (None, None)


def test_physfn_not_a_link_skips_function_when_it_is_a_file(flat: FlatSysfs) -> None:
    flat.nic(VF).file(f"pci/{VF}/physfn", "invalid content")

    assert skip_reason(flat) == "physfn is not a symlink"


def vfs_of(flat: FlatSysfs, links: dict[int, str], vfs: list[str]) -> dict[str, int | None]:
    flat.nic(PF)
    for n, target in links.items():
        flat.link(f"pci/{PF}/virtfn{n}", f"../{target}")
    for vf in vfs:
        flat.nic(vf).link(f"pci/{vf}/physfn", f"../{PF}")
    functions = scan(flat.paths).functions
    return {vf: functions[vf].vf_index for vf in vfs}


def test_vf_index_found_when_third_virtfn_points_to_it(flat: FlatSysfs) -> None:
    links = {0: "0000:01:08.0", 1: "0000:01:09.0", 2: VF}

    assert vfs_of(flat, links, [VF]) == {VF: 2}


def test_vf_index_found_when_virtfn_numbering_has_gaps(flat: FlatSysfs) -> None:
    vfs = ["0000:01:10.0", "0000:01:10.3", "0000:01:11.7"]

    assert vfs_of(flat, {0: vfs[0], 3: vfs[1], 15: vfs[2]}, vfs) == {
        vfs[0]: 0, vfs[1]: 3, vfs[2]: 15}


def test_vf_index_none_when_virtfn_points_to_missing_function(flat: FlatSysfs) -> None:
    assert vfs_of(flat, {0: "0000:01:08.0"}, [VF]) == {VF: None}


def test_vf_index_none_when_pf_has_no_virtfn_links(flat: FlatSysfs) -> None:
    assert vfs_of(flat, {}, [VF]) == {VF: None}


def test_other_vf_indexes_kept_when_one_virtfn_is_a_regular_file(flat: FlatSysfs) -> None:
    flat.file(f"pci/{PF}/virtfn0", "junk")

    assert vfs_of(flat, {1: VF}, [VF]) == {VF: 1}


def test_every_vf_index_found_when_pf_has_many_vfs(host: FakeHost) -> None:
    # how many virtfn links a scan reads is a cost, measured by bench/discovery.py
    pf = host.add_pf(PF, vendor="8086", device="1572", driver="i40e", total_vfs=64)
    vfs = host.add_vfs(pf, 32, device="154c", driver="iavf")

    functions = scan(host.paths).functions

    assert [functions[v].vf_index for v in vfs] == list(range(32))


# -- PF netdev (legacy eswitch path, §2.5) ---------------------------------------------------


def test_pf_netdev_is_first_pf_net_entry_when_physfn_has_net(flat: FlatSysfs) -> None:
    flat.nic(PF).nic(VF).link(f"pci/{VF}/physfn", f"../{PF}")
    flat.dirs(f"pci/{PF}/net/fakePF", f"pci/{PF}/net/zfakePF")

    assert one(flat).pf_netdev == "fakePF"


def test_pf_netdev_none_when_pf_net_dir_is_empty(flat: FlatSysfs) -> None:
    flat.nic(PF).nic(VF).link(f"pci/{VF}/physfn", f"../{PF}").dirs(f"pci/{PF}/net")

    assert one(flat).pf_netdev is None


def test_pf_netdev_none_when_function_is_not_a_vf(flat: FlatSysfs) -> None:
    flat.nic(VF).dirs(f"pci/{VF}/net/eth0")

    fn = one(flat)

    assert (fn.pf_netdev, fn.netdevs) == (None, ("eth0",))


# -- netdevs and link type ------------------------------------------------------------------


@pytest.mark.parametrize(("names", "expected"), [
    ([], ()), (["fake0"], ("fake0",)), (["fake1", "fake0"], ("fake0", "fake1"))])
def test_netdevs_sorted_when_net_dir_lists(flat: FlatSysfs, names: list[str],
                                           expected: tuple[str, ...]) -> None:
    flat.nic(VF).dirs(f"pci/{VF}/net", *(f"pci/{VF}/net/{n}" for n in names))

    fn = one(flat)

    assert (fn.netdevs, fn.netdev) == (expected, expected[0] if expected else None)


def test_vf_netdevs_listed_when_class_net_has_no_link(flat: FlatSysfs) -> None:
    flat.nic(PF).nic(VF).link(f"pci/{VF}/physfn", f"../{PF}").dirs(f"pci/{VF}/net/eth1")

    assert one(flat).netdevs == ("eth1",)


def test_net_not_a_directory_skips_function_when_it_is_a_file(flat: FlatSysfs) -> None:
    flat.nic(VF).file(f"pci/{VF}/net", "junk")

    assert skip_reason(flat) == "cannot read net: Not a directory"


def test_netdev_found_when_virtio_net_puts_it_under_virtio_dir(host: FakeHost) -> None:
    host.add_function("0000:00:03.0", vendor="1af4", device="1041", driver="virtio-pci",
                      ifname="eth0", virtio=2)

    fn = scan(host.paths).functions["0000:00:03.0"]

    assert (fn.netdevs, fn.link_type) == (("eth0",), "ether")


def test_sf_netdev_not_counted_for_pf_when_it_sits_below_the_pf(host: FakeHost) -> None:
    pf = host.add_function(PF, vendor="15b3", device="101d", driver="mlx5_core", ifname="p0")
    sf_net = host.paths.pci_devices / pf / "mlx5_core.sf.2/net/p0s2"
    sf_net.mkdir(parents=True)
    target = os.path.relpath(os.path.realpath(sf_net), host.paths.class_net)
    os.symlink(target, host.paths.class_net / "p0s2")

    assert scan(host.paths).functions[pf].netdevs == ("p0",)


def test_virtio_netdev_found_when_class_net_has_no_link(flat: FlatSysfs) -> None:
    flat.nic("0000:00:03.0", driver="virtio-pci").dirs("pci/0000:00:03.0/virtio2/net/eth0")

    assert one(flat, "0000:00:03.0").netdevs == ("eth0",)


@pytest.mark.parametrize(("arphrd", "name"), [
    (1, "ether"), (32, "infiniband"), (772, "loopback"), (9999, "unknown9999")])
def test_link_type_named_when_class_net_type_is(host: FakeHost, arphrd: int, name: str) -> None:
    host.add_function(VF, vendor="15b3", device="101e", driver="mlx5_core", ifname="ib0",
                      link_type=arphrd)

    assert scan(host.paths).functions[VF].link_type == name


def test_link_type_from_pf_when_vf_netdev_moved_to_pod(host: FakeHost) -> None:
    pf = host.add_pf(PF, vendor="15b3", device="1017", driver="mlx5_core", ifname="ib0",
                     link_type=32)
    (vf,) = host.add_vfs(pf, 1, device="1018", driver="mlx5_core", ifname="ib0v{n}")
    host.move_netdev_to_pod(vf)

    fn = scan(host.paths).functions[vf]

    assert (fn.netdevs, fn.pf_netdev, fn.link_type) == ((), "ib0", "infiniband")


def test_link_type_empty_when_neither_vf_nor_pf_has_netdev(host: FakeHost) -> None:
    pf = host.add_pf(PF, vendor="8086", device="1572", driver="vfio-pci", iommu_group=5)
    (vf,) = host.add_vfs(pf, 1, device="154c", driver="vfio-pci", iommu_group_base=10)

    assert scan(host.paths).functions[vf].link_type == ""


# -- vfio and uio -----------------------------------------------------------------------------


def test_iommu_group_none_when_link_absent(flat: FlatSysfs) -> None:
    flat.nic(VF)

    fn = one(flat)

    assert (fn.iommu_group, fn.vfio_noiommu) == (None, False)


def test_iommu_group_is_link_basename_when_group_exists(flat: FlatSysfs) -> None:
    flat.nic(VF, driver="vfio-pci").dirs("grp/1")
    flat.link(f"pci/{VF}/iommu_group", "../../../../kernel/iommu_groups/1")

    fn = one(flat)

    assert (fn.iommu_group, fn.vfio_noiommu) == ("1", False)


def test_iommu_group_read_when_link_is_dangling(flat: FlatSysfs) -> None:  # N4
    flat.nic(VF, driver="vfio-pci")
    flat.link(f"pci/{VF}/iommu_group", "../../../../kernel/iommu_groups/0")

    assert one(flat).iommu_group == "0"


def test_iommu_group_not_a_link_skips_function_when_it_is_a_dir(flat: FlatSysfs) -> None:
    flat.nic(VF, driver="vfio-pci").dirs(f"pci/{VF}/iommu_group")

    assert skip_reason(flat) == "iommu_group is not a symlink"


def test_noiommu_flagged_when_group_name_is_vfio_noiommu(host: FakeHost) -> None:
    host.add_function("0000:00:08.0", vendor="1af4", device="1000", driver="vfio-pci",
                      iommu_group=3, noiommu=True)

    fn = scan(host.paths).functions["0000:00:08.0"]

    assert (fn.iommu_group, fn.vfio_noiommu) == ("3", True)
    assert (host.root / "dev/vfio/noiommu-3").exists()


@pytest.mark.parametrize(("entries", "expected"), [
    (["uio1"], "uio1"), (["uio3", "uio2"], "uio2"), ([], None)])
def test_uio_is_first_entry_when_uio_dir_lists(flat: FlatSysfs, entries: list[str],
                                               expected: str | None) -> None:
    flat.nic(VF, driver="igb_uio").dirs(f"pci/{VF}/uio", *(f"pci/{VF}/uio/{e}" for e in entries))

    assert one(flat).uio == expected


def test_uio_not_a_directory_skips_function_when_it_is_a_file(flat: FlatSysfs) -> None:
    flat.nic(VF, driver="igb_uio").file(f"pci/{VF}/uio", "junk")

    assert skip_reason(flat) == "cannot read uio: Not a directory"


# -- default routes -------------------------------------------------------------------------

ROUTE_HEADER = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow"
                "\tIRTT\n")
ZERO = "0" * 32


def test_default_route_found_when_ipv4_route_has_zero_destination_and_mask(
        flat: FlatSysfs) -> None:
    flat.file("proc/net/route", ROUTE_HEADER
              + "fake0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
              + "fake1\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")

    assert read_default_route_ifnames(flat.paths) == {"fake1"}


def test_no_default_route_when_ipv4_routes_are_not_default(flat: FlatSysfs) -> None:
    flat.file("proc/net/route", ROUTE_HEADER
              + "fake0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
              + "fake0\t00000000\t010200C0\t0003\t0\t0\t0\t000000FF\t0\t0\t0\n")

    assert read_default_route_ifnames(flat.paths) == set()


def test_default_route_found_when_ipv6_route_is_default(flat: FlatSysfs) -> None:
    flat.file("proc/net/ipv6_route",
              f"fd000000000000000000000000000000 40 {ZERO} 00 {ZERO} 00000100 1 0 00000001 fake0\n"
              f"{ZERO} 00 {ZERO} 00 fd000000000000000000000000000001 00000400 2 0 00000003"
              "    fake1\n"
              f"{ZERO} 00 {ZERO} 00 {ZERO} ffffffff 00000001 00000000 00200200       lo\n")

    assert read_default_route_ifnames(flat.paths) == {"fake1"}


def test_no_default_route_when_proc_files_missing(flat: FlatSysfs) -> None:
    assert read_default_route_ifnames(flat.paths) == set()


def test_function_flagged_when_one_of_its_netdevs_has_default_route(host: FakeHost) -> None:
    host.add_function("0000:00:03.0", vendor="8086", device="1572", driver="i40e",
                      ifname=["eno1", "eno1d1"])
    host.add_function("0000:00:04.0", vendor="8086", device="1572", driver="i40e", ifname="eno2")
    host.add_default_route("eno1d1", ipv6=True)

    functions = scan(host.paths).functions

    assert functions["0000:00:03.0"].default_route is True
    assert functions["0000:00:04.0"].default_route is False


# -- host facts -----------------------------------------------------------------------------


def test_vhost_net_fact_set_when_both_device_nodes_exist(host: FakeHost) -> None:
    assert scan(host.paths).facts.vhost_net is False

    host.enable_vhost_net()

    assert scan(host.paths).facts.vhost_net is True
