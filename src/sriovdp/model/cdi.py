"""CDI (Container Device Interface): per-pool spec documents and CDI-mode Allocate answers.

Pure: a spec is a plain ``dict`` ready for YAML/JSON (:mod:`sriovdp.host.cdi` writes it),
built from the same device specs a non-CDI Allocate returns.

* Kind: ``<prefix>/<class>`` with class ``net-pci`` (netDevice), ``net-accel`` (accelerator),
  ``net-sf`` (auxNetDevice); device name = device id (``0000:3b:02.1``, ``mlx5_core.sf.4``).
* ``cdiVersion`` is :data:`CDI_VERSION` ``"0.5.0"``: the lowest version that allows what the
  specs use — ``deviceNodes[].hostPath`` (noiommu VFIO groups map ``/dev/vfio/noiommu-N`` to
  ``/dev/vfio/N``) and device names that start with a digit (PCI addresses) both need 0.5.0 —
  and so the one the most container runtimes accept (a runtime whose CDI library predates a
  version rejects specs of that version). It is also what the Go plugin writes. Nothing here
  needs 0.6.0 (spec/device annotations, ``.`` in a class).
* Unlike the Go plugin, a device without device nodes (a kernel-driver VF, an SF) still gets
  a valid entry: the CDI library rejects a device with no edits at all (``invalid device,
  empty device edits``), which in Go fails the whole spec and ListAndWatch. Such a device gets
  one harmless edit, the env var :func:`cdi_env_name` = the extended resource name, e.g.
  ``SRIOVDP_CDI_INTEL_COM_SRIOV_NET=intel.com/sriov_net``. It is the same key and value for
  every device of the pool (so two devices never conflict), and it deliberately does not
  start with ``PCIDEVICE_``, which tools such as app-netutil scan for PCI address lists.
* CDI-mode Allocate (:func:`cdi_allocation`): env vars as usual, no device specs or mounts,
  ``cdi_devices`` = the qualified names and the annotation ``cdi.k8s.io/<prefix>_<name>``
  (:func:`resource_annotation_key`, one key per pool) = the comma-joined names (kubelet <
  1.28 and runtimes without CRI ``CDIDevices`` use the annotation; containerd skips a
  device named by both).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from sriovdp.errors import SriovdpError
from sriovdp.model.allocation import (
    AnswerCache,
    ContainerAllocation,
    allocate,
    device_specs,
    distinct,
)
from sriovdp.model.devices import HostFacts
from sriovdp.model.pools import ResourcePool

CDI_VERSION = "0.5.0"
ANNOTATION_PREFIX = "cdi.k8s.io/"
SPEC_FILE_PREFIX = "sriov-dp-"
"""Every spec file this plugin writes starts with this (cleanup removes only these)."""

_VENDOR_RE = re.compile(r"[A-Za-z](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")
_CLASS_RE = re.compile(r"[A-Za-z](?:[A-Za-z0-9_-]*[A-Za-z0-9])?")  # no "." before 0.6.0
_DEVICE_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?")
_ANNOTATION_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")
_ANNOTATION_NAME_MAX = 63


class CdiError(SriovdpError, ValueError):
    """A name that CDI (or a container runtime reading the annotation) would reject."""


def _check(pattern: re.Pattern[str], text: str, what: str, rule: str) -> str:
    if not pattern.fullmatch(text):
        raise CdiError(f"invalid CDI {what} {text!r}: {rule}")
    return text


def check_vendor(vendor: str) -> str:
    """``vendor`` (the resource prefix) if CDI accepts it, e.g. ``"intel.com"``.

    Raises:
        CdiError: it does not start with a letter, end with a letter or digit and contain only
            ``[A-Za-z0-9_.-]``.
    """
    return _check(_VENDOR_RE, vendor, "vendor",
                  "must start with a letter, end with a letter or digit, "
                  "and contain only letters, digits, '_', '.' and '-'")


def check_class(cls: str) -> str:
    """``cls`` if CDI 0.5.0 accepts it as a class, e.g. ``"net-pci"``."""
    return _check(_CLASS_RE, cls, "class",
                  "must start with a letter, end with a letter or digit, "
                  "and contain only letters, digits, '_' and '-'")


def check_device_name(name: str) -> str:
    """``name`` if CDI accepts it as a device name (``"0000:3b:02.1"``, ``"mlx5_core.sf.4"``)."""
    return _check(_DEVICE_RE, name, "device name",
                  "must start and end with a letter or digit, "
                  "and contain only letters, digits, '_', '.', ':' and '-'")


def qualified_name(vendor: str, cls: str, device: str) -> str:
    """``"intel.com/net-pci=0000:3b:02.1"``, each part checked.

    Raises:
        CdiError: naming the part CDI would reject.
    """
    return f"{check_vendor(vendor)}/{check_class(cls)}={check_device_name(device)}"


def resource_annotation_key(prefix: str, name: str) -> str:
    """The CDI annotation key of one pool's Allocate answers: ``cdi.k8s.io/<prefix>_<name>``,
    e.g. ``"cdi.k8s.io/intel.com_sriov_net"``.

    The kubelet merges a container's annotations by key, so two pools answering with one key
    (the Go plugin's ``<prefix>_<class>``) lose one pool's devices for runtimes that read the
    annotation. ``prefix`` is a DNS subdomain (no ``_``), so ``<prefix>_<name>`` is unique per
    extended resource. When it breaks the annotation-name rule (over 63 characters, or a
    name ending in ``-``/``_``) the key is ``cdi.k8s.io/sriovdp_<16 hex digits of the
    SHA-256 of "<prefix>/<name>">`` instead: always valid, never an Allocate failure.
    """
    name_part = f"{prefix}_{name}"
    if len(name_part) <= _ANNOTATION_NAME_MAX and _ANNOTATION_NAME_RE.fullmatch(name_part):
        return ANNOTATION_PREFIX + name_part
    digest = hashlib.sha256(f"{prefix}/{name}".encode()).hexdigest()[:16]
    return f"{ANNOTATION_PREFIX}sriovdp_{digest}"


def cdi_env_name(pool: ResourcePool) -> str:
    """The env var given to CDI devices without device nodes, e.g.
    ``SRIOVDP_CDI_INTEL_COM_SRIOV_NET`` (its value is the extended resource name)."""
    return f"SRIOVDP_CDI_{pool.prefix}_{pool.name}".replace(".", "_").upper()


def cdi_spec(pool: ResourcePool, facts: HostFacts) -> dict[str, Any] | None:
    """The pool's CDI spec document, or None when the pool has no devices.

    A CDI spec must list at least one device, so an empty pool has no spec: remove its file.
    Example (one vfio VF, one kernel VF)::

        {"cdiVersion": "0.5.0", "kind": "intel.com/net-pci", "devices": [
          {"name": "0000:3b:02.0", "containerEdits": {"deviceNodes": [
             {"path": "/dev/vfio/vfio", "hostPath": "/dev/vfio/vfio", "permissions": "rw"},
             {"path": "/dev/vfio/87", "hostPath": "/dev/vfio/87", "permissions": "rw"}]}},
          {"name": "0000:3b:02.1", "containerEdits": {
             "env": ["SRIOVDP_CDI_INTEL_COM_NET=intel.com/net"]}}]}

    Raises:
        CdiError: the prefix, class or a device id is not a valid CDI name.
    """
    if not pool.devices:
        return None
    check_vendor(pool.prefix)
    check_class(pool.cdi_class)
    fallback_env = f"{cdi_env_name(pool)}={pool.resource_name}"
    devices: list[dict[str, Any]] = []
    for dev in pool.devices.values():
        nodes = [
            {"path": s.container_path, "hostPath": s.host_path, "permissions": s.permissions}
            for s in device_specs(dev, facts)
        ]
        edits: dict[str, Any] = {"deviceNodes": nodes} if nodes else {"env": [fallback_env]}
        devices.append({"name": check_device_name(dev.id), "containerEdits": edits})
    return {"cdiVersion": CDI_VERSION, "kind": pool.cdi_kind, "devices": devices}


def cdi_spec_file_name(prefix: str, cls: str, resource_name: str) -> str:
    """``sriov-dp-<prefix>-<class>-<resourceName>.yaml``, e.g.
    ``"sriov-dp-intel.com-net-pci-intel_sriov_dpdk.yaml"`` (the Go plugin's name)."""
    return f"{SPEC_FILE_PREFIX}{prefix}-{cls}-{resource_name}.yaml"


def pool_spec_file_name(pool: ResourcePool) -> str:
    """:func:`cdi_spec_file_name` of ``pool``."""
    return cdi_spec_file_name(pool.prefix, pool.cdi_class, pool.name)


def cdi_allocation(
    pool: ResourcePool, ids: Sequence[str], facts: HostFacts, cache: AnswerCache | None = None
) -> ContainerAllocation:
    """The CDI-mode answer to one ``ContainerAllocateRequest``.

    Envs as :func:`~sriovdp.model.allocation.allocate` (also ``_INFO``); no device specs or
    mounts; ``cdi_devices`` = ``<prefix>/<class>=<id>`` per distinct id in request order; one
    annotation :func:`resource_annotation_key` = those names comma-joined (none for an empty
    request: an empty value is not a valid CDI device list).

    Example: ids ``["0000:00:00.1"]``, prefix ``example.com``, pool ``net`` of class
    ``net-pci`` → ``{"cdi.k8s.io/example.com_net": "example.com/net-pci=0000:00:00.1"}``.

    Raises:
        AllocationError: an id is not in the pool.
        CdiError: a qualified name is not valid CDI.
    """
    plain = allocate(pool, ids, facts, cache)
    names = tuple(qualified_name(pool.prefix, pool.cdi_class, i) for i in distinct(ids))
    key = resource_annotation_key(pool.prefix, pool.name)
    return ContainerAllocation(
        envs=plain.envs,
        annotations={key: ",".join(names)} if names else {},
        cdi_devices=names,
    )
