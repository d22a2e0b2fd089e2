"""Scan the host's PCI functions from sysfs into an immutable :class:`Inventory`.

One pass over ``sys/bus/pci/devices``: every function of PCI base class 0x02 (network) or
0x12 (accelerator) becomes a :class:`PciFunction`; everything else is ignored.

How the files are read, and why:

* Each function is read through one directory fd opened on ``sys/bus/pci/devices/<bdf>``
  (the kernel's symlink to ``sys/devices/pci0000:3b/.../<bdf>``); attributes are then
  ``openat``/``readlinkat`` relative to it with ``os.open``/``os.read``/``os.readlink``.
  Text-mode ``open()``, ``glob``, ``realpath`` and ``Path.resolve`` cost 3-10x more per file
  and are never used per device.
* Vendor, device and class come from the ``vendor``/``device``/``class`` files, falling
  back to ``modalias``. There is no ``pci.ids`` lookup and one odd device never hides the
  others (the Go plugin's ghw returns no devices at all when one ``modalias`` is short).
* Netdevs come from one pass over the ``sys/class/net`` links (the plugin's network
  namespace): ``<bdf>/net/<if>`` and, for virtio-net, ``<bdf>/virtioN/net/<if>``. A
  function's own ``net/`` is listed only when class/net has nothing for it. Link types are
  read from the netdev's ``type`` file (the one ``sys/class/net/<if>/type`` links to).
* A PF or plain function lists its directory once to learn which optional attributes
  exist; a VF skips that listing (the kernel never gives a VF ``sriov_*`` files) and probes
  ``iommu_group``/``acpi_index`` (and ``net/``/``uio/`` when it has no netdev) directly.
* The VF → index map is built once per PF from its ``virtfnN`` links (O(VFs)), not per VF;
  gaps in the numbering are fine.
* Missing optional attributes give ``None``/defaults. An attribute that exists but cannot be
  read (``driver`` or ``physfn`` not a symlink, permission denied, the device vanishing
  mid-scan) skips that one function with a :class:`SkippedFunction` reason and a warning on
  the ``sriovdp.host.sysfs`` logger; the scan carries on.
* RDMA, vDPA and auxiliary (SF) devices cost nothing where they are absent: one listing
  per scan of ``sys/class/infiniband``, ``sys/bus/vdpa/devices`` and
  ``sys/bus/auxiliary/devices`` (a failed open when the subsystem is not loaded) gives the
  functions that have them; nothing is probed per VF. The RDMA char-device maps
  (``sys/class/infiniband_{cm,mad,verbs}``) are read once, on the first RDMA device.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Set as AbstractSet

from sriovdp.errors import HostError
from sriovdp.host.paths import HostPaths
from sriovdp.model.devices import (
    ACCEL_CLASS,
    NET_CLASS,
    AuxFunction,
    HostFacts,
    Inventory,
    PciFunction,
    RdmaInfo,
    SkippedFunction,
    VdpaInfo,
    link_type_name,
)

__all__ = ["parse_aux_name", "read_default_route_ifnames", "scan"]

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: a FIFO or a character device planted in the tree must not block the scan
# (sysfs attribute files ignore the flag).
_FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_WANTED_CLASSES = frozenset({NET_CLASS, ACCEL_CLASS})

# sysfs names PCI functions "dddd:bb:ss.f" in lower case; domains above ffff (Intel VMD)
# have five digits.
_PCI_NAME_RE = re.compile(r"[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\Z")
# "pci:v00008086d0000154Csv00008086sd00000000bc02sc00i00", with or without the newline.
_MODALIAS_RE = re.compile(
    rb"pci:v0000([0-9A-Fa-f]{4})d0000([0-9A-Fa-f]{4})sv[0-9A-Fa-f]{8}sd[0-9A-Fa-f]{8}"
    rb"bc([0-9A-Fa-f]{2})sc([0-9A-Fa-f]{2})i([0-9A-Fa-f]{2})"
)
# Attributes a VF may have, probed without listing its directory (absence is tolerated).
_VF_PROBES = frozenset({"iommu_group", "acpi_index"})
_VF_PROBES_NO_NETDEV = _VF_PROBES | {"net", "uio"}
_HEX4_RE = re.compile(rb"0x([0-9A-Fa-f]{4})\Z")
# Auxiliary device names: "<driver>.<type>.<id>", e.g. "mlx5_core.sf.4".
# ASCII only: the name becomes the kubelet's device id and a CDI device name.
_AUX_NAME_RE = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([0-9]+)\Z")
# Names handed to containers (RDMA devices and char devices, vhost-vdpa nodes).
_SAFE_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+\Z")
# Uplink representor of a switchdev PF: phys_port_name "p0", "p1".
_UPLINK_PORT_RE = re.compile(rb"p\d+\Z")
# RDMA char devices per RDMA device, in the Go plugin's order: (class dir, name part).
_RDMA_CHAR_KINDS = (
    ("infiniband_cm", "ucm"),
    ("infiniband_mad", "issm"),
    ("infiniband_mad", "umad"),
    ("infiniband_verbs", "uverbs"),
)

# ``/proc/net/ipv6_route`` flags: RTF_REJECT marks the kernel's "unreachable" default route
# on ``lo``, which is not a way out of the host.
_RTF_REJECT = 0x0200


class _Skip(Exception):
    """Raised inside one function's read: skip it with this reason."""


