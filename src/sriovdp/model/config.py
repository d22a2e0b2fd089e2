"""The resource-pool config file (same format as the Go plugin's ``config.json``).

``parse_config`` turns the file's text into frozen :class:`ResourceConfig` values or raises
:class:`~sriovdp.errors.ConfigError` listing every problem with its JSON path::

    {"resourceList": [                              # null or missing: no resources
      {"resourceName": "sriov_net",                 # ^[a-zA-Z0-9_-]+$, unique per prefix
       "resourcePrefix": "example.com",             # optional, "" means the default prefix
       "deviceType": "netDevice",                   # or accelerator / auxNetDevice; "" → netDevice
       "excludeTopology": false,
       "selectors": [{"vendors": ["8086"], "pfNames": ["ens1f0#0-3"]}],   # or one object
       "additionalInfo": {"*": {"k": "v"}, "0000:3b:02.1": {"k": "w"}}}]}

Decoding follows Go ``encoding/json`` where users rely on it: keys match case-insensitively
at every level (``IsRdma``, ``isrdma``, ``PfNames``), the last of duplicate keys wins, and
``null`` leaves a field's default. Unlike the Go plugin, nothing is silently ignored or
silently useless: unknown keys and values that had to be normalised (``"0x8086"``,
``"00:06.0"``) become :attr:`Config.warnings`; values that can select nothing (``"ens1#3-"``,
``"intel"``) are errors. Two passes: a strict pydantic schema checks JSON types (errors
carry pydantic's location), then plain code checks and normalises values.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sriovdp.errors import ConfigError, ConfigProblem
from sriovdp.model.devices import DeviceKind
from sriovdp.model.ids import env_var_name, parse_pci_address, valid_resource_name
from sriovdp.model.selectors import (
    AccelSelector,
    AuxNetSelector,
    FunctionRange,
    NetSelector,
    Selector,
    parse_function_range,
)

DEFAULT_PREFIX = "intel.com"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceConfig:
    """One ``resourceList`` entry.

    Attributes:
        name: ``resourceName``, e.g. ``"intel_sriov_netdevice"``.
        prefix: ``resourcePrefix`` override; None means the CLI ``--resource-prefix``.
        kind: ``deviceType`` (default ``netDevice``).
        selectors: the selector objects in file order (a device is taken by the first match).
        exclude_topology: ``excludeTopology``: advertise no NUMA node for this pool.
        additional_info: ``additionalInfo`` (``{"*": {...}, "<pci address>": {...}}``);
            None when absent or null (an empty object still adds ``"extra": {}`` to ``_INFO``).
    """

    name: str
    prefix: str | None = None
    kind: DeviceKind = DeviceKind.NET
    selectors: tuple[Selector, ...] = ()
    exclude_topology: bool = False
    additional_info: Mapping[str, Mapping[str, str]] | None = None

    def effective_prefix(self, default_prefix: str) -> str:
        """``resourcePrefix`` if set, else ``default_prefix``."""
        return self.prefix or default_prefix

    def resource_name(self, default_prefix: str) -> str:
        """The extended resource name, e.g. ``intel.com/intel_sriov_netdevice``."""
        return f"{self.effective_prefix(default_prefix)}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A parsed, valid config: the resources in file order plus non-fatal warnings
    (unknown keys, explicit identifiers in odd forms ...)."""

    resources: tuple[ResourceConfig, ...] = ()
    warnings: tuple[ConfigProblem, ...] = ()


# --------------------------------------------------------------------------------------------
# Pass 1: the JSON-type schema. Every field is optional and nullable (Go: null keeps the
# default); strict mode, so "yes" is not a boolean and 1 is not a string.

_StrList = list[str] | None


