"""The ResourceSlices one node publishes for its pools, as plain ``resource.k8s.io/v1`` dicts.

* **One DRA pool per node**, named after the node; every config pool's devices are in it
  (the config pool is the ``resourceName`` attribute, which a DeviceClass selects on).
* **Devices** are named by :func:`~sriovdp.model.dra.names.device_names`, sorted by name,
  at most 128 per slice (``ResourceSliceMaxDevices``); more are split over several slices,
  each carrying ``resourceSliceCount``.
* **Generation**: :func:`advance` bumps the pool generation whenever the published devices
  (names, attributes, taints) differ from the last published ones, and keeps it otherwise,
  so a rescan that finds nothing new rewrites nothing.
* **Health** (:class:`HealthPolicy`): an Unhealthy device is **withdrawn** by default — left
  out of the slices, so the scheduler allocates it to no new claim. That works on every
  cluster with ``resource.k8s.io/v1`` (1.34+). A device already allocated stays preparable
  (:func:`dra_devices` keeps it), as a device plugin keeps serving Allocate for an
  Unhealthy device. The alternative, ``taint``, publishes it with a ``NoSchedule`` device
  taint ``<driver>/unhealthy``, which keeps it visible (``kubectl get resourceslices``)
  but needs the ``DRADeviceTaints`` feature gate (alpha in 1.33/1.34, beta later): an
  apiserver without it drops the field, and the scheduler would then allocate the device.
  A slice with taints holds at most 64 devices, so under ``taint`` every slice is cut at
  64, whatever the health, and a health flip never moves devices between slices.
* **Owner**: each slice has an owner reference to the Node (when its UID is known), so the
  garbage collector removes the slices with the node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sriovdp.model.dra.attributes import device_attributes
from sriovdp.model.dra.names import check_driver_name, check_pool_name, device_names
from sriovdp.model.health import Health
from sriovdp.model.pools import PoolDevice, PoolSet, ResourcePool

API_VERSION = "resource.k8s.io/v1"
MAX_DEVICES = 128
"""``ResourceSliceMaxDevices``."""
MAX_DEVICES_WITH_TAINTS = 64
"""``ResourceSliceMaxDevicesWithAdvancedFeatures``: the limit once a device has taints."""
_OBJECT_NAME_MAX = 253


class HealthPolicy(StrEnum):
    """What an Unhealthy device looks like in the slices."""

    WITHDRAW = "withdraw"
    TAINT = "taint"


@dataclass(frozen=True, slots=True)
class DraDevice:
    """One device as DRA mode knows it.

    Attributes:
        name: its DRA device name, e.g. ``"0000-3b-02-1"``.
        device: the config pool's device (id, function, health, NUMA node ...).
        pool: the config pool that took it.
    """

    name: str
    device: PoolDevice
    pool: ResourcePool


def dra_devices(pools: PoolSet) -> dict[str, DraDevice]:
    """DRA device name → device for every device of every pool, Unhealthy ones included
    (NodePrepareResources must still find a device that went Unhealthy after allocation)."""
    return dict(DraDeviceSet.of(pools).devices)


@dataclass(frozen=True, slots=True)
class DraDeviceSet:
    """The node's DRA devices (:func:`dra_devices`) with the pools they came from, so the
    next publication rebuilds only the entries of the pools that changed.

    On the link fast path a carrier change replaces the pools of one PF and keeps every
    other pool object (:func:`~sriovdp.model.pools.with_health`); building all 2,048
    entries again took ~6 ms of the event loop before the health stream could tell the
    kubelet. An entry of an unchanged pool stays the same object, which also tells a
    reader (the health stream) what did not change.

    Attributes:
        pools: the pools, by key.
        devices: DRA device name → device, in name order.
        names: device id → DRA device name.
    """

    pools: Mapping[str, ResourcePool] = field(default_factory=dict)
    devices: Mapping[str, DraDevice] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, pools: PoolSet) -> DraDeviceSet:
        """Every entry built."""
        members = [(dev, pool) for pool in pools.values() for dev in pool.devices.values()]
        names = device_names(dev.id for dev, _ in members)
        out = {names[dev.id]: DraDevice(names[dev.id], dev, pool) for dev, pool in members}
        return cls(dict(pools), dict(sorted(out.items())), names)

    def updated(self, pools: PoolSet) -> DraDeviceSet:
        """The set for ``pools``: ``self`` when no pool changed; the entries of the
        changed pools built again when each pool kept its device ids (names and order are
        those of ``self``); else (pools or ids came or went, a device in two pools) every
        entry built."""
        if pools.keys() != self.pools.keys():
            return DraDeviceSet.of(pools)
        moved = [(pool, self.pools[key]) for key, pool in pools.items()
                 if pool is not self.pools[key]]
        if not moved:
            return self
        if any(pool.devices.keys() != before.devices.keys() for pool, before in moved) or len(
                self.devices) != sum(len(p.devices) for p in self.pools.values()):
            return DraDeviceSet.of(pools)  # the last: a device in two pools
        names = self.names
        changed = {names[dev_id]: DraDevice(names[dev_id], dev, pool)
                   for pool, _ in moved for dev_id, dev in pool.devices.items()}
        return DraDeviceSet(dict(pools), {**self.devices, **changed}, self.names)


def unhealthy_taint_key(driver: str) -> str:
    """``<driver>/unhealthy``, the taint key of an Unhealthy device under ``taint``."""
    return f"{driver}/unhealthy"


def slice_devices(
    devices: Mapping[str, DraDevice],
    *,
    driver: str,
    policy: HealthPolicy = HealthPolicy.WITHDRAW,
    pcie_roots: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The ``spec.devices`` entries of the whole pool, in device name order.

    Args:
        devices: from :func:`dra_devices`.
        driver: the driver name (the taint key's domain).
        policy: withdraw or taint Unhealthy devices.
        pcie_roots: device id (PCI address; an SF's parent address) → PCIe root, e.g.
            ``{"0000:3b:02.1": "pci0000:3a"}``; missing ids get no ``pcieRoot`` attribute.
    """
    roots = pcie_roots or {}
    out: list[dict[str, Any]] = []
    for name, entry in devices.items():
        dev = entry.device
        unhealthy = dev.health == Health.UNHEALTHY
        if unhealthy and policy is HealthPolicy.WITHDRAW:
            continue
        fn = dev.function
        address = getattr(fn, "parent", fn).address
        item: dict[str, Any] = {
            "name": name,
            "attributes": device_attributes(dev, entry.pool, pcie_root=roots.get(address)),
        }
        if unhealthy:
            item["taints"] = [{"key": unhealthy_taint_key(driver), "effect": "NoSchedule"}]
        out.append(item)
    return out


