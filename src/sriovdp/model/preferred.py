"""GetPreferredAllocation policy: keep a container's devices close together.

The answer is ``must_include`` first (as the kubelet requires), then the other available
devices ranked by:

1. same PF as a device already chosen (``must_include``), then same NUMA node;
2. without ``must_include``: the NUMA node that can hold the whole request with the fewest
   free devices left over (best fit), so one container's VFs share a NUMA node;
3. PFs with fewer free devices first (bin packing: exhaust a partly used PF before opening
   a fresh one, which keeps whole PFs free for large requests);
4. lowest PF address, then lowest VF index (deterministic).

Ids the pool does not hold, or that are unhealthy, are never preferred.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sriovdp.model.pools import HEALTHY, PoolDevice, ResourcePool


def preferred_allocation(
    pool: ResourcePool, available: Sequence[str], must_include: Sequence[str], size: int
) -> list[str]:
    """Device ids to allocate, ``must_include`` first; at most ``size`` ids (O(n log n))."""
    chosen: list[str] = list(dict.fromkeys(must_include))
    chosen_set = set(chosen)
    candidates = [
        pool.devices[i]
        for i in dict.fromkeys(available)
        if i not in chosen_set and i in pool.devices and pool.devices[i].health == HEALTHY
    ]
    needed = size - len(chosen)
    if needed <= 0 or not candidates:
        return chosen  # must_include always comes back whole, even beyond size
    chosen_devs = [pool.devices[i] for i in chosen if i in pool.devices]
    chosen_pfs = {d.function.physfn for d in chosen_devs if d.function.physfn}
    chosen_numa = {d.numa_node for d in chosen_devs if d.numa_node is not None}
    free_per_pf = Counter(d.function.physfn or d.id for d in candidates)
    if not chosen_numa:
        free_per_numa = Counter(d.numa_node for d in candidates if d.numa_node is not None)
        fitting = [(n, node) for node, n in free_per_numa.items() if n >= needed]
        if fitting:
            chosen_numa = {min(fitting)[1]}

    def rank(d: PoolDevice) -> tuple[bool, bool, int, str, int, str]:
        fn = d.function
        pf = fn.physfn or d.id
        return (
            bool(chosen_pfs) and pf not in chosen_pfs,
            bool(chosen_numa) and d.numa_node not in chosen_numa,
            free_per_pf[pf],
            pf,
            fn.vf_index if fn.vf_index is not None else -1,
            d.id,
        )

    ranked = sorted(candidates, key=rank)
    return chosen + [d.id for d in ranked[:needed]]
