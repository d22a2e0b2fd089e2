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

from asyncinotify import Inotify, Mask

log = logging.getLogger("sriovdp.kubelet")

SocketEvent = Callable[[Path, str, bool], None]
_MASK = Mask.CREATE | Mask.DELETE | Mask.MOVED_FROM | Mask.MOVED_TO | Mask.DELETE_SELF | Mask.MOVE_SELF


async def watch_socket_dirs(dirs: Sequence[Path], on_event: SocketEvent, *,
                            rewatch_interval: float = 1.0) -> None:
    """Call ``on_event(dir, name, created)`` for every entry created/removed in ``dirs``.

    Runs until cancelled. A directory that is missing (or removed later) is looked for every
    ``rewatch_interval`` seconds only while it is missing; once it exists again it is watched
    and ``on_event(dir, "", True)`` reports it.
    """
    with Inotify() as inotify:
        watches: dict[Path, object] = {}
        missing: set[Path] = set()
        lost = asyncio.Event()

        def add(d: Path) -> bool:
            try:
                watches[d] = inotify.add_watch(d, _MASK)
            except OSError:
                return False
            return True

        async def rewatch() -> None:
            while True:
                if not missing:
                    lost.clear()
                    await lost.wait()
                await asyncio.sleep(rewatch_interval)
                for d in sorted(missing):
                    if add(d):
                        missing.discard(d)
                        log.info("watching %s again", d)
                        on_event(d, "", True)

        missing.update(d for d in dirs if not add(d))
        retry = asyncio.create_task(rewatch())
        try:
            async for event in inotify:
                if event.mask & (Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.IGNORED):
                    for d, w in list(watches.items()):
                        if w is event.watch:
                            del watches[d]
                            missing.add(d)
                            lost.set()
                            log.warning("socket directory %s went away", d)
                    continue
                if event.path is None or not event.name:
                    continue
                created = bool(event.mask & (Mask.CREATE | Mask.MOVED_TO))
                on_event(event.path.parent, str(event.name), created)
        finally:
            retry.cancel()
            await asyncio.gather(retry, return_exceptions=True)