class _Schema(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _ResourceIn(_Schema):
    resource_name: str | None = Field(None, alias="resourceName")
    resource_prefix: str | None = Field(None, alias="resourcePrefix")
    device_type: str | None = Field(None, alias="deviceType")
    exclude_topology: bool | None = Field(None, alias="excludeTopology")
    selectors: Any = Field(None, alias="selectors")  # its shape depends on deviceType
    additional_info: dict[str, dict[str, str] | None] | None = Field(None, alias="additionalInfo")


class _CommonIn(_Schema):
    vendors: _StrList = Field(None, alias="vendors")
    devices: _StrList = Field(None, alias="devices")
    drivers: _StrList = Field(None, alias="drivers")


class _PciIn(_Schema):
    pci_addresses: _StrList = Field(None, alias="pciAddresses")
    acpi_indexes: _StrList = Field(None, alias="acpiIndexes")


class _NetLikeIn(_Schema):
    pf_names: _StrList = Field(None, alias="pfNames")
    root_devices: _StrList = Field(None, alias="rootDevices")
    link_types: _StrList = Field(None, alias="linkTypes")
    is_rdma: bool | None = Field(None, alias="IsRdma")  # no JSON tag in Go: canonical "IsRdma"
    need_vhost_net: bool | None = Field(None, alias="needVhostNet")


class _NetIn(_CommonIn, _PciIn, _NetLikeIn):
    ddp_profiles: _StrList = Field(None, alias="ddpProfiles")
    pkeys: _StrList = Field(None, alias="pKeys")
    vdpa_type: str | None = Field(None, alias="vdpaType")


class _AccelIn(_CommonIn, _PciIn):
    pass


class _AuxIn(_CommonIn, _NetLikeIn):
    aux_types: _StrList = Field(None, alias="auxTypes")


_SELECTOR_SCHEMAS: Mapping[DeviceKind, type[_Schema]] = {
    DeviceKind.NET: _NetIn,
    DeviceKind.ACCEL: _AccelIn,
    DeviceKind.AUX_NET: _AuxIn,
}
_VDPA_TYPES = ("vhost", "virtio")
_HEX_ID_RE = re.compile(r"(?:0[xX])?([0-9a-fA-F]{4})")
_PKEY_RE = re.compile(r"(?:0[xX])?([0-9A-Fa-f]{1,4})")
_AUX_TYPES = ("sf",)


def _fold(key: str) -> str:
    return key.casefold()


def _keys(schema: type[_Schema]) -> dict[str, str]:
    """folded key → canonical key, e.g. ``"isrdma" → "IsRdma"``."""
    return {_fold(f.alias or name): f.alias or name for name, f in schema.model_fields.items()}


_TOP_KEYS = {"resourcelist": "resourceList"}
_RESOURCE_KEYS = _keys(_ResourceIn)
_SELECTOR_KEYS = {kind: _keys(schema) for kind, schema in _SELECTOR_SCHEMAS.items()}


# --------------------------------------------------------------------------------------------
# Reporting


@dataclass
class _Report:
    """Problems (fatal) and warnings, in the order they were found."""

    problems: list[ConfigProblem] = field(default_factory=list)
    warnings: list[ConfigProblem] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(ConfigProblem(path, message))


def _show(value: object, limit: int = 60) -> str:
    """A value as JSON text for messages (``"yes"``, ``123``, ``null``), cut to ``limit``."""
    try:
        if isinstance(value, Decimal):  # a number too long for int()
            text = str(value)
        else:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (RecursionError, ValueError):
        text = "a deeply nested value"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _join(path: str, key: str | int) -> str:
    """``resourceList`` + 1 → ``resourceList[1]``; + ``"*"`` → ``additionalInfo["*"]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENT_RE.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_show(key, limit=200)}]"


_EXPECTED = {
    "bool_type": "a boolean",
    "string_type": "a string",
    "list_type": "a list of strings",
    "dict_type": "an object",
    "model_type": "an object",
}


# --------------------------------------------------------------------------------------------
# JSON text → values; object keys → canonical keys


class _JsonObject(dict[str, Any]):
    """A decoded JSON object that also keeps every (key, value) pair in file order."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def _parse_int(text: str) -> int | Decimal:
    # Python refuses int() of more than 4300 digits; such a number can only be a type error.
    return int(text) if len(text) < 4000 else Decimal(text)


class _NotJsonError(ValueError):
    pass


def _reject_constant(name: str) -> object:
    raise _NotJsonError(f"invalid JSON: {name} is not a JSON value")


def _check_unicode(value: object, path: str) -> None:
    """Reject lone surrogates (``"\\ud800"``): they cannot be sent to the kubelet as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _NotJsonError(
                f"{path or 'document'}: invalid Unicode (a lone surrogate escape)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key, path)
            _check_unicode(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_unicode(item, f"{path}[{i}]")


def _load_json(text: str | bytes) -> object:
    """Decode the document.

    Raises:
        ConfigError: one problem, ``invalid JSON at line L column C: <reason>``.
    """
    try:
        if isinstance(text, bytes | bytearray | memoryview):
            text = bytes(text).decode("utf-8")
        doc = json.loads(
            text,
            object_pairs_hook=_JsonObject,
            parse_int=_parse_int,
            parse_constant=_reject_constant,
        )
        _check_unicode(doc, "")
        return doc
    except UnicodeDecodeError as exc:
        raise ConfigError(ConfigProblem("", f"invalid UTF-8 at byte {exc.start}")) from None
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.msg == "Extra data" and not exc.doc.lstrip().startswith(("{", "[")):
            hint = ' (is the opening "{" missing?)'
        where = f"line {exc.lineno} column {exc.colno}"
        raise ConfigError(ConfigProblem("", f"invalid JSON at {where}: {exc.msg}{hint}")) from None
    except _NotJsonError as exc:
        raise ConfigError(ConfigProblem("", str(exc))) from None
    except RecursionError:
        raise ConfigError(ConfigProblem("", "invalid JSON: nested too deeply")) from None
    except ValueError as exc:  # anything else the decoder refuses
        raise ConfigError(ConfigProblem("", f"invalid JSON: {exc}")) from None


def _canonical(
    obj: _JsonObject,
    known: Mapping[str, str],
    path: str,
    report: _Report,
    unknown: Callable[[str], str],
) -> dict[str, Any]:
    """``obj`` with each known key spelled canonically, as Go matches struct fields.

    A key matches case-insensitively (all canonical keys are ASCII and distinct when folded,
    so an exact match never competes with a folded one); the last of duplicates wins.
    Unknown keys are dropped with the warning ``unknown(key)``.
    """
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in obj.pairs:
        canon = known.get(_fold(key))
        if canon is None or len(canon) != len(key):  # "ß" folds to "ss": Go does not match it
            report.warn(_join(path, key), unknown(key))
            continue
        if canon in out:
            report.warn(
                _join(path, canon),
                f'given more than once (as "{spelled[canon]}" and "{key}"); the last one is used',
            )
        out[canon] = value
        spelled[canon] = key
    return out


def _did_you_mean(key: str, known: Mapping[str, str]) -> str:
    close = difflib.get_close_matches(_fold(key), list(known), n=1, cutoff=0.75)
    return f' (did you mean "{known[close[0]]}"?)' if close else ", ignored"


def _top_key_hint(key: str) -> str:
    return "unknown key" + _did_you_mean(key, _TOP_KEYS)


def _resource_key_hint(key: str) -> str:
    if any(_fold(key) in keys for keys in _SELECTOR_KEYS.values()):
        return 'unknown key (did you mean to put it inside "selectors"?)'
    return "unknown key" + _did_you_mean(key, _RESOURCE_KEYS)


def _selector_key_hint(kind: DeviceKind) -> Callable[[str], str]:
    def hint(key: str) -> str:
        others = [k.value for k, keys in _SELECTOR_KEYS.items() if _fold(key) in keys]
        if others:
            only = ", ".join(others)
            return f"not a selector key for deviceType {kind.value} (only for {only}), ignored"
        if _fold(key) in _RESOURCE_KEYS:
            return 'unknown key (did you mean to put it in the resource, next to "selectors"?)'
        return "unknown key" + _did_you_mean(key, _SELECTOR_KEYS[kind])

    return hint


_S = TypeVar("_S", bound=_Schema)


def _validate(schema: type[_S], data: dict[str, Any], path: str, report: _Report) -> _S:
    """``schema`` from ``data``; each JSON-type error becomes a problem at its path, and the
    field it is in falls back to its default so the remaining fields are still checked."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        bad: set[object] = set()
        for err in exc.errors(include_url=False):
            where = path
            for part in err["loc"]:
                where = _join(where, part)
            expected = _EXPECTED.get(err["type"])
            message = f"expected {expected}" if expected else err["msg"]
            report.error(where, f"{message}, got {_show(err['input'])}")
            bad.add(err["loc"][0])
        return schema.model_validate({k: v for k, v in data.items() if k not in bad})


# --------------------------------------------------------------------------------------------
# Pass 2: values


@dataclass
class _Values:
    """Checks and normalises the string lists of one selector object at ``path``."""

    path: str
    report: _Report

    def strings(self, values: list[str] | None) -> frozenset[str]:
        return frozenset(values or ())

    def hex_ids(self, key: str, values: list[str] | None) -> frozenset[str]:
        """``"8086"`` kept; ``"0x8086"``, ``"15B3"`` → ``"8086"``, ``"15b3"`` (warning)."""
        out = set()
        what = "vendor" if key == "vendors" else "device"
        for i, value in enumerate(values or ()):
            where = _join(_join(self.path, key), i)
            m = _HEX_ID_RE.fullmatch(value)
            if not m:
                self.report.error(where, f"not a 4-digit hex {what} id: {_show(value)}")
                continue
            out.add(m.group(1).lower())
            if m.group(1).lower() != value:
                self.report.warn(where, _normalised(value, m.group(1).lower(), "4 lower-case hex"))
        return frozenset(out)

    def pkeys(self, values: list[str] | None) -> frozenset[str]:
        """InfiniBand pkeys as the kernel writes them (``0x%04x``): ``"0x7fff"`` kept;
        ``"0x7FFF"``, ``"7fff"``, ``"0X8001"`` normalised (warning); anything else an error."""
        out = set()
        for i, value in enumerate(values or ()):
            where = _join(_join(self.path, "pKeys"), i)
            m = _PKEY_RE.fullmatch(value)
            if not m:
                self.report.error(where, f"not a 16-bit hex pkey like \"0x7fff\": {_show(value)}")
                continue
            canonical = f"0x{int(m.group(1), 16):04x}"
            out.add(canonical)
            if canonical != value:
                self.report.warn(where, _normalised(value, canonical, "0x%04x"))
        return frozenset(out)

    def pci_addresses(self, values: list[str] | None) -> frozenset[str]:
        """Full ``0000:3b:02.1`` kept; short or upper-case forms normalised (warning)."""
        out = set()
        for i, value in enumerate(values or ()):
            where = _join(_join(self.path, "pciAddresses"), i)
            address = _pci_address(value, where, self.report)
            if address:
                out.add(address)
        return frozenset(out)

    def ranges(self, key: str, values: list[str] | None) -> tuple[FunctionRange, ...]:
        """``pfNames``/``rootDevices`` items; a ``rootDevices`` name must be a PCI address."""
        out = []
        for i, value in enumerate(values or ()):
            where = _join(_join(self.path, key), i)
            try:
                item = parse_function_range(value)
            except ValueError as exc:
                message = str(exc)
                if value not in message:
                    message += f" in {_show(value)}"
                self.report.error(where, message)
                continue
            if key == "rootDevices":
                address = _pci_address(item.name, where, self.report, hint=_ROOT_DEVICE_HINT)
                if not address:
                    continue
                item = FunctionRange(address, item.spans)
            out.append(item)
        return tuple(out)

    def link_types(self, values: list[str] | None) -> frozenset[str]:
        if values and len(values) > 1:
            self.report.warn(
                _join(self.path, "linkTypes"),
                f"more than one link type {_show(values)}: a device has exactly one",
            )
        return self.strings(values)


_ROOT_DEVICE_HINT = " (rootDevices takes PF PCI addresses; use pfNames for interface names)"


def _normalised(value: str, canonical: str, form: str) -> str:
    return (
        f"{_show(value)} read as {_show(canonical)}: sysfs uses the {form} form "
        "(the Go plugin would match nothing)"
    )


def _pci_address(value: str, where: str, report: _Report, hint: str = "") -> str | None:
    try:
        address = parse_pci_address(value)
    except ValueError:
        example = 'expected e.g. "0000:3b:02.1"'
        report.error(where, f"not a PCI address: {_show(value)}, {example}{hint}")
        return None
    if address != value:
        report.warn(where, _normalised(value, address, 'full "0000:3b:02.1"'))
    return address


def _selector_input(
    schema: type[_S], kind: DeviceKind, obj: _JsonObject, path: str, report: _Report
) -> _S:
    data = _canonical(obj, _SELECTOR_KEYS[kind], path, report, _selector_key_hint(kind))
    return _validate(schema, data, path, report)


def _net_selector(obj: _JsonObject, path: str, report: _Report) -> NetSelector:
    m = _selector_input(_NetIn, DeviceKind.NET, obj, path, report)
    v = _Values(path, report)
    if m.is_rdma and m.vdpa_type:
        report.error(path, "IsRdma and vdpaType are mutually exclusive in one selector object")
    if m.vdpa_type and m.vdpa_type not in _VDPA_TYPES:
        report.error(
            _join(path, "vdpaType"),
            f'unsupported vdpaType {_show(m.vdpa_type)}: use "vhost" or "virtio"',
        )
    return NetSelector(
        vendors=v.hex_ids("vendors", m.vendors),
        devices=v.hex_ids("devices", m.devices),
        drivers=v.strings(m.drivers),
        pci_addresses=v.pci_addresses(m.pci_addresses),
        acpi_indexes=v.strings(m.acpi_indexes),
        pf_names=v.ranges("pfNames", m.pf_names),
        root_devices=v.ranges("rootDevices", m.root_devices),
        link_types=v.link_types(m.link_types),
        ddp_profiles=v.strings(m.ddp_profiles),
        pkeys=v.pkeys(m.pkeys),
        is_rdma=bool(m.is_rdma),
        need_vhost_net=bool(m.need_vhost_net),
        vdpa_type=m.vdpa_type or None,
    )


def _accel_selector(obj: _JsonObject, path: str, report: _Report) -> AccelSelector:
    m = _selector_input(_AccelIn, DeviceKind.ACCEL, obj, path, report)
    v = _Values(path, report)
    return AccelSelector(
        vendors=v.hex_ids("vendors", m.vendors),
        devices=v.hex_ids("devices", m.devices),
        drivers=v.strings(m.drivers),
        pci_addresses=v.pci_addresses(m.pci_addresses),
        acpi_indexes=v.strings(m.acpi_indexes),
    )


def _aux_selector(obj: _JsonObject, path: str, report: _Report) -> AuxNetSelector:
    m = _selector_input(_AuxIn, DeviceKind.AUX_NET, obj, path, report)
    v = _Values(path, report)
    if not m.aux_types:
        report.error(_join(path, "auxTypes"), 'missing: list the device types, e.g. ["sf"]')
    for i, aux_type in enumerate(m.aux_types or ()):
        if aux_type not in _AUX_TYPES:
            report.error(
                _join(_join(path, "auxTypes"), i),
                f'unsupported auxiliary device type {_show(aux_type)}: only "sf" is supported',
            )
    return AuxNetSelector(
        vendors=v.hex_ids("vendors", m.vendors),
        devices=v.hex_ids("devices", m.devices),
        drivers=v.strings(m.drivers),
        aux_types=v.strings(m.aux_types),
        pf_names=v.ranges("pfNames", m.pf_names),
        root_devices=v.ranges("rootDevices", m.root_devices),
        link_types=v.link_types(m.link_types),
        is_rdma=bool(m.is_rdma),
        need_vhost_net=bool(m.need_vhost_net),
    )


_SELECTOR_PARSERS: Mapping[DeviceKind, Callable[[_JsonObject, str, _Report], Selector]] = {
    DeviceKind.NET: _net_selector,
    DeviceKind.ACCEL: _accel_selector,
    DeviceKind.AUX_NET: _aux_selector,
}


def _selectors(raw: object, kind: DeviceKind, path: str, report: _Report) -> tuple[Selector, ...]:
    """``selectors``: one object (legacy) or a non-empty list of objects."""
    if raw is None:
        report.error(path, 'missing: give at least one selector object, e.g. [{"drivers": ["x"]}]')
        return ()
    if isinstance(raw, _JsonObject):
        return (_SELECTOR_PARSERS[kind](raw, path, report),)
    if not isinstance(raw, list):
        report.error(path, f"expected a selector object or a list of them, got {_show(raw)}")
        return ()
    if not raw:
        report.error(path, "need at least one selector, got 0")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, _JsonObject):
            out.append(_SELECTOR_PARSERS[kind](item, _join(path, i), report))
        else:
            report.error(_join(path, i), f"expected a selector object, got {_show(item)}")
    return tuple(out)


