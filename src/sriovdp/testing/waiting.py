"""Wait on a condition instead of sleeping: tests poll what they can observe."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], T | Awaitable[T]], *, timeout: float = 5.0,
                     interval: float = 0.02, what: str = "") -> T:
    """Call ``check`` until it returns a truthy value and return that value.

    ``check`` may be a plain or an async function. An ``AssertionError`` it raises counts as
    "not yet" (so a check can assert with a message); the last one is re-raised at the
    deadline.

    Raises:
        TimeoutError: ``check`` stayed falsy for ``timeout`` seconds (naming ``what``).
        AssertionError: the last assertion ``check`` raised, at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        last: AssertionError | None = None
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value  # type: ignore[return-value]
        except AssertionError as exc:
            last = exc
        if time.monotonic() >= deadline:
            if last is not None:
                raise last
            raise TimeoutError(f"not true within {timeout} s: {what or check!r}")
        await asyncio.sleep(interval)
