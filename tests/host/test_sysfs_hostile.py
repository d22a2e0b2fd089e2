"""Hostile sysfs trees found by a break-it pass: one odd device never breaks the scan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sriovdp.host.sysfs import scan
from sriovdp.testing.fakehost import FakeHost

PF = "0000:3b:00.0"
VF0, VF1 = "0000:3b:02.0", "0000:3b:02.1"


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    host = FakeHost(tmp_path / "h")
    pf = host.add_pf(PF, vendor="8086", device="1572", driver="i40e", ifname="ens1",
                     numa_node=0)
    vfs = host.add_vfs(pf, 2, device="154c", driver="iavf", ifname="ens1v{n}")
    host.bind(vfs[1], "vfio-pci", iommu_group=41)
    return host


def dev_dir(host: FakeHost, address: str) -> Path:
    return (host.paths.pci_devices / address).resolve()


def test_numa_node_is_unknown_when_it_does_not_fit_an_int64(host: FakeHost) -> None:
    (dev_dir(host, VF0) / "numa_node").write_text("9223372036854775808\n")
    assert scan(host.paths).functions[VF0].numa_node is None


def test_other_vfs_keep_their_index_when_a_virtfn_link_has_a_unicode_digit(
    host: FakeHost,
) -> None:
    os.symlink(f"../{VF0}", dev_dir(host, PF) / "virtfn\u00b2")
    inv = scan(host.paths)
    assert inv.functions[VF0].vf_index == 0 and inv.functions[VF1].vf_index == 1


def test_scan_does_not_block_when_an_attribute_is_a_fifo(host: FakeHost) -> None:
    path = dev_dir(host, VF0) / "class"
    path.unlink()
    os.mkfifo(path)
    inv = scan(host.paths)  # returns: the FIFO is opened non-blocking
    assert VF1 in inv.functions


def test_function_is_skipped_when_its_iommu_group_is_not_a_number(host: FakeHost) -> None:
    link = dev_dir(host, VF1) / "iommu_group"
    link.unlink()
    os.symlink("../../../kernel/iommu_groups/..", link)
    inv = scan(host.paths)
    assert VF1 not in inv.functions and VF0 in inv.functions
    assert any(s.address == VF1 and "iommu_group" in s.reason for s in inv.skipped)


def test_function_is_skipped_when_its_driver_name_is_not_utf8(host: FakeHost) -> None:
    link = dev_dir(host, VF0) / "driver"
    link.unlink()
    os.symlink(b"../../../bus/pci/drivers/bad\xff", os.fsencode(link))
    inv = scan(host.paths)
    assert VF0 not in inv.functions and VF1 in inv.functions


def test_fingerprint_changes_with_what_a_resync_must_notice(host: FakeHost) -> None:
    from sriovdp.host.sysfs import fingerprint

    before = fingerprint(host.paths)
    assert fingerprint(host.paths) == before  # nothing changed
    for change in (lambda: host.bind(VF0, "vfio-pci", iommu_group=55),
                   lambda: host.move_netdev_to_pod(PF),
                   lambda: host.add_default_route("ens1v1"),
                   lambda: host.set_numvfs(PF, 0)):
        change()
        after = fingerprint(host.paths)
        assert after != before
        before = after
