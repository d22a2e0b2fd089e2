"""Scan the host's PCI functions from sysfs into an immutable :class:`Inventory`.

One pass over ``sys/bus/pci/devices``: every function of PCI base class 0x02 (network) or
0x12 (accelerator) becomes a :class:`PciFunction`; everything else is ignored. One module
per facet:

==============  ===========================================================================
scan            :func:`scan`: the pass over the bus, then the sub-functions
pci             one function's attributes (ids, driver, IOMMU group, SR-IOV, VF index)
net             the ``sys/class/net`` map, link types, default routes, the PF-netdev rule
rdma            RDMA devices, their char devices, the InfiniBand pkey
vdpa            vDPA devices and their vhost-vdpa nodes
aux             auxiliary devices that are sub-functions (``mlx5_core.sf.4``)
fingerprint     :func:`fingerprint`: the cheap "did anything change" summary
fd              small attribute readers relative to a directory fd, the scan's logger
==============  ===========================================================================

How the files are read, and why:

* Each function is read through one directory fd opened on ``sys/bus/pci/devices/<bdf>``
  (the kernel's symlink to ``sys/devices/pci0000:3b/.../<bdf>``); attributes are then
  ``openat``/``readlinkat`` relative to it with ``os.open``/``os.read``/``os.readlink``.
  Text-mode ``open()``, ``glob``, ``realpath`` and ``Path.resolve`` cost 3-10x more per file
  and are never used per device.
* Every path stays inside the host root (:mod:`sriovdp.host.files`): below a root other
  than ``/``, links are resolved as if the root were ``/`` (an absolute target is re-rooted,
  ``..`` stops at the root); attribute files are opened without following links; paths
  below a function's directory may not leave it; every read is bounded.
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
  mid-scan, an attribute that is a link) and a vfio-pci function without an IOMMU group skip
  that one function with a :class:`SkippedFunction` reason and a warning on the
  ``sriovdp.host.sysfs`` logger; the scan carries on.
* RDMA, vDPA and auxiliary (SF) devices cost nothing where they are absent: one listing
  per scan of ``sys/class/infiniband``, ``sys/bus/vdpa/devices`` and
  ``sys/bus/auxiliary/devices`` (a failed open when the subsystem is not loaded) gives the
  functions that have them; nothing is probed per VF. The RDMA char-device maps
  (``sys/class/infiniband_{cm,mad,verbs}``) are read once, on the first RDMA device.
"""

from __future__ import annotations

from sriovdp.host.files import HostRoot
from sriovdp.host.paths import HostPaths
from sriovdp.host.sysfs import net
from sriovdp.host.sysfs.aux import parse_aux_name
from sriovdp.host.sysfs.fingerprint import fingerprint
from sriovdp.host.sysfs.scan import scan


def read_default_route_ifnames(paths: HostPaths) -> frozenset[str]:
    """Netdevs with an IPv4 or IPv6 default route under ``paths.root`` (see
    :func:`sriovdp.host.sysfs.net.read_default_route_ifnames`)."""
    with HostRoot(paths.root) as root:
        return net.read_default_route_ifnames(root)

__all__ = ["fingerprint", "parse_aux_name", "read_default_route_ifnames", "scan"]
