"""The difference between two pool sets, as the daemon publishes it."""

from __future__ import annotations

from dataclasses import dataclass

from sriovdp.model.pools import PoolSet


@dataclass(frozen=True, slots=True)
class PoolChanges:
    """What changed from one pass to the next, by extended resource name.

    Attributes:
        added: pools that did not exist before (need an endpoint).
        updated: pools whose devices, health or config changed (push a new list).
        removed: names of pools no longer configured (stop the endpoint, remove the socket).
    """

    added: PoolSet
    updated: PoolSet
    removed: frozenset[str]

    @property
    def empty(self) -> bool:
        return not (self.added or self.updated or self.removed)


def diff(old: PoolSet, new: PoolSet) -> PoolChanges:
    """Compare two pool sets; pools equal by value are unchanged."""
    added = {k: v for k, v in new.items() if k not in old}
    updated = {k: v for k, v in new.items() if k in old and old[k] != v}
    removed = frozenset(k for k in old if k not in new)
    return PoolChanges(added=added, updated=updated, removed=removed)
