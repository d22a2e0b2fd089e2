"""Names the ``resource.k8s.io/v1`` API validates: driver, pool, device and attribute names.

Rules (from the API's validation, ``k8s.io/api/resource/v1``):

* driver name: a DNS subdomain (lower case) of at most 63 characters
  (``DriverNameMaxLength``), e.g. ``sriov.network.k8s.io``;
* pool name: one or more DNS subdomains separated by ``/``, at most 253 characters;
* device name: a DNS label (``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most 63 characters);
* attribute name (``QualifiedName``): a C identifier of at most 32 characters, optionally
  prefixed by a DNS subdomain of at most 63 characters and ``/``. A name without a domain
  belongs to the driver's domain; attributes defined by others (``resource.kubernetes.io``,
  ``k8s.cni.cncf.io``) must carry theirs.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable

from sriovdp.errors import SriovdpError
from sriovdp.model.ids import is_pci_address

DEFAULT_DRIVER = "sriov.network.k8s.io"
DRIVER_NAME_MAX = 63
DEVICE_NAME_MAX = 63
POOL_NAME_MAX = 253
ATTRIBUTE_ID_MAX = 32
ATTRIBUTE_DOMAIN_MAX = 63

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_LABEL_RE = re.compile(_LABEL)
_C_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9]+")


class DraNameError(SriovdpError, ValueError):
    """A name the ``resource.k8s.io`` API would reject."""


def is_dns_subdomain(text: str, max_length: int = 253) -> bool:
    """``text`` is a lower-case DNS subdomain of at most ``max_length`` characters."""
    return 0 < len(text) <= max_length and _SUBDOMAIN_RE.fullmatch(text) is not None


def is_dns_label(text: str) -> bool:
    """``text`` is a DNS label: lower-case letters, digits and inner ``-``, at most 63."""
    return 0 < len(text) <= DEVICE_NAME_MAX and _LABEL_RE.fullmatch(text) is not None


def check_driver_name(name: str) -> str:
    """``name`` if it can be a DRA driver name, e.g. ``"sriov.network.k8s.io"``.

    Raises:
        DraNameError: not a lower-case DNS subdomain of at most 63 characters.
    """
    if not is_dns_subdomain(name, DRIVER_NAME_MAX):
        raise DraNameError(
            f"invalid DRA driver name {name!r}: must be a lower-case DNS subdomain "
            f"(e.g. {DEFAULT_DRIVER!r}) of at most {DRIVER_NAME_MAX} characters")
    return name


def check_pool_name(name: str) -> str:
    """``name`` if it can be a pool name (DNS subdomains joined by ``/``, ≤ 253 characters).

    Raises:
        DraNameError: naming the rule.
    """
    if len(name) > POOL_NAME_MAX or not all(is_dns_subdomain(p) for p in name.split("/")):
        raise DraNameError(f"invalid DRA pool name {name!r}: must be DNS subdomains separated "
                           f"by '/', at most {POOL_NAME_MAX} characters")
    return name


def check_attribute_name(name: str) -> str:
    """``name`` if it is a valid ``QualifiedName``, e.g. ``"pfName"`` or
    ``"resource.kubernetes.io/pciBusID"``.

    Raises:
        DraNameError: naming the rule.
    """
    domain, _, ident = name.rpartition("/")
    if (not _C_IDENTIFIER_RE.fullmatch(ident) or len(ident) > ATTRIBUTE_ID_MAX
            or (domain and not is_dns_subdomain(domain, ATTRIBUTE_DOMAIN_MAX))
            or name.startswith("/")):
        raise DraNameError(
            f"invalid DRA attribute name {name!r}: must be a C identifier of at most "
            f"{ATTRIBUTE_ID_MAX} characters, optionally after a DNS subdomain of at most "
            f"{ATTRIBUTE_DOMAIN_MAX} characters and '/'")
    return name


def _sanitise(device_id: str) -> str:
    """The DNS label closest to ``device_id``: lower case, other runs made ``-``, ≤ 63."""
    label = _NOT_LABEL_CHARS.sub("-", device_id.lower()).strip("-")
    return label[:DEVICE_NAME_MAX].rstrip("-")


def _with_hash(label: str, device_id: str) -> str:
    digest = hashlib.sha256(device_id.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    head = label[:DEVICE_NAME_MAX - 9].rstrip("-")
    return f"{head}-{digest}" if head else f"dev-{digest}"


def device_name(device_id: str) -> str:
    """The DRA device name of one device id, before uniqueness is ensured.

    A PCI address keeps every digit: ``"0000:3b:02.1"`` → ``"0000-3b-02-1"``; an auxiliary
    device name is lower-cased with each run of other characters made ``-``:
    ``"mlx5_core.sf.4"`` → ``"mlx5-core-sf-4"``. A name that comes out empty or had to be
    cut to 63 characters ends in ``-`` and 8 hex digits of the id's SHA-256 instead.
    """
    if is_pci_address(device_id):
        return device_id.lower().replace(":", "-").replace(".", "-")
    label = _sanitise(device_id)
    full = _NOT_LABEL_CHARS.sub("-", device_id.lower()).strip("-")
    if not label or label != full:
        return _with_hash(label, device_id)
    return label


def device_names(device_ids: Iterable[str]) -> dict[str, str]:
    """Device id → unique DRA device name for every id (see :func:`device_name`).

    Ids whose names collide (``mlx5_core.sf.4`` and ``mlx5-core.sf.4``) all get the hash
    suffix, so a name never depends on the order the ids come in; it can only change when
    a colliding id appears or goes, which sub-function names practically never do.
    """
    by_name: dict[str, list[str]] = defaultdict(list)
    for dev_id in device_ids:
        by_name[device_name(dev_id)].append(dev_id)
    out: dict[str, str] = {}
    for name, ids in by_name.items():
        if len(ids) == 1:
            out[ids[0]] = name
        else:
            for dev_id in ids:
                out[dev_id] = _with_hash(name, dev_id)
    return out
