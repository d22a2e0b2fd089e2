"""Every background task of the daemon has an owner: one :class:`asyncio.TaskGroup`.

A supervised task that raises (or, for one meant to run forever, ends) is logged with its
error, named in :attr:`Supervisor.failures` (``/readyz`` shows it) and started again after a
back-off (0.1 s doubling to 5 s; reset after a minute of good running). A task reports that
it is up by calling the ``ready`` callback it is given; that clears its failure and sets
its readiness event, which tests and the reconciler wait on instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Self

log = logging.getLogger("sriovdp.daemon")

Ready = Callable[[], None]
TaskFactory = Callable[[Ready], Coroutine[Any, Any, None]]


class Supervisor:
    """Owns named tasks; use as ``async with`` (leaving cancels and awaits every task).

    Args:
        first_backoff: seconds before the first restart of a failed task.
        max_backoff: the longest wait between restarts.
    """

    def __init__(self, *, first_backoff: float = 0.1, max_backoff: float = 5.0) -> None:
        self._group = asyncio.TaskGroup()
        self._tasks: dict[str, asyncio.Task[None]] = {}  # the latest task of each name
        self._all: set[asyncio.Task[None]] = set()
        self._ready: dict[str, asyncio.Event] = {}
        self._first = first_backoff
        self._max = max_backoff
        self.failures: dict[str, str] = {}
        """Task name → its last error, while it is failed (restarting, not yet ready)."""
        self.restarts: dict[str, int] = {}
        """Task name → how many times it failed (and was started again)."""

    async def __aenter__(self) -> Self:
        await self._group.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        for task in self._all:
            task.cancel()
        await self._group.__aexit__(exc_type, exc, tb)

    def start(self, name: str, factory: TaskFactory, *, forever: bool = True) -> None:
        """Run ``factory(ready)`` as task ``name``, restarted when it fails.

        ``forever``: the task must never end; ending counts as a failure. Otherwise
        ending normally is done (an endpoint that was stopped).
        """
        event = self._ready.setdefault(name, asyncio.Event())
        event.clear()
        task = self._group.create_task(self._guard(name, factory, forever), name=name)
        self._tasks[name] = task
        self._all.add(task)
        task.add_done_callback(self._all.discard)

    def ready_event(self, name: str) -> asyncio.Event:
        """Set once task ``name`` reported ready (cleared while it is failed)."""
        return self._ready.setdefault(name, asyncio.Event())

    def running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    async def cancel(self, name: str) -> None:
        """Cancel task ``name`` and wait for it to end."""
        task = self._tasks.pop(name, None)
        self.failures.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def wait(self, names: list[str], timeout: float) -> list[str]:
        """Wait up to ``timeout`` s for the named tasks to end; the names still running."""
        tasks = [self._tasks[n] for n in names if n in self._tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return [n for n in names if n in self._tasks and not self._tasks[n].done()]

    async def _guard(self, name: str, factory: TaskFactory, forever: bool) -> None:
        loop = asyncio.get_running_loop()
        delay = self._first
        event = self._ready[name]

        def ready() -> None:
            self.failures.pop(name, None)
            event.set()

        while True:
            started = loop.time()
            try:
                await factory(ready)
                if not forever:
                    return
                error = "ended unexpectedly"
            except Exception as exc:  # never silent: logged, shown, restarted
                error = f"{type(exc).__name__}: {exc}"
                log.error("%s failed: %s; restarting in %.1f s", name, error, delay,
                          exc_info=exc)
            else:
                log.error("%s %s; restarting in %.1f s", name, error, delay)
            event.clear()
            self.failures[name] = error
            self.restarts[name] = self.restarts.get(name, 0) + 1
            if loop.time() - started > 60:
                delay = self._first
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max)

