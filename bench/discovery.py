"""Discovery benchmark: ``scan()`` of 8 PFs x 64 to 1,024 VFs on tmpfs, against the floor.

For each size it builds a FakeHost under ``/dev/shm`` and prints:

* scan: ``sriovdp.host.sysfs.scan`` (min of 5 runs);
  (a FakeHost root is not ``/``, so the scan's opens are confined to it with ``openat2``,
  see :mod:`sriovdp.host.files`; on a real host, ``--host-root /``, they are plain opens);
* floor: the same sysfs work done by a bare loop (``os.open``/``os.read``/``os.readlink``/
  ``os.listdir`` on the files the scan touches, no parsing, no objects; min of 5);
* ratio: scan / floor (the Python overhead over the syscalls), in CPU time of this process
  (``time.process_time``: on a shared machine wall time mostly measures the neighbours;
  on an idle one the two agree), and us/function (CPU);
* pool build: ``build_pools`` with 8 resources (one per PF, by ``pfNames``) if importable;
* at 256 and 1,024 VFs per PF (2,048 and 8,192 devices): the daemon started against the
  tree (exec → sockets listening → every pool's list at a kubelet emulator) and its RSS, also
  minus the import floor: the RSS of a process that only imports the daemon's dependencies
  (grpc, pydantic, pyroute2, prometheus_client, asyncinotify, yaml);
* linearity: us/function at the largest size over that at 2,048 VFs.

Targets (performance-anchors.md G1): 2,048 VFs scanned in <= 150 ms, ratio <= 2; 8,192 VFs
linear (per-function cost within 1.25x of 2,048's) and ratio <= 2.

Run: ``.venv/bin/python bench/discovery.py [--runs 5] [--sizes 64,128,256,1024] [--check]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sriovdp.host.paths import HostPaths
from sriovdp.host.sysfs import scan
from sriovdp.model.devices import Inventory
from sriovdp.testing.fakehost import FakeHost

PFS = 8
TARGET_MS = 150.0
TARGET_RATIO = 2.0
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_CLOEXEC


def bare_read(paths: HostPaths) -> int:
    """The scan's syscalls with nothing else: the floor a Python scan can reach."""
    count = 0
    netdev_of: dict[str, str] = {}
    class_fd = os.open(paths.class_net, _DIR)
    for name in os.listdir(class_fd):
        netdev_of[os.readlink(name, dir_fd=class_fd).split("/")[-3]] = name
    os.close(class_fd)
    for proc in ("route", "ipv6_route"):
        fd = os.open(paths.proc_net / proc, _FILE)
        os.read(fd, 65536)
        os.close(fd)
    bus_fd = os.open(paths.pci_devices, _DIR)
    for address in sorted(os.listdir(bus_fd)):
        fd = os.open(address, _DIR, dir_fd=bus_fd)
        _bare_read_function(fd, netdev_of.get(address))
        os.close(fd)
        count += 1
    os.close(bus_fd)
    return count


def _bare_read_function(fd: int, netdev: str | None) -> None:
    """One PCI function's reads, as the scan does them (``fd``: its sysfs directory)."""
    for attr in ("class", "vendor", "device"):
        f = os.open(attr, _FILE, dir_fd=fd)
        os.read(f, 4096)
        os.close(f)
    os.readlink("driver", dir_fd=fd)
    try:
        os.readlink("physfn", dir_fd=fd)
        present = ["iommu_group", "acpi_index"]  # a VF: probed, not listed
    except FileNotFoundError:
        present = os.listdir(fd)
    f = os.open("numa_node", _FILE, dir_fd=fd)
    os.read(f, 4096)
    os.close(f)
    if "iommu_group" in present:
        os.readlink("iommu_group", dir_fd=fd)
    if "acpi_index" in present:
        try:
            f = os.open("acpi_index", _FILE, dir_fd=fd)
            os.read(f, 4096)
            os.close(f)
        except FileNotFoundError:
            pass
    if "sriov_totalvfs" in present:
        for attr in ("sriov_totalvfs", "sriov_numvfs"):
            f = os.open(attr, _FILE, dir_fd=fd)
            os.read(f, 4096)
            os.close(f)
        for name in present:
            if name.startswith("virtfn"):
                os.readlink(name, dir_fd=fd)
    if netdev is not None:
        f = os.open(f"net/{netdev}/type", _FILE, dir_fd=fd)
        os.read(f, 4096)
        os.close(f)


