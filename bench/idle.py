"""Idle cost: the daemon as its own process, 8 pools and 2,048 VFs, registered with the
kubelet emulator (in this process), then left alone.

Prints the daemon's CPU seconds (``/proc/<pid>/stat`` utime+stime) and wakeups per second
(voluntary + involuntary context switches summed over all its threads,
``/proc/<pid>/task/*/status``) over ``--seconds`` of idleness. Targets over 60 s:
< 0.2 CPU-s and <= 15 wakeups/s (the Go plugin idles at about 1 millicore).

Run: ``.venv/bin/python bench/idle.py [--seconds 60]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator

PFS, VFS = 8, 256


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def context_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


async def bench(seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="sdpi-", dir="/dev/shm"))
    socks = Path(tempfile.mkdtemp(prefix="sdpi-", dir="/tmp"))
    try:
        host = FakeHost.scaled(work / "host", pfs=PFS, vfs_per_pf=VFS)
        config = work / "config.json"
        config.write_text(json.dumps({"resourceList": [
            {"resourceName": f"pf{i}", "selectors": [{"pfNames": [f"ens{i}f0"]}]}
            for i in range(PFS)]}))
        dp = socks / "dp"
        async with KubeletEmulator(dp) as kubelet:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sriovdp", "--config-file", str(config), "--host-root",
                str(host.root), "--device-plugin-dir", str(dp), "--plugins-registry-dir",
                str(socks / "none"), "--device-info-dir", str(work / "devinfo"),
                "--cdi-dir", str(work / "cdi"), stderr=asyncio.subprocess.DEVNULL)
            try:
                for i in range(PFS):
                    await kubelet.wait_capacity(f"intel.com/pf{i}", (VFS, VFS), timeout=30)
                await asyncio.sleep(2)  # let start-up settle
                cpu0, cs0 = cpu_seconds(proc.pid), context_switches(proc.pid)
                await asyncio.sleep(seconds)
                cpu1, cs1 = cpu_seconds(proc.pid), context_switches(proc.pid)
                threads = thread_count(proc.pid)
            finally:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        print(f"idle {seconds:.0f} s, {PFS} pools, {PFS * VFS} VFs, {threads} threads: "
              f"CPU {cpu1 - cpu0:.3f} s ({(cpu1 - cpu0) / seconds * 1e3:.2f} millicores), "
              f"wakeups {(cs1 - cs0) / seconds:.1f}/s")
        print("targets over 60 s: < 0.2 CPU-s and <= 15 wakeups/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(socks, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    asyncio.run(bench(parser.parse_args().seconds))


if __name__ == "__main__":
    main()