def _device_kind(value: str | None, path: str, report: _Report) -> DeviceKind | None:
    """``deviceType``: ``""``/missing → netDevice; matched case-sensitively, as Go does."""
    if not value:
        return DeviceKind.NET
    try:
        return DeviceKind(value)
    except ValueError:
        pass
    same = [k.value for k in DeviceKind if _fold(k.value) == _fold(value)]
    if same:
        hint = f'deviceType is case-sensitive: did you mean "{same[0]}"?'
    else:
        hint = "use one of " + ", ".join(f'"{k.value}"' for k in DeviceKind)
    report.error(_join(path, "deviceType"), f"unsupported deviceType {_show(value)}: {hint}")
    return None


def _additional_info(
    raw: dict[str, dict[str, str] | None] | None, path: str, report: _Report
) -> dict[str, dict[str, str]] | None:
    """``additionalInfo``: keys ``"*"`` or a PCI address (normalised like ``pciAddresses``;
    anything else can match no device, so a warning); a null inner object counts as ``{}``."""
    if raw is None:
        return None
    out: dict[str, dict[str, str]] = {}
    for key, values in raw.items():
        where = _join(_join(path, "additionalInfo"), key)
        canon = key
        if key != "*":
            try:
                canon = parse_pci_address(key)
            except ValueError:
                report.warn(where, 'matches no device: use "*" or a PCI address, "0000:3b:02.1"')
            else:
                if canon != key:
                    report.warn(where, _normalised(key, canon, 'full "0000:3b:02.1"'))
        out[canon] = dict(values or {})
    return out


