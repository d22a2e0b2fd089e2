"""File helpers every host reader and store shares: confined opens under the host root,
bounded reads, atomic writes and file removal.

**Links stay inside the host root.** With ``--host-root /`` nothing can leave the root. With
any other root (a FakeHost tree, a copied sysfs) a path opened from the root is resolved by
the kernel as if the root were ``/`` (``openat2`` with ``RESOLVE_IN_ROOT``): an absolute link
target is re-rooted under the host root and ``..`` stops at it, just as a chroot would see
the tree. A path opened below a directory fd (``net/<if>/type`` below a PCI function) may not
leave that directory at all (``RESOLVE_BENEATH``: an absolute or escaping link fails with
``EXDEV``). Single attribute names are opened with ``O_NOFOLLOW`` (a sysfs attribute is never
a link). A kernel without ``openat2`` (before 5.6) gets plain opens and one warning.

**Reads are bounded.** :func:`read_attribute` reads one ``read`` of at most 4 KiB (a sysfs
attribute is at most a page); :meth:`HostRoot.read_bounded` stops at a limit and says so,
so a ``proc`` file linked to ``/dev/zero`` or a FIFO never hangs or fills memory (files are
opened ``O_NONBLOCK``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sriovdp.errors import HostError

log = logging.getLogger(__name__)

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: a FIFO or a character device planted in the tree must not block a read
# (sysfs attribute files ignore the flag).
FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
ATTRIBUTE_FLAGS = FILE_FLAGS | os.O_NOFOLLOW
ATTRIBUTE_SIZE = 4096

_SYS_OPENAT2 = 437  # the same number on every architecture
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_RESOLVE_IN_ROOT = 0x10
# openat2 answers EAGAIN when a rename or mount anywhere on the machine raced a ".." step
# of a confined lookup; the kernel asks callers to retry.
_EAGAIN_TRIES = 16


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _load_syscall() -> Any:
    """libc's ``syscall``, or None. No argtypes: ints, bytes and a pointer convert as they
    are, and skipping the conversion layer saves a microsecond per open."""
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    return syscall


_syscall = _load_syscall()
_HOWS: dict[tuple[int, int], Any] = {}
_HOW_SIZE = ctypes.sizeof(_OpenHow)
_openat2_missing_logged = False


def _openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int | None:
    """``openat2(dir_fd, path, {flags, resolve})``; None when the kernel lacks the call.

    Raises:
        OSError: from the open (``EXDEV`` for a link that leaves ``dir_fd``'s tree).
    """
    if _syscall is None:
        return None
    how = _HOWS.get((flags, resolve))
    if how is None:
        how = _HOWS[flags, resolve] = ctypes.pointer(
            _OpenHow(flags, 0, resolve | _RESOLVE_NO_MAGICLINKS))
    raw = os.fsencode(path)
    fd: int = _syscall(_SYS_OPENAT2, dir_fd, raw, how, _HOW_SIZE)
    if fd >= 0:
        return fd
    return _openat2_failed(dir_fd, raw, how, path)


def _openat2_failed(dir_fd: int, raw: bytes, how: Any, path: str) -> int | None:
    """After a failed ``openat2``: retry on EAGAIN, None without the call, else raise."""
    global _openat2_missing_logged
    err = ctypes.get_errno()
    for _ in range(_EAGAIN_TRIES):
        if err != errno.EAGAIN:
            break
        fd: int = _syscall(_SYS_OPENAT2, dir_fd, raw, how, _HOW_SIZE)
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM):
        if not _openat2_missing_logged:
            _openat2_missing_logged = True
            log.warning("openat2 is not available (%s): links under the host root are not "
                        "confined to it", os.strerror(err))
        return None
    raise OSError(err, os.strerror(err), path)


class HostRoot:
    """The host root, opened once: confined opens of paths relative to it.

    Use as a context manager (it holds a directory fd on the root)::

        with HostRoot(Path("/tmp/fakehost")) as root:
            fd = root.open_dir("sys/bus/pci/devices")
    """

    def __init__(self, root: Path) -> None:
        self.path = root
        self.confined = os.path.realpath(root) != "/"
        self._fd = os.open(root, DIR_FLAGS) if self.confined else -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def open(self, rel: str, flags: int = FILE_FLAGS) -> int:
        """Open ``rel`` (relative to the root, links re-rooted under it).

        Raises:
            OSError: from the open.
        """
        if self.confined:
            fd = _openat2(self._fd, rel, flags, _RESOLVE_IN_ROOT)
            if fd is not None:
                return fd
        return os.open(self.path / rel, flags)

    def open_dir(self, rel: str) -> int:
        """:meth:`open` of a directory."""
        return self.open(rel, DIR_FLAGS)

    def open_at(self, dir_fd: int, name: str, rel: str, flags: int = FILE_FLAGS) -> int:
        """Open ``name`` below ``dir_fd``, which is ``rel`` from the root: unconfined, a plain
        ``openat`` (the fast path); confined, ``rel`` resolved from the root (links in it
        re-rooted).

        Raises:
            OSError: from the open.
        """
        if self.confined:
            fd = _openat2(self._fd, rel, flags, _RESOLVE_IN_ROOT)
            if fd is not None:
                return fd
        return os.open(name, flags, dir_fd=dir_fd)

    def exists(self, rel: str) -> bool:
        """Whether ``rel`` exists (a dangling or escaping link does not)."""
        try:
            os.close(self.open(rel, os.O_PATH | os.O_CLOEXEC))
        except OSError:
            return False
        return True

    def open_beneath(self, dir_fd: int, rel: str, flags: int = FILE_FLAGS) -> int:
        """Open ``rel`` below ``dir_fd`` without leaving that directory's tree.

        Raises:
            OSError: from the open; ``EXDEV`` when a link would leave the directory.
        """
        if self._fd >= 0:
            fd = _openat2(dir_fd, rel, flags, _RESOLVE_BENEATH)
            if fd is not None:
                return fd
        return os.open(rel, flags, dir_fd=dir_fd)

    def read_bounded(self, rel: str, limit: int) -> tuple[bytes, bool]:
        """Up to ``limit`` bytes of ``rel`` and whether there was more; ``(b"", False)`` when
        it cannot be opened or read."""
        try:
            fd = self.open(rel)
        except OSError:
            return b"", False
        try:
            return read_fd_bounded(fd, limit)
        except OSError:
            return b"", False
        finally:
            os.close(fd)


def read_fd_bounded(fd: int, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes from ``fd`` and whether there was more.

    Raises:
        OSError: from the read (``EAGAIN`` for an empty FIFO).
    """
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = os.read(fd, min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit], True


def read_attribute(dir_fd: int, name: str) -> bytes | None:
    """One attribute file below ``dir_fd`` (at most 4 KiB, ``O_NOFOLLOW``); None when missing.

    Raises:
        OSError: it exists but cannot be read (``ELOOP`` when it is a link).
    """
    try:
        fd = os.open(name, ATTRIBUTE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, ATTRIBUTE_SIZE)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, mode: int, dir_mode: int = 0o755,
                     durable: bool = False) -> None:
    """Replace ``path`` with ``data`` (file mode ``mode``) through a temp file and a rename.

    The temp file is ``<name>.<random>.tmp`` in the same directory, removed on failure.
    A missing directory is created (parents too) and given ``dir_mode``.

    ``durable``: for files on persistent disk (the DRA claim checkpoint), the temp file is
    fsync'd before the rename and the directory after it, so a power loss leaves the old
    file or the new one, never an empty or cut-short one. Without it (tmpfs files under
    ``/var/run``, which a crash empties anyway, written on hot paths such as Allocate), no
    fsync.

    Raises:
        OSError: from the file system.
    """
    directory = path.parent
    if not directory.is_dir():
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, dir_mode)  # not subject to the umask, unlike mkdir's mode
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        dir_fd = os.open(directory, DIR_FLAGS)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_file(path: Path, what: str) -> bool:
    """Delete ``path``; False when it did not exist.

    Raises:
        HostError: it exists but cannot be deleted (the message names ``what`` and the path).
    """
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise HostError(f"cannot remove {what} {path}: {exc.strerror or exc}") from exc
    return True
