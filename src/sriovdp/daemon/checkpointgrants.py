"""The grants in the kubelet's device checkpoint that still hold a device: the file read off
the event loop with a deadline, and the running kubelet's pod resources answers noted (which
grants they showed; :mod:`sriovdp.model.grants` decides)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sriovdp.kubelet.checkpoint import Granted, KubeletCheckpoint
from sriovdp.model.grants import Grant, all_grants, grants_listed, holding
from sriovdp.model.retention import Holds
from sriovdp.threads import in_daemon_thread

log = logging.getLogger("sriovdp.daemon")


class CheckpointGrants:
    """What the kubelet's device checkpoint grants, and which of those grants hold.

    Args:
        checkpoint: the file.
        kubelet_sockets: the kubelet's ``kubelet.sock`` and pod resources socket: a new one
            of either is a new kubelet, whose answers have shown nothing yet (its pod
            resources server answers before its device manager re-creates ``kubelet.sock``).
        read_deadline: seconds a read may take before the last grants are used instead (the
            read goes on in its thread; no second one starts meanwhile).
        clock: monotonic seconds; wall: wall-clock seconds (the file's change time).
    """

    def __init__(self, checkpoint: KubeletCheckpoint, *, kubelet_sockets: Sequence[Path] = (),
                 read_deadline: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._checkpoint = checkpoint
        self._kubelet_sockets = tuple(kubelet_sockets)
        self._read_deadline = read_deadline
        self._clock = clock
        self._wall = wall
        self._reading: asyncio.Future[Granted] | None = None
        self.recorded: Granted = {}
        """The file's grants: resource → device id → pod UID."""
        self.written_at: float | None = None
        """When the file read was written (monotonic seconds; None: no file)."""
        self._listed: set[Grant] = set()
        self._kubelet: tuple[tuple[int, int] | None, ...] | None = None
        self.holds: dict[str, frozenset[str]] = {}
        """The grants that hold, as of :meth:`count`."""
        self.stuck = ""
        """Why the grants may be old: a read has not ended ("" when not)."""

    @property
    def error(self) -> str:
        """Why the file could not be read ("" when it could, or is absent)."""
        return self.stuck or self._checkpoint.error

    async def read(self) -> None:
        """Take the file's grants if it changed (a new kubelet is noted first)."""
        self._note_kubelet()
        checkpoint = self._checkpoint
        if self._reading is None:
            if not checkpoint.changed():
                return
            self._reading = asyncio.ensure_future(in_daemon_thread(checkpoint.granted))
        done, _ = await asyncio.wait({self._reading}, timeout=self._read_deadline)
        if not done:
            self.stuck = (f"reading {checkpoint.path} takes more than "
                          f"{self._read_deadline:.0f} s: its last grants are kept")
            log.warning("%s", self.stuck)
            return
        reading, self._reading, self.stuck = self._reading, None, ""
        try:
            self.recorded = reading.result()
        except Exception:  # a bug in the reader must not end the pass: last grants kept
            log.exception("reading %s failed; its last grants are kept", checkpoint.path)
            return
        written = checkpoint.written
        self.written_at = (None if written is None
                           else self._clock() - max(0.0, self._wall() - written))

    def answered(self, answer: Holds) -> None:
        """Note which grants an answer of the kubelet lists (its own answer only: never what
        a settling kubelet's answers are merged with)."""
        self._listed = (self._listed & all_grants(self.recorded)) | grants_listed(
            self.recorded, answer)

    def count(self, known: Holds, *, settling: bool) -> None:
        """Decide :attr:`holds` from the last answer ``known``."""
        self.holds = holding(self.recorded, known, self._listed, settling=settling)

    def _note_kubelet(self) -> None:
        if not self._kubelet_sockets:
            return
        kubelet = tuple(_identity(path) for path in self._kubelet_sockets)
        if kubelet != self._kubelet:
            self._kubelet = kubelet
            self._listed.clear()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # gone while the kubelet restarts: the new one gives a new identity
    return st.st_ino, st.st_ctime_ns
