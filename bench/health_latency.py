"""Link-change latency: pyroute2 link change -> PyrouteLinkSource yields the LinkChange.

Needs root. Creates a throwaway network namespace ``sdp-<random>`` holding one veth pair
``pf0``/``pf0p`` (this kernel kind has no ``dummy`` links), watches it with a
``PyrouteLinkSource(netns=...)`` and toggles the peer ``pf0p`` down/up with pyroute2 (no ``ip``
process per toggle), which takes the carrier of ``pf0`` away and gives it back. Each sample
is the time from just before the pyroute2 ``link("set", ...)`` call to the moment the
source's ``events()`` yields the matching carrier change of ``pf0``. The namespace is deleted
on exit, also on errors, Ctrl-C and SIGTERM; the caller's own namespace is never touched.

Printed, each as median / p99 / max in ms:

* ``floor``  - the same toggle seen by a bare stdlib netlink socket on the same event loop
  (``loop.add_reader`` + ``struct``), i.e. what any listener pays (performance-anchors §4.3);
* ``source`` - the PyrouteLinkSource (pyroute2 parse + LinkTable + generator);
* ``health`` - source plus ``derive_health`` over a synthetic 2048-VF inventory whose PF
  netdev is ``pf0`` (performance-anchors G5: event -> internal health state p99 <= 1 ms);
* ``derive`` - ``derive_health`` alone, per event.

Then the idle cost of an open source: voluntary context switches of the process over
``--idle`` seconds with no link changes (expected 0: no thread, no timer).

Last, end to end (``kubelet``): the whole daemon on a FakeHost of 8 PFs x 256 VFs in 8
pools, whose PF ``ens0f0`` is a veth in the namespace; each sample is the time from the
pyroute2 toggle to the KubeletEmulator receiving the ListAndWatch list in which all 256 VFs
of that PF changed health. Target (G5): median <= 5 ms, p99 <= 10 ms.

With ``--real-kubelet`` only the end-to-end phase runs, against the kubelet's own device
manager (the Go peer in tests/conformance/kubelet; needs ``go``): each sample is the time
from the toggle to the real manager's ``GetCapacity`` showing pool pf0's allocatable at 0
(carrier lost) or 256 (carrier back).

Run: ``sudo .venv/bin/python bench/health_latency.py [--toggles 100] [--idle 2] [--json]
[--real-kubelet]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sriovdp.host.links import PyrouteLinkSource, open_route_socket
from sriovdp.model.devices import Inventory, PciFunction
from sriovdp.model.health import derive_health
from sriovdp.testing.links import NetnsLab

RTMGRP_LINK = 1
RTM_NEWLINK = 16
IFF_LOWER_UP = 0x10000


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p99 and max in ms of samples in seconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"n": len(ordered), "median_ms": statistics.median(ordered) * 1e3,
            "p99_ms": p99 * 1e3, "max_ms": ordered[-1] * 1e3}


def synthetic_inventory(pf_netdev: str, pfs: int = 8, vfs: int = 256) -> Inventory:
    """8 PFs x 256 VFs; PF 0's netdev is the veth the bench toggles."""
    fns: dict[str, PciFunction] = {}
    for p in range(pfs):
        pf_addr = f"0000:{0x10 + p:02x}:00.0"
        pf_name = pf_netdev if p == 0 else f"ens{p}f0"
        fns[pf_addr] = PciFunction(address=pf_addr, vendor="8086", device="159b",
                                   class_code=0x020000, total_vfs=vfs, num_vfs=vfs,
                                   netdevs=(pf_name,))
        for v in range(vfs):
            addr = f"0000:{0x10 + p:02x}:{1 + v // 8:02x}.{v % 8}"
            fns[addr] = PciFunction(address=addr, vendor="8086", device="1889",
                                    class_code=0x020000, physfn=pf_addr, vf_index=v,
                                    driver="vfio-pci", pf_netdev=pf_name)
    return Inventory(functions=fns)


async def measure(
    lab: NetnsLab, toggles: int,
    listen: Callable[[Callable[[bool], None]], Coroutine[Any, Any, None]],
) -> list[float]:
    """Toggle pf0's carrier ``toggles`` times each way; ``listen(report)`` calls
    ``report(carrier)`` when its listener sees pf0's carrier change."""
    waiting: dict[bool, asyncio.Future[float]] = {}

    def report(carrier: bool) -> None:
        fut = waiting.get(carrier)
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())

    listener = asyncio.create_task(listen(report))
    await asyncio.sleep(0.05)
    samples: list[float] = []
    try:
        for i in range(toggles * 2 + 10):        # the first 10 changes are warm-up
            carrier = i % 2 == 1                 # down first: pf0 starts with carrier
            fut = waiting[carrier] = asyncio.get_running_loop().create_future()
            t0 = time.perf_counter()
            await lab.set_carrier("pf0", carrier)
            async with asyncio.timeout(2.0):  # not wait_for: 3.11's may swallow a cancel
                seen = await fut
            if i >= 10:
                samples.append(seen - t0)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    return samples


async def raw_listener(netns: str, report: Callable[[bool], None], pf_index: int) -> None:
    """Floor: a bare netlink socket read by the event loop; parses only ifinfomsg flags."""
    sock = open_route_socket(netns)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, RTMGRP_LINK))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    last: list[bool | None] = [None]

    def readable() -> None:
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            offset = 0
            while offset + 32 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == RTM_NEWLINK:
                    _, _, _, index, flags = struct.unpack_from("=BBHiI", data, offset + 16)
                    if index == pf_index:
                        carrier = bool(flags & IFF_LOWER_UP)
                        if carrier != last[0]:
                            last[0] = carrier
                            report(carrier)
                offset += (length + 3) & ~3

    loop.add_reader(sock.fileno(), readable)
    try:
        await asyncio.Event().wait()
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()


