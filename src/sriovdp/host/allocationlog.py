"""AllocationLog: the daemon's own record of its recent Allocates, so that the next process
(a restart, a rolling update) knows what was granted just before it started.

The kubelet records a grant (pod resources, its device checkpoint) only once every resource
of the container is allocated; while another plugin's Allocate is slow, this record is the
only trace of ours. One line per Allocate container request, appended with one ``write``:
``<wall seconds> <resource name> <id>,<id>...``. The file is ``.sriovdp-allocations`` in the
device-info directory (kept across daemon restarts, emptied by a node reboot; CNI plugins
read only ``*-device.json`` names there). Once it passes :data:`ROTATE_BYTES` and its first
line is older than ``keep`` seconds it becomes ``.sriovdp-allocations.1`` (replacing the one
before, whose lines are older still) and a new file starts, so every line younger than
``keep`` stays readable. Reads are bounded (:data:`READ_LIMIT` per file) and skip lines
they cannot parse.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sriovdp.errors import HostError
from sriovdp.host.files import read_fd_bounded

FILE_NAME = ".sriovdp-allocations"
ROTATE_BYTES = 64 * 1024
READ_LIMIT = 16 * 1024 * 1024
FILE_MODE = 0o600
DIR_MODE = 0o755


class AllocationLog:
    """Append-only record of Allocates in ``directory``.

    Example::

        log = AllocationLog(Path("/var/run/k8s.cni.cncf.io/devinfo/dp"))
        log.record("intel.com/sriov_net", ["0000:3b:02.1"])
        log.since(time.time() - 60)  # {"intel.com/sriov_net": {"0000:3b:02.1": 1.7e9}}
    """

    def __init__(self, directory: Path, *, keep: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = directory / FILE_NAME
        self._keep = keep
        self._clock = clock
        self._fd: int | None = None
        self._size = 0
        self._first: float | None = None  # wall time of the open file's first line

    def record(self, resource: str, ids: Sequence[str]) -> None:
        """Append one Allocate's grant.

        Raises:
            HostError: the file cannot be opened or written (the message names it).
        """
        now = self._clock()
        line = f"{now:.6f} {resource} {','.join(dict.fromkeys(ids))}\n".encode()
        try:
            fd = self._fd if self._fd is not None else self._open()
            os.write(fd, line)
        except OSError as exc:
            self.close()
            raise HostError(f"cannot record the allocation in {self.path}: "
                            f"{exc.strerror or exc}") from exc
        self._size += len(line)
        if self._first is None:
            self._first = now
        if self._size > ROTATE_BYTES and now - self._first > self._keep:
            self._rotate()

    def since(self, wall: float) -> dict[str, dict[str, float]]:
        """What was recorded at ``wall`` (seconds since the epoch) or later, by this or an
        earlier process: resource name → device id → when (the latest)."""
        out: dict[str, dict[str, float]] = {}
        for path in (self.path.with_name(FILE_NAME + ".1"), self.path):
            for when, resource, ids in _lines(_read(path)):
                if when >= wall:
                    grants = out.setdefault(resource, {})
                    for dev_id in ids:
                        grants[dev_id] = max(when, grants.get(dev_id, when))
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        directory = self.path.parent
        if not directory.is_dir():
            os.makedirs(directory, exist_ok=True)
            os.chmod(directory, DIR_MODE)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC | os.O_NONBLOCK, FILE_MODE)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise OSError(f"{self.path} is not a regular file")
        self._fd, self._size = fd, st.st_size
        first = next(iter(_lines(_read(self.path, limit=4096))), None)
        self._first = first[0] if first is not None else None
        return fd

    def _rotate(self) -> None:
        self.close()
        try:
            os.replace(self.path, self.path.with_name(FILE_NAME + ".1"))
        except OSError:
            return  # the next record appends on; rotation is tried again after it
        self._size, self._first = 0, None


def _read(path: Path, *, limit: int = READ_LIMIT) -> bytes:
    """Up to ``limit`` bytes of a regular file (b"" when missing, odd or unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return read_fd_bounded(fd, limit)[0]
    except OSError:
        return b""
    finally:
        os.close(fd)


def _lines(data: bytes) -> list[tuple[float, str, list[str]]]:
    """(when, resource, ids) of each well-formed line."""
    out = []
    for raw in data.decode(errors="replace").splitlines():
        parts = raw.split(" ")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            continue
        try:
            when = float(parts[0])
        except ValueError:
            continue
        if when == when and when not in (float("inf"), float("-inf")):
            out.append((when, parts[1], parts[2].split(",")))
    return out


__all__ = ["FILE_NAME", "AllocationLog"]