# --------------------------------------------------------------------------------------------
# Resource names: the Go plugin's rule, then what the kubelet's registration accepts

_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_MAX_PREFIX = 253 - len("requests.")  # the kubelet checks "requests.<prefix>" as a subdomain
_MAX_NAME = 63


def _prefix_problem(prefix: str) -> str | None:
    """Why the kubelet would reject ``<prefix>/<name>`` because of ``prefix``, if it would."""
    if len(prefix) > _MAX_PREFIX or not _DNS_SUBDOMAIN_RE.fullmatch(prefix):
        return 'is not a lower-case DNS subdomain like "example.com"'
    if prefix.startswith("requests."):
        return 'is reserved: the kubelet rejects names starting with "requests."'
    if prefix.endswith("kubernetes.io"):
        return 'is reserved: the kubelet rejects names containing "kubernetes.io/"'
    return None


@dataclass
class _Names:
    """Checks resource names one resource at a time, remembering those seen before."""

    default_prefix: str
    report: _Report
    seen: dict[str, str] = field(default_factory=dict)  # extended name → path
    env_vars: dict[str, tuple[str, str]] = field(default_factory=dict)  # → (name, path)
    default_reported: bool = False

    def check(self, cfg: ResourceConfig, path: str) -> None:
        name_path = _join(path, "resourceName")
        if not cfg.name:
            self.report.error(name_path, 'missing: every resource needs a name, e.g. "sriov_net"')
            return
        if not valid_resource_name(cfg.name):
            self.report.error(
                name_path,
                f'resource name {_show(cfg.name)} contains invalid characters: '
                'use only letters, digits, "_" and "-"',
            )
            return
        full = cfg.resource_name(self.default_prefix)
        self._kubelet_rules(cfg, path, full)
        if full in self.seen:
            self.report.error(name_path, f"{_show(full)} already exists (at {self.seen[full]})")
            return
        self.seen[full] = path
        env = env_var_name(cfg.effective_prefix(self.default_prefix), cfg.name)
        if env in self.env_vars:
            other, other_path = self.env_vars[env]
            self.report.warn(
                name_path,
                f"{_show(full)} and {_show(other)} (at {other_path}) both set {env}; "
                "a container given both sees only one",
            )
        self.env_vars.setdefault(env, (full, path))

    def _kubelet_rules(self, cfg: ResourceConfig, path: str, full: str) -> None:
        name_path = _join(path, "resourceName")
        if len(cfg.name) > _MAX_NAME:
            self.report.error(
                name_path,
                f"resource name {_show(cfg.name)} is {len(cfg.name)} characters long; "
                f"the kubelet accepts at most {_MAX_NAME}",
            )
        if not (cfg.name[0].isalnum() and cfg.name[-1].isalnum()):
            self.report.error(
                name_path,
                f"resource name {_show(cfg.name)} must start and end with a letter or digit "
                f"(the kubelet rejects {_show(full)})",
            )
        prefix = cfg.effective_prefix(self.default_prefix)
        problem = _prefix_problem(prefix)
        if problem is None:
            return
        if cfg.prefix:
            where = _join(path, "resourcePrefix")
            self.report.error(where, f"resource prefix {_show(prefix)} {problem}")
        elif not self.default_reported:
            self.default_reported = True
            self.report.error("", f"default resource prefix {_show(prefix)} {problem}")


