"""Auxiliary devices that are sub-functions (``mlx5_core.sf.4``): parent, SF number,
netdevs, link type and RDMA devices, from ``sys/bus/auxiliary/devices``."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from sriovdp.host.files import DIR_FLAGS, HostRoot
from sriovdp.host.sysfs.fd import PCI_NAME_RE, Skip, list_dir, log, parse_int, read, reason
from sriovdp.model.devices import AuxFunction, PciFunction, SkippedFunction

if TYPE_CHECKING:
    from sriovdp.host.sysfs.net import NetReader
    from sriovdp.host.sysfs.rdma import RdmaReader

# Auxiliary device names: "<driver>.<type>.<id>", e.g. "mlx5_core.sf.4".
# ASCII only: the name becomes the kubelet's device id and a CDI device name.
_AUX_NAME_RE = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([0-9]+)\Z")


def parse_aux_name(name: str) -> tuple[str, str, int] | None:
    """``"mlx5_core.sf.4"`` → ``("mlx5_core", "sf", 4)``; None unless ``<driver>.<type>.<id>``.

    Exactly three dot-separated parts, the last a non-negative integer: ``"0000:12:34.0"``,
    ``"driver_name.type.id"`` and ``"driver_name.type.-4"`` are not auxiliary device names.
    """
    m = _AUX_NAME_RE.match(name)
    return (m[1], m[2], int(m[3])) if m else None


def nearest_pci(parts: list[str]) -> str | None:
    """The last PCI-address component of a link target's directories, or None."""
    for part in reversed(parts):
        if PCI_NAME_RE.match(part):
            return part
    return None


