"""FakeHost: real sysfs-shaped trees on disk, laid out as the kernel lays them out.

A :class:`FakeHost` writes, under one root directory:

* ``sys/devices/pci<dom>:<bus>/<bdf>/`` real directories with ``vendor``, ``device``,
  ``subsystem_vendor``, ``subsystem_device``, ``class``, ``revision``, ``modalias``,
  ``numa_node``, ``enable`` (+ ``sriov_totalvfs``, ``sriov_numvfs``, ``sriov_offset``,
  ``sriov_stride``, ``sriov_vf_device`` on SR-IOV PFs, ``acpi_index`` when given);
  VFs are siblings of their PF, as in the kernel;
* ``sys/bus/pci/devices/<bdf>`` → ``../../../devices/pci0000:3b/0000:3b:00.0`` (relative);
* ``driver`` → ``../../../bus/pci/drivers/<drv>`` (the driver dir holds a back link);
* ``physfn`` → ``../<pf bdf>`` and ``virtfnN`` → ``../<vf bdf>``;
* ``iommu_group`` → ``../../../kernel/iommu_groups/N`` (+ ``devices/<bdf>``, ``name``
  ``vfio-noiommu`` for no-IOMMU groups); ``dev/vfio/N`` (``dev/vfio/noiommu-N``) and
  ``dev/vfio/vfio`` while bound to vfio-pci;
* ``net/<if>/{type,operstate,carrier,address,ifindex}`` (``virtioN/net/<if>`` for
  virtio-net) and ``sys/class/net/<if>`` → ``../../devices/.../net/<if>``;
* ``uio/uioN/`` + ``sys/class/uio/uioN`` + ``dev/uioN`` while bound to a UIO driver;
* ``proc/net/route`` (with its header line) and ``proc/net/ipv6_route``;
* ``dev/vhost-net`` and ``dev/net/tun`` after :meth:`FakeHost.enable_vhost_net`;
* RDMA (:meth:`FakeHost.add_rdma`): ``<bdf>/infiniband/<dev>/ports/1/pkeys/0`` +
  ``sys/class/infiniband/<dev>``; char devices ``<bdf>/infiniband_verbs/uverbsN``,
  ``infiniband_mad/{umadN,issmN}``, ``infiniband_cm/ucmN`` (each with ``ibdev``), their
  ``sys/class/infiniband_*/<entry>`` links and ``dev/infiniband/<entry>``;
  ``dev/infiniband/rdma_cm`` after :meth:`FakeHost.enable_rdma_cm`;
* vDPA (:meth:`FakeHost.add_vdpa`): ``<bdf>/vdpaN/`` + ``sys/bus/vdpa/devices/vdpaN``,
  ``driver`` → ``../../../../bus/vdpa/drivers/<drv>``; vhost_vdpa adds ``vdpaN/vhost-vdpa-M/``
  and ``dev/vhost-vdpa-M``;
* auxiliary devices / SFs (:meth:`FakeHost.add_sf`, :meth:`FakeHost.add_aux`):
  ``<pf bdf>/mlx5_core.sf.4/{sfnum,net/<if>/,infiniband/}`` +
  ``sys/bus/auxiliary/devices/mlx5_core.sf.4`` (relative link) and a ``driver`` link;
* switchdev ports: ``phys_port_name``/``phys_switch_id`` on netdevs
  (:meth:`FakeHost.set_phys_port`).

Mutators read like incidents: ``bind(vf, "vfio-pci", iommu_group=87)``,
``set_numvfs(pf, 0)``, ``move_netdev_to_pod(vf)``, ``set_link("ens785f0", carrier=False)``.

Host spec (YAML or the equivalent dict; :meth:`FakeHost.to_spec` writes it,
:meth:`FakeHost.from_spec` / :meth:`FakeHost.load` read it)::

    vhost_net: true                 # optional: dev/vhost-net + dev/net/tun
    rdma_cm: true                   # optional: dev/infiniband/rdma_cm
    default_routes:                 # optional: netdevs with a default route
      ipv4: [ens785f0]
      ipv6: []
    functions:                      # every PCI function that is not a VF of a listed PF
      - address: "0000:3b:00.0"     # QUOTE addresses and ids (YAML reads 0000:00:05.0
        vendor: "8086"              #   as a number, and 1572 as an int)
        device: "1572"
        class: "0x020000"           # default 0x020000 (Ethernet); 0x120000 = accelerator
        driver: i40e                # absent or null: unbound
        numa_node: 0                # absent: -1 (no NUMA)
        ifname: ens785f0            # or a list; absent: no netdev
        link_type: 1                # ARPHRD of the netdevs, default 1 (ether)
        carrier: true               # default true (operstate up)
        virtio: false               # true (or the N of virtioN): netdev under virtioN/net/
        iommu_group: 12             # optional
        noiommu: false              # the group is vfio's no-IOMMU group
        uio: 0                      # uio/uio0 (only with a UIO driver)
        acpi_index: "1"             # optional
        subsystem_vendor: "8086"    # default: vendor
        subsystem_device: "0000"    # default "0000"
        rdma: mlx5_0                # RDMA device, or {device: mlx5_0, uverbs: 0, umad: 0,
                                    #   issm: 0, ucm: 0, char_devices: true}, or a list;
                                    #   omitted numbers are the next free ones
        pkey: "0x7fff"              # pkeys/0 of the first RDMA device (default 0xffff)
        vdpa: {name: vdpa0, driver: vhost_vdpa, vhost: 0}   # or a list; driver null: unbound
        phys_port_names: {enp59s0f0np0: p0}   # switchdev: phys_port_name per netdev, and
        phys_switch_id: "a8b0d10003ba5e0c"    #   their phys_switch_id (default from address)
        aux:                        # auxiliary devices below this function
          - {name: mlx5_core.sf.2, sfnum: 2, ifname: enp59s0f0s2, rdma: mlx5_2}
          - {name: mlx5_core.eth.0} # no sfnum: not a sub-function
        total_vfs: 64               # present: an SR-IOV PF
        vf_offset: 16               # routing-id offset of VF 0 (default 16), and
        vf_stride: 1                #   stride between VFs (default 1)
        vf_template:                # what set_numvfs() creates (optional)
          {device: "154c", driver: iavf, ifname: "ens785f0v{n}", iommu_group_base: 100}
        vfs:                        # either a list of VFs, each with the keys above
          - {address: "0000:3b:02.0", index: 0, device: "154c", driver: iavf,
             ifname: ens785f0v0}    #   (address default: offset/stride; index: position;
                                    #   vendor and numa_node default to the PF's)
        # or the add_vfs() shorthand:
        # vfs: {count: 8, device: "154c", driver: iavf, ifname: "ens785f0v{n}"}

``python -m sriovdp.testing.fakehost SPEC.yaml --root DIR`` materialises a spec, so the
daemon can run against it with ``--host-root DIR``.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from sriovdp.host.paths import HostPaths

__all__ = ["FakeHost", "main"]

NO_NETDEV_DRIVERS = frozenset(
    {"vfio-pci", "igb_uio", "uio_pci_generic", "pci-stub", "pci-pf-stub"}
)
"""Drivers that expose no kernel netdev: binding to them drops ``net/``."""
UIO_DRIVERS = frozenset({"igb_uio", "uio_pci_generic"})
"""Drivers that expose ``uio/uioN`` and ``/dev/uioN``."""

_NET_CLASS = 0x020000
_WFLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


@dataclass(slots=True)
class _VfTemplate:
    """What a PF's new VFs look like (kept for :meth:`FakeHost.set_numvfs`)."""

    device: str
    vendor: str | None = None
    driver: str | None = None
    ifname: str | None = None  # template with {n}
    iommu_group_base: int | None = None

    def to_spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"device": self.device}
        for key in ("vendor", "driver", "ifname", "iommu_group_base"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(slots=True)
class _Rdma:
    """One RDMA device and the char-device numbers FakeHost gave it (None: none)."""

    name: str
    uverbs: int | None = None
    umad: int | None = None
    issm: int | None = None
    ucm: int | None = None
    pkey: str = "0xffff"

    def chars(self) -> list[tuple[str, str, int]]:
        """(class dir, kind, number) of each char device."""
        return [(cls, kind, n) for cls, kind, n in (
            ("infiniband_verbs", "uverbs", self.uverbs), ("infiniband_mad", "umad", self.umad),
            ("infiniband_mad", "issm", self.issm), ("infiniband_cm", "ucm", self.ucm),
        ) if n is not None]

    def to_spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"device": self.name}
        for kind in ("uverbs", "umad", "issm", "ucm"):
            if getattr(self, kind) is not None:
                out[kind] = getattr(self, kind)
        if self.uverbs is None and self.umad is None and self.issm is None:
            out["char_devices"] = False
        return out


