"""The command line: sub-commands, flags and their defaults, help, messages, logs, and the
daemon process's start-up (signals, umask). Issue 9 items 7-8, issue 11 item 15, issue 12
item 5."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sriovdp.cli import COMMANDS, _parser, main, split_command
from sriovdp.daemon.settings import Settings
from sriovdp.logconfig import TextFormatter, rfc3339, setup_logging
from sriovdp.testing.kubelet import KubeletEmulator

SRIOVDP = [sys.executable, "-m", "sriovdp"]
CONFIG = {"resourceList": [{"resourceName": "net", "selectors": [{"drivers": ["iavf"]}]}]}


def write_config(path: Path, doc: object = CONFIG) -> Path:
    path.write_text(json.dumps(doc))
    return path


# -- sub-commands ------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "expected"), [
    (["--config-file", "demo"], ("run", ["--config-file", "demo"])),
    (["--config-file=demo"], ("run", ["--config-file=demo"])),
    (["demo"], ("demo", [])),
    (["--v", "10", "discover", "-o", "json"], ("discover", ["--v", "10", "-o", "json"])),
    (["--use-cdi", "validate"], ("validate", ["--use-cdi"])),
    (["--resource-prefix", "validate", "demo"], ("demo", ["--resource-prefix", "validate"])),
    ([], ("run", [])),
])
def test_the_command_is_the_first_word_that_is_no_flag_value_when_split(
    argv: list[str], expected: tuple[str, list[str]]
) -> None:
    assert split_command(argv) == expected


def test_a_config_file_named_demo_runs_the_daemon_when_given_to_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # "demo" is a relative path here: a missing config file
    code = main(["--config-file", "demo", "--host-root", str(tmp_path / "none"),
                 "--plugins-registry-dir", str(tmp_path / "r")])
    err = capsys.readouterr()
    assert code == 1
    assert f"{tmp_path}/demo" in err.err and "Simulated host" not in err.out


# -- flags, defaults and help -------------------------------------------------------------


def test_every_default_comes_from_settings_when_no_flag_is_given() -> None:
    args = _parser("run").parse_args([])
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        if f.name in ("host", "watch_config", "own_pod"):  # own_pod: from the environment
            continue
        assert getattr(args, f.name) == getattr(defaults, f.name), f.name
    assert args.host_root == defaults.host.root


def test_own_pod_comes_from_the_downward_api_env_when_both_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sriovdp.cli import _settings

    monkeypatch.delenv("POD_NAME", raising=False)
    monkeypatch.setenv("POD_NAMESPACE", "kube-system")
    assert _settings(_parser("run").parse_args([])).own_pod is None  # one alone: not a pod
    monkeypatch.setenv("POD_NAME", "sriovdp-x7k2p")
    assert _settings(_parser("run").parse_args([])).own_pod == ("kube-system", "sriovdp-x7k2p")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_gives_every_flag_a_default_when_asked(command: str) -> None:
    for action in _parser(command)._actions:
        if action.help in (None, "==SUPPRESS==") or action.dest in ("help", "version"):
            continue
        assert "default" in action.help, f"{command} {action.option_strings}: {action.help}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_says_what_each_flag_is_and_names_its_value_when_asked(command: str) -> None:
    for action in _parser(command)._actions:
        if action.help in (None, "==SUPPRESS==") or action.dest in ("help", "version"):
            continue
        flag = f"{command} {action.option_strings}"
        assert not action.help.startswith("default"), f"{flag}: says only its default"
        if action.nargs != 0 and action.choices is None:
            assert action.metavar is not None, f"{flag}: value shown as {action.dest.upper()}"


@pytest.mark.parametrize(("command", "has", "has_not"), [
    ("validate", {"--config-file", "--use-cdi", "--plugins-registry-dir"},
     {"--resync-interval", "--health-address", "--host-root", "--output", "--log_dir"}),
    ("discover", {"--host-root", "--output", "--config-file"},
     {"--resync-interval", "--metrics-address", "--cdi-dir", "--logtostderr"}),
    ("demo", {"--config-file", "--use-cdi", "--resource-prefix"},
     {"--host-root", "--device-plugin-dir", "--health-address"}),
    ("run", {"--resync-interval", "--health-address", "--log_dir", "--cdi-dir"}, {"--output"}),
])
def test_help_lists_only_the_commands_flags_when_asked(
    command: str, has: set[str], has_not: set[str]
) -> None:
    text = _parser(command).format_help()
    flags = set(re.findall(r"(--[a-z_-]+)", text))
    assert has <= flags and not (has_not & flags)


def test_usage_shows_the_sub_commands_when_asked_for_help() -> None:
    usage = _parser("run").format_usage()
    assert "sriovdp {discover,validate,demo}" in usage


# -- the demo honours its flags ------------------------------------------------------------


def test_demo_runs_your_config_with_your_prefix_and_cdi_when_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "mine.json", {"resourceList": [
        {"resourceName": "vfio_vfs", "selectors": [{"drivers": ["vfio-pci"]}]}]})
    assert main(["demo", "--config-file", str(cfg), "--resource-prefix", "example.com",
                 "--use-cdi"]) == 0
    out = capsys.readouterr().out
    assert "example.com/vfio_vfs: 4 / 4" in out
    assert "intel_sriov_netdevice" not in out
    assert "A pod asks for 1 x example.com/vfio_vfs" in out
    assert "CDI device example.com/net-pci=0000:3b:02." in out


def test_demo_touches_nothing_outside_its_temporary_directory_when_run() -> None:
    # its pod resources API is the emulated kubelet's, not this machine's /var/lib/kubelet
    done = subprocess.run([*SRIOVDP, "demo"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "/var/lib/kubelet" not in done.stdout + done.stderr
    assert "WARNING" not in done.stderr


def test_demo_refuses_an_invalid_config_before_running_when_given_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "bad.json", {"resourceList": [{"resourceName": "a"}]})
    assert main(["demo", "--config-file", str(cfg)]) == 1
    captured = capsys.readouterr()
    assert "resourceList[0]" in captured.err and "Simulated host" not in captured.out


# -- messages ---------------------------------------------------------------------------


def test_a_missing_config_file_is_not_called_invalid_when_validated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--config-file", str(tmp_path / "nope.json")]) == 1
    err = capsys.readouterr().err
    assert "nope.json" in err and "No such file or directory" in err
    assert "invalid config" not in err


def test_config_errors_are_json_records_when_the_log_format_is_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "bad.json", {"resourceList": [
        {"resourceName": "a", "selectors": [{"pfNames": ["ens1#3-"]}]}]})
    assert main(["validate", "--config-file", str(cfg), "--log-format", "json"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    (record,) = [json.loads(line) for line in lines]
    assert record["level"] == "ERROR"
    assert [p["path"] for p in record["problems"]] == ["resourceList[0].selectors[0].pfNames[0]"]


def test_validate_lists_every_problem_of_an_entry_when_its_device_type_is_unsupported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "bad.json", {"resourceList": [
        {"resourceName": "a", "deviceType": "netDevices",
         "selectors": [{"driver": ["iavf"], "vendors": ["zz"]}]}]})
    assert main(["validate", "--config-file", str(cfg), "--log-format", "json",
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 1
    (record,) = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert [(p["path"], p["message"].split(":")[0]) for p in record["problems"]] == [
        ("resourceList[0].deviceType", 'unsupported deviceType "netDevices"'),
        ("resourceList[0].selectors[0].driver", 'unknown selector key (did you mean "drivers"?)'),
        ("resourceList[0].selectors[0].vendors[0]", "not a 4-digit hex vendor id"),
    ]
    assert 'did you mean "netDevice"?' in record["problems"][0]["message"]


def test_config_warnings_are_in_problems_when_a_config_error_is_logged_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "bad.json", {"colour": 1, "resourceList": [
        {"resourceName": "a", "selectors": [{"pfNames": ["ens1#3-"], "vendors": ["0x8086"]}]}]})
    assert main(["validate", "--config-file", str(cfg), "--log-format", "json"]) == 1
    (record,) = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert [(p["path"], p["severity"]) for p in record["problems"]] == [
        ("resourceList[0].selectors[0].pfNames[0]", "error"),
        ("colour", "warning"),
        ("resourceList[0].selectors[0].vendors[0]", "warning"),
    ]
    assert record["problems"][1]["message"] == "unknown key, ignored"


def test_config_warnings_carry_problems_when_a_valid_config_is_logged_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "c.json", {**CONFIG, "colour": 1})
    assert main(["validate", "--config-file", str(cfg), "--log-format", "json",
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    (record,) = [json.loads(line) for line in captured.err.strip().splitlines()]
    assert record["level"] == "WARNING"
    assert record["problems"] == [
        {"path": "colour", "message": "unknown key, ignored", "severity": "warning"}]
    assert captured.out.rstrip().endswith("valid, 1 resource")


def test_config_warnings_read_as_before_when_the_log_format_is_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "c.json", {**CONFIG, "colour": 1})
    assert main(["validate", "--config-file", str(cfg),
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 0
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(f" WARNING sriovdp: config {cfg}: colour: unknown key, ignored")


def test_a_socket_dir_too_long_for_any_socket_blames_its_flag_when_validated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / ("d" * 60) / ("e" * 60)
    registry.mkdir(parents=True)
    cfg = write_config(tmp_path / "c.json")
    assert main(["validate", "--config-file", str(cfg),
                 "--plugins-registry-dir", str(registry)]) == 2
    err = capsys.readouterr().err
    assert "--plugins-registry-dir" in err and "use a shorter directory" in err
    assert "resourceList" not in err and "invalid config" not in err


@pytest.mark.parametrize("prefix", ["Bad_Prefix", "intel.com/", "", "requests.example.com"])
def test_a_bad_resource_prefix_blames_its_flag_and_exits_2_when_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prefix: str
) -> None:
    cfg = write_config(tmp_path / "c.json")
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--config-file", str(cfg), "--resource-prefix", prefix])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --resource-prefix" in err and "invalid config" not in err


def test_validate_counts_resources_in_words_when_there_is_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "c.json")
    assert main(["validate", "--config-file", str(cfg),
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("valid, 1 resource")


def test_validate_reads_the_configmap_manifest_an_operator_edits_when_given_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Path(__file__).resolve().parents[2]
    assert main(["validate", "--config-file", str(repo / "deployments/base/configmap.yaml"),
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("valid, 3 resources")


def test_validate_names_the_keys_when_a_configmap_has_no_config_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cm = tmp_path / "per-node.yaml"
    cm.write_text('apiVersion: v1\nkind: ConfigMap\ndata:\n  node-1: "{}"\n  node-2: "{}"\n')
    assert main(["validate", "--config-file", str(cm),
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 1
    assert "has no 'config.json' key (its keys: 'node-1', 'node-2')" in capsys.readouterr().err


# -- logs ---------------------------------------------------------------------------------


def test_log_times_are_rfc3339_with_a_zone_when_formatted() -> None:
    assert rfc3339(86400.25) == "1970-01-02T00:00:00.250Z"
    record = logging.LogRecord("sriovdp.x", logging.INFO, __file__, 1, "hello", None, None)
    line = TextFormatter().format(record)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO sriovdp\.x: hello$", line)


def test_verbosity_10_logs_our_debug_and_not_the_libraries_when_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        setup_logging(verbosity=10)
        logging.getLogger("sriovdp.daemon").debug("ours")
        for name in ("pyroute2.netlink.core", "grpc._cython", "asyncio"):
            logging.getLogger(name).debug("internal %s", name)
            logging.getLogger(name).info("internal %s", name)
        logging.getLogger("pyroute2").warning("a library warning")
    finally:
        setup_logging()
    text = capsys.readouterr().err
    assert "ours" in text and "a library warning" in text
    assert "internal" not in text


# -- the daemon process: start-up signals and umask ----------------------------------------


async def _daemon(workdir: Path, host_root: Path, *extra: str, umask: int = -1,
                  blocked: set[signal.Signals] = frozenset()) -> asyncio.subprocess.Process:
    """The daemon as a child process that starts with ``blocked`` signals blocked (pending ones
    wait), which is how a signal sent during interpreter start-up looks to its first line.

    The mask is set in this thread around the fork (a child inherits the forking thread's mask
    across exec) and the umask by subprocess itself: no ``preexec_fn``, whose Python code in a
    child forked while the emulator's gRPC threads run can deadlock before exec under load."""
    cfg = workdir / "config.json"
    if not cfg.exists():
        write_config(cfg)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        return await asyncio.create_subprocess_exec(
            *SRIOVDP, "--config-file", str(cfg), "--host-root", str(host_root),
            "--device-plugin-dir", str(workdir / "dp"), "--plugins-registry-dir",
            str(workdir / "none"), "--device-info-dir", str(workdir / "devinfo"), *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, umask=umask)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


