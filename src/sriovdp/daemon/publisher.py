"""PoolPublisher: turns a pass's scan and config into what the kubelet sees, and tells it.

One publication: build the config's pools (:func:`~sriovdp.model.pools.build_pools`; the
link fast path reuses the last ones with new health), ask what pods and DRA claims hold,
let :func:`~sriovdp.model.publication.plan` decide (retention, CDI-less pools Unhealthy,
diff), then carry the plan out: device-info files and CDI specs follow the changed pools
(:class:`Outputs`), the device plugin pools go to the :class:`EndpointSet`, the DRA pools
to the :class:`DraSide`. The pure work of a full pass (at 2,048 VFs tens of ms) runs in a
worker thread while the loop serves RPCs; the caller awaits each publication, so they
still apply in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sriovdp.daemon.dra import DraSide
from sriovdp.daemon.endpoints import EndpointSet
from sriovdp.daemon.holds import HoldTracker
from sriovdp.daemon.leftclaims import LeftClaims
from sriovdp.daemon.outputs import Outputs
from sriovdp.daemon.report import log_retention
from sriovdp.daemon.settings import Settings
from sriovdp.model.config import Config
from sriovdp.model.devices import Inventory
from sriovdp.model.diff import PoolChanges
from sriovdp.model.dra.modes import device_plugin_pools, dra_pools, keyed_by_mode
from sriovdp.model.grants import (
    STANDIN_BACKOFF,
    RewriteSchedule,
    standin_reason,
    standin_resource,
)
from sriovdp.model.health import Health
from sriovdp.model.pools import ResourcePool, build_pools, with_health
from sriovdp.model.publication import Publication, plan
from sriovdp.model.retention import Holds, HostView, PassKind, RetentionState, holds_matter

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Published:
    """What the caller may have to follow up after a publication.

    Attributes:
        changes: how the device plugin pools differ from the ones published before.
        holds_retry_at: the pod resources call this publication made failed: when (monotonic
            time) its back-off ends (None: no call, or it was answered).
    """

    changes: PoolChanges
    holds_retry_at: float | None = None


class PoolPublisher:
    """Publishes each pass's pools and remembers what it published.

    Args:
        settings: the default resource prefix and the DRA mode the pools are built with.
        config: the config to build pools from, read when a build starts (a reload may
            have applied another meanwhile).
        endpoints: the device plugin endpoints, told every publication.
        outputs: device-info files and CDI specs; the pools whose spec is missing are
            published Unhealthy.
        holds: what pods hold (the kubelet's pod resources API and device checkpoint, and
            this process's allocations).
        left: what claims of a DRA driver this instance does not serve hold.
        dra: with ``--dra``: told the DRA pools; its prepared claims are holds.
    """

    def __init__(self, settings: Settings, config: Callable[[], Config], endpoints: EndpointSet,
                 outputs: Outputs, *, holds: HoldTracker, left: LeftClaims,
                 dra: DraSide | None) -> None:
        self._settings = settings
        self._config = config
        self._endpoints = endpoints
        self._outputs = outputs
        self._holds = holds
        self._left = left
        self._dra = dra
        self.last = Publication()
        """What was published last."""
        self.built: dict[str, ResourcePool] = {}
        """The pools as built from the last scan (the link fast path starts from them)."""
        self.inventory = Inventory()
        """The last scan published."""
        self._host_ids: tuple[Inventory | None, frozenset[str]] = (None, frozenset())
        self.passes = 0
        """Full passes published (scans)."""
        self.publications = 0
        """Publications of any kind (full passes and the link fast path)."""
        self._standins = RewriteSchedule(*STANDIN_BACKOFF)

    @property
    def pools(self) -> dict[str, ResourcePool]:
        """What the device plugin endpoints are told."""
        return self.last.pools

    @property
    def retention(self) -> RetentionState:
        return self.last.retention

    def open_placeholders(self) -> None:
        """Before the first pass: an endpoint for every device plugin pool of the config,
        with no devices yet (the first pass is diffed against them)."""
        self.last = Publication.placeholders(self._build(Inventory(), {}))
        self._endpoints.open_early(self.last.pools)

    async def publish_scan(self, inventory: Inventory, health: dict[str, Health],
                           kind: PassKind) -> Published:
        """A full pass: the config's pools built from a new scan, published."""
        await asyncio.to_thread(self._left.refresh)
        built = await asyncio.to_thread(self._build, inventory, health)
        return await self._publish(inventory, built, health, kind)

    async def publish_health(self, health: dict[str, Health], *,
                             refresh_holds: bool) -> Published:
        """The link fast path (or a retry of pod resources or CDI): the last scan's pools
        with new link health; ``refresh_holds``: ask the kubelet what pods hold first."""
        return await self._publish(self.inventory, with_health(self.built, health), health,
                                   PassKind.HEALTH, refresh_holds=refresh_holds)

    def _build(self, inventory: Inventory, health: dict[str, Health]) -> dict[str, ResourcePool]:
        """The pools of the config (DRA pools under their own keys)."""
        return keyed_by_mode(build_pools(inventory, self._config().resources,
                                         default_prefix=self._settings.resource_prefix,
                                         health=health), self._settings.dra)

    async def _publish(self, inventory: Inventory, built: dict[str, ResourcePool],
                       health: dict[str, Health], kind: PassKind, *,
                       refresh_holds: bool = False) -> Published:
        """Decide (off the loop after a scan) and carry out one publication."""
        if self._host_ids[0] is not inventory:
            self._host_ids = (inventory, frozenset(inventory.functions.keys()
                                                   | inventory.aux.keys()))
        host = HostView(self._host_ids[1], health)
        off_loop = kind is not PassKind.HEALTH
        last = self.last
        retry_at = None
        if kind is PassKind.FIRST:
            self._adopt_recent_allocations()
            await self._holds.first_answer()
        elif refresh_holds or (
                off_loop and await _pure(off_loop, holds_matter, last.retained, built, host,
                                         last.retention)):
            # ask the kubelet what pods hold before anything could move
            retry_at = await self._refresh_holds()
        changes_before = self._hold_changes()
        faulty = frozenset(self._outputs.cdi_missing)
        planned = await _pure(off_loop, plan, last, built, host, self._held(), kind, faulty)
        if self._hold_changes() != changes_before:
            # an Allocate or a claim came in meanwhile: its hold counts (decided here)
            planned = plan(last, built, host, self._held(), kind, faulty)
        log_retention(planned.retained.notes)
        plugin_pools = device_plugin_pools(planned.retained.pools)
        if planned.changed:
            owned = self._dra.device_info_files() if self._dra is not None else frozenset()
            self._outputs.pools_changed(device_plugin_pools(last.retained), plugin_pools,
                                        inventory.facts, first=kind is PassKind.FIRST,
                                        dra_owned=owned)
        elif self._outputs.cdi_pending:
            self._outputs.retry(plugin_pools, inventory.facts)
        if self._outputs.cdi_missing != faulty:
            planned = planned.with_faulty(frozenset(self._outputs.cdi_missing))
        self.last = planned.publication
        self.built, self.inventory = built, inventory
        self.passes += kind is not PassKind.HEALTH
        self.publications += 1
        self._endpoints.publish(planned.pools, planned.changes)
        if self._dra is not None:
            self._dra.update(dra_pools(planned.retained.pools), inventory.facts)
        return Published(planned.changes, retry_at)

    async def _refresh_holds(self) -> float | None:
        """Ask the pod resources API what pods hold (and, while the kubelet's checkpoint
        lists grants the answer lacks, ask the kubelet to rewrite it: a live endpoint's list
        sent again, else a stand-in endpoint's empty list); after a failure, when its
        back-off ends (None: answered)."""
        await self._holds.refresh()
        if self._holds.rewrite_due():  # its file still lists grants its answer lacks
            awaiting = self._holds.awaiting_rewrite()
            resent = self._endpoints.resend(name for name, _ in awaiting)
            if resent is None:  # no endpoint streams (every pool served through DRA)
                resent = self._stand_in(awaiting)
            if resent is not None:
                self._holds.rewrite_asked()
        return self._holds.retry_at

    def _adopt_recent_allocations(self) -> None:
        """Hold what a previous process allocated in the last grace seconds (its admission
        may still be waiting on another plugin): the allocation log tells."""
        owned = self._dra.device_info_files() if self._dra is not None else frozenset()
        self._holds.adopt(self._outputs.recent_allocations(self._holds.grace, skip=owned))

    def _stand_in(self, awaiting: frozenset[tuple[str, str]]) -> str | None:
        """Open a stand-in endpoint for the awaiting grants of this host's devices, under a
        DRA pool's resource (:func:`standin_resource`), unless one for the same grants was
        opened within the stand-in back-off; the resource, or None when none was opened."""
        mine = frozenset(g for g in awaiting if g[1] in self._host_ids[1])
        dra = dra_pools(self.built)
        served = device_plugin_pools(self.built).keys() | self._endpoints.endpoints.keys()
        name = standin_resource(mine, self._host_ids[1], dra, served)
        now = time.monotonic()
        if name is None or not self._standins.due(mine, now):
            return None
        opened = self._endpoints.stand_in(dra[name], standin_reason(mine))
        if opened is not None:
            self._standins.asked(mine, now)
        return opened

    def _held(self) -> Holds:
        """What pods hold (pod resources and this process's allocations) and what DRA
        claims hold (prepared, by their DRA pool's key; left by another driver)."""
        held = self._holds.current()
        left = self._left.holds()
        claims = self._dra.holds() if self._dra is not None else {}
        return {**held, **claims, **left} if claims or left else held

    def _hold_changes(self) -> tuple[int, int]:
        """Changes a decision made off the loop may have missed (Allocates, claims)."""
        return self._holds.allocations, self._dra.claim_changes if self._dra is not None else 0


async def _pure(off_loop: bool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread (``off_loop``) or right here."""
    return await asyncio.to_thread(fn, *args) if off_loop else fn(*args)


__all__ = ["PoolPublisher", "Published"]
