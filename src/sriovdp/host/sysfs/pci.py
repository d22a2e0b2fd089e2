"""One PCI function's attributes: ids, driver, NUMA node, IOMMU group, SR-IOV counts, VF
index, netdevs; its RDMA and vDPA facets come from their readers."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from sriovdp.host.files import DIR_FLAGS, HostRoot
from sriovdp.host.sysfs.fd import (
    Skip,
    basename,
    is_numbered,
    list_dir,
    log,
    parse_int,
    read,
    read_hex,
    read_id,
    read_int,
    readlink_name,
    reason,
)
from sriovdp.host.sysfs.net import NetReader
from sriovdp.host.sysfs.rdma import RdmaReader
from sriovdp.host.sysfs.vdpa import VdpaReader
from sriovdp.model.devices import ACCEL_CLASS, NET_CLASS, PciFunction, RdmaInfo

_WANTED_CLASSES = frozenset({NET_CLASS, ACCEL_CLASS})
# "pci:v00008086d0000154Csv00008086sd00000000bc02sc00i00", with or without the newline.
_MODALIAS_RE = re.compile(
    rb"pci:v0000([0-9A-Fa-f]{4})d0000([0-9A-Fa-f]{4})sv[0-9A-Fa-f]{8}sd[0-9A-Fa-f]{8}"
    rb"bc([0-9A-Fa-f]{2})sc([0-9A-Fa-f]{2})i([0-9A-Fa-f]{2})"
)
# Attributes a VF may have, probed without listing its directory (absence is tolerated).
_VF_PROBES = frozenset({"iommu_group", "acpi_index"})
_VF_PROBES_NO_NETDEV = _VF_PROBES | {"net", "uio"}


@dataclass(frozen=True, slots=True)
class _Ids:
    class_code: int
    vendor: str
    device: str


@dataclass(slots=True)
class _Attrs:
    """The optional attributes of one bound function (see :meth:`FunctionReader._attrs`)."""

    listed: bool
    present: AbstractSet[str]
    numa_node: int | None = None
    iommu_group: str | None = None
    vfio_noiommu: bool = False
    acpi_index: str = ""
    total_vfs: int | None = None
    num_vfs: int = 0
    uio: str | None = None


class FunctionReader:
    """Reads functions below ``sys/bus/pci/devices`` with the scan's shared readers."""

    def __init__(self, root: HostRoot, net: NetReader, rdma: RdmaReader,
                 vdpa: VdpaReader) -> None:
        self._root = root
        self._net = net
        self._rdma = rdma
        self._vdpa = vdpa
        # PF address → (VF address → VF index, the PF's netdev)
        self._pfs: dict[str, tuple[dict[str, int], str | None]] = {}
        self._noiommu: dict[str, bool] = {}

    def read(self, bus_fd: int, address: str) -> PciFunction | None:
        """Read ``sys/bus/pci/devices/<address>``; None when it is not class 0x02/0x12.

        Raises:
            Skip: the function cannot be read; the message is the reason.
        """
        root = self._root
        try:
            fd = (root.open_at(bus_fd, address, f"sys/bus/pci/devices/{address}", DIR_FLAGS)
                  if root.confined else os.open(address, DIR_FLAGS, dir_fd=bus_fd))
        except FileNotFoundError as exc:
            raise Skip("vanished during scan") from exc
        except OSError as exc:
            raise Skip(f"cannot open device directory: {exc.strerror}") from exc
        try:
            return self._read_open(fd, address)
        finally:
            os.close(fd)

    def _read_open(self, fd: int, address: str) -> PciFunction | None:
        ids = _read_ids(fd)
        if ids is None:
            return None
        step = "driver"  # what was being read when an OSError came
        try:
            driver = readlink_name(fd, "driver")
            if driver is None:
                return PciFunction(address=address, vendor=ids.vendor, device=ids.device,
                                   class_code=ids.class_code)
            step = "physfn"
            physfn = readlink_name(fd, "physfn")
            net_dirs = self._net.by_function.get(address) or {}
            attrs = self._attrs(fd, address, driver, physfn, bool(net_dirs))
            step = "net"
            if not net_dirs:
                net_dirs = _own_netdevs(fd, attrs.present, driver)
        except OSError as exc:
            raise Skip(reason(step, exc)) from exc
        return self._assemble(fd, address, ids, driver, physfn, net_dirs, attrs)

    def _attrs(self, fd: int, address: str, driver: str, physfn: str | None,
               has_netdev: bool) -> _Attrs:
        """Which optional attributes exist, and their values.

        A PF or plain function lists its directory once (a failed open costs more than a
        successful one, and most are absent). A VF, the bulk of a big host, skips the
        listing: the kernel never gives a VF sriov_* files, and uio/ or net/ only matter
        when class/net has no netdev.

        Raises:
            Skip: an attribute cannot be read, or a vfio-pci function has no IOMMU group.
        """
        attr = "device directory"
        try:
            listed = physfn is None or (not has_netdev and driver == "virtio-pci")
            if listed:
                present: AbstractSet[str] = set(os.listdir(fd))
            else:
                present = _VF_PROBES if has_netdev else _VF_PROBES_NO_NETDEV
            attrs = _Attrs(listed=listed, present=present)
            attr = "numa_node"
            numa_node = read_int(fd, "numa_node")
            # a NUMA node id is small; anything else (junk, 2**63) is "unknown"
            attrs.numa_node = numa_node if numa_node is not None and 0 <= numa_node < 1 << 16 \
                else None
            attr = "iommu_group"
            self._read_iommu(fd, address, driver, attrs)
            if "acpi_index" in present:
                attr = "acpi_index"
                attrs.acpi_index = (read(fd, "acpi_index") or b"").decode(
                    errors="replace").strip()
            if "sriov_totalvfs" in present:
                attr = "sriov_totalvfs"
                _read_sriov(fd, attrs)
            if "uio" in present:
                attr = "uio"
                attrs.uio = min(list_dir(fd, "uio"), default=None)
        except OSError as exc:
            raise Skip(reason(attr, exc)) from exc
        return attrs

    def _read_iommu(self, fd: int, address: str, driver: str, attrs: _Attrs) -> None:
        """``iommu_group`` and, for vfio-pci, whether it is a no-IOMMU group.

        vfio-pci names the group "vfio-noiommu" when it binds without an IOMMU; no other
        driver can be in such a group, so nobody else pays the lookup. A vfio-pci function
        without a group has no ``/dev/vfio`` node to hand out: it is skipped.

        Raises:
            Skip: the group is not a number, or vfio-pci has none.
            OSError: ``iommu_group`` cannot be read.
        """
        group = readlink_name(fd, "iommu_group") if "iommu_group" in attrs.present else None
        if group is not None and not (group.isascii() and group.isdigit()):
            raise Skip(f"iommu_group {group!r} is not a group number")
        if driver == "vfio-pci":
            if group is None:
                raise Skip("bound to vfio-pci but has no iommu_group (no /dev/vfio node to "
                           "hand out)")
            attrs.vfio_noiommu = self._is_noiommu(fd, address, group)
        attrs.iommu_group = group

    def _is_noiommu(self, fd: int, address: str, group: str) -> bool:
        """``iommu_group/name`` == ``vfio-noiommu`` (the group vfio creates without an IOMMU)."""
        cached = self._noiommu.get(group)
        if cached is None:
            try:
                name_fd = self._root.open_at(
                    fd, "iommu_group/name", f"sys/bus/pci/devices/{address}/iommu_group/name")
                try:
                    name = os.read(name_fd, 4096)
                finally:
                    os.close(name_fd)
            except OSError:
                name = b""
            cached = name.strip() == b"vfio-noiommu"
            self._noiommu[group] = cached
        return cached

    def _assemble(self, fd: int, address: str, ids: _Ids, driver: str, physfn: str | None,
                  net_dirs: dict[str, str], attrs: _Attrs) -> PciFunction:
        netdevs = sorted(net_dirs)
        vf_index: int | None = None
        pf_netdev: str | None = None
        net = self._net
        if physfn is not None:
            pf = self._pfs.get(physfn) or self._read_pf(fd, physfn, address)
            vf_index, pf_netdev = pf[0].get(address), pf[1]
        link_type = ""
        if netdevs:
            link_type = net.link_type(fd, netdevs[0], net_dirs[netdevs[0]]) or ""
        if not link_type and pf_netdev is not None:
            link_type = net.link_types.get(pf_netdev) or ""
        rdma: RdmaInfo | None = None
        pkey: str | None = None
        if self._rdma.may_have(address, attrs.listed and "infiniband" in attrs.present):
            rdma, pkey = self._rdma_facet(fd, address, link_type)
        routes = net.default_routes
        vdpa_owners = self._vdpa.owners
        return PciFunction(
            address=address, vendor=ids.vendor, device=ids.device, class_code=ids.class_code,
            driver=driver, numa_node=attrs.numa_node, iommu_group=attrs.iommu_group,
            vfio_noiommu=attrs.vfio_noiommu, acpi_index=attrs.acpi_index, physfn=physfn,
            vf_index=vf_index, total_vfs=attrs.total_vfs, num_vfs=attrs.num_vfs,
            netdevs=tuple(netdevs), pf_netdev=pf_netdev, link_type=link_type, uio=attrs.uio,
            default_route=bool(routes) and any(n in routes for n in netdevs), rdma=rdma,
            vdpa=self._vdpa.info(address, vdpa_owners[address])
            if vdpa_owners and address in vdpa_owners else None,
            pkey=pkey,
        )

    def _rdma_facet(self, fd: int, address: str, link_type: str
                    ) -> tuple[RdmaInfo | None, str | None]:
        """RDMA devices and, on InfiniBand, the pkey, of a function that may have them (the
        class map, or its own listing, names it). A read error logs and leaves them out."""
        devices = self._rdma.names(fd, address, True)
        if not devices:
            return None, None
        rdma = self._rdma.info(fd, address, devices)
        pkey = self._rdma.pkey(fd, address, devices[0]) if link_type == "infiniband" else None
        return rdma, pkey

    def _read_pf(self, vf_fd: int, pf_address: str, vf_address: str
                 ) -> tuple[dict[str, int], str | None]:
        """VF address → index (from the PF's ``virtfnN`` links) and the PF's netdev, read
        once per PF through the VF's ``physfn`` link. An unreadable PF logs a warning and
        leaves its VFs without an index and PF netdev."""
        known, _ = self._net.known_pf_netdev(pf_address)
        if not known:
            self._net.set_pf_netdev(pf_address, None)  # unless read below
        indexes: dict[str, int] = {}
        try:
            pf_fd = self._root.open_at(vf_fd, "physfn",
                                       f"sys/bus/pci/devices/{vf_address}/physfn", DIR_FLAGS)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: dangling physfn, the PF is not visible
                log.warning("cannot open PF %s of %s: %s", pf_address, vf_address,
                            exc.strerror, extra={"pci": vf_address})
        else:
            try:
                indexes = _vf_indexes(pf_fd, pf_address)
                if not known:
                    self._net.pf_netdev(pf_fd, pf_address)
            except OSError as exc:
                log.warning("cannot read VFs of PF %s: %s", pf_address, exc.strerror,
                            extra={"pci": pf_address})
            finally:
                os.close(pf_fd)
        found = self._pfs[pf_address] = (indexes, self._net.known_pf_netdev(pf_address)[1])
        return found