def scan(paths: HostPaths) -> Inventory:
    """Read every network (class 0x02) and accelerator (class 0x12) PCI function.

    Where each :class:`PciFunction` field comes from (``<bdf>`` = ``sys/bus/pci/devices/<bdf>``):

    ==================  ==================================================================
    class_code          ``<bdf>/class`` (``0x020000``); ``modalias`` ``bcXXscXXiXX`` if absent
    vendor, device      ``<bdf>/vendor``, ``<bdf>/device`` (``0x8086`` → ``"8086"``);
                        ``<bdf>/modalias`` when those are missing or malformed
    driver              basename of ``readlink <bdf>/driver`` (dangling is fine)
    numa_node           ``<bdf>/numa_node`` (-1, missing or junk → None)
    iommu_group         basename of ``readlink <bdf>/iommu_group``
    vfio_noiommu        ``<bdf>/iommu_group/name`` == ``vfio-noiommu`` (vfio-pci only)
    acpi_index          ``<bdf>/acpi_index``, trimmed
    physfn              basename of ``readlink <bdf>/physfn``
    vf_index            N of the PF's ``virtfnN`` link pointing at ``<bdf>``
    total_vfs, num_vfs  ``<bdf>/sriov_totalvfs`` (junk → 0), ``<bdf>/sriov_numvfs``
    netdevs             ``sys/class/net/*`` links into ``<bdf>/net/`` or ``<bdf>/virtioN/net/``
                        (else the entries of those directories)
    pf_netdev           netdev of the PF (``<bdf>/physfn/net/``): the switchdev uplink
                        (``phys_port_name`` ``pN``) when it has several, else the first
    link_type           ``sys/class/net/<if>/type`` of the first netdev, else of pf_netdev
    uio                 first entry of ``<bdf>/uio/``
    default_route       ``proc/net/route``, ``proc/net/ipv6_route`` (see
                        :func:`read_default_route_ifnames`)
    rdma                RDMA devices: ``sys/class/infiniband/*`` links into
                        ``<bdf>/infiniband/<dev>`` (without that class dir: the entries of
                        ``<bdf>/infiniband/`` of a PF or plain function); char devices from
                        ``sys/class/infiniband_{cm,mad,verbs}/*/ibdev`` and
                        ``dev/infiniband/rdma_cm``
    vdpa                ``sys/bus/vdpa/devices/<vdpa>`` links into ``<bdf>/<vdpa>`` (or
                        ``<bdf>/<aux dev>/<vdpa>``); the first by name; its ``driver`` link
                        and first ``vhost-vdpa*`` child dir (``dev/<that>`` must exist)
    pkey                ``<bdf>/infiniband/<first dev>/ports/1/pkeys/0``, only when
                        link_type is ``infiniband``
    ==================  ==================================================================

    Auxiliary devices (:class:`AuxFunction`, ``Inventory.aux``): every
    ``sys/bus/auxiliary/devices/<driver>.<type>.<id>`` with an ``sfnum`` file whose link
    target lies below a function of the inventory (see :meth:`_Reader.read_aux`).

    Args:
        paths: the host root; reads ``sys/bus/pci/devices``, ``sys/class/net``,
            ``sys/class/infiniband*``, ``sys/bus/vdpa``, ``sys/bus/auxiliary``,
            ``proc/net/route``, ``proc/net/ipv6_route``, ``dev/vhost-net``, ``dev/net/tun``,
            ``dev/infiniband/rdma_cm`` and ``dev/vhost-vdpa-N``.

    Returns:
        The inventory: bound functions in address order, unbound or unreadable ones in
        ``skipped`` (with a reason), and the host facts.

    Raises:
        HostError: ``sys/bus/pci/devices`` itself cannot be listed.
    """
    bus_dir = paths.pci_devices
    try:
        bus_fd = os.open(bus_dir, _DIR_FLAGS)
    except OSError as exc:
        raise HostError(f"cannot list PCI devices in {bus_dir}: {exc.strerror}") from exc
    reader = _Reader(paths)
    functions: dict[str, PciFunction] = {}
    skipped: list[SkippedFunction] = []
    try:
        names = sorted(name for name in os.listdir(bus_fd) if _PCI_NAME_RE.match(name))
        for address in names:
            try:
                function = reader.read_function(bus_fd, address)
            except _Skip as skip:
                reason = str(skip)
                log.warning("skipping PCI function %s: %s", address, reason,
                            extra={"pci": address})
                skipped.append(SkippedFunction(address, reason))
                continue
            if function is None:
                continue
            if function.driver is None:
                log.debug("skipping PCI function %s: no driver bound", address,
                          extra={"pci": address})
                skipped.append(SkippedFunction(address, "no driver bound"))
                continue
            functions[address] = function
    finally:
        os.close(bus_fd)
    aux = reader.read_aux(functions, skipped)
    facts = HostFacts(
        vhost_net=os.path.exists(paths.dev / "vhost-net") and os.path.exists(paths.dev / "net/tun")
    )
    return Inventory(functions=functions, aux=aux, skipped=tuple(skipped), facts=facts)


def parse_aux_name(name: str) -> tuple[str, str, int] | None:
    """``"mlx5_core.sf.4"`` → ``("mlx5_core", "sf", 4)``; None unless ``<driver>.<type>.<id>``.

    Exactly three dot-separated parts, the last a non-negative integer: ``"0000:12:34.0"``,
    ``"driver_name.type.id"`` and ``"driver_name.type.-4"`` are not auxiliary device names.
    """
    m = _AUX_NAME_RE.match(name)
    return (m[1], m[2], int(m[3])) if m else None


