"""Bad input found by trying to break the daemon: each is refused cleanly, nothing is lost."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from daemon_kit import CONFIG, NET, free_port, http_get, running, settings_for, write

from sriovdp.cli import main
from sriovdp.daemon.settings import Settings
from sriovdp.testing import eventually
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator


def with_(settings: Settings, **changes: object) -> Settings:
    return replace(settings, **{**changes})


@pytest.mark.parametrize("doc", [
    pytest.param(None, id="null"),
    pytest.param({}, id="empty-object"),
    pytest.param({"resourcesList": CONFIG["resourceList"]}, id="typo-in-top-key"),
])
async def test_reload_keeps_every_pool_when_the_new_config_has_no_resources(
    workdir: Path, host: FakeHost, doc: object, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, \
            running(settings) as daemon:
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        caplog.set_level(logging.ERROR)
        write(settings.config_file, json.dumps(doc))
        await eventually(lambda: "no resources configured" in caplog.text, what="reload error")
        assert set(daemon.pools) == {NET, "intel.com/dpdk"}
        assert (settings.device_plugin_dir / "intel.com_net.sock").is_socket()


async def test_reload_rejects_a_prefix_cdi_cannot_use_when_cdi_is_on(
    workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    settings = with_(settings_for(workdir, host), use_cdi=True)
    write(settings.config_file, CONFIG)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, \
            running(settings) as daemon:
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        bad = json.loads(json.dumps(CONFIG))
        bad["resourceList"][0]["resourcePrefix"] = "1x.com"
        caplog.set_level(logging.ERROR)
        write(settings.config_file, bad)
        await eventually(lambda: "resourcePrefix" in caplog.text, what="reload error")
        assert "resourceList[0].resourcePrefix" in caplog.text and "--use-cdi" in caplog.text
        assert set(daemon.pools) == {NET, "intel.com/dpdk"}
        assert (await kubelet.allocate(NET, ["0000:3b:02.0"])).container_responses


async def test_reload_ignores_a_fifo_put_in_place_of_the_config(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, \
            running(settings) as daemon:
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        settings.config_file.unlink()
        os.mkfifo(settings.config_file)
        assert not daemon.reload_config("test")  # returns at once instead of blocking
        assert daemon.metrics.reloads["failed"] >= 1
        assert (await kubelet.allocate(NET, ["0000:3b:02.0"])).container_responses


async def test_allocate_error_names_a_few_ids_when_thousands_are_unknown(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        ids = [f"0000:99:{i % 32:02x}.{i % 8}-{i}" for i in range(50000)] + ["y" * 100_000]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await kubelet.allocate(NET, ids)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "and 49996 more" in (err.value.details() or "")


@pytest.mark.parametrize("args", [
    pytest.param(["--resync-interval", "0"], id="zero-interval"),
    pytest.param(["--resync-interval", "nan"], id="nan-interval"),
    pytest.param(["--health-address", ":8_081"], id="underscore-port"),
    pytest.param(["--metrics-address", ":\uff11\uff18"], id="fullwidth-port"),
    pytest.param(["--use-cdi=maybe"], id="bool-flag-junk"),
    pytest.param(["--log_dir", "/dev/null/x"], id="log-dir-under-a-file"),
    pytest.param(["--device-plugin-dir", "/etc/hostname"], id="dir-is-a-file"),
])
def test_bad_flags_exit_2_without_a_traceback(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        code = main(["validate", *args])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_validate_applies_cdi_rules_when_use_cdi_is_given(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = workdir / "c.json"
    cfg.write_text(json.dumps({"resourceList": [
        {"resourceName": "net", "resourcePrefix": "1x.com", "selectors": [{}]}]}))
    assert main(["validate", "--config-file", str(cfg)]) == 0
    assert main(["validate", "--config-file", str(cfg), "--use-cdi"]) == 1
    assert "unusable with --use-cdi" in capsys.readouterr().err


def test_validate_rejects_names_whose_socket_path_is_too_long(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = workdir / "c.json"
    cfg.write_text(json.dumps({"resourceList": [
        {"resourceName": "n" * 63, "resourcePrefix": "example.com", "selectors": [{}]}]}))
    assert main(["validate", "--config-file", str(cfg),
                 "--plugins-registry-dir", str(workdir / "none")]) == 1
    assert "a unix socket path holds at most 107" in capsys.readouterr().err


async def test_daemon_exits_1_when_the_health_port_is_taken(workdir: Path, host: FakeHost) -> None:
    import socket

    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        write(workdir / "config.json", CONFIG)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sriovdp", "--config-file", str(workdir / "config.json"),
            "--host-root", str(host.root), "--device-plugin-dir", str(workdir / "dp"),
            "--plugins-registry-dir", str(workdir / "none"),
            "--health-address", f"127.0.0.1:{port}", "--metrics-address", f"127.0.0.1:{port}",
            stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 1
    assert b"cannot serve health/metrics" in err and b"Traceback" not in err
    assert not list((workdir / "dp").glob("*.sock")) if (workdir / "dp").exists() else True


async def test_not_ready_and_still_alive_when_the_first_host_scan_fails(
    workdir: Path, host: FakeHost
) -> None:
    from sriovdp.daemon.reconciler import Reconciler
    from sriovdp.model.config import parse_config

    def broken_scan(paths: object) -> object:
        raise ValueError("odd sysfs")

    settings = settings_for(workdir, host)
    daemon = Reconciler(settings, parse_config(json.dumps(CONFIG)), scanner=broken_scan)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.sleep(0.3)  # time to fail or to turn ready, proving it does neither
        assert not daemon.is_ready and not task.done()
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)


async def test_a_device_id_protobuf_cannot_carry_is_left_out_and_the_stream_lives(
    workdir: Path, host: FakeHost
) -> None:
    from dataclasses import replace as dc_replace

    from sriovdp.daemon.reconciler import Reconciler
    from sriovdp.host.sysfs import scan
    from sriovdp.model.config import parse_config

    def scan_with_a_bad_id(paths: object) -> object:
        inv = scan(host.paths)
        fn = inv.functions["0000:3b:02.0"]
        bad = dc_replace(fn, address="0000:3b:02.\udcff")
        return dc_replace(inv, functions={**inv.functions, bad.address: bad})

    settings = settings_for(workdir, host)
    daemon = Reconciler(settings, parse_config(json.dumps(CONFIG)), scanner=scan_with_a_bad_id)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet:
        task = asyncio.create_task(daemon.run())
        try:
            await kubelet.wait_capacity(NET, (4, 4), timeout=5)
            await asyncio.sleep(0.5)  # time for a restart, proving none happens
            assert daemon.endpoints[NET].restarts == 0
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 10)


async def test_probes_keep_answering_when_clients_send_junk_or_hang(
    workdir: Path, host: FakeHost
) -> None:
    port = free_port()
    settings = replace(settings_for(workdir, host), health_address=f"127.0.0.1:{port}")
    async with running(settings, published=False):
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /" + b"x" * 100_000 + b" HTTP/1.1\r\n\r\n")  # an over-long line
        await w.drain()
        status, _ = await http_get(port, "/healthz")
        assert status == 200
        for _, writer in idle:
            writer.close()
        w.close()


async def test_sigterm_does_not_wait_for_a_scan_stuck_on_a_hanging_ddptool(
    workdir: Path, host: FakeHost
) -> None:
    import signal
    import time

    bindir = workdir / "bin"
    bindir.mkdir()
    (bindir / "ddptool").write_text("#!/bin/sh\nsleep 1000\n")
    (bindir / "ddptool").chmod(0o755)
    write(workdir / "config.json", {"resourceList": [
        {"resourceName": "comms", "selectors": [{"ddpProfiles": ["ICE COMMS Package"]}]}]})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sriovdp", "--config-file", str(workdir / "config.json"),
        "--host-root", str(host.root), "--device-plugin-dir", str(workdir / "dp"),
        "--plugins-registry-dir", str(workdir / "none"),
        env={**os.environ, "PATH": f"{bindir}:/usr/bin:/bin"}, stderr=asyncio.subprocess.PIPE)
    await asyncio.sleep(2)  # the first scan is now waiting for ddptool (10 s timeout)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0 and time.monotonic() - start < 5
    assert not list((workdir / "dp").glob("*.sock"))


# --------------------------------------------------------------------------------------------
# Config size, strictness and bounded reports (issue 11 items 2 and 12)


def test_validate_rejects_a_selector_typo_when_it_would_widen_the_pool(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = workdir / "c.json"
    cfg.write_text(json.dumps({"resourceList": [
        {"resourceName": "net", "selectors": [{"vendors": ["8086"], "driver": ["iavf"]}]}]}))
    assert main(["validate", "--config-file", str(cfg)]) == 1
    assert 'selectors[0].driver: unknown selector key (did you mean "drivers"?)' \
        in capsys.readouterr().err


def test_validate_exits_1_on_warnings_when_strict(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = workdir / "c.json"
    cfg.write_text(json.dumps({"resourceList": [
        {"resourceName": "net", "selectors": [{}], "excludeTopologie": True}]}))
    assert main(["validate", "--config-file", str(cfg)]) == 0
    assert capsys.readouterr().out.endswith("valid, 1 resource\n")
    assert main(["validate", "--strict", "--config-file", str(cfg)]) == 1
    assert 'resourceList[0].excludeTopologie: unknown key (did you mean "excludeTopology"?)' \
        in capsys.readouterr().err


def test_validate_gives_one_clear_error_when_the_file_is_over_1_mib(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = workdir / "c.json"
    cfg.write_text(json.dumps({"resourceList": [{"resourceName": "x", "selectors": [
        {"vendors": ["x"] * 4_000_000}]}]}))
    assert main(["validate", "--config-file", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"the config is {cfg.stat().st_size:,} bytes, larger than the 1,048,576 bytes" in err
    assert len(err.splitlines()) == 2


def test_validate_lists_twenty_problems_and_a_count_when_a_config_has_thousands(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = workdir / "c.json"
    cfg.write_text(json.dumps({"resourceList": [{"resourceName": "x", "selectors": [
        {"vendors": ["x"] * 100_000}]}]}))
    assert main(["validate", "--config-file", str(cfg)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 22
    assert lines[-1] == "  ... and 99980 more problems (only the first 20 are listed)"


async def test_reload_records_carry_problems_with_paths_when_the_config_has_warnings(
    workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, \
            running(settings) as daemon:
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        caplog.set_level(logging.WARNING)
        write(settings.config_file, {**CONFIG, "colour": 1})
        daemon.reload_config("test")
        await asyncio.wait_for(daemon.config_source.idle.wait(), 10)
        write(settings.config_file, {**CONFIG, "colour": 2, "resourceList": [{}]})
        daemon.reload_config("test")
        await asyncio.wait_for(daemon.config_source.idle.wait(), 10)
    records = [getattr(r, "problems", None) for r in caplog.records
               if "config" in r.getMessage() and r.levelno >= logging.WARNING]
    assert records == [
        [{"path": "colour", "message": "unknown key, ignored", "severity": "warning"}],
        [{"path": "resourceList[0].selectors", "message": 'missing: give at least one selector'
          ' object, e.g. [{"drivers": ["x"]}]', "severity": "error"}],
        [{"path": "resourceList[0].resourceName", "message": 'missing: every resource needs a'
          ' name, e.g. "sriov_net"', "severity": "error"}],
    ]


async def test_reload_logs_a_bounded_report_when_the_new_config_has_thousands_of_problems(
    workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, \
            running(settings) as daemon:
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        caplog.set_level(logging.ERROR)
        write(settings.config_file, {"resourceList": [{"resourceName": "x", "selectors": [
            {"vendors": ["x"] * 100_000}]}]})
        daemon.reload_config("test")  # parsed off the event loop
        await asyncio.wait_for(daemon.config_source.idle.wait(), 10)
        rejected = [r for r in caplog.records if "config reload rejected" in r.getMessage()]
        assert len(rejected) == 21
        assert (await kubelet.allocate(NET, ["0000:3b:02.0"])).container_responses


async def test_a_reload_of_a_rejected_file_says_why_again_when_the_file_is_unchanged(
    workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    # an operator sends SIGHUP to see why the ConfigMap is not in effect
    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, \
            running(settings) as daemon:
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        write(settings.config_file, {"resourceList": [{"resourceName": "x",
                                                       "selectors": [{"driver": ["iavf"]}]}]})
        assert daemon.reload_config("test")
        await asyncio.wait_for(daemon.config_source.idle.wait(), 10)
        caplog.set_level(logging.WARNING)
        assert not daemon.reload_config("SIGHUP")  # the same bytes: not parsed again
    again = [r.getMessage() for r in caplog.records if "unchanged since it was rejected" in
             r.getMessage()]
    assert len(again) == 1 and 'did you mean "drivers"' in again[0], again
