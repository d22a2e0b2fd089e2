"""The whole daemon in-process against a FakeHost and the KubeletEmulator over real sockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from daemon_kit import ALL_DPDK, ALL_NET, CONFIG, DPDK, NET, running, settings_for

from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator


async def test_pools_are_registered_and_listed_when_the_daemon_starts_in_socket_mode(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        reg = await kubelet.wait_registered(NET)
        assert (reg.version, reg.endpoint) == ("v1beta1", "intel.com_net.sock")
        assert reg.options is not None and reg.options.get_preferred_allocation_available
        devs = await kubelet.wait_for(NET, lambda d: len(d) == 4)
        assert set(devs) == ALL_NET
        assert all(d.health == "Healthy" and d.numa_nodes == (0,) for d in devs.values())
        assert set(await kubelet.wait_for(DPDK, lambda d: len(d) == 4)) == ALL_DPDK
        assert kubelet.capacity(DPDK) == (4, 4)


async def test_allocate_returns_vfio_specs_and_env_when_a_pod_is_admitted(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        await kubelet.wait_for(DPDK, lambda d: len(d) == 4)
        admitted = await kubelet.admit(DPDK, 1)
        (dev,) = admitted.device_ids
        group = f"/dev/vfio/{100 + int(dev[-1])}"
        resp = admitted.response
        assert resp.envs["PCIDEVICE_INTEL_COM_DPDK"] == dev
        assert json.loads(resp.envs["PCIDEVICE_INTEL_COM_DPDK_INFO"])[dev]["vfio"] == {
            "mount": "/dev/vfio/vfio", "dev-mount": group}
        assert [(s.host_path, s.container_path, s.permissions) for s in resp.devices] == [
            ("/dev/vfio/vfio", "/dev/vfio/vfio", "rw"), (group, group, "rw")]


async def test_allocate_is_refused_naming_the_id_when_it_is_not_in_the_pool(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await kubelet.allocate(NET, ["0000:3b:02.0", "0000:3b:02.4"])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "0000:3b:02.4" in (err.value.details() or "")


async def test_pools_register_again_with_the_same_devices_when_the_kubelet_restarts(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        for round_ in range(2, 4):
            await kubelet.restart()
            for name, ids in ((NET, ALL_NET), (DPDK, ALL_DPDK)):
                await kubelet.wait_registered(name, count=round_, timeout=3)
                await kubelet.wait_capacity(name, (4, 4), timeout=3)
                assert set(kubelet.devices(name)) == ids
            assert (settings.device_plugin_dir / "intel.com_net.sock").is_socket()


async def test_daemon_waits_for_kubelet_socket_when_the_kubelet_starts_later(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with running(settings, published=False) as daemon:
        await asyncio.sleep(0.2)  # no kubelet yet: time passes and it still only tries
        assert daemon.endpoints[NET].state == "registering"
        assert not daemon.ready.is_set()  # the first publication waits for the kubelet
        assert any("waiting for the kubelet" in p for p in daemon.status().problems)
        async with KubeletEmulator(settings.device_plugin_dir) as kubelet:
            await kubelet.wait_registered(NET, timeout=3)
            assert set(await kubelet.wait_for(NET, lambda d: len(d) == 4, timeout=3)) == ALL_NET


async def test_socket_is_recreated_and_registered_when_it_is_deleted_in_socket_mode(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        (settings.device_plugin_dir / "intel.com_net.sock").unlink()
        await kubelet.wait_registered(NET, count=2, timeout=3)
        await kubelet.wait_capacity(NET, (4, 4), timeout=3)
        assert set(kubelet.devices(NET)) == ALL_NET


async def test_watcher_mode_registers_through_getinfo_when_plugins_registry_exists(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host, watcher=True)
    async with KubeletEmulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                               watcher=True) as kubelet, running(settings):
        reg = await kubelet.wait_registered(NET)
        assert reg.mode == "watcher" and reg.plugin_type == "DevicePlugin"
        assert "v1beta1" in reg.supported_versions
        assert reg.socket_path == str(settings.plugins_registry_dir / "intel.com_net.sock")
        assert set(await kubelet.wait_for(NET, lambda d: len(d) == 4)) == ALL_NET
        assert not (settings.device_plugin_dir / "intel.com_net.sock").exists()


async def test_watcher_socket_is_recreated_when_it_is_deleted_f01(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host, watcher=True)
    async with KubeletEmulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                               watcher=True) as kubelet, running(settings):
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        (settings.plugins_registry_dir / "intel.com_net.sock").unlink()
        await kubelet.wait_registered(NET, count=2, timeout=3)
        await kubelet.wait_capacity(NET, (4, 4), timeout=3)
        assert set(kubelet.devices(NET)) == ALL_NET


async def test_pool_registers_again_when_the_kubelet_ends_the_stream_f11(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings) as d:
        await kubelet.wait_for(NET, lambda devs: len(devs) == 4)
        # The kubelet's side of the stream goes away without any socket changing.
        await kubelet.disconnect(NET)
        assert kubelet.capacity(NET) == (4, 0)
        await kubelet.wait_registered(NET, count=2, timeout=3)
        await kubelet.wait_capacity(NET, (4, 4), timeout=3)
        assert d.endpoints[NET].restarts >= 1


async def test_refused_registration_is_retried_when_the_kubelet_rejects_it_once(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet:
        kubelet.reject_next_registration("try later")
        async with running(settings, {"resourceList": CONFIG["resourceList"][:1]}):
            await kubelet.wait_registered(NET, accepted=False, timeout=3)
            await kubelet.wait_for(NET, lambda d: len(d) == 4, timeout=5)


async def test_empty_pool_is_advertised_with_zero_devices_when_nothing_matches(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    config = {"resourceList": [{"resourceName": "none", "selectors": [{"vendors": ["abcd"]}]}]}
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings, config):
        await kubelet.wait_for("intel.com/none", lambda d: d == {})
        assert kubelet.capacity("intel.com/none") == (0, 0)


async def test_sockets_are_removed_when_the_daemon_stops(workdir: Path, host: FakeHost) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet:
        async with running(settings):
            await kubelet.wait_for(NET, lambda d: len(d) == 4)
        assert sorted(p.name for p in settings.device_plugin_dir.iterdir()) == [
            p for p in [".sriovdp", "kubelet.sock", "kubelet_internal_checkpoint"]
            if (settings.device_plugin_dir / p).exists()]
        assert list((settings.device_plugin_dir / ".sriovdp").iterdir()) == []  # locks gone


async def test_pools_come_back_when_the_stream_ends_before_the_kubelet_restarts_f06(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        await kubelet.wait_capacity(NET, (4, 4))
        await kubelet.disconnect(NET)  # the stream is gone first ...
        await kubelet.restart()        # ... then every socket, and a new kubelet.sock
        await kubelet.wait_capacity(NET, (4, 4), timeout=3)
        await kubelet.wait_capacity(DPDK, (4, 4), timeout=3)


async def test_allocated_devices_stay_healthy_and_assigned_when_the_kubelet_restarts_f10(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        await kubelet.wait_capacity(DPDK, (4, 4))
        admitted = await kubelet.admit(DPDK, 2, pod="running-pod")
        await kubelet.restart()
        await kubelet.wait_capacity(DPDK, (4, 4), timeout=2)
        assert all(kubelet.devices(DPDK)[d].healthy for d in admitted.device_ids)
        assert {d for a in kubelet.allocations("running-pod") for d in a.device_ids} == \
            set(admitted.device_ids)
        second = await kubelet.admit(DPDK, 2, pod="new-pod")
        assert not set(second.device_ids) & set(admitted.device_ids)
