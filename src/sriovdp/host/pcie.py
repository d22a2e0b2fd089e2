"""PCIe root complexes of PCI functions, from the ``sys/bus/pci/devices/<bdf>`` links.

The link target is the function's place in the device tree, e.g.
``../../../devices/pci0000:3a/0000:3a:00.0/0000:3b:02.1``: its ``pci<domain>:<bus>``
component is the root complex, which DRA publishes as ``resource.kubernetes.io/pcieRoot``
(:func:`sriovdp.model.dra.attributes.pcie_root_of` parses it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from sriovdp.host.paths import HostPaths
from sriovdp.model.dra.attributes import pcie_root_of


def pcie_roots(paths: HostPaths, addresses: Iterable[str]) -> dict[str, str]:
    """PCI address → PCIe root (e.g. ``{"0000:3b:02.1": "pci0000:3a"}``) for each address
    whose link can be read and names a root; others are left out (no attribute, no error)."""
    out: dict[str, str] = {}
    for address in addresses:
        try:
            target = os.readlink(paths.pci_devices / address)
        except OSError:
            continue
        root = pcie_root_of(target)
        if root is not None:
            out[address] = root
    return out