@dataclass(frozen=True, slots=True)
class PoolState:
    """What was last published for the node's pool.

    Attributes:
        generation: ``spec.pool.generation`` of the published slices.
        devices: the published ``spec.devices`` entries of all slices, in order.
    """

    generation: int
    devices: Sequence[dict[str, Any]] = field(default_factory=list)
    slice_sizes: tuple[int, ...] | None = None
    """Devices per slice, in slice order (None: not known, devices alone are compared)."""


def slice_sizes(count: int, policy: HealthPolicy) -> tuple[int, ...]:
    """How :func:`resource_slices` cuts ``count`` devices: 128 a slice, 64 under ``taint``,
    and one empty slice for an empty pool."""
    size = MAX_DEVICES_WITH_TAINTS if policy is HealthPolicy.TAINT else MAX_DEVICES
    return tuple(min(size, count - i) for i in range(0, count, size)) or (0,)


def advance(previous: PoolState | None, devices: Sequence[dict[str, Any]],
            policy: HealthPolicy | None = None) -> PoolState:
    """The pool state to publish for ``devices``: the same generation when nothing changed,
    else one more (1 for a first publication). With ``policy``, a different cut of the
    same devices into slices (a restart with the other ``--dra-health``) is a change too:
    written under the old generation, slices of one generation would list devices twice.

    After a restart, pass the state read back from the apiserver (the highest generation
    of the node's slices, their devices and sizes) so the generation keeps growing.
    """
    sizes = slice_sizes(len(devices), policy) if policy is not None else None
    if (previous is not None and list(previous.devices) == list(devices)
            and (sizes is None or previous.slice_sizes in (None, sizes))):
        return previous
    generation = previous.generation + 1 if previous is not None else 1
    return PoolState(generation, list(devices), sizes)


def slice_name(node_name: str, driver: str, index: int) -> str:
    """``<node>-<driver>-<index>``, e.g. ``"worker-1-sriov.network.k8s.io-0"``.

    Deterministic, so an update replaces the slice of the same index and stale slices are
    those with a higher index. A name that would pass 253 characters keeps a cut node name
    and 8 hex digits of its SHA-256 instead.
    """
    name = f"{node_name}-{driver}-{index}"
    if len(name) <= _OBJECT_NAME_MAX:
        return name
    digest = hashlib.sha256(node_name.encode()).hexdigest()[:8]
    keep = _OBJECT_NAME_MAX - len(f"-{digest}-{driver}-{index}")
    return f"{node_name[:keep].rstrip('.-')}-{digest}-{driver}-{index}"


def resource_slices(
    state: PoolState,
    *,
    driver: str,
    node_name: str,
    node_uid: str | None = None,
    policy: HealthPolicy = HealthPolicy.WITHDRAW,
) -> list[dict[str, Any]]:
    """The node's ResourceSlices for ``state``: at least one (an empty pool still has a
    slice, so consumers see the pool and its generation), each with at most 128 devices
    (64 under ``taint``).

    Example (one device)::

        {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
         "metadata": {"name": "worker-1-sriov.network.k8s.io-0", "ownerReferences": [
             {"apiVersion": "v1", "kind": "Node", "name": "worker-1", "uid": "...",
              "controller": True}]},
         "spec": {"driver": "sriov.network.k8s.io", "nodeName": "worker-1",
                  "pool": {"name": "worker-1", "generation": 1, "resourceSliceCount": 1},
                  "devices": [{"name": "0000-3b-02-1", "attributes": {...}}]}}

    Raises:
        DraNameError: the driver or node name is not valid for the API.
    """
    check_driver_name(driver)
    check_pool_name(node_name)
    size = MAX_DEVICES_WITH_TAINTS if policy is HealthPolicy.TAINT else MAX_DEVICES
    devices = list(state.devices)
    chunks = [devices[i:i + size] for i in range(0, len(devices), size)] or [[]]
    metadata_owner = (
        [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid,
          "controller": True}] if node_uid else None
    )
    out: list[dict[str, Any]] = []
    for index, chunk in enumerate(chunks):
        metadata: dict[str, Any] = {"name": slice_name(node_name, driver, index)}
        if metadata_owner is not None:
            metadata["ownerReferences"] = metadata_owner
        out.append({
            "apiVersion": API_VERSION,
            "kind": "ResourceSlice",
            "metadata": metadata,
            "spec": {
                "driver": driver,
                "nodeName": node_name,
                "pool": {"name": node_name, "generation": state.generation,
                         "resourceSliceCount": len(chunks)},
                "devices": chunk,
            },
        })
    return out
