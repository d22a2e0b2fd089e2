"""DRA benchmark: 2,048 VFs (8 PFs x 256) as ResourceSlices, a health flip, and prepare.

Prints, for the pure model and the in-process adapters (no apiserver: the in-memory
``FakeSliceApi`` port; the apiserver figures come with the conformance suite):

* slices: ``dra_devices`` + ``slice_devices`` + ``advance`` + ``resource_slices`` for all
  VFs (min of N runs), and the floor: a JSON round trip of the same slices (building the
  same amount of dict data with no decisions); ratio = slices / floor;
* publish: the first ``SlicePublisher.publish`` (16 creates) and a re-publish after one VF
  goes Unhealthy (list + 16 replaces), each median of N;
* prepare: ``ClaimPreparer.prepare`` of a one-VF vfio claim, CDI spec and checkpoint written
  to tmpfs (median, p99 over N claims), and unprepare.

Run: ``.venv/bin/python bench/dra.py [--runs 5] [--claims 200]``. Prints figures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

from harness import summary  # bench/ is the script's directory

from sriovdp.host.cdi import CdiStore
from sriovdp.host.draclaims import ClaimCheckpoint
from sriovdp.kubelet.dra.preparer import ClaimPreparer
from sriovdp.kubelet.dra.publisher import SlicePublisher
from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import HostFacts, Inventory, PciFunction
from sriovdp.model.dra.attributes import _attributes
from sriovdp.model.dra.prepare import SPEC_FILE_PREFIX, AllocatedDevice, ClaimAllocation, ClaimRef
from sriovdp.model.dra.slices import advance, dra_devices, resource_slices, slice_devices
from sriovdp.model.health import Health
from sriovdp.model.pools import build_pools
from sriovdp.model.selectors import NetSelector
from sriovdp.testing.dra import FakeClaimReader, FakeSliceApi

PFS, VFS = 8, 256
DRIVER, NODE = "sriov.network.k8s.io", "worker-1"


def inventory() -> Inventory:
    fns: dict[str, PciFunction] = {}
    for p in range(PFS):
        bus = 0x10 + 0x10 * p
        pf = f"0000:{bus:02x}:00.0"
        for v in range(VFS):
            addr = f"0000:{bus + 1 + v // 128:02x}:{(v % 128) // 8:02x}.{v % 8}"
            fns[addr] = PciFunction(address=addr, vendor="8086", device="1889",
                                    class_code=0x020000, driver="vfio-pci", numa_node=p % 2,
                                    physfn=pf, vf_index=v, pf_netdev=f"ens{p}f0",
                                    iommu_group=str(1000 + p * VFS + v), link_type="ether")
    return Inventory(functions=dict(sorted(fns.items())))


CONFIG = (ResourceConfig(name="sriov_net", selectors=(NetSelector(),)),)


def best(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


async def main_async(runs: int, claims: int) -> None:
    inv = inventory()
    pools = build_pools(inv, CONFIG, default_prefix="intel.com")
    devices = dra_devices(pools)

    def build() -> list[dict[str, object]]:
        devs = dra_devices(pools)
        return resource_slices(advance(None, slice_devices(devs, driver=DRIVER)),
                               driver=DRIVER, node_name=NODE)

    def cold() -> None:
        _attributes.cache_clear()
        build()

    slices = build()
    t_cold = best(cold, runs)
    t_warm = best(build, runs)
    t_floor = best(lambda: json.loads(json.dumps(slices)), runs)
    print(f"dra: {len(devices)} VFs -> {len(slices)} ResourceSlices")
    print(f"  slices, cold {t_cold * 1e3:8.2f} ms  warm (attributes cached) {t_warm * 1e3:8.2f} ms"
          f"  floor (JSON round trip of the slices) {t_floor * 1e3:8.2f} ms"
          f"  ratio cold/floor {t_cold / t_floor:5.2f}  warm/floor {t_warm / t_floor:5.2f}")

    first, flip = [], []
    sick = build_pools(inv, CONFIG, default_prefix="intel.com",
                       health={next(iter(inv.functions)): Health.UNHEALTHY})
    sick_devices = dra_devices(sick)
    for _ in range(runs):
        pub = SlicePublisher(FakeSliceApi(), driver=DRIVER, node_name=NODE, node_uid="u")
        start = time.perf_counter()
        await pub.publish(devices)
        first.append(time.perf_counter() - start)
        start = time.perf_counter()
        await pub.publish(sick_devices)
        flip.append(time.perf_counter() - start)
    # both include the in-memory apiserver's JSON round trip of every slice sent and listed
    print(f"  publish (16 creates)             {summary(first)}")
    print(f"  health flip (list + 16 replaces) {summary(flip)}")

    work = Path(tempfile.mkdtemp(prefix="sdp-dra-", dir="/dev/shm"))
    try:
        reader = FakeClaimReader()
        preparer = ClaimPreparer(
            driver=DRIVER, pool_name=NODE, reader=reader, devices=lambda: devices,
            facts=lambda: HostFacts(), cdi=CdiStore(work / "cdi", prefix=SPEC_FILE_PREFIX),
            checkpoint=ClaimCheckpoint(work / "checkpoint.json"))
        names = list(devices)
        refs = [ClaimRef("default", f"c{i}", f"00000000-0000-4000-8000-{i:012d}")
                for i in range(claims)]
        for i, ref in enumerate(refs):
            reader.put(ClaimAllocation(ref, (AllocatedDevice("nic", DRIVER, NODE,
                                                             names[i % len(names)]),)))
        prep, unprep = [], []
        for ref in refs:
            start = time.perf_counter()
            await preparer.prepare(ref)
            prep.append(time.perf_counter() - start)
        for ref in refs:
            start = time.perf_counter()
            await preparer.unprepare(ref)
            unprep.append(time.perf_counter() - start)
        print(f"  prepare   (1 VF, spec + checkpoint on tmpfs) {summary(prep)}")
        print(f"  unprepare                                    {summary(unprep)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--claims", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main_async(args.runs, args.claims))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
