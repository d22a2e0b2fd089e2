"""Resource pools: which PCI functions (or auxiliary devices) each configured resource advertises.

``build_pools`` is one pure pass over an :class:`Inventory`: every device is looked at once
per selector until a pool takes it, and a device joins at most one pool (the first resource
in the file, then its first selector, wins — as in the Go plugin). netDevice and accelerator
pools take PCI functions (``inventory.functions``), auxNetDevice pools take auxiliary devices
(``inventory.aux``); their ids (PCI address, aux name) never collide, so a PF can be in a
netDevice pool while its SFs are in an aux pool. Unlike the Go plugin, a pool with no devices
is still returned (and advertised with 0 devices), so a pool that fills later (VFs created, a
driver rebound) needs no restart and an empty pool is visible as 0/0.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import (
    ACCEL_CLASS,
    NET_CLASS,
    AuxFunction,
    DeviceKind,
    Inventory,
    PciFunction,
)
from sriovdp.model.health import Health
from sriovdp.model.ids import env_var_name, socket_name
from sriovdp.model.selectors import (
    AuxNetSelector,
    NetSelector,
    Selector,
    rdma_capable,
    rejecting_field,
)

CDI_CLASSES: Mapping[DeviceKind, str] = {
    DeviceKind.NET: "net-pci",
    DeviceKind.ACCEL: "net-accel",
    DeviceKind.AUX_NET: "net-sf",
}
"""The Go plugin's pool type per ``deviceType``, used as the CDI class."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolDevice:
    """A device as one pool advertises it.

    Attributes:
        id: ``Device.ID`` for the kubelet: the PCI address, e.g. ``"0000:3b:02.1"``, or the
            auxiliary device name, e.g. ``"mlx5_core.sf.4"``.
        function: the scanned PCI function or auxiliary device.
        health: :class:`~sriovdp.model.health.Health` (adapters send its value string).
        numa_node: advertised NUMA node; None when unknown or the pool sets ``excludeTopology``.
        need_vhost_net: the selector that took the device asked for ``/dev/vhost-net``.
        is_rdma: the selector that took the device has ``isRdma`` and the device has RDMA
            devices (it gets the ``rdma`` info provider and ``rdma-device`` in device-info).
        vdpa_type: the ``vdpaType`` of the selector that took the device (``"vhost"`` or
            ``"virtio"``), None without; such a device gets the ``vdpa`` provider instead of
            ``rdma``.
    """

    id: str
    function: PciFunction | AuxFunction
    health: Health = Health.HEALTHY
    numa_node: int | None = None
    need_vhost_net: bool = False
    is_rdma: bool = False
    vdpa_type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourcePool:
    """One configured resource and the devices it holds, in PCI address order.

    Attributes:
        config: the resource's config entry.
        prefix: the effective resource prefix, e.g. ``"intel.com"``.
        devices: device id → device.
    """

    config: ResourceConfig
    prefix: str
    devices: Mapping[str, PoolDevice] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``resourceName``, e.g. ``"intel_sriov_netdevice"``."""
        return self.config.name

    @property
    def resource_name(self) -> str:
        """Extended resource name, e.g. ``"intel.com/intel_sriov_netdevice"``."""
        return f"{self.prefix}/{self.config.name}"

    @property
    def socket_name(self) -> str:
        """Socket file name, e.g. ``"intel.com_intel_sriov_netdevice.sock"``."""
        return socket_name(self.prefix, self.config.name)

    @property
    def env_name(self) -> str:
        """``PCIDEVICE_INTEL_COM_INTEL_SRIOV_NETDEVICE``."""
        return env_var_name(self.prefix, self.config.name)

    @property
    def cdi_class(self) -> str:
        """CDI class of the pool: ``net-pci``, ``net-accel`` or ``net-sf`` (by ``deviceType``)."""
        return CDI_CLASSES[self.config.kind]

    @property
    def cdi_kind(self) -> str:
        """CDI kind ``<prefix>/<class>``, e.g. ``"intel.com/net-pci"``."""
        return f"{self.prefix}/{self.cdi_class}"


PoolSet = Mapping[str, ResourcePool]
"""Extended resource name → pool, in config file order."""


def eligibility(fn: PciFunction | AuxFunction, kind: DeviceKind) -> str | None:
    """Why ``fn`` can never be in a pool of ``kind`` (None when it can).

    netDevice takes base class 0x02 functions except SR-IOV PFs with VFs created and
    functions whose netdev carries the node's default route; accelerator takes class 0x12;
    auxNetDevice takes every scanned auxiliary device (no default-route or PF exclusion).
    """
    if isinstance(fn, AuxFunction):
        return None if kind is DeviceKind.AUX_NET else "an auxiliary device (auxNetDevice only)"
    if kind is DeviceKind.ACCEL:
        return None if fn.base_class == ACCEL_CLASS else "not an accelerator (class 0x12)"
    if fn.base_class != NET_CLASS:
        return "not a network device (class 0x02)"
    if kind is DeviceKind.AUX_NET:
        return "not an auxiliary device"
    if fn.is_pf_with_vfs:
        return f"SR-IOV PF with {fn.num_vfs} VFs enabled (its VFs are the pool members)"
    if fn.default_route:
        return f"netdev {fn.netdev} carries the default route"
    return None


def _candidates(inventory: Inventory, kind: DeviceKind) -> list[PciFunction | AuxFunction]:
    """Every scanned device a pool of ``kind`` may look at, in id order."""
    if kind is DeviceKind.AUX_NET:
        return list(inventory.aux.values())
    return list(inventory.functions.values())


def _pool_device(
    fn: PciFunction | AuxFunction,
    config: ResourceConfig,
    selector: Selector,
    health: Mapping[str, Health],
) -> PoolDevice:
    # The selector that took the device decides its providers (Go rebuilds the device per
    # selector); the filter already guaranteed RDMA devices / a matching vDPA device.
    rdma = isinstance(selector, NetSelector | AuxNetSelector) and selector.is_rdma
    return PoolDevice(
        id=fn.address,
        function=fn,
        health=health.get(fn.address, Health.HEALTHY),
        numa_node=None if config.exclude_topology else fn.numa_node,
        need_vhost_net=bool(getattr(selector, "need_vhost_net", False)),
        is_rdma=rdma and rdma_capable(fn),
        vdpa_type=selector.vdpa_type if isinstance(selector, NetSelector) else None,
    )


def build_pools(
    inventory: Inventory,
    configs: Sequence[ResourceConfig],
    *,
    default_prefix: str,
    health: Mapping[str, Health] | None = None,
) -> dict[str, ResourcePool]:
    """Assign the inventory's functions to the configured resources.

    Args:
        inventory: one scan of the host.
        configs: resources in config file order.
        default_prefix: the ``--resource-prefix`` for resources without ``resourcePrefix``.
        health: device id → :class:`Health`; missing ids are healthy.

    Returns:
        extended resource name → pool, in config order; every resource is present, possibly
        with no devices.
    """
    health = health or {}
    taken: set[str] = set()
    pools: dict[str, ResourcePool] = {}
    by_kind: dict[DeviceKind, list[PciFunction | AuxFunction]] = {}
    for config in configs:
        if config.kind not in by_kind:
            by_kind[config.kind] = [
                f for f in _candidates(inventory, config.kind)
                if eligibility(f, config.kind) is None
            ]
        members: dict[str, PoolDevice] = {}
        for selector in config.selectors:
            for fn in by_kind[config.kind]:
                if fn.address in taken or rejecting_field(selector, fn) is not None:
                    continue
                taken.add(fn.address)
                members[fn.address] = _pool_device(fn, config, selector, health)
        prefix = config.effective_prefix(default_prefix)
        ordered = {k: members[k] for k in sorted(members)}
        pools[config.resource_name(default_prefix)] = ResourcePool(
            config=config, prefix=prefix, devices=ordered
        )
    return pools


def with_health(pools: PoolSet, health: Mapping[str, Health]) -> dict[str, ResourcePool]:
    """``pools`` with each device's health taken from ``health`` (missing ids: Healthy).

    The health fast path: a link change re-derives health without rebuilding the pools.
    A pool in which no device changed is returned as the same object.
    """
    out: dict[str, ResourcePool] = {}
    for name, pool in pools.items():
        changed = {dev_id: replace(dev, health=health.get(dev_id, Health.HEALTHY))
                   for dev_id, dev in pool.devices.items()
                   if dev.health != health.get(dev_id, Health.HEALTHY)}
        out[name] = replace(pool, devices={**pool.devices, **changed}) if changed else pool
    return out


def with_faulty_pools(pools: PoolSet, faulty: Collection[str]) -> dict[str, ResourcePool]:
    """``pools`` with every device of the pools in ``faulty`` Unhealthy: the node cannot
    hand them out (their CDI spec is not on disk), so the kubelet must not allocate them."""
    out = dict(pools)
    for name in faulty:
        pool = out.get(name)
        if pool is not None:
            out[name] = replace(pool, devices={
                k: replace(d, health=Health.UNHEALTHY) for k, d in pool.devices.items()})
    return out


def ddp_candidates(inventory: Inventory, configs: Sequence[ResourceConfig]) -> list[str]:
    """The functions whose DDP profile must be read: every network function when some
    netDevice selector has ``ddpProfiles``, none otherwise (``ddptool`` is one process per
    function: never run it when no selector asks)."""
    if not any(isinstance(sel, NetSelector) and sel.ddp_profiles
               for config in configs for sel in config.selectors):
        return []
    return [a for a, fn in inventory.functions.items() if fn.base_class == NET_CLASS]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why one PCI function (or auxiliary device) is or is not in one pool.

    Attributes:
        address: the function's PCI address (the aux device name for auxNetDevice pools).
        member: True when the pool holds it.
        reason: for non-members, e.g. ``"resourceList[0].selectors[0].devices"`` (the
            selector field's JSON path in the file),
            ``"taken by intel.com/other"`` or an eligibility reason; ``""`` for members.
    """

    address: str
    member: bool
    reason: str = ""
    by_selector: bool = False
    """The reason is the selector field that rejected it."""
    passed: int = 0
    """For a selector rejection: how many of the selector's fields the device passed before
    the one that rejected it (the most over all selectors): near misses pass more."""


