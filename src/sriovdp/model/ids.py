"""Identifiers: PCI addresses (BDF), resource names, device ids."""

from __future__ import annotations

import re
from typing import NewType

PciAddress = NewType("PciAddress", str)
"""Canonical PCI address ``dddd:bb:ss.f``, lower case, e.g. ``"0000:3b:02.1"``."""

DeviceId = NewType("DeviceId", str)
"""What the kubelet sees as ``Device.ID``: the PCI address (or auxiliary device name)."""

_PCI_RE = re.compile(r"^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")
_RESOURCE_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")


def parse_pci_address(text: str) -> PciAddress:
    """Parse ``"0000:3b:02.1"`` or the short form ``"3b:02.1"`` (domain 0000).

    Returns:
        the canonical lower-case form ``"0000:3b:02.1"``.
    Raises:
        ValueError: naming the text when it is not a PCI address.
    """
    m = _PCI_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a PCI address: {text!r}")
    dom, bus, slot, fn = m.groups()
    return PciAddress(f"{int(dom or '0', 16):04x}:{int(bus, 16):02x}:{int(slot, 16):02x}.{fn}")


def is_pci_address(text: str) -> bool:
    """True when ``text`` is a full canonical PCI address as sysfs names them."""
    m = _PCI_RE.match(text)
    return bool(m and m.group(1) is not None and len(text) == 12)


def valid_resource_name(name: str) -> bool:
    """The Go plugin's rule for ``resourceName``: ``^[a-zA-Z0-9_-]+$``."""
    return bool(_RESOURCE_NAME_RE.match(name))


def extended_resource_name(prefix: str, name: str) -> str:
    """``intel.com`` + ``sriov_net`` → ``intel.com/sriov_net``."""
    return f"{prefix}/{name}"


def socket_name(prefix: str, name: str) -> str:
    """Socket file name of a pool: ``<prefix>_<resourceName>.sock``."""
    return f"{prefix}_{name}.sock"


def env_var_name(prefix: str, name: str) -> str:
    """``PCIDEVICE_<PREFIX>_<NAME>``: dots become ``_``, upper-cased; ``-`` and ``/`` kept
    (as Go)."""
    return f"PCIDEVICE_{prefix}_{name}".replace(".", "_").upper()


def posix_env_var_name(prefix: str, name: str) -> str:
    """:func:`env_var_name` as a shell can read it: ``.``, ``-`` and ``/`` become ``_``, e.g.
    ``intel.com`` + ``e810-c`` → ``PCIDEVICE_INTEL_COM_E810_C`` (the Go name keeps the
    ``-``: ``PCIDEVICE_INTEL_COM_E810-C``)."""
    return env_var_name(prefix, name).replace("-", "_").replace("/", "_")
