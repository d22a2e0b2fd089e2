"""Selector values: the ``#`` range syntax and which field rejects a PCI function.

Tables follow upstream-behavior.md §10.11 (selector unit tests), §10.3 P3 (filtering the
five mock devices) and §3.3 (the range syntax and its edge cases).
"""

from __future__ import annotations

import pytest

from sriovdp.model.devices import AuxFunction, PciFunction, RdmaInfo, VdpaInfo
from sriovdp.model.selectors import (
    AccelSelector,
    AuxNetSelector,
    FunctionRange,
    NetSelector,
    matches,
    parse_function_range,
    rejecting_field,
)


def _fn(**kw: object) -> PciFunction:
    base: dict[str, object] = {
        "address": "0000:03:02.0",
        "vendor": "8086",
        "device": "154c",
        "class_code": 0x020000,
    }
    base.update(kw)
    return PciFunction(**base)  # type: ignore[arg-type]


def _vf(pf: str, index: int | None) -> PciFunction:
    """A function of PF netdev ``pf``; index None is upstream's funcID -1 (not a VF)."""
    return _fn(pf_netdev=pf, physfn="0000:86:00.0", vf_index=index)


def _child_of(root: str, index: int | None) -> PciFunction:
    return _fn(pf_netdev="eth9", physfn=root, vf_index=index)


# --------------------------------------------------------------------------------------------
# §10.11: pfNames and rootDevices with ranges

PF_NAMES = NetSelector(
    pf_names=tuple(map(parse_function_range, ["ens0", "ens2f0#1", "ens2f1#0,3-5,7"]))
)


@pytest.mark.parametrize(
    ("pf", "index", "selected"),
    [
        pytest.param("ens0", None, True, id="ens0-any"),
        pytest.param("eth0", None, False, id="eth0-not-listed"),
        pytest.param("ens2f0", 1, True, id="ens2f0-1"),
        pytest.param("ens2f1", 0, True, id="ens2f1-0"),
        pytest.param("ens2f1", 1, False, id="ens2f1-1"),
        pytest.param("ens2f1", 2, False, id="ens2f1-2"),
        pytest.param("ens2f1", 3, True, id="ens2f1-3"),
        pytest.param("ens2f1", 4, True, id="ens2f1-4"),
        pytest.param("ens2f1", 5, True, id="ens2f1-5"),
        pytest.param("ens2f1", 6, False, id="ens2f1-6"),
        pytest.param("ens2f1", 7, True, id="ens2f1-7"),
    ],
)
def test_pf_names_select_listed_vf_indexes_when_ranges_are_given(
    pf: str, index: int | None, selected: bool
) -> None:
    assert matches(PF_NAMES, _vf(pf, index)) is selected
    assert rejecting_field(PF_NAMES, _vf(pf, index)) == (None if selected else "pfNames")


ROOT_DEVICES = NetSelector(
    root_devices=tuple(
        map(parse_function_range, ["0000:86:00.0", "0000:86:00.1#1", "0000:86:00.2#0-2,5,7"])
    )
)


@pytest.mark.parametrize(
    ("root", "index", "selected"),
    [
        pytest.param("0000:86:00.0", None, True, id="86:00.0-any"),
        pytest.param("0000:a0:00.0", None, False, id="a0:00.0-not-listed"),
        pytest.param("0000:86:00.1", 1, True, id="86:00.1-1"),
        *(
            pytest.param("0000:86:00.2", i, i in {0, 1, 2, 5, 7}, id=f"86:00.2-{i}")
            for i in range(8)
        ),
    ],
)
def test_root_devices_select_listed_vf_indexes_when_ranges_are_given(
    root: str, index: int | None, selected: bool
) -> None:
    fn = _child_of(root, index)
    assert rejecting_field(ROOT_DEVICES, fn) == (None if selected else "rootDevices")


def test_pf_names_match_case_insensitively_when_case_differs() -> None:
    selector = NetSelector(pf_names=(parse_function_range("ENS0#1"),))
    assert matches(selector, _vf("ens0", 1))


def test_pf_names_reject_when_function_has_no_pf_netdev() -> None:
    selector = NetSelector(pf_names=(parse_function_range("ens0"),))
    assert rejecting_field(selector, _fn()) == "pfNames"


