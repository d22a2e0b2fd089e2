"""Checks and normalises the values the schema leaves as plain JSON: selector lists (hex
ids, pkeys, PCI addresses, ``#`` ranges), ``deviceType`` and ``additionalInfo`` keys."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from sriovdp.model.config.report import Report, Text, join, show
from sriovdp.model.config.schema import did_you_mean
from sriovdp.model.devices import DeviceKind
from sriovdp.model.ids import parse_pci_address
from sriovdp.model.selectors import FunctionRange, parse_function_range

VDPA_TYPES = ("vhost", "virtio")
AUX_TYPES = ("sf",)
_HEX_ID_RE = re.compile(r"(?:0[xX])?([0-9a-fA-F]{4})")
_PKEY_RE = re.compile(r"(?:0[xX])?([0-9A-Fa-f]{1,4})")
_FULL_ADDRESS = "the full domain:bus:device.function form sysfs uses"
_ROOT_DEVICE_HINT = " (rootDevices takes PF PCI addresses; use pfNames for interface names)"


def normalised(value: str, canonical: str, form: str) -> str:
    """The warning for a value read in another form: ``"3b:02.0" read as "0000:3b:02.0"``."""
    return f"{show(value)} read as {show(canonical)}: {form} (the Go plugin would match nothing)"


def pci_address(value: str, where: Text, report: Report, hint: str = "") -> str | None:
    """``value`` as a full PCI address, or None after reporting why it is not one."""
    try:
        address = parse_pci_address(value)
    except ValueError:
        report.error(where, partial(_not_address, value, hint))
        return None
    if address != value:
        report.warn(where, partial(normalised, value, address, _FULL_ADDRESS))
    return address


def _not_string(value: object) -> str:
    return f"expected a string, got {show(value)}"


def _not_object(value: object) -> str:
    return f"expected an object, got {show(value)}"


def _not_address(value: str, hint: str) -> str:
    return f'not a PCI address: {show(value)}, expected e.g. "0000:3b:02.1"{hint}'


def _not_hex(what: str, value: str) -> str:
    return f"not a 4-digit hex {what} id: {show(value)}"


def _not_pkey(value: str) -> str:
    return f'not a 16-bit hex pkey like "0x7fff": {show(value)}'


def _bad_range(exc: ValueError, value: str) -> str:
    message = str(exc)
    return message if value in message else f"{message} in {show(value)}"


def _unsupported_aux_type(value: str) -> str:
    return f'unsupported auxiliary device type {show(value)}: only "sf" is supported'


@dataclass
class SelectorValues:
    """Checks the lists of one selector object at ``path``; ``spelled`` maps canonical keys
    to the file's spelling (``"IsRdma" → "isRdma"``) so messages name what the user wrote."""

    path: str
    report: Report
    spelled: Mapping[str, str]

    def where(self, key: str, index: int | None = None) -> str:
        at = join(self.path, self.spelled.get(key, key))
        return at if index is None else join(at, index)

    def items(self, key: str, values: list[Any] | None) -> list[tuple[int, str]]:
        """(index, string) of the list's items; any other item is a problem."""
        if not values:
            return []
        out = []
        for i, value in enumerate(values or ()):
            if isinstance(value, str):
                out.append((i, value))
            else:
                self.report.error(partial(self.where, key, i), partial(_not_string, value))
        return out

    def strings(self, key: str, values: list[Any] | None) -> frozenset[str]:
        return frozenset(value for _, value in self.items(key, values))

    def hex_ids(self, key: str, values: list[Any] | None) -> frozenset[str]:
        """``"8086"`` kept; ``"0x8086"``, ``"15B3"`` → ``"8086"``, ``"15b3"`` (warning)."""
        out = set()
        what = "vendor" if key == "vendors" else "device"
        for i, value in self.items(key, values):
            m = _HEX_ID_RE.fullmatch(value)
            if not m:
                self.report.error(partial(self.where, key, i), partial(_not_hex, what, value))
                continue
            hex_id = m.group(1).lower()
            out.add(hex_id)
            if hex_id != value:
                self.report.warn(partial(self.where, key, i),
                                 partial(normalised, value, hex_id, "4 lower-case hex"))
        return frozenset(out)

    def pkeys(self, values: list[Any] | None) -> frozenset[str]:
        """InfiniBand pkeys as the kernel writes them (``0x%04x``): ``"0x7fff"`` kept;
        ``"0x7FFF"``, ``"7fff"``, ``"0X8001"`` normalised (warning); anything else an error."""
        out = set()
        for i, value in self.items("pKeys", values):
            m = _PKEY_RE.fullmatch(value)
            if not m:
                self.report.error(partial(self.where, "pKeys", i), partial(_not_pkey, value))
                continue
            pkey = f"0x{int(m.group(1), 16):04x}"
            out.add(pkey)
            if pkey != value:
                self.report.warn(partial(self.where, "pKeys", i),
                                 partial(normalised, value, pkey, "0x%04x"))
        return frozenset(out)

    def pci_addresses(self, values: list[Any] | None) -> frozenset[str]:
        """Full ``0000:3b:02.1`` kept; short or upper-case forms normalised (warning)."""
        out = set()
        for i, value in self.items("pciAddresses", values):
            address = pci_address(value, partial(self.where, "pciAddresses", i), self.report)
            if address:
                out.add(address)
        return frozenset(out)

    def ranges(self, key: str, values: list[Any] | None) -> tuple[FunctionRange, ...]:
        """``pfNames``/``rootDevices`` items; a ``rootDevices`` name must be a PCI address."""
        out = []
        for i, value in self.items(key, values):
            try:
                item = parse_function_range(value)
            except ValueError as exc:
                self.report.error(partial(self.where, key, i), partial(_bad_range, exc, value))
                continue
            if key == "rootDevices":
                address = pci_address(item.name, partial(self.where, key, i), self.report,
                                      hint=_ROOT_DEVICE_HINT)
                if not address:
                    continue
                item = FunctionRange(address, item.spans)
            out.append(item)
        return tuple(out)

    def link_types(self, values: list[Any] | None) -> frozenset[str]:
        strings = self.strings("linkTypes", values)
        if len(strings) > 1:
            self.report.warn(self.where("linkTypes"),
                             f"more than one link type {show(values)}: a device has exactly one")
        return strings

    def vdpa_type(self, value: str | None) -> str | None:
        if value and value not in VDPA_TYPES:
            self.report.error(self.where("vdpaType"),
                              f'unsupported vdpaType {show(value)}: use "vhost" or "virtio"')
        return value or None

    def aux_types(self, values: list[Any] | None, *, required: bool = True) -> frozenset[str]:
        """``auxTypes``: ``["sf"]``; required in an auxNetDevice selector."""
        if not values and required:
            self.report.error(self.where("auxTypes"), 'missing: list the device types, e.g. ["sf"]')
        for i, aux_type in self.items("auxTypes", values):
            if aux_type not in AUX_TYPES:
                self.report.error(partial(self.where, "auxTypes", i),
                                  partial(_unsupported_aux_type, aux_type))
        return self.strings("auxTypes", values) if values else frozenset()


