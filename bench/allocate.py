"""Allocate and GetPreferredAllocation latency, from a client in another process.

Set-up: a FakeHost of 8 PFs x 256 VFs on tmpfs, the daemon started as its own process
(``python -m sriovdp``, 8 pools, one per PF, registered with a KubeletEmulator in this
process), and a client in a third process dialling one pool's socket directly (the kubelet's
position). The client times, interleaved round by round:

* floor: ``GetDevicePluginOptions``, an empty unary call on the same server;
* Allocate of 1, 8 and 64 devices (ids rotate through the pool, so device-info files are
  written for many devices, as pods come and go);
* GetPreferredAllocation (256 available, size 4), warm;

and, once per daemon start, the **first** GetPreferredAllocation and Allocate, sent the
moment the kubelet emulator received the pool's first device list (the client connected
and called GetDevicePluginOptions before, as the kubelet's channel is): what a pending pod
admitted right after the daemon started waits for.

With ``--rescans`` every round runs while the driver keeps the daemon rescanning the host
back to back (a SIGHUP every 20 ms: each one a full scan, build, retain and diff), which
shows what a rescan costs the RPCs (event-loop stalls, garbage collection).

Targets (issue 12): 1-device Allocate p99 <= 2x the floor's p99; <= 50 us per extra device
((Allocate 64 - Allocate 1) / 63, medians).

Run: ``.venv/bin/python bench/allocate.py [--rounds 300] [--starts 3] [--vf-driver iavf]
[--rescans]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

PFS = 8
VFS = 256
SIZES = (1, 8, 64)


# --- the client (runs in its own process) -----------------------------------------------------


def client(socket: str, rounds: int) -> dict[str, list[float]]:
    """Connect as soon as the socket exists, then wait for the pool's ids on stdin (sent the
    moment the kubelet emulator received the pool's first list) and call at once, as the
    kubelet admitting a pending pod does."""
    import grpc

    from sriovdp.kubelet.api import deviceplugin_pb2 as pb, deviceplugin_pb2_grpc as pb_grpc

    while not os.path.exists(socket):
        time.sleep(0.001)
    channel = grpc.insecure_channel(f"unix://{socket}")
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = pb_grpc.DevicePluginStub(channel)
    empty = pb.Empty()
    stub.GetDevicePluginOptions(empty)  # connected, as the kubelet's channel is
    ids: list[str] = json.loads(sys.stdin.readline())

    def preferred() -> pb.PreferredAllocationRequest:
        return pb.PreferredAllocationRequest(container_requests=[
            pb.ContainerPreferredAllocationRequest(available_deviceIDs=ids, allocation_size=4)])

    def allocate_request(n: int, k: int) -> pb.AllocateRequest:
        first = (k * n) % len(ids)
        chosen = [ids[(first + j) % len(ids)] for j in range(n)]
        return pb.AllocateRequest(
            container_requests=[pb.ContainerAllocateRequest(devices_ids=chosen)])

    samples: dict[str, list[float]] = {
        "floor": [], "preferred": [], "preferred_first": [], "allocate_first": []}
    for n in SIZES:
        samples[f"allocate_{n}"] = []
    request = preferred()
    start = time.perf_counter()
    stub.GetPreferredAllocation(request)
    samples["preferred_first"].append(time.perf_counter() - start)
    first_allocate = allocate_request(1, len(ids) - 1)
    start = time.perf_counter()
    stub.Allocate(first_allocate)
    samples["allocate_first"].append(time.perf_counter() - start)

    for _ in range(20):  # warm both sides
        stub.GetDevicePluginOptions(empty)
        stub.Allocate(allocate_request(8, 0))
    for k in range(rounds):
        start = time.perf_counter()
        stub.GetDevicePluginOptions(empty)
        samples["floor"].append(time.perf_counter() - start)
        for n in SIZES:
            req = allocate_request(n, k)
            start = time.perf_counter()
            stub.Allocate(req)
            samples[f"allocate_{n}"].append(time.perf_counter() - start)
        start = time.perf_counter()
        stub.GetPreferredAllocation(request)
        samples["preferred"].append(time.perf_counter() - start)
    channel.close()
    return samples


# --- the driver (this process: FakeHost, emulator, daemon process) ----------------------------


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def _rescan_forever(proc: asyncio.subprocess.Process, passes: list[int]) -> None:
    """SIGHUP every 20 ms: the daemon rescans back to back (triggers coalesce)."""
    while proc.returncode is None:
        proc.send_signal(signal.SIGHUP)
        passes[0] += 1
        await asyncio.sleep(0.02)


async def _one_start(root: Path, host_root: Path, rounds: int, rescans: bool = False
                     ) -> dict[str, list[float]]:
    from sriovdp.testing.kubelet import KubeletEmulator

    sock_dir = Path(tempfile.mkdtemp(prefix="sdpa-", dir="/tmp"))
    devinfo = Path(tempfile.mkdtemp(prefix="sdpa-devinfo-", dir=root))
    dp = sock_dir / "dp"
    try:
        async with KubeletEmulator(dp) as kubelet:
            socket = dp / "intel.com_pf0.sock"
            client_proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client", str(socket), "--rounds", str(rounds),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            await asyncio.sleep(1.0)  # the client has imported grpc and polls for the socket
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sriovdp", "--config-file", str(root / "config.json"),
                "--host-root", str(host_root), "--device-plugin-dir", str(dp),
                "--plugins-registry-dir", str(sock_dir / "none"),
                "--device-info-dir", str(devinfo),
                "--pod-resources-socket", str(sock_dir / "pr.sock"),
                stderr=asyncio.subprocess.DEVNULL)
            try:
                listed = await kubelet.wait_for("intel.com/pf0", lambda d: len(d) == VFS,
                                                timeout=60)
                assert client_proc.stdin is not None
                hups = [0]
                load = asyncio.ensure_future(_rescan_forever(proc, hups)) if rescans else None
                client_proc.stdin.write(json.dumps(sorted(listed)).encode() + b"\n")
                await client_proc.stdin.drain()
                out, _ = await client_proc.communicate()
                if load is not None:
                    load.cancel()
                if client_proc.returncode:
                    raise RuntimeError(f"client failed ({client_proc.returncode})")
                result: dict[str, list[float]] = json.loads(out)
                return result
            finally:
                if client_proc.returncode is None:
                    client_proc.kill()
                    await client_proc.wait()
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def _line(name: str, values: list[float], floor: list[float]) -> str:
    med, p99 = statistics.median(values), _p99(values)
    return (f"  {name:<28} median {med * 1e3:6.3f} ms  p99 {p99 * 1e3:6.3f} ms  "
            f"max {max(values) * 1e3:6.2f} ms   x floor: median "
            f"{med / statistics.median(floor):5.2f}  p99 {p99 / _p99(floor):5.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="timed rounds per daemon start")
    parser.add_argument("--starts", type=int, default=3, help="daemon starts (first calls)")
    parser.add_argument("--vf-driver", default="iavf", help="VF driver (iavf, vfio-pci)")
    parser.add_argument("--rescans", action="store_true",
                        help="keep the daemon rescanning back to back during the rounds")
    parser.add_argument("--client", metavar="SOCKET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        json.dump(client(args.client, args.rounds), sys.stdout)
        return 0

    from sriovdp.testing.fakehost import FakeHost

    base = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
    root = Path(tempfile.mkdtemp(prefix="sriovdp-bench-alloc-", dir=base))
    try:
        host = FakeHost.scaled(root / "host", pfs=PFS, vfs_per_pf=VFS, vf_driver=args.vf_driver)
        (root / "config.json").write_text(json.dumps({"resourceList": [
            {"resourceName": f"pf{i}", "selectors": [{"pfNames": [f"ens{i}f0"]}]}
            for i in range(PFS)]}))
        runs = [asyncio.run(_one_start(root, host.root, args.rounds, args.rescans))
                for _ in range(args.starts)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    samples = {key: [v for run in runs for v in run[key]] for key in runs[0]}
    floor = samples["floor"]
    print(f"allocate: {PFS} PFs x {VFS} VFs ({args.vf_driver}), daemon and client in separate "
          f"processes, {args.starts} daemon starts x {args.rounds} rounds"
          + (", full rescans back to back (SIGHUP every 20 ms)" if args.rescans else ""))
    print(_line("floor (GetDevicePluginOptions)", floor, floor))
    for n in SIZES:
        print(_line(f"Allocate {n} device{'s' if n > 1 else ''}", samples[f"allocate_{n}"], floor))
    per_device = (statistics.median(samples["allocate_64"])
                  - statistics.median(samples["allocate_1"])) / 63
    print(_line("GetPreferredAllocation", samples["preferred"], floor))
    for key, name in (("preferred_first", "GetPreferredAllocation"), ("allocate_first",
                                                                      "Allocate 1 device")):
        first = samples[key]
        print(f"  {'first ' + name:<28} median {statistics.median(first) * 1e3:6.3f} ms  "
              f"max {max(first) * 1e3:6.3f} ms  (right after the first list, once per "
              f"daemon start, n={len(first)})")
    p99_ratio = _p99(samples["allocate_1"]) / _p99(floor)
    print(f"per extra device: {per_device * 1e6:.1f} us (target <= 50 us); "
          f"1-device p99 / floor p99: {p99_ratio:.2f} (target <= 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