def read_default_route_ifnames(paths: HostPaths) -> frozenset[str]:
    """Netdevs with an IPv4 or IPv6 default route in the plugin's network namespace.

    IPv4: ``proc/net/route`` lines with Destination and Mask ``00000000``. IPv6:
    ``proc/net/ipv6_route`` lines with an all-zero destination and prefix length ``00``,
    except ``RTF_REJECT`` (unreachable) routes. A missing file means no default route.
    """
    found: set[str] = set()
    v4 = _read_whole(paths.proc_net / "route")
    for line in v4.splitlines()[1:]:  # first line is the column header
        fields = line.split()
        if len(fields) >= 8 and fields[1] == b"00000000" and fields[7] == b"00000000":
            found.add(fields[0].decode(errors="replace"))
    v6 = _read_whole(paths.proc_net / "ipv6_route")
    for line in v6.splitlines():  # no header line in this file
        fields = line.split()
        if len(fields) < 10 or fields[1] != b"00" or fields[0].strip(b"0"):
            continue
        try:
            rejected = int(fields[8], 16) & _RTF_REJECT
        except ValueError:
            continue
        if not rejected:
            found.add(fields[9].decode(errors="replace"))
    return frozenset(found)


def _read_class_net(paths: HostPaths) -> dict[str, dict[str, str]]:
    """PCI address → {netdev: its directory relative to the PCI function's directory}.

    From the ``sys/class/net/<if>`` links that end in ``<bdf>/net/<if>`` (e.g.
    ``../../devices/pci0000:3b/0000:3b:02.0/net/ens785f0v0``) or ``<bdf>/virtioN/net/<if>``
    (virtio-net). Other netdevs are left out: virtual ones (``virtual/net/lo``) and those of
    devices below a function (a USB NIC, an mlx5 SF under ``<bdf>/mlx5_core.sf.2/net/``),
    which the function's own ``net/`` does not list either. No ``sys/class/net``: ``{}``.
    """
    found: dict[str, dict[str, str]] = {}
    try:
        class_fd = os.open(paths.class_net, _DIR_FLAGS)
    except OSError:
        return found
    try:
        for ifname in os.listdir(class_fd):
            try:
                parts = os.readlink(ifname, dir_fd=class_fd).split("/")
            except OSError:
                continue
            if len(parts) < 4 or parts[-2] != "net":
                continue
            if _PCI_NAME_RE.match(parts[-3]):
                found.setdefault(parts[-3], {})[ifname] = f"net/{parts[-1]}"
            elif (len(parts) >= 5 and parts[-3].startswith("virtio") and parts[-3][6:].isascii()
                  and parts[-3][6:].isdigit()
                  and _PCI_NAME_RE.match(parts[-4])):
                found.setdefault(parts[-4], {})[ifname] = f"{parts[-3]}/net/{parts[-1]}"
    finally:
        os.close(class_fd)
    return found


def _read_class_links(path: os.PathLike[str] | str, kind: str) -> dict[str, list[str]] | None:
    """Owner → sorted device names from class links ending in ``<owner>/<kind>/<name>``.

    E.g. ``sys/class/infiniband/mlx5_2`` → ``../../devices/pci0000:3b/0000:3b:00.2/infiniband/
    mlx5_2`` gives ``{"0000:3b:00.2": ["mlx5_2"]}``; the owner is that path component, a PCI
    address or an auxiliary device name (``.../mlx5_core.sf.4/infiniband/mlx5_4``). None when
    ``path`` cannot be listed (the subsystem is not loaded).
    """
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError:
        return None
    found: dict[str, list[str]] = {}
    try:
        for name in os.listdir(fd):
            try:
                parts = os.readlink(name, dir_fd=fd).rstrip("/").split("/")
            except OSError:
                continue
            if len(parts) >= 3 and parts[-2] == kind:
                found.setdefault(parts[-3], []).append(name)
    except OSError:
        return None
    finally:
        os.close(fd)
    for names in found.values():
        names.sort()
    return found


def _vdpa_owner(parts: list[str]) -> str | None:
    """The PCI function a vDPA device link target (split on ``/``) belongs to, or None."""
    if len(parts) >= 2 and _PCI_NAME_RE.match(parts[-2]):
        return parts[-2]
    if len(parts) >= 3 and _PCI_NAME_RE.match(parts[-3]):
        aux = parse_aux_name(parts[-2])
        if aux is not None and aux[1] != "sf":
            return parts[-3]
    return None


def _nearest_pci(parts: list[str]) -> str | None:
    """The last PCI-address component of a link target's directories, or None."""
    for part in reversed(parts):
        if _PCI_NAME_RE.match(part):
            return part
    return None


def _read_whole(path: os.PathLike[str] | str) -> bytes:
    """The content of a (proc) file, or ``b""`` when it cannot be read."""
    try:
        fd = os.open(path, _FILE_FLAGS)
    except OSError:
        return b""
    try:
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _basename(link_target: str) -> str:
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


def _reason(attr: str, exc: OSError) -> str:
    """Why one function is skipped: attribute ``attr`` raised ``exc``."""
    if exc.errno == errno.EINVAL:
        return f"{attr} is not a symlink"
    if exc.errno == errno.ENOENT:
        return f"{attr} vanished during scan"
    return f"cannot read {attr}: {exc.strerror}"


