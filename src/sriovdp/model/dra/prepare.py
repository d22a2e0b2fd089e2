"""What NodePrepareResources does for one claim: a per-claim CDI spec and the CDI ids.

Pure: the claim's allocation results (read from the apiserver by an adapter) and the node's
:class:`~sriovdp.model.dra.slices.DraDevice` index in, a :class:`PreparedClaim` out.

* Only results whose ``driver`` is ours count; each must name this node's pool and a device
  the node has (Unhealthy ones included), else the claim fails with a message naming it.
* CDI kind ``<driver>/claim`` (e.g. ``sriov.network.k8s.io/claim``), one spec file per
  claim, ``sriov-dra-<claim uid>.yaml``, so two claims never share or overwrite a file and
  unprepare deletes exactly one file. Device names start with the claim UID, so they are
  unique among all specs of the kind.
* A device with device nodes (VFIO group, ``/dev/uioN``, vhost-vdpa, RDMA char devices,
  ``/dev/vhost-net`` and ``/dev/net/tun``: the same nodes as a device plugin Allocate, from
  :func:`~sriovdp.model.allocation.device_specs`) gets a CDI device ``<uid>-<device>``.
  A kernel-driver VF has none, and no CDI device: CDI rejects a device without edits, and
  the kubelet accepts a device with no CDI ids.
* Device-info: every netDevice device is listed in ``device_info`` so its NPWG device-info
  file is written on prepare and removed on unprepare, as after a device plugin Allocate.
* Env: each request gets one CDI device ``<uid>-<request>`` whose edits are the device
  plugin's env vars for that request's devices (``PCIDEVICE_<PREFIX>_<NAME>`` = the ids and
  ``..._INFO``, per config pool, from :func:`~sriovdp.model.allocation.allocate`); it is
  listed with the request's first device. A container that uses two requests drawing from
  the same config pool sees the env of one of them (CDI does not merge values).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sriovdp.errors import SriovdpError
from sriovdp.model.allocation import allocate, device_specs
from sriovdp.model.cdi import CDI_VERSION, check_class, check_device_name, check_vendor
from sriovdp.model.devices import DeviceKind, HostFacts
from sriovdp.model.dra.slices import DraDevice

CDI_CLASS = "claim"
SPEC_FILE_PREFIX = "sriov-dra-"
"""Every per-claim CDI spec file starts with this (not ``sriov-dp-``: the device plugin's
CDI cleanup must never take a claim's spec)."""
_CDI_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


class PrepareError(SriovdpError):
    """A claim this node cannot prepare (the message goes to the kubelet per claim)."""


@dataclass(frozen=True, slots=True)
class ClaimRef:
    """A ResourceClaim as the kubelet names it in NodePrepareResources."""

    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name} ({self.uid})"


@dataclass(frozen=True, slots=True)
class AllocatedDevice:
    """One ``status.allocation.devices.results`` entry of a claim."""

    request: str
    driver: str
    pool: str
    device: str


@dataclass(frozen=True, slots=True)
class ClaimAllocation:
    """A claim as read from the apiserver: its identity and allocation results (all drivers)."""

    ref: ClaimRef
    results: tuple[AllocatedDevice, ...]


@dataclass(frozen=True, slots=True)
class PreparedDevice:
    """One ``Device`` of a NodePrepareResources answer, and what it holds on this node:
    ``resource_name`` (the config pool that published it, e.g. ``"intel.com/sriov_net"``)
    and ``device_id`` (its PCI address or aux name); empty when unknown."""

    request_names: tuple[str, ...]
    pool_name: str
    device_name: str
    cdi_device_ids: tuple[str, ...]
    resource_name: str = ""
    device_id: str = ""


@dataclass(frozen=True, slots=True)
class PreparedClaim:
    """What preparing one claim produces.

    Attributes:
        ref: the claim.
        spec_file: the CDI spec's file name, e.g. ``"sriov-dra-<uid>.yaml"``; None when the
            claim has no devices of ours.
        spec: the CDI spec document; None with ``spec_file``.
        devices: the answer's devices, in allocation order.
        device_info: (extended resource name, device id) of each netDevice device, whose
            NPWG device-info file Multus and the SR-IOV CNI read (the same file a device
            plugin Allocate leaves), e.g. ``(("intel.com/sriov_net", "0000:3b:02.1"),)``.
    """

    ref: ClaimRef
    spec_file: str | None
    spec: dict[str, Any] | None
    devices: tuple[PreparedDevice, ...]
    device_info: tuple[tuple[str, str], ...] = ()


