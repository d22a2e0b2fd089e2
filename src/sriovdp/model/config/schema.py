"""The config's JSON types as pydantic models (strict: ``"yes"`` is not a boolean), the
known keys at each level, and the hints given for unknown keys."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sriovdp.model.config.report import Report, join, show
from sriovdp.model.devices import DeviceKind

# Every field is optional and nullable (Go: null keeps the default). List items and the
# inner objects of additionalInfo are checked by the value normalisers, one problem per
# item with a bound on how many are listed (pydantic would build every error first).
_List = list[Any] | None


class Schema(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ResourceIn(Schema):
    resource_name: str | None = Field(None, alias="resourceName")
    resource_prefix: str | None = Field(None, alias="resourcePrefix")
    device_type: str | None = Field(None, alias="deviceType")
    exclude_topology: bool | None = Field(None, alias="excludeTopology")
    selectors: Any = Field(None, alias="selectors")  # its shape depends on deviceType
    additional_info: dict[str, Any] | None = Field(None, alias="additionalInfo")
    dra: bool | None = Field(None, alias="dra")


class _CommonIn(Schema):
    vendors: _List = Field(None, alias="vendors")
    devices: _List = Field(None, alias="devices")
    drivers: _List = Field(None, alias="drivers")


class _PciIn(Schema):
    pci_addresses: _List = Field(None, alias="pciAddresses")
    acpi_indexes: _List = Field(None, alias="acpiIndexes")


class _NetLikeIn(Schema):
    pf_names: _List = Field(None, alias="pfNames")
    root_devices: _List = Field(None, alias="rootDevices")
    link_types: _List = Field(None, alias="linkTypes")
    is_rdma: bool | None = Field(None, alias="IsRdma")  # no JSON tag in Go: canonical "IsRdma"
    need_vhost_net: bool | None = Field(None, alias="needVhostNet")


class NetIn(_CommonIn, _PciIn, _NetLikeIn):
    ddp_profiles: _List = Field(None, alias="ddpProfiles")
    pkeys: _List = Field(None, alias="pKeys")
    vdpa_type: str | None = Field(None, alias="vdpaType")


class AccelIn(_CommonIn, _PciIn):
    pass


class AuxIn(_CommonIn, _NetLikeIn):
    aux_types: _List = Field(None, alias="auxTypes")


class AnyIn(NetIn, AuxIn):
    """A selector object of a resource whose ``deviceType`` is unsupported: every key some
    deviceType takes, so the rest of the object is still checked."""


SELECTOR_SCHEMAS: Mapping[DeviceKind, type[Schema]] = {
    DeviceKind.NET: NetIn,
    DeviceKind.ACCEL: AccelIn,
    DeviceKind.AUX_NET: AuxIn,
}


def _keys(schema: type[Schema]) -> dict[str, str]:
    """folded key → canonical key, e.g. ``"isrdma" → "IsRdma"``."""
    return {(f.alias or name).casefold(): f.alias or name
            for name, f in schema.model_fields.items()}


TOP_KEYS = {"resourcelist": "resourceList"}
RESOURCE_KEYS = _keys(ResourceIn)
SELECTOR_KEYS = {kind: _keys(schema) for kind, schema in SELECTOR_SCHEMAS.items()}
ANY_SELECTOR_KEYS = _keys(AnyIn)

_EXPECTED = {
    "bool_type": "a boolean",
    "string_type": "a string",
    "list_type": "a list of strings",  # the only list fields are selector lists
    "dict_type": "an object",
    "model_type": "an object",
}

_S = TypeVar("_S", bound=Schema)


def validate(schema: type[_S], data: dict[str, Any], path: str, report: Report,
             spelled: Mapping[str, str]) -> _S:
    """``schema`` from ``data``; each JSON-type error becomes a problem at its path (with the
    key as the file spells it), and the field falls back to its default so the remaining
    fields are still checked."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        bad: set[object] = set()
        for err in exc.errors(include_url=False):
            key = err["loc"][0]
            where = join(path, spelled.get(str(key), str(key)))
            for part in err["loc"][1:]:
                where = join(where, part)
            expected = _EXPECTED.get(err["type"])
            message = f"expected {expected}" if expected else err["msg"]
            report.error(where, f"{message}, got {show(err['input'])}")
            bad.add(key)
        return schema.model_validate({k: v for k, v in data.items() if k not in bad})


def did_you_mean(key: str, known: Mapping[str, str], cutoff: float = 0.75) -> str | None:
    """The canonical spelling of the known key closest to ``key`` (``known`` maps folded
    keys to canonical ones), or None when none is close."""
    if len(key) > 64:  # no key is that long; difflib on it would only cost time
        return None
    close = difflib.get_close_matches(key.casefold(), list(known), n=1, cutoff=cutoff)
    return known[close[0]] if close else None


def top_key_hint(key: str) -> str:
    close = did_you_mean(key, TOP_KEYS)
    return f'unknown key (did you mean "{close}"?)' if close else "unknown key, ignored"


def resource_key_hint(key: str) -> str:
    if any(key.casefold() in keys for keys in SELECTOR_KEYS.values()):
        return 'unknown key (did you mean to put it inside "selectors"?)'
    close = did_you_mean(key, RESOURCE_KEYS)
    return f'unknown key (did you mean "{close}"?)' if close else "unknown key, ignored"


def selector_key_hint(kind: DeviceKind | None) -> Callable[[str], str]:
    """The error for an unknown key in a selector object of ``kind`` (None: of an unsupported
    deviceType, so any deviceType's key is known): an ignored key there would leave the
    selector wider than written (``"driver"`` for ``"drivers"`` takes every function of the
    vendor), so it always names the closest known key."""

    def hint(key: str) -> str:
        known = ANY_SELECTOR_KEYS if kind is None else SELECTOR_KEYS[kind]
        folded = key.casefold()
        if folded in known:  # a spelling whose case-folding changes its length ("ß")
            return f'unknown selector key (did you mean "{known[folded]}"?)'
        others = [k.value for k, keys in SELECTOR_KEYS.items() if folded in keys]
        if others and kind is not None:
            return (f"not a selector key for deviceType {kind.value} (only for "
                    f"{', '.join(others)}): remove it or change deviceType")
        if key.casefold() in RESOURCE_KEYS:
            return 'unknown selector key (did you mean to put it in the resource, next to ' \
                   '"selectors"?)'
        close = did_you_mean(key, known, cutoff=0.6)
        if close:
            return f'unknown selector key (did you mean "{close}"?)'
        takes = "selectors take" if kind is None else f"deviceType {kind.value} takes"
        return (f"unknown selector key; {takes} "
                + ", ".join(sorted(known.values(), key=str.casefold)))

    return hint
