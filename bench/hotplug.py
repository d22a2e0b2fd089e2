"""Hot-plug: VFs created after start → the new device list on the kubelet's stream.

On a FakeHost of 8 PFs (``--vfs`` VFs each, 8 pools), PF 0's VFs are removed and created
again with more VFs (``sriov_numvfs`` 0 → N, as the kernel requires). The kernel reports a
kernel-driver VF's new netdev with an ``RTM_NEWLINK``; here a veth named like the first new
VF's netdev is created in a test network namespace that the daemon's link source watches,
which is that event. Each sample is the time from the netdev appearing to the emulator
receiving the list with all new VFs. Target: <= 1 s (G10). Without a netdev event (VFs bound
to vfio-pci at creation) the periodic resync (``--resync-interval``, 30 s) finds them.

Run as root: ``.venv/bin/python bench/hotplug.py [--rounds 10] [--vfs 128]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from harness import rig, summary

from sriovdp.host.links import PyrouteLinkSource
from sriovdp.testing.links import NetnsLab


async def bench(rounds: int, vfs: int) -> None:
    async with NetnsLab() as lab:
        async with rig(vfs, links=PyrouteLinkSource(netns=lab.name)) as r:
            samples = []
            pf = r.host.addresses[0]
            for n in range(rounds):
                count = vfs - 1 - n % 2  # a different count each round
                r.host.set_numvfs(pf, 0)
                r.host.set_numvfs(pf, count)
                name = f"ens0f0v{count - 1}"
                start = time.perf_counter()
                await lab.add_veth(name, f"p{n}")  # the new VF netdev appears (RTM_NEWLINK)
                await r.kubelet.wait_for(
                    "intel.com/pf0", lambda d, c=count: sum(x.healthy for x in d.values()) == c,
                    timeout=10)
                samples.append(time.perf_counter() - start)
                await lab.remove(name)
            print(f"VFs re-created (~{vfs} per PF, 8 pools) -> new list at the kubelet: "
                  f"{summary(samples)}")
            print("target: <= 1 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--vfs", type=int, default=128)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("hotplug: needs root (ip netns add)", file=sys.stderr)
        return 2
    asyncio.run(bench(args.rounds, args.vfs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
