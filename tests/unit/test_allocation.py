"""Allocate answers: env vars, _INFO JSON, device specs (model only, no I/O)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sriovdp.errors import AllocationError
from sriovdp.model.allocation import allocate, device_info, device_specs, go_json, info_providers
from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import (
    AuxFunction,
    DeviceKind,
    HostFacts,
    Inventory,
    PciFunction,
    RdmaInfo,
    VdpaInfo,
)
from sriovdp.model.pools import PoolDevice, ResourcePool, build_pools
from sriovdp.model.preferred import plain_allocation, preferred_allocation
from sriovdp.model.selectors import AuxNetSelector, NetSelector, Selector

NO_VHOST = HostFacts(vhost_net=False)
VHOST = HostFacts(vhost_net=True)


def fn(addr: str, driver: str, **kw: object) -> PciFunction:
    return PciFunction(address=addr, vendor="8086", device="154c", class_code=0x020000,
                       driver=driver, **kw)  # type: ignore[arg-type]


def pool(*fns: PciFunction, prefix: str = "intel.com", name: str = "net",
         selector: NetSelector | None = None, selectors: tuple[Selector, ...] = (),
         **kw: object) -> ResourcePool:
    inventory = Inventory(functions={f.address: f for f in fns})
    cfg = ResourceConfig(name=name, selectors=selectors or (selector or NetSelector(),),
                         **kw)  # type: ignore[arg-type]
    return build_pools(inventory, (cfg,), default_prefix=prefix)[f"{prefix}/{name}"]


def info(alloc_envs: dict[str, str], key: str) -> dict[str, object]:
    return json.loads(alloc_envs[key])  # type: ignore[no-any-return]


def test_vfio_device_gets_group_node_and_dev_mount_on_first_allocate_f30() -> None:
    p = pool(fn("0000:5e:00.6", "vfio-pci", iommu_group="162"), prefix="openshift.io",
             name="dpdk_nic_1")
    alloc = allocate(p, ["0000:5e:00.6"], NO_VHOST)
    assert alloc.envs["PCIDEVICE_OPENSHIFT_IO_DPDK_NIC_1"] == "0000:5e:00.6"
    parsed = info(dict(alloc.envs), "PCIDEVICE_OPENSHIFT_IO_DPDK_NIC_1_INFO")
    assert parsed["0000:5e:00.6"] == {
        "generic": {"deviceID": "0000:5e:00.6"},
        "vfio": {"mount": "/dev/vfio/vfio", "dev-mount": "/dev/vfio/162"},
    }
    assert [(d.host_path, d.container_path, d.permissions) for d in alloc.devices] == [
        ("/dev/vfio/vfio", "/dev/vfio/vfio", "rw"), ("/dev/vfio/162", "/dev/vfio/162", "rw")]


def test_noiommu_group_uses_the_noiommu_host_node_when_the_host_has_no_iommu_f20() -> None:
    p = pool(fn("0000:00:08.0", "vfio-pci", iommu_group="3", vfio_noiommu=True))
    alloc = allocate(p, ["0000:00:08.0"], NO_VHOST)
    assert [(d.host_path, d.container_path) for d in alloc.devices] == [
        ("/dev/vfio/vfio", "/dev/vfio/vfio"), ("/dev/vfio/noiommu-3", "/dev/vfio/3")]


@pytest.mark.parametrize("driver", ["igb_uio", "uio", "uio_pci_generic"])
def test_uio_drivers_get_their_uio_node_when_bound_to_a_uio_driver(driver: str) -> None:
    p = pool(fn("0000:00:06.0", driver, uio="uio0"))
    alloc = allocate(p, ["0000:00:06.0"], NO_VHOST)
    assert [d.host_path for d in alloc.devices] == ["/dev/uio0"]
    assert info(dict(alloc.envs), "PCIDEVICE_INTEL_COM_NET_INFO")["0000:00:06.0"] == {
        "generic": {"deviceID": "0000:00:06.0"}, "uio": {"mount": "/dev/uio0"}}


def test_kernel_vf_gets_only_generic_info_and_no_device_specs() -> None:
    p = pool(fn("0000:03:02.1", "iavf"))
    alloc = allocate(p, ["0000:03:02.1"], NO_VHOST)
    assert alloc.devices == ()
    assert alloc.envs["PCIDEVICE_INTEL_COM_NET_INFO"] == \
        '{"0000:03:02.1":{"generic":{"deviceID":"0000:03:02.1"}}}'


def test_info_matches_upstream_example_when_vfio_extra_and_vhost_are_combined() -> None:
    p = pool(fn("0000:3b:02.6", "vfio-pci", iommu_group="169"),
             selector=NetSelector(need_vhost_net=True), additional_info={"*": {"token": "x"}})
    alloc = allocate(p, ["0000:3b:02.6"], VHOST)
    assert alloc.envs["PCIDEVICE_INTEL_COM_NET_INFO"] == (
        '{"0000:3b:02.6":{"extra":{"token":"x"},"generic":{"deviceID":"0000:3b:02.6"},'
        '"vfio":{"dev-mount":"/dev/vfio/169","mount":"/dev/vfio/vfio"},'
        '"vhost":{"net-mount":"/dev/vhost-net","tun-mount":"/dev/net/tun"}}}')
    assert [d.host_path for d in alloc.devices] == [
        "/dev/vfio/vfio", "/dev/vfio/169", "/dev/vhost-net", "/dev/net/tun"]


def test_extra_info_prefers_the_device_key_over_star_when_both_are_given() -> None:
    p = pool(fn("0000:00:00.1", "iavf"),
             additional_info={"*": {"test": "test", "bla": "bla"}, "0000:00:00.1": {"test": "t1"}})
    parsed = info(dict(allocate(p, ["0000:00:00.1"], NO_VHOST).envs),
                  "PCIDEVICE_INTEL_COM_NET_INFO")
    assert parsed["0000:00:00.1"]["extra"] == {"test": "t1", "bla": "bla"}  # type: ignore[index]


def test_specs_are_deduplicated_by_host_path_when_several_vfio_devices_are_allocated() -> None:
    p = pool(fn("0000:00:00.1", "vfio-pci", iommu_group="0"),
             fn("0000:00:00.2", "vfio-pci", iommu_group="1"))
    alloc = allocate(p, ["0000:00:00.1", "0000:00:00.2"], NO_VHOST)
    assert sorted(d.host_path for d in alloc.devices) == [
        "/dev/vfio/0", "/dev/vfio/1", "/dev/vfio/vfio"]
    assert alloc.envs["PCIDEVICE_INTEL_COM_NET"] == "0000:00:00.1,0000:00:00.2"


def test_unknown_ids_are_refused_naming_them_when_not_in_the_pool() -> None:
    p = pool(fn("0000:00:00.1", "iavf"))
    with pytest.raises(AllocationError) as err:
        allocate(p, ["0000:00:00.1", "0000:99:00.0"], NO_VHOST)
    assert "'0000:99:00.0'" in str(err.value) and "intel.com/net" in str(err.value)


def test_empty_request_gives_empty_env_and_info() -> None:
    alloc = allocate(pool(fn("0000:00:00.1", "iavf")), [], NO_VHOST)
    assert alloc.envs == {"PCIDEVICE_INTEL_COM_NET": "", "PCIDEVICE_INTEL_COM_NET_INFO": "{}"}


def test_hyphenated_names_keep_their_hyphen_in_env_names() -> None:
    p = pool(fn("0000:00:00.1", "iavf"), name="sriov-net")
    assert "PCIDEVICE_INTEL_COM_SRIOV-NET" in allocate(p, [], NO_VHOST).envs


def test_allocate_also_sets_posix_env_names_when_the_name_has_a_hyphen() -> None:
    p = pool(fn("0000:00:00.1", "iavf"), fn("0000:00:00.2", "iavf"), name="e810-c",
             prefix="my-corp.io")
    envs = allocate(p, ["0000:00:00.2", "0000:00:00.1"], NO_VHOST).envs
    assert set(envs) == {"PCIDEVICE_MY-CORP_IO_E810-C", "PCIDEVICE_MY-CORP_IO_E810-C_INFO",
                         "PCIDEVICE_MY_CORP_IO_E810_C", "PCIDEVICE_MY_CORP_IO_E810_C_INFO"}
    assert envs["PCIDEVICE_MY_CORP_IO_E810_C"] == envs["PCIDEVICE_MY-CORP_IO_E810-C"] == \
        "0000:00:00.2,0000:00:00.1"
    assert envs["PCIDEVICE_MY_CORP_IO_E810_C_INFO"] == envs["PCIDEVICE_MY-CORP_IO_E810-C_INFO"]


def test_allocate_sets_one_env_pair_when_the_name_is_already_posix() -> None:
    envs = allocate(pool(fn("0000:00:00.1", "iavf"), name="e810_c"), [], NO_VHOST).envs
    assert set(envs) == {"PCIDEVICE_INTEL_COM_E810_C", "PCIDEVICE_INTEL_COM_E810_C_INFO"}


def test_go_json_escapes_html_characters_like_go() -> None:
    assert go_json({"b": "<&>", "a": 1}) == '{"a":1,"b":"\\u003c\\u0026\\u003e"}'


def _two_pf_pool() -> ResourcePool:
    fns = [fn(f"0000:3b:02.{i}", "iavf", physfn="0000:3b:00.0", vf_index=i, numa_node=0)
           for i in range(2)]
    fns += [fn(f"0000:3b:0a.{i}", "iavf", physfn="0000:3b:00.1", vf_index=i, numa_node=0)
            for i in range(2)]
    return pool(*fns)


def test_preferred_allocation_packs_the_partly_used_pf_first_f32() -> None:
    p = _two_pf_pool()  # a1 = 0000:3b:02.1 is in use
    got = preferred_allocation(p, ["0000:3b:02.0", "0000:3b:0a.0", "0000:3b:0a.1"], [], 2)
    assert got == ["0000:3b:02.0", "0000:3b:0a.0"]


def test_preferred_allocation_keeps_must_include_first_and_prefers_its_pf() -> None:
    p = _two_pf_pool()
    got = preferred_allocation(p, [*p.devices], ["0000:3b:0a.1"], 2)
    assert got == ["0000:3b:0a.1", "0000:3b:0a.0"]


def test_preferred_allocation_picks_one_numa_node_when_one_can_hold_the_request() -> None:
    fns = [fn("0000:3b:02.0", "iavf", physfn="0000:3b:00.0", vf_index=0, numa_node=0)]
    fns += [fn(f"0000:d8:02.{i}", "iavf", physfn="0000:d8:00.0", vf_index=i, numa_node=1)
            for i in range(2)]
    p = pool(*fns)
    assert preferred_allocation(p, [*p.devices], [], 2) == ["0000:d8:02.0", "0000:d8:02.1"]


def test_preferred_allocation_ignores_ids_not_in_the_pool() -> None:
    p = _two_pf_pool()
    assert preferred_allocation(p, ["nope", "0000:3b:02.0"], [], 2) == ["0000:3b:02.0"]


# --------------------------------------------------------------------------------------------
# §10.12: default providers per driver


@pytest.mark.parametrize(
    ("driver", "names"),
    [
        pytest.param("vfio-pci", ["generic", "vfio"], id="vfio-pci"),
        pytest.param("uio", ["generic", "uio"], id="uio"),
        pytest.param("igb_uio", ["generic", "uio"], id="igb_uio"),
        pytest.param("netdevice", ["generic"], id="other"),
        pytest.param(None, ["generic"], id="unbound"),
    ],
)
def test_default_providers_follow_the_driver_when_no_selector_facet_is_set(
    driver: str | None, names: list[str]
) -> None:
    function = fn("0000:00:00.1", driver)  # type: ignore[arg-type]
    dev = PoolDevice(id="0000:00:00.1", function=function)
    assert [p.name for p in info_providers(dev, NO_VHOST)] == names


# --------------------------------------------------------------------------------------------
# RDMA (N2, G8, §10.10, F31)

def mlx(addr: str, rdma: RdmaInfo | None = None, **kw: object) -> PciFunction:
    return PciFunction(address=addr, vendor="15b3", device="1018", class_code=0x020000,
                       driver="mlx5_core", rdma=rdma, **kw)  # type: ignore[arg-type]


FAKE_RDMA = RdmaInfo(devices=("mlx5_1",), char_devices=("/dev/fake1a", "/dev/fake1b"))
RDMA4 = RdmaInfo(devices=("mlx5_3",), char_devices=(
    "/dev/infiniband/issm4", "/dev/infiniband/umad4", "/dev/infiniband/uverbs4",
    "/dev/infiniband/rdma_cm"))


def test_rdma_device_gets_generic_and_rdma_with_its_specs_when_selector_is_rdma_n2() -> None:
    p = pool(mlx("0000:00:00.1", FAKE_RDMA), mlx("0000:00:00.2", netdevs=("eth1",)),
             selectors=(NetSelector(is_rdma=True), NetSelector()))
    rdma_dev, plain = p.devices["0000:00:00.1"], p.devices["0000:00:00.2"]
    assert set(device_info(rdma_dev, p, NO_VHOST)) == {"generic", "rdma"}
    assert [s.host_path for s in device_specs(rdma_dev, NO_VHOST)] == ["/dev/fake1a", "/dev/fake1b"]
    assert allocate(p, ["0000:00:00.1"], NO_VHOST).mounts == ()
    assert set(device_info(plain, p, NO_VHOST)) == {"generic"}
    assert device_specs(plain, NO_VHOST) == []


def test_rdma_capable_device_gets_only_generic_when_taken_by_a_non_rdma_selector_n2() -> None:
    p = pool(mlx("0000:00:00.1", FAKE_RDMA),
             selectors=(NetSelector(pci_addresses=frozenset({"0000:00:00.9"}), is_rdma=True),
                        NetSelector()))
    dev = p.devices["0000:00:00.1"]
    assert dev.is_rdma is False
    assert set(device_info(dev, p, NO_VHOST)) == {"generic"}
    assert device_specs(dev, NO_VHOST) == []


def test_rdma_specs_keep_go_order_and_one_rdma_cm_when_two_rdma_devices_share_it_g8() -> None:
    # fake_0 → issm0, umad0, uverbs0, rdma_cm; fake_1 → rdma_cm (Go lists rdma_cm twice and
    # the pool drops the repeat; the scan may already have dropped it).
    rdma = RdmaInfo(devices=("fake_0", "fake_1"), char_devices=(
        "/dev/infiniband/issm0", "/dev/infiniband/umad0", "/dev/infiniband/uverbs0",
        "/dev/infiniband/rdma_cm", "/dev/infiniband/rdma_cm"))
    p = pool(mlx("0000:00:00.1", rdma), selector=NetSelector(is_rdma=True))
    specs = device_specs(p.devices["0000:00:00.1"], NO_VHOST)
    assert [(s.host_path, s.container_path, s.permissions) for s in specs] == [
        ("/dev/infiniband/issm0", "/dev/infiniband/issm0", "rw"),
        ("/dev/infiniband/umad0", "/dev/infiniband/umad0", "rw"),
        ("/dev/infiniband/uverbs0", "/dev/infiniband/uverbs0", "rw"),
        ("/dev/infiniband/rdma_cm", "/dev/infiniband/rdma_cm", "rw"),
    ]


def test_rdma_info_has_the_five_keys_when_all_char_devices_exist_10_10() -> None:
    p = pool(mlx("0000:00:00.1", RDMA4), selector=NetSelector(is_rdma=True))
    assert device_info(p.devices["0000:00:00.1"], p, NO_VHOST)["rdma"] == {
        "rdma_cm": "/dev/infiniband/rdma_cm", "uverbs": "/dev/infiniband/uverbs4",
        "umad": "/dev/infiniband/umad4", "issm": "/dev/infiniband/issm4", "rdma_dev": "mlx5_3"}


def test_rdma_ucm_node_gets_a_spec_but_no_info_key_when_present() -> None:
    rdma = RdmaInfo(devices=("mlx5_0",), char_devices=(
        "/dev/infiniband/ucm0", "/dev/infiniband/uverbs0"))
    p = pool(mlx("0000:00:00.1", rdma), selector=NetSelector(is_rdma=True))
    dev = p.devices["0000:00:00.1"]
    assert device_info(dev, p, NO_VHOST)["rdma"] == {
        "uverbs": "/dev/infiniband/uverbs0", "rdma_dev": "mlx5_0"}
    assert [s.host_path for s in device_specs(dev, NO_VHOST)] == [
        "/dev/infiniband/ucm0", "/dev/infiniband/uverbs0"]


def test_rdma_info_is_empty_and_specs_none_when_the_device_lost_its_rdma_devices() -> None:
    dev = PoolDevice(id="0000:00:00.1", function=mlx("0000:00:00.1"), is_rdma=True)
    providers = info_providers(dev, NO_VHOST)
    assert [(p.name, p.info, p.specs) for p in providers] == [
        ("generic", {"deviceID": "0000:00:00.1"}, ()), ("rdma", {}, ())]


def test_info_has_generic_rdma_and_extra_token_when_an_rdma_vf_is_allocated_f31() -> None:
    p = pool(mlx("0000:5e:00.2", RDMA4), prefix="openshift.io", name="dpdk_nic_2",
             selector=NetSelector(is_rdma=True), additional_info={"*": {"token": "t1"}})
    alloc = allocate(p, ["0000:5e:00.2"], NO_VHOST)
    assert alloc.envs["PCIDEVICE_OPENSHIFT_IO_DPDK_NIC_2_INFO"] == (
        '{"0000:5e:00.2":{"extra":{"token":"t1"},"generic":{"deviceID":"0000:5e:00.2"},'
        '"rdma":{"issm":"/dev/infiniband/issm4","rdma_cm":"/dev/infiniband/rdma_cm",'
        '"rdma_dev":"mlx5_3","umad":"/dev/infiniband/umad4","uverbs":"/dev/infiniband/uverbs4"}}}')
    assert [d.host_path for d in alloc.devices] == list(RDMA4.char_devices)


# --------------------------------------------------------------------------------------------
# vDPA (N5, §10.10, F42)

VHOST_VDPA = VdpaInfo(name="vdpa1", driver="vhost_vdpa", vhost_path="/dev/vhost-vdpa1")
VIRTIO_VDPA = VdpaInfo(name="vdpa2", driver="virtio_vdpa")


def vdpa_dev(vdpa: VdpaInfo, vdpa_type: str, *, is_rdma: bool = False) -> PoolDevice:
    function = mlx("0000:00:00.1", RDMA4, vdpa=vdpa)
    return PoolDevice(id="0000:00:00.1", function=function, vdpa_type=vdpa_type,
                      is_rdma=is_rdma)


def test_vhost_vdpa_device_gets_its_node_and_mount_when_the_type_matches_n5_f42() -> None:
    p = pool(mlx("0000:00:00.1", vdpa=VHOST_VDPA), mlx("0000:00:00.2", vdpa=VIRTIO_VDPA),
             selectors=(NetSelector(vdpa_type="vhost"), NetSelector(vdpa_type="virtio")))
    alloc = allocate(p, ["0000:00:00.1"], NO_VHOST)
    assert [(d.host_path, d.container_path, d.permissions) for d in alloc.devices] == [
        ("/dev/vhost-vdpa1", "/dev/vhost-vdpa1", "rw")]
    assert info(dict(alloc.envs), "PCIDEVICE_INTEL_COM_NET_INFO")["0000:00:00.1"] == {
        "generic": {"deviceID": "0000:00:00.1"}, "vdpa": {"mount": "/dev/vhost-vdpa1"}}
    assert alloc.mounts == ()


def test_virtio_vdpa_device_gets_an_empty_vdpa_entry_and_no_node_when_the_type_matches_n5() -> None:
    p = pool(mlx("0000:00:00.2", vdpa=VIRTIO_VDPA), selector=NetSelector(vdpa_type="virtio"))
    alloc = allocate(p, ["0000:00:00.2"], NO_VHOST)
    assert alloc.devices == ()
    assert info(dict(alloc.envs), "PCIDEVICE_INTEL_COM_NET_INFO")["0000:00:00.2"] == {
        "generic": {"deviceID": "0000:00:00.2"}, "vdpa": {}}


@pytest.mark.parametrize(
    ("vdpa", "vdpa_type"),
    [
        pytest.param(VHOST_VDPA, "virtio", id="vhost-device-virtio-selector"),
        pytest.param(VIRTIO_VDPA, "vhost", id="virtio-device-vhost-selector"),
        pytest.param(VdpaInfo(name="vdpa3", driver="other"), "vhost", id="invalid-type"),
    ],
)
def test_vdpa_entry_is_empty_and_no_node_is_given_when_the_type_does_not_match_n5(
    vdpa: VdpaInfo, vdpa_type: str
) -> None:
    providers = info_providers(vdpa_dev(vdpa, vdpa_type), NO_VHOST)
    assert [(p.name, p.info, p.specs) for p in providers] == [
        ("generic", {"deviceID": "0000:00:00.1"}, ()), ("vdpa", {}, ())]


def test_vdpa_provider_wins_over_rdma_when_both_are_configured() -> None:
    providers = info_providers(vdpa_dev(VHOST_VDPA, "vhost", is_rdma=True), NO_VHOST)
    assert [p.name for p in providers] == ["generic", "vdpa"]


def test_rdma_provider_is_used_when_vdpa_type_is_set_but_the_device_has_no_vdpa() -> None:
    dev = PoolDevice(id="0000:00:00.1", function=mlx("0000:00:00.1", RDMA4), vdpa_type="vhost",
                     is_rdma=True)
    assert [p.name for p in info_providers(dev, NO_VHOST)] == ["generic", "rdma"]


def test_providers_keep_go_order_when_vfio_extra_rdma_and_vhost_combine() -> None:
    function = replace(mlx("0000:00:00.1", FAKE_RDMA, iommu_group="7"), driver="vfio-pci")
    p = pool(function, selector=NetSelector(is_rdma=True, need_vhost_net=True),
             additional_info={})
    dev = p.devices["0000:00:00.1"]
    providers = info_providers(dev, VHOST, p.config.additional_info)
    assert [pr.name for pr in providers] == ["generic", "vfio", "extra", "rdma", "vhost"]
    assert [s.host_path for s in device_specs(dev, VHOST)] == [
        "/dev/vfio/vfio", "/dev/vfio/7", "/dev/fake1a", "/dev/fake1b", "/dev/vhost-net",
        "/dev/net/tun"]


# --------------------------------------------------------------------------------------------
# auxNetDevice (X3-X7)

MLX_PF = PciFunction(address="0000:00:00.1", vendor="15b3", device="101d", class_code=0x020000,
                     driver="mlx5_core", numa_node=0, netdevs=("net0",))


def sf(name: str, sf_num: int, rdma: RdmaInfo | None = None,
       parent: PciFunction = MLX_PF) -> AuxFunction:
    return AuxFunction(name=name, aux_type=name.split(".")[1], parent=parent,
                       pf_address=parent.address, pf_netdev="net0", sf_num=sf_num,
                       netdevs=("eth0",), rdma=rdma)


def aux_pool(*auxes: AuxFunction, selectors: tuple[Selector, ...] = (AuxNetSelector(),),
             **kw: object) -> ResourcePool:
    inventory = Inventory(aux={a.name: a for a in auxes})
    cfg = ResourceConfig(name="sf", kind=DeviceKind.AUX_NET, selectors=selectors,
                         **kw)  # type: ignore[arg-type]
    return build_pools(inventory, (cfg,), default_prefix="nvidia.com")["nvidia.com/sf"]


def test_aux_device_gets_only_generic_when_its_parent_has_a_kernel_driver_x3() -> None:
    p = aux_pool(sf("mlx5_core.sf.0", 1))
    alloc = allocate(p, ["mlx5_core.sf.0"], NO_VHOST)
    assert alloc.devices == ()
    assert alloc.envs == {
        "PCIDEVICE_NVIDIA_COM_SF": "mlx5_core.sf.0",
        "PCIDEVICE_NVIDIA_COM_SF_INFO":
            '{"mlx5_core.sf.0":{"generic":{"deviceID":"mlx5_core.sf.0"}}}',
    }


def test_aux_rdma_device_gets_rdma_when_taken_by_an_is_rdma_selector_x4() -> None:
    p = aux_pool(sf("mlx5_core.eth.1", 1, FAKE_RDMA), sf("mlx5_core.eth-rep.2", 2),
                 selectors=(AuxNetSelector(is_rdma=True), AuxNetSelector()))
    rdma_dev = p.devices["mlx5_core.eth.1"]
    assert set(device_info(rdma_dev, p, NO_VHOST)) == {"generic", "rdma"}
    assert len(device_specs(rdma_dev, NO_VHOST)) == 2
    assert set(device_info(p.devices["mlx5_core.eth-rep.2"], p, NO_VHOST)) == {"generic"}
    assert device_specs(p.devices["mlx5_core.eth-rep.2"], NO_VHOST) == []


def test_aux_rdma_device_gets_only_generic_when_a_non_rdma_selector_took_it_x4() -> None:
    p = aux_pool(sf("mlx5_core.eth.1", 1, FAKE_RDMA),
                 selectors=(AuxNetSelector(aux_types=frozenset({"sf"}), is_rdma=True),
                            AuxNetSelector()))
    dev = p.devices["mlx5_core.eth.1"]
    assert dev.is_rdma is False
    assert set(device_info(dev, p, NO_VHOST)) == {"generic"}


def test_aux_device_gets_extra_when_additional_info_has_a_star_entry_x5() -> None:
    token = "3e49019f-412f-4f02-824e-4cd195944205"
    p = aux_pool(sf("mlx5_core.sf.0", 1), additional_info={"*": {"token": token}})
    assert device_info(p.devices["mlx5_core.sf.0"], p, NO_VHOST) == {
        "generic": {"deviceID": "mlx5_core.sf.0"}, "extra": {"token": token}}


def test_aux_extra_uses_the_parent_pci_address_key_when_both_keys_are_given() -> None:
    # Go's behaviour, kept: the device key of an SF is its parent's PCI address.
    p = aux_pool(sf("mlx5_core.sf.0", 1), additional_info={
        "*": {"a": "star"}, "0000:00:00.1": {"a": "parent"}, "mlx5_core.sf.0": {"a": "sf"}})
    assert device_info(p.devices["mlx5_core.sf.0"], p, NO_VHOST)["extra"] == {"a": "parent"}


@pytest.mark.parametrize(
    ("facts", "names", "specs"),
    [
        pytest.param(VHOST, {"generic", "vhost"}, ["/dev/vhost-net", "/dev/net/tun"],
                     id="vhost-net-present"),
        pytest.param(NO_VHOST, {"generic"}, [], id="vhost-net-missing"),
    ],
)
def test_aux_device_gets_vhost_when_need_vhost_net_and_the_nodes_exist_x6(
    facts: HostFacts, names: set[str], specs: list[str]
) -> None:
    p = aux_pool(sf("mlx5_core.sf.0", 1), selectors=(AuxNetSelector(need_vhost_net=True),))
    dev = p.devices["mlx5_core.sf.0"]
    info_ = device_info(dev, p, facts)
    assert set(info_) == names
    if "vhost" in names:
        assert info_["vhost"] == {"net-mount": "/dev/vhost-net", "tun-mount": "/dev/net/tun"}
    assert [s.host_path for s in device_specs(dev, facts)] == specs


def test_aux_pool_gives_the_specs_of_the_requested_devices_only_x7() -> None:
    fake2 = RdmaInfo(devices=("mlx5_2",), char_devices=("/dev/fake2",))
    p = aux_pool(sf("mlx5_core.sf.1", 1, FAKE_RDMA), sf("mlx5_core.sf.2", 2, fake2),
                 sf("mlx5_core.sf.3", 3), selectors=(AuxNetSelector(is_rdma=True),
                                                    AuxNetSelector()))
    alloc = allocate(p, ["mlx5_core.sf.1", "mlx5_core.sf.2"], NO_VHOST)
    assert [d.host_path for d in alloc.devices] == ["/dev/fake1a", "/dev/fake1b", "/dev/fake2"]


def test_aux_device_gets_the_parent_vfio_nodes_when_the_parent_is_bound_to_vfio() -> None:
    parent = PciFunction(address="0000:00:00.1", vendor="15b3", device="101d",
                         class_code=0x020000, driver="vfio-pci", iommu_group="5")
    p = aux_pool(sf("mlx5_core.sf.0", 1, parent=parent))
    alloc = allocate(p, ["mlx5_core.sf.0"], NO_VHOST)
    assert [d.host_path for d in alloc.devices] == ["/dev/vfio/vfio", "/dev/vfio/5"]


# --------------------------------------------------------------------------------------------
# Repeated ids (field hardening 12) and GetPreferredAllocation never failing (field hardening 6)


def test_repeated_ids_are_given_once_in_first_appearance_order_when_a_request_repeats_them(
) -> None:
    p = pool(fn("0000:00:00.1", "vfio-pci", iommu_group="1"),
             fn("0000:00:00.2", "vfio-pci", iommu_group="2"))
    ids = ["0000:00:00.2"] * 20_000 + ["0000:00:00.1", "0000:00:00.2"]
    alloc = allocate(p, ids, NO_VHOST)
    assert alloc.envs["PCIDEVICE_INTEL_COM_NET"] == "0000:00:00.2,0000:00:00.1"
    assert set(info(dict(alloc.envs), "PCIDEVICE_INTEL_COM_NET_INFO")) == {
        "0000:00:00.1", "0000:00:00.2"}
    assert [d.host_path for d in alloc.devices] == [
        "/dev/vfio/vfio", "/dev/vfio/2", "/dev/vfio/1"]


def test_unknown_ids_are_named_once_when_a_request_repeats_them() -> None:
    p = pool(fn("0000:00:00.1", "iavf"))
    with pytest.raises(AllocationError) as err:
        allocate(p, ["0000:99:00.0"] * 1000, NO_VHOST)
    assert str(err.value).count("0000:99:00.0") == 1


def test_answer_is_the_same_when_computed_again_after_a_health_change() -> None:
    p = pool(fn("0000:00:00.1", "vfio-pci", iommu_group="1"),
             fn("0000:00:00.2", "iavf"), additional_info={"*": {"k": "<v>"}})
    first = allocate(p, ["0000:00:00.2", "0000:00:00.1"], VHOST)
    flipped = replace(p, devices={k: replace(d, health="Unhealthy")
                                  for k, d in p.devices.items()})
    again = allocate(flipped, ["0000:00:00.2", "0000:00:00.1"], VHOST)
    assert again == first
    assert first.envs["PCIDEVICE_INTEL_COM_NET_INFO"] == go_json(
        {i: device_info(p.devices[i], p, VHOST) for i in p.devices})


def test_info_follows_the_device_when_a_rescan_rebinds_it() -> None:
    before = pool(fn("0000:00:00.1", "iavf"))
    assert allocate(before, ["0000:00:00.1"], NO_VHOST).devices == ()
    after = pool(fn("0000:00:00.1", "vfio-pci", iommu_group="7"))
    alloc = allocate(after, ["0000:00:00.1"], NO_VHOST)
    assert "/dev/vfio/7" in {d.host_path for d in alloc.devices}
    assert "vfio" in info(dict(alloc.envs), "PCIDEVICE_INTEL_COM_NET_INFO")["0000:00:00.1"]


@pytest.mark.parametrize(
    ("available", "must_include", "size", "expected"),
    [
        pytest.param(["nope", "0000:3b:02.0"], [], 2, ["0000:3b:02.0"], id="unknown-available"),
        pytest.param(["0000:3b:02.0"], ["0000:3b:0a.1"], 2, ["0000:3b:02.0"],
                     id="must-include-outside-available"),
        pytest.param(["0000:3b:02.0", "0000:3b:02.1"], [], 5,
                     ["0000:3b:02.0", "0000:3b:02.1"], id="size-beyond-available"),
        pytest.param(["0000:3b:02.0"], [], 0, [], id="zero-size"),
        pytest.param(["0000:3b:02.0"], [], -3, [], id="negative-size"),
        pytest.param(["0000:3b:02.0", "0000:3b:02.1"], ["0000:3b:02.1"], -1,
                     ["0000:3b:02.1"], id="negative-size-keeps-must-include"),
        pytest.param([], ["0000:3b:02.0"], 1, [], id="nothing-available"),
        pytest.param(["0000:3b:02.0"] * 3, ["0000:3b:02.0"] * 2, 1, ["0000:3b:02.0"],
                     id="repeats"),
    ],
)
def test_preferred_allocation_answers_from_available_when_the_request_is_odd(
    available: list[str], must_include: list[str], size: int, expected: list[str]
) -> None:
    assert preferred_allocation(_two_pf_pool(), available, must_include, size) == expected


@pytest.mark.parametrize(
    ("available", "must_include", "size", "expected"),
    [
        pytest.param(["a", "b", "c"], ["c", "x"], 2, ["c", "a"], id="must-include-first"),
        pytest.param(["a", "a", "b"], [], 5, ["a", "b"], id="repeats-and-short"),
        pytest.param(["a", "b"], ["b"], -1, ["b"], id="negative-size"),
    ],
)
def test_plain_allocation_takes_available_in_order_when_ranking_is_not_possible(
    available: list[str], must_include: list[str], size: int, expected: list[str]
) -> None:
    assert plain_allocation(available, must_include, size) == expected