def explain(
    inventory: Inventory,
    configs: Sequence[ResourceConfig],
    pools: PoolSet,
    *,
    default_prefix: str,
    only: Collection[str] | None = None,
) -> dict[str, list[Verdict]]:
    """For each pool (or those named in ``only``), a verdict for every scanned device
    (for ``discover`` and empty-pool logs).

    netDevice and accelerator pools get a verdict per PCI function, auxNetDevice pools one
    per auxiliary device. The reason names the first selector field that rejected the device
    (per selector when there are several), the pool that took it first, or why it is never
    eligible.
    """
    owner = {dev_id: name for name, pool in pools.items() for dev_id in pool.devices}
    out: dict[str, list[Verdict]] = {}
    for config in configs:
        name = config.resource_name(default_prefix)
        if only is not None and name not in only:
            continue
        verdicts: list[Verdict] = []
        for fn in _candidates(inventory, config.kind):
            if owner.get(fn.address) == name:
                verdicts.append(Verdict(fn.address, True))
                continue
            reason, by_selector = _reason(fn, config, owner)
            verdicts.append(Verdict(fn.address, False, reason, by_selector,
                                    _fields_passed(fn, config)))
        out[name] = verdicts
    return out


def _reason(
    fn: PciFunction | AuxFunction, config: ResourceConfig, owner: Mapping[str, str]
) -> tuple[str, bool]:
    """Why ``fn`` is not in the pool, and whether a selector field is why."""
    fields = [rejecting_field(s, fn) for s in config.selectors]
    if fields and all(f is not None for f in fields):
        return "; ".join(f"{config.selector_path(i)}.{f}" for i, f in enumerate(fields)), True
    not_eligible = eligibility(fn, config.kind)
    if not_eligible:
        return not_eligible, False
    other = owner.get(fn.address)
    return (f"taken by {other}" if other else "matches"), False


