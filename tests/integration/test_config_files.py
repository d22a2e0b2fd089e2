"""What ``--config-file`` reads: the same JSON config or ConfigMap manifest for every command
(validate, discover, demo, the daemon and its reloads), and what a file that is neither
gets told."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sriovdp.cli import main
from sriovdp.daemon.configfile import config_text, load_config
from sriovdp.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIGMAP = REPO / "deployments" / "base" / "configmap.yaml"
KUBECTL = shutil.which("kubectl")


def kustomize_output(tmp_path: Path) -> Path:
    """`kubectl kustomize deployments/`: several documents, one the ConfigMap."""
    if KUBECTL is None:
        pytest.skip("kubectl is not on PATH")
    out = tmp_path / "rendered.yaml"
    out.write_text(subprocess.run([KUBECTL, "kustomize", str(REPO / "deployments")],
                                  capture_output=True, text=True, check=True).stdout)
    return out


def problem_of(path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(path, default_prefix="intel.com")
    return str(exc.value.problems[0])


def test_demo_runs_the_configmap_manifest_when_given_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--config-file", str(CONFIGMAP)]) == 0
    out = capsys.readouterr().out
    assert "intel.com/intel_sriov_dpdk: 4 / 4" in out
    assert "apiVersion" not in out  # the config printed is the ConfigMap's config.json


def test_every_reader_gets_the_configmap_config_when_given_kustomize_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    rendered = kustomize_output(tmp_path)
    config = load_config(rendered, default_prefix="intel.com")  # the daemon and its reloads
    assert [r.name for r in config.resources] == [
        "intel_sriov_netdevice", "intel_sriov_dpdk", "mlnx_sriov_netdevice"]
    assert main(["validate", "--config-file", str(rendered),
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("valid, 3 resources")


def test_daemon_reads_the_configmap_manifest_when_given_one(tmp_path: Path) -> None:
    config = load_config(CONFIGMAP, default_prefix="intel.com", socket_dir=tmp_path)
    assert len(config.resources) == 3


def test_validate_names_the_expected_key_when_the_configmap_key_is_a_typo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    cm = tmp_path / "cm.yaml"
    cm.write_text(CONFIGMAP.read_text().replace("  config.json: |", "  configjson: |"))
    assert main(["validate", "--config-file", str(cm),
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "data: ConfigMap sriovdp-config" in err
    assert "has no 'config.json' key (its keys: 'configjson')" in err
    assert "the DaemonSet mounts data['config.json']" in err


@pytest.mark.parametrize(("content", "says"), [
    ("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\n",
     "is a DaemonSet manifest (YAML), not a ConfigMap, not JSON"),
    ("resourceList:\n  - resourceName: net\n",
     "is a YAML mapping (keys: resourceList), not JSON"),
    ("kind: ServiceAccount\n---\nkind: DaemonSet\n",
     "is 2 YAML documents (ServiceAccount, DaemonSet) without a ConfigMap, not JSON"),
    ("hello there\n", "is plain text (no JSON object, no YAML mapping), not JSON"),
    ("a: [b\n", "is neither JSON nor YAML (YAML:"),
])
def test_config_says_what_the_file_looks_like_when_it_is_neither_json_nor_a_configmap(
    tmp_path: Path, content: str, says: str,
) -> None:
    path = tmp_path / "c"
    path.write_text(content)
    problem = problem_of(path)
    assert says in problem, problem
    assert 'expected a JSON config (an object with "resourceList") or a ConfigMap' in problem
    assert "'config.json'" in problem


def test_config_picks_sriovdp_config_when_several_configmaps_are_given(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text("kind: ConfigMap\nmetadata: {name: other}\ndata: {x: y}\n---\n"
                    + CONFIGMAP.read_text())
    assert json.loads(config_text(path.read_bytes(), path))["resourceList"]


def test_config_is_read_unchanged_when_it_is_json(tmp_path: Path) -> None:
    text = b'  {"resourceList": []}'
    assert config_text(text, tmp_path / "c.json") == text


def test_invalid_json_keeps_its_line_and_column_when_the_file_starts_like_json(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"resourceList": [}')
    assert "invalid JSON at line 1 column 19" in problem_of(path)


def test_invalid_json_in_a_configmap_says_its_position_is_within_config_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    cm = tmp_path / "cm.yaml"
    text = CONFIGMAP.read_text()
    broken = text.replace('"resourceName": "intel_sriov_netdevice"',
                          '"resourceName": intel_sriov_netdevice')
    assert broken != text
    cm.write_text(broken)
    assert main(["validate", "--config-file", str(cm),
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert f'invalid config {cm} (data["config.json"] of its ConfigMap; lines counted ' in err
    assert "invalid JSON at line 4 column 23" in err