def test_pf_names_count_every_item_for_a_pf_when_the_pf_is_listed_twice() -> None:
    # Deliberate fix of the Go quirk where only the first item naming the PF counts.
    selector = NetSelector(pf_names=tuple(map(parse_function_range, ["eth0#0-1", "eth0#5"])))
    assert [matches(selector, _vf("eth0", i)) for i in range(7)] == [
        True, True, False, False, False, True, False,
    ]


def test_index_range_rejects_non_vf_when_a_range_is_given() -> None:
    selector = NetSelector(pf_names=(parse_function_range("eth0#0-1000"),))
    assert rejecting_field(selector, _vf("eth0", None)) == "pfNames"
    assert matches(selector, _vf("eth0", 999))


# --------------------------------------------------------------------------------------------
# §3.3: parse_function_range


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param("ens1f0", FunctionRange("ens1f0"), id="plain"),
        pytest.param("ENS1F0", FunctionRange("ens1f0"), id="case-folded"),
        pytest.param("ens1f0#3", FunctionRange("ens1f0", ((3, 3),)), id="one-index"),
        pytest.param(
            "ens2f1#0,2-4,7", FunctionRange("ens2f1", ((0, 0), (2, 4), (7, 7))), id="list"
        ),
        pytest.param("p0#+3,007", FunctionRange("p0", ((3, 3), (7, 7))), id="atoi-plus-zeros"),
        pytest.param("p0#1-3,2-5,5,0", FunctionRange("p0", ((0, 5),)), id="overlaps-merged"),
        pytest.param("p0#4-4", FunctionRange("p0", ((4, 4),)), id="single-range"),
        pytest.param(
            "0000:3B:00.1#6-7", FunctionRange("0000:3b:00.1", ((6, 7),)), id="root-device"
        ),
    ],
)
def test_function_range_parses_when_item_is_well_formed(
    item: str, expected: FunctionRange
) -> None:
    assert parse_function_range(item) == expected


