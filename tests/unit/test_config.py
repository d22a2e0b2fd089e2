"""parse_config: the config document → ResourceConfig values, or every problem with its path.

Scenarios: upstream-behavior.md §1.3-§1.6 and §10.1 (C2-C4, V1-V16); field-cases.md F18,
F21, F23, F24, F26, F28. C1 (missing file) belongs to the caller, which reads the file.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from sriovdp.errors import ConfigError, ConfigProblem
from sriovdp.model.config import Config, ResourceConfig, parse_config
from sriovdp.model.devices import DeviceKind
from sriovdp.model.ids import valid_resource_name
from sriovdp.model.selectors import (
    AccelSelector,
    AuxNetSelector,
    FunctionRange,
    NetSelector,
)


def _doc(*resources: object) -> str:
    return json.dumps({"resourceList": list(resources)})


def _res(name: object = "pool", selectors: object = ({},), **keys: object) -> dict[str, Any]:
    """A resource object; ``selectors`` as given (a tuple becomes a list)."""
    if isinstance(selectors, tuple):
        selectors = list(selectors)
    return {"resourceName": name, "selectors": selectors, **keys}


def _one(text: str | bytes, **kw: Any) -> ResourceConfig:
    config = parse_config(text, **kw)
    assert len(config.resources) == 1
    return config.resources[0]


def _sel(selector: dict[str, Any], device_type: str = "netDevice") -> Any:
    """The single parsed selector of a one-resource document."""
    return _one(_doc(_res(selectors=(selector,), deviceType=device_type))).selectors[0]


def _problems(text: str | bytes, **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(text, **kw)
    return [str(p) for p in excinfo.value.problems]


def _paths(text: str | bytes, **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(text, **kw)
    return [p.path for p in excinfo.value.problems]


def _warnings(text: str, **kw: Any) -> list[str]:
    return [str(w) for w in parse_config(text, **kw).warnings]


# --------------------------------------------------------------------------------------------
# §10.1 C2-C4: reading


def test_parse_rejects_with_invalid_json_when_content_is_junk() -> None:  # C2
    assert _problems("junk") == ["invalid JSON at line 1 column 1: Expecting value"]


def test_parse_returns_two_resources_when_selectors_are_single_objects() -> None:  # C3
    config = parse_config(
        _doc(
            _res("intel_sriov_netdevice", {
                "isRdma": False, "vendors": ["8086"], "devices": ["154c", "10ed"],
                "drivers": ["i40evf", "ixgbevf"],
            }),
            _res("intel_sriov_dpdk", {
                "vendors": ["8086"], "devices": ["154c", "10ed"], "drivers": ["vfio-pci"],
            }),
        ),
    )
    assert config == Config(
        resources=(
            ResourceConfig(
                name="intel_sriov_netdevice",
                selectors=(NetSelector(
                    vendors=frozenset({"8086"}), devices=frozenset({"154c", "10ed"}),
                    drivers=frozenset({"i40evf", "ixgbevf"}),
                ),),
            ),
            ResourceConfig(
                name="intel_sriov_dpdk",
                selectors=(NetSelector(
                    vendors=frozenset({"8086"}), devices=frozenset({"154c", "10ed"}),
                    drivers=frozenset({"vfio-pci"}),
                ),),
            ),
        ),
    )


def test_parse_keeps_selector_counts_when_single_object_and_list_are_mixed() -> None:  # C4
    config = parse_config(
        _doc(
            _res("intel_sriov_netdevice", {"vendors": ["8086"], "drivers": ["i40evf"]}),
            _res("dpdk", (
                {"vendors": ["8086"], "devices": ["154c", "10ed"], "drivers": ["vfio-pci"]},
                {"vendors": ["15b3"], "devices": ["1018"], "drivers": ["mlx5_core"],
                 "isRdma": True},
            )),
        )
    )
    assert [len(r.selectors) for r in config.resources] == [1, 2]
    second = config.resources[1].selectors[1]
    assert isinstance(second, NetSelector)
    assert second.is_rdma and second.vendors == {"15b3"} and second.drivers == {"mlx5_core"}


def test_parse_rejects_upstream_test_prefix_when_kubelet_would_refuse_it() -> None:
    # Upstream's C3 runs with prefix "test_"; "test_/x" can never register with a kubelet.
    assert _paths(_doc(_res("x")), default_prefix="test_") == [""]


def test_parse_accepts_utf8_bytes_when_given_bytes() -> None:
    text = _doc(_res("abc", additionalInfo={"*": {"note": "ünï ✓"}})).encode()
    assert _one(text).additional_info == {"*": {"note": "ünï ✓"}}


def test_parse_keeps_file_order_when_pools_overlap() -> None:  # F24: first pool wins later
    config = parse_config(_doc(
        _res("all", {"vendors": ["8086"], "devices": ["154c"], "drivers": ["i40evf"]}),
        _res("f2", {"pfNames": ["ens3f2"]}),
    ))
    assert [r.name for r in config.resources] == ["all", "f2"]


def test_parse_accepts_pf_name_when_host_may_lack_it() -> None:  # F28 is a host-side warning
    selector = _sel({"pfNames": ["ens1f0", "ens9f9"]})
    assert [r.name for r in selector.pf_names] == ["ens1f0", "ens9f9"]


# --------------------------------------------------------------------------------------------
# §10.1 V1-V16: validation


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        pytest.param("sriov-net_0", True, id="hyphen-underscore"),
        pytest.param("junk.net.0", False, id="dots"),
        pytest.param("invalid.name", False, id="dot"),
        pytest.param("", False, id="empty"),
        pytest.param("a b", False, id="space"),
    ],
)
def test_resource_name_rule_holds_when_checked_directly(name: str, valid: bool) -> None:  # V6
    assert valid_resource_name(name) is valid


def test_parse_rejects_name_when_it_has_a_dot() -> None:  # V1
    assert _problems(_doc(_res("invalid.name"))) == [
        ('resourceList[0].resourceName: resource name "invalid.name" contains invalid'
        ' characters: use only letters, digits, "_" and "-"')
    ]


@pytest.mark.parametrize(
    "resource",
    [
        pytest.param({"selectors": [{}]}, id="missing"),
        pytest.param(_res(""), id="empty"),
        pytest.param(_res(None), id="null"),
    ],
)
def test_parse_rejects_resource_when_name_is_missing(resource: dict[str, Any]) -> None:
    assert _paths(_doc(resource)) == ["resourceList[0].resourceName"]


def test_parse_rejects_second_resource_when_names_repeat() -> None:  # V2
    assert _problems(_doc(_res("duplicate"), _res("duplicate"))) == [
        'resourceList[1].resourceName: "intel.com/duplicate" already exists (at resourceList[0])'
    ]


def test_parse_rejects_duplicate_when_device_types_differ() -> None:
    doc = _doc(_res("dup"), _res("dup", deviceType="accelerator"))
    assert _paths(doc) == ["resourceList[1].resourceName"]


def test_parse_rejects_duplicate_when_explicit_prefix_equals_default() -> None:
    doc = _doc(_res("dup"), _res("dup", resourcePrefix="intel.com"))
    assert _paths(doc) == ["resourceList[1].resourceName"]


def test_parse_accepts_same_name_when_prefixes_differ() -> None:
    config = parse_config(_doc(_res("dup"), _res("dup", resourcePrefix="example.com")))
    assert [r.resource_name("intel.com") for r in config.resources] == [
        "intel.com/dup", "example.com/dup",
    ]


def test_parse_rejects_selector_when_rdma_and_vdpa_share_one_object() -> None:  # V3
    doc = _doc(_res(selectors=({"isRdma": True, "vdpaType": "virtio", "vendors": ["15b3"]},)))
    assert _problems(doc) == [
        ("resourceList[0].selectors[0]: isRdma and vdpaType are mutually exclusive in one"
        " selector object")
    ]


def test_parse_accepts_rdma_and_vdpa_when_in_separate_objects() -> None:  # V4
    config = parse_config(_doc(_res(selectors=({"vdpaType": "virtio"}, {"isRdma": True}))))
    first, second = config.resources[0].selectors
    assert isinstance(first, NetSelector) and first.vdpa_type == "virtio"
    assert isinstance(second, NetSelector) and second.is_rdma


def test_parse_rejects_second_selector_when_only_it_mixes_rdma_and_vdpa() -> None:  # V5
    doc = _doc(_res(selectors=({"vdpaType": "virtio"}, {"isRdma": True, "vdpaType": "virtio"})))
    assert _paths(doc) == ["resourceList[0].selectors[1]"]


def test_parse_rejects_single_object_when_rdma_and_vdpa_share_it() -> None:
    assert _paths(_doc(_res(selectors={"IsRdma": True, "vdpaType": "vhost"}))) == [
        "resourceList[0].selectors"
    ]


def _aux(*selectors: object) -> str:
    return _doc(_res(selectors=tuple(selectors), deviceType="auxNetDevice"))


def test_parse_rejects_aux_selector_when_it_is_a_net_selector() -> None:  # V7
    with pytest.raises(ConfigError) as excinfo:
        parse_config(_aux({"vendors": ["8086"], "pciAddresses": ["0000:03:02.0"]}))
    assert [str(p) for p in excinfo.value.problems] == [
        ("resourceList[0].selectors[0].pciAddresses: not a selector key for deviceType"
        " auxNetDevice (only for netDevice, accelerator): remove it or change deviceType"),
        'resourceList[0].selectors[0].auxTypes: missing: list the device types, e.g. ["sf"]',
    ]


@pytest.mark.parametrize(
    ("selectors", "paths"),
    [
        pytest.param([{"auxTypes": []}], ["selectors[0].auxTypes"], id="V8-empty"),
        pytest.param([{"auxTypes": None}], ["selectors[0].auxTypes"], id="null"),
        pytest.param([{}], ["selectors[0].auxTypes"], id="missing"),
        pytest.param(
            [{"auxTypes": ["sf"]}, {"auxTypes": []}], ["selectors[1].auxTypes"], id="V9"
        ),
        pytest.param(
            [{"auxTypes": ["sf", "eth", "rdma"]}],
            ["selectors[0].auxTypes[1]", "selectors[0].auxTypes[2]"],
            id="V10",
        ),
        pytest.param(
            [{"auxTypes": ["sf"]}, {"auxTypes": ["sf", "eth", "rdma"]}],
            ["selectors[1].auxTypes[1]", "selectors[1].auxTypes[2]"],
            id="V11",
        ),
        pytest.param([{"auxTypes": ["SF"]}], ["selectors[0].auxTypes[0]"], id="case-sensitive"),
        pytest.param([{"auxTypes": ["foo"]}], ["selectors[0].auxTypes[0]"], id="V15-foo"),
    ],
)
def test_parse_rejects_aux_selector_when_aux_types_are_not_sf(
    selectors: list[object], paths: list[str]
) -> None:
    assert _paths(_aux(*selectors)) == [f"resourceList[0].{p}" for p in paths]


def test_parse_names_unsupported_aux_type_when_rejecting_it() -> None:
    assert _problems(_aux({"auxTypes": ["sf", "eth"]})) == [
        ('resourceList[0].selectors[0].auxTypes[1]: unsupported auxiliary device type "eth":'
        ' only "sf" is supported')
    ]


def test_parse_returns_aux_selector_when_aux_types_repeat_sf() -> None:  # V12
    selector = _sel({"auxTypes": ["sf", "sf"], "pfNames": ["p0#1-3"]}, "auxNetDevice")
    assert selector == AuxNetSelector(
        aux_types=frozenset({"sf"}), pf_names=(FunctionRange("p0", ((1, 3),)),)
    )


@pytest.mark.parametrize(
    ("device_type", "selector", "expected"),
    [
        pytest.param(
            "netDevice", {"PfNames": ["eth0"]},
            NetSelector(pf_names=(FunctionRange("eth0"),)), id="V13-net",
        ),
        pytest.param(
            "accelerator", {"Vendors": ["8086"]},
            AccelSelector(vendors=frozenset({"8086"})), id="V14-accel",
        ),
        pytest.param(
            "accelerator", {"acpiIndexes": ["101"]},
            AccelSelector(acpi_indexes=frozenset({"101"})), id="accel-acpi-honoured",
        ),
        pytest.param(
            "auxNetDevice", {"auxTypes": ["sf"], "IsRdma": True},
            AuxNetSelector(aux_types=frozenset({"sf"}), is_rdma=True), id="aux",
        ),
    ],
)
def test_parse_builds_selector_of_device_type_when_keys_are_valid(
    device_type: str, selector: dict[str, Any], expected: object
) -> None:
    resource = _one(_doc(_res(selectors=(selector,), deviceType=device_type)))
    assert resource.kind == DeviceKind(device_type)
    assert resource.selectors == (expected,)


@pytest.mark.parametrize("device_type", ["netDevice", "accelerator", "auxNetDevice"])
def test_parse_rejects_selectors_when_they_are_a_string(device_type: str) -> None:  # V13-V15
    doc = _doc(_res(selectors="invalid selectors!", deviceType=device_type))
    assert _problems(doc) == [
        ('resourceList[0].selectors: expected a selector object or a list of them, got'
        ' "invalid selectors!"')
    ]


@pytest.mark.parametrize(
    ("device_type", "message"),
    [
        pytest.param(
            "foo", 'unsupported deviceType "foo": use one of "netDevice", "accelerator",'
            ' "auxNetDevice"', id="V16-unknown",
        ),
        pytest.param(
            "netdevice", 'unsupported deviceType "netdevice": deviceType is case-sensitive:'
            ' did you mean "netDevice"? (use one of "netDevice", "accelerator", "auxNetDevice")',
            id="wrong-case",
        ),
    ],
)
def test_parse_rejects_device_type_when_unsupported(device_type: str, message: str) -> None:
    assert _problems(_doc(_res(deviceType=device_type))) == [
        f"resourceList[0].deviceType: {message}"
    ]


@pytest.mark.parametrize(
    ("device_type", "hint"),
    [
        pytest.param("netDevices", 'did you mean "netDevice"?', id="plural"),
        pytest.param("acelerator", 'did you mean "accelerator"?', id="typo"),
        pytest.param("auxNetdev", 'did you mean "auxNetDevice"?', id="short"),
    ],
)
def test_parse_suggests_device_type_when_unsupported_one_is_close(
    device_type: str, hint: str
) -> None:
    assert _problems(_doc(_res(deviceType=device_type))) == [
        f'resourceList[0].deviceType: unsupported deviceType "{device_type}": {hint} (use one'
        ' of "netDevice", "accelerator", "auxNetDevice")'
    ]


def test_parse_reports_selector_problems_when_device_type_is_unsupported() -> None:
    selector = {"driver": ["iavf"], "vendors": ["80866"], "pfNames": ["p0#5-2"],
                "vdpaType": "vhostx"}
    doc = _doc(_res(deviceType="foo", selectors=(selector,)), _res("p2", selectors=5))
    assert _problems(doc) == [
        'resourceList[0].deviceType: unsupported deviceType "foo": use one of "netDevice",'
        ' "accelerator", "auxNetDevice"',
        'resourceList[0].selectors[0].driver: unknown selector key (did you mean "drivers"?)',
        'resourceList[0].selectors[0].vendors[0]: not a 4-digit hex vendor id: "80866"',
        'resourceList[0].selectors[0].pfNames[0]: bad VF range "5-2" in "p0#5-2"',
        'resourceList[0].selectors[0].vdpaType: unsupported vdpaType "vhostx": use "vhost" or'
        ' "virtio"',
        "resourceList[1].selectors: expected a selector object or a list of them, got 5",
    ]


def test_parse_accepts_any_device_types_selector_keys_when_device_type_is_unsupported() -> None:
    # which deviceType was meant is unknown: a key some deviceType takes is not an error
    doc = _doc(_res(deviceType="foo", selectors=({"auxTypes": ["sf"]}, {"pciAddresses": [
        "0000:3b:02.1"]}, {"pKeys": ["0x7fff"]})))
    assert _paths(doc) == ["resourceList[0].deviceType"]


def test_parse_reports_selector_problems_when_device_type_has_wrong_json_type() -> None:
    doc = _doc(_res(deviceType=["auxNetDevice"], selectors=({"auxTypes": ["vf"]},)))
    assert _paths(doc) == ["resourceList[0].deviceType", "resourceList[0].selectors[0].auxTypes[0]"]


def test_parse_reports_only_device_type_when_its_json_type_is_wrong_and_selectors_fit() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(_doc(_res(deviceType=["auxNetDevice"], selectors=({"auxTypes": ["sf"]},))))
    assert [p.path for p in excinfo.value.problems] == ["resourceList[0].deviceType"]
    assert excinfo.value.warnings == []


@pytest.mark.parametrize("device_type", ["", None])
def test_parse_defaults_to_net_device_when_device_type_is_empty(device_type: str | None) -> None:
    assert _one(_doc(_res(deviceType=device_type))).kind is DeviceKind.NET


# --------------------------------------------------------------------------------------------
# selectors container: single object, list, missing, null


@pytest.mark.parametrize(
    ("resource", "problem"),
    [
        pytest.param(
            {"resourceName": "a"},
            'resourceList[0].selectors: missing: give at least one selector object, e.g.'
            ' [{"drivers": ["x"]}]',
            id="missing",
        ),
        pytest.param(
            _res(selectors=None),
            'resourceList[0].selectors: missing: give at least one selector object, e.g.'
            ' [{"drivers": ["x"]}]',
            id="null",
        ),
        pytest.param(
            _res(selectors=[]),
            "resourceList[0].selectors: need at least one selector, got 0",
            id="empty-list",
        ),
        pytest.param(
            _res(selectors=[None]),
            "resourceList[0].selectors[0]: expected a selector object, got null",
            id="list-of-null",
        ),
        pytest.param(
            _res(selectors=[[]]),
            "resourceList[0].selectors[0]: expected a selector object, got []",
            id="list-of-list",
        ),
        pytest.param(
            _res(selectors=5),
            "resourceList[0].selectors: expected a selector object or a list of them, got 5",
            id="number",
        ),
    ],
)
def test_parse_rejects_resource_when_selectors_are_unusable(
    resource: dict[str, Any], problem: str
) -> None:
    assert _problems(_doc(resource)) == [problem]


def test_parse_returns_one_selector_when_selectors_is_an_empty_object() -> None:
    assert _one(_doc(_res(selectors={}))).selectors == (NetSelector(),)


# --------------------------------------------------------------------------------------------
# Go encoding/json compatibility: case-insensitive keys, null, duplicates, other keys


@pytest.mark.parametrize("key", ["IsRdma", "isRdma", "isrdma", "ISRDMA", "iSrDmA"])
def test_parse_reads_is_rdma_when_key_case_differs(key: str) -> None:
    selector = _sel({key: True})
    assert isinstance(selector, NetSelector) and selector.is_rdma


@pytest.mark.parametrize(
    ("selector", "attribute", "value"),
    [
        pytest.param({"PfNames": ["eth0"]}, "pf_names", (FunctionRange("eth0"),), id="PfNames"),
        pytest.param({"VENDORS": ["8086"]}, "vendors", frozenset({"8086"}), id="VENDORS"),
        pytest.param({"NeedVhostNet": True}, "need_vhost_net", True, id="NeedVhostNet"),
        pytest.param({"vdpatype": "vhost"}, "vdpa_type", "vhost", id="vdpatype"),
        pytest.param({"PCIADDRESSES": ["0000:03:02.0"]}, "pci_addresses",
                     frozenset({"0000:03:02.0"}), id="PCIADDRESSES"),
        pytest.param({"pkeys": ["0x7fff"]}, "pkeys", frozenset({"0x7fff"}), id="pkeys"),
    ],
)
def test_parse_reads_selector_key_when_case_differs(
    selector: dict[str, Any], attribute: str, value: object
) -> None:
    assert getattr(_sel(selector), attribute) == value
    assert parse_config(_doc(_res(selectors=(selector,)))).warnings == ()


def test_parse_reads_resource_and_top_keys_when_case_differs() -> None:
    text = json.dumps({"ResourceList": [{
        "RESOURCENAME": "a", "ResourcePrefix": "example.com", "DEVICETYPE": "accelerator",
        "excludetopology": True, "Selectors": [{"Drivers": ["vfio-pci"]}],
        "ADDITIONALINFO": {"*": {"k": "v"}},
    }]})
    assert _one(text) == ResourceConfig(
        name="a", prefix="example.com", kind=DeviceKind.ACCEL, exclude_topology=True,
        selectors=(AccelSelector(drivers=frozenset({"vfio-pci"})),),
        additional_info={"*": {"k": "v"}},
    )


def test_parse_does_not_match_key_when_folding_changes_its_length() -> None:
    # Python folds "ß" to "ss"; Go's simple folding does not, so this key is unknown.
    assert _problems(_doc(_res(selectors=({"pciAddreßes": ["0000:03:02.0"]},)))) == [
        ('resourceList[0].selectors[0]["pciAddreßes"]: unknown selector key'
         ' (did you mean "pciAddresses"?)')
    ]


def test_parse_uses_last_value_when_a_key_repeats_in_another_case() -> None:
    text = '{"resourceList":[{"resourceName":"a","selectors":[{"isRdma":true,"IsRdma":false}]}]}'
    config = parse_config(text)
    assert config.resources[0].selectors == (NetSelector(is_rdma=False),)
    assert [str(w) for w in config.warnings] == [
        ('resourceList[0].selectors[0].IsRdma: given more than once (as "isRdma" and "IsRdma");'
        " the last one is used")
    ]


def test_parse_uses_last_value_when_a_key_repeats_exactly() -> None:
    text = '{"resourceList":[{"resourceName":"a","resourceName":"b","selectors":[{}]}]}'
    assert _one(text).name == "b"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("null", id="document-null"),
        pytest.param("{}", id="empty-object"),
        pytest.param('{"resourceList": null}', id="list-null"),
        pytest.param('{"resourceList": []}', id="list-empty"),
    ],
)
def test_parse_returns_no_resources_when_document_has_none(text: str) -> None:
    assert parse_config(text) == Config()


def test_parse_leaves_defaults_when_values_are_null() -> None:
    resource = _one(_doc(_res(
        selectors=({key: None for key in (
            "vendors", "devices", "drivers", "pciAddresses", "acpiIndexes", "pfNames",
            "rootDevices", "linkTypes", "ddpProfiles", "pKeys", "IsRdma", "needVhostNet",
            "vdpaType",
        )},),
        resourcePrefix=None, deviceType=None, excludeTopology=None, additionalInfo=None,
    )))
    assert resource == ResourceConfig(name="pool", selectors=(NetSelector(),))


def test_parse_keeps_empty_additional_info_when_it_is_an_empty_object() -> None:
    assert _one(_doc(_res(additionalInfo={}))).additional_info == {}


def test_parse_treats_empty_prefix_as_default_when_resource_prefix_is_empty() -> None:
    resource = _one(_doc(_res(resourcePrefix="")))
    assert resource.prefix is None
    assert resource.resource_name("intel.com") == "intel.com/pool"


def test_parse_reads_exclude_topology_when_true() -> None:
    assert _one(_doc(_res(excludeTopology=True))).exclude_topology is True


def test_parse_warns_when_top_level_has_other_keys() -> None:
    text = json.dumps({"resourceList": [_res()], "resourcelists": [], "comment": "x"})
    assert _warnings(text) == [
        'resourcelists: unknown key (did you mean "resourceList"?)',
        "comment: unknown key, ignored",
    ]


# --------------------------------------------------------------------------------------------
# Unknown and misplaced keys (F21)


def test_parse_warns_about_resource_level_selector_key_when_misplaced() -> None:  # F21
    text = _doc({"resourceName": "a", "selectors": {"pfNames": ["ens3f0"]},
                 "rootDevices": ["03:00.1"]})
    config = parse_config(text)
    assert config.resources[0].selectors == (NetSelector(pf_names=(FunctionRange("ens3f0"),)),)
    assert [str(w) for w in config.warnings] == [
        'resourceList[0].rootDevices: unknown key (did you mean to put it inside "selectors"?)'
    ]


@pytest.mark.parametrize(
    ("device_type", "selector", "problem"),
    [
        pytest.param(
            "netDevice", {"vendors": ["8086"], "driver": ["iavf"]},
            'selectors[0].driver: unknown selector key (did you mean "drivers"?)', id="typo",
        ),
        pytest.param(
            "netDevice", {"pfName": ["eth0"]},
            'selectors[0].pfName: unknown selector key (did you mean "pfNames"?)', id="typo-pf",
        ),
        pytest.param(
            "accelerator", {"colour": "red"},
            "selectors[0].colour: unknown selector key; deviceType accelerator takes"
            " acpiIndexes, devices, drivers, pciAddresses, vendors",
            id="unknown",
        ),
        pytest.param(
            "netDevice", {"auxTypes": ["sf"]},
            "selectors[0].auxTypes: not a selector key for deviceType netDevice"
            " (only for auxNetDevice): remove it or change deviceType",
            id="aux-key-on-net",
        ),
        pytest.param(
            "accelerator", {"pfNames": ["eth0"]},
            "selectors[0].pfNames: not a selector key for deviceType accelerator"
            " (only for netDevice, auxNetDevice): remove it or change deviceType",
            id="net-key-on-accel",
        ),
        pytest.param(
            "auxNetDevice", {"auxTypes": ["sf"], "acpiIndexes": ["1"]},
            "selectors[0].acpiIndexes: not a selector key for deviceType auxNetDevice"
            " (only for netDevice, accelerator): remove it or change deviceType",
            id="acpi-on-aux",
        ),
        pytest.param(
            "netDevice", {"resourceName": "x"},
            "selectors[0].resourceName: unknown selector key (did you mean to put it in the"
            ' resource, next to "selectors"?)',
            id="resource-key-in-selector",
        ),
    ],
)
def test_parse_rejects_selector_key_when_it_does_not_apply(
    device_type: str, selector: dict[str, Any], problem: str
) -> None:  # a key the selector ignores would leave the pool wider than written
    text = _doc(_res(selectors=(selector,), deviceType=device_type))
    assert _problems(text) == [f"resourceList[0].{problem}"]


def test_parse_warns_about_resource_key_when_misspelt() -> None:
    assert _warnings(_doc(_res(excludeTopologie=True))) == [
        'resourceList[0].excludeTopologie: unknown key (did you mean "excludeTopology"?)'
    ]


def test_parse_quotes_odd_key_in_path_when_warning_about_it() -> None:
    assert [w.path for w in parse_config(_doc(_res(**{"a b": 1}))).warnings] == [
        'resourceList[0]["a b"]'
    ]


def test_error_carries_warnings_when_config_is_rejected() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(_doc(_res("a.b", Misc=1)))
    assert "warning: resourceList[0].Misc: unknown key, ignored" in str(excinfo.value)


# --------------------------------------------------------------------------------------------
# JSON types (pass 1) — every message names the path and the value


@pytest.mark.parametrize(
    ("resource", "problem"),
    [
        pytest.param(
            _res(excludeTopology="yes"),
            'resourceList[0].excludeTopology: expected a boolean, got "yes"', id="bool",
        ),
        pytest.param(
            _res(123), "resourceList[0].resourceName: expected a string, got 123", id="name",
        ),
        pytest.param(
            _res(resourcePrefix=["a"]),
            'resourceList[0].resourcePrefix: expected a string, got ["a"]', id="prefix",
        ),
        pytest.param(
            _res(deviceType=1), "resourceList[0].deviceType: expected a string, got 1",
            id="device-type",
        ),
        pytest.param(
            _res(additionalInfo={"*": {"k": 1}}),
            'resourceList[0].additionalInfo["*"].k: expected a string, got 1', id="info-value",
        ),
        pytest.param(
            _res(additionalInfo={"*": "v"}),
            'resourceList[0].additionalInfo["*"]: expected an object, got "v"', id="info-inner",
        ),
        pytest.param(
            _res(additionalInfo=[]),
            "resourceList[0].additionalInfo: expected an object, got []", id="info-outer",
        ),
        pytest.param(
            _res(selectors=({"vendors": "8086"},)),
            'resourceList[0].selectors[0].vendors: expected a list of strings, got "8086"',
            id="list",
        ),
        pytest.param(
            _res(selectors=({"pfNames": ["p0", 1]},)),
            "resourceList[0].selectors[0].pfNames[1]: expected a string, got 1", id="item",
        ),
        pytest.param(
            _res(selectors=({"drivers": [None]},)),
            "resourceList[0].selectors[0].drivers[0]: expected a string, got null",
            id="null-item",
        ),
        pytest.param(
            _res(selectors=({"IsRdma": "true"},)),
            'resourceList[0].selectors[0].IsRdma: expected a boolean, got "true"', id="rdma",
        ),
        pytest.param(
            _res(selectors=({"needVhostNet": 1},)),
            "resourceList[0].selectors[0].needVhostNet: expected a boolean, got 1", id="int-bool",
        ),
        pytest.param(
            _res(selectors=({"vdpaType": ["vhost"]},)),
            'resourceList[0].selectors[0].vdpaType: expected a string, got ["vhost"]',
            id="vdpa",
        ),
    ],
)
def test_parse_rejects_value_when_json_type_is_wrong(
    resource: dict[str, Any], problem: str
) -> None:
    assert _problems(_doc(resource)) == [problem]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("[]", 'expected an object like {"resourceList": [...]}, got []', id="array"),
        pytest.param("42", 'expected an object like {"resourceList": [...]}, got 42', id="number"),
        pytest.param(
            '{"resourceList": {}}', "resourceList: expected a list of resource objects, got {}",
            id="list-object",
        ),
        pytest.param(
            '{"resourceList": [null]}', "resourceList[0]: expected a resource object, got null",
            id="null-resource",
        ),
        pytest.param(
            '{"resourceList": ["a"]}', 'resourceList[0]: expected a resource object, got "a"',
            id="string-resource",
        ),
    ],
)
def test_parse_rejects_document_when_structure_is_wrong(text: str, problem: str) -> None:
    assert _problems(text) == [problem]


def test_parse_shortens_value_when_it_is_long() -> None:
    [problem] = _problems(_doc(_res("x", excludeTopology="y" * 500)))
    assert problem.startswith('resourceList[0].excludeTopology: expected a boolean, got "yyy')
    assert problem.endswith('y...')
    assert len(problem) < 120


# --------------------------------------------------------------------------------------------
# Invalid JSON (F26)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            '"resourceList": [ {"resourceName":"a"} ] }',
            'invalid JSON at line 1 column 15: Extra data (is the opening "{" missing?)',
            id="F26-missing-brace",
        ),
        pytest.param(
            '{\n  "resourceList": [\n    {"resourceName": "a",}\n  ]\n}',
            "invalid JSON at line 3 column 26: Expecting property name enclosed in double quotes",
            id="trailing-comma",
        ),
        pytest.param("", 'invalid JSON at line 1 column 1: the document is empty (expected an '
                     'object with "resourceList")', id="empty"),
        pytest.param("\n \n", 'invalid JSON at line 3 column 1: the document is empty '
                     '(expected an object with "resourceList")', id="blank-lines"),
        pytest.param('\ufeff{"resourceList": []}', "invalid JSON at line 1 column 1: the "
                     "document starts with a byte order mark (BOM): save it as UTF-8 "
                     "without one", id="bom"),
        pytest.param(
            '{"resourceList": NaN}',
            "resourceList: invalid JSON at line 1 column 18: NaN is not a JSON value", id="nan",
        ),
        pytest.param(
            '{"a": -Infinity}', "a: invalid JSON at line 1 column 7: -Infinity is not a JSON value",
            id="infinity",
        ),
        pytest.param(
            "[" * 200_000, "invalid JSON at line 1 column 65: nested more than 64 levels deep",
            id="deep",
        ),
    ],
)
def test_parse_reports_position_when_json_is_invalid(text: str, problem: str) -> None:
    assert _problems(text) == [problem]


def test_parse_rejects_bytes_when_not_utf8() -> None:
    assert _problems(b'{"resourceList": "\xff"}') == ["invalid UTF-8 at byte 18 (line 1 column 19)"]


def test_parse_rejects_huge_number_when_it_is_in_a_typed_field() -> None:
    text = '{"resourceList": [{"selectors": {}, "resourceName": ' + "9" * 5000 + "}]}"
    [problem] = _problems(text)
    assert problem.startswith("resourceList[0].resourceName: expected a string, got 9999")


def test_parse_ignores_huge_number_when_it_is_in_an_unknown_key() -> None:
    text = '{"resourceList": [], "x": ' + "9" * 5000 + ", \"y\": 1e999}"
    assert parse_config(text).resources == ()


# --------------------------------------------------------------------------------------------
# Values (pass 2): ranges (F23), addresses (F18), hex ids, vdpaType, linkTypes


def test_parse_selects_listed_vfs_when_pf_names_has_ranges() -> None:  # F23 A
    [item] = _sel({"pfNames": ["ens2f1#0,2-4,7"]}).pf_names
    assert [i for i in range(8) if item.selects(i)] == [0, 2, 3, 4, 7]


def test_parse_selects_listed_vfs_when_root_devices_has_ranges() -> None:  # F23 B
    [item] = _sel({"rootDevices": ["0000:3b:00.1#6-7"]}).root_devices
    assert item.name == "0000:3b:00.1"
    assert [i for i in range(8) if item.selects(i)] == [6, 7]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        pytest.param("ens2f1#3-", 'bad VF range "3-" in "ens2f1#3-"', id="F23-C"),
        pytest.param("p0#1#2", 'more than one "#" in "p0#1#2"', id="two-hashes"),
        pytest.param("p0#", 'bad VF index "" in "p0#"', id="empty-index"),
        pytest.param("p0# 3", 'bad VF index " 3" in "p0# 3"', id="space"),
        pytest.param("p0#5-2", 'bad VF range "5-2" in "p0#5-2"', id="reversed"),
        pytest.param("#1", 'no name before "#" in "#1"', id="no-name"),
        pytest.param("", "empty name", id="empty"),
    ],
)
def test_parse_rejects_pf_name_when_range_is_malformed(item: str, message: str) -> None:
    doc = _doc(_res("a"), _res("b", selectors=({}, {"pfNames": ["ok", item]})))
    assert _problems(doc) == [f"resourceList[1].selectors[1].pfNames[1]: {message}"]


def test_parse_rejects_root_device_when_range_is_malformed() -> None:
    assert _problems(_doc(_res(selectors=({"rootDevices": ["0000:3b:00.1#2-1"]},)))) == [
        'resourceList[0].selectors[0].rootDevices[0]: bad VF range "2-1" in "0000:3b:00.1#2-1"'
    ]


def test_parse_rejects_aux_pf_name_when_range_is_malformed() -> None:
    assert _paths(_aux({"auxTypes": ["sf"], "pfNames": ["p0#x"]})) == [
        "resourceList[0].selectors[0].pfNames[0]"
    ]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        pytest.param("pciAddresses", "0000:00:06.0", "0000:00:06.0", id="pci-full"),
        pytest.param("rootDevices", "0000:86:00.0#1", "0000:86:00.0", id="root-full"),
        pytest.param("rootDevices", "0000:86:00.A", None, id="root-bad-function"),
    ],
)
def test_parse_keeps_address_when_it_is_in_full_form(
    key: str, value: str, expected: str | None
) -> None:
    text = _doc(_res(selectors=({key: [value]},)))
    if expected is None:
        assert _paths(text) == [f"resourceList[0].selectors[0].{key}[0]"]
        return
    config = parse_config(text)
    assert config.warnings == ()
    selector = config.resources[0].selectors[0]
    assert isinstance(selector, NetSelector)
    names = selector.pci_addresses if key == "pciAddresses" else {
        r.name for r in selector.root_devices
    }
    assert names == {expected}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("00:06.0", "0000:00:06.0", id="F18-short"),
        pytest.param("0000:3B:02.1", "0000:3b:02.1", id="upper-case"),
        pytest.param("3b:2.1", "0000:3b:02.1", id="one-digit-slot"),
    ],
)
def test_parse_normalises_pci_address_with_warning_when_form_is_not_full(
    value: str, expected: str
) -> None:
    config = parse_config(_doc(_res(selectors=({"pciAddresses": [value]},))))
    assert config.resources[0].selectors[0] == NetSelector(pci_addresses=frozenset({expected}))
    assert [str(w) for w in config.warnings] == [
        (f'resourceList[0].selectors[0].pciAddresses[0]: "{value}" read as "{expected}": the'
        " full domain:bus:device.function form sysfs uses (the Go plugin would match nothing)")
    ]


def test_parse_normalises_root_device_with_warning_when_short() -> None:
    config = parse_config(_doc(_res(selectors=({"rootDevices": ["86:00.2#0-2"]},))))
    assert config.resources[0].selectors[0] == NetSelector(
        root_devices=(FunctionRange("0000:86:00.2", ((0, 2),)),)
    )
    assert [w.path for w in config.warnings] == ["resourceList[0].selectors[0].rootDevices[0]"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        pytest.param(
            "pciAddresses", "0000:03:02", 'not a PCI address: "0000:03:02", expected e.g.'
            ' "0000:3b:02.1"', id="pci-garbage",
        ),
        pytest.param(
            "rootDevices", "ens1f0#1", 'not a PCI address: "ens1f0", expected e.g.'
            ' "0000:3b:02.1" (rootDevices takes PF PCI addresses; use pfNames for interface'
            " names)", id="root-netdev",
        ),
    ],
)
def test_parse_rejects_address_when_it_is_garbage(key: str, value: str, message: str) -> None:
    assert _problems(_doc(_res(selectors=({key: [value]},)))) == [
        f"resourceList[0].selectors[0].{key}[0]: {message}"
    ]


@pytest.mark.parametrize(
    ("key", "value", "expected", "warned"),
    [
        pytest.param("vendors", "8086", "8086", False, id="vendor-plain"),
        pytest.param("vendors", "0x8086", "8086", True, id="vendor-0x"),
        pytest.param("vendors", "15B3", "15b3", True, id="vendor-upper"),
        pytest.param("devices", "0X154C", "154c", True, id="device-0X-upper"),
        pytest.param("devices", "154c", "154c", False, id="device-plain"),
    ],
)
def test_parse_normalises_hex_id_when_it_has_prefix_or_upper_case(
    key: str, value: str, expected: str, warned: bool
) -> None:
    config = parse_config(_doc(_res(selectors=({key: [value]},))))
    assert getattr(config.resources[0].selectors[0], key) == {expected}
    assert [w.path for w in config.warnings] == (
        [f"resourceList[0].selectors[0].{key}[0]"] if warned else []
    )


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [
        pytest.param("vendors", "intel", "vendor", id="word"),
        pytest.param("vendors", "86", "vendor", id="short"),
        pytest.param("devices", "154c0", "device", id="long"),
        pytest.param("devices", "", "device", id="empty"),
        pytest.param("devices", "0x", "device", id="bare-0x"),
        pytest.param("vendors", " 8086", "vendor", id="space"),
    ],
)
def test_parse_rejects_hex_id_when_not_four_hex_digits(key: str, value: str, what: str) -> None:
    assert _problems(_doc(_res(selectors=({key: ["8086", value]},)))) == [
        f"resourceList[0].selectors[0].{key}[1]: not a 4-digit hex {what} id: {json.dumps(value)}"
    ]


def test_parse_checks_parent_hex_ids_when_device_type_is_aux() -> None:
    assert _paths(_aux({"auxTypes": ["sf"], "vendors": ["mlx"]})) == [
        "resourceList[0].selectors[0].vendors[0]"
    ]


@pytest.mark.parametrize("vdpa_type", ["vhost", "virtio", ""])
def test_parse_accepts_vdpa_type_when_supported(vdpa_type: str) -> None:
    assert _sel({"vdpaType": vdpa_type}).vdpa_type == (vdpa_type or None)


def test_parse_rejects_vdpa_type_when_unsupported() -> None:
    assert _problems(_doc(_res(selectors=({"vdpaType": "vhost-vdpa"},)))) == [
        ('resourceList[0].selectors[0].vdpaType: unsupported vdpaType "vhost-vdpa": use "vhost"'
        ' or "virtio"')
    ]


def test_parse_warns_when_link_types_has_more_than_one_value() -> None:
    config = parse_config(_doc(_res(selectors=({"linkTypes": ["ether", "infiniband"]},))))
    assert config.resources[0].selectors[0] == NetSelector(
        link_types=frozenset({"ether", "infiniband"})
    )
    assert [str(w) for w in config.warnings] == [
        ('resourceList[0].selectors[0].linkTypes: more than one link type ["ether","infiniband"]:'
        " a device has exactly one")
    ]


def test_parse_normalises_additional_info_keys_when_they_are_addresses() -> None:
    config = parse_config(_doc(_res(additionalInfo={
        "*": {"a": "1"}, "0000:3B:02.1": {"b": "2"}, "eth0": {"c": "3"}, "0000:3b:02.2": None,
    })))
    assert config.resources[0].additional_info == {
        "*": {"a": "1"}, "0000:3b:02.1": {"b": "2"}, "eth0": {"c": "3"}, "0000:3b:02.2": {},
    }
    assert [w.path for w in config.warnings] == [
        'resourceList[0].additionalInfo["0000:3B:02.1"]',
        "resourceList[0].additionalInfo.eth0",
    ]


# --------------------------------------------------------------------------------------------
# Extended resource names the kubelet accepts (kubelet-protocol §2.3)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param(
            "_x", 'resource name "_x" must start and end with a letter or digit'
            ' (the kubelet rejects "intel.com/_x")', id="leading-underscore",
        ),
        pytest.param(
            "x-", 'resource name "x-" must start and end with a letter or digit'
            ' (the kubelet rejects "intel.com/x-")', id="trailing-hyphen",
        ),
        pytest.param(
            "a" * 64, f'resource name "{"a" * 56}... is 64 characters long; the kubelet accepts'
            " at most 63", id="64-chars",
        ),
    ],
)
def test_parse_rejects_name_when_kubelet_would(name: str, message: str) -> None:
    assert _problems(_doc(_res(name))) == [f"resourceList[0].resourceName: {message}"]


@pytest.mark.parametrize("name", ["a" * 63, "A", "sriov-net_0", "0"])
def test_parse_accepts_name_when_kubelet_would(name: str) -> None:
    assert _one(_doc(_res(name))).name == name


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        pytest.param("Intel.com", 'is not a lower-case DNS subdomain like "example.com"',
                     id="upper-case"),
        pytest.param("a/b", 'is not a lower-case DNS subdomain like "example.com"', id="slash"),
        pytest.param("a_b.com", 'is not a lower-case DNS subdomain like "example.com"',
                     id="underscore"),
        pytest.param("-a.com", 'is not a lower-case DNS subdomain like "example.com"',
                     id="leading-hyphen"),
        pytest.param("a" * 245, 'is not a lower-case DNS subdomain like "example.com"',
                     id="too-long"),
        pytest.param("kubernetes.io", 'is reserved: the kubelet rejects names containing'
                     ' "kubernetes.io/"', id="kubernetes-io"),
        pytest.param("foo.kubernetes.io", 'is reserved: the kubelet rejects names containing'
                     ' "kubernetes.io/"', id="sub-kubernetes-io"),
        pytest.param("requests.example.com", 'is reserved: the kubelet rejects names starting'
                     ' with "requests."', id="requests"),
    ],
)
def test_parse_rejects_resource_prefix_when_kubelet_would(prefix: str, reason: str) -> None:
    [problem] = _problems(_doc(_res(resourcePrefix=prefix)))
    assert problem.startswith("resourceList[0].resourcePrefix: resource prefix ")
    assert problem.endswith(reason)


@pytest.mark.parametrize("prefix", ["example.com", "a" * 244, "nvidia.com", "k8s.io", "x"])
def test_parse_accepts_resource_prefix_when_kubelet_would(prefix: str) -> None:
    assert _one(_doc(_res(resourcePrefix=prefix))).prefix == prefix


def test_parse_reports_bad_default_prefix_once_when_several_resources_use_it() -> None:
    doc = _doc(_res("a"), _res("b"), _res("c", resourcePrefix="example.com"))
    assert _problems(doc, default_prefix="Intel.com") == [
        ('default resource prefix "Intel.com" is not a lower-case DNS subdomain like'
        ' "example.com"')
    ]


def test_parse_accepts_bad_default_prefix_when_no_resource_uses_it() -> None:
    doc = _doc(_res("a", resourcePrefix="example.com"))
    assert parse_config(doc, default_prefix="Intel.com").resources[0].name == "a"


def test_parse_rejects_second_name_when_two_names_share_an_env_var() -> None:
    assert _problems(_doc(_res("net"), _res("NET"))) == [
        ('resourceList[1].resourceName: "intel.com/NET" and "intel.com/net" (at'
         " resourceList[0].resourceName) would both set PCIDEVICE_INTEL_COM_NET in a container"
         " given both: rename one of them")
    ]


# --------------------------------------------------------------------------------------------
# Every problem at once


def test_parse_reports_every_problem_when_config_has_many() -> None:
    doc = _doc(
        _res("invalid.name", excludeTopology="yes", selectors=(
            {"pfNames": ["p0#5-2"], "isRdma": True, "vdpaType": "virtio"}, None,
        )),
        _res("b", deviceType="auxNetDevice", selectors=({"auxTypes": ["eth"]},),
             additionalInfo={"*": {"k": 1}}),
        _res("b", deviceType="auxNetDevice", selectors=None),
        _res("c", deviceType="gpu"),
        7,
        _res("good", selectors=({"vendors": ["0x8086"]},)),
    )
    with pytest.raises(ConfigError) as excinfo:
        parse_config(doc)
    assert [p.path for p in excinfo.value.problems] == [
        "resourceList[0].excludeTopology",
        "resourceList[0].selectors[0]",
        "resourceList[0].selectors[0].pfNames[0]",
        "resourceList[0].selectors[1]",
        "resourceList[0].resourceName",
        "resourceList[1].additionalInfo[\"*\"].k",
        "resourceList[1].selectors[0].auxTypes[0]",
        "resourceList[2].selectors",
        "resourceList[2].resourceName",
        "resourceList[3].deviceType",
        "resourceList[4]",
    ]
    assert [w.path for w in excinfo.value.warnings] == ["resourceList[5].selectors[0].vendors[0]"]
    assert all(isinstance(p, ConfigProblem) for p in excinfo.value.problems)


# --------------------------------------------------------------------------------------------
# Robustness: odd inputs anywhere give a Config or a ConfigError, never anything else

_ODD: list[object] = [
    None, True, False, 0, -1, 1.5, 10**30, 1e300, "", "x", "0x8086", "p0#3-", "00:06.0",
    [], [None], [1], [[]], [{}], ["sf"], {}, {"a": 1}, {"*": None}, [[[[["deep"]]]]],
]
_SELECTOR_KEYS = [
    "vendors", "devices", "drivers", "pciAddresses", "acpiIndexes", "pfNames", "rootDevices",
    "linkTypes", "ddpProfiles", "pKeys", "IsRdma", "needVhostNet", "vdpaType", "auxTypes",
]
_RESOURCE_KEYS = [
    "resourceName", "resourcePrefix", "deviceType", "excludeTopology", "selectors",
    "additionalInfo",
]


def _odd_documents() -> list[object]:
    docs: list[object] = list(_ODD)
    for odd in _ODD:
        docs.append({"resourceList": odd})
        docs.append({"resourceList": [odd]})
        for key in _RESOURCE_KEYS:
            docs.append({"resourceList": [{**_res(), key: odd}]})
        for device_type in ("netDevice", "accelerator", "auxNetDevice"):
            for key in _SELECTOR_KEYS:
                selector = {"auxTypes": ["sf"], key: odd}
                docs.append({"resourceList": [_res(selectors=(selector,), deviceType=device_type)]})
                docs.append({"resourceList": [_res(selectors={key: [odd]})]})
        docs.append({"resourceList": [_res(additionalInfo={"*": odd, "0000:00:01.0": {"k": odd}})]})
    return docs


def _ok_or_config_error(text: str | bytes) -> None:
    try:
        result = parse_config(text)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, ConfigProblem) for p in exc.problems)
        str(exc).encode("utf-8")  # printable
    else:
        assert isinstance(result, Config)


def test_parse_raises_only_config_error_when_values_are_odd() -> None:
    for doc in _odd_documents():
        _ok_or_config_error(json.dumps(doc))


def test_parse_raises_only_config_error_when_text_is_mangled() -> None:
    base = json.dumps({"resourceList": [
        _res("a", selectors=({"pfNames": ["ens1#0-3"], "vendors": ["8086"], "IsRdma": True},)),
        _res("b", deviceType="auxNetDevice", selectors=({"auxTypes": ["sf"]},),
             additionalInfo={"*": {"k": "v"}}),
    ]})
    alphabet = '{}[]",:#-0123456789 nulltruefalse\\\ud800\xff\x00ßK'
    rng = random.Random(20240601)
    for _ in range(3000):
        chars = list(base)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(chars))
            action = rng.randrange(3)
            if action == 0:
                del chars[pos]
            elif action == 1:
                chars.insert(pos, rng.choice(alphabet))
            else:
                chars[pos] = rng.choice(alphabet)
        text = "".join(chars)
        _ok_or_config_error(text)
        _ok_or_config_error(text.encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------------------------
# POSIX env names (issue 11 item 1), strict selectors (item 2), keys as written (issue 9)


@pytest.mark.parametrize(
    ("first", "second", "env"),
    [
        pytest.param(_res("e810-c"), _res("e810_c"), "PCIDEVICE_INTEL_COM_E810_C", id="hyphen"),
        pytest.param(
            _res("x", resourcePrefix="a-b.io"), _res("x", resourcePrefix="a.b.io"),
            "PCIDEVICE_A_B_IO_X", id="prefix",
        ),
    ],
)
def test_parse_rejects_second_resource_when_posix_env_names_collide(
    first: dict[str, Any], second: dict[str, Any], env: str
) -> None:
    [problem] = _problems(_doc(first, second))
    assert problem.startswith("resourceList[1].resourceName: ")
    assert "(at resourceList[0].resourceName)" in problem
    assert f"would both set {env} " in problem


def test_parse_accepts_hyphenated_name_when_its_posix_form_is_unique() -> None:
    config = parse_config(_doc(_res("e810-c"), _res("e810-d")))
    assert [r.name for r in config.resources] == ["e810-c", "e810-d"]
    assert config.warnings == ()


def test_parse_accepts_selector_typo_fix_when_the_key_is_right() -> None:
    sel = _sel({"vendors": ["8086"], "drivers": ["iavf"]})
    assert sel == NetSelector(vendors=frozenset({"8086"}), drivers=frozenset({"iavf"}))


def test_parse_rejects_warnings_as_problems_when_strict() -> None:
    text = json.dumps({"resourceList": [_res(selectors=({"vendors": ["0x8086"]},))],
                       "colour": "red"})
    assert len(parse_config(text).warnings) == 2
    with pytest.raises(ConfigError) as excinfo:
        parse_config(text, strict=True)
    assert [p.path for p in excinfo.value.problems] == [
        "colour", "resourceList[0].selectors[0].vendors[0]"]
    assert str(excinfo.value.problems[0]) == \
        "colour: unknown key, ignored (a warning; strict mode refuses it)"
    assert excinfo.value.warnings == []


def test_parse_accepts_config_when_strict_and_there_are_no_warnings() -> None:
    assert parse_config(_doc(_res()), strict=True).resources[0].name == "pool"


def test_parse_names_key_as_written_when_its_json_type_is_wrong() -> None:
    assert _problems(_doc(_res(selectors=({"isRdma": "true"},)))) == [
        'resourceList[0].selectors[0].isRdma: expected a boolean, got "true"'
    ]


def test_parse_names_list_key_as_written_when_an_item_is_bad() -> None:
    assert _problems(_doc(_res(selectors=({"PFNAMES": ["p0#5-2"]},)))) == [
        'resourceList[0].selectors[0].PFNAMES[0]: bad VF range "5-2" in "p0#5-2"'
    ]


def test_parse_names_only_the_given_address_when_normalising_it() -> None:
    [warning] = _warnings(_doc(_res(selectors=({"pciAddresses": ["3b:02.0"]},))))
    assert '"3b:02.0" read as "0000:3b:02.0"' in warning
    assert "3b:02.1" not in warning
