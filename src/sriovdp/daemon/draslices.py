"""SliceSync: keeps the apiserver's ResourceSlices of this node equal to its latest devices.

A supervised task around :class:`~sriovdp.kubelet.dra.publisher.SlicePublisher`:

* **coalesced**: one publication in flight; changes that arrive meanwhile wake it once more
  and the latest devices win. Nobody awaits it: not the reconciler, not an RPC.
* **retried** after a failure (the apiserver down, refusing, the Node not readable) with
  back-off, 0.5 s doubling to 30 s; the error is kept for ``/readyz`` and counted, and
  nothing is lost: the publisher keeps no half-applied state, so the next try lists again.
* **forced** (listed and repaired although the devices did not change) every resync
  interval, and after each kubelet registration of the plugin at once and 1, 2, 4, 8, 16
  and 32 s later: a starting kubelet deletes its node's slices in the background (retrying
  with back-off while it cannot reach the apiserver or find its Node), so the deletion may
  come after the registration.

The Node's UID (the slices' owner reference) is read before the first publication.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping

from sriovdp.daemon.supervisor import Ready
from sriovdp.errors import SriovdpError
from sriovdp.host.paths import HostPaths
from sriovdp.host.pcie import pcie_roots
from sriovdp.kubelet.dra.apiserver import NodeReader
from sriovdp.kubelet.dra.publisher import SlicePublisher
from sriovdp.model.dra.slices import DraDevice, slice_devices

log = logging.getLogger("sriovdp.daemon")

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
REPAIR_AFTER_REGISTRATION = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
"""Seconds after a kubelet registration at which the slices are listed and repaired again."""


class SliceSync:
    """See the module docstring.

    Args:
        publisher: the publisher on the apiserver port.
        nodes: reads the Node's UID.
        host: where the devices' PCIe roots are read.
        devices: the latest DRA devices.
        may_publish: False while publishing must wait (no devices yet, another instance
            serves the node).
        resync_interval: seconds between forced publications.
    """

    def __init__(self, publisher: SlicePublisher, nodes: NodeReader, host: HostPaths, *,
                 devices: Callable[[], Mapping[str, DraDevice]],
                 may_publish: Callable[[], bool], resync_interval: float) -> None:
        self.publisher = publisher
        self._nodes = nodes
        self._host = host
        self._devices = devices
        self._may_publish = may_publish
        self._resync = resync_interval
        self.errors = 0
        """Failed publications."""
        self.publications = 0
        """Successful publications (including those that found nothing to send)."""
        self.error: str | None = None
        """The last failure while it is not repaired, for ``/readyz``."""
        self._wake = asyncio.Event()
        self._force = False
        self._repairs: deque[float] = deque()  # loop times of forced publications due
        self._roots: dict[str, str] = {}
        self._asked_roots: set[str] = set()

    @property
    def devices_published(self) -> int:
        state = self.publisher.state
        return len(state.devices) if state is not None else 0

    def changed(self) -> None:
        """The devices changed: publish soon."""
        self._wake.set()

    def force(self) -> None:
        """List and repair the slices soon, even if the devices did not change."""
        self._force = True
        self._wake.set()

    def registered(self) -> None:
        """The kubelet registered the plugin: it may have deleted (or may yet delete) the
        node's slices."""
        now = asyncio.get_running_loop().time()
        self._repairs = deque(now + delay for delay in REPAIR_AFTER_REGISTRATION)
        self.force()

    async def run(self, ready: Ready) -> None:
        """Publish whenever the devices change, a publication is forced or a retry is due."""
        ready()
        delay = FIRST_BACKOFF
        while True:
            await self._next()
            if not self._may_publish():
                continue
            force, self._force = self._force, False
            try:
                await self._publish(force)
            except SriovdpError as exc:
                self.errors += 1
                self._force = self._force or force  # a failed repair is still owed
                self.error = (f"dra: publishing ResourceSlices failed: {exc}; "
                              f"retrying in {delay:.1f} s")
                log.warning("%s", self.error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                self._wake.set()
                continue
            if self.error is not None:
                log.info("dra: ResourceSlices published again")
            self.error, delay = None, FIRST_BACKOFF
            self.publications += 1

    async def _next(self) -> None:
        """Wait for a change, a forced publication or the end of the resync interval."""
        loop = asyncio.get_running_loop()
        timeout = self._resync
        if self._repairs:
            timeout = min(timeout, max(0.0, self._repairs[0] - loop.time()))
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            self._force = True
        while self._repairs and self._repairs[0] <= loop.time():
            self._repairs.popleft()
            self._force = True
        self._wake.clear()

    async def _publish(self, force: bool) -> None:
        if self.publisher.node_uid is None or force:
            # asked again on every repair: a Node deleted and registered again has a new
            # UID, and slices owned by the old one are garbage-collected as soon as written
            self.publisher.node_uid = await self._nodes.uid(self.publisher.node_name)
        devices = self._devices()
        addresses = {getattr(d.device.function, "parent", d.device.function).address
                     for d in devices.values()} - self._asked_roots
        if addresses:
            self._roots.update(await asyncio.to_thread(pcie_roots, self._host,
                                                       sorted(addresses)))
            self._asked_roots |= addresses
        # the devices' entries are built (their attributes cached) in a worker thread: at
        # 2,048 new devices that is ~60 ms the event loop (RPCs) would otherwise wait
        wanted = await asyncio.to_thread(slice_devices, devices, driver=self.publisher.driver,
                                         policy=self.publisher.policy, pcie_roots=self._roots)
        await self.publisher.publish_entries(wanted, force=force)