@pytest.mark.parametrize(
    ("item", "message"),
    [
        pytest.param("ens2f1#3-", 'bad VF range "3-"', id="open-end"),
        pytest.param("p0#-3", 'bad VF range "-3"', id="open-start"),
        pytest.param("p0#5-2", 'bad VF range "5-2"', id="reversed"),
        pytest.param("p0#1-2-3", 'bad VF range "1-2-3"', id="two-dashes"),
        pytest.param("p0#a-b", 'bad VF range "a-b"', id="letters-range"),
        pytest.param("p0#1#2", 'more than one "#" in "p0#1#2"', id="two-hashes"),
        pytest.param("p0#", 'bad VF index ""', id="nothing-after-hash"),
        pytest.param("p0# 3", 'bad VF index " 3"', id="space"),
        pytest.param("p0#1,", 'bad VF index ""', id="trailing-comma"),
        pytest.param("p0#abc", 'bad VF index "abc"', id="letters"),
        pytest.param("p0#3\n", 'bad VF index "3\\n"', id="newline"),
        pytest.param("p0#\u0661", 'bad VF index "\u0661"', id="non-ascii-digit"),
        pytest.param("#3", 'no name before "#" in "#3"', id="no-name"),
        pytest.param("", "empty name", id="empty"),
        pytest.param(
            "p0#9223372036854775808",
            'VF index out of range in "9223372036854775808"',
            id="int64-overflow",
        ),
    ],
)
def test_function_range_raises_when_item_is_malformed(item: str, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_function_range(item)
    assert str(excinfo.value) == message


def test_function_range_selects_by_its_bounds_when_range_is_huge() -> None:
    # a range of 2**63 indexes is compared, never listed: listing it would not end
    item = parse_function_range("sf0#0-9223372036854775807")
    assert item.selects(4294967295)
    assert not item.selects(None)


# --------------------------------------------------------------------------------------------
# §10.11: single-field keep/drop


@pytest.mark.parametrize(
    ("selector", "kept", "dropped", "field"),
    [
        pytest.param(
            NetSelector(vendors=frozenset({"8086"})),
            _fn(vendor="8086"), _fn(vendor="15b3"), "vendors", id="vendor",
        ),
        pytest.param(
            NetSelector(devices=frozenset({"10ed"})),
            _fn(device="10ed"), _fn(device="154c"), "devices", id="device",
        ),
        pytest.param(
            NetSelector(drivers=frozenset({"vfio-pci"})),
            _fn(driver="vfio-pci"), _fn(driver="i40evf"), "drivers", id="driver",
        ),
        pytest.param(
            NetSelector(drivers=frozenset({"vfio-pci"})),
            _fn(driver="vfio-pci"), _fn(driver=None), "drivers", id="driver-unbound",
        ),
        pytest.param(
            NetSelector(link_types=frozenset({"ether"})),
            _fn(link_type="ether"), _fn(link_type="infiniband"), "linkTypes", id="link-type",
        ),
        pytest.param(
            NetSelector(acpi_indexes=frozenset({"101"})),
            _fn(acpi_index="101"), _fn(acpi_index="102"), "acpiIndexes", id="acpi-index",
        ),
        pytest.param(
            AccelSelector(vendors=frozenset({"8086"})),
            _fn(vendor="8086", class_code=0x120000), _fn(vendor="15b3"), "vendors",
            id="accel-vendor",
        ),
        pytest.param(
            AccelSelector(acpi_indexes=frozenset({"101"})),
            _fn(acpi_index="101"), _fn(acpi_index=""), "acpiIndexes", id="accel-acpi-index",
        ),
    ],
)
def test_selector_field_keeps_matching_function_when_value_is_listed(
    selector: NetSelector | AccelSelector, kept: PciFunction, dropped: PciFunction, field: str
) -> None:
    assert rejecting_field(selector, kept) is None
    assert rejecting_field(selector, dropped) == field


@pytest.mark.parametrize(
    ("address", "kept"),
    [
        pytest.param("0000:03:02.0", True, id="02.0"),
        pytest.param("0000:03:02.1", True, id="02.1"),
        pytest.param("0000:03:02.2", False, id="02.2"),
        pytest.param("0000:03:02.3", False, id="02.3"),
    ],
)
def test_pci_addresses_keep_listed_functions_when_full_form_is_given(
    address: str, kept: bool
) -> None:
    selector = NetSelector(pci_addresses=frozenset({"0000:03:02.0", "0000:03:02.1"}))
    assert matches(selector, _fn(address=address)) is kept


def test_empty_selector_matches_any_function_when_no_field_is_set() -> None:
    assert matches(NetSelector(), _fn())
    assert matches(AccelSelector(), _fn(class_code=0x120000))


def test_aux_selector_rejects_pci_function_when_parent_filters_pass() -> None:
    assert rejecting_field(AuxNetSelector(aux_types=frozenset({"sf"})), _fn()) == "auxTypes"


# --------------------------------------------------------------------------------------------
# §10.3 P3: the five mock devices (funcID -1 for all: vf_index None)

_RDMA = RdmaInfo(devices=("mlx5_0",), char_devices=("/dev/infiniband/uverbs0",))
_VHOST = VdpaInfo(name="vdpa0", driver="vhost_vdpa", vhost_path="/dev/vhost-vdpa-0")
_VIRTIO = VdpaInfo(name="vdpa4", driver="virtio_vdpa")

_P3 = [
    _fn(address="0000:03:02.0", vendor="8086", device="abcd", driver="igb_uio",
        pf_netdev="eth0", physfn="0000:86:00.0", link_type="ether",
        ddp_profile="E710 PPPoE and PPPoL2TPv2", vdpa=_VHOST),
    _fn(address="0000:03:02.1", vendor="8086", device="123a", driver="igb_uio",
        pf_netdev="eth0", physfn="0000:86:00.1", link_type="infiniband",
        ddp_profile="fake", rdma=_RDMA, vdpa=_VHOST),
    _fn(address="0000:03:02.2", vendor="1111", device="abcd", driver="igb_uio",
        pf_netdev="eth1", physfn="0000:86:00.2", link_type="ether", ddp_profile="fake"),
    _fn(address="0000:03:02.3", vendor="2222", device="2222", driver="iavf",
        pf_netdev="net0", physfn="0000:86:00.3", link_type="ether", ddp_profile="gtp"),
    _fn(address="0000:03:02.4", vendor="3333", device="1024", driver="vfio-pci",
        pf_netdev="net0", physfn="0000:86:00.4", link_type="fake", ddp_profile="profile",
        rdma=_RDMA, vdpa=_VIRTIO),
]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param(NetSelector(vendors=frozenset({"8086"})), [0, 1], id="vendors"),
        pytest.param(NetSelector(devices=frozenset({"abcd"})), [0, 2], id="devices"),
        pytest.param(NetSelector(drivers=frozenset({"igb_uio"})), [0, 1, 2], id="drivers"),
        pytest.param(
            NetSelector(pci_addresses=frozenset({"0000:03:02.0", "0000:03:02.3"})),
            [0, 3],
            id="pciAddresses",
        ),
        pytest.param(
            NetSelector(pf_names=tuple(map(parse_function_range, ["net0", "eth1"]))),
            [2, 3, 4],
            id="pfNames",
        ),
        pytest.param(
            NetSelector(
                root_devices=tuple(map(parse_function_range, ["0000:86:00.0", "0000:86:00.4"]))
            ),
            [0, 4],
            id="rootDevices",
        ),
        pytest.param(NetSelector(link_types=frozenset({"infiniband"})), [1], id="linkTypes"),
        pytest.param(
            NetSelector(link_types=frozenset({"infiniband", "fake"})), [1, 4], id="linkTypes-two"
        ),
        pytest.param(NetSelector(vendors=frozenset({""})), [], id="vendors-empty-string"),
        pytest.param(
            NetSelector(ddp_profiles=frozenset({"E710 PPPoE and PPPoL2TPv2"})), [0],
            id="ddpProfiles",
        ),
        pytest.param(NetSelector(is_rdma=True), [1, 4], id="isRdma"),
        pytest.param(NetSelector(vdpa_type="vhost"), [0, 1], id="vdpaType-vhost"),
        pytest.param(NetSelector(vdpa_type="virtio"), [4], id="vdpaType-virtio"),
    ],
)
def test_filtering_keeps_p3_devices_when_selector_field_matches(
    selector: NetSelector, expected: list[int]
) -> None:
    assert [i for i, fn in enumerate(_P3) if matches(selector, fn)] == expected