def device_kind(value: str | None, where: str, report: Report) -> DeviceKind | None:
    """``deviceType``: ``""``/missing → netDevice; matched case-sensitively, as Go does. An
    unsupported one is a problem naming the supported ones, and the closest if one is."""
    if not value:
        return DeviceKind.NET
    try:
        return DeviceKind(value)
    except ValueError:
        pass
    known = {k.value.casefold(): k.value for k in DeviceKind}
    allowed = ", ".join(f'"{k.value}"' for k in DeviceKind)
    if value.casefold() in known:
        hint = (f'deviceType is case-sensitive: did you mean "{known[value.casefold()]}"? '
                f"(use one of {allowed})")
    elif close := did_you_mean(value, known):
        hint = f'did you mean "{close}"? (use one of {allowed})'
    else:
        hint = f"use one of {allowed}"
    report.error(where, f"unsupported deviceType {show(value)}: {hint}")
    return None


def additional_info(raw: dict[str, Any] | None, where: str, report: Report
                    ) -> dict[str, dict[str, str]] | None:
    """``additionalInfo``: keys ``"*"`` or a PCI address (normalised like ``pciAddresses``;
    anything else can match no device, so a warning), each an object of strings; a null
    inner object counts as ``{}``."""
    if raw is None:
        return None
    out: dict[str, dict[str, str]] = {}
    for key, values in raw.items():
        at = join(where, key)
        canon = key
        if key != "*":
            try:
                canon = parse_pci_address(key)
            except ValueError:
                report.warn(at, 'matches no device: use "*" or a PCI address, "0000:3b:02.1"')
            else:
                if canon != key:
                    report.warn(at, partial(normalised, key, canon, _FULL_ADDRESS))
        if values is not None and not isinstance(values, dict):
            report.error(at, partial(_not_object, values))
            continue
        inner = {}
        for name, value in (values or {}).items():
            if isinstance(value, str):
                inner[name] = value
            else:
                report.error(partial(join, at, name), partial(_not_string, value))
        out[canon] = inner
    return out