def check_not_prepared_elsewhere(plan: PreparedClaim,
                                 prepared: Sequence[PreparedClaim]) -> None:
    """Refuse ``plan`` while another claim prepared on this node still holds one of its
    devices.

    The allocator gives a device to a new claim as soon as the old claim is deallocated;
    a pod force-deleted from the apiserver (or a claim whose pod is still being torn down)
    keeps running with the device until the kubelet calls NodeUnprepareResources for it,
    so until then the device stays the old claim's. The kubelet retries the prepare while
    it syncs the new pod, which starts once the old claim is unprepared.

    Raises:
        PrepareError: naming each such device and the claim that holds it.
    """
    names = {(d.pool_name, d.device_name) for d in plan.devices}
    ids = {d.device_id for d in plan.devices if d.device_id}
    if not names:
        return
    held = [
        f"device {d.device_name!r} is still prepared for claim {other.ref} "
        "(not unprepared yet: its pod may still be running)"
        for other in prepared if other.ref.uid != plan.ref.uid
        for d in other.devices
        # by id too: a device renamed since (an aux name that came to collide) is the same
        if (d.pool_name, d.device_name) in names or (d.device_id and d.device_id in ids)
    ]
    if held:
        raise PrepareError(f"claim {plan.ref}: " + "; ".join(held)
                           + "; the kubelet retries once it is unprepared")


def spec_file_name(claim_uid: str) -> str:
    """``sriov-dra-<uid>.yaml``.

    Raises:
        PrepareError: the UID has characters a file name must not have.
    """
    if not claim_uid or _CDI_UNSAFE.search(claim_uid) or claim_uid.startswith("."):
        raise PrepareError(f"claim UID {claim_uid!r} is not usable in a file name")
    return f"{SPEC_FILE_PREFIX}{claim_uid}.yaml"


def _cdi_name(*parts: str) -> str:
    return check_device_name(_CDI_UNSAFE.sub("-", "-".join(parts).replace("/", ".")))


def prepare_claim(
    claim: ClaimAllocation,
    *,
    driver: str,
    pool_name: str,
    devices: Mapping[str, DraDevice],
    facts: HostFacts,
) -> PreparedClaim:
    """Plan the preparation of ``claim`` on this node (see the module rules).

    Args:
        claim: the claim with its allocation results.
        driver: our driver name.
        pool_name: this node's DRA pool (the node name).
        devices: this node's devices by DRA name, from
            :func:`~sriovdp.model.dra.slices.dra_devices`.
        facts: host facts of the latest scan (``/dev/vhost-net`` present ...).

    Raises:
        PrepareError: a result of ours names another pool or a device this node does not have.
    """
    ours = [r for r in claim.results if r.driver == driver]
    problems = [
        f"device {r.device!r} (request {r.request!r}) is in pool {r.pool!r}, "
        f"not this node's pool {pool_name!r}"
        for r in ours if r.pool != pool_name
    ] + [
        f"device {r.device!r} (request {r.request!r}) is not on this node"
        for r in ours if r.pool == pool_name and r.device not in devices
    ]
    if problems:
        raise PrepareError(f"claim {claim.ref}: " + "; ".join(problems))
    if not ours:
        return PreparedClaim(claim.ref, None, None, ())
    vendor = check_vendor(driver)
    kind = f"{vendor}/{check_class(CDI_CLASS)}"
    uid = claim.ref.uid
    file_name = spec_file_name(uid)
    cdi_devices: list[dict[str, Any]] = []
    by_request: dict[str, list[DraDevice]] = defaultdict(list)
    for r in ours:
        by_request[r.request].append(devices[r.device])
    request_env_id: dict[str, str] = {}
    for request, members in by_request.items():
        name = _cdi_name(uid, request)
        cdi_devices.append({"name": name,
                            "containerEdits": {"env": _request_env(members, facts)}})
        request_env_id[request] = f"{kind}={name}"
    answered: list[PreparedDevice] = []
    seen_request: set[str] = set()
    for r in ours:
        entry = devices[r.device]
        ids: list[str] = []
        if r.request not in seen_request:
            seen_request.add(r.request)
            ids.append(request_env_id[r.request])
        nodes = [
            {"path": s.container_path, "hostPath": s.host_path, "permissions": s.permissions}
            for s in device_specs(entry.device, facts)
        ]
        if nodes:
            name = _cdi_name(uid, r.device)
            if all(d["name"] != name for d in cdi_devices):
                cdi_devices.append({"name": name, "containerEdits": {"deviceNodes": nodes}})
            ids.append(f"{kind}={name}")
        answered.append(PreparedDevice((r.request,), r.pool, r.device, tuple(ids),
                                       entry.pool.resource_name, entry.device.id))
    spec = {"cdiVersion": CDI_VERSION, "kind": kind, "devices": cdi_devices}
    info = tuple(dict.fromkeys(
        (devices[r.device].pool.resource_name, devices[r.device].device.id) for r in ours
        if devices[r.device].pool.config.kind is DeviceKind.NET))
    return PreparedClaim(claim.ref, file_name, spec, tuple(answered), info)


def _request_env(members: Sequence[DraDevice], facts: HostFacts) -> list[str]:
    """``KEY=value`` env of one request: the device plugin's env per config pool."""
    by_pool: dict[str, list[DraDevice]] = defaultdict(list)
    for m in members:
        by_pool[m.pool.resource_name].append(m)
    env: list[str] = []
    for group in by_pool.values():
        pool = group[0].pool
        ids = list(dict.fromkeys(m.device.id for m in group))
        env += [f"{k}={v}" for k, v in allocate(pool, ids, facts).envs.items()]
    return env
