"""FakeHost lays trees out as the kernel does, and its mutators act like the real incidents."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sriovdp.host.sysfs import scan
from sriovdp.testing.fakehost import FakeHost

PF = "0000:3b:00.0"


@pytest.fixture
def x710(host: FakeHost) -> tuple[FakeHost, list[str]]:
    host.add_pf(PF, vendor="8086", device="1572", driver="i40e", ifname="ens785f0",
                numa_node=0, total_vfs=64)
    vfs = host.add_vfs(PF, count=4, device="154c", driver="iavf", ifname="ens785f0v{n}")
    return host, vfs


def rel(host: FakeHost, path: str) -> str:
    """Where a path under the root really leads, relative to the root."""
    return os.path.relpath(os.path.realpath(host.root / path), host.root)


# -- layout -----------------------------------------------------------------------------------


def test_bus_entry_is_relative_link_when_function_added(x710: tuple[FakeHost, list[str]]) -> None:
    host, _ = x710
    bus = host.root / "sys/bus/pci/devices" / PF

    assert os.readlink(bus) == f"../../../devices/pci0000:3b/{PF}"
    assert (host.root / f"sys/devices/pci0000:3b/{PF}").is_dir()
    assert not (host.root / f"sys/devices/pci0000:3b/{PF}").is_symlink()


def test_links_resolve_inside_root_when_followed(x710: tuple[FakeHost, list[str]]) -> None:
    host, vfs = x710
    dev = f"sys/bus/pci/devices/{vfs[1]}"

    assert rel(host, f"{dev}/driver") == "sys/bus/pci/drivers/iavf"
    assert rel(host, f"{dev}/physfn") == f"sys/devices/pci0000:3b/{PF}"
    assert rel(host, f"sys/bus/pci/devices/{PF}/virtfn1") == f"sys/devices/pci0000:3b/{vfs[1]}"
    assert rel(host, "sys/class/net/ens785f0v1") == (
        f"sys/devices/pci0000:3b/{vfs[1]}/net/ens785f0v1")
    assert rel(host, f"sys/bus/pci/drivers/iavf/{vfs[1]}") == f"sys/devices/pci0000:3b/{vfs[1]}"


def test_vf_addresses_follow_offset_and_stride_when_computed(host: FakeHost) -> None:
    host.add_pf("0000:5e:00.0", vendor="8086", device="1521", driver="igb", total_vfs=7,
                vf_offset=0x80, vf_stride=4)
    host.add_pf("0000:af:00.0", vendor="15b3", device="1017", driver="mlx5_core", vf_offset=2)
    host.add_pf("0000:18:00.0", vendor="8086", device="1572", driver="i40e", total_vfs=256)

    assert host.add_vfs("0000:5e:00.0", 2, device="1520") == ["0000:5e:10.0", "0000:5e:10.4"]
    assert host.add_vfs("0000:af:00.0", 2, device="1018") == ["0000:af:00.2", "0000:af:00.3"]
    assert host.vf_address("0000:18:00.0", 255) == "0000:19:01.7"  # 0x1800+16+255


def test_id_files_written_like_the_kernel_when_function_added(host: FakeHost) -> None:
    host.add_function("0000:00:03.0", vendor="1AF4", device="1041", driver="virtio-pci",
                      ifname="eth0", virtio=True)
    d = host.root / "sys/bus/pci/devices/0000:00:03.0"

    assert (d / "vendor").read_text() == "0x1af4\n"
    assert (d / "class").read_text() == "0x020000\n"
    assert (d / "numa_node").read_text() == "-1\n"
    assert (d / "modalias").read_text() == (
        "pci:v00001AF4d00001041sv00001AF4sd00000000bc02sc00i00\n")
    assert (d / "virtio0/net/eth0/type").read_text() == "1\n"


def test_proc_route_has_kernel_header_when_host_is_new(host: FakeHost) -> None:
    route = (host.root / "proc/net/route").read_text()

    assert route.split()[:3] == ["Iface", "Destination", "Gateway"]


def test_spec_values_rejected_with_path_when_not_quoted(tmp_path: Path) -> None:
    spec = {"functions": [{"address": "0000:00:05.0", "vendor": 8086, "device": "154c"}]}

    with pytest.raises(ValueError, match=r"functions\[0\]\.vendor"):
        FakeHost.from_spec(tmp_path, spec)


# -- mutators ---------------------------------------------------------------------------------


def test_netdev_dropped_and_vfio_node_added_when_bound_to_vfio(
        x710: tuple[FakeHost, list[str]]) -> None:
    host, vfs = x710

    host.bind(vfs[1], "vfio-pci", iommu_group=87)

    fn = scan(host.paths).functions[vfs[1]]
    assert (fn.driver, fn.netdevs, fn.iommu_group) == ("vfio-pci", (), "87")
    assert not (host.root / "sys/class/net/ens785f0v1").exists()
    assert (host.root / "dev/vfio/87").exists() and (host.root / "dev/vfio/vfio").exists()


def test_vfio_node_removed_when_rebound_to_kernel_driver(
        x710: tuple[FakeHost, list[str]]) -> None:
    host, vfs = x710
    host.bind(vfs[0], "vfio-pci", iommu_group=87)

    host.bind(vfs[0], "iavf", ifname="ens785f0v0")

    assert not (host.root / "dev/vfio/87").exists()
    assert scan(host.paths).functions[vfs[0]].netdevs == ("ens785f0v0",)


def test_uio_device_appears_when_bound_to_igb_uio(x710: tuple[FakeHost, list[str]]) -> None:
    host, vfs = x710

    host.bind(vfs[2], "igb_uio", uio=0)

    assert scan(host.paths).functions[vfs[2]].uio == "uio0"
    assert (host.root / "dev/uio0").exists()


def test_function_skipped_when_unbound(x710: tuple[FakeHost, list[str]]) -> None:
    host, vfs = x710

    host.bind(vfs[3], None)

    inventory = scan(host.paths)
    assert vfs[3] not in inventory.functions
    assert [s.address for s in inventory.skipped] == [vfs[3]]


def test_vfs_gone_when_numvfs_set_to_zero(x710: tuple[FakeHost, list[str]]) -> None:
    host, _ = x710

    host.set_numvfs(PF, 0)

    inventory = scan(host.paths)
    assert list(inventory.functions) == [PF]
    assert inventory.functions[PF].num_vfs == 0
    assert not any(n.startswith("virtfn") for n in os.listdir(host.paths.pci_devices / PF))


def test_vfs_recreated_from_template_when_numvfs_set_again(
        x710: tuple[FakeHost, list[str]]) -> None:
    host, vfs = x710
    host.set_numvfs(PF, 0)

    again = host.set_numvfs(PF, 2)

    functions = scan(host.paths).functions
    assert again == vfs[:2]
    assert [(functions[v].driver, functions[v].netdevs) for v in again] == [
        ("iavf", ("ens785f0v0",)), ("iavf", ("ens785f0v1",))]


def test_numvfs_change_refused_when_vfs_exist(x710: tuple[FakeHost, list[str]]) -> None:
    host, _ = x710

    with pytest.raises(OSError) as info:
        host.set_numvfs(PF, 8)

    assert info.value.errno == errno.EBUSY


def test_netdev_vanishes_when_moved_to_pod(x710: tuple[FakeHost, list[str]]) -> None:
    host, vfs = x710

    assert host.move_netdev_to_pod(vfs[0]) == ["ens785f0v0"]

    fn = scan(host.paths).functions[vfs[0]]
    assert (fn.netdevs, fn.pf_netdev, fn.link_type) == ((), "ens785f0", "ether")
    assert not (host.root / "sys/class/net/ens785f0v0").exists()


def test_operstate_and_carrier_written_when_link_goes_down(
        x710: tuple[FakeHost, list[str]]) -> None:
    host, vfs = x710
    net = host.root / "sys/class/net"

    host.set_link("ens785f0", carrier=False)
    host.set_link(vfs[0], carrier=False)

    assert (net / "ens785f0/operstate").read_text() == "down\n"
    assert (net / "ens785f0/carrier").read_text() == "0\n"
    assert (net / "ens785f0v0/carrier").read_text() == "0\n"
    assert (net / "ens785f0v1/operstate").read_text() == "up\n"


def test_function_and_its_links_gone_when_removed(x710: tuple[FakeHost, list[str]]) -> None:
    host, vfs = x710

    host.remove(vfs[1])

    assert vfs[1] not in scan(host.paths).functions
    assert not (host.paths.pci_devices / PF / "virtfn1").exists()
    assert (host.paths.pci_devices / PF / "sriov_numvfs").read_text() == "3\n"
    assert not os.path.lexists(host.paths.pci_devices / vfs[1])


def test_pf_and_vfs_gone_when_pf_removed(x710: tuple[FakeHost, list[str]]) -> None:
    host, _ = x710

    host.remove(PF)

    assert scan(host.paths).functions == {}
    assert os.listdir(host.root / "sys/class/net") == []


def test_default_route_seen_when_added(x710: tuple[FakeHost, list[str]]) -> None:
    host, _ = x710

    host.add_default_route("ens785f0")

    assert scan(host.paths).functions[PF].default_route is True
    host.remove_default_route("ens785f0")
    assert scan(host.paths).functions[PF].default_route is False


def test_scaled_host_has_every_vf_when_built(tmp_path: Path) -> None:
    host = FakeHost.scaled(tmp_path, pfs=2, vfs_per_pf=8)

    inventory = scan(host.paths)

    assert len(inventory.functions) == 2 + 16
    assert {f.pf_netdev for f in inventory.functions.values() if f.is_vf} == {"ens0f0", "ens1f0"}


def test_scaled_host_has_1024_vfs_per_pf_when_asked_for_them(tmp_path: Path) -> None:
    host = FakeHost.scaled(tmp_path, pfs=2, vfs_per_pf=1024)

    inventory = scan(host.paths)

    assert len(inventory.functions) == 2 * 1025
    vfs = [f for f in inventory.functions.values() if f.is_vf]
    assert sorted(f.vf_index for f in vfs if f.physfn == "0000:18:00.0") == list(range(1024))
    assert len({f.iommu_group for f in inventory.functions.values()}) == 2 * 1025


def test_scaled_host_keeps_its_pf_addresses_when_vfs_fit_four_buses(tmp_path: Path) -> None:
    host = FakeHost.scaled(tmp_path, pfs=2, vfs_per_pf=8)

    assert {f.address for f in scan(host.paths).functions.values() if not f.is_vf} == {
        "0000:18:00.0", "0000:1c:00.0"}


def test_scaled_host_is_refused_when_the_pfs_run_out_of_pci_buses(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="buses"):
        FakeHost.scaled(tmp_path, pfs=64, vfs_per_pf=1024)