@dataclass(slots=True)
class _Vdpa:
    """One vDPA device on a function."""

    name: str
    driver: str | None
    vhost: int | None = None  # N of vhost-vdpa-N (vhost_vdpa only)

    def to_spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "driver": self.driver}
        if self.vhost is not None:
            out["vhost"] = self.vhost
        return out


@dataclass(slots=True)
class _Aux:
    """One auxiliary device below a function (an SF when it has an ``sfnum``)."""

    name: str
    sfnum: int | None
    link_type: int
    ifnames: list[str] = field(default_factory=list)
    rdma: list[_Rdma] = field(default_factory=list)

    def to_spec(self, parent: _Function) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.sfnum is not None:
            out["sfnum"] = self.sfnum
        if self.ifnames:
            out["ifname"] = self.ifnames[0] if len(self.ifnames) == 1 else list(self.ifnames)
        if self.link_type != parent.link_type:
            out["link_type"] = self.link_type
        if self.rdma:
            out["rdma"] = _one_or_list([r.to_spec() for r in self.rdma])
        return out


def _one_or_list(items: list[dict[str, Any]]) -> dict[str, Any] | list[dict[str, Any]]:
    return items[0] if len(items) == 1 else items


@dataclass(slots=True)
class _Function:
    """FakeHost's record of one PCI function; the tree on disk mirrors it."""

    address: str
    vendor: str
    device: str
    class_code: int
    dir: str  # path relative to sys/devices, e.g. "pci0000:3b/0000:3b:00.0"
    driver: str | None = None
    numa_node: int | None = None
    ifnames: list[str] = field(default_factory=list)
    link_type: int = 1
    carrier: bool = True
    virtio: int | None = None
    iommu_group: int | None = None
    noiommu: bool = False
    uio: int | None = None
    acpi_index: str | None = None
    subsystem_vendor: str | None = None
    subsystem_device: str = "0000"
    total_vfs: int | None = None
    vf_offset: int = 16
    vf_stride: int = 1
    vf_template: _VfTemplate | None = None
    vfs: dict[int, str] = field(default_factory=dict)  # PF: VF index → address
    physfn: str | None = None
    vf_index: int | None = None
    rdma: list[_Rdma] = field(default_factory=list)
    vdpa: list[_Vdpa] = field(default_factory=list)
    aux: list[_Aux] = field(default_factory=list)
    port_names: dict[str, str] = field(default_factory=dict)  # netdev → phys_port_name
    switch_id: str | None = None


def _split_bdf(address: str) -> tuple[int, int, int, int]:
    dom, bus, rest = address.split(":")
    slot, fn = rest.split(".")
    return int(dom, 16), int(bus, 16), int(slot, 16), int(fn, 16)


def _check_address(address: object, where: str = "address") -> str:
    if not isinstance(address, str):
        raise ValueError(f"{where}: PCI address must be a quoted string, got {address!r}")  # noqa: TRY004 - spec errors are ValueError
    try:
        dom, bus, slot, fn = _split_bdf(address)
    except ValueError:
        raise ValueError(f"{where}: not a PCI address: {address!r}") from None
    canonical = f"{dom:04x}:{bus:02x}:{slot:02x}.{fn}"
    if canonical != address or fn > 7 or slot > 0x1F:
        raise ValueError(f"{where}: not a canonical PCI address: {address!r}")
    return address


def _check_id(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) != 4 or not all(
        c in "0123456789abcdefABCDEF" for c in value
    ):
        raise ValueError(f"{where}: need 4 hex digits as a quoted string, got {value!r}")
    return value.lower()


