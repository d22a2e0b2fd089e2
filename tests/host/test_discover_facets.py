"""``sriovdp discover`` shows RDMA, vDPA, pkeys, DDP profiles and auxiliary devices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sriovdp.daemon.settings import Settings
from sriovdp.discover import discover_report, render_table
from sriovdp.model.config import parse_config
from sriovdp.testing.fakehost import FakeHost

HOSTS = Path(__file__).parent.parent / "data/hosts"


def report_for(tmp_path: Path, spec: str, config: str | None = None) -> dict[str, Any]:
    host = FakeHost.load(tmp_path / "host", HOSTS / spec)
    return discover_report(Settings(host=host.paths),
                           parse_config(config) if config is not None else None)


def test_rdma_and_pkey_shown_when_devices_have_them(tmp_path: Path) -> None:
    report = report_for(tmp_path, "ib-hca-pkeys.yaml")
    vf = next(d for d in report["devices"] if d["address"] == "0000:d8:00.2")

    assert (vf["rdma"], vf["pkey"], vf["vdpa"], vf["ddp_profile"]) == (
        ["mlx5_2"], "0x7fff", None, None)
    table = render_table(report)
    assert "RDMA, vDPA, pkey, DDP:" in table
    assert "  0000:d8:00.2: rdma mlx5_2  pkey 0x7fff" in table.splitlines()


def test_vdpa_shown_with_type_and_path_when_vfs_have_vdpa(tmp_path: Path) -> None:
    report = report_for(tmp_path, "vdpa.yaml")
    by_addr = {d["address"]: d for d in report["devices"]}

    assert by_addr["0000:65:00.2"]["vdpa"] == {
        "name": "vdpa0", "type": "vhost", "path": "/dev/vhost-vdpa-0"}
    assert by_addr["0000:65:00.3"]["vdpa"] == {"name": "vdpa1", "type": "virtio", "path": None}
    lines = render_table(report).splitlines()
    assert "  0000:65:00.2: vdpa vdpa0 (vhost, /dev/vhost-vdpa-0)" in lines
    assert "  0000:65:00.3: vdpa vdpa1 (virtio)" in lines


def test_aux_devices_listed_when_pf_has_sfs(tmp_path: Path) -> None:
    report = report_for(tmp_path, "cx6dx-sf.yaml")

    assert [a["name"] for a in report["aux_devices"]] == [
        "mlx5_core.sf.2", "mlx5_core.sf.3", "mlx5_core.sf.4", "mlx5_core.sf.5"]
    assert report["aux_devices"][0] == {
        "name": "mlx5_core.sf.2", "type": "sf", "parent": "0000:3b:00.0", "pf": "0000:3b:00.0",
        "pf_netdev": "enp59s0f0np0", "sf_num": 2, "netdevs": ["enp59s0f0s2"],
        "link_type": "ether", "link_state": {"admin": "up", "carrier": True},
        "rdma": ["mlx5_2"]}
    json.dumps(report)  # -o json must work
    lines = render_table(report).splitlines()
    start = lines.index("Auxiliary devices (sub-functions):")
    assert lines[start + 1].split() == ["AUX", "TYPE", "PARENT", "PF", "PFNETDEV", "SFNUM",
                                        "NETDEV", "LINK", "STATE", "RDMA"]
    assert lines[start + 2].split() == ["mlx5_core.sf.2", "sf", "0000:3b:00.0", "0000:3b:00.0",
                                        "enp59s0f0np0", "2", "enp59s0f0s2", "ether",
                                        "up,carrier", "mlx5_2"]
    assert lines[start + 3].split()[-1] == "-"


def test_no_extra_sections_when_host_has_no_facets(tmp_path: Path) -> None:
    report = report_for(tmp_path, "e810-ddp.yaml")

    assert report["aux_devices"] == []
    table = render_table(report)
    assert "RDMA, vDPA" not in table and "Auxiliary devices" not in table


def _fake_ddptool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real ``ddptool`` on PATH that logs each address asked and reports one package."""
    bindir = tmp_path / "bin"
    bindir.mkdir(parents=True)
    log = tmp_path / "asked.log"
    tool = bindir / "ddptool"
    tool.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do last="$a"; done; echo "$last" >> {log}\n'
        'echo \'{"DDPInventory":{"DDPpackage":{"name":"ICE COMMS Package"}}}\'\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    return log


def test_ddp_profiles_read_only_when_a_selector_asks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _fake_ddptool(tmp_path, monkeypatch)
    plain = '{"resourceList": [{"resourceName": "a", "selectors": {"devices": ["1889"]}}]}'
    ddp = ('{"resourceList": [{"resourceName": "b", "selectors": '
           '{"ddpProfiles": ["ICE COMMS Package"]}}]}')

    report_for(tmp_path / "1", "e810-ddp.yaml", plain)
    assert not asked.exists()
    report_for(tmp_path / "2", "e810-ddp.yaml", ddp)
    assert sorted(asked.read_text().split()) == [
        "0000:5e:00.0", "0000:5e:01.0", "0000:5e:01.1", "0000:5e:01.2", "0000:5e:01.3"]


def test_ddp_profile_shown_when_filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_ddptool(tmp_path, monkeypatch)
    report = report_for(tmp_path / "r", "e810-ddp.yaml",
                        '{"resourceList": [{"resourceName": "b", '
                        '"selectors": {"ddpProfiles": ["ICE COMMS Package"]}}]}')

    assert {d["ddp_profile"] for d in report["devices"]} == {"ICE COMMS Package"}
    assert "  0000:5e:01.0: ddp 'ICE COMMS Package'" in render_table(report).splitlines()