async def test_sigint_during_start_up_exits_0_without_a_traceback_when_sent_at_once(
    workdir: Path, host: object,
) -> None:
    proc = await _daemon(workdir, workdir / "host", blocked={signal.SIGINT})
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    assert not (workdir / "dp").exists() or not list((workdir / "dp").glob("*.sock"))


async def test_sighup_during_start_up_does_not_kill_the_daemon_when_sent_at_once(
    workdir: Path, host: object,
) -> None:
    dp = workdir / "dp"
    async with KubeletEmulator(dp) as kubelet:
        proc = await _daemon(workdir, workdir / "host", blocked={signal.SIGHUP})
        proc.send_signal(signal.SIGHUP)
        try:
            await kubelet.wait_registered("intel.com/net", timeout=30)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    text = err.decode()
    assert "registering through" in text and "(" in text
    assert "Deprecated" not in text


async def test_sockets_are_not_world_writable_when_started_under_umask_000(
    workdir: Path, host: object,
) -> None:
    dp = workdir / "dp"
    async with KubeletEmulator(dp) as kubelet:
        proc = await _daemon(workdir, workdir / "host", umask=0)
        try:
            await kubelet.wait_registered("intel.com/net", timeout=30)
            mode = stat.S_IMODE((dp / "intel.com_net.sock").stat().st_mode)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert mode & 0o022 == 0, oct(mode)


