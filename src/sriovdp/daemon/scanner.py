"""HostScanner: the host scan in a worker thread, the fingerprint shortcut, DDP profiles.

The :class:`Scanner` port reads the host; :class:`SysfsScanner` is the production adapter
(``sriovdp.host.sysfs``). A periodic resync first compares the scanner's fingerprint with
the last full scan's and reuses that scan when nothing it covers changed (every tenth
resync scans fully regardless); a scanner without a fingerprint always scans.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from sriovdp.errors import HostError
from sriovdp.host import sysfs
from sriovdp.host.ddp import DdpReader
from sriovdp.host.paths import HostPaths
from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import Inventory
from sriovdp.model.pools import ddp_candidates
from sriovdp.threads import in_daemon_thread

T = TypeVar("T")
FULL_SCAN_EVERY = 10


@runtime_checkable
class Scanner(Protocol):
    """The port: one scan of the host, and a cheap fingerprint of what the scan reads."""

    def scan(self, host: HostPaths) -> Inventory: ...

    def fingerprint(self, host: HostPaths) -> int | None:
        """Equal values mean nothing the scan reads changed; None: no shortcut."""
        ...


class SysfsScanner:
    """:class:`Scanner` over sysfs (``sriovdp.host.sysfs``)."""

    def scan(self, host: HostPaths) -> Inventory:
        return sysfs.scan(host)

    def fingerprint(self, host: HostPaths) -> int | None:
        return sysfs.fingerprint(host)


class FunctionScanner:
    """:class:`Scanner` from a plain ``scan(host)`` function (tests, tools); no fingerprint."""

    def __init__(self, scan: Callable[[HostPaths], Inventory]) -> None:
        self._scan = scan

    def scan(self, host: HostPaths) -> Inventory:
        return self._scan(host)

    def fingerprint(self, host: HostPaths) -> int | None:
        return None


def _drop_result(future: asyncio.Future[tuple[Inventory, bool]]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: an abandoned scan's error is not "never retrieved"


class HostScanner:
    """Scans the host off the event loop, reusing the last scan when the fingerprint says
    nothing changed, and reads DDP profiles when the model says a selector needs them.

    Args:
        host: the host paths.
        scanner: the port (default :class:`SysfsScanner`).
        ddp: the DDP reader this scanner owns (closed by :meth:`close`).
    """

    def __init__(self, host: HostPaths, scanner: Scanner | None = None,
                 ddp: DdpReader | None = None) -> None:
        self.host = host
        self.scanner: Scanner = scanner if scanner is not None else SysfsScanner()
        self.ddp = ddp if ddp is not None else DdpReader()
        self.last: Inventory | None = None
        self._fingerprint: int | None = None
        self._resyncs = 0
        self._stuck: asyncio.Future[tuple[Inventory, bool]] | None = None
        self._stuck_since = 0.0

    @property
    def stuck_since(self) -> float | None:
        """Monotonic time an abandoned scan started, while its thread has not returned."""
        if self._stuck is None or self._stuck.done():
            return None
        return self._stuck_since

    async def scan(self, resources: Sequence[ResourceConfig], *, periodic: bool,
                   deadline: float | None = None) -> tuple[Inventory, bool]:
        """(inventory, fresh): fresh is False when the last scan was reused.

        Raises:
            HostError: the scan ran past ``deadline`` seconds (abandoned: its thread is left
                to finish on its own and its result is dropped), or an abandoned scan is
                still stuck (no second thread is started behind it).
        """
        since = self.stuck_since
        if since is not None:
            raise HostError(f"a host scan is stuck for {time.monotonic() - since:.0f} s (a hung "
                            "sysfs read or tool?); not starting another")
        started = time.monotonic()
        work = asyncio.ensure_future(in_daemon_thread(self._scan, resources, periodic))
        try:
            return await asyncio.wait_for(asyncio.shield(work), deadline)
        except TimeoutError:
            self._stuck, self._stuck_since = work, started
            work.add_done_callback(_drop_result)
            raise HostError(f"host scan ran past {deadline:.0f} s; abandoned") from None

    def _scan(self, resources: Sequence[ResourceConfig], periodic: bool
              ) -> tuple[Inventory, bool]:
        current = self.scanner.fingerprint(self.host)
        self._resyncs += periodic
        if (periodic and self._resyncs % FULL_SCAN_EVERY and current is not None
                and current == self._fingerprint and self.last is not None):
            return self.last, False
        inventory = self.scanner.scan(self.host)
        inventory = self.ddp.fill(inventory, ddp_candidates(inventory, resources))
        self._fingerprint, self.last = current, inventory
        return inventory, True

    def close(self) -> None:
        """Kill DDP tool runs still in flight (shutdown)."""
        self.ddp.close()
