"""Selectors: which PCI functions (or auxiliary devices) a resource pool takes.

A selector is a frozen value parsed from one object of a resource's ``selectors`` list. All
its non-empty fields must match (AND); within a field any value may match (OR). The filter
order follows the Go plugin:

* netDevice: vendors → devices → drivers → pciAddresses → acpiIndexes → pfNames →
  rootDevices → linkTypes → ddpProfiles → pKeys → isRdma → vdpaType;
* accelerator: vendors → devices → drivers → pciAddresses → acpiIndexes;
* auxNetDevice: vendors → devices → drivers (all three of the parent PCI function) →
  auxTypes → pfNames → rootDevices (ranges over the SF number) → linkTypes → isRdma.

:func:`rejecting_field` names the first field that rejects a device, which is what
``sriovdp discover`` and the empty-pool log report. String comparisons are exact and
case-sensitive (``pKeys`` ``"0xABCD"`` does not match the kernel's ``"0xabcd"``), except the
PF names/addresses of ``pfNames``/``rootDevices``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sriovdp.model.devices import AuxFunction, PciFunction

_INT_RE = re.compile(r"\+?[0-9]+")
_MAX_INDEX = 2**63 - 1
"""Go's ``strconv.Atoi`` limit on 64-bit hosts: a larger number is a parse error."""


@dataclass(frozen=True, slots=True)
class FunctionRange:
    """One ``pfNames``/``rootDevices`` item: ``"ens1f0#0,2-7,9"``.

    Attributes:
        name: PF netdev name or PF PCI address before ``#``, compared case-insensitively.
        spans: the selected indexes after ``#`` as sorted, merged inclusive ``(first, last)``
            pairs, e.g. ``((0, 0), (2, 7), (9, 9))``; None when the item has no ``#`` (any
            function). Spans, not a set, because SF numbers make ``#0-4294967295`` legitimate.
    """

    name: str
    spans: tuple[tuple[int, int], ...] | None = None

    def selects(self, index: int | None) -> bool:
        """True when a function with VF index (or SF number) ``index`` is selected.

        ``index`` None (not a VF or SF) is selected only by an item without ``#``.
        """
        if self.spans is None:
            return True
        return index is not None and any(first <= index <= last for first, last in self.spans)


def _quote(text: str) -> str:
    """``"3\\n"``: double-quoted with control characters escaped, as in JSON."""
    return json.dumps(text, ensure_ascii=False)


class RangeError(ValueError):
    """A bad ``pfNames``/``rootDevices`` item. The message is built only when read: a 1 MiB
    config of bad items reports only the first few, and quoting each one cost more than
    parsing it."""

    def __init__(self, form: str, text: str) -> None:
        super().__init__(form, text)
        self.form, self.text = form, text

    def __str__(self) -> str:
        return self.form.format(_quote(self.text))


def _parse_index(text: str, what: str, entry: str) -> int:
    if not _INT_RE.fullmatch(text):
        raise RangeError("bad VF " + what + " {}", entry)
    value = int(text)
    if value > _MAX_INDEX:
        raise RangeError("VF index out of range in {}", entry)
    return value


def _merge(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)


def parse_function_range(item: str) -> FunctionRange:
    """Parse ``"ens1f0"``, ``"ens1f0#3"`` or ``"0000:3b:00.1#0,2-7,9"``.

    Indexes follow Go ``Atoi`` (optional ``+``, leading zeros, no spaces, at most 2**63-1).

    Raises:
        RangeError: (a ValueError) with a message naming the bad part, e.g. ``bad VF range
            "5-2"``; the Go plugin silently selects nothing for these, which leaves pools
            empty.
    """
    if "#" not in item:
        if not item:
            raise RangeError("empty name", "")
        return FunctionRange(item.casefold())
    parts = item.split("#")
    if len(parts) != 2:
        raise RangeError('more than one "#" in {}', item)
    name, spec = parts
    if not name:
        raise RangeError('no name before "#" in {}', item)
    spans: list[tuple[int, int]] = []
    for entry in spec.split(","):
        if "-" in entry:
            bounds = entry.split("-")
            if len(bounds) != 2:
                raise RangeError("bad VF range {}", entry)
            start = _parse_index(bounds[0], "range", entry)
            end = _parse_index(bounds[1], "range", entry)
            if start > end:
                raise RangeError("bad VF range {}", entry)
            spans.append((start, end))
        else:
            index = _parse_index(entry, "index", entry)
            spans.append((index, index))
    return FunctionRange(name.casefold(), _merge(spans))


