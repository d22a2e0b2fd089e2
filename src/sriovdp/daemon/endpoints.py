"""EndpointSet: one kubelet endpoint per published pool; add, publish, remove.

A pool that appears gets a :class:`PluginEndpoint` (a supervised task); a pool whose
devices or health changed pushes its new list to every open ListAndWatch stream; a pool
that is no longer published stops (its socket is removed). Events of the kubelet's socket
directories are passed to the endpoints they concern.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
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


class EndpointSet:
    """The endpoints of the published pools.

    Args:
        dirs: kubelet directories and registration mode.
        supervisor: owns the endpoint tasks.
        facts: host facts of the latest scan, for Allocate.
        on_allocate: hook after each Allocate container request.
        cdi: Allocate answers with CDI names.
    """

    def __init__(self, dirs: KubeletDirs, supervisor: Supervisor,
                 facts: Callable[[], HostFacts], *, on_allocate: AllocateHook,
                 cdi: bool) -> None:
        self.dirs = dirs
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

    def socket_event(self, directory: Path, name: str, created: bool) -> None:
        for endpoint in self.endpoints.values():
            if directory in (endpoint.socket_path.parent, endpoint.dirs.device_plugin_dir):
                endpoint.socket_dir_event(name, created)

    def status(self) -> dict[str, EndpointStatus]:
        return {name: EndpointStatus(e.registered.is_set(), e.streaming, e.registrations,
                                     e.restarts, waiting=e.state == State.WAITING)
                for name, e in self.endpoints.items()}

    async def stop_all(self) -> None:
        """Stop every endpoint (sockets removed); cancel one that does not stop in 5 s."""
        names = list(self.endpoints)
        for name in names:
            log.info("stopping %s device plugin server...", name)
            await self.endpoints[name].stop()
        for name in await self._supervisor.wait([_task(n) for n in names], STOP_TIMEOUT):
            log.error("%s did not stop in %.0f s; cancelling", name, STOP_TIMEOUT)
            await self._supervisor.cancel(name)
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
