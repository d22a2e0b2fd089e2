"""`sriovdp discover` and the empty-pool hint: link state, config warnings, every PCI
function a selector could name, near misses first (issue 9 items 4-5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sriovdp.daemon.settings import Settings
from sriovdp.discover import discover_report, render_table
from sriovdp.model.config import parse_config
from sriovdp.model.pools import build_pools, explain, nearest_misses
from sriovdp.testing.demo import build_demo_host
from sriovdp.testing.fakehost import FakeHost


def test_link_state_is_shown_next_to_the_link_type_when_a_cable_is_pulled(
    tmp_path: Path,
) -> None:
    host = build_demo_host(tmp_path / "host")
    host.set_link("ens785f0", carrier=False)
    report = discover_report(Settings(host=host.paths), None)
    by_address = {d["address"]: d for d in report["devices"]}
    assert by_address["0000:3b:00.0"]["link_state"] == {"admin": "up", "carrier": False}
    assert by_address["0000:d8:00.0"]["link_state"] == {"admin": "up", "carrier": True}
    table = render_table(report).splitlines()
    header = table[1].split()
    assert header[header.index("LINK") + 1] == "STATE"
    pf_row = next(line.split() for line in table if line.startswith("0000:3b:00.0"))
    assert pf_row[header.index("STATE")] == "up,no-carrier"


def test_admin_down_is_shown_when_flags_say_so(tmp_path: Path) -> None:
    host = build_demo_host(tmp_path / "host")
    (host.paths.class_net / "ens1f0" / "flags").write_text("0x1002\n")
    (host.paths.class_net / "ens1f0" / "carrier").unlink()
    report = discover_report(Settings(host=host.paths), None)
    pf = next(d for d in report["devices"] if d["address"] == "0000:d8:00.0")
    assert pf["link_state"] == {"admin": "down", "carrier": None}


def test_config_warnings_are_in_the_json_when_the_config_has_unknown_keys(
    tmp_path: Path,
) -> None:
    host = build_demo_host(tmp_path / "host")
    config = parse_config(json.dumps({"resourceList": [
        {"resourceName": "net", "selectors": [{"drivers": ["iavf"]}], "extraKey": 1}]}))
    assert config.warnings, "an unknown resource key is a warning"
    report = discover_report(Settings(host=host.paths), config)
    assert any("extraKey" in w for w in report["warnings"])
    json.dumps(report)
    assert "warning: config: " in render_table(report)


def test_non_network_functions_are_listed_with_their_class_when_present(
    tmp_path: Path,
) -> None:
    spec = Path(__file__).resolve().parents[1] / "data/hosts/accel-acc100-qat.yaml"
    host = FakeHost.load(tmp_path / "h", spec)
    report = discover_report(Settings(host=host.paths), None)
    others = [o["address"] for o in report["other_functions"]]
    assert others == ["0000:3d:00.0", "0000:3d:01.0", "0000:3d:01.1"]
    assert all("class 0x0b4000" in o["reason"] for o in report["other_functions"])
    assert "Other PCI functions" in render_table(report)


def test_empty_pool_hint_ranks_near_misses_first_when_vfs_lack_rdma(tmp_path: Path) -> None:
    host = build_demo_host(tmp_path / "host")
    from sriovdp.host.sysfs import scan

    inventory = scan(host.paths)
    config = parse_config(json.dumps({"resourceList": [{"resourceName": "rdma", "selectors": [
        {"vendors": ["8086"], "devices": ["154c"], "drivers": ["iavf"], "isRdma": True}]}]}))
    pools = build_pools(inventory, config.resources, default_prefix="intel.com")
    assert not pools["intel.com/rdma"].devices
    verdicts = explain(inventory, config.resources, pools, default_prefix="intel.com")
    misses = nearest_misses(verdicts["intel.com/rdma"])
    assert [v.address for v in misses[:4]] == [f"0000:3b:02.{i}" for i in range(4)]
    assert all(v.reason == "resourceList[0].selectors[0].isRdma" and v.passed == 3
               for v in misses[:4])
    assert misses[4].reason == "resourceList[0].selectors[0].drivers" and misses[4].passed == 2
    assert misses[-1].reason == "resourceList[0].selectors[0].vendors" and misses[-1].passed == 0


def test_discover_and_validate_name_the_same_json_path_when_selectors_is_one_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from sriovdp.cli import main

    host = build_demo_host(tmp_path / "host")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"resourceList": [
        {"resourceName": "x", "selectors": {"vendors": ["8086"], "drivers": ["iavf"]}},
        {"resourceName": "y", "selectors": [{"vendors": ["15b3"]},
                                            {"pfNames": ["nosuch"]}]}]}))
    assert main(["discover", "--host-root", str(host.root), "--config-file", str(good),
                 "-o", "json"]) == 0
    pools = {p["resource"]: p for p in json.loads(capsys.readouterr().out)["pools"]}
    reasons = {d["reason"] for d in pools["intel.com/x"]["rejected"]}
    assert "resourceList[0].selectors.vendors" in reasons  # not "selectors[0].vendors"
    assert ("resourceList[1].selectors[0].vendors; resourceList[1].selectors[1].pfNames"
            in {d["reason"] for d in pools["intel.com/y"]["rejected"]})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resourceList": [
        {"resourceName": "x", "selectors": {"vendors": ["8086"], "driver": ["iavf"]}}]}))
    for command in (["validate"], ["discover", "--host-root", str(host.root)]):
        assert main([*command, "--config-file", str(bad),
                     "--plugins-registry-dir", str(tmp_path / "r")]
                    if command == ["validate"] else [*command, "--config-file", str(bad)]) == 1
        assert "resourceList[0].selectors.driver: unknown selector key" in \
            capsys.readouterr().err
