"""Walks a decoded config document into a :class:`Config`: resources, their selectors and
names, every problem reported with its JSON path."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from sriovdp.errors import ConfigError
from sriovdp.model.config.jsondoc import JsonObject, canonical, load_json
from sriovdp.model.config.names import Names
from sriovdp.model.config.report import Report, join, show
from sriovdp.model.config.resources import DEFAULT_PREFIX, Config, ResourceConfig
from sriovdp.model.config.schema import (
    ANY_SELECTOR_KEYS,
    RESOURCE_KEYS,
    SELECTOR_KEYS,
    SELECTOR_SCHEMAS,
    TOP_KEYS,
    AccelIn,
    AnyIn,
    AuxIn,
    NetIn,
    ResourceIn,
    Schema,
    resource_key_hint,
    selector_key_hint,
    top_key_hint,
    validate,
)
from sriovdp.model.config.values import SelectorValues, additional_info, device_kind
from sriovdp.model.devices import DeviceKind
from sriovdp.model.selectors import AccelSelector, AuxNetSelector, NetSelector, Selector

MAX_RESOURCES = 1000
"""More resources than any node needs: each one is a gRPC server, a socket and a kubelet
registration. The bound also keeps a hostile 1 MiB config from costing 20,000 resources."""


def _selector_input(kind: DeviceKind, obj: JsonObject, path: str, report: Report
                    ) -> tuple[Any, SelectorValues]:
    data, spelled = canonical(obj, SELECTOR_KEYS[kind], path, report, selector_key_hint(kind),
                              unknown_is_error=True)
    schema: type[Schema] = SELECTOR_SCHEMAS[kind]
    return validate(schema, data, path, report, spelled), SelectorValues(path, report, spelled)


def _rdma_or_vdpa(m: NetIn, v: SelectorValues) -> None:
    if m.is_rdma and m.vdpa_type:
        rdma, vdpa = v.spelled.get("IsRdma", "IsRdma"), v.spelled.get("vdpaType", "vdpaType")
        v.report.error(v.path, f"{rdma} and {vdpa} are mutually exclusive in one selector object")


def _net_selector(obj: JsonObject, path: str, report: Report) -> NetSelector:
    m, v = _selector_input(DeviceKind.NET, obj, path, report)
    assert isinstance(m, NetIn)
    _rdma_or_vdpa(m, v)
    return NetSelector(
        vendors=v.hex_ids("vendors", m.vendors),
        devices=v.hex_ids("devices", m.devices),
        drivers=v.strings("drivers", m.drivers),
        pci_addresses=v.pci_addresses(m.pci_addresses),
        acpi_indexes=v.strings("acpiIndexes", m.acpi_indexes),
        pf_names=v.ranges("pfNames", m.pf_names),
        root_devices=v.ranges("rootDevices", m.root_devices),
        link_types=v.link_types(m.link_types),
        ddp_profiles=v.strings("ddpProfiles", m.ddp_profiles),
        pkeys=v.pkeys(m.pkeys),
        is_rdma=bool(m.is_rdma),
        need_vhost_net=bool(m.need_vhost_net),
        vdpa_type=v.vdpa_type(m.vdpa_type),
    )


def _accel_selector(obj: JsonObject, path: str, report: Report) -> AccelSelector:
    m, v = _selector_input(DeviceKind.ACCEL, obj, path, report)
    assert isinstance(m, AccelIn)
    return AccelSelector(
        vendors=v.hex_ids("vendors", m.vendors),
        devices=v.hex_ids("devices", m.devices),
        drivers=v.strings("drivers", m.drivers),
        pci_addresses=v.pci_addresses(m.pci_addresses),
        acpi_indexes=v.strings("acpiIndexes", m.acpi_indexes),
    )


def _aux_selector(obj: JsonObject, path: str, report: Report) -> AuxNetSelector:
    m, v = _selector_input(DeviceKind.AUX_NET, obj, path, report)
    assert isinstance(m, AuxIn)
    return AuxNetSelector(
        vendors=v.hex_ids("vendors", m.vendors),
        devices=v.hex_ids("devices", m.devices),
        drivers=v.strings("drivers", m.drivers),
        aux_types=v.aux_types(m.aux_types),
        pf_names=v.ranges("pfNames", m.pf_names),
        root_devices=v.ranges("rootDevices", m.root_devices),
        link_types=v.link_types(m.link_types),
        is_rdma=bool(m.is_rdma),
        need_vhost_net=bool(m.need_vhost_net),
    )


def _unknown_kind_selector(obj: JsonObject, path: str, report: Report) -> None:
    """Checks a selector object of a resource whose ``deviceType`` is unsupported, as far as
    it can be without knowing which was meant: keys no deviceType takes, and every value."""
    data, spelled = canonical(obj, ANY_SELECTOR_KEYS, path, report, selector_key_hint(None),
                              unknown_is_error=True)
    m = validate(AnyIn, data, path, report, spelled)
    assert isinstance(m, AnyIn)
    v = SelectorValues(path, report, spelled)
    v.hex_ids("vendors", m.vendors)
    v.hex_ids("devices", m.devices)
    v.strings("drivers", m.drivers)
    v.pci_addresses(m.pci_addresses)
    v.strings("acpiIndexes", m.acpi_indexes)
    v.ranges("pfNames", m.pf_names)
    v.ranges("rootDevices", m.root_devices)
    v.link_types(m.link_types)
    v.strings("ddpProfiles", m.ddp_profiles)
    v.pkeys(m.pkeys)
    v.vdpa_type(m.vdpa_type)
    v.aux_types(m.aux_types, required=False)
    _rdma_or_vdpa(m, v)


_SELECTOR_PARSERS: Mapping[DeviceKind, Callable[[JsonObject, str, Report], Selector]] = {
    DeviceKind.NET: _net_selector,
    DeviceKind.ACCEL: _accel_selector,
    DeviceKind.AUX_NET: _aux_selector,
}


def _selectors(raw: object, kind: DeviceKind | None, path: str, report: Report
               ) -> tuple[tuple[Selector, ...], tuple[str, ...]]:
    """``selectors``: one object (legacy) or a non-empty list of objects, and the JSON path of
    each. With ``kind`` None (an unsupported deviceType) they are checked and none is
    returned."""
    parse: Callable[[JsonObject, str, Report], Selector | None] = (
        _unknown_kind_selector if kind is None else _SELECTOR_PARSERS[kind])
    if raw is None:
        report.error(path, 'missing: give at least one selector object, e.g. [{"drivers": ["x"]}]')
        return (), ()
    if isinstance(raw, JsonObject):
        one = parse(raw, path, report)
        return ((), ()) if one is None else ((one,), (path,))
    if not isinstance(raw, list):
        report.error(path, f"expected a selector object or a list of them, got {show(raw)}")
        return (), ()
    if not raw:
        report.error(path, "need at least one selector, got 0")
    out, paths = [], []
    for i, item in enumerate(raw):
        if not isinstance(item, JsonObject):
            report.error(partial(join, path, i), partial(_not_selector, item))
        elif (selector := parse(item, join(path, i), report)) is not None:
            out.append(selector)
            paths.append(join(path, i))
    return tuple(out), tuple(paths)


def _not_selector(value: object) -> str:
    return f"expected a selector object, got {show(value)}"


def _resource_list(doc: object, report: Report) -> list[Any]:
    """The raw ``resourceList`` items; a null document or list means none."""
    if doc is None:
        return []
    if not isinstance(doc, JsonObject):
        report.error("", f'expected an object like {{"resourceList": [...]}}, got {show(doc)}')
        return []
    data, spelled = canonical(doc, TOP_KEYS, "", report, top_key_hint)
    raw = data.get("resourceList")
    if raw is None:
        return []
    if not isinstance(raw, list):
        report.error(spelled["resourceList"],
                     f"expected a list of resource objects, got {show(raw)}")
        return []
    return raw


def _not_resource(value: object) -> str:
    return f"expected a resource object, got {show(value)}"


def _resource(raw: object, path: str, report: Report, names: Names) -> ResourceConfig | None:
    """One ``resourceList`` item; problems go to ``report`` (the value is then incomplete)."""
    if not isinstance(raw, JsonObject):
        report.error(path, partial(_not_resource, raw))
        return None
    data, spelled = canonical(raw, RESOURCE_KEYS, path, report, resource_key_hint)
    m = validate(ResourceIn, data, path, report, spelled)

    def at(key: str) -> str:
        return join(path, spelled.get(key, key))

    def type_error(key: str, value: object) -> bool:  # already reported by validate
        return value is None and data.get(key) is not None

    kind = None
    if not type_error("deviceType", m.device_type):
        kind = device_kind(m.device_type, at("deviceType"), report)
    info = additional_info(m.additional_info, at("additionalInfo"), report)
    selectors, selector_paths = _selectors(m.selectors, kind, at("selectors"), report)
    cfg = ResourceConfig(
        name=m.resource_name or "",
        prefix=m.resource_prefix or None,
        kind=kind or DeviceKind.NET,
        selectors=selectors,
        exclude_topology=bool(m.exclude_topology),
        additional_info=info,
        dra=bool(m.dra),
        selector_paths=selector_paths,
    )
    if not type_error("resourceName", m.resource_name):
        names.check(cfg, path, spelled.get("resourceName", "resourceName"))
    return cfg


def parse_config(text: str | bytes, *, default_prefix: str = DEFAULT_PREFIX,
                 strict: bool = False) -> Config:
    """Parse and validate a config document (the file's content; this reads no file).

    Args:
        text: the JSON document, as text or UTF-8 bytes, at most 1 MiB.
        default_prefix: the ``--resource-prefix`` for resources without ``resourcePrefix``.
        strict: every warning is a problem too (``sriovdp validate --strict``).

    Returns:
        the resources in file order, plus warnings (unknown keys, normalised values, ...).

    Raises:
        ConfigError: the problems found, each with its JSON path and the offending value,
            e.g. ``resourceList[1].selectors[0].pfNames[0]: bad VF range "5-2"`` (the first
            20, then ``... and K more problems``); invalid JSON gives one problem with its
            line and column. Nothing else is raised.
    """
    doc = load_json(text)
    report = Report()
    names = Names(default_prefix, report)
    resources = []
    items = _resource_list(doc, report)
    if len(items) > MAX_RESOURCES:
        report.error("resourceList", f"{len(items):,} resources; at most {MAX_RESOURCES:,} are "
                                     "supported (each is a socket and a kubelet registration)")
        items = items[:MAX_RESOURCES]  # their problems are still worth listing
    for i, raw in enumerate(items):
        cfg = _resource(raw, join("resourceList", i), report, names)
        if cfg is not None:
            resources.append(cfg)
    if report.problem_count or (strict and report.warning_count):
        raise ConfigError(report.listed_problems(strict=strict),
                          warnings=() if strict else report.listed_warnings())
    return Config(resources=tuple(resources), warnings=tuple(report.listed_warnings()))