class _Reader:
    """One scan's state: open dir fds and the per-PF / per-netdev / per-group caches."""

    def __init__(self, paths: HostPaths) -> None:
        self._paths = paths
        self._default_routes = read_default_route_ifnames(paths)
        self._netdevs = _read_class_net(paths)
        self._pfs: dict[str, tuple[dict[str, int], str | None]] = {}
        self._link_types: dict[str, str | None] = {}
        self._noiommu: dict[str, bool] = {}
        # owner (PCI address or aux name) → RDMA device names; None: no sys/class/infiniband
        self._rdma_devs = _read_class_links(paths.sys / "class/infiniband", "infiniband")
        # sys/class/infiniband_{cm,mad,verbs} entries, read on first use: owner → [(class
        # dir, kind, entry)] by entry name, and RDMA device → {kind: entry} for entries whose
        # link does not say their owner (read through the class dir's ibdev)
        self._rdma_chars: tuple[dict[str, list[tuple[str, str, str]]],
                                dict[str, dict[str, str]]] | None = None
        self._rdma_cm: bool | None = None
        self._vdpa_devs = self._read_vdpa_owners(paths)
        self._uplinks: dict[str, str | None] = {}

    # -- one function ----------------------------------------------------------------------

    def read_function(self, bus_fd: int, address: str) -> PciFunction | None:
        """Read ``sys/bus/pci/devices/<address>``; None when it is not class 0x02/0x12.

        Raises:
            _Skip: the function cannot be read; the message is the reason.
        """
        try:
            fd = os.open(address, _DIR_FLAGS, dir_fd=bus_fd)
        except FileNotFoundError as exc:
            raise _Skip("vanished during scan") from exc
        except OSError as exc:
            raise _Skip(f"cannot open device directory: {exc.strerror}") from exc
        try:
            return self._read_open_function(fd, address)
        finally:
            os.close(fd)

    def _read_open_function(self, fd: int, address: str) -> PciFunction | None:
        # One try block for the whole function (a context manager per attribute costs a
        # third of the scan); ``attr`` names what was being read when an OSError came.
        attr = "class"
        try:
            class_code = _read_hex(fd, "class")
            if class_code is not None and (class_code >> 16) not in _WANTED_CLASSES:
                return None
            attr = "vendor"
            vendor = _read_id(fd, "vendor")
            attr = "device"
            device = _read_id(fd, "device")
            if class_code is None or vendor is None or device is None:
                attr = "modalias"
                raw = _read(fd, "modalias")
                modalias = _MODALIAS_RE.search(raw) if raw is not None else None
                if modalias is None:
                    if class_code is None:
                        return None  # cannot tell it is one of ours
                    raise _Skip("no vendor/device id in vendor, device or modalias")
                if class_code is None:
                    class_code = int(modalias[3] + modalias[4] + modalias[5], 16)
                    if (class_code >> 16) not in _WANTED_CLASSES:
                        return None
                vendor = vendor or modalias[1].decode().lower()
                device = device or modalias[2].decode().lower()

            attr = "driver"
            driver = _readlink_name(fd, "driver")
            if driver is None:
                return PciFunction(address=address, vendor=vendor, device=device,
                                   class_code=class_code)
            attr = "physfn"
            physfn = _readlink_name(fd, "physfn")
            net_dirs = self._netdevs.get(address) or {}
            # Which optional attributes to read: a PF or plain function lists its directory
            # once (a failed open costs more than a successful one, and most are absent).
            # A VF, the bulk of a big host, skips the listing: the kernel never gives a VF
            # sriov_* files, and uio/ or net/ only matter when class/net has no netdev.
            attr = "device directory"
            listed = physfn is None or (not net_dirs and driver == "virtio-pci")
            if listed:
                present: AbstractSet[str] = set(os.listdir(fd))
            elif net_dirs:
                present = _VF_PROBES
            else:
                present = _VF_PROBES_NO_NETDEV
            attr = "numa_node"
            numa_node = _read_int(fd, "numa_node")
            iommu_group: str | None = None
            vfio_noiommu = False
            if "iommu_group" in present:
                attr = "iommu_group"
                iommu_group = _readlink_name(fd, "iommu_group")
                if iommu_group is not None and not (iommu_group.isascii()
                                                    and iommu_group.isdigit()):
                    raise _Skip(f"iommu_group {iommu_group!r} is not a group number")
                # vfio-pci names the group "vfio-noiommu" when it binds without an IOMMU;
                # no other driver can be in such a group, so nobody else pays the lookup.
                if iommu_group is not None and driver == "vfio-pci":
                    vfio_noiommu = self._is_noiommu(fd, iommu_group)
            acpi_index = ""
            if "acpi_index" in present:
                attr = "acpi_index"
                acpi_index = (_read(fd, "acpi_index") or b"").decode(errors="replace").strip()
            total_vfs: int | None = None
            num_vfs = 0
            if "sriov_totalvfs" in present:
                attr = "sriov_totalvfs"
                total_raw = _read(fd, "sriov_totalvfs")
                if total_raw is not None:
                    total_vfs = _parse_int(total_raw) or 0
                    attr = "sriov_numvfs"
                    num_vfs = _read_int(fd, "sriov_numvfs") or 0
            # Netdevs come from the sys/class/net map built once per scan (one readlink
            # each); the device's own net/ (virtioN/net/ for virtio-net) is listed only
            # when the map has nothing for it (a tree without class/net links).
            if not net_dirs and "net" in present:
                attr = "net"
                net_dirs = {name: f"net/{name}" for name in _list_dir(fd, "net")}
            if not net_dirs and driver == "virtio-pci":
                attr = "virtio*/net"
                for sub in present:
                    if sub.startswith("virtio") and sub[6:].isascii() and sub[6:].isdigit():
                        for name in _list_dir(fd, f"{sub}/net"):
                            net_dirs[name] = f"{sub}/net/{name}"
            netdevs = sorted(net_dirs)
            uio: str | None = None
            if "uio" in present:
                attr = "uio"
                uio = min(_list_dir(fd, "uio"), default=None)
            vf_index: int | None = None
            pf_netdev: str | None = None
            if physfn is not None:
                vf_index_map, pf_netdev = self._pf_info(fd, physfn, address)
                vf_index = vf_index_map.get(address)
            link_type = ""
            if netdevs:
                link_type = self._link_type(fd, netdevs[0], net_dirs[netdevs[0]]) or ""
            if not link_type and pf_netdev is not None:
                link_type = self._link_types.get(pf_netdev) or ""
        except OSError as exc:
            raise _Skip(_reason(attr, exc)) from exc

        # RDMA, pkey and vDPA: optional facets; a read error logs and leaves them out. Only
        # functions the per-scan maps (or their own listing) name pay for them.
        rdma: RdmaInfo | None = None
        pkey: str | None = None
        rdma_map = self._rdma_devs
        if (rdma_map.get(address) if rdma_map is not None
                else listed and "infiniband" in present):
            rdma_devs = self._rdma_names(fd, address, True)
            if rdma_devs:
                rdma = self._rdma_info(fd, address, rdma_devs)
                if link_type == "infiniband":
                    pkey = self._pkey(fd, address, rdma_devs[0])
        vdpa: VdpaInfo | None = None
        if self._vdpa_devs:
            vdpa_names = self._vdpa_devs.get(address)
            if vdpa_names:
                vdpa = self._vdpa_info(address, vdpa_names)

        default_routes = self._default_routes
        return PciFunction(
            address=address,
            vendor=vendor,
            device=device,
            class_code=class_code,
            driver=driver,
            # a NUMA node id is small; anything else (junk, 2**63) is "unknown"
            numa_node=numa_node if numa_node is not None and 0 <= numa_node < 1 << 16 else None,
            iommu_group=iommu_group,
            vfio_noiommu=vfio_noiommu,
            acpi_index=acpi_index,
            physfn=physfn,
            vf_index=vf_index,
            total_vfs=total_vfs,
            num_vfs=num_vfs,
            netdevs=tuple(netdevs),
            pf_netdev=pf_netdev,
            link_type=link_type,
            uio=uio,
            default_route=bool(default_routes) and any(n in default_routes for n in netdevs),
            rdma=rdma,
            vdpa=vdpa,
            pkey=pkey,
        )

    # -- cached lookups --------------------------------------------------------------------

    def _pf_info(
        self, vf_fd: int, pf_address: str, vf_address: str
    ) -> tuple[dict[str, int], str | None]:
        """VF address → index from the PF's ``virtfnN`` links, and the PF's first ``net/`` entry.

        Read once per PF, through the VF's ``physfn`` link. An unreadable PF logs a warning
        and leaves its VFs without an index and PF name.
        """
        cached = self._pfs.get(pf_address)
        if cached is not None:
            return cached
        vf_map: dict[str, int] = {}
        pf_netdev: str | None = None
        try:
            pf_fd = os.open("physfn", _DIR_FLAGS, dir_fd=vf_fd)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: dangling physfn, the PF is not visible
                log.warning("cannot open PF %s of %s: %s", pf_address, vf_address, exc.strerror,
                            extra={"pci": vf_address})
        else:
            try:
                for name in os.listdir(pf_fd):
                    if name.startswith("virtfn") and name[6:].isascii() and name[6:].isdigit():
                        try:
                            vf_map[_basename(os.readlink(name, dir_fd=pf_fd))] = int(name[6:])
                        except OSError as exc:  # one odd link does not hide the other VFs
                            log.warning("PF %s: cannot read %s: %s", pf_address, name,
                                        exc.strerror, extra={"pci": pf_address})
                pf_netdevs = self._netdevs.get(pf_address) or {
                    name: f"net/{name}" for name in _list_dir(pf_fd, "net")}
                # a switchdev PF also carries VF/SF representors: its uplink is the one
                pf_netdev = (_uplink_of(pf_fd, pf_netdevs) if len(pf_netdevs) > 1
                             else min(pf_netdevs, default=None))
                if pf_netdev is not None:
                    self._link_type(pf_fd, pf_netdev, pf_netdevs[pf_netdev])
            except OSError as exc:
                log.warning("cannot read VFs of PF %s: %s", pf_address, exc.strerror,
                            extra={"pci": pf_address})
            finally:
                os.close(pf_fd)
        self._pfs[pf_address] = vf_map, pf_netdev
        return vf_map, pf_netdev

    def _link_type(self, fd: int, ifname: str, net_dir: str) -> str | None:
        """Link type name of netdev ``ifname`` from its ``type`` file; None if unreadable.

        ``net_dir`` is the netdev's directory relative to ``fd`` (``net/<ifname>``): the
        file ``sys/class/net/<ifname>/type`` links to, without the symlink walk. The result
        is cached per name, so a PF's type is read once for all its VFs.
        """
        if ifname in self._link_types:
            return self._link_types[ifname]
        try:
            arphrd = _read_int(fd, f"{net_dir}/type")
        except OSError:
            arphrd = None
        found = link_type_name(arphrd) if arphrd is not None else None
        self._link_types[ifname] = found
        return found

    # -- RDMA, pkeys, vDPA ----------------------------------------------------------------

    def _rdma_names(self, fd: int, owner: str, has_dir: bool) -> list[str]:
        """RDMA device names of ``owner`` (a PCI address or aux name), sorted.

        From the ``sys/class/infiniband`` map; without that class dir (a tree without class
        links), the entries of ``fd``'s ``infiniband/`` when ``has_dir`` says it exists.
        """
        if self._rdma_devs is not None:
            return [d for d in self._rdma_devs.get(owner) or [] if _SAFE_NAME_RE.match(d)]
        if not has_dir:
            return []
        try:
            return sorted(d for d in _list_dir(fd, "infiniband") if _SAFE_NAME_RE.match(d))
        except OSError as exc:
            log.warning("%s: cannot list infiniband/: %s", owner, exc.strerror,
                        extra={"pci": owner})
            return []

    def _rdma_info(self, fd: int, owner: str, devices: list[str]) -> RdmaInfo:
        """The char devices of ``devices`` (RDMA devices of ``owner``, open as ``fd``).

        Per device, in this order: ``ucm``, ``issm``, ``umad``, ``uverbs`` (the first entry by
        name whose ``ibdev`` names the device), then ``/dev/infiniband/rdma_cm`` once if it
        exists. The kernel puts a char device's sysfs dir below the RDMA device's parent
        (``<bdf>/infiniband_verbs/uverbs2``), so only ``owner``'s own entries are read, with
        short paths relative to ``fd``.
        """
        if self._rdma_chars is None:
            self._rdma_chars = self._read_rdma_chars()
            self._rdma_cm = os.path.exists(self._paths.dev / "infiniband/rdma_cm")
        by_owner, by_ibdev = self._rdma_chars
        found: dict[str, dict[str, str]] = {}
        for subdir, kind, entry in by_owner.get(owner, ()):
            try:
                raw = _read(fd, f"{subdir}/{entry}/ibdev")
            except OSError:
                raw = None
            if raw is not None and _SAFE_NAME_RE.match(entry):
                ibdev = raw.decode(errors="replace").strip()
                found.setdefault(ibdev, {}).setdefault(kind, entry)
        paths: list[str] = []
        for dev in devices:
            own, other = found.get(dev) or {}, by_ibdev.get(dev) or {}
            for _, kind in _RDMA_CHAR_KINDS:
                # the first by name, as a glob over the class dir would find it
                entries = [e for e in (own.get(kind), other.get(kind)) if e is not None]
                if entries:
                    paths.append(f"/dev/infiniband/{min(entries)}")
        if self._rdma_cm:
            paths.append("/dev/infiniband/rdma_cm")
        return RdmaInfo(devices=tuple(devices), char_devices=tuple(dict.fromkeys(paths)))

    def _read_rdma_chars(
        self,
    ) -> tuple[dict[str, list[tuple[str, str, str]]], dict[str, dict[str, str]]]:
        """Index ``sys/class/infiniband_{cm,mad,verbs}`` once: see ``self._rdma_chars``.

        An entry's kind is the first of ``ucm`` / ``issm``, ``umad`` / ``uverbs`` its name
        contains (``abi_version`` has none). Its owner comes from the link target
        (``../../devices/.../<owner>/infiniband_verbs/uverbs2``); an entry whose target does
        not end that way has its ``ibdev`` read here instead.
        """
        by_owner: dict[str, list[tuple[str, str, str]]] = {}
        by_ibdev: dict[str, dict[str, str]] = {}
        class_dir = self._paths.sys / "class"
        for subdir in dict.fromkeys(d for d, _ in _RDMA_CHAR_KINDS):
            kinds = [k for d, k in _RDMA_CHAR_KINDS if d == subdir]
            try:
                fd = os.open(class_dir / subdir, _DIR_FLAGS)
            except OSError:
                continue
            try:
                for entry in sorted(os.listdir(fd)):
                    kind = next((k for k in kinds if k in entry), None)
                    if kind is None:
                        continue
                    try:
                        parts = os.readlink(entry, dir_fd=fd).rstrip("/").split("/")
                    except OSError:
                        parts = []
                    if len(parts) >= 3 and parts[-2] == subdir and parts[-1] == entry:
                        by_owner.setdefault(parts[-3], []).append((subdir, kind, entry))
                        continue
                    try:
                        raw = _read(fd, f"{entry}/ibdev")
                    except OSError:
                        raw = None
                    if raw is not None and _SAFE_NAME_RE.match(entry):
                        ibdev = raw.decode(errors="replace").strip()
                        by_ibdev.setdefault(ibdev, {}).setdefault(kind, entry)
            except OSError as exc:
                log.warning("cannot list %s: %s", class_dir / subdir, exc.strerror)
            finally:
                os.close(fd)
        return by_owner, by_ibdev

    def _pkey(self, fd: int, address: str, rdma_dev: str) -> str | None:
        """``infiniband/<rdma_dev>/ports/1/pkeys/0``, trimmed (e.g. ``0x7fff``); None on error."""
        rel = f"infiniband/{rdma_dev}/ports/1/pkeys/0"
        try:
            raw = _read(fd, rel)
        except OSError as exc:
            log.info("%s: cannot read %s: %s", address, rel, exc.strerror, extra={"pci": address})
            return None
        pkey = raw.decode(errors="replace").strip() if raw is not None else ""
        if not pkey:
            log.info("%s: no pkey in %s", address, rel, extra={"pci": address})
            return None
        return pkey

    @staticmethod
    def _read_vdpa_owners(paths: HostPaths) -> dict[str, list[str]]:
        """PCI address → vDPA device names (sorted), from the ``sys/bus/vdpa/devices`` links.

        A vDPA device whose parent is the PCI function (``<bdf>/vdpa0``) or an auxiliary
        device of it (``<bdf>/mlx5_core.vnet.2/vdpa0``, as mlx5_vdpa creates them) belongs to
        that function; one below a sub-function (``<bdf>/mlx5_core.sf.2/...``) does not (the
        Go plugin only looks at vDPA devices of PCI management devices).
        """
        try:
            fd = os.open(paths.sys / "bus/vdpa/devices", _DIR_FLAGS)
        except OSError:
            return {}
        found: dict[str, list[str]] = {}
        try:
            for name in os.listdir(fd):
                try:
                    parts = os.readlink(name, dir_fd=fd).rstrip("/").split("/")
                except OSError:
                    continue
                owner = _vdpa_owner(parts)
                if owner is not None:
                    found.setdefault(owner, []).append(name)
        except OSError as exc:
            log.warning("cannot list vDPA devices: %s", exc.strerror)
        finally:
            os.close(fd)
        for names in found.values():
            names.sort()
        return found

    def _vdpa_info(self, address: str, names: list[str]) -> VdpaInfo | None:
        """Driver and vhost path of the first vDPA device in ``names``; None if it vanished."""
        name = names[0]
        if len(names) > 1:
            log.info("%s has %d vDPA devices (%s); using %s", address, len(names),
                     ", ".join(names), name, extra={"pci": address})
        try:
            fd = os.open(self._paths.sys / "bus/vdpa/devices" / name, _DIR_FLAGS)
        except OSError as exc:
            log.warning("%s: cannot open vDPA device %s: %s", address, name, exc.strerror,
                        extra={"pci": address})
            return None
        try:
            driver = _readlink_name(fd, "driver")
            vhost_path: str | None = None
            if driver == "vhost_vdpa":
                for entry in sorted(os.listdir(fd)):
                    if "vhost-vdpa" in entry and _SAFE_NAME_RE.match(entry) and stat.S_ISDIR(
                            os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                        if os.path.exists(self._paths.dev / entry):
                            vhost_path = f"/dev/{entry}"
                        else:
                            log.warning("%s: vDPA device %s has %s but %s is missing", address,
                                        name, entry, self._paths.dev / entry,
                                        extra={"pci": address})
                        break
        except OSError as exc:
            log.warning("%s: cannot read vDPA device %s: %s", address, name, exc.strerror,
                        extra={"pci": address})
            return None
        finally:
            os.close(fd)
        return VdpaInfo(name=name, driver=driver, vhost_path=vhost_path)

    # -- auxiliary devices -----------------------------------------------------------------

    def read_aux(
        self, functions: dict[str, PciFunction], skipped: list[SkippedFunction]
    ) -> dict[str, AuxFunction]:
        """Every sub-function under ``sys/bus/auxiliary/devices``, by name.

        ==============  =====================================================================
        name, aux_type  the entry name ``<driver>.<type>.<id>``; other names are ignored
        parent          the function of the last PCI-address component of the link target
                        (``../../../devices/pci0000:3b/0000:3b:00.0/mlx5_core.sf.4``); it
                        must be in ``functions``
        pf_address      the parent's ``physfn``, else the parent itself
        pf_netdev       the PF's uplink: its netdev with a non-empty ``phys_switch_id`` and a
                        ``phys_port_name`` like ``p0``; else its first netdev
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
            bus_fd = os.open(self._paths.sys / "bus/auxiliary/devices", _DIR_FLAGS)
        except OSError:
            return {}
        found: dict[str, AuxFunction] = {}
        try:
            for name in sorted(os.listdir(bus_fd)):
                parsed = parse_aux_name(name)
                if parsed is None:
                    log.debug("auxiliary device %s: not <driver>.<type>.<id>; ignored", name)
                    continue
                try:
                    aux = self._read_aux_device(bus_fd, name, parsed[1], functions)
                except _Skip as skip:
                    log.warning("skipping auxiliary device %s: %s", name, skip,
                                extra={"pci": name})
                    skipped.append(SkippedFunction(name, str(skip)))
                    continue
                if aux is not None:
                    found[name] = aux
        except OSError as exc:
            log.warning("cannot list auxiliary devices: %s", exc.strerror)
        finally:
            os.close(bus_fd)
        return found

    def _read_aux_device(
        self, bus_fd: int, name: str, aux_type: str, functions: dict[str, PciFunction]
    ) -> AuxFunction | None:
        """One auxiliary device; None when it is not a sub-function (no ``sfnum``).

        Raises:
            _Skip: the device is a sub-function (or looks like one) but cannot be used.
        """
        try:
            target = os.readlink(name, dir_fd=bus_fd)
        except OSError as exc:
            raise _Skip(_reason("link", exc)) from exc
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=bus_fd)
        except FileNotFoundError as exc:
            raise _Skip(f"link to nowhere ({target})") from exc
        except OSError as exc:
            raise _Skip(f"cannot open device directory: {exc.strerror}") from exc
        attr = "sfnum"
        try:
            raw = _read(fd, "sfnum")
            if raw is None:
                log.debug("auxiliary device %s: no sfnum, not a sub-function; ignored", name)
                return None
            sf_num = _parse_int(raw)
            if sf_num is None or sf_num < 0:
                raise _Skip(f"sfnum is not a number: {raw.decode(errors='replace').strip()!r}")
            parent_address = _nearest_pci(target.rstrip("/").split("/")[:-1])
            if parent_address is None:
                raise _Skip(f"no PCI function above it ({target})")
            parent = functions.get(parent_address)
            if parent is None:
                raise _Skip(f"parent PCI function {parent_address} is not in the scan")
            attr = "net"
            netdevs = sorted(_list_dir(fd, "net"))
            attr = "infiniband"
            rdma_devs = self._rdma_names(fd, name, True)
            rdma = self._rdma_info(fd, name, rdma_devs) if rdma_devs else None
            pf_address = parent.physfn or parent.address
            pf_netdev = self._uplink(pf_address, functions)
            link_type = ""
            if netdevs:
                link_type = self._link_type(fd, netdevs[0], f"net/{netdevs[0]}") or ""
            if not link_type and pf_netdev is not None:
                link_type = self._pf_netdev_link_type(pf_address, pf_netdev)
        except OSError as exc:
            raise _Skip(_reason(attr, exc)) from exc
        finally:
            os.close(fd)
        return AuxFunction(
            name=name, aux_type=aux_type, parent=parent, pf_address=pf_address,
            pf_netdev=pf_netdev, sf_num=sf_num, netdevs=tuple(netdevs), link_type=link_type,
            rdma=rdma,
        )

    def _uplink(self, pf_address: str, functions: dict[str, PciFunction]) -> str | None:
        """The PF's uplink netdev: switchdev ``phys_port_name`` ``pN``, else its first netdev."""
        if pf_address in self._uplinks:
            return self._uplinks[pf_address]
        if pf_address in self._pfs:  # already found for the PF's VFs
            return self._pfs[pf_address][1]
        pf = functions.get(pf_address)
        try:
            pf_fd = os.open(self._paths.pci_devices / pf_address, _DIR_FLAGS)
        except OSError:
            pf_fd = None
        uplink: str | None = None
        try:
            if pf_fd is None:
                uplink = pf.netdev if pf is not None else None
            else:
                names = pf.netdevs if pf is not None else _list_dir(pf_fd, "net")
                uplink = _uplink_of(pf_fd, {name: f"net/{name}" for name in names})
        except OSError as exc:
            log.warning("cannot read netdevs of PF %s: %s", pf_address, exc.strerror,
                        extra={"pci": pf_address})
        finally:
            if pf_fd is not None:
                os.close(pf_fd)
        self._uplinks[pf_address] = uplink
        return uplink

    def _pf_netdev_link_type(self, pf_address: str, ifname: str) -> str:
        if ifname in self._link_types:
            return self._link_types[ifname] or ""
        try:
            pf_fd = os.open(self._paths.pci_devices / pf_address, _DIR_FLAGS)
        except OSError:
            return ""
        try:
            return self._link_type(pf_fd, ifname, f"net/{ifname}") or ""
        finally:
            os.close(pf_fd)

    def _is_noiommu(self, fd: int, group: str) -> bool:
        """``iommu_group/name`` == ``vfio-noiommu`` (the group vfio creates without an IOMMU)."""
        cached = self._noiommu.get(group)
        if cached is None:
            try:
                name = _read(fd, "iommu_group/name")
            except OSError:
                name = None
            cached = name is not None and name.strip() == b"vfio-noiommu"
            self._noiommu[group] = cached
        return cached


# -- small readers relative to a directory fd; None for a missing file ----------------------


def _read(dir_fd: int, name: str) -> bytes | None:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _parse_int(raw: bytes) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


def _read_int(dir_fd: int, name: str) -> int | None:
    raw = _read(dir_fd, name)
    return None if raw is None else _parse_int(raw)


def _read_hex(dir_fd: int, name: str) -> int | None:
    """``0x020000`` → 0x020000; None when missing or not hex."""
    raw = _read(dir_fd, name)
    if raw is None:
        return None
    try:
        return int(raw, 16)
    except ValueError:
        return None


def _read_id(dir_fd: int, name: str) -> str | None:
    """``vendor``/``device`` file ``0x8086`` → ``"8086"``; None when missing or malformed."""
    raw = _read(dir_fd, name)
    if raw is None:
        return None
    m = _HEX4_RE.match(raw.strip())
    return m[1].decode().lower() if m else None


def _readlink_name(dir_fd: int, name: str) -> str | None:
    """Basename of symlink ``name``'s target (dangling is fine); None when absent.

    Raises:
        OSError: EINVAL when ``name`` exists but is not a symlink.
    """
    try:
        return _basename(os.readlink(name, dir_fd=dir_fd))
    except FileNotFoundError:
        return None


def _uplink_of(pf_fd: int, netdevs: dict[str, str]) -> str | None:
    """A PF's uplink among its netdevs (name → dir relative to ``pf_fd``).

    The first by name with a non-empty ``phys_switch_id`` and a ``phys_port_name`` like
    ``p0`` (a switchdev uplink representor; VF/SF representors are ``pf0vf1``, ``pf0sf4``);
    without one (legacy mode), the first netdev by name. None without netdevs.
    """
    names = sorted(netdevs)
    for name in names:
        rel = netdevs[name]
        if _read_quiet(pf_fd, f"{rel}/phys_switch_id") and _UPLINK_PORT_RE.match(
                _read_quiet(pf_fd, f"{rel}/phys_port_name")):
            return name
    return names[0] if names else None


def _read_quiet(dir_fd: int, name: str) -> bytes:
    """Trimmed content of ``name``, ``b""`` when missing or unreadable (EOPNOTSUPP ...)."""
    try:
        return (_read(dir_fd, name) or b"").strip()
    except OSError:
        return b""


def _list_dir(dir_fd: int, name: str) -> list[str]:
    """Entries of subdirectory ``name``; ``[]`` when it does not exist."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return []
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def fingerprint(paths: HostPaths) -> int:
    """A cheap summary of what a scan depends on that changes on a live host: the PCI
    functions and their drivers, the netdevs, RDMA, auxiliary and vDPA devices, and the
    routing tables. Equal fingerprints mean a periodic resync may reuse the last scan.

    Cost: one listing per class dir plus one readlink per PCI function (a few ms for 2,000
    functions, against ~150 ms for a full scan).
    """
    parts: list[object] = []
    try:
        entries = sorted(os.listdir(paths.pci_devices))
    except OSError:
        return 0
    for name in entries:
        try:
            parts.append((name, os.readlink(f"{paths.pci_devices}/{name}/driver")))
        except OSError:
            parts.append((name, None))
    for sub in ("class/net", "class/infiniband", "bus/auxiliary/devices", "bus/vdpa/devices",
                "class/infiniband_verbs"):
        try:
            parts.append(tuple(sorted(os.listdir(paths.sys / sub))))
        except OSError:
            parts.append(None)
    for table in ("route", "ipv6_route"):
        try:
            parts.append(_read_whole(paths.proc_net / table))
        except OSError:
            parts.append(None)
    return hash(tuple(parts))
