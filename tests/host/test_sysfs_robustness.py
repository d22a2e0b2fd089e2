"""One bad PCI function never breaks the scan; a missing sysfs does, with a clear error."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from sysfs_fixtures import FlatSysfs

from sriovdp.errors import HostError
from sriovdp.host.paths import HostPaths
from sriovdp.host.sysfs import scan
from sriovdp.testing.fakehost import FakeHost

GOOD = ["0000:3b:02.0", "0000:3b:02.2"]
BAD = "0000:3b:02.1"


@pytest.fixture
def three_vfs(host: FakeHost) -> FakeHost:
    pf = host.add_pf("0000:3b:00.0", vendor="8086", device="1572", driver="i40e",
                     ifname="ens785f0")
    host.add_vfs(pf, 3, device="154c", driver="iavf", ifname="ens785f0v{n}")
    return host


def bad_device_dir(host: FakeHost) -> Path:
    return Path(os.path.realpath(host.paths.pci_devices / BAD))


def test_others_kept_when_one_driver_link_is_a_regular_file(
        three_vfs: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    driver = bad_device_dir(three_vfs) / "driver"
    driver.unlink()
    driver.write_text("iavf")

    with caplog.at_level(logging.WARNING, logger="sriovdp.host.sysfs"):
        inventory = scan(three_vfs.paths)

    assert [a for a in inventory.functions if a != "0000:3b:00.0"] == GOOD
    assert [(s.address, s.reason) for s in inventory.skipped] == [
        (BAD, "driver is not a symlink")]
    (record,) = caplog.records
    assert BAD in record.getMessage() and record.name == "sriovdp.host.sysfs"


def test_others_kept_when_one_physfn_is_not_a_link(three_vfs: FakeHost) -> None:
    physfn = bad_device_dir(three_vfs) / "physfn"
    physfn.unlink()
    physfn.mkdir()

    inventory = scan(three_vfs.paths)

    assert BAD not in inventory.functions
    assert all(a in inventory.functions for a in GOOD)
    assert inventory.skipped[0].reason == "physfn is not a symlink"


def test_others_kept_when_one_attribute_cannot_be_read(three_vfs: FakeHost) -> None:
    # Root ignores file modes, so the kernel's EACCES cannot be staged; a directory in the
    # attribute's place fails the same read (EISDIR) on the same path through the reader.
    numa = bad_device_dir(three_vfs) / "numa_node"
    numa.unlink()
    numa.mkdir()

    inventory = scan(three_vfs.paths)

    assert all(a in inventory.functions for a in GOOD)
    assert [(s.address, s.reason) for s in inventory.skipped] == [
        (BAD, "cannot read numa_node: Is a directory")]


def test_function_skipped_when_it_vanishes_before_it_is_read(three_vfs: FakeHost) -> None:
    # What a scan racing `echo 0 > sriov_numvfs` sees: the bus link outlives its target.
    os.rename(bad_device_dir(three_vfs), bad_device_dir(three_vfs).with_name("gone"))

    inventory = scan(three_vfs.paths)

    assert all(a in inventory.functions for a in GOOD)
    assert [(s.address, s.reason) for s in inventory.skipped] == [
        (BAD, "vanished during scan")]


def test_function_skipped_when_network_class_but_no_ids_anywhere(flat: FlatSysfs) -> None:
    flat.nic("0000:00:01.0")
    flat.file("pci/0000:00:02.0/class", "0x020000\n").file("pci/0000:00:02.0/modalias", "pci:j")

    inventory = scan(flat.paths)

    assert list(inventory.functions) == ["0000:00:01.0"]
    assert [s.reason for s in inventory.skipped] == [
        "no vendor/device id in vendor, device or modalias"]


def test_host_error_names_path_when_pci_devices_dir_missing(tmp_path: Path) -> None:
    with pytest.raises(HostError, match=str(tmp_path / "sys/bus/pci/devices")):
        scan(HostPaths(tmp_path))


def test_scan_leaves_no_open_fds_when_functions_are_skipped(three_vfs: FakeHost) -> None:
    (bad_device_dir(three_vfs) / "driver").unlink()
    (bad_device_dir(three_vfs) / "driver").write_text("x")
    before = len(os.listdir("/proc/self/fd"))

    for _ in range(3):
        scan(three_vfs.paths)

    assert len(os.listdir("/proc/self/fd")) == before