# --------------------------------------------------------------------------------------------
# The document


def _resource_list(doc: object, report: _Report) -> list[Any]:
    """The raw ``resourceList`` items; a null document or list means none."""
    if doc is None:
        return []
    if not isinstance(doc, _JsonObject):
        report.error("", f'expected an object like {{"resourceList": [...]}}, got {_show(doc)}')
        return []
    raw = _canonical(doc, _TOP_KEYS, "", report, _top_key_hint).get("resourceList")
    if raw is None:
        return []
    if not isinstance(raw, list):
        report.error("resourceList", f"expected a list of resource objects, got {_show(raw)}")
        return []
    return raw


def _resource(raw: object, path: str, report: _Report, names: _Names) -> ResourceConfig | None:
    """One ``resourceList`` item; problems go to ``report`` (the value is then incomplete)."""
    if not isinstance(raw, _JsonObject):
        report.error(path, f"expected a resource object, got {_show(raw)}")
        return None
    data = _canonical(raw, _RESOURCE_KEYS, path, report, _resource_key_hint)
    m = _validate(_ResourceIn, data, path, report)

    def type_error(key: str, value: object) -> bool:  # already reported by _validate
        return value is None and data.get(key) is not None

    kind = None
    if not type_error("deviceType", m.device_type):
        kind = _device_kind(m.device_type, path, report)
    selectors = _selectors(m.selectors, kind, _join(path, "selectors"), report) if kind else ()
    cfg = ResourceConfig(
        name=m.resource_name or "",
        prefix=m.resource_prefix or None,
        kind=kind or DeviceKind.NET,
        selectors=selectors,
        exclude_topology=bool(m.exclude_topology),
        additional_info=_additional_info(m.additional_info, path, report),
    )
    if not type_error("resourceName", m.resource_name):
        names.check(cfg, path)
    return cfg


def parse_config(text: str | bytes, *, default_prefix: str = DEFAULT_PREFIX) -> Config:
    """Parse and validate a config document (the file's content; this reads no file).

    Args:
        text: the JSON document, as text or UTF-8 bytes.
        default_prefix: the ``--resource-prefix`` for resources without ``resourcePrefix``.

    Returns:
        the resources in file order, plus warnings (unknown keys, normalised values, ...).

    Raises:
        ConfigError: every problem found, each with its JSON path and the offending value,
            e.g. ``resourceList[1].selectors[0].pfNames[0]: bad VF range "5-2"``; invalid
            JSON gives one problem with its line and column. Nothing else is raised.
    """
    doc = _load_json(text)
    report = _Report()
    names = _Names(default_prefix, report)
    resources = []
    for i, raw in enumerate(_resource_list(doc, report)):
        path = _join("resourceList", i)
        cfg = _resource(raw, path, report, names)
        if cfg is not None:
            resources.append(cfg)
    if report.problems:
        raise ConfigError(report.problems, warnings=report.warnings)
    return Config(resources=tuple(resources), warnings=tuple(report.warnings))
