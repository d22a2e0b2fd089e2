"""Netdevs of PCI functions: the ``sys/class/net`` map, link types, default routes, and the
one rule that picks a PF's netdev for its VFs and sub-functions alike."""

from __future__ import annotations

import os
import re

from sriovdp.host.files import HostRoot
from sriovdp.host.sysfs.fd import PCI_NAME_RE, is_numbered, list_dir, log, parse_int, read_quiet
from sriovdp.model.devices import link_type_name

# Uplink representor of a switchdev PF: phys_port_name "p0", "p1".
_UPLINK_PORT_RE = re.compile(rb"p\d+\Z")
# ``/proc/net/ipv6_route`` flags: RTF_REJECT marks the kernel's "unreachable" default route
# on ``lo``, which is not a way out of the host.
_RTF_REJECT = 0x0200
# A routing table is read up to this size (about 30,000 routes; the default route comes
# first in the kernel's walk); more is logged and left unread.
ROUTE_TABLE_LIMIT = 4 << 20


def read_default_route_ifnames(root: HostRoot) -> frozenset[str]:
    """Netdevs with an IPv4 or IPv6 default route in the plugin's network namespace.

    IPv4: ``proc/net/route`` lines with Destination and Mask ``00000000``. IPv6:
    ``proc/net/ipv6_route`` lines with an all-zero destination and prefix length ``00``,
    except ``RTF_REJECT`` (unreachable) routes. A missing file means no default route; each
    file is read up to :data:`ROUTE_TABLE_LIMIT` bytes (a warning names a longer one).
    """
    v4 = read_route_table(root, "route")
    found = {fields[0].decode(errors="replace")
             for fields in (line.split() for line in v4.splitlines()[1:])  # [0]: header
             if len(fields) >= 8 and fields[1] == b"00000000" and fields[7] == b"00000000"}
    for line in read_route_table(root, "ipv6_route").splitlines():  # no header line
        fields = line.split()
        if len(fields) < 10 or fields[1] != b"00" or fields[0].strip(b"0"):
            continue
        flags = parse_int_hex(fields[8])
        if flags is not None and not flags & _RTF_REJECT:
            found.add(fields[9].decode(errors="replace"))
    return frozenset(found)


def read_route_table(root: HostRoot, name: str) -> bytes:
    """``proc/net/<name>`` up to :data:`ROUTE_TABLE_LIMIT`; ``b""`` when unreadable."""
    data, more = root.read_bounded(f"proc/net/{name}", ROUTE_TABLE_LIMIT)
    if more:
        log.warning("proc/net/%s is longer than %d bytes; the rest is not read", name,
                    ROUTE_TABLE_LIMIT)
        data = data[:data.rfind(b"\n") + 1]  # no partial last line
    return data


def parse_int_hex(raw: bytes) -> int | None:
    try:
        return int(raw, 16)
    except ValueError:
        return None


def read_class_net(root: HostRoot) -> dict[str, dict[str, str]]:
    """PCI address → {netdev: its directory relative to the PCI function's directory}.

    From the ``sys/class/net/<if>`` links that end in ``<bdf>/net/<if>`` (e.g.
    ``../../devices/pci0000:3b/0000:3b:02.0/net/ens785f0v0``) or ``<bdf>/virtioN/net/<if>``
    (virtio-net). Other netdevs are left out: virtual ones (``virtual/net/lo``) and those of
    devices below a function (a USB NIC, an mlx5 SF under ``<bdf>/mlx5_core.sf.2/net/``),
    which the function's own ``net/`` does not list either. No ``sys/class/net``: ``{}``.
    """
    found: dict[str, dict[str, str]] = {}
    try:
        class_fd = root.open_dir("sys/class/net")
    except OSError:
        return found
    try:
        for ifname in os.listdir(class_fd):
            try:
                parts = os.readlink(ifname, dir_fd=class_fd).split("/")
            except OSError:
                continue
            owner = _class_net_owner(parts)
            if owner is not None:
                found.setdefault(owner[0], {})[ifname] = owner[1]
    finally:
        os.close(class_fd)
    return found


def _class_net_owner(parts: list[str]) -> tuple[str, str] | None:
    """(PCI address, netdev dir relative to it) of a class/net link target, or None."""
    if len(parts) < 4 or parts[-2] != "net":
        return None
    if PCI_NAME_RE.match(parts[-3]):
        return parts[-3], f"net/{parts[-1]}"
    if len(parts) >= 5 and is_numbered(parts[-3], "virtio") and PCI_NAME_RE.match(parts[-4]):
        return parts[-4], f"{parts[-3]}/net/{parts[-1]}"
    return None


