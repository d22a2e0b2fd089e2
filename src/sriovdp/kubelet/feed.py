"""A latest-value mailbox: one writer publishes, any number of readers see the newest value.

Readers never block the writer and never queue: a reader that was busy when several values
were published sees only the newest (coalescing), which is what a ListAndWatch stream wants.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestValue(Generic[T]):
    """Holds the current value; ``watch()`` yields it now and after every change."""

    def __init__(self, value: T, *, ready: bool = True) -> None:
        """``ready=False``: ``value`` is a placeholder; readers wait for the first publish."""
        self._value = value
        self._version = 0 if ready else -1
        self._closed = False
        self._changed = asyncio.Event()

    @property
    def value(self) -> T:
        return self._value

    @property
    def ready(self) -> bool:
        """A value has been published (or was given as ready)."""
        return self._version >= 0

    def publish(self, value: T) -> None:
        """Replace the value and wake every reader."""
        self._value = value
        self._version = max(self._version, 0) + 1
        self._wake()

    def close(self) -> None:
        """End every ``watch()`` iteration (the endpoint is going away)."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def watch(self) -> AsyncIterator[T]:
        """Yield the current value, then each newer one, until :meth:`close`."""
        seen = -1
        while not self._closed:
            if self._version >= 0 and self._version != seen:
                seen = self._version
                yield self._value
                continue
            await self._changed.wait()
