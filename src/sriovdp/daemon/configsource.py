"""ConfigSource: the config the daemon serves, reloads, and the last good config.

A reload reads the file (non-blocking, bounded: :func:`read_config_bytes`) on the event
loop and parses it in a worker thread, so a large or hostile file never stalls the gRPC
servers. A config that fails to parse (or to pass the deployment checks) is logged and the
last good one kept; the same bytes are not parsed twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sriovdp.daemon.configfile import load_config, read_config_bytes
from sriovdp.daemon.settings import Settings
from sriovdp.errors import ConfigError
from sriovdp.model.config import Config
from sriovdp.threads import in_daemon_thread

log = logging.getLogger("sriovdp.daemon")


class ConfigSource:
    """The current config and its reloads.

    Args:
        settings: where the file is and what the checks need.
        config: the config the daemon started with (already valid).
        socket_dir: where pool sockets live (socket path length check).
        on_applied: called with a reason after a new config is applied.
        reloads: counter of reload results (``ok``/``failed``), e.g. the metrics' one.
    """

    def __init__(self, settings: Settings, config: Config, socket_dir: Path, *,
                 on_applied: Callable[[str], None],
                 reloads: Counter[str] | None = None) -> None:
        self.settings = settings
        self.config = config
        self._socket_dir = socket_dir
        self._on_applied = on_applied
        self.reloads: Counter[str] = reloads if reloads is not None else Counter()
        self._bytes: bytes | None = None
        self._pending: tuple[bytes, str] | None = None
        self._wake = asyncio.Event()
        self._rejected = ""  # the first problem of the file's bytes when they were rejected
        self.idle = asyncio.Event()
        """Set while no reload waits or runs (tests wait on it)."""
        self.idle.set()

    def prime(self) -> None:
        """Remember the file's bytes at start, so an unchanged file is not re-parsed."""
        try:
            self._bytes = read_config_bytes(self.settings.config_file)
        except ConfigError:
            self._bytes = None

    def request(self, reason: str) -> bool:
        """Re-read the file; when its bytes changed, queue a parse (:meth:`run` applies it).

        Returns:
            True when a parse was queued; False when the file is unchanged or unreadable
            (logged; the last good config stays).
        """
        try:
            content = read_config_bytes(self.settings.config_file)
        except ConfigError as exc:
            log.error("config reload (%s): %s; keeping the last good config", reason,
                      exc.problems[0], extra={"problems": [exc.problems[0].record()]})
            self.reloads["failed"] += 1
            return False
        if content == self._bytes:
            if self._rejected:  # asked again (SIGHUP) to see why the file is not in effect
                log.warning("config reload (%s): %s is unchanged since it was rejected (%s); "
                            "keeping the last good config", reason,
                            self.settings.config_file, self._rejected)
            return False
        self._bytes, self._rejected = content, ""
        self._pending = (content, reason)
        self.idle.clear()
        self._wake.set()
        return True

    def request_soon(self, reason: str) -> None:
        """:meth:`request` for callbacks that expect no result (the file watcher)."""
        self.request(reason)

    async def run(self, ready: Callable[[], None]) -> None:
        """Parse and apply queued reloads, newest first, one at a time (supervised)."""
        ready()
        while True:
            if self._pending is None:
                self.idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            content, reason = self._pending
            self._pending = None
            try:
                config = await in_daemon_thread(self._parse, content)
            except ConfigError as exc:
                self.reloads["failed"] += 1
                more = len(exc.problems) - 1
                self._rejected = str(exc.problems[0]) + (f"; {more} more" if more else "")
                for problem in exc.problems:
                    log.error("config reload rejected, keeping the last good config: %s: %s",
                              self.settings.config_file, problem,
                              extra={"problems": [problem.record()]})
                continue
            if self._pending is not None:
                continue  # a newer file arrived meanwhile: that one wins
            for warning in config.warnings:
                log.warning("config %s: %s", self.settings.config_file, warning,
                            extra={"problems": [warning.record("warning")]})
            self.config = config
            self.reloads["ok"] += 1
            count = len(config.resources)
            log.info("config reloaded (%s): %d resource%s", reason, count,
                     "" if count == 1 else "s")
            self._on_applied("config reloaded")

    def _parse(self, content: bytes) -> Config:
        return load_config(self.settings.config_file,
                           default_prefix=self.settings.resource_prefix,
                           use_cdi=self.settings.use_cdi, socket_dir=self._socket_dir,
                           text=content, dra=self.settings.dra)
