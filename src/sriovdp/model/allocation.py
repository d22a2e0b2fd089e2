"""What an Allocate answers for a set of device ids: device specs, mounts and env vars.

Pure: everything comes from the pool's scanned devices and :class:`HostFacts`. Paths in the
answer are the host's real paths (``/dev/vfio/87``), whatever ``--host-root`` the scan used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sriovdp.errors import AllocationError
from sriovdp.model.devices import AuxFunction, HostFacts, PciFunction, VdpaInfo
from sriovdp.model.ids import posix_env_var_name
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
        envs: ``PCIDEVICE_<P>_<N>`` (comma-separated ids) and ``PCIDEVICE_<P>_<N>_INFO`` (JSON);
            when the name holds ``-`` or ``/``, the same pair again under its POSIX name.
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


@dataclass(frozen=True, slots=True)
class ProviderOutput:
    """What one info provider contributes for one device.

    Attributes:
        name: the provider's key in ``_INFO``, e.g. ``"vfio"``.
        info: its ``_INFO`` map (possibly empty: the key is still present, as in Go).
        specs: its device nodes, in order.
    """

    name: str
    info: dict[str, str]
    specs: tuple[DeviceSpec, ...] = ()


def _pci(fn: PciFunction | AuxFunction) -> PciFunction:
    """The PCI function whose driver decides the vfio/uio provider (an SF's parent)."""
    return fn.parent if isinstance(fn, AuxFunction) else fn


def _extra_key(dev: PoolDevice) -> str:
    # Go quirk kept on purpose: an aux device's additionalInfo key is its parent's PCI
    # address, not the SF name, so {"0000:3b:00.0": {...}} reaches every SF of that PF.
    fn = dev.function
    return fn.parent.address if isinstance(fn, AuxFunction) else dev.id


def _vfio_paths(fn: PciFunction) -> tuple[str, str] | None:
    """(container path, host path) of the function's VFIO group node, or None without a group."""
    group = fn.iommu_group
    if group is None:
        return None
    host = f"/dev/vfio/noiommu-{group}" if fn.vfio_noiommu else f"/dev/vfio/{group}"
    return f"/dev/vfio/{group}", host


def _driver_provider(fn: PciFunction) -> ProviderOutput | None:
    if fn.driver == VFIO_DRIVER:
        info = {"mount": "/dev/vfio/vfio"}
        specs = [DeviceSpec("/dev/vfio/vfio", "/dev/vfio/vfio")]
        group = _vfio_paths(fn)
        if group:
            info["dev-mount"] = group[0]
            specs.append(DeviceSpec(group[0], group[1]))
        return ProviderOutput("vfio", info, tuple(specs))
    if fn.driver in UIO_DRIVERS:
        if not fn.uio:
            return ProviderOutput("uio", {})
        node = f"/dev/{fn.uio}"
        return ProviderOutput("uio", {"mount": node}, (DeviceSpec(node, node),))
    return None


_RDMA_KEYS = ("uverbs", "umad", "issm", "rdma_cm")
"""``_INFO`` keys of RDMA char devices, in the order a node name is tested against them."""


def _rdma_provider(fn: PciFunction | AuxFunction) -> ProviderOutput:
    rdma = fn.rdma
    if rdma is None:  # no longer RDMA-capable: the key stays, empty (as in Go)
        return ProviderOutput("rdma", {})
    info: dict[str, str] = {}
    for path in rdma.char_devices:
        node = path.rsplit("/", 1)[-1]
        key = next((k for k in _RDMA_KEYS if k in node), None)
        if key is not None:  # ucm* nodes get a spec but no key; the last node per key wins
            info[key] = path
    if rdma.devices:
        info["rdma_dev"] = rdma.devices[0]
    specs = tuple(DeviceSpec(path, path) for path in rdma.char_devices)
    return ProviderOutput("rdma", info, specs)


def _vdpa_provider(dev: PoolDevice, vdpa: VdpaInfo) -> ProviderOutput:
    # Only a vhost-vdpa device of the configured type has a node; virtio-vdpa is used as a
    # netdevice, and a type mismatch (N5) gives the key with nothing in it.
    if vdpa.type == dev.vdpa_type == "vhost" and vdpa.vhost_path:
        path = vdpa.vhost_path
        return ProviderOutput("vdpa", {"mount": path}, (DeviceSpec(path, path),))
    return ProviderOutput("vdpa", {})


def info_providers(
    dev: PoolDevice,
    facts: HostFacts,
    additional_info: Mapping[str, Mapping[str, str]] | None = None,
) -> list[ProviderOutput]:
    """The device's info providers in the Go plugin's order.

    ``generic`` (deviceID); ``vfio`` (driver ``vfio-pci``) or ``uio`` (``uio``, ``igb_uio``,
    ``uio_pci_generic``) — of the parent's driver for an aux device, so normally neither;
    ``extra`` when ``additionalInfo`` is set (``"*"`` overlaid by the device's key: the PCI
    address, or for an aux device its parent's PCI address, as in Go); then ``vdpa`` (the
    device was taken with ``vdpaType`` and has a vDPA device) **or** ``rdma`` (taken with
    ``isRdma``); then ``vhost`` (``needVhostNet`` and ``/dev/vhost-net``, ``/dev/net/tun``
    exist). Every value comes from the current scan, so ``dev-mount`` and the uio and vdpa
    ``mount`` keys are right on the first Allocate too (upstream omits the latter two then).
    """
    fn = dev.function
    out = [ProviderOutput("generic", {"deviceID": dev.id})]
    driver = _driver_provider(_pci(fn))
    if driver is not None:
        out.append(driver)
    if additional_info is not None:
        merged = dict(additional_info.get("*", {}))
        merged.update(additional_info.get(_extra_key(dev), {}))
        out.append(ProviderOutput("extra", merged))
    vdpa = fn.vdpa if isinstance(fn, PciFunction) else None
    if dev.vdpa_type and vdpa is not None:
        out.append(_vdpa_provider(dev, vdpa))
    elif dev.is_rdma:
        out.append(_rdma_provider(fn))
    if dev.need_vhost_net and facts.vhost_net:
        out.append(ProviderOutput(
            "vhost",
            {"net-mount": "/dev/vhost-net", "tun-mount": "/dev/net/tun"},
            (DeviceSpec("/dev/vhost-net", "/dev/vhost-net"),
             DeviceSpec("/dev/net/tun", "/dev/net/tun")),
        ))
    return out


def device_specs(dev: PoolDevice, facts: HostFacts) -> list[DeviceSpec]:
    """Device nodes of one device in provider order, de-duplicated by host path.

    Example: an RDMA VF gives ``/dev/infiniband/issm0``, ``umad0``, ``uverbs0``, ``rdma_cm``.
    """
    specs: dict[str, DeviceSpec] = {}
    for provider in info_providers(dev, facts):
        for spec in provider.specs:
            specs.setdefault(spec.host_path, spec)
    return list(specs.values())


def device_info(dev: PoolDevice, pool: ResourcePool, facts: HostFacts) -> dict[str, dict[str, str]]:
    """The device's ``_INFO`` entry: provider name → key/value map (see :func:`info_providers`).

    Example: ``{"generic": {"deviceID": "0000:5e:00.2"}, "rdma": {"issm": ..., "rdma_dev":
    "mlx5_2", ...}, "extra": {"token": "t1"}}``.
    """
    return {p.name: p.info for p in info_providers(dev, facts, pool.config.additional_info)}


def go_json(value: object, *, sort_keys: bool = True) -> str:
    """JSON as Go's ``json.Marshal`` writes it: compact, HTML-safe escapes, and map keys sorted
    (``sort_keys=False`` keeps the dict order, as Go does for struct fields)."""
    text = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


@dataclass(frozen=True, slots=True)
class DeviceAnswer:
    """What one device contributes to every Allocate answer that names it.

    Attributes:
        info_member: the device's member of the ``_INFO`` JSON object, already encoded,
            e.g. ``'"0000:3b:02.1":{"generic":{"deviceID":"0000:3b:02.1"}}'``.
        specs: its device nodes in provider order, de-duplicated by host path.
    """

    info_member: str
    specs: tuple[DeviceSpec, ...]


def device_answer(
    dev: PoolDevice,
    facts: HostFacts,
    additional_info: Mapping[str, Mapping[str, str]] | None = None,
) -> DeviceAnswer:
    """:class:`DeviceAnswer` of ``dev`` (the device's :func:`info_providers`, encoded once)."""
    providers = info_providers(dev, facts, additional_info)
    specs: dict[str, DeviceSpec] = {}
    for provider in providers:
        for spec in provider.specs:
            specs.setdefault(spec.host_path, spec)
    info = go_json({dev.id: {p.name: p.info for p in providers}})
    return DeviceAnswer(info[1:-1], tuple(specs.values()))


_AnswerKey = tuple[object, ...]


class AnswerCache:
    """Per-device :class:`DeviceAnswer` s of one pool, kept while what they depend on stays.

    An answer depends on the scanned function, the selector facets that took the device
    (``isRdma``, ``vdpaType``, ``needVhostNet``), the host facts and ``additionalInfo``, not
    on health: a health flip or an unchanged rescan reuses it (the check compares the same
    objects, so it costs a few tuple comparisons). Bounded by the pool's size.
    """

    def __init__(self) -> None:
        self._answers: dict[str, tuple[_AnswerKey, DeviceAnswer]] = {}

    def answer(self, pool: ResourcePool, dev: PoolDevice, facts: HostFacts) -> DeviceAnswer:
        extra = pool.config.additional_info
        key: _AnswerKey = (dev.function, dev.need_vhost_net, dev.is_rdma, dev.vdpa_type,
                           facts, extra)
        hit = self._answers.get(dev.id)
        if hit is not None and hit[0] == key:
            return hit[1]
        answer = device_answer(dev, facts, extra)
        if hit is None and len(self._answers) >= max(4 * len(pool.devices), 1024):
            self._answers.clear()  # ids of devices long gone: start afresh
        self._answers[dev.id] = (key, answer)
        return answer


def distinct(ids: Sequence[str]) -> list[str]:
    """``ids`` without repeats, in order of first appearance."""
    return list(dict.fromkeys(ids))


def allocate(
    pool: ResourcePool, ids: Sequence[str], facts: HostFacts, cache: AnswerCache | None = None
) -> ContainerAllocation:
    """The answer to one ``ContainerAllocateRequest``.

    A repeated id counts once (first appearance order): the work and the answer depend on
    the distinct ids only. ``cache`` keeps each device's encoded part between requests.

    Raises:
        AllocationError: naming every id the pool does not hold (the Go plugin ignores them).
    """
    wanted = distinct(ids)
    devices = pool.devices
    unknown = [i for i in wanted if i not in devices]
    if unknown:
        raise AllocationError(pool.resource_name, unknown)
    cache = cache or AnswerCache()
    answers = {i: cache.answer(pool, devices[i], facts) for i in wanted}
    specs: dict[str, DeviceSpec] = {}
    for answer in answers.values():
        for spec in answer.specs:
            specs.setdefault(spec.host_path, spec)
    # go_json sorts map keys: the members in id order are exactly its encoding of the map
    info = "{" + ",".join(answers[i].info_member for i in sorted(answers)) + "}"
    envs = {pool.env_name: ",".join(wanted), pool.env_name + "_INFO": info}
    posix = posix_env_var_name(pool.prefix, pool.name)
    if posix != pool.env_name:  # "e810-c": also the name a shell can read
        envs[posix], envs[posix + "_INFO"] = envs[pool.env_name], envs[pool.env_name + "_INFO"]
    return ContainerAllocation(envs=envs, devices=tuple(specs.values()))
