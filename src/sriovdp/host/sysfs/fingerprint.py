"""A cheap summary of the host facts a scan depends on, to tell when a resync may reuse it."""

from __future__ import annotations

import os

from sriovdp.host.files import HostRoot
from sriovdp.host.paths import HostPaths
from sriovdp.host.sysfs.net import read_route_table

_CLASS_DIRS = ("sys/class/net", "sys/class/infiniband", "sys/bus/auxiliary/devices",
               "sys/bus/vdpa/devices", "sys/class/infiniband_verbs")


def fingerprint(paths: HostPaths) -> int:
    """A cheap summary of what a scan depends on that changes on a live host: the PCI
    functions and their drivers, the netdevs, RDMA, auxiliary and vDPA devices, and the
    routing tables. Equal fingerprints mean a periodic resync may reuse the last scan.

    Cost: one listing per class dir plus one readlink per PCI function (a few ms for 2,000
    functions, against ~150 ms for a full scan). Reads stay inside the host root and the
    routing tables are read up to their limit, as in :func:`~sriovdp.host.sysfs.scan`.
    """
    try:
        root = HostRoot(paths.root)
    except OSError:
        return 0
    with root:
        return hash(tuple(_parts(root)))


def _parts(root: HostRoot) -> list[object]:
    parts: list[object] = []
    try:
        bus_fd = root.open_dir("sys/bus/pci/devices")
    except OSError:
        return [0]
    try:
        for name in sorted(os.listdir(bus_fd)):
            parts.append((name, _driver(root, bus_fd, name)))
    finally:
        os.close(bus_fd)
    for sub in _CLASS_DIRS:
        parts.append(_listing(root, sub))
    parts.extend(read_route_table(root, table) for table in ("route", "ipv6_route"))
    return parts


def _driver(root: HostRoot, bus_fd: int, name: str) -> str | None:
    if not root.confined:  # one syscall: the fast path on a real host
        try:
            return os.readlink(f"{name}/driver", dir_fd=bus_fd)
        except OSError:
            return None
    try:
        fd = root.open_at(bus_fd, name, f"sys/bus/pci/devices/{name}",
                          os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.readlink("driver", dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def _listing(root: HostRoot, rel: str) -> tuple[str, ...] | None:
    try:
        fd = root.open_dir(rel)
    except OSError:
        return None
    try:
        return tuple(sorted(os.listdir(fd)))
    except OSError:
        return None
    finally:
        os.close(fd)
