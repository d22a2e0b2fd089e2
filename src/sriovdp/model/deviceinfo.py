"""NPWG device-info documents (Device Information Spec 1.1.0) for netDevice pool devices.

Pure: :func:`device_info_document` builds the document, :func:`device_info_json` the exact
bytes the Go plugin writes (compact JSON in the spec's field order), and
:func:`device_info_file_name` the file name under the device-info directory
(``/var/run/k8s.cni.cncf.io/devinfo/dp``). :mod:`sriovdp.host.devinfo` writes the files.

Shapes (keys with empty values are left out)::

    {"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.1"}}
    {"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:01:00.1","rdma-device":"mlx5_0"}}
    {"type":"vdpa","version":"1.1.0","vdpa":{"parent-device":"vdpa1","driver":"vhost",
     "path":"/dev/vhost-vdpa-1","pci-address":"0000:01:00.1"}}

``driver`` of a vdpa document is the vDPA *type* (``vhost``/``virtio``), not the kernel
driver; ``path`` is set for vhost devices only. ``vhost-net``, ``pf-pci-address`` and
``representor-device`` are never set (as in the Go plugin).
"""

from __future__ import annotations

from typing import Any

from sriovdp.model.allocation import go_json
from sriovdp.model.devices import PciFunction
from sriovdp.model.pools import PoolDevice

DEVICE_INFO_VERSION = "1.1.0"


def device_info_document(dev: PoolDevice) -> dict[str, Any]:
    """The device-info document of a netDevice pool device, keys in the spec's order.

    A ``vdpa`` document when the device was taken by a ``vdpaType`` selector and has a vDPA
    device; otherwise a ``pci`` document, with ``rdma-device`` (the RDMA device names,
    comma-joined) when the device was taken by an ``isRdma`` selector.

    Raises:
        ValueError: ``dev`` is an auxiliary device (only netDevice pools have device-info files).
    """
    fn = dev.function
    if not isinstance(fn, PciFunction):
        raise ValueError(f"device-info files are for netDevice pools only, not {dev.id!r}")
    if dev.vdpa_type and fn.vdpa is not None:
        vdpa = fn.vdpa
        body = {
            "parent-device": vdpa.name,
            "driver": vdpa.type,
            "path": vdpa.vhost_path if vdpa.type == "vhost" else None,
            "pci-address": fn.address,
        }
        return {"type": "vdpa", "version": DEVICE_INFO_VERSION, "vdpa": _drop_empty(body)}
    rdma = fn.rdma.devices if dev.is_rdma and fn.rdma is not None else ()
    body = {"pci-address": fn.address, "rdma-device": ",".join(rdma)}
    return {"type": "pci", "version": DEVICE_INFO_VERSION, "pci": _drop_empty(body)}


def _drop_empty(body: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in body.items() if v}


def device_info_json(dev: PoolDevice) -> str:
    """:func:`device_info_document` as the Go plugin writes it: compact, field order kept."""
    return go_json(device_info_document(dev), sort_keys=False)


def device_info_file_name(resource_name: str, device_id: str) -> str:
    """``<prefix>-<name>-<id>-device.json`` with every ``/`` made ``-``.

    Example: ``("intel.com/intel_sriov_netdevice", "0000:03:02.1")`` →
    ``"intel.com-intel_sriov_netdevice-0000:03:02.1-device.json"``.
    """
    return f"{resource_name.replace('/', '-')}-{device_id.replace('/', '-')}-device.json"
