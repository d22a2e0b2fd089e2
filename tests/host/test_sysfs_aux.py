"""Auxiliary network devices (Mellanox sub-functions) from ``sys/bus/auxiliary/devices``
(upstream-behavior §2.7, §10.8 X1-X4, §10.9 G6, §10.16 ParseAuxDeviceType and
GetPfNameFromAuxDev, field case F41)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from sriovdp.host.sysfs import parse_aux_name, scan
from sriovdp.model.devices import AuxFunction, SkippedFunction
from sriovdp.testing.fakehost import FakeHost

HOSTS = Path(__file__).parent.parent / "data/hosts"
PF = "0000:3b:00.0"


@pytest.fixture
def cx6(host: FakeHost) -> FakeHost:
    """ConnectX-6 Dx PF in legacy mode (one netdev, no switchdev port names)."""
    host.add_pf(PF, vendor="15b3", device="101d", driver="mlx5_core", ifname="enp59s0f0",
                numa_node=0, total_vfs=8, vf_offset=2)
    return host


def aux_link(host: FakeHost, name: str) -> Path:
    return host.root / "sys/bus/auxiliary/devices" / name


def aux_link_exists(root: Path, name: str) -> bool:
    return (root / "sys/bus/auxiliary/devices" / name).is_symlink()


def pf_dir(host: FakeHost) -> Path:
    return Path(os.path.realpath(host.paths.pci_devices / PF))


def test_sub_functions_read_when_switchdev_pf_has_four_sfs(tmp_path: Path) -> None:  # F41
    inventory = scan(FakeHost.load(tmp_path, HOSTS / "cx6dx-sf.yaml").paths)

    assert list(inventory.aux) == [f"mlx5_core.sf.{n}" for n in (2, 3, 4, 5)]
    sf2 = inventory.aux["mlx5_core.sf.2"]
    assert (sf2.aux_type, sf2.sf_num, sf2.parent, sf2.pf_address, sf2.pf_netdev) == (
        "sf", 2, inventory.functions[PF], PF, "enp59s0f0np0")
    assert (sf2.netdevs, sf2.link_type, sf2.address, sf2.numa_node) == (
        ("enp59s0f0s2",), "ether", "mlx5_core.sf.2", 0)
    assert sf2.rdma is not None and sf2.rdma.devices == ("mlx5_2",)
    assert [a.sf_num for a in inventory.aux.values()] == [2, 3, 4, 5]
    assert all(a.rdma is None for n, a in inventory.aux.items() if n != "mlx5_core.sf.2")


def test_non_sf_aux_device_left_out_quietly_when_it_has_no_sfnum(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = FakeHost.load(tmp_path, HOSTS / "cx6dx-sf.yaml").paths
    assert aux_link_exists(tmp_path, "mlx5_core.eth.0")

    with caplog.at_level(logging.DEBUG, logger="sriovdp.host.sysfs"):
        inventory = scan(paths)

    assert "mlx5_core.eth.0" not in inventory.aux and inventory.skipped == ()
    (record,) = [r for r in caplog.records if "mlx5_core.eth.0" in r.getMessage()]
    assert record.levelno == logging.DEBUG and "sfnum" in record.getMessage()


def test_sf_netdevs_not_given_to_pf_when_pf_has_sfs(tmp_path: Path) -> None:
    pf = scan(FakeHost.load(tmp_path, HOSTS / "cx6dx-sf.yaml").paths).functions[PF]

    assert pf.netdevs == ("en3f0pf0sf2", "en3f0pf0sf3", "en3f0pf0sf4", "en3f0pf0sf5",
                          "enp59s0f0np0")


def test_switchdev_pf_with_vfs_and_sfs_still_a_pf_when_scanned(cx6: FakeHost) -> None:
    cx6.add_vfs(PF, 2, device="101e", driver="mlx5_core", ifname="enp59s0f0v{n}")
    cx6.add_sf(PF, 7, ifname="enp59s0f0s7")

    inventory = scan(cx6.paths)

    assert inventory.functions[PF].is_pf_with_vfs
    assert inventory.aux["mlx5_core.sf.7"].parent.address == PF


def test_pf_netdev_is_first_netdev_when_pf_not_in_switchdev(cx6: FakeHost) -> None:  # §10.16
    cx6.add_sf(PF, 4, ifname="enp59s0f0s4")

    assert scan(cx6.paths).aux["mlx5_core.sf.4"].pf_netdev == "enp59s0f0"


def test_pf_netdev_is_uplink_when_representor_sorts_first(host: FakeHost) -> None:  # §10.16
    host.add_pf(PF, vendor="15b3", device="101d", driver="mlx5_core",
                ifname=["eth0", "enp3s0f0np0"])
    host.set_phys_port("eth0", "pf0sf4")
    host.set_phys_port("enp3s0f0np0", "p0")
    host.add_sf(PF, 4)

    assert scan(host.paths).aux["mlx5_core.sf.4"].pf_netdev == "enp3s0f0np0"


def test_vfs_get_uplink_as_pf_netdev_when_pf_in_switchdev(host: FakeHost) -> None:  # §2.5
    host.add_pf(PF, vendor="15b3", device="101d", driver="mlx5_core",
                ifname=["eth0", "enp3s0f0np0"], total_vfs=8, vf_offset=2)
    host.set_phys_port("eth0", "pf0vf0")
    host.set_phys_port("enp3s0f0np0", "p0")
    (vf,) = host.add_vfs(PF, 1, device="101e", driver="mlx5_core", ifname="enp3s0f0v{n}")
    host.add_sf(PF, 4)

    inventory = scan(host.paths)

    assert inventory.functions[vf].pf_netdev == "enp3s0f0np0"
    assert inventory.aux["mlx5_core.sf.4"].pf_netdev == "enp3s0f0np0"


def test_uplink_needs_switch_id_when_port_name_matches(host: FakeHost) -> None:
    host.add_pf(PF, vendor="15b3", device="101d", driver="mlx5_core",
                ifname=["eth0", "eth1"])
    host.set_phys_port("eth1", "p0")
    (pf_dir(host) / "net/eth1/phys_switch_id").write_text("\n")  # empty: not a switch port
    host.add_sf(PF, 4)

    assert scan(host.paths).aux["mlx5_core.sf.4"].pf_netdev == "eth0"


def test_no_pf_netdev_when_pf_has_no_netdev(host: FakeHost) -> None:
    host.add_pf(PF, vendor="15b3", device="101d", driver="mlx5_core")
    host.add_sf(PF, 4, ifname="enp59s0f0s4")

    sf = scan(host.paths).aux["mlx5_core.sf.4"]

    assert sf.pf_netdev is None and sf.link_type == "ether"  # kept; pfNames cannot match it


def test_link_type_from_pf_netdev_when_sf_has_no_netdev(host: FakeHost) -> None:  # G5/G6
    host.add_pf(PF, vendor="15b3", device="101b", driver="mlx5_core", ifname="ib0",
                link_type=32)
    host.add_sf(PF, 1)

    sf = scan(host.paths).aux["mlx5_core.sf.1"]

    assert (sf.netdevs, sf.link_type, sf.pf_netdev) == ((), "infiniband", "ib0")


def test_empty_link_type_when_neither_sf_nor_pf_has_netdev(host: FakeHost) -> None:  # G6
    host.add_pf(PF, vendor="15b3", device="101d", driver="mlx5_core")
    host.add_sf(PF, 1)

    sf = scan(host.paths).aux["mlx5_core.sf.1"]

    assert (sf.netdevs, sf.link_type, sf.pf_netdev) == ((), "", None)


def test_parent_fields_come_from_parent_when_aux_device_read(host: FakeHost) -> None:  # X3
    host.add_pf("0000:00:00.1", vendor="15b3", device="101d", driver="mlx5_core",
                ifname="net0", numa_node=0)
    host.add_aux("0000:00:00.1", "mlx5_core.sf.0", sfnum=1, ifname="eth0")

    sf = scan(host.paths).aux["mlx5_core.sf.0"]

    assert (sf.parent.driver, sf.parent.vendor, sf.parent.device, sf.numa_node) == (
        "mlx5_core", "15b3", "101d", 0)
    assert (sf.netdevs, sf.sf_num, sf.aux_type, sf.pf_netdev) == (("eth0",), 1, "sf", "net0")


def test_aux_devices_found_per_parent_when_two_nics(host: FakeHost) -> None:  # X1
    for addr in ("0000:01:00.0", "0000:02:00.0"):
        host.add_function(addr, vendor="15b3", device="101d", driver="mlx5_core")
    host.add_function("0000:03:00.0", vendor="15b3", device="101b", driver="mlx5_core",
                      class_code=0x070000)  # not a network controller
    for n in (1, 2, 3):
        host.add_aux("0000:01:00.0", f"mlx5_core.sf.{n}", sfnum=0)

    inventory = scan(host.paths)

    assert list(inventory.functions) == ["0000:01:00.0", "0000:02:00.0"]
    assert [(a.name, a.parent.address) for a in inventory.aux.values()] == [
        ("mlx5_core.sf.1", "0000:01:00.0"), ("mlx5_core.sf.2", "0000:01:00.0"),
        ("mlx5_core.sf.3", "0000:01:00.0")]


def test_aux_type_is_middle_part_when_names_vary(cx6: FakeHost) -> None:  # X4
    cx6.add_aux(PF, "mlx5_core.eth.1", sfnum=1, rdma="mlx5_3")
    cx6.add_aux(PF, "mlx5_core.eth-rep.2", sfnum=2)

    aux = scan(cx6.paths).aux

    assert [(a.name, a.aux_type, a.rdma is not None) for a in aux.values()] == [
        ("mlx5_core.eth-rep.2", "eth-rep", False), ("mlx5_core.eth.1", "eth", True)]


def test_pf_address_is_physfn_when_parent_is_a_vf(cx6: FakeHost) -> None:
    (vf,) = cx6.add_vfs(PF, 1, device="101e", driver="mlx5_core", ifname="enp59s0f0v{n}")
    cx6.add_aux(vf, "mlx5_core.sf.9", sfnum=9)

    sf = scan(cx6.paths).aux["mlx5_core.sf.9"]

    assert (sf.parent.address, sf.pf_address, sf.pf_netdev) == (vf, PF, "enp59s0f0")


def test_no_aux_devices_when_auxiliary_bus_missing(cx6: FakeHost) -> None:
    assert scan(cx6.paths).aux == {}


@pytest.mark.parametrize(("name", "expected"), [
    ("0000:12:34.0", None),
    ("driver_name.type.id", None),
    ("driver_name.type.-4", None),
    ("driver_name.type.123", ("driver_name", "type", 123)),
    ("mlx5_core.sf.4", ("mlx5_core", "sf", 4)),
    ("a.b.c.1", None),
    ("foo.bar", None),
])
def test_aux_name_parsed_when_driver_type_id(name: str, expected: object) -> None:  # §10.16
    assert parse_aux_name(name) == expected


# -- bad auxiliary devices never break the scan ------------------------------------------------


def good_sf(host: FakeHost) -> None:
    host.add_sf(PF, 4, ifname="enp59s0f0s4")


def scan_with_log(host: FakeHost, caplog: pytest.LogCaptureFixture) -> tuple[
        dict[str, AuxFunction], tuple[SkippedFunction, ...]]:
    with caplog.at_level(logging.WARNING, logger="sriovdp.host.sysfs"):
        inventory = scan(host.paths)
    assert PF in inventory.functions
    return dict(inventory.aux), inventory.skipped


def test_others_kept_when_sf_link_points_to_nowhere(
        cx6: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    good_sf(cx6)
    aux_link(cx6, "mlx5_core.sf.5").symlink_to("../../../devices/pci0000:3b/0000:3b:00.0/gone")

    aux, skipped = scan_with_log(cx6, caplog)

    assert list(aux) == ["mlx5_core.sf.4"]
    assert [(s.address, s.reason.split(" (")[0]) for s in skipped] == [
        ("mlx5_core.sf.5", "link to nowhere")]
    assert "mlx5_core.sf.5" in caplog.text


def test_others_kept_when_sf_entry_is_not_a_link(
        cx6: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    good_sf(cx6)
    aux_link(cx6, "mlx5_core.sf.6").mkdir()

    aux, skipped = scan_with_log(cx6, caplog)

    assert list(aux) == ["mlx5_core.sf.4"]
    assert skipped == (SkippedFunction("mlx5_core.sf.6", "link is not a symlink"),)


def test_others_kept_when_sf_has_no_pci_parent(
        cx6: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    good_sf(cx6)
    orphan = cx6.root / "sys/devices/virtual/mlx5_core.sf.8"
    orphan.mkdir(parents=True)
    (orphan / "sfnum").write_text("8\n")
    aux_link(cx6, "mlx5_core.sf.8").symlink_to("../../../devices/virtual/mlx5_core.sf.8")

    aux, skipped = scan_with_log(cx6, caplog)

    assert list(aux) == ["mlx5_core.sf.4"]
    assert skipped[0].address == "mlx5_core.sf.8"
    assert skipped[0].reason.startswith("no PCI function above it")


def test_sf_skipped_when_parent_is_unbound(
        host: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    host.add_pf(PF, vendor="15b3", device="101d", driver="mlx5_core", ifname="enp59s0f0")
    good_sf(host)
    host.add_function("0000:5e:00.0", vendor="15b3", device="101d", driver="mlx5_core")
    host.add_sf("0000:5e:00.0", 1)
    sf_dir = Path(os.path.realpath(aux_link(host, "mlx5_core.sf.1")))
    host.unbind("0000:5e:00.0")  # the FakeHost removes the SF with the driver ...
    sf_dir.mkdir()  # ... put a stale one back
    (sf_dir / "sfnum").write_text("1\n")
    aux_link(host, "mlx5_core.sf.1").symlink_to(
        "../../../devices/pci0000:5e/0000:5e:00.0/mlx5_core.sf.1")

    aux, skipped = scan_with_log(host, caplog)

    assert list(aux) == ["mlx5_core.sf.4"]
    assert SkippedFunction(
        "mlx5_core.sf.1", "parent PCI function 0000:5e:00.0 is not in the scan") in skipped


def test_others_kept_when_sfnum_is_junk(
        cx6: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    good_sf(cx6)
    cx6.add_sf(PF, 5)
    (pf_dir(cx6) / "mlx5_core.sf.5/sfnum").write_text("five\n")

    aux, skipped = scan_with_log(cx6, caplog)

    assert list(aux) == ["mlx5_core.sf.4"]
    assert skipped == (SkippedFunction("mlx5_core.sf.5", "sfnum is not a number: 'five'"),)


def test_badly_named_aux_devices_ignored_when_not_driver_type_id(
        cx6: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    good_sf(cx6)
    for name in ("foo.bar", "driver_name.type.-4", "0000:3b:00.0"):
        aux_link(cx6, name).symlink_to("../../../devices/pci0000:3b/0000:3b:00.0")

    aux, skipped = scan_with_log(cx6, caplog)

    assert list(aux) == ["mlx5_core.sf.4"] and skipped == ()
    assert caplog.records == []
