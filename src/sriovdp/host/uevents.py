"""Kernel uevents (``NETLINK_KOBJECT_UEVENT``): the events sysfs itself cannot give.

sysfs attributes do not support inotify, but the kernel announces every device that appears
or goes and every driver bind/unbind on the uevent netlink socket: VFs created by writing
``sriov_numvfs`` (``add`` on the ``pci`` subsystem), a VF rebound to vfio-pci (``unbind`` /
``bind``), a sub-function or vDPA device created, a netdev added or removed. The daemon uses
them only as hints to rescan; the periodic resync catches anything missed.

PCI, auxiliary and vDPA uevents are broadcast in the initial network namespace, where the
plugin runs (``hostNetwork: true``); netdev uevents go to the namespace owning the netdev.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from sriovdp.errors import HostError
from sriovdp.host.links import open_netlink_socket

log = logging.getLogger("sriovdp.host.uevents")

NETLINK_KOBJECT_UEVENT = 15
_KERNEL_GROUP = 1  # the kernel's own broadcasts (udev re-broadcasts on group 2)
RELEVANT_SUBSYSTEMS = frozenset({"pci", "net", "auxiliary", "vdpa", "infiniband", "uio"})
RELEVANT_ACTIONS = frozenset({"add", "remove", "bind", "unbind", "move"})
_MAX_QUEUED = 1024


@dataclass(frozen=True, slots=True)
class Uevent:
    """One kernel uevent, reduced.

    Attributes:
        action: ``add``, ``remove``, ``bind``, ``unbind``, ``change``, ``move`` ...
        subsystem: ``SUBSYSTEM``, e.g. ``"pci"``, ``"net"``.
        devpath: ``DEVPATH`` below ``/sys``, e.g. ``"/devices/pci0000:3b/0000:3b:02.0"``.
        driver: ``DRIVER`` on bind events, e.g. ``"vfio-pci"``; None otherwise.
        overflow: events were lost (receive buffer overflow): rescan everything.
    """

    action: str
    subsystem: str
    devpath: str
    driver: str | None = None
    overflow: bool = False

    @property
    def relevant(self) -> bool:
        """Could this change what the scan finds (a device or driver came or went)?"""
        return self.overflow or (self.subsystem in RELEVANT_SUBSYSTEMS
                                 and self.action in RELEVANT_ACTIONS)


class Uevents(Protocol):
    """The port: kernel uevents as an async stream. Implementations: :class:`UeventSource`,
    :class:`sriovdp.testing.uevents.FakeUeventSource`.

    :meth:`start` opens the source (raises :class:`~sriovdp.errors.HostError` when it
    cannot); :meth:`events` yields until :meth:`close` and raises ``HostError`` when the
    source fails, after which ``running`` is False and :meth:`start` may open it again.
    """

    @property
    def running(self) -> bool: ...

    async def start(self) -> None: ...

    def events(self) -> AsyncIterator[Uevent]: ...

    async def close(self) -> None: ...


def parse_uevent(datagram: bytes) -> Uevent | None:
    """Parse a kernel uevent datagram ``"<action>@<devpath>\\0KEY=VALUE\\0..."``.

    Returns:
        the event, or None for anything else (udev's ``libudev`` messages, junk).
    """
    head, _, rest = datagram.partition(b"\0")
    if b"@" not in head or head.startswith(b"libudev"):
        return None
    fields: dict[str, str] = {}
    for item in rest.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            fields[key.decode("ascii", "replace")] = value.decode("utf-8", "replace")
    action = fields.get("ACTION") or head.split(b"@", 1)[0].decode("ascii", "replace")
    return Uevent(action=action, subsystem=fields.get("SUBSYSTEM", ""),
                  devpath=fields.get("DEVPATH", ""), driver=fields.get("DRIVER"))


class UeventSource:
    """Kernel uevents of a network namespace (None: the daemon's own), as an async stream.

    Args:
        netns: None, or a name/path as :func:`sriovdp.host.links.open_netlink_socket` takes.
        rcvbuf: requested receive buffer in bytes (creating 256 VFs emits ~800 events).
    """

    def __init__(self, netns: str | None = None, *, rcvbuf: int = 4 << 20) -> None:
        self.netns = netns
        self.rcvbuf = rcvbuf
        self._sock: socket.socket | None = None
        self._overflowed = False
        self._queue: asyncio.Queue[Uevent | HostError | None] = asyncio.Queue()

    @property
    def running(self) -> bool:
        """The socket is open (between :meth:`start` and a failure or :meth:`close`)."""
        return self._sock is not None

    async def start(self) -> None:
        """Open and bind the socket.

        Raises:
            HostError: uevents cannot be received here (no permission, no such namespace).
        """
        self._queue = asyncio.Queue()
        self._overflowed = False
        sock = open_netlink_socket(NETLINK_KOBJECT_UEVENT, self.netns)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, 33, self.rcvbuf)  # SO_RCVBUFFORCE
            sock.bind((0, _KERNEL_GROUP))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise HostError(f"cannot receive kernel uevents: {exc.strerror or exc}") from exc
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                datagram, (sender, _) = self._sock.recvfrom(65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._queue.put_nowait(Uevent("", "", "", overflow=True))
                    continue
                self._drop_socket()
                self._queue.put_nowait(HostError(f"uevent socket failed: {exc.strerror}"))
                return
            if sender != 0:
                continue  # only the kernel (port id 0) speaks for devices; ignore userspace
            event = parse_uevent(datagram)
            if event is not None and event.relevant:
                if self._queue.qsize() >= _MAX_QUEUED:
                    # the consumer only rescans: one overflow marker stands for the rest
                    if not self._overflowed:
                        self._overflowed = True
                        self._queue.put_nowait(Uevent("", "", "", overflow=True))
                    continue
                self._queue.put_nowait(event)

    async def events(self) -> AsyncIterator[Uevent]:
        """Yield the relevant events as the kernel sends them (at most ``_MAX_QUEUED`` wait;
        beyond that one ``overflow`` event stands for the rest); ends after :meth:`close`.

        Raises:
            HostError: the socket failed; :meth:`start` opens a new one.
        """
        while (event := await self._queue.get()) is not None:
            if isinstance(event, HostError):
                raise event
            if event.overflow:
                self._overflowed = False
            yield event

    async def close(self) -> None:
        self._drop_socket()
        self._queue.put_nowait(None)

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
