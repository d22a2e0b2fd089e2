"""EndpointSet: one kubelet endpoint per published pool; add, publish, remove.

A pool that appears gets a :class:`PluginEndpoint` (a supervised task); a pool whose
devices or health changed pushes its new list to every open ListAndWatch stream; a pool
that is no longer published stops (its socket is removed). Events of the kubelet's socket
directories are passed to the endpoints they concern.

To make the kubelet rewrite its device checkpoint, one unchanged list is sent again
(:meth:`EndpointSet.resend`); with no endpoint streaming (every pool served through DRA), a
short-lived stand-in endpoint with no devices registers instead
(:meth:`EndpointSet.stand_in`): it is no pool (not in :attr:`EndpointSet.endpoints`,
``/readyz`` or the metrics) and stops once the kubelet got its empty list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from sriovdp.daemon.status import EndpointStatus
from sriovdp.daemon.supervisor import Ready, Supervisor
from sriovdp.kubelet.endpoint import KubeletDirs, PluginEndpoint, State
from sriovdp.kubelet.feed import LatestValue
from sriovdp.kubelet.servicer import AllocateHook
from sriovdp.kubelet.socketlock import InstanceLock, instance_lock
from sriovdp.model.devices import HostFacts
from sriovdp.model.diff import PoolChanges
from sriovdp.model.health import Health
from sriovdp.model.pools import ResourcePool

log = logging.getLogger("sriovdp.daemon")
STOP_TIMEOUT = 5.0
STANDIN_TIMEOUT = 10.0
"""Seconds a stand-in endpoint waits for the kubelet to register it and take its list."""


class EndpointSet:
    """The endpoints of the published pools.

    Args:
        dirs: kubelet directories and registration mode.
        supervisor: owns the endpoint tasks.
        facts: host facts of the latest scan, for Allocate.
        on_allocate: hook after each Allocate container request.
        cdi: Allocate answers with CDI names.
        standin_timeout: seconds a stand-in endpoint waits for the kubelet (see
            :meth:`stand_in`).
    """

    def __init__(self, dirs: KubeletDirs, supervisor: Supervisor,
                 facts: Callable[[], HostFacts], *, on_allocate: AllocateHook,
                 cdi: bool, standin_timeout: float = STANDIN_TIMEOUT) -> None:
        self.dirs = dirs
        self._standin_timeout = standin_timeout
        self.standin: PluginEndpoint | None = None
        """The stand-in endpoint while one is open (see :meth:`stand_in`)."""
        self.standins = 0
        """Stand-in endpoints opened so far."""
        self._supervisor = supervisor
        self._facts = facts
        self._on_allocate = on_allocate
        self._cdi = cdi
        self.endpoints: dict[str, PluginEndpoint] = {}
        self._feeds: dict[str, LatestValue[ResourcePool]] = {}
        self._instance = instance_lock(dirs.device_plugin_dir, dirs.socket_dir)
        self.waiting = ""
        """Why nothing is served yet: another instance holds the node ("" when not)."""

    async def own_node(self, poll: float = 0.2) -> None:
        """Wait until this instance holds the node-wide lock (another sriovdp instance serves
        the node until it exits: a rolling update with ``maxSurge``, a daemon run by hand).
        Nothing is served before, so what this instance later learns of pods' holds and
        publishes starts after the other one's last allocation."""
        while not self._instance.try_acquire():
            if not self.waiting:
                log.warning("another sriovdp instance (pid %s) serves this node; waiting for "
                            "it to exit", self._instance.holder())
            self.waiting = (f"waiting for another sriovdp instance (pid "
                            f"{self._instance.holder()}) to exit")
            await asyncio.sleep(poll)
        if self.waiting:
            log.info("the other sriovdp instance exited; taking over")
        self.waiting = ""

    @property
    def instance(self) -> InstanceLock:
        """This daemon instance's node-wide lock (the DRA plugin takes it too)."""
        return self._instance

    def open_early(self, pools: Mapping[str, ResourcePool]) -> None:
        """Start listening before the first host scan: the kubelet's handshake overlaps the
        scan, and ListAndWatch sends the first list once :meth:`publish` runs (``pools``
        are placeholders: the caller diffs the first pass against them)."""
        for pool in pools.values():
            self._add(pool, ready=False)

    def publish(self, pools: Mapping[str, ResourcePool], changes: PoolChanges) -> None:
        """Apply one pass's changes (``pools`` is everything published)."""
        for name in changes.removed:
            self._remove(name)
        for name, pool in pools.items():  # endpoints opened early get their first list
            feed = self._feeds.get(name)
            if feed is not None and not feed.ready and name not in changes.updated:
                feed.publish(pool)
        for name, pool in changes.updated.items():
            self._feeds[name].publish(pool)
            log.info("%s: device list changed, %d devices (%d unhealthy)", name,
                     len(pool.devices),
                     sum(1 for d in pool.devices.values() if d.health is not Health.HEALTHY),
                     extra={"resource": name})
        for pool in changes.added.values():
            if self.standin is not None and self.standin.resource_name == pool.resource_name:
                self._stop_standin()
            self._add(pool)

    def resend(self, prefer: Iterable[str] = ()) -> str | None:
        """Send the kubelet the unchanged device list of one registered endpoint (the first
        of ``prefer`` that streams, else any that does): the kubelet's device manager then
        rewrites its checkpoint, without the entries of pods it no longer counts as active.
        The resource resent, or None when no endpoint streams."""
        streaming = [n for n, e in self.endpoints.items() if e.streaming]
        name = next((n for n in prefer if n in streaming), streaming[0] if streaming else None)
        if name is not None:
            feed = self._feeds[name]
            feed.publish(feed.value)
        return name

    def stand_in(self, pool: ResourcePool, why: str) -> str | None:
        """Open a stand-in endpoint for ``pool``'s resource, with no devices, to make the
        kubelet's device manager rewrite its checkpoint (it does after every list it gets)
        when no endpoint streams a list to :meth:`resend`. It registers the usual way and
        stops, its socket removed, once the kubelet got its empty list, or after
        ``standin_timeout`` seconds. It allocates nothing (Allocate of any id is refused).

        The resource of the stand-in open (already, or now), or None: a pool's endpoint
        serves that resource (the stand-in's registration would replace the pool's)."""
        if self.standin is not None:
            return self.standin.resource_name
        name = pool.resource_name
        if name in self.endpoints:
            return None
        empty = LatestValue(replace(pool, devices={}))
        endpoint = PluginEndpoint(empty, self.dirs, self._facts, cdi=self._cdi,
                                  instance=self._instance)
        self.standin = endpoint
        self.standins += 1
        log.info("%s: opening a stand-in device plugin endpoint with no devices (for %.0f s "
                 "at most) to make the kubelet rewrite its device checkpoint: %s", name,
                 self._standin_timeout, why, extra={"resource": name})

        async def run(ready: Ready) -> None:
            ready()
            await self._run_standin(endpoint)

        self._supervisor.start(_standin_task(name), run, forever=False)
        return name

    async def _run_standin(self, endpoint: PluginEndpoint) -> None:
        name = endpoint.resource_name
        running = asyncio.ensure_future(endpoint.run())

        async def listed() -> None:
            await endpoint.registered.wait()
            await endpoint.listed.wait()

        waiting = asyncio.ensure_future(listed())
        try:
            await asyncio.wait({waiting, running}, timeout=self._standin_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                log.info("%s: the kubelet took the stand-in's empty list; stopping it", name,
                         extra={"resource": name})
            elif not running.done():
                log.warning("%s: the kubelet did not take the stand-in's list within %.0f s; "
                            "stopping it", name, self._standin_timeout,
                            extra={"resource": name})
        finally:
            waiting.cancel()
            await endpoint.stop()
            done, _ = await asyncio.wait({running}, timeout=STOP_TIMEOUT)
            if not done:
                log.error("%s: stand-in did not stop in %.0f s; cancelling", name,
                          STOP_TIMEOUT, extra={"resource": name})
                running.cancel()
            await asyncio.gather(running, waiting, return_exceptions=True)
            if running.done() and not running.cancelled() and running.exception() is not None:
                # never a failure shown as the daemon's: a stand-in is no pool
                log.error("%s: stand-in endpoint failed: %r", name, running.exception(),
                          extra={"resource": name})
            if self.standin is endpoint:
                self.standin = None

    def _stop_standin(self) -> None:
        """A pool takes the stand-in's resource: stop the stand-in (the pool's endpoint
        waits for the socket's lock until the stand-in let go of it)."""
        endpoint = self.standin
        if endpoint is None:
            return

        async def stop(ready: Ready) -> None:
            await endpoint.stop()

        self._supervisor.start(f"stop stand-in {endpoint.resource_name}", stop, forever=False)

    def socket_event(self, directory: Path, name: str, created: bool) -> None:
        if self.standin is not None:
            endpoint = self.standin
            if directory in (endpoint.socket_path.parent, endpoint.dirs.device_plugin_dir):
                endpoint.socket_dir_event(name, created)
        for endpoint in self.endpoints.values():
            if directory in (endpoint.socket_path.parent, endpoint.dirs.device_plugin_dir):
                endpoint.socket_dir_event(name, created)

    def status(self) -> dict[str, EndpointStatus]:
        return {name: EndpointStatus(e.registered.is_set(), e.streaming, e.registrations,
                                     e.restarts, waiting=e.state == State.WAITING)
                for name, e in self.endpoints.items()}

    async def stop_all(self) -> None:
        """Stop every endpoint and a stand-in (sockets removed); cancel one that does not
        stop in 5 s."""
        names = list(self.endpoints)
        tasks = [_task(n) for n in names]
        for name in names:
            log.info("stopping %s device plugin server...", name)
            await self.endpoints[name].stop()
        if self.standin is not None:
            await self.standin.stop()
            tasks.append(_standin_task(self.standin.resource_name))
        for task in await self._supervisor.wait(tasks, STOP_TIMEOUT):
            log.error("%s did not stop in %.0f s; cancelling", task, STOP_TIMEOUT)
            await self._supervisor.cancel(task)
        self.endpoints.clear()
        self._feeds.clear()
        self._instance.release()  # after every socket is gone: the next instance takes over

    def _add(self, pool: ResourcePool, *, ready: bool = True) -> None:
        feed = LatestValue(pool, ready=ready)
        endpoint = PluginEndpoint(feed, self.dirs, self._facts, on_allocate=self._on_allocate,
                                  cdi=self._cdi, instance=self._instance)
        self._feeds[pool.resource_name] = feed
        self.endpoints[pool.resource_name] = endpoint

        async def run(ready: Ready) -> None:
            ready()
            await endpoint.run()

        self._supervisor.start(_task(pool.resource_name), run, forever=False)

    def _remove(self, name: str) -> None:
        endpoint = self.endpoints.pop(name)
        self._feeds.pop(name, None)

        async def stop(ready: Ready) -> None:
            await endpoint.stop()

        self._supervisor.start(f"stop {name}", stop, forever=False)
        log.info("%s: no longer published; endpoint stopping", name, extra={"resource": name})


def _task(name: str) -> str:
    return f"endpoint {name}"


def _standin_task(name: str) -> str:
    return f"stand-in {name}"
