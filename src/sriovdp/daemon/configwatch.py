"""Notice changes of the config file without polling.

The directory holding the file is watched with inotify: an editor's write, a rename over
the file, and a Kubernetes ConfigMap update (the kubelet writes a new ``..<timestamp>`` dir
and renames the ``..data`` symlink over the old one; ``config.json`` itself is a symlink to
``..data/config.json`` and never changes) all show up as events there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from asyncinotify import Inotify, Mask

log = logging.getLogger("sriovdp.daemon")

_MASK = (Mask.CREATE | Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.DELETE
         | Mask.DELETE_SELF | Mask.MOVE_SELF)


async def watch_config_file(path: Path, on_change: Callable[[str], None], *,
                            rewatch_interval: float = 2.0) -> None:
    """Call ``on_change(reason)`` whenever ``path`` (or the ConfigMap's ``..data``) changes.

    Runs until cancelled. If the directory is missing it is looked for every
    ``rewatch_interval`` seconds until it exists.
    """
    directory = path.parent
    relevant = {path.name, "..data"}
    watched_before = False
    while True:
        try:
            with Inotify() as inotify:
                inotify.add_watch(directory, _MASK)
                if watched_before:  # the directory was replaced: its file may be new too
                    on_change(f"{directory} re-created")
                watched_before = True
                async for event in inotify:
                    if event.mask & (Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.IGNORED):
                        log.warning("config directory %s went away", directory)
                        break
                    if event.name is not None and str(event.name) in relevant:
                        on_change(f"{directory / str(event.name)} changed")
        except OSError as exc:
            log.debug("cannot watch %s (%s); retrying", directory, exc)
        await asyncio.sleep(rewatch_interval)
