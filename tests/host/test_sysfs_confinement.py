"""Reads stay inside --host-root and are bounded; an odd vfio-pci function is skipped.

The rule: below a host root other than ``/``, links resolve as if the root were ``/`` (an
absolute target is re-rooted under the root, ``..`` stops at it); attribute files are not
followed when they are links; routing tables are read up to a limit.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from sriovdp.host.paths import HostPaths
from sriovdp.host.sysfs import fingerprint, read_default_route_ifnames, scan
from sriovdp.host.sysfs.net import ROUTE_TABLE_LIMIT
from sriovdp.testing.fakehost import FakeHost

PF = "0000:3b:00.0"
VF0, VF1 = "0000:3b:02.0", "0000:3b:02.1"


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    host = FakeHost(tmp_path / "h")
    pf = host.add_pf(PF, vendor="8086", device="1572", driver="i40e", ifname="ens1",
                     numa_node=0)
    host.add_vfs(pf, 2, device="154c", driver="iavf", ifname="ens1v{n}", iommu_group_base=40)
    host.add_default_route("ens1")
    return host


def bus_link(host: FakeHost, address: str) -> Path:
    return host.paths.pci_devices / address


def relink(link: Path, target: str) -> None:
    link.unlink()
    os.symlink(target, link)


def test_absolute_device_link_is_read_under_the_host_root_when_it_starts_with_slash(
    host: FakeHost,
) -> None:
    link = bus_link(host, VF0)
    inside = os.readlink(link).replace("../../../devices/", "/sys/devices/")
    relink(link, inside)  # "/sys/devices/...": the host root's sys, not this machine's

    fn = scan(host.paths).functions[VF0]

    assert (fn.vendor, fn.device, fn.driver, fn.vf_index) == ("8086", "154c", "iavf", 0)


def test_dotdot_in_a_device_link_stops_at_the_host_root_when_it_climbs_too_far(
    host: FakeHost,
) -> None:
    link = bus_link(host, VF1)
    relink(link, "../" * 40 + "sys/" + os.readlink(link).removeprefix("../../../"))

    assert scan(host.paths).functions[VF1].netdevs == ("ens1v1",)


def test_this_machines_files_are_never_read_when_a_link_points_at_them(
    host: FakeHost,
) -> None:
    relink(host.root / "proc/net/route", "/proc/net/route")  # would be this machine's table
    relink(bus_link(host, VF1), "/sys/bus/pci/devices/..")   # and this machine's PCI bus

    inv = scan(host.paths)

    assert read_default_route_ifnames(host.paths) == frozenset()
    assert VF1 not in inv.functions and {PF, VF0} <= inv.functions.keys()


def test_function_is_skipped_when_an_attribute_file_is_a_link(
    host: FakeHost, tmp_path: Path,
) -> None:
    outside = tmp_path / "vendor"
    outside.write_text("0x15b3\n")
    relink(bus_link(host, VF0).resolve() / "vendor", str(outside))

    inv = scan(host.paths)

    assert VF0 not in inv.functions and VF1 in inv.functions
    assert any(s.address == VF0 and "vendor is a link" in s.reason for s in inv.skipped)


def test_route_table_read_stops_at_the_limit_when_it_is_longer(
    host: FakeHost, caplog: pytest.LogCaptureFixture,
) -> None:
    route = host.root / "proc/net/route"
    header = route.read_text().splitlines(keepends=True)[0]
    junk = "junk\t00000001\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n"
    late = "ens1v0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
    route.write_text(header + junk * (ROUTE_TABLE_LIMIT // len(junk) + 1) + late)

    with caplog.at_level(logging.WARNING, logger="sriovdp.host.sysfs"):
        inv = scan(host.paths)

    assert not inv.functions[VF0].default_route  # its line lies beyond the limit
    assert any("proc/net/route is longer than" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_scan_and_fingerprint_return_when_a_route_table_is_an_endless_device(
    host: FakeHost,
) -> None:
    for table in ("route", "ipv6_route"):
        path = host.root / "proc/net" / table
        path.unlink(missing_ok=True)
        os.mknod(path, stat.S_IFCHR | 0o444, os.makedev(1, 5))  # /dev/zero's numbers

    inv = scan(host.paths)
    fingerprint(host.paths)

    assert not any(f.default_route for f in inv.functions.values())


def test_vfio_function_is_skipped_and_logged_when_it_has_no_iommu_group(
    host: FakeHost, caplog: pytest.LogCaptureFixture,
) -> None:
    host.bind(VF1, "vfio-pci")
    (bus_link(host, VF1).resolve() / "iommu_group").unlink()

    with caplog.at_level(logging.WARNING, logger="sriovdp.host.sysfs"):
        inv = scan(host.paths)

    assert VF1 not in inv.functions and VF0 in inv.functions
    (skip,) = [s for s in inv.skipped if s.address == VF1]
    assert "vfio-pci" in skip.reason and "iommu_group" in skip.reason
    assert any(VF1 in r.getMessage() and "iommu_group" in r.getMessage()
               for r in caplog.records)


def test_real_root_reads_are_not_confined_when_the_host_root_is_slash() -> None:
    assert scan(HostPaths(Path("/"))).functions is not None
