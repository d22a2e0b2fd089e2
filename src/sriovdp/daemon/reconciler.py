"""The reconciler: the daemon's loop, turning triggers into one publication.

Every publication goes build → retain → diff → publish: the host scan (or, for a link
change, the last scan with new link health) builds the pools
(:func:`~sriovdp.model.pools.build_pools`), :func:`~sriovdp.model.retention.retain` decides
what the kubelet keeps seeing (held and vanished devices), :func:`~sriovdp.model.diff.diff`
finds what changed and the :class:`EndpointSet` publishes it. Triggers (uevents, link
changes, kubelet socket events, a config reload, the periodic resync) only wake the loop;
several arriving together cause one pass.

Collaborators, each owning one concern: :class:`HostScanner` (scan thread, fingerprint,
DDP), :class:`ConfigSource` (reload, last good config), :class:`HoldTracker` (what pods
hold), :class:`EndpointSet` (endpoint lifecycle), :class:`Outputs` (device-info and CDI
files), :class:`Supervisor` (every background task).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sriovdp.daemon.configsource import ConfigSource
from sriovdp.daemon.configwatch import watch_config_file
from sriovdp.daemon.endpoints import EndpointSet
from sriovdp.daemon.holds import HoldTracker
from sriovdp.daemon.http import routes, start_http
from sriovdp.daemon.metrics import DaemonMetrics
from sriovdp.daemon.outputs import Outputs
from sriovdp.daemon.scanner import FunctionScanner, HostScanner, Scanner
from sriovdp.daemon.settings import Settings
from sriovdp.daemon.status import Status
from sriovdp.daemon.supervisor import Ready, Supervisor
from sriovdp.errors import HostError
from sriovdp.host.ddp import DdpReader
from sriovdp.host.links import LinkSource
from sriovdp.host.uevents import Uevents
from sriovdp.kubelet.endpoint import KubeletDirs, PluginEndpoint
from sriovdp.kubelet.podresources import PodResources, PodResourcesClient
from sriovdp.kubelet.watch import watch_socket_dirs
from sriovdp.model.config import Config
from sriovdp.model.devices import HostFacts, Inventory
from sriovdp.model.diff import diff
from sriovdp.model.health import Health, LinkChange, derive_health
from sriovdp.model.pools import (
    ResourcePool,
    build_pools,
    explain,
    nearest_misses,
    unmatched_identifiers,
    with_faulty_pools,
    with_health,
)
from sriovdp.model.retention import (
    HostView,
    PassKind,
    RetentionState,
    holds_matter,
    retain,
)
from sriovdp.model.settle import Settling, same_shape, settle, signs_of_change

log = logging.getLogger("sriovdp.daemon")


@dataclass(slots=True)
class Triggers:
    """What the next pass must do; set by events, taken (and cleared) by the loop."""

    rescan: bool = True
    periodic: bool = False
    health: bool = False
    holds: bool = False
    outputs: bool = False

    def take(self) -> Triggers:
        taken = Triggers(self.rescan, self.periodic, self.health, self.holds, self.outputs)
        self.rescan = self.periodic = self.health = self.holds = self.outputs = False
        return taken


class Reconciler:
    """Runs every pool endpoint and keeps them in step with the host, the config and the
    pods' holds.

    Args:
        settings: resolved command-line settings.
        config: a valid config (the caller parsed it; a bad one never gets here).
        scanner: the host scan port (default: sysfs); a plain ``scan(host)`` function is
            accepted too.
        links: link-state source for device health (None: every device Healthy).
        uevents: kernel uevents that trigger rescans (None: periodic resync only).
        pod_resources: what pods hold (default: the kubelet's pod resources socket).
        ddp: the DDP profile reader (default: ``ddptool`` on ``PATH``).
    """

    def __init__(
        self,
        settings: Settings,
        config: Config,
        *,
        scanner: Scanner | Callable[..., Inventory] | None = None,
        links: LinkSource | None = None,
        uevents: Uevents | None = None,
        pod_resources: PodResources | None = None,
        ddp: DdpReader | None = None,
    ) -> None:
        self.settings = settings
        self.dirs = KubeletDirs.detect(settings.device_plugin_dir, settings.plugins_registry_dir)
        if scanner is not None and not hasattr(scanner, "fingerprint"):
            scanner = FunctionScanner(scanner)  # type: ignore[arg-type]
        self.scanner = HostScanner(settings.host, scanner, ddp)  # type: ignore[arg-type]
        self.links = links
        self.uevents = uevents
        self.metrics = DaemonMetrics()
        self.metrics.bind(self.status)
        self.config_source = ConfigSource(settings, config, self.dirs.socket_dir,
                                          on_applied=self.trigger,
                                          reloads=self.metrics.reloads)
        self.holds = HoldTracker(pod_resources if pod_resources is not None
                                 else PodResourcesClient(settings.pod_resources_socket))
        self.outputs = Outputs(settings)
        self.supervisor = Supervisor()
        self._endpoints = EndpointSet(self.dirs, self.supervisor, self.facts,
                                      on_allocate=self.allocated, cdi=settings.use_cdi)
        self.inventory = Inventory()
        self.pools: dict[str, ResourcePool] = {}
        """What the kubelet is told (pools whose CDI spec is missing: Unhealthy)."""
        self._retained: dict[str, ResourcePool] = {}
        self._built: dict[str, ResourcePool] = {}
        self._retention = RetentionState()
        self._triggers = Triggers()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._seen_links: set[str] = set()
        self._netdev_names: set[str] = set()
        self._host_ids: tuple[Inventory | None, frozenset[str]] = (None, frozenset())
        self._holds_retry: asyncio.TimerHandle | None = None
        self._outputs_retry: asyncio.TimerHandle | None = None
        self._outputs_backoff = 1.0
        self._settling = Settling()
        self._settle_timer: asyncio.TimerHandle | None = None
        self._links_up = False  # the link source is following events now
        self._links_known = False  # a link snapshot was taken (kept while restarting)
        self.passes = 0
        """Full passes published (scans)."""
        self.publications = 0
        """Publications of any kind (full passes and the link fast path)."""
        self.ready = asyncio.Event()
        """Set once the first pass is published."""

    # --- public controls --------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self.config_source.config

    @property
    def endpoints(self) -> dict[str, PluginEndpoint]:
        return self._endpoints.endpoints

    def trigger(self, reason: str) -> None:
        """Ask for a rescan of the host soon (coalesced with other triggers)."""
        log.debug("pass requested: %s", reason)
        self._triggers.rescan = True
        self._wake.set()

    def reload_config(self, reason: str) -> bool:
        """Re-read the config file; a changed file is parsed off the loop and applied if
        valid (else the last good config stays). True when a parse was queued."""
        return self.config_source.request(reason)

    def stop(self) -> None:
        """Begin the staged shutdown: endpoints stop, sockets are removed, the loop ends."""
        self._stop.set()
        self._wake.set()

    def facts(self) -> HostFacts:
        return self.inventory.facts

    def allocated(self, pool: ResourcePool, ids: list[str], ok: bool) -> None:
        """Hook of every Allocate container request: device-info files, metrics, holds."""
        if ok:
            self.outputs.allocated(pool, ids)
            self.metrics.allocations[pool.resource_name] += len(ids)
            self.holds.allocated(pool.resource_name, ids)
        else:
            self.metrics.allocate_errors[pool.resource_name] += 1

    def status(self) -> Status:
        """What ``/readyz`` and ``/metrics`` read."""
        return Status(started=self.ready.is_set(), pools=self.pools,
                      endpoints=self._endpoints.status(),
                      failures=dict(self.supervisor.failures),
                      problems=tuple(self.outputs.problems()) + self._scan_problem())

    def _scan_problem(self) -> tuple[str, ...]:
        since = self.scanner.stuck_since
        if since is None:
            return ()
        return (f"host scan stuck for {time.monotonic() - since:.0f} s",)

    @property
    def is_ready(self) -> bool:
        """First pass published, every pool registered and streaming, nothing failed."""
        return not self.status().not_ready()

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`. Sets :attr:`ready` once the first pass is published.

        Raises:
            HostError: the health or metrics address cannot be served.
        """
        log.info(
            "Using %s: sockets in %s",
            "Kubelet Plugin Registry Mode" if self.dirs.mode == "watcher"
            else "Deprecated Device Plugin Registry Path",
            self.dirs.socket_dir,
        )
        self.config_source.prime()
        self.dirs.socket_dir.mkdir(parents=True, exist_ok=True)
        servers = await self._bind_http()
        try:
            async with self.supervisor as supervisor:
                self._start_helpers(supervisor, servers)
                # placeholders (no devices): the first pass is diffed against them, and
                # retention gets what pods hold from the kubelet, not from these
                self.pools = self._retained = build_pools(
                    Inventory(), self.config.resources,
                    default_prefix=self.settings.resource_prefix)
                self._endpoints.open_early(self.pools)
                try:
                    await self._loop()
                finally:
                    await self._endpoints.stop_all()
        except BaseExceptionGroup as group:  # one supervised failure cannot get here; be safe
            raise group.exceptions[0] from None
        finally:
            for timer in (self._holds_retry, self._outputs_retry, self._settle_timer):
                if timer is not None:
                    timer.cancel()
            for server in servers.values():
                server.close()
            if self.links is not None:
                await self.links.close()
            if self.uevents is not None:
                await self.uevents.close()
            self.scanner.close()

    async def _bind_http(self) -> dict[str, asyncio.Server]:
        servers: dict[str, asyncio.Server] = {}
        table = routes(self.settings.health_address, self.settings.metrics_address,
                       self.status, self.metrics.render)
        try:
            for address, handlers in table.items():
                servers[address] = await start_http(address, handlers)
        except OSError as exc:
            for server in servers.values():
                server.close()
            raise HostError(f"cannot serve health/metrics on {address}: "
                            f"{exc.strerror or exc}") from exc
        return servers

    def _start_helpers(self, supervisor: Supervisor, servers: dict[str, asyncio.Server]) -> None:
        supervisor.start("socket watch", self._watch_sockets)
        if self.settings.watch_config:
            supervisor.start("config watch", self._watch_config)
        supervisor.start("config reload", self.config_source.run)
        for address, server in servers.items():
            async def serve(ready: Ready, server: asyncio.Server = server) -> None:
                ready()
                await server.serve_forever()

            supervisor.start(f"http {address}", serve)

    async def _watch_sockets(self, ready: Ready) -> None:
        ready()
        await watch_socket_dirs(self._socket_dirs(), self._endpoints.socket_event)

    async def _watch_config(self, ready: Ready) -> None:
        ready()
        await watch_config_file(self.settings.config_file, self.config_source.request_soon)

    def _socket_dirs(self) -> list[Path]:
        dirs = [self.dirs.socket_dir]
        if self.dirs.device_plugin_dir != self.dirs.socket_dir:
            dirs.append(self.dirs.device_plugin_dir)
        return dirs

    async def _loop(self) -> None:
        first = True
        while not self._stop.is_set():
            self._wake.clear()
            todo = self._triggers.take()
            if todo.rescan or first:
                kind = (PassKind.FIRST if first else
                        PassKind.PERIODIC if todo.periodic else PassKind.EVENT)
                if not await self._until_stopped(self._full_pass(kind)):
                    break
            elif todo.health or todo.holds or todo.outputs:
                await self._fast_pass(refresh_holds=todo.holds)
            if first and self.passes:
                first = False
                self.ready.set()
                # link state and uevents start once every pool is published (importing
                # pyroute2 and dumping links would delay the sockets)
                await self._start_sources()
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.resync_interval)
            except TimeoutError:
                self._triggers.rescan = self._triggers.periodic = True

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` unless :meth:`stop` comes first (a scan stuck on a wedged device or a
        hanging ddptool must not hold up SIGTERM); False when stopped."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    # --- passes -----------------------------------------------------------------------------

    async def _full_pass(self, kind: PassKind) -> None:
        """Scan the host (in a worker thread), build, retain, publish."""
        started = time.perf_counter()
        try:
            inventory, fresh = await self.scanner.scan(
                self.config.resources, periodic=kind is PassKind.PERIODIC,
                deadline=self.settings.scan_deadline)
        except Exception as exc:  # noqa: BLE001 - a broken host read must not kill the daemon
            log.error("host scan failed, keeping the previous view: %s", exc)
            return
        if kind is PassKind.FIRST:
            inventory = await self._first_settled(inventory)
        if (not fresh and kind is not PassKind.FIRST and not self._retention.holding
                and not self._settling.changes):
            return  # a resync found nothing new (fingerprint unchanged): nothing to publish
        settled = settle(None if kind is PassKind.FIRST else self.inventory, inventory,
                         time.monotonic(), self.settings.settle_window, self._settling)
        self._settling, inventory = settled.state, settled.inventory
        self._schedule_settle_check(settled.next_check)
        for skipped in inventory.skipped:
            log.log(logging.INFO if kind is PassKind.FIRST else logging.DEBUG,
                    "skipping %s: %s", skipped.address, skipped.reason,
                    extra={"pci": skipped.address})
        fns = inventory.functions.values()
        self._netdev_names = {n for f in fns for n in f.netdevs} | {
            f.pf_netdev for f in fns if f.pf_netdev}
        health = self._link_health(inventory)
        built = build_pools(inventory, self.config.resources,
                            default_prefix=self.settings.resource_prefix, health=health)
        await self._publish(inventory, built, health, kind)
        self.metrics.scan_duration.observe(time.perf_counter() - started)
        log.debug("pass %d took %.1f ms", self.passes, (time.perf_counter() - started) * 1e3)

    async def _first_settled(self, inventory: Inventory, *, attempts: int = 5) -> Inventory:
        """Before the first publication: while the host looks mid-change (a function with no
        driver, a PF missing VFs), rescan after the settle window until two scans agree."""
        window = self.settings.settle_window
        for _ in range(attempts):
            signs = signs_of_change(inventory)
            if window <= 0 or not signs:
                return inventory
            log.info("host may be changing (%s): rescanning in %.1f s before the first "
                     "publication", ", ".join(signs[:3]), window)
            await asyncio.sleep(window)
            again, _ = await self.scanner.scan(self.config.resources, periodic=False,
                                               deadline=self.settings.scan_deadline)
            if same_shape(inventory, again):
                return again
            inventory = again
        return inventory

    async def _fast_pass(self, *, refresh_holds: bool) -> None:
        """A link change or a pod resources retry: the last scan, new link health."""
        if not self.passes:
            return
        health = self._link_health(self.inventory)
        await self._publish(self.inventory, with_health(self._built, health), health,
                            PassKind.HEALTH, refresh_holds=refresh_holds)

    def _link_health(self, inventory: Inventory) -> dict[str, Health]:
        if self.links is None or not self._links_known:
            return {}
        return derive_health(inventory, self.links.snapshot())

    async def _publish(self, inventory: Inventory, built: dict[str, ResourcePool],
                       health: dict[str, Health], kind: PassKind, *,
                       refresh_holds: bool = False) -> None:
        if self._host_ids[0] is not inventory:
            self._host_ids = (inventory, frozenset(inventory.functions.keys()
                                                   | inventory.aux.keys()))
        host = HostView(self._host_ids[1], health)
        if refresh_holds or kind is PassKind.FIRST or (
                kind is not PassKind.HEALTH and holds_matter(self._retained, built, host,
                                                             self._retention)):
            # ask the kubelet what pods hold before anything could move (or, at start,
            # before the first publication)
            await self.holds.refresh()
            self._schedule_holds_retry()
        retained = retain(self._retained, built, host, self.holds.current(), kind,
                          self._retention)
        self._log_retention(retained.notes)
        self._retention = retained.state
        pools = retained.pools
        first = kind is PassKind.FIRST
        if first or not diff(self._retained, pools).empty:
            self.outputs.pools_changed(self._retained, pools, inventory.facts, first=first)
        elif self.outputs.cdi_pending:
            self.outputs.retry(pools, inventory.facts)
        published = with_faulty_pools(pools, self.outputs.cdi_missing)
        self._schedule_outputs_retry()
        changes = diff(self.pools, published)
        self.pools, self._retained = published, pools
        self._built, self.inventory = built, inventory
        if kind is not PassKind.HEALTH:
            self.passes += 1
        self.publications += 1
        self._endpoints.publish(published, changes)
        if first or changes.added:
            # after the new endpoints' first step (they bind their sockets right away)
            asyncio.get_running_loop().call_soon(self._log_summary, inventory)

    def _schedule_settle_check(self, at: float | None) -> None:
        """Rescan when the earliest function still inside its settle window settles."""
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        if at is None:
            return

        def due() -> None:
            self._settle_timer = None
            self.trigger("settle window over")

        self._settle_timer = asyncio.get_running_loop().call_later(
            max(0.0, at - time.monotonic()) + 0.01, due)

    def _schedule_outputs_retry(self) -> None:
        """A CDI spec that could not be written is retried soon (1 s doubling to 30 s),
        without waiting for a host change."""
        if not self.outputs.cdi_missing:
            self._outputs_backoff = 1.0
            return
        if self._outputs_retry is not None:
            return

        def due() -> None:
            self._outputs_retry = None
            self._triggers.outputs = True
            self._wake.set()

        self._outputs_retry = asyncio.get_running_loop().call_later(self._outputs_backoff, due)
        self._outputs_backoff = min(self._outputs_backoff * 2, 30.0)

    def _schedule_holds_retry(self) -> None:
        retry_at = self.holds.retry_at
        if retry_at is None or self._holds_retry is not None:
            return
        delay = max(0.0, retry_at - time.monotonic())

        def due() -> None:
            self._holds_retry = None
            if self._retention.holding:
                self._triggers.holds = True
                self._wake.set()

        self._holds_retry = asyncio.get_running_loop().call_later(delay, due)

    def _log_retention(self, notes: tuple[tuple[str, ...], ...]) -> None:
        for note in notes:
            what, pool, dev = (*note, "")[:3]
            extra = {"pci": dev, "resource": pool}
            if what == "kept":
                log.warning("%s is held by a pod through %s: offered only there (not by %s) "
                            "until it is released", dev, pool, note[3] or "any other pool",
                            extra=extra)
            elif what == "withheld":
                log.warning("%s is held by a pod through %s, which is not configured: no "
                            "pool offers it until it is released", dev, pool, extra=extra)
            elif what == "released":
                log.info("%s was released: it follows the config again", dev, extra=extra)
            elif what == "vanished":
                log.warning("%s vanished from the host; reported Unhealthy", dev, extra=extra)
            elif what == "dropped":
                log.info("%s is gone and not held by a pod; removed from %s", dev, pool,
                         extra=extra)
            elif what == "draining":
                log.warning("%s is no longer configured but pods hold its devices: its "
                            "endpoint stays until they are released", pool,
                            extra={"resource": pool})

    # --- link and uevent sources ------------------------------------------------------------

    async def _start_sources(self) -> None:
        links, uevents = self.links, self.uevents
        if links is not None:
            try:
                await links.start()
            except Exception as exc:  # noqa: BLE001 - any failure: run without link health
                log.warning("link health disabled: cannot read netlink link state: %s", exc)
                self.links = None
            else:
                self._links_ready(links)
                self.supervisor.start("links", self._follow_links)
        if uevents is not None:
            try:
                await uevents.start()
            except HostError as exc:
                log.warning("no kernel uevents (%s): host changes are found by the periodic "
                            "resync every %.0f s", exc, self.settings.resync_interval)
                self.uevents = None
            else:
                self.supervisor.start("uevents", self._follow_uevents)

    def _links_ready(self, links: LinkSource) -> None:
        self._links_up = self._links_known = True
        self._seen_links = set(links.snapshot())
        self._triggers.health = True
        self._wake.set()

    async def _follow_links(self, ready: Ready) -> None:
        """Follow link changes; after a failure, start the source again (a fresh snapshot)
        and rescan, since changes may have been missed meanwhile."""
        links = self.links
        assert links is not None
        if not self._links_up:
            await links.close()
            await links.start()
            self._links_ready(links)
            self.trigger("link source restarted")
        ready()
        try:
            async for change in links.events():
                self._link_changed(change)
        finally:
            self._links_up = False

    def _link_changed(self, change: LinkChange) -> None:
        # A carrier/operstate change of a link already seen only needs health re-derived on
        # the current inventory (fast path, no rescan). A link appearing (a new VF netdev),
        # one of our netdevs vanishing (moved into a pod, unbound) or lost events may mean
        # the host changed: rescan.
        self.metrics.link_events += 1
        if change.resync:
            self._seen_links = set(self.links.snapshot()) if self.links else set()
            self._triggers.rescan = True
        elif change.state is None:
            self._seen_links.discard(change.ifname)
            if change.ifname in self._netdev_names:
                self._triggers.rescan = True
        elif change.ifname not in self._seen_links:
            self._seen_links.add(change.ifname)
            self._triggers.rescan = True
        self._triggers.health = True
        self._wake.set()

    async def _follow_uevents(self, ready: Ready) -> None:
        uevents = self.uevents
        assert uevents is not None
        if not uevents.running:
            await uevents.close()
            await uevents.start()
            self.trigger("uevent source restarted")
        ready()
        async for event in uevents.events():
            if event.relevant:
                self.trigger(f"uevent {event.action} {event.subsystem} {event.devpath}")

    # --- start-up report --------------------------------------------------------------------

    def _log_summary(self, inventory: Inventory) -> None:
        empty = [name for name, pool in self.pools.items() if not pool.devices]
        verdicts = explain(inventory, self.config.resources, self.pools,
                           default_prefix=self.settings.resource_prefix, only=empty)
        for name, pool in self.pools.items():
            socket = self.dirs.socket_dir / pool.socket_name
            log.info("pool %s: %d devices, socket %s", name, len(pool.devices), socket,
                     extra={"resource": name})
            if not pool.devices and name in verdicts:
                misses = nearest_misses(verdicts[name])
                hint = ", ".join(f"{v.address} ({v.reason})" for v in misses[:5]) or \
                    f"no {pool.config.kind} candidate on this host"
                log.warning("pool %s is empty; nearest candidates: %s", name, hint,
                            extra={"resource": name})
        for path, value in unmatched_identifiers(inventory, self.config.resources):
            log.warning("%s: %r matches no device on this host", path, value)


Daemon = Reconciler
"""The name the CLI, the demo and the tests use."""

__all__ = ["Daemon", "Reconciler", "Triggers"]