def _vf_indexes(pf_fd: int, pf_address: str) -> dict[str, int]:
    """VF address → index from the PF's ``virtfnN`` links (gaps in the numbering are fine).

    Raises:
        OSError: the PF's directory cannot be listed.
    """
    found: dict[str, int] = {}
    for name in os.listdir(pf_fd):
        if is_numbered(name, "virtfn"):
            try:
                found[basename(os.readlink(name, dir_fd=pf_fd))] = int(name[6:])
            except OSError as exc:  # one odd link does not hide the other VFs
                log.warning("PF %s: cannot read %s: %s", pf_address, name, exc.strerror,
                            extra={"pci": pf_address})
    return found


def _read_ids(fd: int) -> _Ids | None:
    """Class, vendor and device, from their files or else ``modalias``; None when the
    function is not of a wanted class (or cannot be told to be one).

    Raises:
        Skip: a wanted function has no vendor/device id anywhere.
        OSError: a file exists but cannot be read.
    """
    attr = "class"
    try:
        class_code = read_hex(fd, "class")
        if class_code is not None and (class_code >> 16) not in _WANTED_CLASSES:
            return None
        attr = "vendor"
        vendor = read_id(fd, "vendor")
        attr = "device"
        device = read_id(fd, "device")
        if class_code is not None and vendor is not None and device is not None:
            return _Ids(class_code, vendor, device)
        attr = "modalias"
        raw = read(fd, "modalias")
    except OSError as exc:
        raise Skip(reason(attr, exc)) from exc
    return _ids_from_modalias(raw, class_code, vendor, device)


