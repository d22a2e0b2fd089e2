"""DaemonMetrics: what a scrape shows for a Status (no daemon, no HTTP: the exposition text)."""

from __future__ import annotations

from sriovdp.daemon.metrics import DaemonMetrics
from sriovdp.daemon.status import EndpointStatus, Status
from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import PciFunction
from sriovdp.model.health import Health
from sriovdp.model.pools import PoolDevice, ResourcePool


def _pool(name: str, *health: Health) -> ResourcePool:
    devices = {}
    for i, h in enumerate(health):
        address = f"0000:3b:02.{i}"
        function = PciFunction(address=address, vendor="8086", device="154c",
                               class_code=0x020000, driver="iavf")
        devices[address] = PoolDevice(id=address, function=function, health=h)
    return ResourcePool(config=ResourceConfig(name=name), prefix="intel.com", devices=devices)


def _scrape(status: Status) -> list[str]:
    metrics = DaemonMetrics()
    metrics.bind(lambda: status)
    return metrics.render().decode().splitlines()


def test_pool_info_says_both_and_device_gauges_add_up_when_a_move_drains() -> None:
    # intel.com/net moved to DRA while a pod still holds one VF through its device plugin pool
    ok, bad = Health.HEALTHY, Health.UNHEALTHY
    status = Status(started=True,
                    pools={"intel.com/net": _pool("net", ok), "intel.com/dpdk": _pool("dpdk", ok)},
                    endpoints={"intel.com/net": EndpointStatus(True, True),
                               "intel.com/dpdk": EndpointStatus(True, True)},
                    dra_pools={"intel.com/net": _pool("net", ok, ok, bad)})
    lines = _scrape(status)
    # one series per resource, so it joins one-to-one on resource
    assert [x for x in lines if x.startswith("sriovdp_pool_info{")] == [
        'sriovdp_pool_info{resource="intel.com/net",served="both"} 1.0',
        'sriovdp_pool_info{resource="intel.com/dpdk",served="device-plugin"} 1.0',
    ]
    # one series per resource, as before: a device is offered one way only, so they add up
    assert [x for x in lines if x.startswith("sriovdp_pool_devices{")] == [
        'sriovdp_pool_devices{resource="intel.com/net"} 4.0',
        'sriovdp_pool_devices{resource="intel.com/dpdk"} 1.0',
    ]
    assert 'sriovdp_pool_unhealthy_devices{resource="intel.com/net"} 1.0' in lines
    assert [x for x in lines if x.startswith("sriovdp_pool_registered{")] == [
        'sriovdp_pool_registered{resource="intel.com/net"} 1.0',
        'sriovdp_pool_registered{resource="intel.com/dpdk"} 1.0',
    ]


def test_pool_series_keep_their_label_sets_when_dra_is_off() -> None:
    status = Status(started=True, pools={"intel.com/net": _pool("net", Health.HEALTHY)},
                    endpoints={"intel.com/net": EndpointStatus(True, True)})
    lines = _scrape(status)
    assert 'sriovdp_pool_devices{resource="intel.com/net"} 1.0' in lines
    assert 'sriovdp_pool_info{resource="intel.com/net",served="device-plugin"} 1.0' in lines
    assert not [x for x in lines if "served=" in x and not x.startswith("sriovdp_pool_info")]
