"""Link state from netlink: the ``LinkSource`` port and its pyroute2 adapter.

:class:`PyrouteLinkSource` keeps one ``NETLINK_ROUTE`` socket bound to ``RTMGRP_LINK``,
takes one ``RTM_GETLINK`` dump at start, and from then on turns every ``RTM_NEWLINK`` /
``RTM_DELLINK`` into :class:`~sriovdp.model.health.LinkChange` values, dropping the many
messages that change nothing it tracks (statistics, addresses, MTU ...).

Division of work with pyroute2 (``AsyncIPRoute``): pyroute2 owns the socket options, the
netlink bind, the asyncio datagram transport (the event loop's selector reads the socket:
no thread, no timer) and its receive queue, and turns socket errors such as ``ENOBUFS``
into queue entries. The messages themselves are decoded here with ``struct`` (see
:func:`_decode` for the measured reason), so no pyroute2 object crosses into our types.

Error handling:
    A netlink socket whose receive buffer overflowed reports ``ENOBUFS`` once and has lost
    messages; pyroute2 then refuses further use of it ("the only solution is to close the
    socket and create a new one", ``AsyncIPRSocket``'s docstring). The source does exactly
    that: close, open a new socket, bind, dump every link, replace the snapshot in place and
    yield one ``LinkChange(resync=True)``. Any other socket error ends :meth:`events` with
    :class:`~sriovdp.errors.HostError`.

Resource handling:
    One socket (one fd) between :meth:`start` and :meth:`close`. With ``netns=`` the socket
    is created inside that network namespace by a short-lived thread that enters it with
    ``setns()`` and exits (pyroute2's own ``netns=`` forks a helper process and creates
    missing namespaces, neither of which a daemon wants).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import importlib
import os
import socket
import struct
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, NamedTuple, Protocol, Self

if TYPE_CHECKING:
    from pyroute2 import AsyncIPRoute  # type: ignore[import-untyped]

from sriovdp.errors import HostError
from sriovdp.model.health import LinkChange, LinkState

__all__ = [
    "DEFAULT_RCVBUF",
    "LinkSource",
    "LinkTable",
    "PyrouteLinkSource",
    "open_route_socket",
]

DEFAULT_RCVBUF = 4 << 20
"""Requested netlink receive buffer (bytes). A PF flap on a host with 2048 VF netdevs in the
root namespace is ~2048 RTM_NEWLINK messages of ~1.4 KiB: ~3 MiB in one burst."""

_CLONE_NEWNET = 0x40000000
_SO_RCVBUFFORCE = 33  # include/uapi/asm-generic/socket.h; not exported by the socket module
_IFF_UP = 0x1
_IFF_LOWER_UP = 0x10000
# include/uapi/linux/netlink.h, rtnetlink.h, if_link.h
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK = 16, 17, 18
_RTMGRP_LINK = 0x1
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER
_IFLA_IFNAME, _IFLA_OPERSTATE, _IFLA_EXT_MASK, _IFLA_CARRIER = 3, 16, 29, 33
_RTEXT_FILTER_SKIP_STATS = 1 << 3
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
_DUMP_ATTEMPTS = 3
_NETNS_DIR = "/run/netns"  # where `ip netns add` bind-mounts named namespaces


class LinkSource(Protocol):
    """Where link state comes from: netlink in production, a fake in tests.

    Implementations: :class:`PyrouteLinkSource`, :class:`sriovdp.testing.links.FakeLinkSource`.

    Contract (checked by :func:`sriovdp.testing.contracts.check_link_source`):

    * :meth:`start` reads every link; :meth:`snapshot` is then complete.
    * :meth:`events` yields one change per observed difference, never one that changes
      nothing; when a change is yielded, ``snapshot()`` already shows it.
    * After lost events it yields ``LinkChange(resync=True)`` once the snapshot is whole again.
    * After :meth:`close`, :meth:`events` ends.
    """

    async def start(self) -> None: ...

    def snapshot(self) -> Mapping[str, LinkState]: ...

    def events(self) -> AsyncIterator[LinkChange]: ...

    async def close(self) -> None: ...


class LinkTable:
    """ifname → state, kept right across renames by an ifindex → name map.

    Pure bookkeeping with typed values only; the adapter feeds it parsed messages.
    """

    def __init__(self) -> None:
        self._links: dict[str, LinkState] = {}
        self._name_of: dict[int, str] = {}
        self._index_of: dict[str, int] = {}
        self.view: Mapping[str, LinkState] = MappingProxyType(self._links)
        """Read-only live view of the states; stays valid across :meth:`replace`."""

    def update(self, index: int, state: LinkState) -> list[LinkChange]:
        """Apply an ``RTM_NEWLINK`` for ifindex ``index``.

        Returns:
            ``[]`` when nothing tracked changed; a rename gives ``[old gone, new state]``.
        """
        changes = []
        old_name = self._name_of.get(index)
        if old_name is not None and old_name != state.ifname:
            changes.extend(self.delete(index))
        holder = self._index_of.get(state.ifname)
        if holder is not None and holder != index:
            # The name now belongs to another ifindex: its previous owner was renamed or
            # deleted by a message we never saw. Re-point the name; the state check below
            # reports the difference, if any.
            del self._name_of[holder]
        self._name_of[index] = state.ifname
        self._index_of[state.ifname] = index
        if self._links.get(state.ifname) != state:
            self._links[state.ifname] = state
            changes.append(LinkChange(state.ifname, state))
        return changes

    def delete(self, index: int) -> list[LinkChange]:
        """Apply an ``RTM_DELLINK`` for ifindex ``index`` (``[]`` if it was not known)."""
        name = self._name_of.pop(index, None)
        if name is None:
            return []
        del self._index_of[name]
        self._links.pop(name, None)
        return [LinkChange(name, None)]

    def replace(self, other: LinkTable) -> None:
        """Take ``other``'s contents in place, so :attr:`view` stays valid."""
        self._links.clear()
        self._links.update(other._links)
        self._name_of = dict(other._name_of)
        self._index_of = dict(other._index_of)