def _write(path: str, data: str) -> None:
    fd = os.open(path, _WFLAGS, 0o644)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def _symlink(target: str, path: str) -> None:
    try:
        os.symlink(target, path)
    except FileExistsError:
        os.unlink(path)
        os.symlink(target, path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class FakeHost:
    """Builds and mutates a host tree under ``root`` (``sys/``, ``dev/``, ``proc/``).

    The FakeHost keeps its own record of the functions it created; it does not read back a
    tree it did not build. Addresses are canonical strings, e.g. ``"0000:3b:02.0"``.

    Args:
        root: the host root; the skeleton is created (existing content is left alone).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._r = str(self.root)
        self._fns: dict[str, _Function] = {}
        self._netdev_owner: dict[str, _Function] = {}
        self._routes: dict[int, list[str]] = {4: [], 6: []}
        self._vhost_net = False
        self._rdma_cm = False
        self._rdma_names: set[str] = set()
        self._rdma_used: dict[str, set[int]] = {"uverbs": set(), "umad": set(), "issm": set(),
                                                "ucm": set()}
        self._vdpa_names: set[str] = set()
        self._vhost_used: set[int] = set()
        self._aux_netdevs: dict[str, _Aux] = {}
        self._aux_names: set[str] = set()
        self._next_ifindex = 2
        self._next_virtio = 0
        for d in ("sys/devices", "sys/bus/pci/devices", "sys/bus/pci/drivers", "sys/class/net",
                  "sys/class/uio", "sys/kernel/iommu_groups", "dev/vfio", "dev/net", "proc/net"):
            os.makedirs(self._p(d), exist_ok=True)
        self._write_routes()

    @property
    def paths(self) -> HostPaths:
        """The :class:`HostPaths` the readers take."""
        return HostPaths(self.root)

    @property
    def addresses(self) -> list[str]:
        """Every PCI function present, in address order."""
        return sorted(self._fns)

    def _p(self, rel: str) -> str:
        return f"{self._r}/{rel}"

    def _dev_dir(self, fn: _Function) -> str:
        return f"{self._r}/sys/devices/{fn.dir}"

    def _fn(self, address: str) -> _Function:
        try:
            return self._fns[address]
        except KeyError:
            raise KeyError(f"no PCI function {address} on this FakeHost") from None

    # -- building ----------------------------------------------------------------------------

    def add_function(
        self,
        address: str,
        *,
        vendor: str,
        device: str,
        class_code: int = _NET_CLASS,
        driver: str | None = None,
        ifname: str | Sequence[str] | None = None,
        numa_node: int | None = None,
        link_type: int = 1,
        virtio: bool | int = False,
        iommu_group: int | None = None,
        noiommu: bool = False,
        uio: int | None = None,
        acpi_index: str | None = None,
        subsystem_vendor: str | None = None,
        subsystem_device: str = "0000",
        carrier: bool = True,
    ) -> str:
        """Add a PCI function that is not a VF: a plain NIC, a VM's VF, an accelerator.

        ``virtio=True`` puts the netdev under ``virtioN/net/`` as virtio-net does.

        Returns:
            the address.
        """
        _check_address(address)
        if address in self._fns:
            raise ValueError(f"{address} already exists")
        dom, bus, _, _ = _split_bdf(address)
        fn = _Function(
            address=address, vendor=_check_id(vendor, "vendor"),
            device=_check_id(device, "device"), class_code=class_code,
            dir=f"pci{dom:04x}:{bus:02x}/{address}", numa_node=numa_node,
            link_type=link_type, acpi_index=acpi_index, subsystem_vendor=subsystem_vendor,
            subsystem_device=subsystem_device, carrier=carrier,
        )
        if virtio is not False:
            fn.virtio = self._next_virtio if virtio is True else int(virtio)
            self._next_virtio = max(self._next_virtio, fn.virtio) + 1
        self._create(fn)
        self._set_group(fn, iommu_group, noiommu)
        self.bind(address, driver, ifname=ifname, uio=uio)
        return address

    def add_pf(
        self,
        address: str,
        *,
        vendor: str,
        device: str,
        driver: str | None,
        ifname: str | Sequence[str] | None = None,
        numa_node: int | None = None,
        total_vfs: int = 64,
        link_type: int = 1,
        vf_offset: int = 16,
        vf_stride: int = 1,
        uio: int | None = None,
        **function_kwargs: Any,
    ) -> str:
        """Add an SR-IOV capable PF (``sriov_totalvfs`` = ``total_vfs``, no VFs yet).

        ``vf_offset``/``vf_stride`` place VF i at routing id PF + offset + i * stride, as the
        SR-IOV capability does (X710 PF0: 16/1, ConnectX: 2/1, I350: 128/4). Other keyword
        arguments (``class_code``, ``iommu_group``, ``acpi_index``, ...) are those of
        :meth:`add_function`.
        """
        self.add_function(address, vendor=vendor, device=device, numa_node=numa_node,
                          link_type=link_type, **function_kwargs)
        fn = self._fns[address]
        fn.total_vfs, fn.vf_offset, fn.vf_stride = total_vfs, vf_offset, vf_stride
        d = self._dev_dir(fn)
        _write(f"{d}/sriov_totalvfs", f"{total_vfs}\n")
        _write(f"{d}/sriov_numvfs", "0\n")
        _write(f"{d}/sriov_offset", f"{vf_offset}\n")
        _write(f"{d}/sriov_stride", f"{vf_stride}\n")
        _write(f"{d}/sriov_vf_device", f"{fn.device}\n")
        self.bind(address, driver, ifname=ifname, uio=uio)
        return address

    def vf_address(self, pf: str, index: int) -> str:
        """Where the kernel puts VF ``index`` of ``pf`` (from its offset and stride)."""
        fn = self._fn(pf)
        dom, bus, slot, func = _split_bdf(pf)
        rid = (bus << 8 | slot << 3 | func) + fn.vf_offset + index * fn.vf_stride
        if rid > 0xFFFF:
            raise ValueError(f"VF {index} of {pf} would lie beyond bus ff")
        return f"{dom:04x}:{rid >> 8 & 0xFF:02x}:{rid >> 3 & 0x1F:02x}.{rid & 7}"

    def add_vfs(
        self,
        pf: str,
        count: int | None = None,
        *,
        device: str | None = None,
        vendor: str | None = None,
        driver: str | None = None,
        ifname: str | None = None,
        iommu_group_base: int | None = None,
        addresses: Sequence[str] | None = None,
        indexes: Sequence[int] | None = None,
        numa_node: int | None = None,
        link_type: int | None = None,
    ) -> list[str]:
        """Create VFs on ``pf`` after its existing ones and bump ``sriov_numvfs``.

        Args:
            pf: the PF address.
            count: how many; default ``len(addresses)``.
            device: VF device id, e.g. ``"154c"`` (default: the PF's VF template or device).
            vendor: default the PF's vendor.
            driver: e.g. ``"iavf"``; None leaves them unbound.
            ifname: netdev name template, ``{n}`` is the VF index, e.g. ``"ens785f0v{n}"``;
                ignored for drivers without netdevs (vfio-pci, igb_uio).
            iommu_group_base: VF n gets IOMMU group base + n.
            addresses: explicit VF addresses instead of offset/stride.
            indexes: explicit VF indexes (gaps allowed) instead of the next free ones.
            numa_node: default the PF's.
            link_type: default the PF's.

        Returns:
            the VF addresses, in index order.
        """
        pfn = self._fn(pf)
        if pfn.total_vfs is None:
            raise ValueError(f"{pf} is not an SR-IOV PF")
        template = pfn.vf_template or _VfTemplate(device=pfn.device)
        template = _VfTemplate(
            device=device or template.device, vendor=vendor or template.vendor,
            driver=driver if driver is not None else template.driver,
            ifname=ifname if ifname is not None else template.ifname,
            iommu_group_base=(iommu_group_base if iommu_group_base is not None
                              else template.iommu_group_base),
        )
        pfn.vf_template = template
        if count is None:
            count = len(addresses or indexes or ())
        start = max(pfn.vfs, default=-1) + 1
        idx = list(indexes) if indexes is not None else list(range(start, start + count))
        if addresses is not None and len(addresses) != len(idx):
            raise ValueError("addresses and count/indexes differ in length")
        if len(pfn.vfs) + len(idx) > pfn.total_vfs:
            raise ValueError(f"{pf}: more than sriov_totalvfs={pfn.total_vfs} VFs")
        created = []
        for k, n in enumerate(idx):
            address = addresses[k] if addresses is not None else self.vf_address(pf, n)
            created.append(self._add_vf(
                pfn, n, address, template,
                numa_node=pfn.numa_node if numa_node is None else numa_node,
                link_type=pfn.link_type if link_type is None else link_type,
            ))
        _write(f"{self._dev_dir(pfn)}/sriov_numvfs", f"{len(pfn.vfs)}\n")
        _write(f"{self._dev_dir(pfn)}/sriov_vf_device", f"{template.device}\n")
        return created

    def _add_vf(self, pfn: _Function, n: int, address: str, t: _VfTemplate, *,
                numa_node: int | None, link_type: int,
                **overrides: Any) -> str:
        _check_address(address)
        if address in self._fns or n in pfn.vfs:
            raise ValueError(f"VF {n} ({address}) of {pfn.address} already exists")
        parent = pfn.dir.rpartition("/")[0]
        fn = _Function(
            address=address, vendor=_check_id(t.vendor or pfn.vendor, "vendor"),
            device=_check_id(t.device, "device"), class_code=pfn.class_code,
            dir=f"{parent}/{address}", numa_node=numa_node, link_type=link_type,
            subsystem_vendor=pfn.subsystem_vendor or pfn.vendor, physfn=pfn.address, vf_index=n,
        )
        driver = overrides.pop("driver", t.driver)
        ifname = overrides.pop("ifname", t.ifname.format(n=n) if t.ifname else None)
        group = overrides.pop("iommu_group",
                              t.iommu_group_base + n if t.iommu_group_base is not None else None)
        noiommu = overrides.pop("noiommu", False)
        uio = overrides.pop("uio", None)
        for key, value in overrides.items():
            setattr(fn, key, value)
        self._create(fn)
        d = self._dev_dir(fn)
        _symlink(f"../{pfn.address}", f"{d}/physfn")
        _symlink(f"../{address}", f"{self._dev_dir(pfn)}/virtfn{n}")
        pfn.vfs[n] = address
        self._set_group(fn, group, noiommu)
        if driver in NO_NETDEV_DRIVERS:
            ifname = None
        self.bind(address, driver, ifname=ifname, uio=uio)
        return address

    def _create(self, fn: _Function) -> None:
        """The function's directory, its id files and its ``sys/bus/pci/devices`` link."""
        d = self._dev_dir(fn)
        os.makedirs(d)
        sub_vendor = fn.subsystem_vendor or fn.vendor
        cc = fn.class_code
        _write(f"{d}/vendor", f"0x{fn.vendor}\n")
        _write(f"{d}/device", f"0x{fn.device}\n")
        _write(f"{d}/subsystem_vendor", f"0x{sub_vendor}\n")
        _write(f"{d}/subsystem_device", f"0x{fn.subsystem_device}\n")
        _write(f"{d}/class", f"0x{cc:06x}\n")
        _write(f"{d}/revision", "0x02\n")
        _write(f"{d}/enable", "1\n")
        _write(f"{d}/numa_node", f"{-1 if fn.numa_node is None else fn.numa_node}\n")
        _write(f"{d}/modalias",
               f"pci:v0000{fn.vendor.upper()}d0000{fn.device.upper()}"
               f"sv0000{sub_vendor.upper()}sd0000{fn.subsystem_device.upper()}"
               f"bc{cc >> 16:02X}sc{cc >> 8 & 0xFF:02X}i{cc & 0xFF:02X}\n")
        if fn.acpi_index is not None:
            _write(f"{d}/acpi_index", f"{fn.acpi_index}\n")
        _symlink(f"../../../devices/{fn.dir}", self._p(f"sys/bus/pci/devices/{fn.address}"))
        self._fns[fn.address] = fn

    # -- driver binding ----------------------------------------------------------------------

    def bind(
        self,
        address: str,
        driver: str | None,
        *,
        ifname: str | Sequence[str] | None = None,
        iommu_group: int | None = None,
        noiommu: bool | None = None,
        uio: int | None = None,
    ) -> None:
        """Rebind ``address`` to ``driver`` (None: unbind), as ``driver_override`` + bind.

        The old driver's netdevs, ``uio/`` and ``dev/vfio/N`` go away. A netdev driver gets
        the netdevs ``ifname``; ``vfio-pci`` gets ``dev/vfio/N`` for ``iommu_group`` (or the
        group the function already has); a UIO driver gets ``uio/uio<uio>`` (default: the
        next free number).
        """
        fn = self._fn(address)
        d = self._dev_dir(fn)
        self._drop_driver_objects(fn)
        self._drop_netdevs(fn)
        _rmtree(f"{d}/net")  # the driver's netdevs go, and with them the net/ glue dir
        self._drop_uio(fn)
        if fn.driver is not None:
            _unlink(f"{d}/driver")
            _unlink(self._p(f"sys/bus/pci/drivers/{fn.driver}/{address}"))
            if fn.driver == "vfio-pci":
                self._vfio_node(fn, create=False)
            if fn.virtio is not None:
                _rmtree(f"{d}/virtio{fn.virtio}")
        fn.driver = driver
        if iommu_group is not None or noiommu is not None:
            self._set_group(fn, iommu_group if iommu_group is not None else fn.iommu_group,
                            bool(noiommu) if noiommu is not None else fn.noiommu)
        if driver is None:
            return
        drv_dir = self._p(f"sys/bus/pci/drivers/{driver}")
        if not os.path.isdir(drv_dir):
            os.makedirs(drv_dir)
            _write(f"{drv_dir}/bind", "")
            _write(f"{drv_dir}/unbind", "")
            _write(f"{drv_dir}/new_id", "")
        _symlink(f"../../../bus/pci/drivers/{driver}", f"{d}/driver")
        _symlink(f"../../../../devices/{fn.dir}", f"{drv_dir}/{address}")
        if fn.virtio is not None:
            os.makedirs(f"{d}/virtio{fn.virtio}/net", exist_ok=True)
        if driver == "vfio-pci":
            self._vfio_node(fn, create=True)
        elif driver in UIO_DRIVERS:
            self._add_uio(fn, uio)
        elif ifname is not None:
            for name in [ifname] if isinstance(ifname, str) else ifname:
                self.add_netdev(address, name)

    def unbind(self, address: str) -> None:
        """Unbind ``address`` from its driver (same as ``bind(address, None)``)."""
        self.bind(address, None)

    def _set_group(self, fn: _Function, group: int | None, noiommu: bool) -> None:
        d = self._dev_dir(fn)
        if fn.iommu_group is not None:
            _unlink(f"{d}/iommu_group")
            _unlink(self._p(f"sys/kernel/iommu_groups/{fn.iommu_group}/devices/{fn.address}"))
        fn.iommu_group, fn.noiommu = group, noiommu and group is not None
        if group is None:
            return
        gdir = self._p(f"sys/kernel/iommu_groups/{group}")
        os.makedirs(f"{gdir}/devices", exist_ok=True)
        _write(f"{gdir}/type", "DMA\n")
        if fn.noiommu:
            _write(f"{gdir}/name", "vfio-noiommu\n")
        else:
            _unlink(f"{gdir}/name")
        _symlink(f"../../../kernel/iommu_groups/{group}", f"{d}/iommu_group")
        _symlink(f"../../../../devices/{fn.dir}", f"{gdir}/devices/{fn.address}")

    def _vfio_node(self, fn: _Function, *, create: bool) -> None:
        if fn.iommu_group is None:
            return
        node = self._p(f"dev/vfio/{'noiommu-' if fn.noiommu else ''}{fn.iommu_group}")
        if create:
            _write(node, "")
            _write(self._p("dev/vfio/vfio"), "")
        elif not any(o.driver == "vfio-pci" and o.iommu_group == fn.iommu_group
                     for o in self._fns.values() if o is not fn):
            _unlink(node)

    def _add_uio(self, fn: _Function, number: int | None) -> None:
        if number is None:
            used = {o.uio for o in self._fns.values()}
            number = next(i for i in range(len(used) + 1) if i not in used)
        fn.uio = number
        d = f"{self._dev_dir(fn)}/uio/uio{number}"
        os.makedirs(d)
        _write(f"{d}/name", f"{fn.driver}\n")
        _write(f"{d}/dev", f"243:{number}\n")
        _symlink(f"../../devices/{fn.dir}/uio/uio{number}", self._p(f"sys/class/uio/uio{number}"))
        _write(self._p(f"dev/uio{number}"), "")

    def _drop_uio(self, fn: _Function) -> None:
        if fn.uio is None:
            return
        _rmtree(f"{self._dev_dir(fn)}/uio")
        _unlink(self._p(f"sys/class/uio/uio{fn.uio}"))
        _unlink(self._p(f"dev/uio{fn.uio}"))
        fn.uio = None

    # -- netdevs -----------------------------------------------------------------------------

    def _net_rel(self, fn: _Function) -> str:
        return f"{fn.dir}/virtio{fn.virtio}/net" if fn.virtio is not None else f"{fn.dir}/net"

    def add_netdev(self, address: str, ifname: str) -> None:
        """The driver registers netdev ``ifname`` on ``address`` (visible in this netns)."""
        fn = self._fn(address)
        self._make_netdev(self._net_rel(fn), ifname, fn.link_type, carrier=fn.carrier)
        fn.ifnames.append(ifname)
        self._netdev_owner[ifname] = fn
        if ifname in fn.port_names:
            self._write_port(fn, ifname)

    def _make_netdev(self, net_rel: str, ifname: str, link_type: int, *, carrier: bool) -> None:
        """``sys/devices/<net_rel>/<ifname>/`` with its attributes and the class/net link."""
        if ifname in self._netdev_owner or ifname in self._aux_netdevs:
            raise ValueError(f"netdev {ifname} already exists")
        d = f"{self._r}/sys/devices/{net_rel}/{ifname}"
        os.makedirs(d)
        index = self._next_ifindex
        self._next_ifindex += 1
        _write(f"{d}/type", f"{link_type}\n")
        _write(f"{d}/ifindex", f"{index}\n")
        _write(f"{d}/address", f"02:00:00:00:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}\n")
        _write(f"{d}/operstate", "up\n" if carrier else "down\n")
        _write(f"{d}/carrier", "1\n" if carrier else "0\n")
        _symlink(f"../../devices/{net_rel}/{ifname}", self._p(f"sys/class/net/{ifname}"))

    def set_phys_port(self, ifname: str, port_name: str, *, switch_id: str | None = None) -> None:
        """A switchdev port: netdev ``ifname`` gets ``phys_port_name`` (``p0`` for the uplink,
        ``pf0vf1``/``pf0sf4`` for representors) and the function's ``phys_switch_id``
        (``switch_id``, default derived from the PCI address)."""
        try:
            fn = self._netdev_owner[ifname]
        except KeyError:
            raise KeyError(f"no netdev {ifname} of a PCI function on this FakeHost") from None
        fn.port_names[ifname] = port_name
        if switch_id is not None:
            fn.switch_id = switch_id
        self._write_port(fn, ifname)

    def _write_port(self, fn: _Function, ifname: str) -> None:
        d = f"{self._r}/sys/devices/{self._net_rel(fn)}/{ifname}"
        _write(f"{d}/phys_port_name", f"{fn.port_names[ifname]}\n")
        _write(f"{d}/phys_switch_id", f"{fn.switch_id or _default_switch_id(fn.address)}\n")

    def _drop_netdevs(self, fn: _Function) -> None:
        rel = self._net_rel(fn)
        for name in fn.ifnames:
            del self._netdev_owner[name]
            _unlink(self._p(f"sys/class/net/{name}"))
            _rmtree(f"{self._r}/sys/devices/{rel}/{name}")
        fn.ifnames = []

    def move_netdev_to_pod(self, address: str) -> list[str]:
        """The CNI moves the function's netdevs into a pod's netns: they vanish from here.

        Returns:
            the netdev names that left.
        """
        fn = self._fn(address)
        moved = list(fn.ifnames)
        self._drop_netdevs(fn)
        return moved

    def set_link(self, address_or_ifname: str, *, carrier: bool) -> None:
        """Cable pulled (``carrier=False``) or back: writes ``operstate`` and ``carrier``."""
        owners = self._netdev_owner
        fn = owners.get(address_or_ifname) or self._fn(address_or_ifname)
        fn.carrier = carrier
        names = [address_or_ifname] if address_or_ifname in owners else fn.ifnames
        for name in names:
            d = f"{self._r}/sys/devices/{self._net_rel(fn)}/{name}"
            _write(f"{d}/operstate", "up\n" if carrier else "down\n")
            _write(f"{d}/carrier", "1\n" if carrier else "0\n")

    # -- RDMA, pkeys, vDPA, auxiliary devices --------------------------------------------------

    def add_rdma(
        self,
        address: str,
        name: str,
        *,
        uverbs: int | None = None,
        umad: int | None = None,
        issm: int | None = None,
        ucm: int | None = None,
        char_devices: bool = True,
        pkey: str = "0xffff",
    ) -> str:
        """The driver registers RDMA device ``name`` (e.g. ``"mlx5_0"``) on ``address``.

        Creates ``infiniband/<name>/ports/1/pkeys/0`` (= ``pkey``), ``sys/class/infiniband/
        <name>`` and, unless ``char_devices`` is False, ``uverbsN``, ``umadN``, ``issmN``
        (N: the number given, else the next free one) and ``ucmN`` only when ``ucm`` is
        given: each a ``<bdf>/infiniband_*/<entry>/ibdev`` dir, a ``sys/class/infiniband_*``
        link and a ``dev/infiniband/<entry>`` node. Rebinding the function removes them.

        Returns:
            the RDMA device name.
        """
        fn = self._fn(address)
        rec = self._new_rdma(name, uverbs=uverbs, umad=umad, issm=issm, ucm=ucm,
                             char_devices=char_devices, pkey=pkey)
        self._make_rdma(fn.dir, rec)
        fn.rdma.append(rec)
        return name

    def set_pkey(self, address: str, pkey: str) -> None:
        """The subnet manager sets the default pkey (``pkeys/0``) of the function's first
        RDMA device, e.g. ``"0x7fff"``."""
        fn = self._fn(address)
        if not fn.rdma:
            raise ValueError(f"{address} has no RDMA device (add_rdma first)")
        rec = fn.rdma[0]
        rec.pkey = pkey
        _write(f"{self._dev_dir(fn)}/infiniband/{rec.name}/ports/1/pkeys/0", f"{pkey}\n")

    def enable_rdma_cm(self) -> None:
        """``modprobe rdma_ucm``: ``dev/infiniband/rdma_cm`` appears."""
        self._rdma_cm = True
        os.makedirs(self._p("dev/infiniband"), exist_ok=True)
        _write(self._p("dev/infiniband/rdma_cm"), "")

    def _new_rdma(self, name: str, *, uverbs: int | None = None, umad: int | None = None,
                  issm: int | None = None, ucm: int | None = None, char_devices: bool = True,
                  pkey: str = "0xffff") -> _Rdma:
        if name in self._rdma_names:
            raise ValueError(f"RDMA device {name} already exists")

        def pick(kind: str, number: int | None, auto: bool) -> int | None:
            used = self._rdma_used[kind]
            if number is None:
                return next(i for i in range(len(used) + 1) if i not in used) if auto else None
            if number in used:
                raise ValueError(f"{kind}{number} already exists")
            return number

        return _Rdma(name=name, uverbs=pick("uverbs", uverbs, char_devices),
                     umad=pick("umad", umad, char_devices),
                     issm=pick("issm", issm, char_devices),
                     ucm=pick("ucm", ucm, False), pkey=pkey)

    def _make_rdma(self, owner_rel: str, rec: _Rdma) -> None:
        """``rec`` below ``sys/devices/<owner_rel>`` (a PCI function or an aux device)."""
        d = f"{self._r}/sys/devices/{owner_rel}"
        ib = f"{d}/infiniband/{rec.name}"
        os.makedirs(f"{ib}/ports/1/pkeys")
        _write(f"{ib}/ports/1/pkeys/0", f"{rec.pkey}\n")
        _write(f"{ib}/node_type", "1: CA\n")
        os.makedirs(self._p("sys/class/infiniband"), exist_ok=True)
        _symlink(f"../../devices/{owner_rel}/infiniband/{rec.name}",
                 self._p(f"sys/class/infiniband/{rec.name}"))
        self._rdma_names.add(rec.name)
        for cls, kind, n in rec.chars():
            entry = f"{kind}{n}"
            os.makedirs(f"{d}/{cls}/{entry}")
            _write(f"{d}/{cls}/{entry}/ibdev", f"{rec.name}\n")
            if cls == "infiniband_mad":
                _write(f"{d}/{cls}/{entry}/port", "1\n")
            os.makedirs(self._p(f"sys/class/{cls}"), exist_ok=True)
            _symlink(f"../../devices/{owner_rel}/{cls}/{entry}",
                     self._p(f"sys/class/{cls}/{entry}"))
            os.makedirs(self._p("dev/infiniband"), exist_ok=True)
            _write(self._p(f"dev/infiniband/{entry}"), "")
            self._rdma_used[kind].add(n)

    def _drop_rdma(self, owner_rel: str, rec: _Rdma) -> None:
        d = f"{self._r}/sys/devices/{owner_rel}"
        for cls, kind, n in rec.chars():
            entry = f"{kind}{n}"
            _rmtree(f"{d}/{cls}/{entry}")
            _unlink(self._p(f"sys/class/{cls}/{entry}"))
            _unlink(self._p(f"dev/infiniband/{entry}"))
            self._rdma_used[kind].discard(n)
        _rmtree(f"{d}/infiniband/{rec.name}")
        _unlink(self._p(f"sys/class/infiniband/{rec.name}"))
        self._rdma_names.discard(rec.name)

    def add_vdpa(self, address: str, name: str = "vdpa0", *, driver: str | None = "vhost_vdpa",
                 vhost: int | None = None) -> str:
        """``vdpa dev add``: vDPA device ``name`` on ``address``, bound to ``driver``.

        ``vhost_vdpa`` also creates ``<name>/vhost-vdpa-N/`` and ``dev/vhost-vdpa-N``
        (N = ``vhost``, default the next free number); ``virtio_vdpa`` or None (unbound)
        create nothing more. Rebinding the function removes the device.

        Returns:
            the vDPA device name.
        """
        fn = self._fn(address)
        if name in self._vdpa_names:
            raise ValueError(f"vDPA device {name} already exists")
        if driver == "vhost_vdpa":
            if vhost is None:
                vhost = next(i for i in range(len(self._vhost_used) + 1)
                             if i not in self._vhost_used)
            elif vhost in self._vhost_used:
                raise ValueError(f"vhost-vdpa-{vhost} already exists")
        else:
            vhost = None
        rec = _Vdpa(name=name, driver=driver, vhost=vhost)
        d = f"{self._dev_dir(fn)}/{name}"
        os.makedirs(d)
        os.makedirs(self._p("sys/bus/vdpa/devices"), exist_ok=True)
        _symlink(f"../../../devices/{fn.dir}/{name}", self._p(f"sys/bus/vdpa/devices/{name}"))
        if driver is not None:
            drv_dir = self._p(f"sys/bus/vdpa/drivers/{driver}")
            os.makedirs(drv_dir, exist_ok=True)
            _symlink(f"../../../../bus/vdpa/drivers/{driver}", f"{d}/driver")
            _symlink(f"../../../../devices/{fn.dir}/{name}", f"{drv_dir}/{name}")
        if vhost is not None:
            os.makedirs(f"{d}/vhost-vdpa-{vhost}")
            _write(f"{d}/vhost-vdpa-{vhost}/dev", f"509:{vhost}\n")
            _write(self._p(f"dev/vhost-vdpa-{vhost}"), "")
            self._vhost_used.add(vhost)
        self._vdpa_names.add(name)
        fn.vdpa.append(rec)
        return name

    def _drop_vdpa(self, fn: _Function, rec: _Vdpa) -> None:
        _unlink(self._p(f"sys/bus/vdpa/devices/{rec.name}"))
        if rec.driver is not None:
            _unlink(self._p(f"sys/bus/vdpa/drivers/{rec.driver}/{rec.name}"))
        if rec.vhost is not None:
            _unlink(self._p(f"dev/vhost-vdpa-{rec.vhost}"))
            self._vhost_used.discard(rec.vhost)
        _rmtree(f"{self._dev_dir(fn)}/{rec.name}")
        self._vdpa_names.discard(rec.name)

    def add_sf(
        self,
        pf: str,
        sfnum: int,
        *,
        name: str | None = None,
        ifname: str | Sequence[str] | None = None,
        rdma: str | Mapping[str, Any] | None = None,
        link_type: int | None = None,
    ) -> str:
        """``devlink port add ... sfnum N`` + activate: sub-function ``name`` (default
        ``mlx5_core.sf.<sfnum>``) below ``pf``, with an ``sfnum`` file, netdevs ``ifname``
        and RDMA device ``rdma`` (a name or :meth:`add_rdma` keywords with ``device``).

        Returns:
            the auxiliary device name.
        """
        return self.add_aux(pf, name or f"mlx5_core.sf.{sfnum}", sfnum=sfnum, ifname=ifname,
                            rdma=rdma, link_type=link_type)

    def add_aux(
        self,
        parent: str,
        name: str,
        *,
        sfnum: int | None = None,
        ifname: str | Sequence[str] | None = None,
        rdma: str | Mapping[str, Any] | Sequence[str | Mapping[str, Any]] | None = None,
        link_type: int | None = None,
    ) -> str:
        """An auxiliary device ``<driver>.<type>.<id>`` below ``parent`` (e.g. the
        ``mlx5_core.eth.0`` every mlx5 PF has): ``sys/devices/<parent>/<name>/`` with a
        ``driver`` link to ``sys/bus/auxiliary/drivers/<driver>.<type>`` and the
        ``sys/bus/auxiliary/devices/<name>`` link; ``sfnum`` makes it a sub-function.
        Netdevs take ``link_type`` (default the parent's). Rebinding the parent removes it.

        Returns:
            the auxiliary device name.
        """
        fn = self._fn(parent)
        parts = name.split(".")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"auxiliary device name {name!r} is not <driver>.<type>.<id>")
        if name in self._aux_names:
            raise ValueError(f"auxiliary device {name} already exists")
        rec = _Aux(name=name, sfnum=sfnum,
                   link_type=fn.link_type if link_type is None else link_type)
        rel = f"{fn.dir}/{name}"
        d = f"{self._r}/sys/devices/{rel}"
        os.makedirs(d)
        if sfnum is not None:
            _write(f"{d}/sfnum", f"{sfnum}\n")
        drv = f"{parts[0]}.{parts[1]}"
        drv_dir = self._p(f"sys/bus/auxiliary/drivers/{drv}")
        os.makedirs(drv_dir, exist_ok=True)
        os.makedirs(self._p("sys/bus/auxiliary/devices"), exist_ok=True)
        _symlink(f"../../../../bus/auxiliary/drivers/{drv}", f"{d}/driver")
        _symlink(f"../../../../devices/{rel}", f"{drv_dir}/{name}")
        _symlink(f"../../../devices/{rel}", self._p(f"sys/bus/auxiliary/devices/{name}"))
        self._aux_names.add(name)
        fn.aux.append(rec)
        for net in [ifname] if isinstance(ifname, str) else (ifname or []):
            self._make_netdev(f"{rel}/net", net, rec.link_type, carrier=True)
            rec.ifnames.append(net)
            self._aux_netdevs[net] = rec
        items = [rdma] if isinstance(rdma, (str, Mapping)) else (rdma or [])
        for item in items:
            r = self._new_rdma(**_rdma_kwargs(item, f"{name}.rdma"))
            self._make_rdma(rel, r)
            rec.rdma.append(r)
        return name

    def _drop_aux(self, fn: _Function, rec: _Aux) -> None:
        rel = f"{fn.dir}/{rec.name}"
        for r in rec.rdma:
            self._drop_rdma(rel, r)
        for net in rec.ifnames:
            _unlink(self._p(f"sys/class/net/{net}"))
            del self._aux_netdevs[net]
        parts = rec.name.split(".")
        _unlink(self._p(f"sys/bus/auxiliary/drivers/{parts[0]}.{parts[1]}/{rec.name}"))
        _unlink(self._p(f"sys/bus/auxiliary/devices/{rec.name}"))
        _rmtree(f"{self._r}/sys/devices/{rel}")
        self._aux_names.discard(rec.name)

    def _drop_driver_objects(self, fn: _Function) -> None:
        """What the driver created besides netdevs: RDMA, vDPA and auxiliary devices."""
        for aux in fn.aux:
            self._drop_aux(fn, aux)
        for vdpa in fn.vdpa:
            self._drop_vdpa(fn, vdpa)
        for rec in fn.rdma:
            self._drop_rdma(fn.dir, rec)
        fn.aux, fn.vdpa, fn.rdma = [], [], []

    # -- routes and device nodes -------------------------------------------------------------

    def add_default_route(self, ifname: str, *, ipv6: bool = False) -> None:
        """A default route (IPv4, or IPv6 with ``ipv6=True``) leaves through ``ifname``."""
        routes = self._routes[6 if ipv6 else 4]
        if ifname not in routes:
            routes.append(ifname)
        self._write_routes()

    def remove_default_route(self, ifname: str, *, ipv6: bool = False) -> None:
        routes = self._routes[6 if ipv6 else 4]
        if ifname in routes:
            routes.remove(ifname)
        self._write_routes()

    def _write_routes(self) -> None:
        v4 = ["Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"]
        for i, name in enumerate(self._routes[4]):
            v4.append(f"{name}\t00000000\t01{i:02X}A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0")
            v4.append(f"{name}\t00{i:02X}A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0")
        _write(self._p("proc/net/route"), "".join(f"{line:<127}\n" for line in v4))
        zero = "0" * 32
        v6 = []
        for i, name in enumerate(self._routes[6]):
            v6.append(f"fd00{i:04x}{'0' * 24} 40 {zero} 00 {zero} 00000100 00000001 00000000"
                      f" 00000001 {name:>8}")
            v6.append(f"{zero} 00 {zero} 00 fd00{i:04x}{'0' * 23}1 00000400 00000002 00000000"
                      f" 00000003 {name:>8}")
        # the kernel's unreachable default route on lo (RTF_REJECT): never a default route
        v6.append(f"{zero} 00 {zero} 00 {zero} ffffffff 00000001 00000000 00200200 {'lo':>8}")
        _write(self._p("proc/net/ipv6_route"), "".join(f"{line}\n" for line in v6))

    def enable_vhost_net(self) -> None:
        """``modprobe vhost_net``: ``dev/vhost-net`` and ``dev/net/tun`` appear."""
        self._vhost_net = True
        _write(self._p("dev/vhost-net"), "")
        _write(self._p("dev/net/tun"), "")

    # -- SR-IOV and hot-unplug ---------------------------------------------------------------

    def set_numvfs(self, pf: str, count: int) -> list[str]:
        """``echo N > sriov_numvfs``: 0 removes every VF; from 0, creates N per the template.

        Like the kernel, changing a non-zero count to another non-zero count fails (EBUSY).

        Returns:
            the VF addresses now present.
        """
        fn = self._fn(pf)
        if fn.total_vfs is None:
            raise ValueError(f"{pf} is not an SR-IOV PF")
        if count < 0 or count > fn.total_vfs:
            raise OSError(errno.ERANGE, f"sriov_numvfs {count} out of 0..{fn.total_vfs}")
        current = len(fn.vfs)
        if count == current:
            return [fn.vfs[n] for n in sorted(fn.vfs)]
        if count and current:
            raise OSError(errno.EBUSY, f"{pf} already has {current} VFs; write 0 first")
        if count == 0:
            for n in sorted(fn.vfs, reverse=True):
                self.remove(fn.vfs[n])
            _write(f"{self._dev_dir(fn)}/sriov_numvfs", "0\n")
            return []
        return self.add_vfs(pf, count)

    def remove_vfs(self, pf: str) -> None:
        """``echo 0 > sriov_numvfs``."""
        self.set_numvfs(pf, 0)

    def remove(self, address: str) -> None:
        """``echo 1 > remove``: the function (and, for a PF, its VFs) is gone."""
        fn = self._fn(address)
        for n in sorted(fn.vfs, reverse=True):
            self.remove(fn.vfs[n])
        self.bind(address, None)
        self._set_group(fn, None, False)
        pfn = self._fns.get(fn.physfn) if fn.physfn is not None else None
        index = fn.vf_index
        if pfn is not None and index is not None and pfn.vfs.get(index) == address:
            del pfn.vfs[index]
            _unlink(f"{self._dev_dir(pfn)}/virtfn{index}")
            _write(f"{self._dev_dir(pfn)}/sriov_numvfs", f"{len(pfn.vfs)}\n")
        _unlink(self._p(f"sys/bus/pci/devices/{address}"))
        _rmtree(self._dev_dir(fn))
        del self._fns[address]

    # -- spec --------------------------------------------------------------------------------

    def to_spec(self) -> dict[str, Any]:
        """The host as a spec dict (see the module docstring); ``from_spec`` rebuilds it."""
        functions = []
        for address in sorted(self._fns):
            fn = self._fns[address]
            if fn.physfn is not None and fn.physfn in self._fns:
                continue
            entry = self._fn_spec(fn, None)
            if fn.total_vfs is not None:
                entry["total_vfs"] = fn.total_vfs
                if fn.vf_offset != 16:
                    entry["vf_offset"] = fn.vf_offset
                if fn.vf_stride != 1:
                    entry["vf_stride"] = fn.vf_stride
                if fn.vf_template is not None:
                    entry["vf_template"] = fn.vf_template.to_spec()
                if fn.vfs:
                    entry["vfs"] = [self._fn_spec(self._fns[fn.vfs[n]], fn) for n in sorted(fn.vfs)]
            functions.append(entry)
        spec: dict[str, Any] = {}
        if self._vhost_net:
            spec["vhost_net"] = True
        if self._rdma_cm:
            spec["rdma_cm"] = True
        routes = {f"ipv{v}": list(names) for v, names in self._routes.items() if names}
        if routes:
            spec["default_routes"] = routes
        spec["functions"] = functions
        return spec

    @staticmethod
    def _fn_spec(fn: _Function, pf: _Function | None) -> dict[str, Any]:
        out = FakeHost._fn_spec_ids(fn, pf)
        out.update(FakeHost._fn_spec_attrs(fn, pf))
        out.update(FakeHost._fn_spec_facets(fn))
        return out

    @staticmethod
    def _fn_spec_ids(fn: _Function, pf: _Function | None) -> dict[str, Any]:
        """Address, index, ids, class, driver, NUMA node, netdevs and link type."""
        out: dict[str, Any] = {"address": fn.address}
        if pf is not None:
            out["index"] = fn.vf_index
        if pf is None or fn.vendor != pf.vendor:
            out["vendor"] = fn.vendor
        out["device"] = fn.device
        if fn.class_code != _NET_CLASS:
            out["class"] = f"0x{fn.class_code:06x}"
        if fn.driver is not None:
            out["driver"] = fn.driver
        if fn.numa_node is not None and (pf is None or fn.numa_node != pf.numa_node):
            out["numa_node"] = fn.numa_node
        if pf is not None and fn.numa_node is None and pf.numa_node is not None:
            out["numa_node"] = None
        if fn.ifnames:
            out["ifname"] = fn.ifnames[0] if len(fn.ifnames) == 1 else list(fn.ifnames)
        if fn.link_type != (pf.link_type if pf is not None else 1):
            out["link_type"] = fn.link_type
        return out

    @staticmethod
    def _fn_spec_attrs(fn: _Function, pf: _Function | None) -> dict[str, Any]:
        """Carrier, virtio, IOMMU group, uio, ACPI index and subsystem ids."""
        out: dict[str, Any] = {}
        if not fn.carrier:
            out["carrier"] = False
        if fn.virtio is not None:
            out["virtio"] = fn.virtio
        if fn.iommu_group is not None:
            out["iommu_group"] = fn.iommu_group
        if fn.noiommu:
            out["noiommu"] = True
        if fn.uio is not None:
            out["uio"] = fn.uio
        if fn.acpi_index is not None:
            out["acpi_index"] = fn.acpi_index
        if pf is None and fn.subsystem_vendor is not None:
            out["subsystem_vendor"] = fn.subsystem_vendor
        if fn.subsystem_device != "0000":
            out["subsystem_device"] = fn.subsystem_device
        return out

    @staticmethod
    def _fn_spec_facets(fn: _Function) -> dict[str, Any]:
        """RDMA, pkey, vDPA, switchdev ports and auxiliary devices."""
        out: dict[str, Any] = {}
        if fn.rdma:
            out["rdma"] = _one_or_list([r.to_spec() for r in fn.rdma])
            if fn.rdma[0].pkey != "0xffff":
                out["pkey"] = fn.rdma[0].pkey
        if fn.vdpa:
            out["vdpa"] = _one_or_list([v.to_spec() for v in fn.vdpa])
        ports = {n: p for n, p in fn.port_names.items() if n in fn.ifnames}
        if ports:
            out["phys_port_names"] = ports
            if fn.switch_id is not None:
                out["phys_switch_id"] = fn.switch_id
        if fn.aux:
            out["aux"] = [a.to_spec(fn) for a in fn.aux]
        return out

    @classmethod
    def from_spec(cls, root: Path, spec: Mapping[str, Any]) -> FakeHost:
        """Build the host a spec dict describes under ``root``.

        Raises:
            ValueError: naming the spec path of a bad entry, e.g. ``functions[2].vendor``.
        """
        host = cls(root)
        _known(spec, {"vhost_net", "rdma_cm", "default_routes", "functions"}, "spec")
        for i, entry in enumerate(spec.get("functions") or []):
            host._function_from_spec(entry, f"functions[{i}]")
        routes = spec.get("default_routes") or {}
        _known(routes, {"ipv4", "ipv6"}, "default_routes")
        for name in routes.get("ipv4") or []:
            host.add_default_route(name)
        for name in routes.get("ipv6") or []:
            host.add_default_route(name, ipv6=True)
        if spec.get("vhost_net"):
            host.enable_vhost_net()
        if spec.get("rdma_cm"):
            host.enable_rdma_cm()
        return host

    def _function_from_spec(self, e: Mapping[str, Any], where: str) -> None:
        _known(e, _FN_KEYS | _PF_KEYS, where)
        address = _check_address(e.get("address"), f"{where}.address")
        common = _common_kwargs(e, where)
        if "total_vfs" not in e:
            bad = _PF_KEYS & e.keys()
            if bad:
                raise ValueError(f"{where}: {sorted(bad)} need total_vfs")
            self.add_function(address, vendor=_check_id(e.get("vendor"), f"{where}.vendor"),
                              device=_check_id(e.get("device"), f"{where}.device"), **common)
            self._extras_from_spec(address, e, where)
            return
        self.add_pf(address, vendor=_check_id(e.get("vendor"), f"{where}.vendor"),
                    device=_check_id(e.get("device"), f"{where}.device"),
                    total_vfs=int(e["total_vfs"]), vf_offset=int(e.get("vf_offset", 16)),
                    vf_stride=int(e.get("vf_stride", 1)), **common)
        self._extras_from_spec(address, e, where)
        fn = self._fns[address]
        if "vf_template" in e:
            t = e["vf_template"]
            _known(t, {"device", "vendor", "driver", "ifname", "iommu_group_base"},
                   f"{where}.vf_template")
            fn.vf_template = _VfTemplate(
                device=_check_id(t.get("device", fn.device), f"{where}.vf_template.device"),
                vendor=t.get("vendor"), driver=t.get("driver"), ifname=t.get("ifname"),
                iommu_group_base=t.get("iommu_group_base"))
        vfs = e.get("vfs")
        if isinstance(vfs, Mapping):
            _known(vfs, {"count", "device", "vendor", "driver", "ifname", "iommu_group_base",
                         "numa_node", "link_type"}, f"{where}.vfs")
            self.add_vfs(address, **vfs)
        elif vfs:
            template = fn.vf_template
            for k, v in enumerate(vfs):
                self._vf_from_spec(fn, v, k, f"{where}.vfs[{k}]")
            fn.vf_template = template
            _write(f"{self._dev_dir(fn)}/sriov_numvfs", f"{len(fn.vfs)}\n")

    def _vf_from_spec(self, pfn: _Function, e: Mapping[str, Any], k: int, where: str) -> None:
        _known(e, _FN_KEYS | {"index"}, where)
        n = int(e.get("index", k))
        address = e.get("address") or self.vf_address(pfn.address, n)
        _check_address(address, f"{where}.address")
        c = _common_kwargs(e, where)
        if len(pfn.vfs) >= (pfn.total_vfs or 0):
            raise ValueError(f"{where}: more VFs than total_vfs={pfn.total_vfs}")
        t = _VfTemplate(device=_check_id(e.get("device"), f"{where}.device"),
                        vendor=_check_id(e.get("vendor", pfn.vendor), f"{where}.vendor"))
        extra = {k2: c[k2] for k2 in ("acpi_index", "carrier") if k2 in e}
        if "virtio" in e:
            raise ValueError(f"{where}: a VF cannot be virtio")
        for key in ("subsystem_vendor", "subsystem_device"):
            if key in e:
                extra[key] = c[key]
        self._add_vf(pfn, n, address, t,
                     numa_node=c["numa_node"] if "numa_node" in e else pfn.numa_node,
                     link_type=c["link_type"] if "link_type" in e else pfn.link_type,
                     driver=c["driver"], ifname=c["ifname"], iommu_group=c["iommu_group"],
                     noiommu=c["noiommu"], uio=c["uio"], **extra)
        if not c["carrier"]:
            self.set_link(address, carrier=False)
        self._extras_from_spec(address, e, where)

    def _extras_from_spec(self, address: str, e: Mapping[str, Any], where: str) -> None:
        """The ``rdma``, ``pkey``, ``vdpa``, ``phys_port_names`` and ``aux`` keys."""
        self._rdma_from_spec(address, e, where)
        self._vdpa_from_spec(address, e, where)
        self._ports_from_spec(e, where)
        self._aux_from_spec(address, e, where)

    def _rdma_from_spec(self, address: str, e: Mapping[str, Any], where: str) -> None:
        rdma = e.get("rdma")
        for k, item in enumerate(rdma if isinstance(rdma, list) else [rdma] if rdma else []):
            kwargs = _rdma_kwargs(item, f"{where}.rdma[{k}]" if isinstance(rdma, list)
                                  else f"{where}.rdma")
            self.add_rdma(address, kwargs.pop("name"), **kwargs)
        if "pkey" in e:
            pkey = e["pkey"]
            if not isinstance(pkey, str):
                raise ValueError(f"{where}.pkey: quote it, e.g. \"0x7fff\", got {pkey!r}")
            if not rdma:
                raise ValueError(f"{where}.pkey: needs an rdma device")
            self.set_pkey(address, pkey)

    def _vdpa_from_spec(self, address: str, e: Mapping[str, Any], where: str) -> None:
        vdpa = e.get("vdpa")
        for k, item in enumerate(vdpa if isinstance(vdpa, list) else [vdpa] if vdpa else []):
            at = f"{where}.vdpa[{k}]" if isinstance(vdpa, list) else f"{where}.vdpa"
            if isinstance(item, str):
                item = {"name": item}
            _known(item, {"name", "driver", "vhost"}, at)
            self.add_vdpa(address, str(item.get("name", "vdpa0")),
                          driver=item.get("driver", "vhost_vdpa"), vhost=item.get("vhost"))

    def _ports_from_spec(self, e: Mapping[str, Any], where: str) -> None:
        ports = e.get("phys_port_names") or {}
        if not isinstance(ports, Mapping):
            raise ValueError(f"{where}.phys_port_names: a mapping netdev → port name")  # noqa: TRY004 - spec errors are ValueError
        switch_id = e.get("phys_switch_id")
        if switch_id is not None and not isinstance(switch_id, str):
            raise ValueError(f"{where}.phys_switch_id: quote it, got {switch_id!r}")
        for ifname, port in ports.items():
            try:
                self.set_phys_port(str(ifname), str(port), switch_id=switch_id)
            except KeyError:
                raise ValueError(f"{where}.phys_port_names: no netdev {ifname}") from None

    def _aux_from_spec(self, address: str, e: Mapping[str, Any], where: str) -> None:
        for k, item in enumerate(e.get("aux") or []):
            at = f"{where}.aux[{k}]"
            _known(item, {"name", "sfnum", "ifname", "rdma", "link_type"}, at)
            sfnum = item.get("sfnum")
            name = item.get("name") or (f"mlx5_core.sf.{sfnum}" if sfnum is not None else None)
            if name is None:
                raise ValueError(f"{at}: needs a name or an sfnum")
            self.add_aux(address, str(name), sfnum=None if sfnum is None else int(sfnum),
                         ifname=item.get("ifname"), rdma=item.get("rdma"),
                         link_type=None if "link_type" not in item else int(item["link_type"]))

    @classmethod
    def load(cls, root: Path, spec_path: Path) -> FakeHost:
        """Build the host described by the YAML (or JSON) spec file ``spec_path``."""
        with open(spec_path, encoding="utf-8") as f:
            spec = yaml.safe_load(f)
        if not isinstance(spec, Mapping):
            raise ValueError(f"{spec_path}: a host spec is a mapping with 'functions'")  # noqa: TRY004 - spec errors are ValueError
        return cls.from_spec(root, spec)

    def save(self, spec_path: Path) -> None:
        """Write :meth:`to_spec` as YAML."""
        with open(spec_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(self.to_spec(), f, sort_keys=False, default_flow_style=None)

    @classmethod
    def scaled(
        cls,
        root: Path,
        *,
        pfs: int = 8,
        vfs_per_pf: int = 256,
        vendor: str = "8086",
        pf_device: str = "1572",
        vf_device: str = "154c",
        pf_driver: str = "i40e",
        vf_driver: str = "iavf",
    ) -> FakeHost:
        """A big SR-IOV host for benchmarks: ``pfs`` PFs with ``vfs_per_pf`` VFs each.

        PF i is ``0000:<0x18 + s·i>:00.0`` with netdev ``ens<i>f0``, NUMA node ``i % 2``;
        its VFs (routing ids PF + 16 + n) have netdevs ``ens<i>f0v<n>`` and one IOMMU group
        each. ``s`` is 4 buses, or as many as a PF's VFs need (5 for 1,024 VFs).

        Raises:
            ValueError: the PFs and their VFs do not fit below bus ``ff``.
        """
        buses = max(4, -(-(16 + vfs_per_pf) // 256))  # 256 routing ids per bus
        if 0x18 + buses * pfs > 0x100:
            raise ValueError(f"{pfs} PFs x {vfs_per_pf} VFs need {buses * pfs} PCI buses "
                             f"from 18; only {0x100 - 0x18} are left")
        host = cls(root)
        for i in range(pfs):
            pf = host.add_pf(f"0000:{0x18 + buses * i:02x}:00.0", vendor=vendor, device=pf_device,
                             driver=pf_driver, ifname=f"ens{i}f0", numa_node=i % 2,
                             total_vfs=max(vfs_per_pf, 1), iommu_group=10 + i)
            host.add_vfs(pf, vfs_per_pf, device=vf_device, driver=vf_driver,
                         ifname=f"ens{i}f0v{{n}}", iommu_group_base=1000 + i * vfs_per_pf)
        return host


_FN_KEYS = frozenset({
    "address", "vendor", "device", "class", "driver", "numa_node", "ifname", "link_type",
    "carrier", "virtio", "iommu_group", "noiommu", "uio", "acpi_index", "subsystem_vendor",
    "subsystem_device", "rdma", "pkey", "vdpa", "phys_port_names", "phys_switch_id", "aux",
})
_PF_KEYS = frozenset({"total_vfs", "vf_offset", "vf_stride", "vf_template", "vfs"})


def _default_switch_id(address: str) -> str:
    """A stable 8-byte ``phys_switch_id`` for the ports of one function, from its address."""
    dom, bus, slot, fn = _split_bdf(address)
    return f"{0xA8B0D1 << 40 | dom << 16 | bus << 8 | slot << 3 | fn:016x}"


def _rdma_kwargs(item: object, where: str) -> dict[str, Any]:
    """``"mlx5_0"`` or ``{device: mlx5_0, uverbs: 0, ...}`` → :meth:`FakeHost.add_rdma`
    keywords, with the device under ``name``."""
    if isinstance(item, str):
        return {"name": item}
    _known(item, {"device", "uverbs", "umad", "issm", "ucm", "char_devices"}, where)
    assert isinstance(item, Mapping)
    if not isinstance(item.get("device"), str):
        raise ValueError(f"{where}.device: the RDMA device name, e.g. mlx5_0")  # noqa: TRY004
    out: dict[str, Any] = {"name": item["device"]}
    for key in ("uverbs", "umad", "issm", "ucm"):
        if item.get(key) is not None:
            out[key] = int(item[key])
    if "char_devices" in item:
        out["char_devices"] = bool(item["char_devices"])
    return out


def _known(entry: object, keys: Iterable[str], where: str) -> None:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {entry!r}")  # noqa: TRY004 - spec errors are ValueError
    unknown = set(entry) - set(keys)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")


def _common_kwargs(e: Mapping[str, Any], where: str) -> dict[str, Any]:
    cls = e.get("class", _NET_CLASS)
    try:
        class_code = int(cls, 16) if isinstance(cls, str) else int(cls)
    except ValueError:
        raise ValueError(f"{where}.class: not a hex class code: {cls!r}") from None
    ifname = e.get("ifname")
    if ifname is not None and not isinstance(ifname, (str, list)):
        raise ValueError(f"{where}.ifname: a name or a list of names, got {ifname!r}")
    sub_vendor = e.get("subsystem_vendor")
    return {
        "class_code": class_code,
        "driver": e.get("driver"),
        "ifname": ifname,
        "numa_node": e.get("numa_node"),
        "link_type": int(e.get("link_type", 1)),
        "carrier": bool(e.get("carrier", True)),
        "virtio": e.get("virtio", False),
        "iommu_group": e.get("iommu_group"),
        "noiommu": bool(e.get("noiommu", False)),
        "uio": e.get("uio"),
        "acpi_index": None if e.get("acpi_index") is None else str(e["acpi_index"]),
        "subsystem_vendor": (None if sub_vendor is None
                             else _check_id(sub_vendor, f"{where}.subsystem_vendor")),
        "subsystem_device": _check_id(e.get("subsystem_device", "0000"),
                                      f"{where}.subsystem_device"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sriovdp.testing.fakehost SPEC.yaml --root DIR``: materialise a host spec."""
    parser = argparse.ArgumentParser(
        prog="python -m sriovdp.testing.fakehost",
        description="Build a fake host tree (sys/, dev/, proc/) from a YAML host spec.",
    )
    parser.add_argument("spec", type=Path, help="host spec (YAML or JSON)")
    parser.add_argument("--root", type=Path, required=True, help="directory to build the host in")
    parser.add_argument("--force", action="store_true",
                        help="delete an existing sys/, dev/ and proc/ under --root first")
    args = parser.parse_args(argv)
    existing = [args.root / d for d in ("sys", "dev", "proc") if (args.root / d).exists()]
    if existing and not args.force:
        print(f"error: {args.root} already has {', '.join(p.name for p in existing)}/ "
              "(use --force to replace)", file=sys.stderr)
        return 1
    for p in existing:
        shutil.rmtree(p)
    try:
        host = FakeHost.load(args.root, args.spec)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {len(host.addresses)} PCI functions under {args.root}; "
          f"run the daemon with --host-root {args.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
