"""The settle window: a PCI function that just appeared or changed driver joins a pool only
once it has stayed so for a short while.

Operators create VFs and rebind some of them to vfio-pci a few hundred milliseconds later;
a pod must never get a VF that is mid-rebind. Pure: the caller passes the clock.

Rules, per function of a new scan, against the last *settled* inventory:

* unchanged (same driver as settled): taken as scanned;
* new, or its driver changed: while it has been so for less than ``window`` seconds the
  settled version is kept (a new function is left out); once the window passed with no
  further change it is taken as scanned;
* the first scan is the baseline: everything in it is settled — but before the first
  publication the caller rescans after a window while :func:`signs_of_change` finds a
  function without a driver or a PF with fewer VFs than ``sriov_numvfs`` says, until two
  scans in a row agree (:func:`same_shape`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from sriovdp.model.devices import Inventory, PciFunction


@dataclass(frozen=True, slots=True)
class Settling:
    """Functions still inside their window: id → (driver, monotonic time of the change)."""

    changes: Mapping[str, tuple[str | None, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Settled:
    """The outcome of :func:`settle`.

    Attributes:
        inventory: what pools are built from.
        state: to pass to the next :func:`settle`.
        next_check: when the earliest unsettled function settles (None: all settled).
    """

    inventory: Inventory
    state: Settling
    next_check: float | None


def settle(settled: Inventory | None, scanned: Inventory, now: float, window: float,
           state: Settling) -> Settled:
    """Hold back functions that changed less than ``window`` seconds ago (see the module)."""
    if settled is None or window <= 0:
        return Settled(scanned, Settling(), None)
    functions: dict[str, PciFunction] = {}
    changes: dict[str, tuple[str | None, float]] = {}
    next_check: float | None = None
    for dev_id, fn in scanned.functions.items():
        before = settled.functions.get(dev_id)
        if before is not None and before.driver == fn.driver:
            functions[dev_id] = fn
            continue
        driver, since = state.changes.get(dev_id, (fn.driver, now))
        if driver != fn.driver:
            since = now  # changed again: the window starts over
        if now - since >= window:
            functions[dev_id] = fn
            continue
        changes[dev_id] = (fn.driver, since)
        next_check = min(next_check or since + window, since + window)
        if before is not None:
            functions[dev_id] = before
    if not changes:
        return Settled(scanned, Settling(), None)
    return Settled(replace(scanned, functions=functions), Settling(changes), next_check)


def signs_of_change(inventory: Inventory) -> list[str]:
    """What in one scan looks like an operator mid-way (VFs being created or rebound):
    functions with no driver bound, PFs with fewer VFs than ``sriov_numvfs``."""
    signs = [f"{s.address} has no driver" for s in inventory.skipped
             if s.reason == "no driver bound"]
    vfs: dict[str, int] = {}
    for fn in inventory.functions.values():
        if fn.physfn is not None:
            vfs[fn.physfn] = vfs.get(fn.physfn, 0) + 1
    unbound = {s.address for s in inventory.skipped}
    for fn in inventory.functions.values():
        if fn.num_vfs > vfs.get(fn.address, 0) + len(unbound):
            signs.append(f"{fn.address} has {vfs.get(fn.address, 0)} of {fn.num_vfs} VFs")
    return signs


def same_shape(a: Inventory, b: Inventory) -> bool:
    """The same functions with the same drivers, and the same skipped ones."""
    return ({k: f.driver for k, f in a.functions.items()}
            == {k: f.driver for k, f in b.functions.items()}
            and set(a.skipped) == set(b.skipped))
