"""Immutable facts about the host's PCI functions, as one scan found them.

Every value here comes from sysfs (the reader in :mod:`sriovdp.host.sysfs` names the file);
nothing in this module reads the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

NET_CLASS = 0x02
"""PCI base class of network controllers (Ethernet 0x0200, InfiniBand 0x0207, other 0x0280)."""
ACCEL_CLASS = 0x12
"""PCI base class of processing accelerators (FPGA, QAT ...)."""


class DeviceKind(StrEnum):
    """``deviceType`` of a resource in the config file."""

    NET = "netDevice"
    ACCEL = "accelerator"
    AUX_NET = "auxNetDevice"


# ARPHRD_* (include/uapi/linux/if_arp.h) → the names netlink's EncapType gives, which is
# what the Go plugin compares ``linkTypes`` against.
LINK_TYPES: Mapping[int, str] = {
    0: "generic", 1: "ether", 2: "eether", 3: "ax25", 4: "pronet", 5: "chaos",
    6: "ieee802", 7: "arcnet", 8: "appletlk", 15: "dlci", 19: "atm", 23: "metricom",
    24: "ieee1394", 27: "eui64", 32: "infiniband", 256: "slip", 257: "cslip",
    258: "slip6", 259: "cslip6", 260: "rsrvd", 264: "adapt", 270: "rose", 271: "x25",
    272: "hwx25", 280: "can", 512: "ppp", 513: "hdlc", 516: "lapb", 517: "ddcmp",
    518: "rawhdlc", 768: "ipip", 769: "tunnel6", 770: "frad", 771: "skip",
    772: "loopback", 773: "localtlk", 774: "fddi", 775: "bif", 776: "sit", 777: "ipddp",
    778: "gre", 779: "pimreg", 780: "hippi", 781: "ash", 782: "econet", 783: "irda",
    784: "fcpp", 785: "fcal", 786: "fcpl", 787: "fcfabric", 800: "tr", 801: "ieee802.11",
    802: "ieee802.11_prism", 803: "ieee802.11_radiotap", 804: "ieee802.15.4",
    805: "ieee802.15.4_monitor", 820: "phonet", 821: "phonet_pipe", 822: "caif",
    823: "ip6gre", 824: "netlink", 825: "6lowpan", 65534: "none", 65535: "void",
}


def link_type_name(arphrd: int) -> str:
    """Map ``/sys/class/net/<if>/type`` (ARPHRD number) to its name; unknown N → ``unknownN``."""
    return LINK_TYPES.get(arphrd, f"unknown{arphrd}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RdmaInfo:
    """RDMA facets of a PCI function or auxiliary device.

    Attributes:
        devices: RDMA device names, sorted, e.g. ``("mlx5_0",)`` (``infiniband/`` subdirs).
        char_devices: host paths of the RDMA char devices of those devices, in the Go
            plugin's order per device (``ucm``, ``issm``, ``umad``, ``uverbs``) then
            ``/dev/infiniband/rdma_cm`` if it exists, e.g. ``("/dev/infiniband/issm0",
            "/dev/infiniband/umad0", "/dev/infiniband/uverbs0", "/dev/infiniband/rdma_cm")``;
            from ``sys/class/infiniband_{cm,mad,verbs}/*/ibdev``. No duplicates.
    """

    devices: tuple[str, ...] = ()
    char_devices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class VdpaInfo:
    """A vDPA device on a PCI function.

    Attributes:
        name: the vDPA device, e.g. ``"vdpa0"`` (``sys/bus/vdpa/devices/<name>``).
        driver: bound vDPA bus driver, e.g. ``"vhost_vdpa"``, ``"virtio_vdpa"``; None if unbound.
        vhost_path: ``/dev/vhost-vdpa-N`` for vhost_vdpa (first ``vhost-vdpa*`` child dir);
            None otherwise.
    """

    name: str
    driver: str | None = None
    vhost_path: str | None = None

    @property
    def type(self) -> str:
        """``"vhost"``, ``"virtio"`` or ``"invalid"`` (unbound or another driver)."""
        return {"vhost_vdpa": "vhost", "virtio_vdpa": "virtio"}.get(self.driver or "", "invalid")


@dataclass(frozen=True, slots=True, kw_only=True)
class PciFunction:
    """One PCI function (PF, VF, plain NIC or accelerator) under ``sys/bus/pci/devices``.

    Attributes:
        address: PCI address, the sysfs directory name, e.g. ``"0000:3b:02.1"``.
        vendor: vendor id, 4 lower-case hex digits, e.g. ``"8086"`` (``vendor`` file).
        device: device id, e.g. ``"154c"`` (``device`` file).
        class_code: 24-bit class code, e.g. ``0x020000`` (``class`` file).
        driver: bound driver, basename of the ``driver`` link, e.g. ``"iavf"``; None if unbound.
        numa_node: ``numa_node``; None when missing, unparsable or -1.
        iommu_group: basename of the ``iommu_group`` link, e.g. ``"87"``; None without one.
        vfio_noiommu: True when the group's ``name`` file says ``vfio-noiommu``.
        acpi_index: trimmed ``acpi_index`` content; ``""`` when absent.
        physfn: PF address of a VF (the ``physfn`` link); None for non-VFs.
        vf_index: VF index N such that the PF's ``virtfnN`` points here; None for non-VFs.
        total_vfs: ``sriov_totalvfs`` of an SR-IOV capable PF; None when absent.
        num_vfs: ``sriov_numvfs`` (0 when absent or unparsable).
        netdevs: kernel netdev names, sorted, from ``net/`` or ``virtioN/net/``.
        pf_netdev: first netdev of the PF of a VF (``physfn/net/``); None when not known.
        link_type: link type of the netdev (or of the PF's netdev when the VF has none),
            from ``/sys/class/net/<if>/type``; ``""`` when neither netdev is visible.
        uio: first entry of ``uio/``, e.g. ``"uio0"``; None without one.
        default_route: True when one of the netdevs carries an IPv4/IPv6 default route
            (``/proc/net/route``, ``/proc/net/ipv6_route``).
        rdma: RDMA devices of the function (``infiniband/`` subdirs) and their char devices;
            None when the function has none.
        vdpa: the function's vDPA device (a ``vdpaN`` child under ``sys/bus/vdpa/devices``);
            None without one.
        pkey: InfiniBand default pkey (``infiniband/<dev>/ports/1/pkeys/0``, e.g. ``"0x7fff"``),
            read only when ``link_type`` is ``infiniband``; None otherwise.
        ddp_profile: running DDP package name (Intel 700/800), e.g. ``"ICE COMMS Package"``;
            filled only when a selector asks for ``ddpProfiles``; None when unknown.
    """

    address: str
    vendor: str
    device: str
    class_code: int
    driver: str | None = None
    numa_node: int | None = None
    iommu_group: str | None = None
    vfio_noiommu: bool = False
    acpi_index: str = ""
    physfn: str | None = None
    vf_index: int | None = None
    total_vfs: int | None = None
    num_vfs: int = 0
    netdevs: tuple[str, ...] = ()
    pf_netdev: str | None = None
    link_type: str = ""
    uio: str | None = None
    default_route: bool = False
    rdma: RdmaInfo | None = None
    vdpa: VdpaInfo | None = None
    pkey: str | None = None
    ddp_profile: str | None = None

    @property
    def base_class(self) -> int:
        """PCI base class, e.g. ``0x02`` for network controllers."""
        return self.class_code >> 16

    @property
    def is_vf(self) -> bool:
        return self.physfn is not None

    @property
    def is_pf_with_vfs(self) -> bool:
        """An SR-IOV PF whose VFs are created; such a PF is not a netDevice pool member."""
        return self.total_vfs is not None and self.num_vfs > 0

    @property
    def netdev(self) -> str | None:
        """The function's own netdev (first of ``netdevs``), or None."""
        return self.netdevs[0] if self.netdevs else None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuxFunction:
    """An auxiliary network device (a Mellanox sub-function), ``sys/bus/auxiliary/devices/<name>``.

    Attributes:
        name: the auxiliary device name and the kubelet's device id, e.g. ``"mlx5_core.sf.4"``.
        aux_type: middle part of ``<driver>.<type>.<id>``, e.g. ``"sf"``.
        parent: the parent PCI function (vendor, device, driver, NUMA node come from it).
        pf_address: PF PCI address (the ``rootDevices`` key), e.g. ``"0000:3b:00.0"``.
        pf_netdev: the PF's netdev (uplink), e.g. ``"enp59s0f0np0"`` (the ``pfNames`` key).
        sf_num: ``sfnum`` file, the SF number the ``#`` ranges select on.
        netdevs: the SF's netdevs (``net/``), sorted.
        link_type: link type of the SF's netdev, else of the PF's netdev; ``""`` if neither.
        rdma: RDMA devices of the SF (``infiniband/``); None without.
    """

    name: str
    aux_type: str
    parent: PciFunction
    pf_address: str
    pf_netdev: str | None = None
    sf_num: int
    netdevs: tuple[str, ...] = ()
    link_type: str = ""
    rdma: RdmaInfo | None = None

    @property
    def address(self) -> str:
        """The device id (the aux name), so pools treat aux and PCI functions alike."""
        return self.name

    @property
    def numa_node(self) -> int | None:
        return self.parent.numa_node

    @property
    def physfn(self) -> str:
        """The PF PCI address, so preferred allocation packs SFs per PF like VFs."""
        return self.pf_address

    @property
    def vf_index(self) -> int:
        """The SF number, the index ``#`` ranges and packing order use."""
        return self.sf_num


@dataclass(frozen=True, slots=True)
class SkippedFunction:
    """A PCI function the scan saw but could not use, and why (for logs and ``discover``)."""

    address: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFacts:
    """Device nodes the allocation may hand out, as present under the host's ``/dev``."""

    vhost_net: bool = False
    """``/dev/vhost-net`` and ``/dev/net/tun`` both exist."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Inventory:
    """One scan of the host: immutable, keyed by PCI address in address order."""

    functions: Mapping[str, PciFunction] = field(default_factory=dict)
    aux: Mapping[str, AuxFunction] = field(default_factory=dict)
    """Auxiliary devices (SFs) by name, in name order."""
    skipped: tuple[SkippedFunction, ...] = ()
    facts: HostFacts = HostFacts()

    def netdev_names(self) -> frozenset[str]:
        """Every netdev of the scanned functions and of their PFs (``"ens785f0v1"``)."""
        fns = self.functions.values()
        return frozenset({n for f in fns for n in f.netdevs}
                         | {f.pf_netdev for f in fns if f.pf_netdev})