# --------------------------------------------------------------------------------------------
# §10.11 / §2.9-§2.11 / §3.2: ddpProfiles, pKeys, isRdma, vdpaType


@pytest.mark.parametrize(
    ("selector", "kept", "dropped", "field"),
    [
        pytest.param(
            NetSelector(ddp_profiles=frozenset({"GTP"})),
            _fn(ddp_profile="GTP"), _fn(ddp_profile="PPPoE"), "ddpProfiles", id="ddp-other",
        ),
        pytest.param(
            NetSelector(ddp_profiles=frozenset({"GTP", ""})),
            _fn(ddp_profile="GTP"), _fn(ddp_profile=""), "ddpProfiles", id="ddp-empty",
        ),
        pytest.param(
            NetSelector(ddp_profiles=frozenset({"GTP"})),
            _fn(ddp_profile="GTP"), _fn(ddp_profile=None), "ddpProfiles", id="ddp-unknown",
        ),
        pytest.param(
            NetSelector(pkeys=frozenset({"0x1", "0x2"})),
            _fn(pkey="0x2"), _fn(pkey="0x3"), "pKeys", id="pkey-other",
        ),
        pytest.param(
            NetSelector(pkeys=frozenset({"0x1", ""})),
            _fn(pkey="0x1"), _fn(pkey=None), "pKeys", id="pkey-unknown",
        ),
        pytest.param(
            NetSelector(pkeys=frozenset({"0xABCD"})),
            _fn(pkey="0xABCD"), _fn(pkey="0xabcd"), "pKeys", id="pkey-case-sensitive",
        ),
        pytest.param(
            NetSelector(is_rdma=True),
            _fn(rdma=_RDMA), _fn(rdma=None), "isRdma", id="rdma-none",
        ),
        pytest.param(
            NetSelector(is_rdma=True),
            _fn(rdma=_RDMA), _fn(rdma=RdmaInfo()), "isRdma", id="rdma-no-devices",
        ),
        pytest.param(
            NetSelector(vdpa_type="vhost"),
            _fn(vdpa=_VHOST), _fn(vdpa=_VIRTIO), "vdpaType", id="vdpa-mismatch",
        ),
        pytest.param(
            NetSelector(vdpa_type="virtio"),
            _fn(vdpa=_VIRTIO), _fn(vdpa=None), "vdpaType", id="vdpa-none",
        ),
        pytest.param(
            NetSelector(vdpa_type="vhost"),
            _fn(vdpa=_VHOST), _fn(vdpa=VdpaInfo(name="vdpa9")), "vdpaType", id="vdpa-unbound",
        ),
    ],
)
def test_netdevice_field_keeps_function_when_its_facet_matches(
    selector: NetSelector, kept: PciFunction, dropped: PciFunction, field: str
) -> None:
    assert rejecting_field(selector, kept) is None
    assert rejecting_field(selector, dropped) == field


