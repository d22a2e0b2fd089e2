"""GetPreferredAllocation policy: keep a container's devices close together.

The answer is ``must_include`` first (as the kubelet requires), then the other available
devices ranked by:

1. same PF as a device already chosen (``must_include``), then same NUMA node;
2. without ``must_include``: the NUMA node that can hold the whole request with the fewest
   free devices left over (best fit), so one container's VFs share a NUMA node;
3. PFs with fewer free devices first (bin packing: exhaust a partly used PF before opening
   a fresh one, which keeps whole PFs free for large requests);
4. lowest PF address, then lowest VF index (deterministic).

Ids the pool does not hold, or that are unhealthy, are never preferred. The answer never
fails and is always drawn from ``available``: ``must_include`` ids outside ``available``
are left out, repeats count once, a size of zero or less gives just ``must_include``, and
a size beyond what is available gives every healthy available device (the kubelet fills
up the rest itself).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sriovdp.model.health import Health
from sriovdp.model.pools import PoolDevice, ResourcePool


def preferred_allocation(
    pool: ResourcePool, available: Sequence[str], must_include: Sequence[str], size: int
) -> list[str]:
    """Device ids to allocate, ``must_include`` first, all from ``available``; at most
    ``size`` ids unless ``must_include`` alone is longer (O(n log n), n = len(available))."""
    offered = dict.fromkeys(available)
    chosen: list[str] = [i for i in dict.fromkeys(must_include) if i in offered]
    chosen_set = set(chosen)
    devices = pool.devices
    candidates = [
        devices[i]
        for i in offered
        if i not in chosen_set and i in devices and devices[i].health == Health.HEALTHY
    ]
    needed = size - len(chosen)
    if needed <= 0 or not candidates:
        return chosen  # must_include always comes back whole, even beyond size
    chosen_devs = [devices[i] for i in chosen if i in devices]
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


def plain_allocation(
    available: Sequence[str], must_include: Sequence[str], size: int
) -> list[str]:
    """``must_include`` (those in ``available``), then ``available`` in order, up to ``size``:
    the answer when :func:`preferred_allocation` cannot rank (it never fails an admission)."""
    offered = dict.fromkeys(available)
    chosen = dict.fromkeys(i for i in must_include if i in offered)
    for i in offered:
        if len(chosen) >= size:
            break
        chosen.setdefault(i)
    return list(chosen)
