"""The command line of DRA mode: ``--dra`` / ``--dra=all``, its flags and their errors, and
``validate --dra`` (issue 10 "Bad input and limits")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sriovdp.cli import _parser, _settings, main, split_command
from sriovdp.model.dra.modes import DraMode
from sriovdp.model.dra.slices import HealthPolicy
from sriovdp.testing.demo import build_demo_host

CONFIG = {"resourceList": [
    {"resourceName": "net", "dra": True, "selectors": [{"drivers": ["iavf"]}]},
    {"resourceName": "dpdk", "selectors": [{"drivers": ["vfio-pci"]}]},
]}


@pytest.mark.parametrize(("argv", "mode"), [
    ([], None),
    (["--dra"], DraMode.MARKED),
    (["--dra=marked"], DraMode.MARKED),
    (["--dra=all"], DraMode.ALL),
    (["--dra", "all"], DraMode.ALL),
])
def test_dra_mode_is_off_marked_or_all_when_parsed(argv: list[str], mode: DraMode | None
                                                   ) -> None:
    settings = _settings(_parser("run").parse_args(argv))
    assert settings.dra == mode


def test_dra_flags_reach_the_settings_when_given(tmp_path: Path) -> None:
    args = _parser("run").parse_args([
        "--dra", "--dra-driver", "sriov.example.com", "--node-name", "worker-7",
        "--kubeconfig", str(tmp_path / "kc"), "--dra-health", "taint",
        "--kubelet-plugins-dir", str(tmp_path / "plugins")])
    settings = _settings(args)
    assert (settings.dra_driver, settings.node_name, settings.kubeconfig,
            settings.dra_health, settings.plugins_dir) == (
        "sriov.example.com", "worker-7", tmp_path / "kc", HealthPolicy.TAINT,
        tmp_path / "plugins")


def test_the_node_name_comes_from_node_name_env_and_plugins_beside_device_plugins_when_unset(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NODE_NAME", "Worker-3")
    settings = _settings(_parser("run").parse_args(
        ["--dra", "--device-plugin-dir", str(tmp_path / "kubelet" / "device-plugins")]))
    assert settings.node_name == "worker-3"
    assert settings.plugins_dir == tmp_path / "kubelet" / "plugins"


def test_a_bare_dra_flag_takes_no_command_word_when_split() -> None:
    assert split_command(["--dra", "validate"]) == ("validate", ["--dra"])


@pytest.mark.parametrize("argv", [["--dra=some"], ["--dra-driver", "Not_A_Domain"],
                                  ["--dra-health", "ignore"]])
def test_a_bad_dra_flag_value_exits_2_when_parsed(argv: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser("run").parse_args(argv)
    assert exit_.value.code == 2
    assert argv[0].split("=")[0] in capsys.readouterr().err


def test_validate_refuses_a_pool_marked_for_dra_when_dra_is_not_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(CONFIG))
    assert main(["validate", "--config-file", str(cfg),
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "resourceList[0].dra: got true, but --dra is not given: add --dra" in err


@pytest.mark.parametrize("flag", ["--dra", "--dra=all"])
def test_validate_accepts_a_pool_marked_for_dra_when_dra_is_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(CONFIG))
    assert main(["validate", flag, "--config-file", str(cfg),
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "ok: intel.com/net (netDevice, 1 selector, DRA)" in out
    dpdk = "ok: intel.com/dpdk (netDevice, 1 selector" + (", DRA)" if flag == "--dra=all" else ")")
    assert dpdk in out



def test_validate_says_dra_serves_no_pool_when_dra_is_given_and_none_is_marked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"resourceList": [CONFIG["resourceList"][1]]}))
    assert main(["validate", "--dra", "--config-file", str(cfg),
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert 'with --dra no pool is served through DRA: mark pools "dra": true, or use ' \
        "--dra=all" in out


def _run_args(tmp_path: Path) -> list[str]:
    host = build_demo_host(tmp_path / "host")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(CONFIG))
    (tmp_path / "dp").mkdir()
    return ["--config-file", str(cfg), "--host-root", str(host.root),
            "--device-plugin-dir", str(tmp_path / "dp"),
            "--plugins-registry-dir", str(tmp_path / "reg"),
            "--kubelet-plugins-dir", str(tmp_path / "plugins"),
            "--pod-resources-socket", str(tmp_path / "pr.sock"),
            "--device-info-dir", str(tmp_path / "devinfo"), "--cdi-dir", str(tmp_path / "cdi")]


def test_the_daemon_exits_1_before_any_socket_when_a_pool_is_marked_without_dra(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_run_args(tmp_path)) == 1
    assert "resourceList[0].dra" in capsys.readouterr().err
    assert not (tmp_path / "reg").exists() and list((tmp_path / "dp").iterdir()) == []


def test_the_daemon_exits_2_when_the_node_name_cannot_be_a_dra_pool_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*_run_args(tmp_path), "--dra", "--node-name", "Bad_Node!"]) == 2
    assert "--node-name" in capsys.readouterr().err


def test_the_daemon_exits_1_naming_the_kubeconfig_when_it_cannot_be_loaded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-kubeconfig"
    code = main([*_run_args(tmp_path), "--dra", "--node-name", "worker-1",
                 "--kubeconfig", str(missing)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"cannot load --kubeconfig {missing}" in err
    assert not (tmp_path / "reg").exists() and list((tmp_path / "dp").iterdir()) == []
