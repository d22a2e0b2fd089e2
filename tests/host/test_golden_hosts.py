"""Golden host specs in tests/data/hosts/: they load, scan as described, and round-trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from sriovdp.host.sysfs import scan
from sriovdp.model.devices import Inventory, SkippedFunction
from sriovdp.testing.fakehost import FakeHost, main

HOSTS = Path(__file__).parent.parent / "data/hosts"
SPECS = sorted(HOSTS.glob("*.yaml"))


def load(tmp_path: Path, name: str) -> Inventory:
    return scan(FakeHost.load(tmp_path, HOSTS / name).paths)


def test_golden_specs_present_when_listed() -> None:
    assert {p.name for p in SPECS} >= {
        "x710-cx5-demo.yaml", "vm-guest.yaml", "i350-igbvf.yaml", "accel-acc100-qat.yaml",
        "cx5-rdma.yaml", "cx6dx-sf.yaml", "vdpa.yaml", "e810-ddp.yaml", "ib-hca-pkeys.yaml"}


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda p: p.stem)
def test_same_scan_when_spec_round_trips(tmp_path: Path, spec_path: Path) -> None:
    first = FakeHost.load(tmp_path / "a", spec_path)
    spec = first.to_spec()
    again = FakeHost.from_spec(tmp_path / "b", yaml.safe_load(yaml.safe_dump(spec)))

    assert scan(again.paths) == scan(first.paths)
    assert again.to_spec() == spec


def test_x710_cx5_demo_has_expected_functions_when_scanned(tmp_path: Path) -> None:
    inventory = load(tmp_path, "x710-cx5-demo.yaml")
    fns = inventory.functions

    assert len(fns) == 14 and inventory.skipped == ()
    x710_vfs = [f for f in fns.values() if f.physfn == "0000:3b:00.0"]
    assert [(f.vf_index, f.driver, f.iommu_group) for f in x710_vfs[3:5]] == [
        (3, "iavf", "103"), (4, "vfio-pci", "104")]
    assert sum(f.driver == "vfio-pci" for f in x710_vfs) == 4
    assert {f.pf_netdev for f in x710_vfs} == {"ens785f0"}
    cx5_vfs = [f for f in fns.values() if f.physfn == "0000:af:00.0"]
    assert [(f.address, f.device, f.numa_node) for f in cx5_vfs[:1]] == [
        ("0000:af:00.2", "1018", 1)]
    assert fns["0000:3b:00.0"].is_pf_with_vfs and fns["0000:3b:00.0"].default_route


def test_vm_guest_functions_have_no_pf_when_scanned(tmp_path: Path) -> None:  # F20
    fns = load(tmp_path, "vm-guest.yaml").functions

    assert all(f.physfn is None and f.pf_netdev is None for f in fns.values())
    assert fns["0000:00:05.0"].netdevs == ("eth1",)
    assert (fns["0000:00:06.0"].driver, fns["0000:00:06.0"].uio) == ("igb_uio", "uio0")
    assert fns["0000:00:07.0"].netdevs == ("eth2",)
    assert (fns["0000:00:08.0"].iommu_group, fns["0000:00:08.0"].vfio_noiommu) == ("3", True)
    assert [a for a, f in fns.items() if f.default_route] == ["0000:00:03.0"]


def test_i350_unbound_function_skipped_with_reason_when_scanned(tmp_path: Path) -> None:  # F19
    inventory = load(tmp_path, "i350-igbvf.yaml")

    assert inventory.skipped == (SkippedFunction("0000:1a:00.0", "no driver bound"),)
    assert [(a, f.device, f.vf_index) for a, f in inventory.functions.items() if f.is_vf] == [
        ("0000:5e:10.0", "1520", 0), ("0000:5e:10.4", "1520", 1)]


def test_only_base_class_12_kept_when_accelerators_scanned(tmp_path: Path) -> None:
    fns = load(tmp_path, "accel-acc100-qat.yaml").functions

    assert list(fns) == ["0000:b0:00.0", "0000:b0:01.0", "0000:b0:01.1"]
    assert {f.class_code for f in fns.values()} == {0x120000}
    assert [f.iommu_group for f in fns.values() if f.is_vf] == ["150", "151"]


def test_cli_materialises_spec_when_run_as_module(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sriovdp.testing.fakehost", str(HOSTS / "vm-guest.yaml"),
         "--root", str(tmp_path)],
        capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
    assert "built 5 PCI functions" in result.stdout
    assert (tmp_path / "sys/class/net/eth2").is_symlink()


def test_cli_refuses_when_root_already_has_a_tree(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(HOSTS / "vm-guest.yaml")
    assert main([spec, "--root", str(tmp_path)]) == 0

    assert main([spec, "--root", str(tmp_path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main([spec, "--root", str(tmp_path), "--force"]) == 0
