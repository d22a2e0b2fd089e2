"""Every device family end to end: golden hosts, the daemon and the kubelet emulator.

Expected values are those of upstream-behavior §4.6, §7 and §10 (RDMA char devices and
`_INFO` keys, vDPA vhost nodes, SF device ids, device-info files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemon_kit import running

from sriovdp.daemon.settings import Settings
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator

HOSTS = Path(__file__).parents[1] / "data" / "hosts"


def settings_on(workdir: Path, spec: str) -> tuple[Settings, FakeHost]:
    host = FakeHost.load(workdir / "host", HOSTS / spec)
    (workdir / "dp").mkdir()
    return Settings(host=host.paths, config_file=workdir / "c.json",
                    device_plugin_dir=workdir / "dp", plugins_registry_dir=workdir / "none",
                    device_info_dir=workdir / "devinfo", cdi_dir=workdir / "cdi"), host


def config(*resources: dict[str, object]) -> dict[str, object]:
    return {"resourceList": list(resources)}


async def test_rdma_vfs_get_their_char_devices_info_and_device_info_file(workdir: Path) -> None:
    settings, _ = settings_on(workdir, "cx5-rdma.yaml")
    cfg = config({"resourceName": "mlnx_sriov_rdma",
                  "selectors": {"vendors": ["15b3"], "devices": ["1018"], "isRdma": True}})
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings, cfg):
        name = "intel.com/mlnx_sriov_rdma"
        devs = await kubelet.wait_for(name, lambda d: len(d) == 4)
        assert all(d.numa_nodes == (1,) for d in devs.values())
        resp = (await kubelet.allocate(name, ["0000:af:00.2"])).container_responses[0]
        assert [s.host_path for s in resp.devices] == [
            "/dev/infiniband/issm2", "/dev/infiniband/umad2", "/dev/infiniband/uverbs2",
            "/dev/infiniband/rdma_cm"]
        info = json.loads(resp.envs["PCIDEVICE_INTEL_COM_MLNX_SRIOV_RDMA_INFO"])
        assert info["0000:af:00.2"]["rdma"] == {
            "issm": "/dev/infiniband/issm2", "umad": "/dev/infiniband/umad2",
            "uverbs": "/dev/infiniband/uverbs2", "rdma_cm": "/dev/infiniband/rdma_cm",
            "rdma_dev": "mlx5_2"}
        doc = json.loads((settings.device_info_dir /
                          "intel.com-mlnx_sriov_rdma-0000:af:00.2-device.json").read_text())
        assert doc == {"type": "pci", "version": "1.1.0",
                       "pci": {"pci-address": "0000:af:00.2", "rdma-device": "mlx5_2"}}


async def test_sub_functions_form_an_aux_pool_with_aux_names_as_ids(workdir: Path) -> None:
    settings, _ = settings_on(workdir, "cx6dx-sf.yaml")
    cfg = config({"resourceName": "sf_pool", "deviceType": "auxNetDevice",
                  "selectors": [{"auxTypes": ["sf"], "pfNames": ["enp59s0f0np0#2-4"]}]},
                 {"resourceName": "sf_rdma", "deviceType": "auxNetDevice",
                  "selectors": [{"auxTypes": ["sf"], "isRdma": True}]})
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings, cfg):
        devs = await kubelet.wait_for("intel.com/sf_pool", lambda d: len(d) == 3)
        assert set(devs) == {"mlx5_core.sf.2", "mlx5_core.sf.3", "mlx5_core.sf.4"}
        assert (await kubelet.wait_for("intel.com/sf_rdma", lambda d: True)) == {}  # sf.2 taken
        resp = (await kubelet.allocate("intel.com/sf_pool",
                                       ["mlx5_core.sf.3"])).container_responses[0]
        assert resp.envs["PCIDEVICE_INTEL_COM_SF_POOL"] == "mlx5_core.sf.3"
        assert json.loads(resp.envs["PCIDEVICE_INTEL_COM_SF_POOL_INFO"]) == {
            "mlx5_core.sf.3": {"generic": {"deviceID": "mlx5_core.sf.3"}}}
        assert not list(settings.device_info_dir.glob("*-device.json")) \
            if settings.device_info_dir.exists() else True  # aux pools write no such files


@pytest.mark.parametrize(("vdpa_type", "ids", "node"), [
    pytest.param("vhost", {"0000:65:00.2"}, "/dev/vhost-vdpa-0", id="vhost"),
    pytest.param("virtio", {"0000:65:00.3"}, None, id="virtio"),
])
async def test_vdpa_pools_take_the_vfs_bound_to_the_matching_vdpa_driver(
    workdir: Path, vdpa_type: str, ids: set[str], node: str | None
) -> None:
    settings, _ = settings_on(workdir, "vdpa.yaml")
    cfg = config({"resourceName": "vdpa", "selectors": [{"vdpaType": vdpa_type}]})
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings, cfg):
        devs = await kubelet.wait_for("intel.com/vdpa", lambda d: len(d) == len(ids))
        assert set(devs) == ids
        (dev,) = ids
        resp = (await kubelet.allocate("intel.com/vdpa", [dev])).container_responses[0]
        assert [s.host_path for s in resp.devices] == ([node] if node else [])
        info = json.loads(resp.envs["PCIDEVICE_INTEL_COM_VDPA_INFO"])[dev]
        assert info["vdpa"] == ({"mount": node} if node else {})
        doc = json.loads((settings.device_info_dir /
                          f"intel.com-vdpa-{dev}-device.json").read_text())
        assert doc["type"] == "vdpa" and doc["vdpa"]["driver"] == vdpa_type
        assert doc["vdpa"].get("path") == node


async def test_pkey_selector_takes_the_vfs_with_that_default_pkey(workdir: Path) -> None:
    settings, _ = settings_on(workdir, "ib-hca-pkeys.yaml")
    cfg = config({"resourceName": "ib", "selectors": [
        {"linkTypes": ["infiniband"], "pKeys": ["0x8001", "0x8002"]}]})
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings, cfg):
        devs = await kubelet.wait_for("intel.com/ib", lambda d: len(d) == 2)
        assert set(devs) == {"0000:d8:00.3", "0000:d8:00.5"}


async def test_ddp_selector_uses_the_profile_ddptool_reports(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = workdir / "bin"
    bindir.mkdir()
    tool = bindir / "ddptool"
    tool.write_text("#!/bin/sh\n"
                    'echo \'{"DDPInventory":{"DDPpackage":{"name":"ICE COMMS Package"}}}\'\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    settings, _ = settings_on(workdir, "e810-ddp.yaml")
    cfg = config({"resourceName": "comms", "selectors": [
        {"devices": ["1889"], "ddpProfiles": ["ICE COMMS Package"]}]})
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings, cfg):
        devs = await kubelet.wait_for("intel.com/comms", lambda d: len(d) == 4)
        assert all(d.startswith("0000:5e:01.") for d in devs)
