"""Link health end to end: veths in a test-made network namespace stand in for the PF and VF
netdevs of a FakeHost; the daemon's PyrouteLinkSource watches that namespace and the
KubeletEmulator sees the health change on ListAndWatch."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sriovdp.daemon.reconciler import Reconciler
from sriovdp.host.links import PyrouteLinkSource
from sriovdp.model.config import parse_config
from sriovdp.testing.demo import build_demo_host
from sriovdp.testing.kubelet import KubeletEmulator
from sriovdp.testing.links import NetnsLab

pytestmark = pytest.mark.needs_root
NET = "intel.com/net"
DPDK = "intel.com/dpdk"
CONFIG = ('{"resourceList": [{"resourceName": "net", "selectors": [{"drivers": ["iavf"]}]},'
          '{"resourceName": "dpdk", "selectors": [{"drivers": ["vfio-pci"]}]}]}')

_WHY_NOT = NetnsLab.available()


@pytest.fixture
async def lab() -> AsyncIterator[NetnsLab]:
    if _WHY_NOT is not None:
        pytest.skip(_WHY_NOT)
    async with NetnsLab() as lab:
        await lab.add_veth("ens785f0", "pf0peer")       # the X710 PF's netdev
        await lab.add_veth("ens785f0v0", "vf0peer")     # VF 0's netdev
        yield lab


def healthy(devs: dict[str, object]) -> set[str]:
    return {k for k, d in devs.items() if d.healthy}


async def test_vfs_follow_their_pf_and_own_link_when_carrier_changes(lab: NetnsLab) -> None:
    work = Path(tempfile.mkdtemp(prefix="sdph-", dir="/tmp"))
    try:
        from sriovdp.daemon.settings import Settings
        host = build_demo_host(work / "host")
        (work / "dp").mkdir()
        settings = Settings(host=host.paths, config_file=work / "c.json",
                            device_plugin_dir=work / "dp", plugins_registry_dir=work / "none")
        daemon = Reconciler(settings, parse_config(CONFIG), links=PyrouteLinkSource(netns=lab.name))
        import asyncio

        async with KubeletEmulator(settings.device_plugin_dir) as kubelet:
            task = asyncio.create_task(daemon.run())
            try:
                vfs = {f"0000:3b:02.{i}" for i in range(4)}
                vfio = {f"0000:3b:02.{i}" for i in range(4, 8)}
                await kubelet.wait_for(NET, lambda d: healthy(d) == vfs, timeout=5)
                # PF carrier lost: every VF of the PF, netdev or vfio, goes Unhealthy
                await lab.set_carrier("ens785f0", False)
                await kubelet.wait_for(NET, lambda d: healthy(d) == set(), timeout=3)
                await kubelet.wait_for(DPDK, lambda d: healthy(d) == set(), timeout=3)
                assert kubelet.capacity(NET) == (4, 0)
                # carrier back: Healthy again
                await lab.set_carrier("ens785f0", True)
                await kubelet.wait_for(NET, lambda d: healthy(d) == vfs, timeout=3)
                await kubelet.wait_for(DPDK, lambda d: healthy(d) == vfio, timeout=3)
                # a VF's own link loses carrier: only that VF
                await lab.set_carrier("ens785f0v0", False)
                await kubelet.wait_for(NET, lambda d: healthy(d) == vfs - {"0000:3b:02.0"},
                                       timeout=3)
                assert healthy(kubelet.devices(DPDK)) == vfio
                assert daemon.metrics.link_events >= 3
            finally:
                daemon.stop()
                await asyncio.wait_for(task, 10)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def test_a_uevent_makes_the_daemon_rescan_when_the_host_changes(lab: NetnsLab) -> None:
    import asyncio

    from sriovdp.daemon.settings import Settings
    from sriovdp.host.uevents import UeventSource

    work = Path(tempfile.mkdtemp(prefix="sdpu-", dir="/tmp"))
    try:
        host = build_demo_host(work / "host")
        (work / "dp").mkdir()
        settings = Settings(host=host.paths, config_file=work / "c.json",
                            device_plugin_dir=work / "dp", plugins_registry_dir=work / "none",
                            resync_interval=3600)
        daemon = Reconciler(settings, parse_config(CONFIG), uevents=UeventSource(netns=lab.name))
        async with KubeletEmulator(settings.device_plugin_dir) as kubelet:
            task = asyncio.create_task(daemon.run())
            try:
                await kubelet.wait_for(DPDK, lambda d: len(d) == 4, timeout=5)
                await asyncio.wait_for(daemon.supervisor.ready_event("uevents").wait(), 5)
                host.bind("0000:3b:02.0", "vfio-pci", iommu_group=99)  # no event of its own
                await lab.add_veth("newvf0", "newvf0p")  # a device appears: kernel uevent
                await kubelet.wait_for(DPDK, lambda d: "0000:3b:02.0" in d, timeout=3)
            finally:
                daemon.stop()
                await asyncio.wait_for(task, 10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
