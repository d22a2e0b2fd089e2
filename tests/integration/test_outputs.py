"""Device-info files and CDI specs kept by a running daemon."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import yaml
from daemon_kit import DPDK, NET, running, settings_for

from sriovdp.daemon.settings import Settings
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "cdi-schema.json").read_text())


def with_cdi(settings: Settings) -> Settings:
    return replace(settings, **{"use_cdi": True})


async def test_device_info_file_is_written_on_allocate_and_kept_across_a_daemon_restart(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    devinfo = settings.device_info_dir
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet:
        async with running(settings):
            await kubelet.wait_for(NET, lambda d: len(d) == 4)
            admitted = await kubelet.admit(NET, 1, pod="p1")
            (dev,) = admitted.device_ids
            path = devinfo / f"intel.com-net-{dev}-device.json"
            assert json.loads(path.read_text()) == {
                "type": "pci", "version": "1.1.0", "pci": {"pci-address": dev}}
            assert path.stat().st_mode & 0o777 == 0o444
        assert path.exists()  # shutdown keeps it: the pod still runs
        stale = devinfo / "intel.com-net-0000:3b:0f.1-device.json"
        stale.write_text("{}")
        other = devinfo / "intel.com-net-x-0000:3b:02.1-device.json"  # another pool's file
        other.write_text("{}")
        async with running(settings):
            await kubelet.wait_registered(NET, count=2)
            assert path.exists() and not stale.exists() and other.exists()
            # the pod ends (its grant leaves the kubelet's checkpoint) and the device leaves
            # the pool (rebound to vfio-pci): its file goes
            kubelet.release("p1")
            host.bind(dev, "vfio-pci", iommu_group=77)
            # (the daemon notices on its next scan)
        async with running(settings) as daemon:
            await kubelet.wait_for(NET, lambda d: dev not in d, timeout=3)
            assert not path.exists()
            assert dev in daemon.pools[DPDK].devices


async def test_each_resource_keeps_its_cdi_annotation_when_one_container_takes_two_resources(
    workdir: Path, host: FakeHost
) -> None:
    settings = with_cdi(settings_for(workdir, host))
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        await kubelet.wait_for(DPDK, lambda d: len(d) == 4)
        net = await kubelet.admit(NET, 1, pod="p1")
        dpdk = await kubelet.admit(DPDK, 1, pod="p1")
        config = await kubelet.start_container("p1")
        named = {n for value in config.annotations.values() for n in value.split(",")}
        assert named == {f"intel.com/net-pci={net.device_ids[0]}",
                         f"intel.com/net-pci={dpdk.device_ids[0]}"}
        assert set(config.cdi_devices) == named


async def test_cdi_specs_are_written_and_allocate_answers_with_cdi_names_in_cdi_mode(
    workdir: Path, host: FakeHost
) -> None:
    settings = with_cdi(settings_for(workdir, host))
    stale = settings.cdi_dir / "sriov-dp-intel.com-net-pci-gone.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("cdiVersion: 0.5.0\n")
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        await kubelet.wait_for(DPDK, lambda d: len(d) == 4)
        specs = sorted(p.name for p in settings.cdi_dir.iterdir())
        assert specs == ["sriov-dp-intel.com-net-pci-dpdk.yaml",
                         "sriov-dp-intel.com-net-pci-net.yaml"]
        for name in specs:
            doc = yaml.safe_load((settings.cdi_dir / name).read_text())
            jsonschema.validate(doc, SCHEMA)  # kernel-driver VFs too (no device nodes)
            assert doc["kind"] == "intel.com/net-pci"
        resp = (await kubelet.allocate(DPDK, ["0000:3b:02.4"])).container_responses[0]
        assert [c.name for c in resp.cdi_devices] == ["intel.com/net-pci=0000:3b:02.4"]
        assert dict(resp.annotations) == {
            "cdi.k8s.io/intel.com_dpdk": "intel.com/net-pci=0000:3b:02.4"}
        assert not resp.devices
        assert resp.envs["PCIDEVICE_INTEL_COM_DPDK"] == "0000:3b:02.4"


async def test_cdi_spec_write_is_retried_named_in_readyz_and_its_pool_unhealthy_when_it_fails(
    workdir: Path, host: FakeHost
) -> None:
    from daemon_kit import free_port, http_get

    from sriovdp.testing import eventually

    port = free_port()
    settings = replace(with_cdi(settings_for(workdir, host)),
                       health_address=f"127.0.0.1:{port}", resync_interval=60.0)
    settings.cdi_dir.write_text("not a directory")  # every spec write fails
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        # no CDI name without its spec: the kubelet sees the devices, but none Healthy
        devs = await kubelet.wait_for(DPDK, lambda d: len(d) == 4, timeout=5)
        assert not any(d.healthy for d in devs.values())

        async def not_ready() -> str | None:
            status, body = await http_get(port, "/readyz")
            return body if status == 503 and "CDI spec of intel.com/dpdk" in body else None

        body = await eventually(not_ready, what="readyz names the CDI problem")
        assert "cannot write CDI spec" in body
        settings.cdi_dir.unlink()
        settings.cdi_dir.mkdir()
        (settings.cdi_dir / "sriov-dp-intel.com-net-pci-gone.yaml").mkdir()  # undeletable
        # retried without any host change or resync
        await kubelet.wait_for(DPDK, lambda d: all(x.healthy for x in d.values()), timeout=10)
        assert (settings.cdi_dir / "sriov-dp-intel.com-net-pci-dpdk.yaml").exists()
        await eventually(lambda: _ready(port), timeout=5, what="ready despite a stale entry")
        resp = (await kubelet.allocate(DPDK, ["0000:3b:02.4"])).container_responses[0]
        assert [c.name for c in resp.cdi_devices] == ["intel.com/net-pci=0000:3b:02.4"]


async def _ready(port: int) -> bool:
    from daemon_kit import http_get

    return (await http_get(port, "/readyz"))[0] == 200
