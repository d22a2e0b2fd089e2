"""The attributes one pool device is published with in a ResourceSlice.

Attribute values are ``{"string": ...}``, ``{"int": ...}``, ``{"bool": ...}`` (or
``{"version": ...}``) maps, as ``resource.k8s.io/v1`` ``DeviceAttribute``. Names without a
domain belong to the driver's domain (a DeviceClass CEL selector reads them as
``device.attributes["sriov.network.k8s.io"].pfName``); names of others carry theirs.

Driver-domain attributes (present when known; a string longer than the API's 64 characters
is left out rather than cut):

============== ====== =====================================================================
name           type   value
============== ====== =====================================================================
resourceName   string extended resource name of the config pool, ``intel.com/sriov_net``
deviceType     string ``netDevice``, ``accelerator`` or ``auxNetDevice``
vendor         string PCI vendor id, ``8086`` (an SF: its parent's)
deviceID       string PCI device id, ``154c``
driver         string bound kernel driver, ``iavf``, ``vfio-pci``
pciAddress     string the function's PCI address (an SF: its parent's)
pfName         string the PF's netdev, ``ens1f0`` (a PF in a pool: its own netdev)
pfPciAddress   string the PF's PCI address (VFs and SFs)
vfIndex        int    VF index (VFs only)
sfNum          int    SF number (SFs only); ``auxName`` string: the auxiliary device name
linkType       string ``ether``, ``infiniband`` ...
rdma           bool   the device has RDMA devices; ``rdmaDevices`` string: their names
vdpaType       string ``vhost``/``virtio`` of its vDPA device
numaNode       int    NUMA node (absent when unknown or ``excludeTopology``)
iommuGroup     int    IOMMU group
============== ====== =====================================================================

Standard and Multus attributes: ``resource.kubernetes.io/pciBusID`` (the PCI address),
``resource.kubernetes.io/pcieRoot`` (``pci0000:3a``, when the caller knows it),
``resource.kubernetes.io/numaNode`` (int), ``k8s.cni.cncf.io/resourceName`` (the extended
resource name, which a NetworkAttachmentDefinition's ``resourceName`` annotation names) and
``k8s.cni.cncf.io/deviceID`` (the device id the SR-IOV CNI is given: PCI address or aux name).
At most 22 attributes per device, under the API's 32.
"""

from __future__ import annotations

import functools
from typing import Any

from sriovdp.model.devices import AuxFunction, PciFunction
from sriovdp.model.pools import PoolDevice, ResourcePool

STANDARD_DOMAIN = "resource.kubernetes.io"
MULTUS_DOMAIN = "k8s.cni.cncf.io"
MAX_ATTRIBUTES = 32
"""``ResourceSliceMaxAttributesAndCapacitiesPerDevice``."""
MAX_STRING = 64
"""``DeviceAttributeMaxValueLength``: the longest string attribute value."""

Attribute = dict[str, Any]
"""One ``DeviceAttribute``: ``{"string": "ens1f0"}``, ``{"int": 3}``, ``{"bool": True}``."""


def _put(out: dict[str, Attribute], name: str, value: str | int | bool | None) -> None:
    if value is None or value == "":
        return
    if isinstance(value, bool):
        out[name] = {"bool": value}
    elif isinstance(value, int):
        out[name] = {"int": value}
    elif len(value) <= MAX_STRING:
        out[name] = {"string": value}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def device_attributes(
    dev: PoolDevice, pool: ResourcePool, *, pcie_root: str | None = None
) -> dict[str, Attribute]:
    """The attributes of ``dev`` as ``pool`` publishes it, names sorted.

    The result is cached per (function, NUMA node, pool name and kind, PCIe root): health
    is not part of the key, so a health flip reuses every device's dicts. It is shared:
    treat it as read-only. (Building them is most of the cost of a node's slices, ~0.05 ms
    per device: a health flip at 2,048 VFs would otherwise rebuild ~100 ms of equal dicts.)
    The cache holds 4,096 entries, twice the largest node the benches model; the published
    slices hold the same dicts, so it costs little memory of its own.

    Args:
        dev: the pool's device.
        pool: the config pool that took it.
        pcie_root: the device's PCIe root complex, e.g. ``"pci0000:3a"``; None when unknown.

    Example (a VF)::

        {"deviceID": {"string": "154c"}, "driver": {"string": "iavf"},
         "k8s.cni.cncf.io/deviceID": {"string": "0000:3b:02.1"}, ...,
         "pfName": {"string": "ens1f0"}, "vfIndex": {"int": 1}, ...}
    """
    return _attributes(dev.function, dev.numa_node, pool.resource_name, str(pool.config.kind),
                       pcie_root)


@functools.lru_cache(maxsize=4096)
def _attributes(
    fn: PciFunction | AuxFunction, numa_node: int | None, resource_name: str, kind: str,
    pcie_root: str | None,
) -> dict[str, Attribute]:
    pci: PciFunction = fn.parent if isinstance(fn, AuxFunction) else fn
    out: dict[str, Attribute] = {}
    _put(out, "resourceName", resource_name)
    _put(out, "deviceType", kind)
    _put(out, "vendor", pci.vendor)
    _put(out, "deviceID", pci.device)
    _put(out, "driver", pci.driver)
    _put(out, "pciAddress", pci.address)
    if isinstance(fn, AuxFunction):
        _put(out, "auxName", fn.name)
        _put(out, "sfNum", fn.sf_num)
        _put(out, "pfName", fn.pf_netdev)
        _put(out, "pfPciAddress", fn.pf_address)
    else:
        _put(out, "pfName", fn.pf_netdev if fn.is_vf else fn.netdev)
        _put(out, "pfPciAddress", fn.physfn)
        _put(out, "vfIndex", fn.vf_index)
        _put(out, "iommuGroup", _int(fn.iommu_group))
        if fn.vdpa is not None:
            _put(out, "vdpaType", fn.vdpa.type)
    _put(out, "linkType", fn.link_type)
    rdma = fn.rdma.devices if fn.rdma is not None else ()
    _put(out, "rdma", bool(rdma))
    _put(out, "rdmaDevices", ",".join(rdma))
    _put(out, "numaNode", numa_node)
    _put(out, f"{STANDARD_DOMAIN}/pciBusID", pci.address)
    _put(out, f"{STANDARD_DOMAIN}/pcieRoot", pcie_root)
    _put(out, f"{STANDARD_DOMAIN}/numaNode", numa_node)
    _put(out, f"{MULTUS_DOMAIN}/resourceName", resource_name)
    _put(out, f"{MULTUS_DOMAIN}/deviceID", fn.address)
    return dict(sorted(out.items()))


def pcie_root_of(device_path: str) -> str | None:
    """The PCIe root complex in a device's sysfs path, e.g.
    ``"../../../devices/pci0000:3a/0000:3a:00.0/0000:3b:02.1"`` → ``"pci0000:3a"``.

    This is the ``resource.kubernetes.io/pcieRoot`` value (``pci<domain>:<bus>``); None when
    the path has no such component (a virtual bus).
    """
    for part in device_path.split("/"):
        if part.startswith("pci") and len(part) == 10 and part[7] == ":":
            try:
                int(part[3:7], 16), int(part[8:], 16)
            except ValueError:
                continue
            return part
    return None

