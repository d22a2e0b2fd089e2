"""The daemon as a process: real host scan in a fresh network namespace, signals, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from sriovdp.testing.kubelet import KubeletEmulator

SRIOVDP = [sys.executable, "-m", "sriovdp"]
needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root and unshare to create a network namespace")


def sysfs_functions(vendor: str) -> set[str]:
    """PCI functions of class 0x02 with ``vendor`` and a bound driver, read straight from /sys."""
    found = set()
    base = Path("/sys/bus/pci/devices")
    for dev in base.iterdir():
        cls = int((dev / "class").read_text(), 16)
        ven = (dev / "vendor").read_text().strip().removeprefix("0x")
        numvfs = dev / "sriov_numvfs"
        with_vfs = numvfs.exists() and int(numvfs.read_text() or 0) > 0
        if cls >> 16 == 0x02 and ven == vendor and (dev / "driver").exists() and not with_vfs:
            found.add(dev.name)
    return found


async def start(args: list[str], *, netns: bool = False,
                workdir: Path | None = None) -> asyncio.subprocess.Process:
    """Run the daemon; with ``workdir``, its device-info and CDI files go below it (never to
    the node's ``/var/run``)."""
    if workdir is not None:
        args = [*args, "--device-info-dir", str(workdir / "devinfo"),
                "--cdi-dir", str(workdir / "cdi")]
    cmd = (["unshare", "--net"] if netns else []) + SRIOVDP + args
    return await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def stop(proc: asyncio.subprocess.Process, *, signal_it: bool = True) -> tuple[int, str]:
    if signal_it and proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@needs_root
async def test_real_virtio_nic_is_advertised_and_allocated_when_run_in_a_fresh_netns(
    workdir: Path,
) -> None:
    expected = sysfs_functions("1af4")
    if not expected:
        pytest.skip("this host has no virtio network function")
    config = workdir / "config.json"
    config.write_text(json.dumps({"resourceList": [
        {"resourceName": "virtio", "selectors": [{"vendors": ["1af4"]}]}]}))
    dp = workdir / "dp"
    async with KubeletEmulator(dp) as kubelet:
        proc = await start(["-config-file", str(config), "--host-root", "/",
                            "--device-plugin-dir", str(dp),
                            "--plugins-registry-dir", str(workdir / "no-registry"),
                            "-resource-prefix=test.io"], netns=True, workdir=workdir)
        try:
            await kubelet.wait_registered("test.io/virtio", timeout=15)
            devs = await kubelet.wait_for("test.io/virtio", lambda d: bool(d), timeout=5)
            assert set(devs) == expected
            dev = min(expected)
            resp = await kubelet.allocate("test.io/virtio", [dev])
            envs = resp.container_responses[0].envs
            assert envs["PCIDEVICE_TEST_IO_VIRTIO"] == dev
            assert json.loads(envs["PCIDEVICE_TEST_IO_VIRTIO_INFO"]) == {
                dev: {"generic": {"deviceID": dev}}}
            assert (workdir / "devinfo" / f"test.io-virtio-{dev}-device.json").exists()
        finally:
            code, err = await stop(proc)
        assert code == 0, err
        assert not (dp / "test.io_virtio.sock").exists()


def bound_network_functions() -> set[str]:
    """BDFs of this host's network and InfiniBand functions that have a driver bound."""
    return {dev.name for dev in Path("/sys/bus/pci/devices").iterdir()
            if int((dev / "class").read_text(), 16) >> 16 in (0x02, 0x12)
            and (dev / "driver").exists()}


def default_route_ifnames() -> set[str]:
    names = set()
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
            names.add(fields[0])
    return names


async def test_discover_explains_default_route_exclusion_when_run_on_this_host() -> None:
    config = {"resourceList": [{"resourceName": "virtio", "selectors": [{"vendors": ["1af4"]}]}]}
    cfg = Path(os.environ.get("TMPDIR", "/tmp")) / f"sriovdp-discover-{os.getpid()}.json"
    cfg.write_text(json.dumps(config))
    try:
        proc = await asyncio.create_subprocess_exec(
            *SRIOVDP, "discover", "--host-root", "/", "--config-file", str(cfg), "-o", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
    finally:
        cfg.unlink()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    listed = {d["address"] for d in report["devices"]}
    assert bound_network_functions() <= listed
    routed = default_route_ifnames()
    (pool,) = report["pools"]
    rejected = {r["address"]: r["reason"] for r in pool["rejected"]}
    for d in report["devices"]:
        assert d["default_route"] == bool(set(d["netdevs"]) & routed)
        if d["vendor"] == "1af4" and d["default_route"]:
            assert "default route" in rejected[d["address"]]


async def test_bad_config_exits_1_with_the_json_path_before_any_socket_exists(
    workdir: Path,
) -> None:
    config = workdir / "config.json"
    config.write_text(json.dumps({"resourceList": [
        {"resourceName": "a", "selectors": [{"pfNames": ["ens2f1#3-"]}]},
        {"resourceName": "b.c", "selectors": [{}]}]}))
    dp = workdir / "dp"
    dp.mkdir()
    proc = await start(["--config-file", str(config), "--device-plugin-dir", str(dp),
                        "--plugins-registry-dir", str(workdir / "none")], workdir=workdir)
    code, err = await stop(proc, signal_it=False)
    assert code == 1
    assert 'resourceList[0].selectors[0].pfNames[0]' in err and "ens2f1#3-" in err
    assert "resourceList[1].resourceName" in err
    assert list(dp.iterdir()) == []


async def test_missing_config_file_exits_1_naming_the_file(workdir: Path) -> None:
    proc = await start(["-config-file", str(workdir / "nope.json")])
    code, err = await stop(proc, signal_it=False)
    assert code == 1 and "nope.json" in err


async def test_unknown_flag_exits_2_with_usage() -> None:
    proc = await start(["--no-such-flag"])
    code, err = await stop(proc, signal_it=False)
    assert code == 2 and "usage" in err.lower()


async def test_sigterm_removes_every_socket_when_the_daemon_runs_against_a_fake_host(
    workdir: Path,
) -> None:
    from sriovdp.testing.demo import DEMO_CONFIG, build_demo_host

    host = build_demo_host(workdir / "host")
    config = workdir / "config.json"
    config.write_text(json.dumps(DEMO_CONFIG))
    dp = workdir / "dp"
    async with KubeletEmulator(dp) as kubelet:
        proc = await start(["--config-file", str(config), "--host-root", str(host.root),
                            "--device-plugin-dir", str(dp), "-v", "10", "-logtostderr",
                            "--plugins-registry-dir", str(workdir / "none")], workdir=workdir)
        try:
            for name in (r["resourceName"] for r in DEMO_CONFIG["resourceList"]):
                await kubelet.wait_registered(f"intel.com/{name}", timeout=15)
        finally:
            code, err = await stop(proc)
        assert code == 0, err
        assert sorted(p.name for p in dp.glob("*.sock")) == ["kubelet.sock"]
        assert "Received signal" in err


async def test_json_logs_carry_pool_and_pci_and_summarise_each_pool_at_start(
    workdir: Path,
) -> None:
    from sriovdp.testing.demo import build_demo_host

    host = build_demo_host(workdir / "host")
    config = workdir / "config.json"
    config.write_text(json.dumps({"resourceList": [
        {"resourceName": "net", "selectors": [{"drivers": ["iavf"]}]},
        {"resourceName": "empty", "selectors": [{"vendors": ["8086"], "devices": ["1889"]}]}]}))
    dp = workdir / "dp"
    async with KubeletEmulator(dp) as kubelet:
        proc = await start(["--config-file", str(config), "--host-root", str(host.root),
                            "--device-plugin-dir", str(dp), "--log-format", "json",
                            "--plugins-registry-dir", str(workdir / "none")], workdir=workdir)
        try:
            await kubelet.wait_registered("intel.com/net", timeout=15)
            # the kubelet allocates only devices it was sent (registration comes first)
            await kubelet.wait_for("intel.com/net", lambda d: "0000:3b:02.1" in d, timeout=15)
            resp = await kubelet.allocate("intel.com/net", ["0000:3b:02.1"])
            assert resp.container_responses
            assert (workdir / "devinfo" / "intel.com-net-0000:3b:02.1-device.json").exists()
        finally:
            code, err = await stop(proc)
    assert code == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "msg"} <= r.keys() for r in records)
    summary = [r for r in records if r["msg"].startswith("pool intel.com/net: 4 devices")]
    assert summary and summary[0]["resource"] == "intel.com/net"
    assert str(dp / "intel.com_net.sock") in summary[0]["msg"]
    empty = [r for r in records if r["msg"].startswith("pool intel.com/empty is empty")]
    assert empty and "selectors[0].devices" in empty[0]["msg"]
    allocated = [r for r in records if r["msg"].startswith("allocated 0000:3b:02.1")]
    assert allocated and allocated[0]["pci"] == "0000:3b:02.1"
    assert allocated[0]["resource"] == "intel.com/net"