def _min_cpu(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """Best wall time and best CPU time (this process, user + system) of ``runs`` calls."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        cpu = min(cpu, time.process_time() - start_cpu)
        wall = min(wall, time.perf_counter() - start)
    return wall, cpu, result


def _min_time(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _pool_timer(inventory: Inventory, runs: int) -> str:
    try:
        from sriovdp.model.config import parse_config
        from sriovdp.model.pools import build_pools
    except ImportError:
        return "pool build: n/a"
    doc = {"resourceList": [
        {"resourceName": f"pf{i}", "selectors": {"pfNames": [f"ens{i}f0"]}} for i in range(PFS)
    ]}
    try:
        configs = parse_config(json.dumps(doc)).resources
    except Exception as exc:  # noqa: BLE001 - a bench reports, it does not crash
        return f"pool build: n/a (config: {exc})"
    best, pools = _min_time(
        lambda: build_pools(inventory, configs, default_prefix="intel.com"), runs)
    members = sum(len(p.devices) for p in pools.values())
    return f"pool build: {best * 1e3:7.2f} ms ({len(pools)} pools, {members} devices)"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_DEPENDENCIES = "grpc, pydantic, pyroute2, prometheus_client, asyncinotify, yaml"


def import_floor_mib() -> float:
    """RSS of a Python process that has imported the daemon's dependencies and nothing else."""
    import subprocess
    import sys

    code = f"import sys, {_DEPENDENCIES}; print('ok', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
        return _rss_mib(proc.pid)
    finally:
        proc.communicate("")


def _startup(host: FakeHost, root: Path, vfs: int) -> tuple[float, float, float]:
    """exec of the daemon → every pool socket listening (8 pools), → every pool's full list
    (``vfs`` devices) received by a kubelet emulator, and the daemon's RSS; min/min/max of 3."""
    import asyncio
    import json
    import signal
    import sys

    from sriovdp.testing.kubelet import KubeletEmulator

    config = root / "config.json"
    config.write_text(json.dumps({"resourceList": [
        {"resourceName": f"pf{i}", "selectors": [{"pfNames": [f"ens{i}f0"]}]}
        for i in range(PFS)]}))

    async def once(n: int) -> tuple[float, float, float]:
        dp = Path(tempfile.mkdtemp(prefix="sdpd-", dir="/tmp"))
        want = {f"intel.com_pf{i}.sock" for i in range(PFS)}
        async with KubeletEmulator(dp) as kubelet:
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sriovdp", "--config-file", str(config), "--host-root",
                str(host.root), "--device-plugin-dir", str(dp), "--plugins-registry-dir",
                str(root / "none"), "--device-info-dir", str(dp / "devinfo"),
                "--cdi-dir", str(dp / "cdi"), stderr=asyncio.subprocess.DEVNULL)
            try:
                # a tmpfs listing every 2 ms is the probe being timed: blocking is the point
                while not want <= {p.name for p in dp.iterdir()}:  # noqa: ASYNC240
                    if proc.returncode is not None or time.perf_counter() - start > 60:
                        raise RuntimeError("daemon did not start")
                    await asyncio.sleep(0.002)
                listening = time.perf_counter() - start
                for i in range(PFS):
                    await kubelet.wait_for(f"intel.com/pf{i}", lambda d: len(d) == vfs,
                                           timeout=60)
                listed = time.perf_counter() - start
                await asyncio.sleep(0.5)
                rss = _rss_mib(proc.pid)
            finally:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        shutil.rmtree(dp, ignore_errors=True)
        return listening, listed, rss

    runs = [asyncio.run(once(n)) for n in range(3)]
    return (min(r[0] for r in runs), min(r[1] for r in runs), max(r[2] for r in runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="64,128,256,1024",
                        help="VFs per PF, comma separated")
    parser.add_argument("--no-daemon", action="store_true",
                        help="skip the daemon start-up and RSS figures")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the 2,048-VF targets are not met")
    args = parser.parse_args()
    base = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
    ok = True
    per_function: dict[int, float] = {}
    floor_mib = float("nan") if args.no_daemon else import_floor_mib()
    print(f"discovery: {PFS} PFs on {base} (tmpfs), min of {args.runs} runs")
    if not args.no_daemon:
        print(f"import floor ({_DEPENDENCIES}): RSS {floor_mib:.1f} MiB")
    for vfs in (int(v) for v in args.sizes.split(",")):
        root = Path(tempfile.mkdtemp(prefix="sriovdp-bench-", dir=base))
        try:
            start = time.perf_counter()
            host = FakeHost.scaled(root, pfs=PFS, vfs_per_pf=vfs)
            built = time.perf_counter() - start
            paths = host.paths
            scan(paths)  # warm the dentry cache like a daemon's second pass
            t_scan, cpu_scan, inventory = _min_cpu(partial(scan, paths), args.runs)
            t_floor, cpu_floor, seen = _min_cpu(partial(bare_read, paths), args.runs)
            ratio = cpu_scan / cpu_floor
            n = len(inventory.functions)
            assert seen == n == PFS * (vfs + 1), (seen, n)
            print(f"{PFS * vfs:5d} VFs ({n} functions, built in {built:.2f} s): "
                  f"scan {t_scan * 1e3:7.1f} ms (cpu {cpu_scan * 1e3:7.1f})  "
                  f"floor {t_floor * 1e3:7.1f} ms (cpu {cpu_floor * 1e3:7.1f})  "
                  f"ratio {ratio:4.2f}  ({cpu_scan / n * 1e6:5.1f} us/function)")
            print(f"      {_pool_timer(inventory, args.runs)}")
            per_function[vfs] = cpu_scan / n
            if vfs == 256:
                ok = t_scan * 1e3 <= TARGET_MS and ratio <= TARGET_RATIO
            elif vfs > 256:
                ok = ok and ratio <= TARGET_RATIO
            if vfs in (256, 1024) and not args.no_daemon:
                listening, listed, rss = _startup(host, root, vfs)
                print(f"      daemon: {PFS} sockets listening {listening * 1e3:.0f} ms "
                      f"(target <= 400 ms at 2,048); every pool's list at the kubelet "
                      f"{listed * 1e3:.0f} ms; RSS {rss:.1f} MiB, {rss - floor_mib:.1f} MiB "
                      f"over the import floor (min/max of 3)")
        finally:
            shutil.rmtree(root, ignore_errors=True)
    largest = max(per_function)
    if 256 in per_function and largest > 256:
        growth = per_function[largest] / per_function[256]
        ok = ok and growth <= 1.25
        print(f"linearity: {growth:.2f}x the per-function cost at {PFS * largest:,} VFs vs "
              f"2,048 (target <= 1.25)")
    print(f"targets: 2,048 VFs scan <= {TARGET_MS:.0f} ms, every ratio <= {TARGET_RATIO:.1f}, "
          f"linear: {'met' if ok else 'NOT met'}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