class NetReader:
    """One scan's netdev facts: the class/net map, default routes and two caches (link type
    per netdev, netdev per PF)."""

    def __init__(self, root: HostRoot) -> None:
        self._root = root
        self.default_routes = read_default_route_ifnames(root)
        self.by_function = read_class_net(root)
        self.link_types: dict[str, str | None] = {}
        self._pf_netdevs: dict[str, str | None] = {}

    def link_type(self, fd: int, ifname: str, net_dir: str) -> str | None:
        """Link type name of netdev ``ifname`` from its ``type`` file; None if unreadable.

        ``net_dir`` is the netdev's directory relative to ``fd`` (``net/<ifname>``): the
        file ``sys/class/net/<ifname>/type`` links to, without the symlink walk. The result
        is cached per name, so a PF's type is read once for all its VFs.
        """
        if ifname in self.link_types:
            return self.link_types[ifname]
        try:
            type_fd = self._root.open_beneath(fd, f"{net_dir}/type")
            try:
                arphrd = parse_int(os.read(type_fd, 64))
            finally:
                os.close(type_fd)
        except OSError:
            arphrd = None
        found = link_type_name(arphrd) if arphrd is not None else None
        self.link_types[ifname] = found
        return found

    def has_default_route(self, netdevs: list[str]) -> bool:
        routes = self.default_routes
        return bool(routes) and any(n in routes for n in netdevs)

    def known_pf_netdev(self, pf_address: str) -> tuple[bool, str | None]:
        """(whether the PF's netdev was already decided, that netdev)."""
        if pf_address in self._pf_netdevs:
            return True, self._pf_netdevs[pf_address]
        return False, None

    def set_pf_netdev(self, pf_address: str, netdev: str | None) -> None:
        self._pf_netdevs[pf_address] = netdev

    def pf_netdev(self, pf_fd: int, pf_address: str, names: tuple[str, ...] | None = None
                  ) -> str | None:
        """The PF's netdev that its VFs and sub-functions report (``pf_netdev``); remembered
        for :meth:`known_pf_netdev`.

        The rule, one for both: among the PF's netdevs (class/net, else ``names``, else its
        ``net/`` entries), the first by name with a non-empty ``phys_switch_id`` and a
        ``phys_port_name`` like ``p0`` (the uplink representor of a switchdev PF; VF and SF
        representors are ``pf0vf1``, ``pf0sf4``); without one (legacy mode), the first by
        name. Its link type is read too. None without netdevs.

        Raises:
            OSError: the PF's ``net/`` cannot be listed.
        """
        netdevs = self.by_function.get(pf_address) or {
            name: f"net/{name}" for name in (names if names is not None
                                             else list_dir(pf_fd, "net"))}
        netdev = self._uplink(pf_fd, netdevs)
        if netdev is not None:
            self.link_type(pf_fd, netdev, netdevs[netdev])
        self._pf_netdevs[pf_address] = netdev
        return netdev

    def _uplink(self, pf_fd: int, netdevs: dict[str, str]) -> str | None:
        names = sorted(netdevs)
        if len(names) > 1:  # a switchdev PF also carries VF/SF representors
            beneath = self._root.open_beneath
            for name in names:
                rel = netdevs[name]
                if read_quiet(pf_fd, f"{rel}/phys_switch_id", beneath) and _UPLINK_PORT_RE.match(
                        read_quiet(pf_fd, f"{rel}/phys_port_name", beneath)):
                    return name
        return names[0] if names else None

    def pf_netdev_by_address(self, pf_address: str, fallback: str | None,
                             names: tuple[str, ...] | None) -> str | None:
        """:meth:`pf_netdev` opening the PF through ``sys/bus/pci/devices``; ``fallback``
        when the PF cannot be opened, None (logged) when its netdevs cannot be read."""
        known, netdev = self.known_pf_netdev(pf_address)
        if known:
            return netdev
        try:
            pf_fd = self._root.open_dir(f"sys/bus/pci/devices/{pf_address}")
        except OSError:
            self._pf_netdevs[pf_address] = fallback
            return fallback
        try:
            return self.pf_netdev(pf_fd, pf_address, names)
        except OSError as exc:
            log.warning("cannot read netdevs of PF %s: %s", pf_address, exc.strerror,
                        extra={"pci": pf_address})
            self._pf_netdevs[pf_address] = None
            return None
        finally:
            os.close(pf_fd)

