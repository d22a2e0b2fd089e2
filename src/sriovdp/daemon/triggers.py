"""What wakes the reconciler's loop, and what its next pass must do.

Events set a trigger and wake the loop at once (a rescan asked for, link health changed, a
DRA claim prepared or unprepared); timers set one later (a failed pod resources call
retried when its back-off ends, a held device's release polled for, a CDI spec that could
not be written retried, a settle window over). The loop waits for a wake-up or, after the
resync interval, a periodic rescan, and takes every trigger set so far at once: several
arriving together cause one pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("sriovdp.daemon")
HOLD_POLL = 2.0
"""Seconds between pod resources calls while a held device is kept out of its new pool: a
release is seen within this, so the old pool stops offering it soon after."""
OWN_ALLOCATION_CHECK = 0.6
"""Seconds after an Allocate of ours at which the kubelet is asked to rewrite its checkpoint
(it then records the grant even while the container's other plugins are still allocating;
see :data:`sriovdp.daemon.holds.WRITE_MARGIN`)."""
CDI_RETRY_FIRST, CDI_RETRY_MAX = 1.0, 30.0
"""Back-off of retrying CDI specs that could not be written (seconds, doubling)."""


@dataclass(slots=True)
class Triggers:
    """What the next pass must do; set by events, taken (and cleared) by the loop."""

    rescan: bool = True
    periodic: bool = False
    health: bool = False
    holds: bool = False
    outputs: bool = False
    claims: bool = False

    def take(self) -> Triggers:
        taken = Triggers(self.rescan, self.periodic, self.health, self.holds, self.outputs,
                         self.claims)
        self.rescan = self.periodic = self.health = self.holds = self.outputs = False
        self.claims = False
        return taken


class Timers:
    """Named one-shot wake-ups on the event loop (retries after a back-off, the end of a
    settle window); all cancelled together at shutdown."""

    def __init__(self) -> None:
        self._handles: dict[str, asyncio.TimerHandle] = {}

    def once(self, name: str, delay: float, action: Callable[[], None], *,
             replace: bool = False) -> bool:
        """Call ``action`` in ``delay`` seconds, unless ``name`` is already pending (with
        ``replace``: the pending one is cancelled first). True when scheduled."""
        if name in self._handles:
            if not replace:
                return False
            self._handles.pop(name).cancel()
        self._handles[name] = asyncio.get_running_loop().call_later(
            max(0.0, delay), self._fire, name, action)
        return True

    def cancel(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    def _fire(self, name: str, action: Callable[[], None]) -> None:
        self._handles.pop(name, None)
        action()


class Wakeups:
    """The loop's triggers, the event that wakes it and the timers that set triggers later
    (all cancelled by :meth:`cancel`)."""

    def __init__(self) -> None:
        self._triggers = Triggers()
        self._wake = asyncio.Event()
        self._timers = Timers()
        self._cdi_backoff = CDI_RETRY_FIRST

    # --- events -----------------------------------------------------------------------------

    def rescan(self, reason: str) -> None:
        """Rescan the host soon."""
        log.debug("pass requested: %s", reason)
        self._triggers.rescan = True
        self._wake.set()

    def health(self) -> None:
        """Link health changed: publish the last scan with new health."""
        self._triggers.health = True
        self._wake.set()

    def claims(self) -> None:
        """A DRA claim was prepared or unprepared: retention decides again (a device kept
        for it may now move to the pool the config gives it)."""
        self._triggers.claims = True
        self._wake.set()

    def wake(self) -> None:
        """Wake the loop with no trigger (it is to stop)."""
        self._wake.set()

    # --- the loop ---------------------------------------------------------------------------

    def take(self) -> Triggers:
        """Every trigger set since the last take (cleared)."""
        self._wake.clear()
        return self._triggers.take()

    async def wait(self, resync_interval: float) -> None:
        """Until something wakes the loop; after ``resync_interval`` seconds without a
        wake-up, a periodic rescan is due."""
        try:
            await asyncio.wait_for(self._wake.wait(), resync_interval)
        except TimeoutError:
            self._triggers.rescan = self._triggers.periodic = True

    # --- timers -----------------------------------------------------------------------------

    def settle_window_ends(self, at: float) -> None:
        """Rescan just after ``at`` (monotonic), when a function held back ends its
        settle window (a later window replaces this one)."""
        self._timers.once("settle", at - time.monotonic() + 0.01,
                          lambda: self.rescan("settle window over"), replace=True)

    def poll_holds(self) -> None:
        """Ask what pods hold again in :data:`HOLD_POLL` seconds."""
        self._timers.once("holds poll", HOLD_POLL, self._holds)

    def own_allocation(self) -> None:
        """An Allocate of ours: in :data:`OWN_ALLOCATION_CHECK` seconds, ask what pods hold
        and have the kubelet rewrite its checkpoint (one pending check covers every
        Allocate before it)."""
        self._timers.once("own allocation", OWN_ALLOCATION_CHECK, self._holds)

    def retry_holds(self, at: float, *, still: Callable[[], bool]) -> None:
        """A pod resources call failed: ask again at ``at`` (monotonic, when its back-off
        ends) if ``still()`` (something is retained that a release would end)."""

        def due() -> None:
            if still():
                self._holds()

        self._timers.once("holds", at - time.monotonic(), due)

    def retry_outputs(self, pending: bool) -> None:
        """While a CDI spec could not be written (``pending``), retry it soon (1 s doubling
        to 30 s), without waiting for a host change."""
        if not pending:
            self._cdi_backoff = CDI_RETRY_FIRST
            return
        if self._timers.once("cdi", self._cdi_backoff, self._outputs):
            self._cdi_backoff = min(self._cdi_backoff * 2, CDI_RETRY_MAX)

    def cancel(self) -> None:
        """Cancel every timer (shutdown)."""
        self._timers.cancel_all()

    def _holds(self) -> None:
        self._triggers.holds = True
        self._wake.set()

    def _outputs(self) -> None:
        self._triggers.outputs = True
        self._wake.set()
