"""The daemon: one loop turning triggers into a fresh snapshot, a diff, and updates.

A pass scans the host into an immutable :class:`Inventory`, builds the pools from the current
config, diffs them against the previous pass and publishes: a new pool gets a
:class:`PluginEndpoint`, a changed pool pushes its new device list to every open ListAndWatch
stream, a pool no longer configured stops (its socket is removed). Triggers (kubelet socket
events, the periodic resync, an explicit :meth:`Daemon.trigger`) only wake the loop; several
arriving together cause one pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from sriovdp.daemon.configfile import load_config, read_config_bytes
from sriovdp.daemon.configwatch import watch_config_file
from sriovdp.daemon.http import parse_address, start_http
from sriovdp.daemon.metrics import DaemonMetrics
from sriovdp.daemon.outputs import Outputs
from sriovdp.daemon.settings import Settings
from sriovdp.errors import ConfigError, HostError
from sriovdp.host.ddp import fill_ddp_profiles_if_asked
from sriovdp.host.links import LinkSource
from sriovdp.host.sysfs import fingerprint, scan
from sriovdp.host.uevents import UeventSource
from sriovdp.kubelet.endpoint import KubeletDirs, PluginEndpoint
from sriovdp.kubelet.feed import LatestValue
from sriovdp.kubelet.podresources import assigned_devices
from sriovdp.kubelet.watch import watch_socket_dirs
from sriovdp.model.config import Config
from sriovdp.model.devices import HostFacts, Inventory
from sriovdp.model.diff import diff
from sriovdp.model.health import LinkChange, derive_health
from sriovdp.model.pools import (
    HEALTHY,
    UNHEALTHY,
    PoolDevice,
    ResourcePool,
    build_pools,
    explain,
    nearest_misses,
    unmatched_identifiers,
)

log = logging.getLogger("sriovdp.daemon")
T = TypeVar("T")


async def _in_daemon_thread(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn`` in a daemon thread: a read stuck in a wedged device's sysfs file then
    cannot keep the process from exiting on SIGTERM (an executor thread would)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def work() -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (fn(*args), None)
        except BaseException as exc:  # handed to the awaiting task
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(_settle, future, *outcome)

    threading.Thread(target=work, name="sriovdp-scan", daemon=True).start()
    return await future


def _settle(future: asyncio.Future[T], result: T | None, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class Daemon:
    """Runs every pool endpoint and keeps them in step with the host and the config.

    Args:
        settings: resolved command-line settings.
        config: a valid config (the caller parsed it; a bad one never gets here).
        scanner: ``scan`` by default; takes the host paths and returns an inventory.
        links: link-state source for device health (None: every device Healthy).
        uevents: kernel uevents that trigger rescans (None: periodic resync only).
    """

    def __init__(
        self,
        settings: Settings,
        config: Config,
        *,
        scanner: Callable[..., Inventory] = scan,
        links: LinkSource | None = None,
        uevents: UeventSource | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.dirs = KubeletDirs.detect(settings.device_plugin_dir, settings.plugins_registry_dir,
                                       settings.kubelet_root_dir)
        self._scanner = scanner
        self.links = links
        self.uevents = uevents
        self._rescan = True
        self._periodic = False
        self._fingerprint = 0
        self._resyncs = 0
        self._pinned: set[tuple[str, str]] = set()
        self._health_dirty = False
        self._seen_links: set[str] = set()
        self._ghosts: dict[str, dict[str, tuple[PoolDevice, int]]] = {}
        self._assigned: dict[str, set[str]] | None = None
        self._handed_out: dict[str, set[str]] = {}
        self.inventory = Inventory()
        self.pools: dict[str, ResourcePool] = {}
        self.endpoints: dict[str, PluginEndpoint] = {}
        self._feeds: dict[str, LatestValue[ResourcePool]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self.passes = 0
        self.ready = asyncio.Event()
        self._netdev_names: set[str] = set()
        self.outputs = Outputs(settings)
        self.metrics = DaemonMetrics()
        self.metrics.bind(self)
        self._config_bytes: bytes | None = None

    # --- public controls --------------------------------------------------------------------

    def trigger(self, reason: str) -> None:
        """Ask for a rescan of the host soon (coalesced with other triggers)."""
        log.debug("pass requested: %s", reason)
        self._rescan = True
        self._wake.set()

    def _link_changed(self, change: LinkChange) -> None:
        # A carrier/operstate change of a link already seen only needs health re-derived on
        # the current inventory (fast path, no rescan). A link appearing (a new VF netdev),
        # one of our netdevs vanishing (moved into a pod, unbound) or lost events may mean
        # the host changed: rescan.
        self.metrics.link_events += 1
        if change.resync:
            self._seen_links = set(self.links.snapshot()) if self.links else set()
            self._rescan = True
        elif change.state is None:
            self._seen_links.discard(change.ifname)
            if change.ifname in self._netdev_names:
                self._rescan = True
        elif change.ifname not in self._seen_links:
            self._seen_links.add(change.ifname)
            self._rescan = True
        self._health_dirty = True
        self._wake.set()

    def stop(self) -> None:
        """Begin the staged shutdown: endpoints stop and remove their sockets, then the loop ends."""
        self._stop.set()
        self._wake.set()

    def facts(self) -> HostFacts:
        return self.inventory.facts

    def reload_config(self, reason: str) -> bool:
        """Re-read the config file; apply it if valid, else keep serving the last good one.

        Returns:
            True when a new config was applied.
        """
        try:
            content = read_config_bytes(self.settings.config_file)
        except ConfigError as exc:
            log.error("config reload (%s): %s; keeping the last good config", reason,
                      exc.problems[0])
            self.metrics.reloads["failed"] += 1
            return False
        if content == self._config_bytes:
            return False
        try:
            config = load_config(self.settings.config_file,
                                 default_prefix=self.settings.resource_prefix,
                                 use_cdi=self.settings.use_cdi,
                                 socket_dir=self.dirs.socket_dir, text=content)
        except ConfigError as exc:
            self._config_bytes = content
            self.metrics.reloads["failed"] += 1
            for problem in exc.problems:
                log.error("config reload rejected, keeping the last good config: %s: %s",
                          self.settings.config_file, problem)
            return False
        self._config_bytes = content
        for warning in config.warnings:
            log.warning("config %s: %s", self.settings.config_file, warning)
        self.config = config
        self.metrics.reloads["ok"] += 1
        log.info("config reloaded (%s): %d resources", reason, len(config.resources))
        self.trigger("config reloaded")
        return True

    def allocated(self, pool: ResourcePool, ids: list[str], ok: bool) -> None:
        """Hook of every Allocate container request (metrics)."""
        if ok:
            self.outputs.allocated(pool, ids)
            self.metrics.allocations[pool.resource_name] += len(ids)
            self._handed_out.setdefault(pool.resource_name, set()).update(ids)
        else:
            self.metrics.allocate_errors[pool.resource_name] += 1

    @property
    def is_ready(self) -> bool:
        """Every pool registered with the kubelet and streaming its device list."""
        return self.ready.is_set() and not self.outputs.cdi_pending and all(
            e.registered.is_set() and e.streaming for e in self.endpoints.values())

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`. Sets :attr:`ready` once every pool has an endpoint."""
        if self.dirs.mode == "watcher":
            log.info("registering through the kubelet's plugin watcher: sockets in %s",
                     self.dirs.socket_dir)
        else:
            log.info("registering through %s (%s does not exist): sockets in %s",
                     self.dirs.device_plugin_dir / "kubelet.sock",
                     self.dirs.plugins_registry_dir, self.dirs.socket_dir)
        with contextlib.suppress(ConfigError):
            self._config_bytes = read_config_bytes(self.settings.config_file)
        self.dirs.socket_dir.mkdir(parents=True, exist_ok=True)
        helpers = [asyncio.create_task(watch_socket_dirs(self._socket_dirs(), self._socket_event),
                                       name="socket watch")]
        if self.settings.watch_config:
            helpers.append(asyncio.create_task(
                watch_config_file(self.settings.config_file, self._config_event),
                name="config watch"))
        servers = []
        try:
            for address, routes in self._http_routes().items():
                servers.append(await start_http(address, routes))
        except OSError as exc:
            for server in servers:
                server.close()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            raise HostError(f"cannot serve health/metrics on {address}: "
                            f"{exc.strerror or exc}") from exc
        links, self.links = self.links, None  # started after the first pass (see below)
        self._open_endpoints_early()
        try:
            first = True
            while not self._stop.is_set():
                self._wake.clear()
                if self._health_dirty and not first:
                    self._health_dirty = False
                    self._publish_health()
                if self._rescan:
                    periodic, self._rescan, self._periodic = self._periodic, False, False
                    if periodic and self._ghosts:
                        self._assigned = await assigned_devices(
                            self.settings.pod_resources_socket)
                    if not await self._until_stopped(
                            self.reconcile(first=first, periodic=periodic)):
                        break
                if self.passes:
                    if first and links is not None:
                        # Link state starts once every pool is listening (importing pyroute2
                        # and dumping links would delay the sockets); the first health
                        # derivation follows at once through the fast path.
                        await self._start_links(links, helpers)
                    if first and self.uevents is not None:
                        await self._start_uevents(helpers)
                    first = False
                    self.ready.set()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.resync_interval)
                except TimeoutError:
                    self._rescan = self._periodic = True
        finally:
            await self._shutdown()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            for server in servers:
                server.close()
            if self.links is not None:
                await self.links.close()
            if self.uevents is not None:
                await self.uevents.close()

    async def _start_links(self, links: LinkSource, helpers: list[asyncio.Task[None]]) -> None:
        try:
            await links.start()
        except Exception as exc:
            log.warning("link health disabled: cannot read netlink link state: %s", exc)
            return
        self.links = links
        self._seen_links = set(links.snapshot())
        self._health_dirty = True
        self._wake.set()
        helpers.append(asyncio.create_task(self._follow_links(), name="links"))

    async def _start_uevents(self, helpers: list[asyncio.Task[None]]) -> None:
        assert self.uevents is not None
        try:
            await self.uevents.start()
        except HostError as exc:
            log.warning("no kernel uevents (%s): host changes are found by the periodic "
                        "resync every %.0f s", exc, self.settings.resync_interval)
            self.uevents = None
            return
        helpers.append(asyncio.create_task(self._follow_uevents(), name="uevents"))

    async def _follow_uevents(self) -> None:
        assert self.uevents is not None
        async for event in self.uevents.events():
            if event.relevant:
                self.trigger(f"uevent {event.action} {event.subsystem} {event.devpath}")

    async def _follow_links(self) -> None:
        assert self.links is not None
        async for change in self.links.events():
            self._link_changed(change)

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

    def _open_endpoints_early(self) -> None:
        """Every configured pool starts listening before the first host scan: the kubelet's
        handshake (GetInfo / Register, GetDevicePluginOptions) overlaps the scan, and
        ListAndWatch sends the first device list as soon as the scan is done."""
        for config in self.config.resources:
            pool = ResourcePool(config=config,
                                prefix=config.effective_prefix(self.settings.resource_prefix))
            self.pools[pool.resource_name] = pool
            self._add_endpoint(pool, ready=False)

    def _socket_dirs(self) -> list[Path]:
        if self.dirs.mode == "watcher":
            return [self.dirs.device_plugin_dir, self.dirs.plugins_registry_dir]
        return [self.dirs.device_plugin_dir]

    def _config_event(self, reason: str) -> None:
        # Several inotify events arrive for one ConfigMap swap; the content check in
        # reload_config makes the repeats no-ops.
        self.reload_config(reason)

    def _http_routes(self) -> dict[str, dict[str, Callable[[], tuple[int, str, bytes]]]]:
        def healthz() -> tuple[int, str, bytes]:
            return 200, "text/plain", b"ok\n"

        def readyz() -> tuple[int, str, bytes]:
            if self.is_ready:
                return 200, "text/plain", b"ready\n"
            waiting = [f"{n} (socket owned by another instance)" if e.state == "waiting" else n
                       for n, e in self.endpoints.items()
                       if not (e.registered.is_set() and e.streaming)]
            return 503, "text/plain", ("not ready: " + ", ".join(waiting) + "\n").encode()

        def metrics() -> tuple[int, str, bytes]:
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render()

        # One server per (host, port): ":9100" and "0.0.0.0:9100" are the same socket.
        routes: dict[tuple[str, int], dict[str, Callable[[], tuple[int, str, bytes]]]] = {}
        names: dict[tuple[str, int], str] = {}
        for address, table in ((self.settings.health_address,
                                {"/healthz": healthz, "/readyz": readyz}),
                               (self.settings.metrics_address, {"/metrics": metrics})):
            if address:
                key = parse_address(address)
                names.setdefault(key, address)
                routes.setdefault(key, {}).update(table)
        return {names[k]: v for k, v in routes.items()}

    async def reconcile(self, *, first: bool = False, periodic: bool = False) -> None:
        """One pass: scan the host, then publish the pools it gives.

        The scan runs in a worker thread, so link events, gRPC calls and GetInfo keep being
        answered while a large host is read.
        """
        started = time.perf_counter()
        try:
            inventory = await _in_daemon_thread(self._scan, periodic)
        except Exception as exc:  # a broken host read must not kill the daemon
            log.error("host scan failed, keeping the previous view: %s", exc)
            return
        if (inventory is self.inventory and not first and not any(self._ghosts.values())
                and not self._pinned):
            return  # a resync found nothing new (fingerprint unchanged): nothing to publish
        for skipped in inventory.skipped:
            log.log(logging.INFO if first else logging.DEBUG, "skipping %s: %s",
                    skipped.address, skipped.reason, extra={"pci": skipped.address})
        self._netdev_names = {n for f in inventory.functions.values() for n in f.netdevs} | {
            f.pf_netdev for f in inventory.functions.values() if f.pf_netdev}
        pools = self._build(inventory)
        if self._leaving(inventory, pools):
            # a device is about to change pools (or leave all): ask the kubelet first
            # whether a pod holds it, so it is never offered twice
            self._assigned = await assigned_devices(self.settings.pod_resources_socket)
        self._publish(inventory, first=first, periodic=periodic, pools=pools)
        self.metrics.scan_duration.observe(time.perf_counter() - started)
        log.debug("pass %d took %.1f ms", self.passes, (time.perf_counter() - started) * 1e3)

    def _build(self, inventory: Inventory) -> dict[str, ResourcePool]:
        health = derive_health(inventory, self.links.snapshot()) if self.links else {}
        return build_pools(inventory, self.config.resources,
                           default_prefix=self.settings.resource_prefix, health=health)

    def _leaving(self, inventory: Inventory, pools: dict[str, ResourcePool]) -> bool:
        """Does a device still on the host move to another pool, or leave every pool?"""
        owner = {dev_id: name for name, pool in pools.items() for dev_id in pool.devices}
        on_host = inventory.functions.keys() | inventory.aux.keys()
        return any(owner.get(dev_id) != name
                   for name, pool in self.pools.items() if name in pools
                   for dev_id in pool.devices if dev_id in on_host)

    def _publish(self, inventory: Inventory, *, first: bool, periodic: bool = False,
                 pools: dict[str, ResourcePool] | None = None) -> None:
        """Publish ``pools`` (built from ``inventory`` and link health when not given)."""
        if pools is None:
            pools = self._build(inventory)
        pools = self._keep_vanished(inventory, pools, periodic=periodic)
        pools = self._keep_assigned(pools)
        self.inventory = inventory
        changes = diff(self.pools, pools)
        if first or not changes.empty:
            self.outputs.pools_changed(self.pools, pools, inventory.facts, first=first)
        elif self.outputs.cdi_pending:
            self.outputs.retry(pools, inventory.facts)
        self.pools = pools
        self.passes += 1
        for name in changes.removed:
            self._remove_endpoint(name)
        for name, pool in pools.items():  # pools opened early get their first list now
            if name in self._feeds and not self._feeds[name].ready and name not in changes.updated:
                self._feeds[name].publish(pool)
        for name, pool in changes.updated.items():
            self._feeds[name].publish(pool)
            log.info("%s: device list changed, %d devices (%d unhealthy)", name,
                     len(pool.devices), sum(1 for d in pool.devices.values()
                                            if d.health != "Healthy"),
                     extra={"resource": name})
        for pool in changes.added.values():
            self._add_endpoint(pool)
        if first or changes.added:
            # after the new endpoints' first step (they bind their sockets right away)
            asyncio.get_running_loop().call_soon(self._log_summary, inventory)

    def _scan(self, periodic: bool = False) -> Inventory:
        """The host scan, plus DDP profiles when a selector asks (runs in a worker thread).

        A periodic resync first compares :func:`fingerprint` with the last full scan's and
        reuses that scan when nothing it covers changed (an idle node then costs a few ms
        per resync instead of a full scan); every tenth resync scans fully regardless.
        """
        current = fingerprint(self.settings.host)
        self._resyncs += periodic
        if (periodic and self._resyncs % 10 and current == self._fingerprint
                and self.passes and self._scanner is scan):
            return self.inventory
        self._fingerprint = current
        return fill_ddp_profiles_if_asked(self._scanner(self.settings.host),
                                          self.config.resources)

    def _publish_health(self) -> None:
        """Fast path for link events: re-derive health on the current inventory and push
        only the pools in which some device changed health (no rescan, no pool rebuild)."""
        if self.links is None:
            return
        health = derive_health(self.inventory, self.links.snapshot())
        for name, pool in list(self.pools.items()):
            ghosts = self._ghosts.get(name, {})
            changed = {
                dev_id: replace(dev, health=health.get(dev_id, HEALTHY))
                for dev_id, dev in pool.devices.items()
                if dev_id not in ghosts and dev.health != health.get(dev_id, HEALTHY)
            }
            if not changed:
                continue
            new = replace(pool, devices={**pool.devices, **changed})
            self.pools[name] = new
            self._feeds[name].publish(new)
            bad = sum(1 for d in new.devices.values() if d.health != HEALTHY)
            log.info("%s: link change, %d of %d devices unhealthy", name, bad, len(new.devices),
                     extra={"resource": name})

    def _keep_assigned(self, pools: dict[str, ResourcePool]) -> dict[str, ResourcePool]:
        """A device a pod holds stays in the pool that granted it, never offered twice.

        When a rescan or a new config would move an assigned device to another pool (a VF
        rebound from iavf to vfio-pci while in use, a changed selector) or out of every pool,
        it stays in its old pool as ``Unhealthy`` (so that pool does not grant it again) and
        the other pool does not get it, until the pod resources API no longer lists it (if
        that API cannot be reached: until the daemon restarts, for devices it allocated).
        """
        assigned = self._assigned if self._assigned is not None else self._handed_out
        owner = {dev_id: name for name, pool in pools.items() for dev_id in pool.devices}
        pinned: set[tuple[str, str]] = set()
        for name, old in self.pools.items():
            if name not in pools:
                continue  # the pool itself is gone: its endpoint stops
            for dev_id in assigned.get(name, set()) & old.devices.keys():
                now = owner.get(dev_id)
                if now == name:
                    continue
                if now is not None:
                    other = pools[now]
                    pools[now] = replace(other, devices={
                        k: v for k, v in other.devices.items() if k != dev_id})
                pool = pools[name]
                kept = replace(old.devices[dev_id], health=UNHEALTHY)
                devices = {**pool.devices, dev_id: kept}
                pools[name] = replace(pool, devices={k: devices[k] for k in sorted(devices)})
                owner[dev_id] = name
                pinned.add((name, dev_id))
                if (name, dev_id) not in self._pinned:
                    log.warning("%s is assigned to a pod through %s: kept there (Unhealthy) "
                                "instead of moving to %s until it is released", dev_id, name,
                                now or "no pool", extra={"pci": dev_id, "resource": name})
        self._pinned = pinned
        return pools

    def _keep_vanished(self, inventory: Inventory, pools: dict[str, ResourcePool], *,
                       periodic: bool) -> dict[str, ResourcePool]:
        """Keep devices that vanished from the host in their pool, ``Unhealthy``.

        A vanished device is never dropped silently: the kubelet may have it assigned to a
        running pod. It stays Unhealthy until a periodic resync after the one that saw it go,
        and longer while the pod resources API (or, if that cannot be reached, our own
        allocation record) says it is assigned.
        """
        present = {dev_id for pool in pools.values() for dev_id in pool.devices}
        on_host = inventory.functions.keys() | inventory.aux.keys()
        for name, old in self.pools.items():
            if name not in pools:
                continue
            ghosts = self._ghosts.setdefault(name, {})
            for dev_id, dev in old.devices.items():
                if dev_id not in present and dev_id not in on_host and dev_id not in ghosts:
                    ghosts[dev_id] = (replace(dev, health=UNHEALTHY), self.passes)
                    log.warning("%s vanished from the host; reported Unhealthy", dev_id,
                                extra={"pci": dev_id, "resource": name})
        for name in list(self._ghosts):
            ghosts = self._ghosts[name]
            if name not in pools:
                del self._ghosts[name]
                continue
            assigned = (self._assigned if self._assigned is not None
                        else self._handed_out).get(name, set())
            for dev_id, (_, seen) in list(ghosts.items()):
                if dev_id in present or dev_id in on_host:
                    del ghosts[dev_id]
                elif periodic and seen < self.passes and dev_id not in assigned:
                    del ghosts[dev_id]
                    log.info("%s is gone and not assigned to a pod; removed from %s", dev_id,
                             name, extra={"pci": dev_id, "resource": name})
            if ghosts:
                pool = pools[name]
                devices = {**pool.devices, **{k: d for k, (d, _) in ghosts.items()}}
                pools[name] = replace(pool, devices={k: devices[k] for k in sorted(devices)})
        return pools

    # --- endpoints --------------------------------------------------------------------------

    def _add_endpoint(self, pool: ResourcePool, *, ready: bool = True) -> None:
        feed = LatestValue(pool, ready=ready)
        endpoint = PluginEndpoint(feed, self.dirs, self.facts, on_allocate=self.allocated,
                                  cdi=self.settings.use_cdi)
        self._feeds[pool.resource_name] = feed
        self.endpoints[pool.resource_name] = endpoint
        self._tasks[pool.resource_name] = asyncio.create_task(
            endpoint.run(), name=f"endpoint {pool.resource_name}"
        )

    def _remove_endpoint(self, name: str) -> None:
        endpoint = self.endpoints.pop(name)
        self._feeds.pop(name, None)
        asyncio.ensure_future(endpoint.stop())
        log.info("%s: no longer configured; endpoint stopping", name, extra={"resource": name})

    async def _shutdown(self) -> None:
        for endpoint in self.endpoints.values():
            log.info("stopping %s device plugin server...", endpoint.resource_name)
            await endpoint.stop()
        tasks = list(self._tasks.values())
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=5.0)
            for task in pending:
                log.error("endpoint task %s did not stop in 5 s; cancelling", task.get_name())
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.endpoints.clear()
        self._tasks.clear()

    def _socket_event(self, directory: Path, name: str, created: bool) -> None:
        for endpoint in self.endpoints.values():
            if directory in (endpoint.socket_path.parent, endpoint.dirs.device_plugin_dir):
                endpoint.socket_dir_event(name, created)

    # --- start-up report --------------------------------------------------------------------

    def _log_summary(self, inventory: Inventory) -> None:
        empty = [name for name, pool in self.pools.items() if not pool.devices]
        verdicts = explain(inventory, self.config.resources, self.pools,
                           default_prefix=self.settings.resource_prefix, only=empty)
        for name, pool in self.pools.items():
            socket = self.dirs.socket_dir / pool.socket_name
            log.info("pool %s: %d devices, socket %s", name, len(pool.devices), socket,
                     extra={"resource": name})
            if not pool.devices:
                misses = nearest_misses(verdicts[name])
                hint = ", ".join(f"{v.address} ({v.reason})" for v in misses[:5]) or \
                    f"no {pool.config.kind} candidate on this host"
                log.warning("pool %s is empty; nearest candidates: %s", name, hint,
                            extra={"resource": name})
        for path, value in unmatched_identifiers(inventory, self.config.resources):
            log.warning("%s: %r matches no device on this host", path, value)