class AuxReader:
    """Reads ``sys/bus/auxiliary/devices`` once the PCI functions are known."""

    def __init__(self, root: HostRoot, net: NetReader, rdma: RdmaReader) -> None:
        self._root = root
        self._net = net
        self._rdma = rdma

    def read_all(
        self, functions: dict[str, PciFunction], skipped: list[SkippedFunction]
    ) -> dict[str, AuxFunction]:
        """Every sub-function under ``sys/bus/auxiliary/devices``, by name.

        ==============  =====================================================================
        name, aux_type  the entry name ``<driver>.<type>.<id>``; other names are ignored
        parent          the function of the last PCI-address component of the link target
                        (``../../../devices/pci0000:3b/0000:3b:00.0/mlx5_core.sf.4``); it
                        must be in ``functions``
        pf_address      the parent's ``physfn``, else the parent itself
        pf_netdev       the PF's netdev, by the rule VFs use too
                        (:meth:`~sriovdp.host.sysfs.net.NetReader.pf_netdev`)
        sf_num          ``<aux>/sfnum``; devices without it (``mlx5_core.eth.0``) are not
                        sub-functions and are left out
        netdevs         entries of ``<aux>/net/``
        link_type       ``<aux>/net/<first>/type``, else the PF netdev's type
        rdma            ``<aux>/infiniband/`` (via ``sys/class/infiniband`` when present)
        ==============  =====================================================================

        A device that cannot be used (dangling link, no PCI parent, parent not scanned,
        unreadable ``sfnum``) is logged and added to ``skipped``; the others are unaffected.
        """
        try:
            bus_fd = self._root.open_dir("sys/bus/auxiliary/devices")
        except OSError:
            return {}
        found: dict[str, AuxFunction] = {}
        try:
            for name in sorted(os.listdir(bus_fd)):
                aux = self._read_named(bus_fd, name, functions, skipped)
                if aux is not None:
                    found[name] = aux
        except OSError as exc:
            log.warning("cannot list auxiliary devices: %s", exc.strerror)
        finally:
            os.close(bus_fd)
        return found

    def _read_named(self, bus_fd: int, name: str, functions: dict[str, PciFunction],
                    skipped: list[SkippedFunction]) -> AuxFunction | None:
        parsed = parse_aux_name(name)
        if parsed is None:
            log.debug("auxiliary device %s: not <driver>.<type>.<id>; ignored", name)
            return None
        try:
            return self._read_device(bus_fd, name, parsed[1], functions)
        except Skip as skip:
            log.warning("skipping auxiliary device %s: %s", name, skip, extra={"pci": name})
            skipped.append(SkippedFunction(name, str(skip)))
            return None

    def _read_device(
        self, bus_fd: int, name: str, aux_type: str, functions: dict[str, PciFunction]
    ) -> AuxFunction | None:
        """One auxiliary device; None when it is not a sub-function (no ``sfnum``).

        Raises:
            Skip: the device is a sub-function (or looks like one) but cannot be used.
        """
        try:
            target = os.readlink(name, dir_fd=bus_fd)
        except OSError as exc:
            raise Skip(reason("link", exc)) from exc
        try:
            fd = self._root.open_at(bus_fd, name, f"sys/bus/auxiliary/devices/{name}",
                                    DIR_FLAGS)
        except FileNotFoundError as exc:
            raise Skip(f"link to nowhere ({target})") from exc
        except OSError as exc:
            raise Skip(f"cannot open device directory: {exc.strerror}") from exc
        try:
            sf_num = _read_sf_num(fd, name)
            if sf_num is None:
                return None
            parent = _parent(target, functions)
            return self._read_sf(fd, name, aux_type, parent, sf_num, functions)
        finally:
            os.close(fd)

    def _read_sf(self, fd: int, name: str, aux_type: str, parent: PciFunction, sf_num: int,
                 functions: dict[str, PciFunction]) -> AuxFunction:
        attr = "net"
        try:
            netdevs = sorted(list_dir(fd, "net"))
            attr = "infiniband"
            rdma_devs = self._rdma.names(fd, name, True)
        except OSError as exc:
            raise Skip(reason(attr, exc)) from exc
        rdma = self._rdma.info(fd, name, rdma_devs) if rdma_devs else None
        pf_address = parent.physfn or parent.address
        pf = functions.get(pf_address)
        pf_netdev = self._net.pf_netdev_by_address(
            pf_address, pf.netdev if pf is not None else None,
            pf.netdevs if pf is not None else None)
        link_type = ""
        if netdevs:
            link_type = self._net.link_type(fd, netdevs[0], f"net/{netdevs[0]}") or ""
        if not link_type and pf_netdev is not None:
            link_type = self._net.link_types.get(pf_netdev) or ""
        return AuxFunction(
            name=name, aux_type=aux_type, parent=parent, pf_address=pf_address,
            pf_netdev=pf_netdev, sf_num=sf_num, netdevs=tuple(netdevs), link_type=link_type,
            rdma=rdma,
        )


def _read_sf_num(fd: int, name: str) -> int | None:
    """``sfnum``; None (logged at debug) when there is none: not a sub-function.

    Raises:
        Skip: it cannot be read or is not a number.
    """
    try:
        raw = read(fd, "sfnum")
    except OSError as exc:
        raise Skip(reason("sfnum", exc)) from exc
    if raw is None:
        log.debug("auxiliary device %s: no sfnum, not a sub-function; ignored", name)
        return None
    sf_num = parse_int(raw)
    if sf_num is None or sf_num < 0:
        raise Skip(f"sfnum is not a number: {raw.decode(errors='replace').strip()!r}")
    return sf_num


def _parent(target: str, functions: dict[str, PciFunction]) -> PciFunction:
    """The scanned PCI function above an auxiliary device's link target.

    Raises:
        Skip: there is none, or it is not in the scan.
    """
    parent_address = nearest_pci(target.rstrip("/").split("/")[:-1])
    if parent_address is None:
        raise Skip(f"no PCI function above it ({target})")
    parent = functions.get(parent_address)
    if parent is None:
        raise Skip(f"parent PCI function {parent_address} is not in the scan")
    return parent