def ctx_switches() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        return sum(int(line.split()[1]) for line in f
                   if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))


async def bench(toggles: int, idle: float) -> dict[str, object]:
    inventory = synthetic_inventory("pf0")
    derive_times: list[float] = []
    async with NetnsLab() as lab:
        await lab.add_veth("pf0", "pf0p")
        pf_index = await lab.index("pf0")
        await lab.index("pf0p")
        out: dict[str, object] = {"netns": lab.name, "toggles": toggles}

        out["floor"] = summary(await measure(
            lab, toggles, lambda report: raw_listener(lab.name, report, pf_index)))

        async with PyrouteLinkSource(netns=lab.name) as source:
            out["receive_buffer"] = source.receive_buffer

            async def via_source(report: Callable[[bool], None], health: bool) -> None:
                async for change in source.events():
                    if change.ifname == "pf0" and change.state is not None:
                        if health:
                            t = time.perf_counter()
                            derive_health(inventory, source.snapshot())
                            derive_times.append(time.perf_counter() - t)
                        report(change.state.carrier)

            out["source"] = summary(await measure(
                lab, toggles, lambda report: via_source(report, False)))
            out["health"] = summary(await measure(
                lab, toggles, lambda report: via_source(report, True)))
            out["derive"] = summary(derive_times)
            out["unhealthy_when_pf0_down"] = len(derive_health(
                inventory, {**source.snapshot(), "pf0": source.snapshot()["pf0"].__class__(
                    "pf0", False, "DOWN")}))

            before = ctx_switches()
            idle_task = asyncio.create_task(via_source(lambda carrier: None, False))
            await asyncio.sleep(idle)
            idle_task.cancel()
            await asyncio.gather(idle_task, return_exceptions=True)
            # asyncio.sleep itself wakes the loop once; subtract nothing, report raw.
            out["idle_ctx_switches_per_s"] = (ctx_switches() - before) / idle
    return out


async def end_to_end(toggles: int) -> dict[str, float]:
    """PF carrier toggle → the emulator has the pool's new list (2,048 devices, 8 pools)."""
    from harness import rig

    async with NetnsLab() as lab:
        await lab.add_veth("ens0f0", "ens0f0p")
        async with rig(links=PyrouteLinkSource(netns=lab.name)) as r:
            samples = []
            for n in range(2 * toggles):
                up = n % 2 == 1
                start = time.perf_counter()
                await lab.set_carrier("ens0f0", up)
                await r.kubelet.wait_for(
                    "intel.com/pf0",
                    lambda d, up=up: all(x.healthy == up for x in d.values()), timeout=5)
                # the arrival of that message, before the emulator's own bookkeeping
                samples.append(r.kubelet.received_at["intel.com/pf0"][-1] - start)
            return summary(samples)


async def end_to_end_real(toggles: int) -> dict[str, float]:
    """PF carrier toggle → the real device manager's allocatable of pf0 follows."""
    from harness import real_rig

    async with NetnsLab() as lab:
        await lab.add_veth("ens0f0", "ens0f0p")
        async with real_rig(links=PyrouteLinkSource(netns=lab.name)) as r:
            samples = []
            for n in range(2 * toggles):
                up = n % 2 == 1
                start = time.perf_counter()
                await lab.set_carrier("ens0f0", up)
                await r.kubelet.wait_allocatable({"intel.com/pf0": 256 if up else 0}, 5)
                samples.append(time.perf_counter() - start)
            return summary(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toggles", type=int, default=100,
                        help="down+up pairs per phase (samples = 2 x toggles; >= 25)")
    parser.add_argument("--idle", type=float, default=2.0, help="idle phase seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--real-kubelet", action="store_true",
                        help="end to end against the kubelet's own device manager (needs go)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("health_latency: needs root (ip netns add)", file=sys.stderr)
        return 2
    if args.toggles < 25:
        parser.error("--toggles must be >= 25 (>= 50 samples)")

    async def run() -> dict[str, object]:
        task = asyncio.current_task()
        assert task is not None
        # SIGTERM cancels like Ctrl-C does, so the namespace is always deleted.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        result = await bench(args.toggles, args.idle)
        result["kubelet"] = await end_to_end(max(25, args.toggles // 2))
        return result

    if args.real_kubelet:
        s = asyncio.run(end_to_end_real(max(25, args.toggles // 2)))
        print(f"end to end: toggle -> real kubelet allocatable (pf0, 256 VFs) n={s['n']:4d}  "
              f"median {s['median_ms']:7.3f} ms  p99 {s['p99_ms']:7.3f} ms  "
              f"max {s['max_ms']:7.3f} ms")
        return 0
    try:
        result = asyncio.run(run())
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("health_latency: interrupted (the namespace was removed)", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"netns {result['netns']}, {result['toggles']} down/up toggles per phase, "
          f"receive buffer {result['receive_buffer']} B")
    for key, label in (("floor", "bare netlink socket"), ("source", "PyrouteLinkSource"),
                       ("health", "source + derive_health(2056 fns)"),
                       ("derive", "derive_health alone"),
                       ("kubelet", "end to end: toggle -> kubelet list")):
        s = result[key]
        assert isinstance(s, dict)
        print(f"  {label:34s} n={s['n']:4d}  median {s['median_ms']:7.3f} ms  "
              f"p99 {s['p99_ms']:7.3f} ms  max {s['max_ms']:7.3f} ms")
    print(f"  unhealthy ids when pf0 is down: {result['unhealthy_when_pf0_down']}")
    print(f"  idle: {result['idle_ctx_switches_per_s']:.1f} context switches/s "
          f"with the source open")
    print("  target end to end (2,048 devices, 8 pools): median <= 5 ms, p99 <= 10 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
