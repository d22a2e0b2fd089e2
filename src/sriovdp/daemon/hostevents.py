"""HostEvents: the host's own signals — netlink link state and kernel uevents — turned into
"rescan" and "re-derive health" wake-ups for the reconciler.

Both sources start after the first publication (importing pyroute2 and dumping every link
would delay the sockets). A source that cannot start at all is logged and left off (the
periodic resync still finds host changes); one that fails later is restarted by the
supervisor, takes a fresh snapshot and asks for a rescan, since changes may have been missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sriovdp.daemon.supervisor import Ready, Supervisor
from sriovdp.errors import HostError
from sriovdp.host.links import LinkSource
from sriovdp.host.uevents import Uevents
from sriovdp.model.devices import Inventory
from sriovdp.model.health import Health, LinkChange, derive_health

log = logging.getLogger("sriovdp.daemon")


class HostEvents:
    """Follows link and uevent sources; calls ``rescan(reason)`` or ``health()``.

    Args:
        links: link-state source (None: every device Healthy).
        uevents: kernel uevents (None: periodic resync only).
        rescan: asks the reconciler for a rescan.
        health: asks the reconciler to re-derive health on the last scan.
        counted: called for every link change (metrics).
    """

    def __init__(self, links: LinkSource | None, uevents: Uevents | None, *,
                 rescan: Callable[[str], None], health: Callable[[], None],
                 counted: Callable[[], None] = lambda: None) -> None:
        self.links = links
        self.uevents = uevents
        self._rescan = rescan
        self._health = health
        self._counted = counted
        self.netdev_names: frozenset[str] = frozenset()
        """Netdevs of the last scan (a link of ours vanishing means the host changed)."""
        self._seen: set[str] = set()
        self._following = False  # the link source is following events now
        self._known = False  # a link snapshot was taken (kept while restarting)

    def link_health(self, inventory: Inventory) -> dict[str, Health]:
        """Health from the latest link snapshot (kept while the source restarts)."""
        if self.links is None or not self._known:
            return {}
        return derive_health(inventory, self.links.snapshot())

    async def start(self, supervisor: Supervisor, *, resync_interval: float) -> None:
        links, uevents = self.links, self.uevents
        if links is not None:
            try:
                await links.start()
            except Exception as exc:  # noqa: BLE001 - any failure: run without link health
                log.warning("link health disabled: cannot read netlink link state: %s", exc)
                self.links = None
            else:
                self._snapshot_taken(links)
                supervisor.start("links", self._follow_links)
        if uevents is not None:
            try:
                await uevents.start()
            except HostError as exc:
                log.warning("no kernel uevents (%s): host changes are found by the periodic "
                            "resync every %.0f s", exc, resync_interval)
                self.uevents = None
            else:
                supervisor.start("uevents", self._follow_uevents)

    async def close(self) -> None:
        if self.links is not None:
            await self.links.close()
        if self.uevents is not None:
            await self.uevents.close()

    def _snapshot_taken(self, links: LinkSource) -> None:
        self._following = self._known = True
        self._seen = set(links.snapshot())
        self._health()

    async def _follow_links(self, ready: Ready) -> None:
        links = self.links
        assert links is not None
        if not self._following:  # restarted after a failure
            await links.close()
            await links.start()
            self._snapshot_taken(links)
            self._rescan("link source restarted")
        ready()
        try:
            async for change in links.events():
                self._link_changed(change)
        finally:
            self._following = False

    def _link_changed(self, change: LinkChange) -> None:
        # A carrier/operstate change of a link already seen only needs health re-derived on
        # the current inventory (fast path, no rescan). A link appearing (a new VF netdev),
        # one of our netdevs vanishing (moved into a pod, unbound) or lost events may mean
        # the host changed: rescan.
        self._counted()
        if change.resync:
            self._seen = set(self.links.snapshot()) if self.links else set()
            self._rescan("link events lost (resync)")
        elif change.state is None:
            self._seen.discard(change.ifname)
            if change.ifname in self.netdev_names:
                self._rescan(f"netdev {change.ifname} gone")
        elif change.ifname not in self._seen:
            self._seen.add(change.ifname)
            self._rescan(f"netdev {change.ifname} appeared")
        self._health()

    async def _follow_uevents(self, ready: Ready) -> None:
        uevents = self.uevents
        assert uevents is not None
        if not uevents.running:  # restarted after a failure
            await uevents.close()
            await uevents.start()
            self._rescan("uevent source restarted")
        ready()
        async for event in uevents.events():
            if event.relevant:
                self._rescan(f"uevent {event.action} {event.subsystem} {event.devpath}")
