"""DRA mode's link health end to end: veths in a test-made network namespace stand in for the
PF and VF netdevs of the demo FakeHost; the daemon's PyrouteLinkSource watches that namespace
and a VF that loses carrier is withdrawn from the node's ResourceSlices (in-memory apiserver)
by the same fast path that pushes device plugin health."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sriovdp.daemon.reconciler import Reconciler
from sriovdp.daemon.settings import Settings
from sriovdp.host.links import PyrouteLinkSource
from sriovdp.kubelet.dra.apiserver import DraApis
from sriovdp.model.config import parse_config
from sriovdp.model.dra.modes import DraMode
from sriovdp.testing import eventually
from sriovdp.testing.demo import build_demo_host
from sriovdp.testing.dra import FakeClaimReader, FakeNodeReader, FakeSliceApi
from sriovdp.testing.links import NetnsLab
from sriovdp.testing.podresources import FakePodResources

pytestmark = pytest.mark.needs_root
CONFIG = {"resourceList": [
    {"resourceName": "net", "dra": True, "selectors": [{"drivers": ["iavf"]}]},
    {"resourceName": "dpdk", "selectors": [{"drivers": ["vfio-pci"]}]},
]}
X710_VFS = {f"0000:3b:02.{i}" for i in range(4)}

_WHY_NOT = NetnsLab.available()


@pytest.fixture
async def lab() -> AsyncIterator[NetnsLab]:
    if _WHY_NOT is not None:
        pytest.skip(_WHY_NOT)
    async with NetnsLab() as lab:
        await lab.add_veth("ens785f0", "pf0peer")       # the X710 PF's netdev
        await lab.add_veth("ens785f0v1", "vf1peer")     # VF 1's netdev
        yield lab


def published(api: FakeSliceApi) -> set[str]:
    return {d["attributes"]["pciAddress"]["string"] for s in api.slices.values()
            for d in s["spec"].get("devices") or []}


async def test_a_vf_is_withdrawn_from_the_slices_when_its_veth_loses_carrier(
        lab: NetnsLab) -> None:
    work = Path(tempfile.mkdtemp(prefix="sdpdh-", dir="/tmp"))
    try:
        host = build_demo_host(work / "host")
        (work / "dp").mkdir()
        settings = Settings(host=host.paths, config_file=work / "c.json",
                            device_plugin_dir=work / "dp", plugins_registry_dir=work / "reg",
                            kubelet_plugins_dir=work / "plugins", device_info_dir=work / "di",
                            cdi_dir=work / "cdi", pod_resources_socket=work / "pr.sock",
                            dra=DraMode.MARKED, node_name="worker-1", resync_interval=3600)
        api = FakeSliceApi()
        apis = DraApis(slices=api, claims=FakeClaimReader(),
                       nodes=FakeNodeReader({"worker-1": "uid-1"}))
        daemon = Reconciler(settings, parse_config(json.dumps(CONFIG)),
                            links=PyrouteLinkSource(netns=lab.name), dra_apis=apis,
                            pod_resources=FakePodResources())  # no kubelet here
        task = asyncio.create_task(daemon.run())
        try:
            await eventually(lambda: published(api) == X710_VFS, what="every VF published")
            await lab.set_carrier("ens785f0v1", False)
            await eventually(lambda: published(api) == X710_VFS - {"0000:3b:02.1"}, timeout=3,
                             what="the VF without carrier withdrawn")
            await lab.set_carrier("ens785f0v1", True)
            await eventually(lambda: published(api) == X710_VFS, timeout=3, what="back")
            await lab.set_carrier("ens785f0", False)  # the PF: every VF of it
            await eventually(lambda: published(api) == set(), timeout=3, what="PF down")
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
