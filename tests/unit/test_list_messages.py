"""The ListAndWatch message of a pool: built once per published pool value."""

from __future__ import annotations

from dataclasses import replace

from sriovdp.kubelet.servicer import pool_list
from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import PciFunction
from sriovdp.model.health import Health
from sriovdp.model.pools import PoolDevice, ResourcePool


def _pool(health: Health = Health.HEALTHY) -> ResourcePool:
    devices = {}
    for i in range(4):
        address = f"0000:3b:02.{i}"
        function = PciFunction(address=address, vendor="8086", device="154c",
                               class_code=0x020000, driver="iavf")
        devices[address] = PoolDevice(id=address, function=function, health=health,
                                      numa_node=0)
    return ResourcePool(config=ResourceConfig(name="net"), prefix="intel.com", devices=devices)


def test_list_is_reused_when_the_same_pool_value_is_streamed_again() -> None:
    pool = _pool()
    assert pool_list(pool) is pool_list(pool)  # a kubelet restart's new stream


def test_list_is_rebuilt_when_a_new_pool_value_is_published() -> None:
    pool = _pool()
    first = pool_list(pool)
    sick = replace(pool, devices={k: replace(d, health=Health.UNHEALTHY)
                                  for k, d in pool.devices.items()})
    second = pool_list(sick)
    assert second is not first
    assert {d.health for d in second.devices} == {"Unhealthy"}
    assert [d.ID for d in second.devices] == [d.ID for d in first.devices]