def _range_match(ranges: tuple[FunctionRange, ...], key: str | None, index: int | None) -> bool:
    if not key:
        return False
    folded = key.casefold()
    # Unlike the Go plugin (first item with the name wins), every item naming this PF
    # counts, so ["eth0#0-1", "eth0#5"] selects VFs 0, 1 and 5.
    return any(r.name == folded and r.selects(index) for r in ranges)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetSelector:
    """A ``netDevice`` selector object. Empty fields do not constrain."""

    vendors: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    drivers: frozenset[str] = frozenset()
    pci_addresses: frozenset[str] = frozenset()
    acpi_indexes: frozenset[str] = frozenset()
    pf_names: tuple[FunctionRange, ...] = ()
    root_devices: tuple[FunctionRange, ...] = ()
    link_types: frozenset[str] = frozenset()
    ddp_profiles: frozenset[str] = frozenset()
    pkeys: frozenset[str] = frozenset()
    is_rdma: bool = False
    need_vhost_net: bool = False
    vdpa_type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccelSelector:
    """An ``accelerator`` selector object; ``acpiIndexes`` is honoured (Go ignores it)."""

    vendors: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    drivers: frozenset[str] = frozenset()
    pci_addresses: frozenset[str] = frozenset()
    acpi_indexes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuxNetSelector:
    """An ``auxNetDevice`` selector object (vendors/devices/drivers are the parent's)."""

    vendors: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    drivers: frozenset[str] = frozenset()
    aux_types: frozenset[str] = frozenset()
    pf_names: tuple[FunctionRange, ...] = ()
    root_devices: tuple[FunctionRange, ...] = ()
    link_types: frozenset[str] = frozenset()
    is_rdma: bool = False
    need_vhost_net: bool = False


Selector = NetSelector | AccelSelector | AuxNetSelector


def rdma_capable(fn: PciFunction | AuxFunction) -> bool:
    """True when ``fn`` has at least one RDMA device (what ``isRdma`` selects)."""
    return fn.rdma is not None and bool(fn.rdma.devices)


def _vdpa_matches(fn: PciFunction, vdpa_type: str) -> bool:
    # An unbound or foreign-driver vDPA device has type "invalid", which no config can ask for.
    return fn.vdpa is not None and fn.vdpa.type != "invalid" and fn.vdpa.type == vdpa_type


def rejecting_field(selector: Selector, fn: PciFunction | AuxFunction) -> str | None:
    """The config key of the first selector field that rejects ``fn``; None if ``fn`` matches.

    Example: ``"devices"`` for an ``8086:1520`` VF against ``{"devices": ["154c"]}``.
    A PCI function that passes an ``auxNetDevice`` selector's parent fields is rejected by
    ``"auxTypes"`` (it is no auxiliary device); an auxiliary device that passes a netDevice
    or accelerator selector's parent fields is rejected by ``"deviceType"``.
    """
    if isinstance(fn, AuxFunction):
        return _rejecting_field_aux(selector, fn)
    rejected = _rejecting_id_field(selector, fn)
    if rejected is not None:
        return rejected
    if isinstance(selector, AuxNetSelector):
        return "auxTypes"  # PCI functions are never auxiliary devices
    if selector.pci_addresses and fn.address not in selector.pci_addresses:
        return "pciAddresses"
    if selector.acpi_indexes and fn.acpi_index not in selector.acpi_indexes:
        return "acpiIndexes"
    if isinstance(selector, AccelSelector):
        return None
    return _rejecting_net_field(selector, fn)


def _rejecting_id_field(selector: Selector, fn: PciFunction) -> str | None:
    """``vendors``, ``devices`` or ``drivers`` when one rejects the PCI function ``fn``."""
    if selector.vendors and fn.vendor not in selector.vendors:
        return "vendors"
    if selector.devices and fn.device not in selector.devices:
        return "devices"
    if selector.drivers and (fn.driver or "") not in selector.drivers:
        return "drivers"
    return None


def _rejecting_net_field(selector: NetSelector, fn: PciFunction) -> str | None:
    """The first netDevice-only field that rejects the PCI function ``fn``."""
    if selector.pf_names and not _range_match(selector.pf_names, fn.pf_netdev, fn.vf_index):
        return "pfNames"
    if selector.root_devices and not _range_match(selector.root_devices, fn.physfn, fn.vf_index):
        return "rootDevices"
    if selector.link_types and fn.link_type not in selector.link_types:
        return "linkTypes"
    if selector.ddp_profiles and not (fn.ddp_profile and fn.ddp_profile in selector.ddp_profiles):
        return "ddpProfiles"
    if selector.pkeys and not (fn.pkey and fn.pkey in selector.pkeys):
        return "pKeys"
    if selector.is_rdma and not rdma_capable(fn):
        return "isRdma"
    if selector.vdpa_type and not _vdpa_matches(fn, selector.vdpa_type):
        return "vdpaType"
    return None


def _rejecting_field_aux(selector: Selector, fn: AuxFunction) -> str | None:
    rejected = _rejecting_id_field(selector, fn.parent)  # the parent PCI function's
    if rejected is not None:
        return rejected
    if not isinstance(selector, AuxNetSelector):
        return "deviceType"  # auxiliary devices only join auxNetDevice pools
    if selector.aux_types and fn.aux_type not in selector.aux_types:
        return "auxTypes"
    if selector.pf_names and not _range_match(selector.pf_names, fn.pf_netdev, fn.sf_num):
        return "pfNames"
    if selector.root_devices and not _range_match(
        selector.root_devices, fn.pf_address, fn.sf_num
    ):
        return "rootDevices"
    if selector.link_types and fn.link_type not in selector.link_types:
        return "linkTypes"
    if selector.is_rdma and not rdma_capable(fn):
        return "isRdma"
    return None


def matches(selector: Selector, fn: PciFunction | AuxFunction) -> bool:
    """True when ``fn`` passes every field of ``selector``."""
    return rejecting_field(selector, fn) is None
