"""Health derivation cost: ``derive_health`` over 8 PFs x 32, 256 and 1,024 VFs.

Pure model, no root: PF 0 has no carrier (its VFs go Unhealthy), the other PFs are up, every
VF's own netdev is administratively down (it counts for nothing). Prints the best of
``--repeat`` runs per size, the time per function, and each size's ratio to the smallest
against the ratio of function counts (linear: the two match). Performance anchor G5: event ->
health p99 <= 1 ms at 2,048 VFs. Asserts nothing (moved here from tests/unit/test_health.py,
where a wall-clock bound failed on a busy machine).

Run: ``.venv/bin/python bench/health_derive.py [--repeat 5] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import time

from sriovdp.model.devices import Inventory, PciFunction
from sriovdp.model.health import LinkState, derive_health

SIZES = (32, 256, 1024)


def host(pfs: int, vfs: int) -> tuple[Inventory, dict[str, LinkState]]:
    """``pfs`` PFs with ``vfs`` VFs each; PF 0 without carrier, the others up."""
    fns: dict[str, PciFunction] = {}
    states: dict[str, LinkState] = {}
    for p in range(pfs):
        bus = 0x10 + 5 * p  # 1,024 VFs span 4 buses of devices 01..1f + 8 functions
        pf_addr, pf_name = f"0000:{bus:02x}:00.0", f"ens{p}f0"
        fns[pf_addr] = PciFunction(address=pf_addr, vendor="8086", device="159b",
                                   class_code=0x020000, total_vfs=vfs, num_vfs=vfs,
                                   netdevs=(pf_name,))
        states[pf_name] = LinkState(pf_name, carrier=p != 0, operstate="UP" if p else "DOWN")
        for v in range(vfs):
            slot = 1 + v // 8
            addr = f"0000:{bus + slot // 32:02x}:{slot % 32:02x}.{v % 8}"
            name = f"{pf_name}v{v}"
            fns[addr] = PciFunction(address=addr, vendor="8086", device="1889",
                                    class_code=0x020000, physfn=pf_addr, vf_index=v,
                                    netdevs=(name,), pf_netdev=pf_name)
            states[name] = LinkState(name, carrier=False, operstate="DOWN", admin_up=False)
    return Inventory(functions=fns), states


def best(inventory: Inventory, states: dict[str, LinkState], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        derive_health(inventory, states)
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for vfs in SIZES:
        inventory, states = host(8, vfs)
        unhealthy = len(derive_health(inventory, states))
        seconds = best(inventory, states, args.repeat)
        rows.append({"vfs_per_pf": vfs, "functions": len(inventory.functions),
                     "unhealthy": unhealthy, "ms": seconds * 1e3,
                     "us_per_function": seconds * 1e6 / len(inventory.functions)})
    base = rows[0]
    for row in rows:
        row["time_ratio"] = row["ms"] / base["ms"]
        row["size_ratio"] = row["functions"] / base["functions"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'VFs/PF':>7} {'functions':>9} {'unhealthy':>9} {'best ms':>8} {'us/fn':>6} "
          f"{'time x':>7} {'size x':>7}")
    for row in rows:
        print(f"{row['vfs_per_pf']:>7} {row['functions']:>9} {row['unhealthy']:>9} "
              f"{row['ms']:>8.3f} {row['us_per_function']:>6.2f} {row['time_ratio']:>7.1f} "
              f"{row['size_ratio']:>7.1f}")
    print("G5: event -> health p99 <= 1 ms at 2,048 VFs (8 x 256)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