class _Message(NamedTuple):
    """One netlink message, reduced to what the source needs."""

    kind: int                # nlmsg_type: RTM_NEWLINK, RTM_DELLINK, NLMSG_DONE, NLMSG_ERROR
    seq: int
    ifindex: int = 0         # RTM_NEWLINK / RTM_DELLINK
    state: LinkState | None = None  # RTM_NEWLINK
    error: int = 0           # NLMSG_ERROR: the positive errno


_NLMSGHDR = struct.Struct("=IHHII")     # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")   # family, type, index, flags, change
_NLA = struct.Struct("=HH")             # len, type
_ERRNO = struct.Struct("=i")


def _decode(data: bytes) -> Iterator[_Message]:
    """Decode one datagram of rtnetlink link messages with ``struct``, top-level NLAs only.

    Why not pyroute2's ``ifinfmsg`` decoder: it builds every NLA of the message (~40,
    statistics included) and costs ~0.35-0.6 ms per veth message here: ~1 s for the dump of
    2000 links, and as much for the ``RTM_NEWLINK`` burst of a PF flap with 2048 VF netdevs.
    This walks the top-level attributes once for the three we track: ~25 µs per message,
    ~80 ms for the 2000-link dump (measured on the 2-core CI box kind).
    """
    offset, end = 0, len(data)
    while offset + _NLMSGHDR.size <= end:
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > end:
            return  # truncated: nothing sane follows
        body = offset + _NLMSGHDR.size
        if kind in (_RTM_NEWLINK, _RTM_DELLINK) and length >= _NLMSGHDR.size + _IFINFOMSG.size:
            family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, body)
            # AF_BRIDGE RTM_NEWLINKs describe bridge ports, not the netdev's own link.
            if family == socket.AF_UNSPEC and kind == _RTM_DELLINK:
                yield _Message(kind, seq, index)
            elif family == socket.AF_UNSPEC:
                state = _link_state(data, body + _IFINFOMSG.size, offset + length, flags)
                if state is not None:
                    yield _Message(kind, seq, index, state)
        elif kind == _NLMSG_DONE:
            yield _Message(kind, seq)
        elif kind == _NLMSG_ERROR and length >= _NLMSGHDR.size + _ERRNO.size:
            (code,) = _ERRNO.unpack_from(data, body)
            if code != 0:  # 0 is an ACK
                yield _Message(kind, seq, error=abs(code))
        offset += (length + 3) & ~3


