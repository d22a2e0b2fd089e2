"""The reconciler: the daemon's loop, turning triggers into passes, one at a time.

A full pass takes a settled scan of the host (:class:`SettledScans`), derives link health
(:class:`HostEvents`) and hands both to the :class:`PoolPublisher` (build → retain → diff
→ endpoints, DRA side, files); a link change or a retry publishes the last scan again with
new health. Triggers (uevents, link changes, kubelet socket events, a config reload, the
periodic resync, the timers of retries and settle windows: :class:`Wakeups`) only wake the
loop; several arriving together cause one pass.

Collaborators, one concern each: :class:`HostScanner` (scan thread, fingerprint, DDP,
deadline) behind :class:`SettledScans` (settle window), :class:`ConfigSource` (reload, last
good config), :class:`HoldTracker` (what pods hold), :class:`HostEvents` (link state,
uevents), :class:`EndpointSet` (endpoint lifecycle), :class:`Outputs` (device-info and CDI
files), :class:`DraSide` (with ``--dra``: the kubelet DRA plugin and the ResourceSlices),
:class:`PoolPublisher` (one publication), :class:`Wakeups` (triggers and their timers),
:class:`Supervisor` (every background task).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sriovdp.daemon.configsource import ConfigSource
from sriovdp.daemon.configwatch import watch_config_file
from sriovdp.daemon.dra import DraSide
from sriovdp.daemon.endpoints import EndpointSet
from sriovdp.daemon.holds import HoldTracker
from sriovdp.daemon.hostevents import HostEvents
from sriovdp.daemon.http import routes, serve_all
from sriovdp.daemon.leftclaims import LeftClaims
from sriovdp.daemon.metrics import DaemonMetrics
from sriovdp.daemon.outputs import Outputs
from sriovdp.daemon.publisher import PoolPublisher, Published
from sriovdp.daemon.report import log_summary
from sriovdp.daemon.scanner import FunctionScanner, HostScanner, Scanner
from sriovdp.daemon.settings import Settings
from sriovdp.daemon.settling import SettledScans
from sriovdp.daemon.status import DraStatus, HoldStatus, Status
from sriovdp.daemon.supervisor import Ready, Supervisor
from sriovdp.daemon.triggers import Wakeups
from sriovdp.host.ddp import DdpReader
from sriovdp.host.links import LinkSource
from sriovdp.host.uevents import Uevents
from sriovdp.kubelet.checkpoint import CHECKPOINT_NAME, KubeletCheckpoint
from sriovdp.kubelet.dra.apiserver import DraApis, connect
from sriovdp.kubelet.endpoint import KubeletDirs, PluginEndpoint
from sriovdp.kubelet.podresources import PodResources, PodResourcesClient
from sriovdp.kubelet.watch import watch_socket_dirs
from sriovdp.model.config import Config
from sriovdp.model.devices import HostFacts, Inventory
from sriovdp.model.pools import ResourcePool
from sriovdp.model.retention import PassKind, RetentionState

log = logging.getLogger("sriovdp.daemon")


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
        freeze_gc: after the first publication move every object alive into the garbage
            collector's permanent generation (``gc.freeze``), so a full collection walks
            only what came later (the daemon process does this; tests sharing a process
            do not).
        dra_apis: the apiserver ports of DRA mode (``settings.dra``; default: the official
            client on ``settings.kubeconfig``).

    Raises:
        HostError: DRA mode without a usable apiserver config or with an unreadable claim
            checkpoint.
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
        freeze_gc: bool = False,
        dra_apis: DraApis | None = None,
    ) -> None:
        self.settings = settings
        self._freeze_gc = freeze_gc
        self.dirs = KubeletDirs.detect(settings.device_plugin_dir, settings.plugins_registry_dir,
                                       settings.kubelet_root_dir)
        port = scanner if scanner is None or isinstance(scanner, Scanner) else \
            FunctionScanner(scanner)
        self.scanner = HostScanner(settings.host, port, ddp)
        self._scans = SettledScans(self.scanner, lambda: self.config.resources,
                                   window=settings.settle_window,
                                   deadline=settings.scan_deadline)
        self.metrics = DaemonMetrics()
        self._wakeups = Wakeups()
        self.events = HostEvents(links, uevents, rescan=self.trigger,
                                 health=self._wakeups.health, counted=self._link_event)
        self.metrics.bind(self.status)
        self.config_source = ConfigSource(settings, config, self.dirs.socket_dir,
                                          on_applied=self.trigger, reloads=self.metrics.reloads)
        self.holds = HoldTracker(pod_resources if pod_resources is not None
                                 else PodResourcesClient(settings.pod_resources_socket,
                                                         own_pod=settings.own_pod),
                                 kubelet_socket=settings.device_plugin_dir / "kubelet.sock",
                                 pod_resources_socket=settings.pod_resources_socket,
                                 kubelet_settle=settings.kubelet_settle,
                                 checkpoint=KubeletCheckpoint(settings.device_plugin_dir
                                                              / CHECKPOINT_NAME))
        self.outputs = Outputs(settings)
        self.supervisor = Supervisor()
        self._endpoints = EndpointSet(self.dirs, self.supervisor, self.facts,
                                      on_allocate=self.allocated, cdi=settings.use_cdi)
        self.dra: DraSide | None = None
        if settings.dra is not None:
            self.dra = DraSide(settings, dra_apis or connect(settings.kubeconfig),
                               on_claims=self._wakeups.claims,
                               instance=self._endpoints.instance)
        left = LeftClaims(settings.plugins_dir,
                          self.dra.checkpoint.path if self.dra is not None else None,
                          cdi_dir=settings.cdi_dir)
        left.refresh()
        self.publisher = PoolPublisher(settings, lambda: self.config, self._endpoints,
                                       self.outputs, holds=self.holds, left=left, dra=self.dra)
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once the first pass is published."""

    # --- public controls --------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self.config_source.config

    @property
    def retention(self) -> RetentionState:
        """What retention keeps (held devices kept in their granting pool, vanished ones)."""
        return self.publisher.retention

    @property
    def pools(self) -> dict[str, ResourcePool]:
        """What the kubelet's device plugin endpoints are told (pools whose CDI spec is
        missing: Unhealthy)."""
        return self.publisher.pools

    @property
    def inventory(self) -> Inventory:
        """The last scan published."""
        return self.publisher.inventory

    @property
    def passes(self) -> int:
        """Full passes published (scans)."""
        return self.publisher.passes

    @property
    def publications(self) -> int:
        """Publications of any kind (full passes and the link fast path)."""
        return self.publisher.publications

    @property
    def endpoints(self) -> dict[str, PluginEndpoint]:
        return self._endpoints.endpoints

    def trigger(self, reason: str) -> None:
        """Ask for a rescan of the host soon (coalesced with other triggers)."""
        self._wakeups.rescan(reason)

    def reload_config(self, reason: str) -> bool:
        """Re-read the config file; a changed file is parsed off the loop and applied if
        valid (else the last good config stays). True when a parse was queued."""
        return self.config_source.request(reason)

    def stop(self) -> None:
        """Begin the staged shutdown: endpoints stop, sockets are removed, the loop ends."""
        self._stop.set()
        self._wakeups.wake()

    def facts(self) -> HostFacts:
        return self.inventory.facts

    def allocated(self, pool: ResourcePool, ids: list[str], ok: bool) -> None:
        """Hook of every Allocate container request: device-info files, metrics, holds."""
        if ok:
            self.outputs.allocated(pool, ids)
            self.metrics.allocations[pool.resource_name] += len(ids)
            self.holds.allocated(pool.resource_name, ids)
            self._wakeups.own_allocation()
        else:
            self.metrics.allocate_errors[pool.resource_name] += 1

    def status(self) -> Status:
        """What ``/readyz`` and ``/metrics`` read."""
        problems = list(self.outputs.problems())
        since = self.scanner.stuck_since
        if since is not None:
            problems.append(f"host scan stuck for {time.monotonic() - since:.0f} s")
        if self._endpoints.waiting:
            problems.append(self._endpoints.waiting)
        if self.holds.waiting:
            problems.append(self.holds.waiting)
        dra = None
        if self.dra is not None:
            problems += self.dra.problems()
            dra = DraStatus(publish_errors=self.dra.slices.errors,
                            devices_published=self.dra.slices.devices_published,
                            prepared_claims=self.dra.prepared_claims)
        kept = self.retention
        holds = HoldStatus(kept=len(kept.kept), withheld=len(kept.withheld),
                           draining=len(kept.draining), vanished=len(kept.vanished),
                           pod_resources_errors=self.holds.failures)
        return Status(started=self.ready.is_set(), pools=self.pools,
                      endpoints=self._endpoints.status(),
                      failures=dict(self.supervisor.failures), problems=tuple(problems),
                      dra=dra, holds=holds, task_restarts=dict(self.supervisor.restarts),
                      dra_pools=self.dra.pools if self.dra is not None else {})

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
        if self.dirs.mode == "watcher":
            log.info("registering through the kubelet's plugin watcher: sockets in %s",
                     self.dirs.socket_dir)
        else:
            log.info("registering through %s (%s does not exist): sockets in %s",
                     self.dirs.device_plugin_dir / "kubelet.sock",
                     self.dirs.plugins_registry_dir, self.dirs.socket_dir)
        self.config_source.prime()
        self.dirs.socket_dir.mkdir(parents=True, exist_ok=True)
        servers = await serve_all(routes(self.settings.health_address,
                                         self.settings.metrics_address, self.status,
                                         self.metrics.render))
        try:
            async with self.supervisor as supervisor:
                self._start_helpers(supervisor, servers)
                if not await self._until_stopped(self._endpoints.own_node()):
                    return
                if self.dra is not None:  # a previous instance may have prepared claims since
                    self.dra.read_checkpoint()
                self.publisher.open_placeholders()
                try:
                    await self._loop()
                finally:
                    if self.dra is not None:  # before the instance lock is let go
                        await supervisor.cancel("dra plugin")
                    await self._endpoints.stop_all()
        except BaseExceptionGroup as group:  # supervised tasks never raise; be safe
            raise group.exceptions[0] from None
        finally:
            self._wakeups.cancel()
            for server in servers.values():
                server.close()
            await self.events.close()
            self.scanner.close()
            self.outputs.close()

    def _start_helpers(self, supervisor: Supervisor, servers: dict[str, asyncio.Server]) -> None:
        supervisor.start("socket watch", self._watch_sockets)
        if self.settings.watch_config:
            supervisor.start("config watch", self._watch_config)
        supervisor.start("config reload", self.config_source.run)
        if self.dra is not None:
            supervisor.start("dra plugin", self.dra.run_plugin)
            supervisor.start("dra publish", self.dra.slices.run)
            supervisor.start("dra socket watch", self.dra.watch_sockets)
        for address, server in servers.items():
            async def serve(ready: Ready, server: asyncio.Server = server) -> None:
                ready()
                await server.serve_forever()

            supervisor.start(f"http {address}", serve)

    async def _watch_sockets(self, ready: Ready) -> None:
        ready()
        dirs = [self.dirs.socket_dir]
        if self.dirs.device_plugin_dir != self.dirs.socket_dir:
            dirs.append(self.dirs.device_plugin_dir)
        await watch_socket_dirs(dirs, self._endpoints.socket_event)

    async def _watch_config(self, ready: Ready) -> None:
        ready()
        await watch_config_file(self.settings.config_file, self.config_source.request_soon)

    async def _loop(self) -> None:
        first = True
        while not self._stop.is_set():
            todo = self._wakeups.take()
            if todo.rescan or first:
                kind = (PassKind.FIRST if first else
                        PassKind.PERIODIC if todo.periodic else PassKind.EVENT)
                if not await self._until_stopped(self._full_pass(kind)):
                    break
            elif todo.health or todo.holds or todo.outputs or todo.claims:
                await self._fast_pass(refresh_holds=todo.holds)
            if first and self.passes:
                first = False
                self.ready.set()
                if self._freeze_gc:
                    # what start-up made (modules, gRPC, the first scan) lives on: out of the
                    # collector's reach, a full collection stops pausing RPCs for 30-55 ms
                    gc.freeze()
                await self.events.start(self.supervisor,
                                        resync_interval=self.settings.resync_interval)
            await self._wakeups.wait(self.settings.resync_interval)

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

    def _link_event(self) -> None:
        self.metrics.link_events += 1

    # --- passes -----------------------------------------------------------------------------

    async def _full_pass(self, kind: PassKind) -> None:
        """Scan the host (in a worker thread), settle, build, retain, publish."""
        started = time.perf_counter()
        try:
            inventory, fresh = await self._scans.scan(kind)
        except Exception as exc:  # noqa: BLE001 - a broken host read must not kill the daemon
            log.error("host scan failed, keeping the previous view: %s", exc)
            return
        if (not fresh and kind is not PassKind.FIRST and not self.retention.holding
                and not self._scans.settling):
            return  # a resync found nothing new (fingerprint unchanged): nothing to publish
        settled = self._scans.settle(None if kind is PassKind.FIRST else self.inventory,
                                     inventory)
        inventory = settled.inventory
        if settled.next_check is not None:
            self._wakeups.settle_window_ends(settled.next_check)
        for skipped in inventory.skipped:
            log.log(logging.INFO if kind is PassKind.FIRST else logging.DEBUG,
                    "skipping %s: %s", skipped.address, skipped.reason,
                    extra={"pci": skipped.address})
        self.events.netdev_names = inventory.netdev_names()
        health = self.events.link_health(inventory)
        self._published(await self.publisher.publish_scan(inventory, health, kind),
                        first=kind is PassKind.FIRST)
        self.metrics.scan_duration.observe(time.perf_counter() - started)
        log.debug("pass %d took %.1f ms", self.passes, (time.perf_counter() - started) * 1e3)

    async def _fast_pass(self, *, refresh_holds: bool) -> None:
        """A link change or a retry (pod resources, CDI): the last scan, new link health."""
        if not self.passes:
            return
        health = self.events.link_health(self.inventory)
        self._published(await self.publisher.publish_health(health, refresh_holds=refresh_holds),
                        first=False)

    def _published(self, published: Published, *, first: bool) -> None:
        """What follows a publication: the retries and polls it calls for, the summary."""
        if published.holds_retry_at is not None:
            self._wakeups.retry_holds(published.holds_retry_at,
                                      still=lambda: self.retention.holding)
        self._wakeups.retry_outputs(bool(self.outputs.cdi_missing))
        if self.retention.awaiting_release:
            self._wakeups.poll_holds()
        if self.holds.own_too_young():
            self._wakeups.own_allocation()
        if first or published.changes.added:
            # after the new endpoints' first step (they bind their sockets right away)
            asyncio.get_running_loop().call_soon(self._log_summary, self.inventory)

    def _log_summary(self, inventory: Inventory) -> None:
        log_summary(self.pools, inventory, self.config,
                    default_prefix=self.settings.resource_prefix,
                    socket_dir=self.dirs.socket_dir)


__all__ = ["Reconciler"]
