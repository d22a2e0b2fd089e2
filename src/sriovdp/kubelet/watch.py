"""inotify watch of the kubelet's socket directories (no polling).

The kubelet signals its restart by deleting every socket in ``device-plugins/`` and creating
a new ``kubelet.sock``; an operator or a cleanup job may delete a plugin socket in either
directory. Each event is handed to a callback as (directory, file name, created?).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from asyncinotify import Event, Inotify, Mask

log = logging.getLogger("sriovdp.kubelet")

SocketEvent = Callable[[Path, str, bool], None]
_GONE = Mask.DELETE_SELF | Mask.MOVE_SELF
_MASK = Mask.CREATE | Mask.DELETE | Mask.MOVED_FROM | Mask.MOVED_TO | _GONE


async def watch_socket_dirs(dirs: Sequence[Path], on_event: SocketEvent, *,
                            rewatch_interval: float = 1.0) -> None:
    """Call ``on_event(dir, name, created)`` for every entry created/removed in ``dirs``.

    Runs until cancelled. A directory that is missing (or removed later) is looked for every
    ``rewatch_interval`` seconds only while it is missing; once it exists again it is watched
    and ``on_event(dir, "", True)`` reports it.
    """
    with Inotify() as inotify:
        watch = _DirWatches(inotify, on_event)
        watch.missing.update(d for d in dirs if not watch.add(d))
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(watch.rewatch(rewatch_interval))
            async for event in inotify:
                watch.handle(event)


class _DirWatches:
    """The watched directories of one :func:`watch_socket_dirs` call, and the missing ones."""

    def __init__(self, inotify: Inotify, on_event: SocketEvent) -> None:
        self._inotify = inotify
        self._on_event = on_event
        self.watches: dict[Path, object] = {}
        self.missing: set[Path] = set()
        self._lost = asyncio.Event()

    def add(self, d: Path) -> bool:
        """Watch ``d``; False when it cannot be watched (missing)."""
        try:
            self.watches[d] = self._inotify.add_watch(d, _MASK)
        except OSError:
            return False
        return True

    async def rewatch(self, interval: float) -> None:
        """Look for missing directories every ``interval`` s while any is missing."""
        while True:
            if not self.missing:
                self._lost.clear()
                await self._lost.wait()
            await asyncio.sleep(interval)
            for d in sorted(self.missing):
                if self.add(d):
                    self.missing.discard(d)
                    log.info("watching %s again", d)
                    self._on_event(d, "", True)

    def handle(self, event: Event) -> None:
        """Report an entry created or removed; note a watched directory that went away."""
        if event.mask & (_GONE | Mask.IGNORED):
            self._lose(event.watch)
        elif event.path is not None and event.name:
            created = bool(event.mask & (Mask.CREATE | Mask.MOVED_TO))
            self._on_event(event.path.parent, str(event.name), created)

    def _lose(self, watch: object) -> None:
        for d, w in list(self.watches.items()):
            if w is watch:
                del self.watches[d]
                self.missing.add(d)
                self._lost.set()
                log.warning("socket directory %s went away", d)
