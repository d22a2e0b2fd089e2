"""An in-memory :class:`~sriovdp.host.uevents.Uevents` source: the test emits the events
the kernel would send, and can make the source fail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sriovdp.errors import HostError
from sriovdp.host.uevents import Uevent


class FakeUeventSource:
    """Kernel uevents on demand (:meth:`emit`), with the port's failure behaviour."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Uevent | HostError | None] = asyncio.Queue()
        self._running = False
        self.broken = False
        """While set, :meth:`start` raises (the socket cannot be opened)."""
        self.starts = 0

    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        self.starts += 1
        if self.broken:
            raise HostError("cannot receive kernel uevents (on purpose)")
        self._queue = asyncio.Queue()
        self._running = True

    async def events(self) -> AsyncIterator[Uevent]:
        while (event := await self._queue.get()) is not None:
            if isinstance(event, HostError):
                raise event
            yield event

    async def close(self) -> None:
        self._running = False
        self._queue.put_nowait(None)

    def emit(self, action: str, subsystem: str = "pci", devpath: str = "/devices/x") -> None:
        """The kernel announces a change, e.g. ``emit("add")`` after VFs were created."""
        self._queue.put_nowait(Uevent(action, subsystem, devpath))

    def fail(self, error: str = "uevent socket failed (on purpose)") -> None:
        """The socket breaks: the pending :meth:`events` raises ``HostError``."""
        self._running = False
        self._queue.put_nowait(HostError(error))
