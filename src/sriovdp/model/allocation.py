"""What an Allocate answers for a set of device ids: device specs, mounts and env vars.

Pure: everything comes from the pool's scanned devices and :class:`HostFacts`. Paths in the
answer are the host's real paths (``/dev/vfio/87``), whatever ``--host-root`` the scan used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sriovdp.errors import AllocationError
from sriovdp.model.devices import HostFacts
from sriovdp.model.pools import PoolDevice, ResourcePool

UIO_DRIVERS = frozenset({"uio", "igb_uio", "uio_pci_generic"})
"""Drivers whose devices get ``/dev/uioN`` (the Go plugin forgets ``uio_pci_generic``)."""
VFIO_DRIVER = "vfio-pci"


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A device node for the container (``v1beta1.DeviceSpec``)."""

    container_path: str
    host_path: str
    permissions: str = "rw"


@dataclass(frozen=True, slots=True)
class Mount:
    """A bind mount for the container (``v1beta1.Mount``)."""

    container_path: str
    host_path: str
    read_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerAllocation:
    """One ``ContainerAllocateResponse``.

    Attributes:
        envs: ``PCIDEVICE_<P>_<N>`` (comma-separated ids) and ``PCIDEVICE_<P>_<N>_INFO`` (JSON).
        devices: device specs of all ids, request order, de-duplicated by host path.
        mounts: bind mounts (none for the current device kinds).
        annotations: container annotations (CDI mode).
        cdi_devices: fully qualified CDI device names (CDI mode).
    """

    envs: Mapping[str, str] = field(default_factory=dict)
    devices: tuple[DeviceSpec, ...] = ()
    mounts: tuple[Mount, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    cdi_devices: tuple[str, ...] = ()


def _vfio_paths(dev: PoolDevice) -> tuple[str, str] | None:
    """(container path, host path) of the device's VFIO group node, or None without a group."""
    group = dev.function.iommu_group
    if group is None:
        return None
    host = f"/dev/vfio/noiommu-{group}" if dev.function.vfio_noiommu else f"/dev/vfio/{group}"
    return f"/dev/vfio/{group}", host


def device_specs(dev: PoolDevice, facts: HostFacts) -> list[DeviceSpec]:
    """Device nodes of one device, in provider order (vfio/uio, then vhost-net)."""
    specs: list[DeviceSpec] = []
    driver = dev.function.driver
    if driver == VFIO_DRIVER:
        specs.append(DeviceSpec("/dev/vfio/vfio", "/dev/vfio/vfio"))
        group = _vfio_paths(dev)
        if group:
            specs.append(DeviceSpec(group[0], group[1]))
    elif driver in UIO_DRIVERS and dev.function.uio:
        node = f"/dev/{dev.function.uio}"
        specs.append(DeviceSpec(node, node))
    if dev.need_vhost_net and facts.vhost_net:
        specs.append(DeviceSpec("/dev/vhost-net", "/dev/vhost-net"))
        specs.append(DeviceSpec("/dev/net/tun", "/dev/net/tun"))
    return specs


def device_info(dev: PoolDevice, pool: ResourcePool, facts: HostFacts) -> dict[str, dict[str, str]]:
    """The device's entry of ``_INFO``: provider name → key/value map.

    Providers as in the Go plugin: ``generic`` (deviceID), ``vfio`` (mount, dev-mount),
    ``uio`` (mount), ``extra`` (``additionalInfo["*"]`` overlaid by the device's own key),
    ``vhost`` (net-mount, tun-mount). Every value is computed from the current scan, so
    ``dev-mount`` and the uio ``mount`` are right on the first Allocate too.
    """
    info: dict[str, dict[str, str]] = {"generic": {"deviceID": dev.id}}
    driver = dev.function.driver
    if driver == VFIO_DRIVER:
        vfio = {"mount": "/dev/vfio/vfio"}
        group = _vfio_paths(dev)
        if group:
            vfio["dev-mount"] = group[0]
        info["vfio"] = vfio
    elif driver in UIO_DRIVERS:
        info["uio"] = {"mount": f"/dev/{dev.function.uio}"} if dev.function.uio else {}
    extra = pool.config.additional_info
    if extra is not None:
        merged = dict(extra.get("*", {}))
        merged.update(extra.get(dev.id, {}))
        info["extra"] = merged
    if dev.need_vhost_net and facts.vhost_net:
        info["vhost"] = {"net-mount": "/dev/vhost-net", "tun-mount": "/dev/net/tun"}
    return info


def go_json(value: object) -> str:
    """JSON as Go's ``json.Marshal`` writes a map: sorted keys, compact, HTML-safe escapes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def allocate(pool: ResourcePool, ids: Sequence[str], facts: HostFacts) -> ContainerAllocation:
    """The answer to one ``ContainerAllocateRequest``.

    Raises:
        AllocationError: naming every id the pool does not hold (the Go plugin ignores them).
    """
    unknown = [i for i in ids if i not in pool.devices]
    if unknown:
        raise AllocationError(pool.resource_name, unknown)
    devices = [pool.devices[i] for i in ids]
    specs: dict[str, DeviceSpec] = {}
    for dev in devices:
        for spec in device_specs(dev, facts):
            specs.setdefault(spec.host_path, spec)
    info = {dev.id: device_info(dev, pool, facts) for dev in devices}
    envs = {pool.env_name: ",".join(ids), pool.env_name + "_INFO": go_json(info)}
    return ContainerAllocation(envs=envs, devices=tuple(specs.values()))
