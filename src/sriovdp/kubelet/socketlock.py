"""Which sriovdp instance owns a pool's socket: an ``flock`` on a lock file beside it.

Two instances on one node (a DaemonSet rolling update with ``maxSurge``, or someone running
the daemon by hand) would otherwise delete and re-create each other's sockets. The lock file
is ``.<socket name>.lock`` in the socket's directory (a dot-file: the kubelet's plugin watcher
skips it, and current kubelets clean up only sockets in ``device-plugins/``). The kernel drops
the lock when its holder exits, however it exits; the file holds the holder's pid for logs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path


class SocketLock:
    """An exclusive, non-blocking ``flock`` on ``.<socket name>.lock`` beside ``socket_path``."""

    def __init__(self, socket_path: Path, *, instance: InstanceLock | None = None) -> None:
        self.path = socket_path.parent / f".{socket_path.name}.lock"
        self._fd: int | None = None
        self._instance = instance
        """The node-wide lock of this daemon instance (:func:`instance_lock`), taken first:
        two instances whose pools differ (a rollout that changes ``--resource-prefix`` or the
        config) would otherwise each own different sockets and offer one VF twice."""

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True when this process holds it now."""
        if self._fd is not None:
            return True
        if self._instance is not None and not self._instance.try_acquire():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if not self._same_file(fd):  # unlinked by a releasing holder after we opened it
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    @property
    def valid(self) -> bool:
        """We hold the lock and the file at ``path`` is still the one we locked."""
        return self._fd is not None and self._same_file(self._fd)

    def release(self) -> None:
        """Let go; the lock file is removed only while it is still ours."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._same_file(fd):
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(fd)

    def holder(self) -> str:
        """The pid written by the current holder, for log lines ("unknown" if unreadable)."""
        if self._instance is not None and not self._instance.held:
            return self._instance.holder()
        try:
            text = self.path.read_text(errors="replace").strip()
        except OSError:
            return "unknown"
        return text[:16] if text.isdigit() else "unknown"

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False


LOCK_DIR = ".sriovdp"
"""The directory of the instance lock files (``.sriovdp/.instance.lock``)."""


class InstanceLock:
    """The lock one daemon instance holds while it serves anything: ``.sriovdp/.instance.lock``
    in each of ``dirs`` (and the ``.sriovdp.lock`` of earlier versions), taken in order and
    all or none.

    A second instance serves nothing until the first has exited, whatever either one's
    registration mode, prefix or config (each would otherwise offer the VFs it sees).
    """

    def __init__(self, dirs: Iterable[Path]) -> None:
        unique = list(dict.fromkeys(dirs))
        # in a dot-directory: kubelets before the socket-only clean-up delete every file
        # but their checkpoint in device-plugins/ when they start, never a directory (and
        # the plugin watcher ignores dot-names); then where earlier versions took it
        self._locks = [SocketLock(d / LOCK_DIR / "instance") for d in unique] + [
            SocketLock(d / "sriovdp") for d in unique]
        self._blocked = 0  # the lock the last failed attempt could not take

    @property
    def held(self) -> bool:
        return all(lock.held for lock in self._locks)

    @property
    def valid(self) -> bool:
        return all(lock.valid for lock in self._locks)

    def try_acquire(self) -> bool:
        """Take every lock, or none; True when this process holds them all now."""
        for i, lock in enumerate(self._locks):
            if not lock.try_acquire():
                self._blocked = i
                for taken in reversed(self._locks[:i]):
                    taken.release()
                return False
        return True

    def release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()

    def holder(self) -> str:
        """The pid of the instance holding the lock the last attempt could not take
        ("unknown" if unreadable)."""
        return str(os.getpid()) if self.held else self._locks[self._blocked].holder()


def instance_lock(device_plugin_dir: Path, socket_dir: Path) -> InstanceLock:
    """The node-wide lock of a daemon instance: in ``device-plugins/`` (every kubelet has it,
    in either registration mode) and, in watcher mode, in the plugin registry too (where
    earlier versions took it, so an older instance in a rolling update is waited for)."""
    return InstanceLock([device_plugin_dir, socket_dir])
