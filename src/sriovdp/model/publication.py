"""What one publication tells the kubelet, decided from the pools built for a pass.

Pure. :func:`plan` runs retention (:func:`~sriovdp.model.retention.retain`) on the pools
built for the pass, takes the device plugin's share of the result, marks every device of a
pool whose CDI spec is missing Unhealthy (:func:`~sriovdp.model.pools.with_faulty_pools`:
the kubelet must not hand out a CDI name whose spec is not on disk) and diffs that against
what the endpoints were told last (:func:`~sriovdp.model.diff.diff`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace

from sriovdp.model.diff import PoolChanges, diff
from sriovdp.model.dra.modes import device_plugin_pools
from sriovdp.model.pools import PoolSet, ResourcePool, with_faulty_pools
from sriovdp.model.retention import (
    Holds,
    HostView,
    PassKind,
    Retained,
    RetentionState,
    retain,
)


@dataclass(frozen=True, slots=True)
class Publication:
    """What was published last (all empty before the first pass).

    Attributes:
        retained: every pool as retention decided, device plugin and DRA pools alike (DRA
            pools under their own keys, :mod:`sriovdp.model.dra.modes`).
        pools: the device plugin pools as their endpoints are told (a pool whose CDI spec
            is missing: every device Unhealthy).
        retention: to pass to the next :func:`~sriovdp.model.retention.retain`.
    """

    retained: dict[str, ResourcePool] = field(default_factory=dict)
    pools: dict[str, ResourcePool] = field(default_factory=dict)
    retention: RetentionState = RetentionState()

    @classmethod
    def placeholders(cls, pools: dict[str, ResourcePool]) -> Publication:
        """Before the first pass: the config's pools with no devices (the first pass is
        diffed against them; retention learns what pods hold from the kubelet, not from
        these)."""
        return cls(retained=pools, pools=device_plugin_pools(pools))


@dataclass(frozen=True, slots=True)
class Plan:
    """One publication's decisions.

    Attributes:
        last: what was published before.
        retained: retention's outcome (every pool, the next state, notes for the log).
        changed: the retained pools differ from ``last.retained`` (always on the first
            pass): device-info files and CDI specs must follow.
        pools: the device plugin pools to tell the endpoints.
        changes: how ``pools`` differs from ``last.pools``.
    """

    last: Publication
    retained: Retained
    changed: bool
    pools: dict[str, ResourcePool]
    changes: PoolChanges

    @property
    def publication(self) -> Publication:
        """What is published once this plan is carried out."""
        return Publication(self.retained.pools, self.pools, self.retained.state)

    def with_faulty(self, faulty: Collection[str]) -> Plan:
        """This plan with ``faulty`` as the pools whose CDI spec is missing (writing the
        specs of the changed pools succeeded or failed after it was made)."""
        pools = with_faulty_pools(device_plugin_pools(self.retained.pools), faulty)
        return replace(self, pools=pools, changes=diff(self.last.pools, pools))


def plan(last: Publication, built: PoolSet, host: HostView, held: Holds, kind: PassKind,
         faulty: Collection[str]) -> Plan:
    """Decide a publication.

    Args:
        last: what was published before.
        built: the pools built from this pass's scan and config (with link health).
        host: what is on the host and its link health.
        held: what pods and DRA claims hold, by pool key.
        kind: why this pass runs.
        faulty: names of the device plugin pools whose CDI spec is missing.
    """
    retained = retain(last.retained, built, host, held, kind, last.retention)
    changed = kind is PassKind.FIRST or not diff(last.retained, retained.pools).empty
    unchanged = Plan(last, retained, changed, {}, PoolChanges({}, {}, frozenset()))
    return unchanged.with_faulty(faulty)

