"""Kubelet restart → every pool registered and streaming again (the emulator's ``restart()``
deletes every socket and recreates ``kubelet.sock``, as the kubelet does).

Prints the time from calling ``restart()`` to all 8 pools (2,048 devices) being back at full
capacity at the emulator, over ``--restarts`` restarts. Target: p99 <= 100 ms (the Go
plugin polls its socket every 5 s, and in watcher mode never notices).

Run: ``.venv/bin/python bench/restart.py [--restarts 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from harness import pool_names, rig, summary


async def bench(restarts: int) -> None:
    async with rig() as r:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=30)
    asyncio.run(bench(parser.parse_args().restarts))


if __name__ == "__main__":
    main()
