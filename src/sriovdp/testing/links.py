"""Link-state test doubles: an in-memory :class:`FakeLinkSource` and a real :class:`NetnsLab`.

``FakeLinkSource`` behaves like :class:`~sriovdp.host.links.PyrouteLinkSource` (the same
contract, :func:`sriovdp.testing.contracts.check_link_source`) without a kernel: its mutators
model what an administrator or the kernel does, and the source reports them as netlink would.

``NetnsLab`` is the kernel side for root-only tests and benches: a throwaway network
namespace with veth pairs (this kernel kind has no ``dummy`` links), driven with pyroute2.
It never touches the caller's own namespace and never sends traffic.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType, TracebackType
from typing import Self

from pyroute2 import AsyncIPRoute  # type: ignore[import-untyped]

from sriovdp.host.links import open_route_socket
from sriovdp.model.health import LinkChange, LinkState

__all__ = ["FakeLinkSource", "NetnsLab"]

_Pending = tuple[str, LinkState | None] | None
"""A queued observation (name, state or None when gone), or None for a resync."""


class FakeLinkSource:
    """An in-memory link source with the :class:`~sriovdp.host.links.LinkSource` contract.

    The *world* (what the kernel knows) changes at once when a mutator runs; the
    :meth:`snapshot` (what the consumer has seen) changes only as :meth:`events` yields, as
    with netlink. Mutations before :meth:`start` are simply the initial state.

    Args:
        links: the initial links, e.g. ``[LinkState("ens1f0", True, "UP")]``.
    """

    def __init__(self, links: Iterable[LinkState] = ()) -> None:
        self._world: dict[str, LinkState] = {s.ifname: s for s in links}
        self._seen: dict[str, LinkState] = {}
        self._view = MappingProxyType(self._seen)
        self._pending: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._started = False
        self._closed = False
        self._failure: BaseException | None = None
        self.resyncs = 0
        """How many resyncs :meth:`events` has yielded."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the LinkSource port ---------------------------------------------------------------

    async def start(self) -> None:
        if self._started and not self._closed:
            raise RuntimeError("FakeLinkSource already started")
        self._started, self._closed = True, False
        self._seen.clear()
        self._seen.update(self._world)

    def snapshot(self) -> Mapping[str, LinkState]:
        return self._view

    async def events(self) -> AsyncIterator[LinkChange]:
        if not self._started:
            raise RuntimeError("start() the link source before reading its events")
        while True:
            while not self._pending and not self._closed and self._failure is None:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._closed:
                return
            if self._failure is not None:
                failure, self._failure = self._failure, None
                raise failure
            item = self._pending.popleft()
            if item is None:
                self._seen.clear()
                self._seen.update(self._world)
                self.resyncs += 1
                yield LinkChange("", None, resync=True)
                continue
            name, state = item
            if self._seen.get(name) == state:
                continue  # netlink also sends messages that change nothing we track
            if state is None:
                del self._seen[name]
            else:
                self._seen[name] = state
            yield LinkChange(name, state)

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    # -- what an administrator or the kernel does ------------------------------------------

    def set_link(self, state: LinkState) -> None:
        """Add the netdev ``state.ifname`` or change its state (one ``RTM_NEWLINK``)."""
        self._world[state.ifname] = state
        self._emit(state.ifname, state)

    def set_carrier(self, ifname: str, up: bool) -> None:
        """Carrier on/off (cable, switch port, peer); a new netdev is added admin-up."""
        old = self._world.get(ifname, LinkState(ifname, carrier=not up, operstate="DOWN"))
        self.set_link(replace(old, carrier=up, operstate="UP" if up else "DOWN"))

    def set_admin(self, ifname: str, up: bool) -> None:
        """``ip link set <ifname> up|down``: a down link also loses its carrier."""
        old = self._world[ifname]
        carrier = old.carrier if up else False
        self.set_link(replace(old, admin_up=up, carrier=carrier,
                              operstate="UP" if up and carrier else "DOWN"))

    def rename(self, old: str, new: str) -> None:
        """``ip link set <old> name <new>``: the old name goes, the new one comes."""
        state = replace(self._world.pop(old), ifname=new)
        self._world[new] = state
        self._emit(old, None)
        self._emit(new, state)

    def remove(self, ifname: str) -> None:
        """The netdev is deleted or moved to another namespace (one ``RTM_DELLINK``)."""
        del self._world[ifname]
        self._emit(ifname, None)

    def fail(self, error: BaseException) -> None:
        """The source breaks: the pending :meth:`events` raises ``error`` (as a netlink
        socket error ends :class:`~sriovdp.host.links.PyrouteLinkSource`'s stream). The
        source can be closed and started again (the consumer resynchronises)."""
        self._failure = error
        self._wakeup.set()

    def inject_overflow(self) -> None:
        """The receive buffer overflows: changes not yet read are lost; a resync follows."""
        if not self._started:
            return
        self._pending.clear()
        self._pending.append(None)
        self._wakeup.set()

    def _emit(self, name: str, state: LinkState | None) -> None:
        if self._started and not self._closed:
            self._pending.append((name, state))
            self._wakeup.set()