def _link_state(data: bytes, offset: int, end: int, flags: int) -> LinkState | None:
    name: str | None = None
    carrier: bool | None = None
    operstate = 0
    while offset + _NLA.size <= end:
        nla_len, nla_type = _NLA.unpack_from(data, offset)
        if nla_len < _NLA.size or offset + nla_len > end:
            break
        value = offset + _NLA.size
        nla_type &= _NLA_TYPE_MASK
        if nla_len == _NLA.size:
            pass  # no payload
        elif nla_type == _IFLA_IFNAME:
            raw = data[value:offset + nla_len]
            name = os.fsdecode(raw.split(b"\0", 1)[0])
        elif nla_type == _IFLA_OPERSTATE:
            operstate = data[value]
        elif nla_type == _IFLA_CARRIER:
            carrier = bool(data[value])
        offset += (nla_len + 3) & ~3
    if not name:
        return None
    return LinkState(
        ifname=name,
        carrier=bool(flags & _IFF_LOWER_UP) if carrier is None else carrier,
        operstate=_OPERSTATES[operstate] if operstate < len(_OPERSTATES) else str(operstate),
        admin_up=bool(flags & _IFF_UP),
    )


def _dump_request(seq: int) -> bytes:
    """``RTM_GETLINK`` dump of every link, without statistics (``RTEXT_FILTER_SKIP_STATS``)."""
    ext_mask = _NLA.pack(8, _IFLA_EXT_MASK) + struct.pack("=I", _RTEXT_FILTER_SKIP_STATS)
    ifi = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    length = _NLMSGHDR.size + len(ifi) + len(ext_mask)
    header = _NLMSGHDR.pack(length, _RTM_GETLINK, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0)
    return header + ifi + ext_mask


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, _CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def open_route_socket(netns: str | None = None) -> socket.socket:
    """A fresh ``AF_NETLINK``/``NETLINK_ROUTE`` socket, in the named network namespace.

    Args:
        netns: None for the caller's namespace; a name as ``ip netns`` knows it
            (``/run/netns/<name>``), or a path such as ``/proc/1234/ns/net``.

    Raises:
        HostError: the namespace does not exist or cannot be entered (needs CAP_SYS_ADMIN).
    """
    return open_netlink_socket(socket.NETLINK_ROUTE, netns)


def open_netlink_socket(protocol: int, netns: str | None = None) -> socket.socket:
    """A fresh ``AF_NETLINK`` socket of ``protocol`` (``NETLINK_ROUTE``,
    ``NETLINK_KOBJECT_UEVENT`` ...) in the named network namespace (see
    :func:`open_route_socket`).

    Raises:
        HostError: the namespace does not exist or cannot be entered (needs CAP_SYS_ADMIN).
    """
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, protocol)
    path = netns if "/" in netns else os.path.join(_NETNS_DIR, netns)
    result: list[socket.socket | BaseException] = []

    def enter_and_open() -> None:
        # setns() moves only this thread; it exits right after, so no thread of the
        # process (the event loop's least of all) is ever left in the other namespace.
        try:
            ns_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(ns_fd)
            finally:
                os.close(ns_fd)
            result.append(socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, protocol))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            result.append(exc)

    thread = threading.Thread(target=enter_and_open, name=f"sriovdp-netns-{netns}")
    thread.start()
    thread.join()
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise HostError(f"cannot open a netlink socket in network namespace {netns!r}: "
                        f"{outcome}") from outcome
    return outcome