# The order in which rejecting_field checks a selector's fields (its config keys), and the
# selector attribute that says whether the field is set.
_PCI_FIELDS = (("vendors", "vendors"), ("devices", "devices"), ("drivers", "drivers"),
               ("auxTypes", "aux_types"), ("pciAddresses", "pci_addresses"),
               ("acpiIndexes", "acpi_indexes"), ("pfNames", "pf_names"),
               ("rootDevices", "root_devices"), ("linkTypes", "link_types"),
               ("ddpProfiles", "ddp_profiles"), ("pKeys", "pkeys"), ("isRdma", "is_rdma"),
               ("vdpaType", "vdpa_type"))
_AUX_FIELDS = (("vendors", "vendors"), ("devices", "devices"), ("drivers", "drivers"),
               ("deviceType", None), ("auxTypes", "aux_types"), ("pfNames", "pf_names"),
               ("rootDevices", "root_devices"), ("linkTypes", "link_types"),
               ("isRdma", "is_rdma"))


def _fields_passed(fn: PciFunction | AuxFunction, config: ResourceConfig) -> int:
    """The most selector fields ``fn`` passed, over the selectors, before one rejected it."""
    order = _AUX_FIELDS if isinstance(fn, AuxFunction) else _PCI_FIELDS
    best = 0
    for selector in config.selectors:
        rejected = rejecting_field(selector, fn)
        if rejected is None:
            continue
        passed = 0
        for key, attr in order:
            if key == rejected:
                break
            if attr is not None and getattr(selector, attr, None):
                passed += 1
        best = max(best, passed)
    return best


