"""Small readers of sysfs attributes relative to a directory fd, and the scan's shared names.

Each returns None (or a default) for a missing file and raises :class:`OSError` for one that
exists but cannot be read; the facet readers turn that into a :class:`Skip` (the function is
left out with a reason) or a log line (an optional facet is left out).
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Callable

from sriovdp.host.files import DIR_FLAGS, read_attribute

# One logger for every facet of the scan: operators filter on "sriovdp.host.sysfs".
log = logging.getLogger("sriovdp.host.sysfs")

# sysfs names PCI functions "dddd:bb:ss.f" in lower case; domains above ffff (Intel VMD)
# have five digits.
PCI_NAME_RE = re.compile(r"[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\Z")
# Names handed to containers (RDMA devices and char devices, vhost-vdpa nodes).
SAFE_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+\Z")
_HEX4_RE = re.compile(rb"0x([0-9A-Fa-f]{4})\Z")

_SUBDIR_FLAGS = DIR_FLAGS | os.O_NOFOLLOW

# ``(dir_fd, path below it) -> fd``: :meth:`sriovdp.host.files.HostRoot.open_beneath`.
OpenBeneath = Callable[[int, str], int]


class Skip(Exception):
    """Raised inside one device's read: skip it with this reason."""


def reason(attr: str, exc: OSError) -> str:
    """Why one device is skipped: attribute ``attr`` raised ``exc``."""
    if exc.errno == errno.EINVAL:
        return f"{attr} is not a symlink"
    if exc.errno == errno.ENOENT:
        return f"{attr} vanished during scan"
    if exc.errno == errno.ELOOP:
        return f"{attr} is a link, not a file"
    if exc.errno == errno.EXDEV:
        return f"{attr} leads out of its directory"
    return f"cannot read {attr}: {exc.strerror}"


def basename(link_target: str) -> str:
    """Last component of a link target.

    Raises:
        OSError: EILSEQ when the name is not valid UTF-8 (os.readlink hands such bytes back
            as surrogate escapes, which could not be sent to the kubelet or logged).
    """
    name = link_target.rstrip("/").rpartition("/")[2]
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise OSError(errno.EILSEQ, f"link target {name!r} is not valid UTF-8") from None
    return name


read = read_attribute


def parse_int(raw: bytes) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


def read_int(dir_fd: int, name: str) -> int | None:
    raw = read_attribute(dir_fd, name)
    return None if raw is None else parse_int(raw)


def read_hex(dir_fd: int, name: str) -> int | None:
    """``0x020000`` → 0x020000; None when missing or not hex."""
    raw = read_attribute(dir_fd, name)
    if raw is None:
        return None
    try:
        return int(raw, 16)
    except ValueError:
        return None


def read_id(dir_fd: int, name: str) -> str | None:
    """``vendor``/``device`` file ``0x8086`` → ``"8086"``; None when missing or malformed."""
    raw = read_attribute(dir_fd, name)
    if raw is None:
        return None
    m = _HEX4_RE.match(raw.strip())
    return m[1].decode().lower() if m else None


def readlink_name(dir_fd: int, name: str) -> str | None:
    """Basename of symlink ``name``'s target (dangling is fine); None when absent.

    Raises:
        OSError: EINVAL when ``name`` exists but is not a symlink.
    """
    try:
        return basename(os.readlink(name, dir_fd=dir_fd))
    except FileNotFoundError:
        return None


def read_quiet(dir_fd: int, name: str, open_beneath: OpenBeneath) -> bytes:
    """Trimmed content of ``name`` (a path below ``dir_fd``), ``b""`` when missing or
    unreadable (EOPNOTSUPP ...)."""
    try:
        fd = open_beneath(dir_fd, name)
    except OSError:
        return b""
    try:
        return os.read(fd, 4096).strip()
    except OSError:
        return b""
    finally:
        os.close(fd)


def list_dir(dir_fd: int, name: str) -> list[str]:
    """Entries of subdirectory ``name`` (not a link); ``[]`` when it does not exist."""
    try:
        fd = os.open(name, _SUBDIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return []
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def read_link_parts(dir_fd: int, name: str) -> list[str] | None:
    """Link ``name``'s target split on ``/`` (trailing slash dropped); None if unreadable."""
    try:
        return os.readlink(name, dir_fd=dir_fd).rstrip("/").split("/")
    except OSError:
        return None


def is_numbered(name: str, prefix: str) -> bool:
    """``virtfn12`` for prefix ``virtfn``: the prefix and then ASCII digits only."""
    rest = name[len(prefix):]
    return name.startswith(prefix) and rest.isascii() and rest.isdigit()