def _ids_from_modalias(raw: bytes | None, class_code: int | None, vendor: str | None,
                       device: str | None) -> _Ids | None:
    modalias = _MODALIAS_RE.search(raw) if raw is not None else None
    if modalias is None:
        if class_code is None:
            return None  # cannot tell it is one of ours
        raise Skip("no vendor/device id in vendor, device or modalias")
    if class_code is None:
        class_code = int(modalias[3] + modalias[4] + modalias[5], 16)
        if (class_code >> 16) not in _WANTED_CLASSES:
            return None
    return _Ids(class_code, vendor or modalias[1].decode().lower(),
                device or modalias[2].decode().lower())


def _read_sriov(fd: int, attrs: _Attrs) -> None:
    """``sriov_totalvfs`` (junk → 0) and ``sriov_numvfs`` of a PF.

    Raises:
        OSError: ``sriov_totalvfs`` cannot be read (``sriov_numvfs`` errors say so too).
    """
    total_raw = read(fd, "sriov_totalvfs")
    if total_raw is None:
        return
    attrs.total_vfs = parse_int(total_raw) or 0
    try:
        attrs.num_vfs = read_int(fd, "sriov_numvfs") or 0
    except OSError as exc:
        raise Skip(reason("sriov_numvfs", exc)) from exc


def _own_netdevs(fd: int, present: AbstractSet[str], driver: str) -> dict[str, str]:
    """Netdevs from the function's own ``net/`` (``virtioN/net/`` for virtio-net), when the
    class/net map has none for it (a tree without class/net links).

    Raises:
        OSError: a listing fails.
    """
    net_dirs: dict[str, str] = {}
    if "net" in present:
        net_dirs = {name: f"net/{name}" for name in list_dir(fd, "net")}
    if not net_dirs and driver == "virtio-pci":
        for sub in present:
            if is_numbered(sub, "virtio"):
                for name in list_dir(fd, f"{sub}/net"):
                    net_dirs[name] = f"{sub}/net/{name}"
    return net_dirs