def nearest_misses(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """Non-members for empty-pool hints, nearest first: those that matched the selectors but
    were not eligible or were taken first, then those a selector field rejected, ranked by how
    many selector fields they passed (an RDMA-less VF that passed ``vendors``, ``devices``
    and ``drivers`` before ``isRdma`` comes before a function rejected by ``vendors``)."""
    out = [v for v in verdicts if not v.member]
    return sorted(out, key=lambda v: (v.by_selector, -v.passed))


def unmatched_identifiers(
    inventory: Inventory, configs: Sequence[ResourceConfig]
) -> list[tuple[str, str]]:
    """Explicit identifiers in selectors that name nothing on this host (F28).

    Returns:
        (JSON path, value) pairs, e.g. ``("resourceList[0].selectors[0].pfNames[1]", "ens9f9")``
        for ``pfNames``, ``rootDevices``, ``pciAddresses`` and ``acpiIndexes`` entries.
    """
    fns = list(inventory.functions.values())
    auxes = list(inventory.aux.values())
    pf_names = {n.casefold() for f in fns for n in f.netdevs}
    pf_names |= {f.pf_netdev.casefold() for f in fns if f.pf_netdev}
    pf_names |= {a.pf_netdev.casefold() for a in auxes if a.pf_netdev}
    addresses = {f.address for f in fns} | {a.pf_address for a in auxes}
    acpi = {f.acpi_index for f in fns if f.acpi_index}
    out: list[tuple[str, str]] = []
    for i, config in enumerate(configs):
        for j, sel in enumerate(config.selectors):
            base = (config.selector_paths[j] if j < len(config.selector_paths)
                    else f"resourceList[{i}].selectors[{j}]")
            for k, r in enumerate(getattr(sel, "pf_names", ())):
                if r.name not in pf_names:
                    out.append((f"{base}.pfNames[{k}]", r.name))
            for k, r in enumerate(getattr(sel, "root_devices", ())):
                if r.name not in addresses:
                    out.append((f"{base}.rootDevices[{k}]", r.name))
            for a in sorted(getattr(sel, "pci_addresses", ())):
                if a not in addresses:
                    out.append((f"{base}.pciAddresses", a))
            for a in sorted(getattr(sel, "acpi_indexes", ())):
                if a not in acpi:
                    out.append((f"{base}.acpiIndexes", a))
    return out
