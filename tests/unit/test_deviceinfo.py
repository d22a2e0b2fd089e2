"""NPWG device-info documents and file names (§7.1, §10.5 R2/R3; model only, no I/O)."""

from __future__ import annotations

import json

import pytest

from sriovdp.model.deviceinfo import (
    device_info_document,
    device_info_file_name,
    device_info_json,
)
from sriovdp.model.devices import AuxFunction, PciFunction, RdmaInfo, VdpaInfo
from sriovdp.model.pools import PoolDevice


def dev(addr: str, *, is_rdma: bool = False, vdpa_type: str | None = None,
        **kw: object) -> PoolDevice:
    fn = PciFunction(address=addr, vendor="15b3", device="101e", class_code=0x020000,
                     driver="mlx5_core", **kw)  # type: ignore[arg-type]
    return PoolDevice(id=addr, function=fn, is_rdma=is_rdma, vdpa_type=vdpa_type)


def test_plain_vf_gets_a_pci_document_when_it_has_no_rdma_or_vdpa() -> None:
    assert device_info_json(dev("0000:03:02.1")) == \
        '{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.1"}}'


def test_rdma_vf_gets_its_rdma_device_when_taken_by_an_is_rdma_selector_r2() -> None:
    fake1 = dev("0000:01:00.1", is_rdma=True, rdma=RdmaInfo(devices=("rdmadevice1",)))
    fake2 = dev("0000:01:00.2")
    assert device_info_json(fake1) == (
        '{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:01:00.1",'
        '"rdma-device":"rdmadevice1"}}')
    assert device_info_document(fake2) == {
        "type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:01:00.2"}}


def test_rdma_devices_are_comma_joined_when_the_vf_has_several() -> None:
    d = dev("0000:01:00.1", is_rdma=True, rdma=RdmaInfo(devices=("mlx5_0", "mlx5_1")))
    assert device_info_document(d)["pci"]["rdma-device"] == "mlx5_0,mlx5_1"


@pytest.mark.parametrize(
    ("is_rdma", "rdma"),
    [
        pytest.param(False, RdmaInfo(devices=("mlx5_0",)), id="selector-without-isRdma"),
        pytest.param(True, RdmaInfo(), id="no-rdma-devices"),
        pytest.param(True, None, id="rdma-gone"),
    ],
)
def test_rdma_device_key_is_left_out_when_not_rdma_or_empty(
    is_rdma: bool, rdma: RdmaInfo | None
) -> None:
    d = dev("0000:01:00.1", is_rdma=is_rdma, rdma=rdma)
    assert device_info_document(d)["pci"] == {"pci-address": "0000:01:00.1"}


@pytest.mark.parametrize(
    ("addr", "vdpa", "expected"),
    [
        pytest.param(
            "0000:01:00.1", VdpaInfo(name="vdpa1", driver="vhost_vdpa",
                                     vhost_path="/dev/vhost-vdpa5"),
            '{"type":"vdpa","version":"1.1.0","vdpa":{"parent-device":"vdpa1",'
            '"driver":"vhost","path":"/dev/vhost-vdpa5","pci-address":"0000:01:00.1"}}',
            id="fake1",
        ),
        pytest.param(
            "0000:01:00.2", VdpaInfo(name="vdpa2", driver="vhost_vdpa",
                                     vhost_path="/dev/vhost-vdpa6"),
            '{"type":"vdpa","version":"1.1.0","vdpa":{"parent-device":"vdpa2",'
            '"driver":"vhost","path":"/dev/vhost-vdpa6","pci-address":"0000:01:00.2"}}',
            id="fake2",
        ),
    ],
)
def test_vhost_vdpa_vf_gets_a_vdpa_document_with_its_path_when_taken_with_vdpa_type_r3(
    addr: str, vdpa: VdpaInfo, expected: str
) -> None:
    assert device_info_json(dev(addr, vdpa_type="vhost", vdpa=vdpa)) == expected


def test_virtio_vdpa_vf_gets_no_path_when_taken_with_vdpa_type_virtio() -> None:
    d = dev("0000:01:00.3", vdpa_type="virtio", vdpa=VdpaInfo(name="vdpa1", driver="virtio_vdpa"))
    assert device_info_json(d) == (
        '{"type":"vdpa","version":"1.1.0","vdpa":{"parent-device":"vdpa1","driver":"virtio",'
        '"pci-address":"0000:01:00.3"}}')


def test_vhost_vdpa_vf_gets_no_path_when_its_node_is_unknown() -> None:
    d = dev("0000:01:00.1", vdpa_type="vhost", vdpa=VdpaInfo(name="vdpa1", driver="vhost_vdpa"))
    assert list(device_info_document(d)["vdpa"]) == ["parent-device", "driver", "pci-address"]


def test_vf_with_a_vdpa_device_gets_a_pci_document_when_the_selector_had_no_vdpa_type() -> None:
    d = dev("0000:01:00.1", vdpa=VdpaInfo(name="vdpa1", driver="vhost_vdpa",
                                          vhost_path="/dev/vhost-vdpa-1"))
    assert device_info_document(d)["type"] == "pci"


def test_document_keys_keep_the_spec_order_when_serialised() -> None:
    d = dev("0000:01:00.1", is_rdma=True, rdma=RdmaInfo(devices=("mlx5_0",)))
    doc = device_info_document(d)
    assert list(doc) == ["type", "version", "pci"]
    assert list(doc["pci"]) == ["pci-address", "rdma-device"]
    assert json.loads(device_info_json(d)) == doc


def test_aux_device_is_refused_when_asked_for_a_device_info_document() -> None:
    parent = PciFunction(address="0000:3b:00.0", vendor="15b3", device="101d",
                         class_code=0x020000)
    aux = AuxFunction(name="mlx5_core.sf.4", aux_type="sf", parent=parent,
                      pf_address="0000:3b:00.0", sf_num=4)
    with pytest.raises(ValueError, match="netDevice pools only"):
        device_info_document(PoolDevice(id=aux.name, function=aux))


@pytest.mark.parametrize(
    ("resource", "device_id", "name"),
    [
        pytest.param("intel.com/intel_sriov_netdevice", "0000:03:02.1",
                     "intel.com-intel_sriov_netdevice-0000:03:02.1-device.json", id="upstream"),
        pytest.param("fakeOrg.io/fakeResource", "fake1",
                     "fakeOrg.io-fakeResource-fake1-device.json", id="r2"),
        pytest.param("a.io/x", "weird/id", "a.io-x-weird-id-device.json", id="slash-in-id"),
    ],
)
def test_file_name_replaces_slashes_with_dashes_when_built(
    resource: str, device_id: str, name: str
) -> None:
    assert device_info_file_name(resource, device_id) == name