def test_rejecting_field_follows_go_order_when_several_fields_reject() -> None:
    selector = NetSelector(link_types=frozenset({"infiniband"}), ddp_profiles=frozenset({"x"}),
                           pkeys=frozenset({"0x1"}), is_rdma=True, vdpa_type="vhost")
    fn = _fn(link_type="ether")
    assert rejecting_field(selector, fn) == "linkTypes"
    assert rejecting_field(selector, _fn(link_type="infiniband")) == "ddpProfiles"
    assert rejecting_field(selector, _fn(link_type="infiniband", ddp_profile="x")) == "pKeys"
    assert rejecting_field(
        selector, _fn(link_type="infiniband", ddp_profile="x", pkey="0x1")) == "isRdma"
    assert rejecting_field(selector, _fn(link_type="infiniband", ddp_profile="x", pkey="0x1",
                                         rdma=_RDMA)) == "vdpaType"


# --------------------------------------------------------------------------------------------
# §10.8 X2: auxiliary devices (vendors/devices/drivers are the parent's; ranges over sfnum)


def _aux(name: str, *, vendor: str = "15b3", device: str = "a2d6", driver: str = "mlx5_core",
         pf_netdev: str | None = "p0", pf_address: str = "0000:3b:00.0", sf_num: int = 0,
         link_type: str = "ether", rdma: RdmaInfo | None = None) -> AuxFunction:
    parent = _fn(address=pf_address, vendor=vendor, device=device, driver=driver)
    return AuxFunction(name=name, aux_type=name.split(".")[1], parent=parent,
                       pf_address=pf_address, pf_netdev=pf_netdev, sf_num=sf_num,
                       link_type=link_type, rdma=rdma)


_X2 = [
    _aux("igb.eth.0", vendor="8086", device="1521", driver="igb", pf_netdev="eth0",
         pf_address="0000:86:00.0"),
    _aux("mlx5_core.rdma.1", vendor="15b3", device="101b", pf_netdev="ib0",
         pf_address="0000:03:00.0", link_type="infiniband", rdma=_RDMA),
    _aux("mlx5_core.sf.2", pf_netdev="net0", pf_address="0000:04:00.0"),
    _aux("mlx5_core.sf.3", pf_netdev="net0", pf_address="0000:04:00.0"),
    _aux("igb.eth.4", vendor="8086", device="1521", driver="igb", pf_netdev="eth1",
         pf_address="0000:86:00.4", rdma=_RDMA),
]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param(AuxNetSelector(vendors=frozenset({"8086"})), [0, 4], id="vendors"),
        pytest.param(AuxNetSelector(devices=frozenset({"a2d6"})), [2, 3], id="devices"),
        pytest.param(AuxNetSelector(drivers=frozenset({"mlx5_core"})), [1, 2, 3], id="drivers"),
        pytest.param(
            AuxNetSelector(pf_names=tuple(map(parse_function_range, ["net0", "eth1"]))),
            [2, 3, 4], id="pfNames",
        ),
        pytest.param(
            AuxNetSelector(
                root_devices=tuple(map(parse_function_range, ["0000:86:00.0", "0000:86:00.4"]))
            ),
            [0, 4], id="rootDevices",
        ),
        pytest.param(AuxNetSelector(link_types=frozenset({"infiniband"})), [1], id="linkTypes"),
        pytest.param(
            AuxNetSelector(link_types=frozenset({"infiniband", "ether"})), [0, 1, 2, 3, 4],
            id="linkTypes-two",
        ),
        pytest.param(AuxNetSelector(is_rdma=True), [1, 4], id="isRdma"),
        pytest.param(AuxNetSelector(aux_types=frozenset({"sf"})), [2, 3], id="auxTypes"),
        pytest.param(AuxNetSelector(), [0, 1, 2, 3, 4], id="empty"),
    ],
)
def test_aux_filtering_keeps_x2_devices_when_selector_field_matches(
    selector: AuxNetSelector, expected: list[int]
) -> None:
    assert [i for i, fn in enumerate(_X2) if matches(selector, fn)] == expected


