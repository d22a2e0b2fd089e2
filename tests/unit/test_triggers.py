"""What wakes the reconciler's loop (real event loop, short timers)."""

from __future__ import annotations

import asyncio
import time

from sriovdp.daemon.triggers import Wakeups


async def test_triggers_arriving_together_are_taken_once_when_the_loop_wakes() -> None:
    wakeups = Wakeups()
    wakeups.take()  # the first pass's rescan
    wakeups.rescan("uevent")
    wakeups.health()
    wakeups.claims()

    await asyncio.wait_for(wakeups.wait(60), 5)
    todo = wakeups.take()

    assert (todo.rescan, todo.health, todo.claims, todo.periodic) == (True, True, True, False)
    again = wakeups.take()
    assert not (again.rescan or again.health or again.claims)


async def test_a_periodic_rescan_is_due_when_nothing_wakes_the_loop() -> None:
    wakeups = Wakeups()
    wakeups.take()

    await wakeups.wait(0.01)
    todo = wakeups.take()

    assert todo.rescan and todo.periodic


async def test_holds_are_asked_again_when_the_retry_is_due_and_still_needed() -> None:
    wakeups = Wakeups()
    wakeups.take()
    wakeups.retry_holds(time.monotonic(), still=lambda: True)

    await asyncio.wait_for(wakeups.wait(60), 5)

    assert wakeups.take().holds
    wakeups.cancel()


async def test_holds_are_not_asked_again_when_nothing_retained_needs_them() -> None:
    wakeups = Wakeups()
    wakeups.take()
    wakeups.retry_holds(time.monotonic(), still=lambda: False)

    await wakeups.wait(0.1)

    assert not wakeups.take().holds


async def test_outputs_are_retried_when_a_cdi_spec_is_pending() -> None:
    wakeups = Wakeups()
    wakeups.take()
    wakeups.retry_outputs(True)

    await asyncio.wait_for(wakeups.wait(60), 5)

    assert wakeups.take().outputs
    wakeups.cancel()