class NetnsLab:
    """A throwaway network namespace with veth pairs, driven with pyroute2 (root only).

    The namespace is created with ``ip netns add`` and deleted with ``ip netns del`` on
    :meth:`destroy` (or leaving ``async with``), whatever happened in between. Carrier is
    changed the way a veth allows: a veth has carrier while its peer is administratively up.

    Args:
        name: the namespace name; default ``sdp-<8 random hex digits>``.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"sdp-{secrets.token_hex(4)}"
        self._peer: dict[str, str] = {}
        self._index: dict[str, int] = {}
        self._ipr: AsyncIPRoute | None = None
        self._flood_pair: tuple[str, str] | None = None

    @staticmethod
    def available() -> str | None:
        """Why a lab cannot run here (not root, no ``ip``), or None when it can."""
        if os.geteuid() != 0:
            return "needs root (network namespaces)"
        if shutil.which("ip") is None:
            return "needs iproute2 (`ip`)"
        return None

    async def __aenter__(self) -> Self:
        try:
            await self.create()
        except BaseException:
            await self.destroy()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.destroy()

    async def create(self) -> None:
        """``ip netns add`` and open the pyroute2 socket that drives the namespace."""
        await self._ip("netns", "add", self.name)
        self._ipr = AsyncIPRoute(fileno=open_route_socket(self.name).detach())

    async def destroy(self) -> None:
        """Close the socket and ``ip netns del`` (idempotent; never raises for a missing ns)."""
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            ipr.close()
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "del", self.name,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await proc.wait()

    async def add_veth(self, name: str, peer: str, *, up: bool = True) -> None:
        """``ip -n NS link add <name> type veth peer name <peer>``, both ends brought up."""
        await self._ip("-n", self.name, "link", "add", name, "type", "veth", "peer", "name", peer)
        self._peer[name], self._peer[peer] = peer, name
        if up:
            for ifname in (name, peer):
                await self._ip("-n", self.name, "link", "set", ifname, "up")

    async def index(self, ifname: str) -> int:
        """The ifindex of ``ifname`` in the namespace (cached; renames keep it)."""
        if ifname not in self._index:
            found = await self._driver().link_lookup(ifname=ifname)
            if not found:
                raise LookupError(f"no link {ifname!r} in netns {self.name}")
            self._index[ifname] = found[0]
        return self._index[ifname]

    async def set_admin(self, ifname: str, up: bool) -> None:
        """``ip link set <ifname> up|down`` through pyroute2."""
        index = await self.index(ifname)
        await self._driver().link("set", index=index, state="up" if up else "down")

    async def set_carrier(self, ifname: str, up: bool) -> None:
        """Give ``ifname`` carrier or take it away by setting its veth peer up or down."""
        await self.set_admin(self._peer[ifname], up)

    async def rename(self, old: str, new: str) -> None:
        """``ip link set <old> name <new>`` through pyroute2 (the ifindex stays)."""
        index = await self.index(old)
        await self._driver().link("set", index=index, ifname=new)
        self._index[new] = self._index.pop(old)
        peer = self._peer.pop(old)
        self._peer[new], self._peer[peer] = peer, new

    async def remove(self, ifname: str) -> None:
        """Delete ``ifname`` (a veth takes its peer with it)."""
        index = await self.index(ifname)
        await self._driver().link("del", index=index)
        peer = self._peer.pop(ifname, None)
        for name in (ifname, peer):
            if name is not None:
                self._index.pop(name, None)
                self._peer.pop(name, None)

    async def inject_overflow(self, toggles: int = 1000) -> None:
        """Overflow every small-buffered listener in the namespace.

        Runs ``ip -batch`` with ``toggles`` down/up pairs on a dedicated veth pair while
        *blocking the event loop on purpose*, so no listener of this process can drain its
        socket (~3 messages of ~1.3 KiB per toggle); other links keep their state.
        """
        if self._flood_pair is None:
            self._flood_pair = ("flood0", "flood0p")
            await self.add_veth(*self._flood_pair)
        commands = "".join(
            f"link set {self._flood_pair[1]} down\nlink set {self._flood_pair[1]} up\n"
            for _ in range(toggles))
        # blocking is the point: the loop must not drain the listeners while ip floods them
        subprocess.run(["ip", "-n", self.name, "-batch", "-"],  # noqa: ASYNC221
                       input=commands.encode(), check=True, capture_output=True)

    def _driver(self) -> AsyncIPRoute:
        if self._ipr is None:
            raise RuntimeError("NetnsLab not created")
        return self._ipr

    @staticmethod
    async def _ip(*args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            "ip", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {err.decode().strip()}")

