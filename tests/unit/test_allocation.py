"""Allocate answers: env vars, _INFO JSON, device specs (model only, no I/O)."""

from __future__ import annotations

import json

import pytest

from sriovdp.errors import AllocationError
from sriovdp.model.allocation import allocate, go_json
from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import HostFacts, Inventory, PciFunction
from sriovdp.model.pools import ResourcePool, build_pools
from sriovdp.model.preferred import preferred_allocation
from sriovdp.model.selectors import NetSelector

NO_VHOST = HostFacts(vhost_net=False)
VHOST = HostFacts(vhost_net=True)


def fn(addr: str, driver: str, **kw: object) -> PciFunction:
    return PciFunction(address=addr, vendor="8086", device="154c", class_code=0x020000,
                       driver=driver, **kw)  # type: ignore[arg-type]


def pool(*fns: PciFunction, prefix: str = "intel.com", name: str = "net",
         selector: NetSelector | None = None, **kw: object) -> ResourcePool:
    inventory = Inventory(functions={f.address: f for f in fns})
    cfg = ResourceConfig(name=name, selectors=(selector or NetSelector(),), **kw)  # type: ignore[arg-type]
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
