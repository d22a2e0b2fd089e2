"""The scan: every network and accelerator PCI function, then the sub-functions, into an
:class:`~sriovdp.model.devices.Inventory`."""

from __future__ import annotations

import os

from sriovdp.errors import HostError
from sriovdp.host.files import HostRoot
from sriovdp.host.paths import HostPaths
from sriovdp.host.sysfs.aux import AuxReader
from sriovdp.host.sysfs.fd import PCI_NAME_RE, Skip, log
from sriovdp.host.sysfs.net import NetReader
from sriovdp.host.sysfs.pci import FunctionReader
from sriovdp.host.sysfs.rdma import RdmaReader
from sriovdp.host.sysfs.vdpa import VdpaReader
from sriovdp.model.devices import HostFacts, Inventory, PciFunction, SkippedFunction


def scan(paths: HostPaths) -> Inventory:
    """Read every network (class 0x02) and accelerator (class 0x12) PCI function.

    Where each :class:`PciFunction` field comes from (``<bdf>`` = ``sys/bus/pci/devices/<bdf>``):

    ==================  ==================================================================
    class_code          ``<bdf>/class`` (``0x020000``); ``modalias`` ``bcXXscXXiXX`` if absent
    vendor, device      ``<bdf>/vendor``, ``<bdf>/device`` (``0x8086`` → ``"8086"``);
                        ``<bdf>/modalias`` when those are missing or malformed
    driver              basename of ``readlink <bdf>/driver`` (dangling is fine)
    numa_node           ``<bdf>/numa_node`` (-1, missing or junk → None)
    iommu_group         basename of ``readlink <bdf>/iommu_group``; a vfio-pci function
                        without one is skipped (there is no ``/dev/vfio`` node to hand out)
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
                        :func:`~sriovdp.host.sysfs.net.read_default_route_ifnames`)
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
    target lies below a function of the inventory (see
    :meth:`~sriovdp.host.sysfs.aux.AuxReader.read_all`).

    Every path is read inside ``paths.root`` (see :mod:`sriovdp.host.files`: links are
    re-rooted under it, attribute files are not links, reads are bounded).

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
    try:
        root = HostRoot(paths.root)
    except OSError as exc:
        raise HostError(f"cannot list PCI devices in {paths.pci_devices}: "
                        f"{exc.strerror}") from exc
    with root:
        try:
            bus_fd = root.open_dir("sys/bus/pci/devices")
        except OSError as exc:
            raise HostError(f"cannot list PCI devices in {paths.pci_devices}: "
                            f"{exc.strerror}") from exc
        net, rdma = NetReader(root), RdmaReader(root)
        skipped: list[SkippedFunction] = []
        try:
            functions = _read_functions(FunctionReader(root, net, rdma, VdpaReader(root)),
                                        bus_fd, skipped)
        finally:
            os.close(bus_fd)
        aux = AuxReader(root, net, rdma).read_all(functions, skipped)
        facts = HostFacts(vhost_net=root.exists("dev/vhost-net") and root.exists("dev/net/tun"))
    return Inventory(functions=functions, aux=aux, skipped=tuple(skipped), facts=facts)


def _read_functions(reader: FunctionReader, bus_fd: int, skipped: list[SkippedFunction]
                    ) -> dict[str, PciFunction]:
    """The bound functions of a wanted class, by address; the others go to ``skipped``."""
    functions: dict[str, PciFunction] = {}
    for address in sorted(name for name in os.listdir(bus_fd) if PCI_NAME_RE.match(name)):
        try:
            function = reader.read(bus_fd, address)
        except Skip as skip:
            log.warning("skipping PCI function %s: %s", address, skip, extra={"pci": address})
            skipped.append(SkippedFunction(address, str(skip)))
            continue
        if function is None:
            continue
        if function.driver is None:
            log.debug("skipping PCI function %s: no driver bound", address,
                      extra={"pci": address})
            skipped.append(SkippedFunction(address, "no driver bound"))
            continue
        functions[address] = function
    return functions
