"""Kubelet restart → every pool registered and streaming again (the emulator's ``restart()``
deletes every socket and recreates ``kubelet.sock``, as the kubelet does).

Prints the time from calling ``restart()`` to all 8 pools (2,048 devices) being back at full
capacity at the emulator, over ``--restarts`` restarts. Target: p99 <= 100 ms (the Go
plugin polls its socket every 5 s, and in watcher mode never notices).

With ``--real-kubelet`` the kubelet is the kubelet's own device manager (the Go peer in
tests/conformance/kubelet, built from k8s.io/kubernetes; needs ``go``): each sample is the
time from the new manager's start (the old kubelet process ended, 100 ms passed, a new
process starts the manager on the same dirs) to every pool back
at full allocatable in the new manager's ``GetCapacity``, in socket mode and in watcher mode
(the plugin watcher on ``plugins_registry``). It also prints the first and second admission
of one VF from a 256-device pool (the manager's Allocate path: GetPreferredAllocation and
Allocate RPCs included).

The daemon runs as the ``sriovdp`` process runs it: after its first publication, what
start-up made is frozen out of the garbage collector's reach (``--no-freeze-gc``: not, as
this bench did before). The emulator shares the process and its loop, so its own work
(decoding each list, writing its checkpoint) is in the emulator figure; with the kubelet in
a process of its own (``--real-kubelet``) only the daemon's is.

Run: ``.venv/bin/python bench/restart.py [--restarts 30] [--real-kubelet] [--no-freeze-gc]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from harness import pool_names, real_rig, rig, summary


async def bench(restarts: int, freeze_gc: bool) -> None:
    async with rig(freeze_gc=freeze_gc) as r:
        samples = []
        for n in range(restarts):
            start = time.perf_counter()
            await r.kubelet.restart()
            for name in pool_names():
                await r.kubelet.wait_registered(name, count=n + 2, timeout=10)
                await r.kubelet.wait_capacity(name, (256, 256), timeout=10)
            # when the last pool's full list arrived (before the emulator's bookkeeping)
            samples.append(max(r.kubelet.received_at[name][-1] for name in pool_names())
                           - start)
        print(f"kubelet restart -> 8 pools registered and streaming: {summary(samples)}")
        print("target: p99 <= 100 ms")


async def bench_real(restarts: int, freeze_gc: bool) -> None:
    full = dict.fromkeys(pool_names(), 256)
    for watcher in (False, True):
        mode = "watcher" if watcher else "socket"
        async with real_rig(watcher=watcher, freeze_gc=freeze_gc) as r:
            if not watcher:
                for n in range(2):
                    pod = await r.kubelet.admit(f"first-{n}", {"c0": {pool_names()[0]: 1}})
                    print(f"real kubelet: admission {n + 1} of 1 VF from a 256-device pool: "
                          f"Allocate path {pod['c0']['allocate_ms']:.2f} ms")
            samples = []
            for _ in range(restarts):
                await r.kubelet.restart()
                await r.kubelet.wait_allocatable(full, timeout=30)
                samples.append(time.perf_counter() - r.kubelet.started_at)
            print(f"real kubelet ({mode} mode) restart -> 8 pools back at 256 allocatable: "
                  f"{summary(samples)}")
    print("target: p99 <= 100 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restarts", type=int, default=30)
    parser.add_argument("--real-kubelet", action="store_true",
                        help="against the kubelet's own device manager (needs go)")
    parser.add_argument("--no-freeze-gc", dest="freeze_gc", action="store_false",
                        help="leave start-up's objects to the garbage collector (the daemon "
                             "process freezes them after its first publication)")
    args = parser.parse_args()
    asyncio.run(bench_real(args.restarts, args.freeze_gc) if args.real_kubelet
                else bench(args.restarts, args.freeze_gc))


if __name__ == "__main__":
    main()
