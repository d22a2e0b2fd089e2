"""Conformance suites for the ports, pytest-free (in the manner of ``trio.testing.check_*``).

:func:`check_link_source` runs the same assertions against any
:class:`~sriovdp.host.links.LinkSource`: the in-memory
:class:`~sriovdp.testing.links.FakeLinkSource` and the netlink
:class:`~sriovdp.host.links.PyrouteLinkSource` (in a :class:`~sriovdp.testing.links.NetnsLab`).
Failures raise :class:`AssertionError` (explicitly, so ``python -O`` keeps them).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from sriovdp.host.links import LinkSource
from sriovdp.model.health import LinkChange, LinkState

__all__ = ["LinkDriver", "check_link_source"]


class LinkDriver(Protocol):
    """Changes the links a source watches. Methods may be plain or ``async``.

    :class:`~sriovdp.testing.links.FakeLinkSource` drives itself;
    :class:`~sriovdp.testing.links.NetnsLab` drives a real namespace.
    """

    def set_carrier(self, ifname: str, up: bool) -> Awaitable[None] | None: ...

    def rename(self, old: str, new: str) -> Awaitable[None] | None: ...

    def remove(self, ifname: str) -> Awaitable[None] | None: ...

    def inject_overflow(self) -> Awaitable[None] | None: ...


async def _do(result: Awaitable[None] | None) -> None:
    if inspect.isawaitable(result):
        await result


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


class _Watcher:
    """Reads a source's events, checking each against the consumer's own view of the links."""

    def __init__(self, source: LinkSource, timeout: float) -> None:
        self.source = source
        self.timeout = timeout
        self.view: dict[str, LinkState] = dict(source.snapshot())
        self.seen: list[LinkChange] = []
        self.resyncs = 0
        self._events: AsyncIterator[LinkChange] = source.events()

    def _check(self, change: LinkChange) -> None:
        snapshot = self.source.snapshot()
        if change.resync:
            _expect(change.ifname == "" and change.state is None,
                    f"a resync carries no link: {change}")
            self.resyncs += 1
            self.view = dict(snapshot)
            return
        name, state = change.ifname, change.state
        _expect(bool(name), f"change without a name: {change}")
        _expect(state is None or state.ifname == name, f"state names another link: {change}")
        _expect(self.view.get(name) != state,
                f"change that changes nothing: {change} (was {self.view.get(name)})")
        _expect(snapshot.get(name) == state,
                f"snapshot does not show the yielded change: {change} vs {snapshot.get(name)}")
        if state is None:
            del self.view[name]
        else:
            self.view[name] = state

    async def until(self, what: str, done: Callable[[_Watcher], bool]) -> None:
        """Consume changes until ``done(self)``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + self.timeout
        while not done(self):
            left = deadline - time.monotonic()
            try:
                change = await asyncio.wait_for(anext(self._events), max(left, 0.0))
            except TimeoutError:
                raise AssertionError(
                    f"no {what} within {self.timeout}s; changes seen: {self.seen[-10:]}"
                ) from None
            except StopAsyncIteration:
                raise AssertionError(f"events() ended while waiting for {what}") from None
            self.seen.append(change)
            self._check(change)

    async def ended(self) -> bool:
        try:
            extra = await asyncio.wait_for(anext(self._events), self.timeout)
        except StopAsyncIteration:
            return True
        except TimeoutError:
            return False
        raise AssertionError(f"change after close(): {extra}")


def _carrier(name: str, up: bool) -> Callable[[_Watcher], bool]:
    return lambda w: name in w.view and w.view[name].carrier is up


async def check_link_source(
    source: LinkSource, make_change: LinkDriver, *, ifname: str, timeout: float = 1.0
) -> list[LinkChange]:
    """Assert the link-source contract; ``source`` must not be started yet.

    Checks, in order: ``events()`` refuses to run before ``start()``; the snapshot after
    ``start()`` holds ``ifname`` with carrier and is read-only; carrier loss and return
    arrive within ``timeout`` and no change ever repeats the state the consumer already has;
    a yielded change is already in ``snapshot()``; a rename removes the old name and adds
    the new one; an overflow yields a resync after which the snapshot is right and events
    still flow; a removal yields a deletion; after ``close()`` the events end.

    Args:
        source: the implementation under test, not started.
        make_change: drives the links the source sees (may be the source itself for a fake).
        ifname: a link with a driveable carrier; it is renamed and finally removed.
        timeout: seconds each expected change may take.

    Returns:
        every change the suite consumed, for further assertions or a failure report.
    """
    try:
        await anext(source.events())
    except RuntimeError:
        pass
    else:
        raise AssertionError("events() ran before start()")

    await _do(make_change.set_carrier(ifname, True))
    await source.start()
    try:
        snapshot = source.snapshot()
        _expect(ifname in snapshot and snapshot[ifname].carrier,
                f"{ifname} missing or without carrier after start(): {snapshot.get(ifname)}")
        _expect(all(name == state.ifname for name, state in snapshot.items()),
                "snapshot keys and states disagree")
        try:
            snapshot[ifname] = snapshot[ifname]  # type: ignore[index]
        except TypeError:
            pass
        else:
            raise AssertionError("snapshot() is writable")

        w = _Watcher(source, timeout)
        await _do(make_change.set_carrier(ifname, False))
        await w.until(f"carrier loss on {ifname}", _carrier(ifname, False))
        _expect(not source.snapshot()[ifname].carrier, "snapshot still has carrier")

        await _do(make_change.set_carrier(ifname, False))  # no-op: must not yield a change
        await _do(make_change.set_carrier(ifname, True))
        await w.until(f"carrier return on {ifname}", _carrier(ifname, True))

        renamed = f"{ifname[:11]}-ren"
        await _do(make_change.rename(ifname, renamed))
        await w.until(f"rename {ifname} -> {renamed}",
                      lambda w: renamed in w.view and ifname not in w.view)
        _expect(ifname not in source.snapshot() and renamed in source.snapshot(),
                "snapshot keeps the old name or lacks the new one after a rename")
        await _do(make_change.rename(renamed, ifname))
        await w.until(f"rename back to {ifname}",
                      lambda w: ifname in w.view and renamed not in w.view)

        resyncs = w.resyncs
        await _do(make_change.inject_overflow())
        await w.until("a resync after overflow", lambda w: w.resyncs > resyncs)
        _expect(ifname in source.snapshot() and source.snapshot()[ifname].carrier,
                f"snapshot wrong after resync: {source.snapshot().get(ifname)}")
        await _do(make_change.set_carrier(ifname, False))
        await w.until(f"carrier loss on {ifname} after a resync", _carrier(ifname, False))
        await _do(make_change.set_carrier(ifname, True))
        await w.until(f"carrier return on {ifname} after a resync", _carrier(ifname, True))

        await _do(make_change.remove(ifname))
        await w.until(f"deletion of {ifname}", lambda w: ifname not in w.view)
        _expect(ifname not in source.snapshot(), "snapshot keeps a deleted link")

        await source.close()
        _expect(await w.ended(), "events() did not end after close()")
    finally:
        await source.close()  # idempotent; also on failure
    return w.seen
