"""The README's try-out off a node: ``python -m sriovdp.testing.emulate`` serves kubelet.sock
(and pod resources) as a process, the daemon runs against it as another, and /readyz gets to
200 with the pools' devices in /metrics."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from sriovdp.daemon.status import EndpointStatus, Status
from sriovdp.testing.fakehost import FakeHost

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    out, _ = proc.communicate(timeout=20)
    return out


def test_daemon_gets_ready_and_serves_its_pools_when_run_against_the_emulated_kubelet(
    tmp_path: Path,
) -> None:
    host = FakeHost.load(tmp_path / "host", REPO / "tests/data/hosts/x710-cx5-demo.yaml")
    # short: a unix socket path holds at most 107 bytes, and pytest's tmp_path is long
    try_dir = Path(tempfile.mkdtemp(prefix="emu-", dir="/tmp"))
    daemon_log = tmp_path / "daemon.log"
    emulator = subprocess.Popen(
        [PYTHON, "-m", "sriovdp.testing.emulate", "--device-plugin-dir", str(try_dir / "dp"),
         "--pod-resources-socket", str(try_dir / "pr.sock"),
         "--allocate", "intel.com/intel_sriov_dpdk=2", "--allocate", "intel.com/nothing"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    daemon = None
    health, metrics = free_port(), free_port()
    try:
        until((try_dir / "dp" / "kubelet.sock").exists, "kubelet.sock")
        daemon = subprocess.Popen(
            [PYTHON, "-m", "sriovdp", "--config-file",
             str(REPO / "deployments/base/configmap.yaml"), "--host-root", str(host.root),
             "--device-plugin-dir", str(try_dir / "dp"),
             "--plugins-registry-dir", str(try_dir / "reg"),
             "--pod-resources-socket", str(try_dir / "pr.sock"),
             "--device-info-dir", str(try_dir / "devinfo"), "--cdi-dir", str(try_dir / "cdi"),
             "--kubelet-settle", "1", "--health-address", f"127.0.0.1:{health}",
             "--metrics-address", f"127.0.0.1:{metrics}"],
            stdout=subprocess.DEVNULL, stderr=daemon_log.open("w"), text=True)

        try:
            until(lambda: http(health, "/readyz")[0] == 200, "/readyz 200")
        except AssertionError:
            raise AssertionError(f"not ready: {http(health, '/readyz')}; daemon log:\n"
                                 f"{daemon_log.read_text()}") from None
        _, page = http(metrics, "/metrics")
        assert 'sriovdp_pool_devices{resource="intel.com/intel_sriov_netdevice"} 4.0' in page
        assert 'sriovdp_pool_devices{resource="intel.com/intel_sriov_dpdk"} 4.0' in page
        until(lambda: 'sriovdp_allocations_total{resource="intel.com/intel_sriov_dpdk"} 2.0'
              in http(metrics, "/metrics")[1], "the --allocate pod's 2 devices")
    finally:
        if daemon is not None:
            stop(daemon, signal.SIGTERM)
        out = stop(emulator)
        shutil.rmtree(try_dir, ignore_errors=True)
    assert emulator.returncode == 0, out
    assert f"emulated kubelet serving {try_dir / 'dp' / 'kubelet.sock'}" in out
    assert "registered intel.com/intel_sriov_dpdk (socket mode" in out
    assert "intel.com/intel_sriov_dpdk: 4 devices, 4 healthy (0000:3b:02.4" in out
    assert out.rstrip().endswith("emulated kubelet stopped")
    # --allocate: a pod admitted as the kubelet would, and what its container gets
    assert "allocated intel.com/intel_sriov_dpdk to pod try-1: 0000:3b:02." in out
    assert "  env PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK=0000:3b:02." in out
    assert "  device /dev/vfio/vfio -> /dev/vfio/vfio (rw)" in out
    assert "intel.com/nothing" not in out  # never offered: never admitted


def test_emulator_refuses_an_allocate_request_that_is_not_resource_and_count() -> None:
    from sriovdp.testing.emulate import main

    for bad in ("intel_sriov_netdevice", "intel.com/x=0", "intel.com/x=two"):
        with pytest.raises(SystemExit) as exited:
            main(["--device-plugin-dir", "/nonexistent", "--allocate", bad])
        assert exited.value.code == 2


def test_readme_try_out_starts_the_emulated_kubelet_when_followed() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("# the daemon off a node"):]
    block = block[:block.index("```")]
    assert "python -m sriovdp.testing.emulate --device-plugin-dir /tmp/try/dp" in block
    assert "--pod-resources-socket /tmp/try/pr.sock" in block
    assert "/readyz" in block and "/metrics" in block


@pytest.mark.parametrize(("endpoint", "reason"), [
    (EndpointStatus(registered=False, streaming=False),
     "pool intel.com/net: not registered with the kubelet"),
    (EndpointStatus(registered=True, streaming=False),
     "pool intel.com/net: registered, but the kubelet has no ListAndWatch stream open"),
    (EndpointStatus(registered=False, streaming=False, waiting=True),
     "pool intel.com/net: its socket is owned by another instance"),
])
def test_readyz_reason_says_what_a_pool_waits_for_when_it_is_not_ready(
    endpoint: EndpointStatus, reason: str,
) -> None:
    status = Status(started=True, endpoints={"intel.com/net": endpoint},
                    failures={"scanner": "boom"})
    assert status.not_ready() == [reason, "task scanner failed (boom)"]