def _import_pyroute2() -> None:
    """Import pyroute2 (run in a worker thread). While it runs, the interpreter switches
    threads every 0.2 ms instead of 5 ms: each time the event loop comes back from a
    syscall it waits for the GIL at most that long, so an RPC answered meanwhile is slowed
    by about a millisecond instead of tens (bench/allocate.py, first call after start)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    try:
        importlib.import_module("pyroute2")
    finally:
        sys.setswitchinterval(previous)


async def _import_pyroute2_off_loop() -> None:
    """:func:`_import_pyroute2` in a thread of its own, which has ended on return (no
    executor thread is left behind)."""
    if "pyroute2" in sys.modules:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[BaseException | None] = loop.create_future()

    def work() -> None:
        outcome: BaseException | None = None
        try:
            _import_pyroute2()
        except Exception as exc:  # handed to the awaiting task
            outcome = exc
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(_settle_import, done, outcome)

    thread = threading.Thread(target=work, name="sriovdp-import", daemon=True)
    thread.start()
    try:
        error = await done
    finally:
        if done.done():
            thread.join()
    if error is not None:
        raise error


def _settle_import(done: asyncio.Future[BaseException | None],
                   outcome: BaseException | None) -> None:
    if not done.done():
        done.set_result(outcome)


class PyrouteLinkSource:
    """Link states of one network namespace, from rtnetlink via pyroute2.

    Args:
        netns: None for the daemon's own namespace (production: ``hostNetwork``); a netns
            name or path for tests and benches (see :func:`open_route_socket`).
        rcvbuf: requested receive buffer in bytes (``SO_RCVBUFFORCE`` when permitted, else
            ``SO_RCVBUF``, which ``net.core.rmem_max`` caps); see :attr:`receive_buffer`.

    Usage::

        async with PyrouteLinkSource() as links:
            health = derive_health(inventory, links.snapshot())
            async for change in links.events():
                health = derive_health(inventory, links.snapshot())
    """

    def __init__(self, netns: str | None = None, *, rcvbuf: int = DEFAULT_RCVBUF) -> None:
        self.netns = netns
        self.rcvbuf = rcvbuf
        self.resyncs = 0
        """How many times lost events forced a re-open and a full dump."""
        self.receive_buffer = 0
        """The receive buffer the kernel granted, as ``SO_RCVBUF`` reads (twice the request)."""
        self._table = LinkTable()
        self._ipr: AsyncIPRoute | None = None
        self._closed = False
        self._seq = 0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the socket, join ``RTMGRP_LINK`` and read every link.

        Raises:
            HostError: the socket cannot be opened or the dump fails.
        """
        if self._ipr is not None:
            raise RuntimeError("PyrouteLinkSource already started")
        self._closed = False
        ipr, table = await self._open()
        if self._closed:  # close() ran during the dump
            ipr.close()
            return
        self._ipr = ipr
        self._table.replace(table)

    def snapshot(self) -> Mapping[str, LinkState]:
        """ifname → state as of the last change :meth:`events` yielded (a live read-only view;
        copy it with ``dict()`` to keep a point in time)."""
        return self._table.view

    async def events(self) -> AsyncIterator[LinkChange]:
        """Yield link changes as netlink reports them; ends after :meth:`close`.

        Datagrams are decoded lazily: the snapshot advances as this generator is consumed.
        Only one consumer at a time. Changes that happen while :meth:`start`'s dump runs are
        applied in arrival order, so the snapshot is right when the dump ends.

        Raises:
            RuntimeError: not started.
            HostError: the socket failed for another reason than a receive-buffer overflow,
                or re-opening it after one failed.
        """
        if self._ipr is None and not self._closed:
            raise RuntimeError("start() the link source before reading its events")
        while not self._closed and self._ipr is not None:
            # pyroute2's transport queues raw datagrams (multicast ones under tag 0) and
            # turns socket errors into NLMSG_ERROR entries of the same queue.
            data = await self._ipr.msg_queue.get(0)
            for msg in _decode(data):
                if msg.kind == _NLMSG_ERROR:
                    await self._recover(msg.error)
                    if not self._closed:
                        yield LinkChange("", None, resync=True)
                    break  # the rest of the old socket's datagram is gone with it
                for change in _apply(self._table, msg):
                    yield change
                    if self._closed:
                        return

    async def close(self) -> None:
        """Close the socket; a pending :meth:`events` ends. Idempotent."""
        self._closed = True
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            _wake(ipr)
            ipr.close()

    async def _recover(self, error: int) -> None:
        """Resync after ``ENOBUFS``; any other socket error is fatal (unless closing)."""
        if self._closed:
            return
        if error != errno.ENOBUFS:
            raise HostError(f"link source socket failed: {os.strerror(error)}")
        await self._resync()

    async def _resync(self) -> None:
        old, self._ipr = self._ipr, None
        if old is not None:
            old.close()
        ipr, table = await self._open()
        if self._closed:  # close() ran during the dump
            ipr.close()
            return
        self._ipr = ipr
        self._table.replace(table)
        self.resyncs += 1

    async def _open(self) -> tuple[AsyncIPRoute, LinkTable]:
        """A bound socket and a table from a complete dump (retried if the dump overflows)."""
        for _ in range(_DUMP_ATTEMPTS):
            sock = open_route_socket(self.netns)
            # imported here, in a worker thread: pyroute2's package import costs ~100-150 ms,
            # which the daemon pays after its sockets are listening, not before, and not on
            # the event loop (a pod admitted meanwhile would wait for it in every RPC)
            await _import_pyroute2_off_loop()
            from pyroute2 import AsyncIPRoute

            ipr = AsyncIPRoute(fileno=sock.detach(), rcvbuf=self.rcvbuf, groups=_RTMGRP_LINK)
            try:
                table = await self._dump(ipr)
            except _Overflow:
                ipr.close()
                continue
            except OSError as exc:
                ipr.close()
                raise HostError(f"cannot read links (netns {self.netns or 'current'}): "
                                f"{exc}") from exc
            except BaseException:
                ipr.close()
                raise
            return ipr, table
        raise HostError(f"link dump overflowed {_DUMP_ATTEMPTS} times "
                        f"(netns {self.netns or 'current'})")

    async def _dump(self, ipr: AsyncIPRoute) -> LinkTable:
        with contextlib.suppress(PermissionError):
            # Root (CAP_NET_ADMIN) may exceed net.core.rmem_max; pyroute2 already set
            # SO_RCVBUF, which the sysctl caps.
            ipr.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self.rcvbuf)
        self.receive_buffer = ipr.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        # Join the group before the dump: an event racing the dump is queued, never lost,
        # and arrives in order with the dump's parts (both use the socket's one queue).
        await ipr.bind(_RTMGRP_LINK)
        self._seq += 1
        seq = self._seq
        ipr.send(_dump_request(seq))
        table = LinkTable()
        done = False
        while not done:
            data = await ipr.msg_queue.get(0)
            if not data:
                raise OSError(errno.ECONNABORTED, "link source closed during the dump")
            for msg in _decode(data):
                if msg.kind == _NLMSG_ERROR:
                    if msg.error == errno.ENOBUFS:
                        raise _Overflow
                    raise OSError(msg.error, os.strerror(msg.error))
                if msg.kind == _NLMSG_DONE:
                    done = done or msg.seq == seq
                else:
                    _apply(table, msg)
        return table


class _Overflow(Exception):
    """ENOBUFS while dumping: start over with a new socket."""


def _apply(table: LinkTable, msg: _Message) -> list[LinkChange]:
    if msg.kind == _RTM_DELLINK:
        return table.delete(msg.ifindex)
    if msg.kind == _RTM_NEWLINK and msg.state is not None:
        return table.update(msg.ifindex, msg.state)
    return []


def _wake(ipr: AsyncIPRoute) -> None:
    """Unblock a reader waiting on the socket's queue with an empty datagram."""
    with contextlib.suppress(AttributeError, RuntimeError):
        ipr.msg_queue.put_nowait(0, b"")
