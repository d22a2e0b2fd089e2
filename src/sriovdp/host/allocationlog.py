"""AllocationLog: the daemon's own record of its recent Allocates, so that the next process
(a restart, a rolling update) knows what was granted just before it started.

The kubelet writes a grant to its device checkpoint only once every resource of the
container is allocated (unless something else makes it write), and pod resources never list
a plain init container's; while another plugin's Allocate is slow, this record is the only
trace of ours. One line per Allocate container request, appended with one ``write``:
``<boot seconds> <resource name> <id>,<id>...``, stamped with ``CLOCK_BOOTTIME`` (a step of
the wall clock does not age a line; the directory's tmpfs is emptied at boot anyway). The
file is ``.sriovdp-allocations`` in the device-info directory (kept across daemon restarts;
CNI plugins read only ``*-device.json`` names there). Once it passes :data:`ROTATE_BYTES`
and its first line is older than ``keep`` seconds it becomes ``.sriovdp-allocations.1``
(replacing the one before, whose lines are older still) and a new file starts, so every
line younger than ``keep`` stays readable. Reads are bounded (:data:`READ_LIMIT` per file)
and skip lines they cannot parse. A file removed or replaced under the daemon is opened
again at the next record; a write that stores only part of a line is an error, and the next
line starts on a line of its own.
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


def _boot_time() -> float:
    """Seconds since boot, suspend included (``CLOCK_BOOTTIME``): never steps."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class AllocationLog:
    """Append-only record of Allocates in ``directory``.

    Example::

        log = AllocationLog(Path("/var/run/k8s.cni.cncf.io/devinfo/dp"))
        log.record("intel.com/sriov_net", ["0000:3b:02.1"])
        log.recent(60.0)  # {"intel.com/sriov_net": {"0000:3b:02.1": 0.002}}: seconds ago
    """

    def __init__(self, directory: Path, *, keep: float = 60.0,
                 clock: Callable[[], float] = _boot_time) -> None:
        self.path = directory / FILE_NAME
        self._keep = keep
        self._clock = clock
        self._fd: int | None = None
        self._size = 0
        self._first: float | None = None  # boot time of the open file's first line
        self._pad = b""  # b"\n" when the open file does not end with a whole line
        self.error = ""
        """Why the last record failed ("" once one succeeds)."""

    def record(self, resource: str, ids: Sequence[str]) -> None:
        """Append one Allocate's grant.

        Raises:
            HostError: the file cannot be opened or written (the message names it).
        """
        now = self._clock()
        line = f"{now:.6f} {resource} {','.join(dict.fromkeys(ids))}\n".encode()
        try:
            if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
                self.close()  # removed or replaced under us: its lines are in no file
            fd = self._fd if self._fd is not None else self._open()
            data = self._pad + line
            written = os.write(fd, data)
            if written != len(data):
                self._size += written
                raise OSError(f"only {written} of {len(data)} bytes written (file system "
                              "full?)")
        except OSError as exc:
            self.close()
            self.error = (f"cannot record the allocation in {self.path}: "
                          f"{exc.strerror or exc}")
            raise HostError(self.error) from exc
        self.error, self._pad = "", b""
        self._size += len(data)
        if self._first is None:
            self._first = now
        if self._size > ROTATE_BYTES and now - self._first > self._keep:
            self._rotate()

    def recent(self, max_age: float) -> dict[str, dict[str, float]]:
        """What was recorded in the last ``max_age`` seconds, by this or an earlier process:
        resource name → device id → seconds since (the latest record; a line stamped after
        now, from an earlier boot, counts as just made)."""
        now = self._clock()
        out: dict[str, dict[str, float]] = {}
        for path in (self.path.with_name(FILE_NAME + ".1"), self.path):
            for when, resource, ids in _lines(_read(path)):
                age = max(0.0, now - when)
                if age <= max_age:
                    grants = out.setdefault(resource, {})
                    for dev_id in ids:
                        grants[dev_id] = min(age, grants.get(dev_id, age))
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
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC | os.O_NONBLOCK, FILE_MODE)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise OSError(f"{self.path} is not a regular file")
        self._fd, self._size = fd, st.st_size
        first = next(iter(_lines(_read(self.path, limit=4096))), None)
        self._first = first[0] if first is not None else None
        self._pad = b"\n" if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n" else b""
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