def test_discover_exits_quietly_when_its_reader_goes_away(workdir: Path, host: object) -> None:
    import subprocess

    proc = subprocess.run(
        f'"{sys.executable}" -m sriovdp discover --host-root "{workdir}/host" -o json | true',
        shell=True, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_no_log_file_is_written_when_logtostderr_is_given_with_log_dir(tmp_path: Path) -> None:
    # glog: -logtostderr sends everything to stderr and writes no file, -log_dir or not
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"resourceList": []}))  # exit 1 before any socket
    logs = tmp_path / "logs"
    logs.mkdir()
    run = ["--config-file", str(cfg), "--device-plugin-dir", str(tmp_path / "dp"),
           "--plugins-registry-dir", str(tmp_path / "none"), "--log_dir", str(logs)]
    assert main([*run, "--logtostderr"]) == 1
    assert list(logs.iterdir()) == []
    assert main(run) == 1
    assert "starting" in (logs / "sriovdp.log").read_text()


# -- advice for a pool marked "dra": true, per command -------------------------------------

DRA_CONFIG = {"resourceList": [{"resourceName": "net", "dra": True,
                                "selectors": [{"drivers": ["iavf"]}]}]}


def test_demo_advises_what_demo_can_do_when_a_pool_is_marked_for_dra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "dra.json", DRA_CONFIG)
    assert main(["demo", "--config-file", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "resourceList[0].dra: got true, but sriovdp demo serves pools through the device " \
           "plugin API only" in err
    assert f"sriovdp discover --dra --config-file {cfg}" in err
    assert "start it with --dra" not in err
    with pytest.raises(SystemExit):  # the advice names no flag demo lacks
        _parser("demo").parse_args(["--dra"])


@pytest.mark.parametrize("command", [["validate"], []])
def test_validate_and_the_daemon_advise_their_own_dra_flag_when_a_pool_is_marked_for_dra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    cfg = write_config(tmp_path / "dra.json", DRA_CONFIG)
    daemon_dirs = [] if command else ["--host-root", str(tmp_path),
                                      "--device-plugin-dir", str(tmp_path / "dp")]
    assert main([*command, "--config-file", str(cfg), *daemon_dirs,
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "got true, but --dra is not given: add --dra (or --dra=all)" in err
    _parser(command[0] if command else "run").parse_args(["--dra"])  # the flag exists


# -- small things a newcomer reads --------------------------------------------------------


def test_demo_prints_the_daemons_debug_messages_when_given_v_10(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        assert main(["demo", "-v", "10"]) == 0
    finally:
        setup_logging(verbosity=0)
    assert " DEBUG sriovdp" in capsys.readouterr().err


def test_counts_of_one_are_singular_when_discover_prints_a_pool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from sriovdp.testing.demo import build_demo_host

    host = build_demo_host(tmp_path / "host")
    cfg = write_config(tmp_path / "one.json", {"resourceList": [
        {"resourceName": "one", "selectors": [{"pciAddresses": ["0000:3b:02.0"]}]}]})
    assert main(["discover", "--host-root", str(host.root), "--config-file", str(cfg)]) == 0
    assert "Pool intel.com/one: 1 device\n" in capsys.readouterr().out
    assert main(["validate", "--config-file", str(cfg),
                 "--plugins-registry-dir", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("valid, 1 resource")


def test_readme_names_flags_not_internals_when_it_explains_the_live_host() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "Settings." not in readme
    assert "`--settle-window`" in readme and "`--scan-deadline`" in readme


def test_counts_of_one_are_singular_when_the_daemon_logs_its_pools(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from sriovdp.daemon.report import log_summary
    from sriovdp.host.sysfs import scan
    from sriovdp.model.config import parse_config
    from sriovdp.model.pools import build_pools
    from sriovdp.testing.demo import build_demo_host

    host = build_demo_host(tmp_path / "host")
    config = parse_config(json.dumps({"resourceList": [
        {"resourceName": "one", "selectors": [{"pciAddresses": ["0000:3b:02.0"]}]}]}))
    inventory = scan(host.paths)
    pools = build_pools(inventory, config.resources, default_prefix="intel.com")
    with caplog.at_level(logging.INFO, logger="sriovdp"):
        log_summary(pools, inventory, config, default_prefix="intel.com", socket_dir=tmp_path)
    assert "pool intel.com/one: 1 device, socket" in caplog.text
