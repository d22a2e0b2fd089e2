"""vDPA devices of PCI functions (upstream-behavior §2.8, §10.9 G9, field case F42)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from sriovdp.host.sysfs import scan
from sriovdp.model.devices import VdpaInfo
from sriovdp.testing.fakehost import FakeHost

HOSTS = Path(__file__).parent.parent / "data/hosts"
PF = "0000:65:00.0"
VF0, VF1 = "0000:65:00.2", "0000:65:00.3"


@pytest.fixture
def cx6(host: FakeHost) -> FakeHost:
    host.add_pf(PF, vendor="15b3", device="101d", driver="mlx5_core", ifname="ens2f0",
                total_vfs=8, vf_offset=2)
    host.add_vfs(PF, 2, device="101e", driver="mlx5_core", ifname="ens2f0v{n}")
    return host


def dev_dir(host: FakeHost, address: str) -> Path:
    return Path(os.path.realpath(host.paths.pci_devices / address))


def test_vhost_and_virtio_types_read_when_vfs_have_vdpa_devices(tmp_path: Path) -> None:  # F42
    fns = scan(FakeHost.load(tmp_path, HOSTS / "vdpa.yaml").paths).functions

    assert fns[VF0].vdpa == VdpaInfo(name="vdpa0", driver="vhost_vdpa",
                                     vhost_path="/dev/vhost-vdpa-0")
    assert fns[VF0].vdpa.type == "vhost"
    assert fns[VF1].vdpa == VdpaInfo(name="vdpa1", driver="virtio_vdpa")
    assert fns[VF1].vdpa.type == "virtio"
    assert fns["0000:65:00.4"].vdpa is None and fns[PF].vdpa is None


def test_type_invalid_when_vdpa_device_unbound(cx6: FakeHost) -> None:
    cx6.add_vdpa(VF0, "vdpa0", driver=None)

    vdpa = scan(cx6.paths).functions[VF0].vdpa

    assert vdpa == VdpaInfo(name="vdpa0") and vdpa.type == "invalid"


def test_type_invalid_when_vdpa_driver_not_supported(cx6: FakeHost) -> None:  # G9
    cx6.add_vdpa(VF0, "vdpa0", driver="not_supported")

    vdpa = scan(cx6.paths).functions[VF0].vdpa

    assert vdpa is not None and vdpa.type == "invalid" and vdpa.vhost_path is None


def test_first_by_name_used_with_log_when_function_has_two_vdpa_devices(
        cx6: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    cx6.add_vdpa(VF0, "vdpa7", driver="virtio_vdpa")
    cx6.add_vdpa(VF0, "vdpa3", driver="vhost_vdpa", vhost=2)

    with caplog.at_level(logging.INFO, logger="sriovdp.host.sysfs"):
        vdpa = scan(cx6.paths).functions[VF0].vdpa

    assert vdpa == VdpaInfo(name="vdpa3", driver="vhost_vdpa", vhost_path="/dev/vhost-vdpa-2")
    assert any("vdpa3, vdpa7" in r.getMessage() for r in caplog.records)


def test_no_vhost_path_with_warning_when_dev_node_missing(
        cx6: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    cx6.add_vdpa(VF0, "vdpa0")
    (cx6.root / "dev/vhost-vdpa-0").unlink()

    with caplog.at_level(logging.WARNING, logger="sriovdp.host.sysfs"):
        vdpa = scan(cx6.paths).functions[VF0].vdpa

    assert vdpa == VdpaInfo(name="vdpa0", driver="vhost_vdpa")
    assert "vhost-vdpa-0" in caplog.text


def test_vhost_entry_ignored_when_it_is_not_a_directory(cx6: FakeHost) -> None:
    cx6.add_vdpa(VF0, "vdpa0", driver="vhost_vdpa", vhost=4)
    (dev_dir(cx6, VF0) / "vdpa0/vhost-vdpa-1").write_text("")  # sorts first, but a file

    vdpa = scan(cx6.paths).functions[VF0].vdpa

    assert vdpa is not None and vdpa.vhost_path == "/dev/vhost-vdpa-4"


def test_vdpa_of_aux_child_given_to_pci_function_when_mlx5_vdpa_layout(cx6: FakeHost) -> None:
    # mlx5_vdpa puts the vDPA device below an aux device: <vf>/mlx5_core.vnet.2/vdpa0
    vnet = dev_dir(cx6, VF1) / "mlx5_core.vnet.2"
    (vnet / "vdpa0").mkdir(parents=True)
    bus = cx6.root / "sys/bus/vdpa/devices"
    bus.mkdir(parents=True)
    rel = os.path.relpath(vnet / "vdpa0", bus)
    (bus / "vdpa0").symlink_to(rel)

    fns = scan(cx6.paths).functions

    assert fns[VF1].vdpa == VdpaInfo(name="vdpa0")


def test_vdpa_of_sub_function_not_given_to_pf_when_below_an_sf(cx6: FakeHost) -> None:
    cx6.add_sf(PF, 2)
    sf_vdpa = dev_dir(cx6, PF) / "mlx5_core.sf.2/vdpa0"
    sf_vdpa.mkdir()
    bus = cx6.root / "sys/bus/vdpa/devices"
    bus.mkdir(parents=True)
    (bus / "vdpa0").symlink_to(os.path.relpath(sf_vdpa, bus))

    assert scan(cx6.paths).functions[PF].vdpa is None


def test_function_kept_without_vdpa_when_vdpa_link_dangles(
        cx6: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    cx6.add_vdpa(VF0, "vdpa0")
    os.rename(dev_dir(cx6, VF0) / "vdpa0", dev_dir(cx6, VF0) / "gone")

    with caplog.at_level(logging.WARNING, logger="sriovdp.host.sysfs"):
        inventory = scan(cx6.paths)

    assert inventory.functions[VF0].vdpa is None and inventory.skipped == ()
    assert "vdpa0" in caplog.text
