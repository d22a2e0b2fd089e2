"""SettledScans: host scans a pass may build pools from, with changes let settle first.

Operators create VFs and rebind some of them a moment later, so a scan may catch the host
mid-change. Before the first publication, while a scan shows signs of that (a function with
no driver, a PF missing VFs: :func:`~sriovdp.model.settle.signs_of_change`), the host is
scanned again after the settle window until two scans agree; after that, a function that
just appeared or changed driver joins a pool only once it stayed so for the window
(:func:`~sriovdp.model.settle.settle`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from sriovdp.daemon.scanner import HostScanner
from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import Inventory
from sriovdp.model.retention import PassKind
from sriovdp.model.settle import Settled, Settling, same_shape, settle, signs_of_change

log = logging.getLogger("sriovdp.daemon")


class SettledScans:
    """Scans through ``scanner`` and remembers which functions are inside their window.

    Args:
        scanner: the host scan (worker thread, fingerprint shortcut, DDP profiles).
        resources: the config's pools at the time of a scan (which DDP profiles to read).
        window: the settle window in seconds (0: take every scan as it is).
        deadline: seconds a scan may run before it is abandoned (None: no limit).
    """

    def __init__(self, scanner: HostScanner, resources: Callable[[], Sequence[ResourceConfig]],
                 *, window: float, deadline: float | None) -> None:
        self._scanner = scanner
        self._resources = resources
        self._window = window
        self._deadline = deadline
        self._state = Settling()

    @property
    def settling(self) -> bool:
        """Some function is inside its settle window (a later pass must look again)."""
        return bool(self._state.changes)

    async def scan(self, kind: PassKind) -> tuple[Inventory, bool]:
        """(inventory, fresh): fresh is False when a periodic resync reused the last scan.
        Before the first publication (``kind`` FIRST) the host is scanned again while it
        looks mid-change.

        Raises:
            HostError: the scan failed, ran past the deadline or an abandoned one is stuck.
        """
        inventory, fresh = await self._scan(periodic=kind is PassKind.PERIODIC)
        if kind is PassKind.FIRST:
            inventory = await self._first_settled(inventory)
        return inventory, fresh

    def settle(self, settled: Inventory | None, scanned: Inventory) -> Settled:
        """What pools are built from: ``scanned`` with functions inside their settle window
        as in ``settled`` (the last inventory published; None on the first pass: the
        baseline)."""
        out = settle(settled, scanned, time.monotonic(), self._window, self._state)
        self._state = out.state
        return out

    async def _scan(self, *, periodic: bool) -> tuple[Inventory, bool]:
        return await self._scanner.scan(self._resources(), periodic=periodic,
                                        deadline=self._deadline)

    async def _first_settled(self, inventory: Inventory, *, attempts: int = 5) -> Inventory:
        """While the host looks mid-change, rescan after the window until two scans agree."""
        window = self._window
        for _ in range(attempts):
            signs = signs_of_change(inventory)
            if window <= 0 or not signs:
                return inventory
            log.info("host may be changing (%s): rescanning in %.1f s before the first "
                     "publication", ", ".join(signs[:3]), window)
            await asyncio.sleep(window)
            again, _ = await self._scan(periodic=False)
            if same_shape(inventory, again):
                return again
            inventory = again
        return inventory