@pytest.mark.parametrize(
    ("selector", "aux", "field"),
    [
        pytest.param(AuxNetSelector(vendors=frozenset({"8086"})), _X2[2], "vendors", id="vendors"),
        pytest.param(AuxNetSelector(devices=frozenset({"1521"})), _X2[2], "devices", id="devices"),
        pytest.param(AuxNetSelector(drivers=frozenset({"igb"})), _X2[2], "drivers", id="drivers"),
        pytest.param(AuxNetSelector(aux_types=frozenset({"bar", "baz"})),
                     _aux("foo.qux.1"), "auxTypes", id="auxTypes"),
        pytest.param(AuxNetSelector(pf_names=(parse_function_range("eth9"),)), _X2[2],
                     "pfNames", id="pfNames"),
        pytest.param(AuxNetSelector(root_devices=(parse_function_range("0000:99:00.0"),)),
                     _X2[2], "rootDevices", id="rootDevices"),
        pytest.param(AuxNetSelector(link_types=frozenset({"infiniband"})), _X2[2],
                     "linkTypes", id="linkTypes"),
        pytest.param(AuxNetSelector(is_rdma=True), _X2[2], "isRdma", id="isRdma"),
        pytest.param(NetSelector(vendors=frozenset({"15b3"})), _X2[2], "deviceType",
                     id="netDevice-selector"),
        pytest.param(AccelSelector(), _X2[2], "deviceType", id="accelerator-selector"),
    ],
)
def test_aux_rejecting_field_names_the_config_key_when_a_field_rejects(
    selector: AuxNetSelector | NetSelector | AccelSelector, aux: AuxFunction, field: str
) -> None:
    assert rejecting_field(selector, aux) == field


@pytest.mark.parametrize(
    ("aux_type", "kept"),
    [pytest.param("bar", True, id="bar"), pytest.param("baz", True, id="baz"),
     pytest.param("", False, id="empty")],
)
def test_aux_types_keep_listed_types_when_the_type_is_listed(aux_type: str, kept: bool) -> None:
    aux = AuxFunction(name="foo.x.1", aux_type=aux_type, parent=_fn(), pf_address="0000:03:02.0",
                      sf_num=1)
    assert matches(AuxNetSelector(aux_types=frozenset({"bar", "baz"})), aux) is kept


@pytest.mark.parametrize(
    ("item", "sf_nums"),
    [
        pytest.param("p0#1,3-4", [1, 3, 4], id="pf-name-range"),
        pytest.param("P0", [0, 1, 2, 3, 4, 5], id="pf-name-any-case-folded"),
        pytest.param("0000:3b:00.0#0-1", [0, 1], id="root-device-range"),
        pytest.param("p0#0-4294967295", [0, 1, 2, 3, 4, 5], id="huge-sf-range"),
    ],
)
def test_aux_ranges_select_sf_numbers_when_a_range_is_given(item: str, sf_nums: list[int]) -> None:
    rng = (parse_function_range(item),)
    selector = (AuxNetSelector(root_devices=rng) if item.startswith("0000")
                else AuxNetSelector(pf_names=rng))
    auxes = [_aux(f"mlx5_core.sf.{n + 2}", sf_num=n) for n in range(6)]
    assert [a.sf_num for a in auxes if matches(selector, a)] == sf_nums


def test_aux_pf_names_reject_when_the_uplink_is_unknown() -> None:
    selector = AuxNetSelector(pf_names=(parse_function_range("p0"),))
    assert rejecting_field(selector, _aux("mlx5_core.sf.2", pf_netdev=None)) == "pfNames"
