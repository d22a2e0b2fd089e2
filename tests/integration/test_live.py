"""A running daemon following config and host changes, and its probes and metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from daemon_kit import (
    ALL_DPDK,
    ALL_NET,
    CONFIG,
    DPDK,
    NET,
    free_port,
    http_get,
    running,
    settings_for,
    write,
)

from sriovdp.daemon.settings import Settings
from sriovdp.testing import eventually
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator


async def _status(port: int, path: str) -> bool:
    return (await http_get(port, path))[0] == 200


def with_config(settings: Settings, doc: object) -> Settings:
    write(settings.config_file, doc)
    return settings




async def test_config_reload_adds_changes_and_removes_pools_when_the_file_changes(
    workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    settings = with_config(settings_for(workdir, host), CONFIG)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, \
            running(settings, CONFIG) as daemon:
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET)
        # add a pool
        mlnx = {"resourceName": "mlnx", "selectors": [{"vendors": ["15b3"], "devices": ["1018"]}]}
        write(settings.config_file, {"resourceList": [*CONFIG["resourceList"], mlnx]})
        await kubelet.wait_for("intel.com/mlnx", lambda d: len(d) == 4, timeout=3)
        # change a selector: the net pool keeps only VFs 0-1
        changed = json.loads(json.dumps(CONFIG))
        changed["resourceList"][0]["selectors"][0]["pfNames"] = ["ens785f0#0-1"]
        write(settings.config_file, {"resourceList": [*changed["resourceList"], mlnx]})
        await kubelet.wait_for(NET, lambda d: set(d) == {"0000:3b:02.0", "0000:3b:02.1"},
                               timeout=3)
        # break the file: the last good config stays, the error names the JSON path
        caplog.set_level(logging.ERROR)
        write(settings.config_file, {"resourceList": [{"resourceName": "x.y", "selectors": {}}]})
        await eventually(lambda: "keeping the last good config" in caplog.text,
                         what="reload failure logged")
        assert "resourceList[0].resourceName" in caplog.text
        assert "keeping the last good config" in caplog.text
        assert set(daemon.pools) == {NET, DPDK, "intel.com/mlnx"}
        assert daemon.metrics.reloads["failed"] == 1
        # remove the mlnx pool (and restore validity)
        write(settings.config_file, CONFIG)
        mlnx = settings.device_plugin_dir / "intel.com_mlnx.sock"
        await eventually(lambda: not mlnx.exists(), what="mlnx socket removed")
        assert set(daemon.pools) == {NET, DPDK}
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET, timeout=3)
        assert daemon.metrics.reloads["ok"] == 3


async def test_config_reload_follows_a_configmap_symlink_swap(
    workdir: Path, host: FakeHost
) -> None:
    # The kubelet's atomic writer: config.json -> ..data/config.json, ..data -> ..2026_x
    cm = workdir / "cm"
    (cm / "..v1").mkdir(parents=True)
    (cm / "..v1" / "config.json").write_text(json.dumps(CONFIG))
    (cm / "..data").symlink_to("..v1")
    (cm / "config.json").symlink_to("..data/config.json")
    base = settings_for(workdir, host)
    settings = replace(base, **{"config_file": cm / "config.json"})
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings, CONFIG):
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET)
        (cm / "..v2").mkdir()
        only_dpdk = {"resourceList": CONFIG["resourceList"][1:]}
        (cm / "..v2" / "config.json").write_text(json.dumps(only_dpdk))
        (cm / "..data_tmp").symlink_to("..v2")
        os.replace(cm / "..data_tmp", cm / "..data")
        net = settings.device_plugin_dir / "intel.com_net.sock"
        await eventually(lambda: not net.exists(), what="net socket removed")
        assert set(kubelet.devices(DPDK)) == ALL_DPDK


async def test_new_vfs_are_advertised_when_sriov_numvfs_is_raised_and_the_host_rescanned(
    workdir: Path, host: FakeHost
) -> None:
    settings = with_config(settings_for(workdir, host), CONFIG)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, \
            running(settings, CONFIG) as daemon:
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET)
        host.set_numvfs("0000:3b:00.0", 0)  # as the kernel wants: 0 first, then the new count
        daemon.trigger("test: VFs removed")
        # vanished VFs are not dropped silently: they stay, Unhealthy, until a resync
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET and not any(
            x.healthy for x in d.values()), timeout=3)
        await kubelet.wait_capacity(DPDK, (4, 0), timeout=3)
        host.set_numvfs("0000:3b:00.0", 10)
        daemon.trigger("test: VFs created")
        devs = await kubelet.wait_for(NET, lambda d: len(d) == 10 and all(
            x.healthy for x in d.values()), timeout=3)
        assert {"0000:3b:03.0", "0000:3b:03.1"} <= set(devs)
        await kubelet.wait_for(DPDK, lambda d: d == {}, timeout=3)  # all 10 VFs are iavf now


async def test_vanished_vfs_go_unhealthy_then_leave_unless_assigned_when_the_pf_is_removed(
    workdir: Path, host: FakeHost
) -> None:
    base = settings_for(workdir, host)
    settings = replace(base, **{"resync_interval": 0.3,
                           "pod_resources_socket": workdir / "pr" / "kubelet.sock"})
    write(settings.config_file, CONFIG)
    async with KubeletEmulator(settings.device_plugin_dir,
                               pod_resources_socket=settings.pod_resources_socket) as kubelet, \
            running(settings, CONFIG) as daemon:
        await kubelet.wait_for(DPDK, lambda d: set(d) == ALL_DPDK)
        admitted = await kubelet.admit(DPDK, 1, pod="busy")
        (in_use,) = admitted.device_ids
        host.remove("0000:3b:00.0")  # the PF and its VFs are gone from the host
        daemon.trigger("test: PF removed")
        await kubelet.wait_capacity(DPDK, (4, 0), timeout=3)
        await kubelet.wait_capacity(NET, (4, 0), timeout=3)
        # after the next periodic resync only the device assigned to a pod remains
        devs = await kubelet.wait_for(DPDK, lambda d: set(d) == {in_use}, timeout=5)
        assert not devs[in_use].healthy
        await kubelet.wait_for(NET, lambda d: d == {}, timeout=5)
        kubelet.release("busy")
        await kubelet.wait_for(DPDK, lambda d: d == {}, timeout=5)


async def test_rebound_vf_moves_from_the_netdev_pool_to_the_vfio_pool_on_rescan(
    workdir: Path, host: FakeHost
) -> None:
    settings = with_config(settings_for(workdir, host), CONFIG)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, \
            running(settings, CONFIG) as daemon:
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET)
        host.bind("0000:3b:02.0", "vfio-pci", iommu_group=99)
        daemon.trigger("test: rebind")
        await kubelet.wait_for(NET, lambda d: "0000:3b:02.0" not in d, timeout=3)
        await kubelet.wait_for(DPDK, lambda d: "0000:3b:02.0" in d, timeout=3)
        resp = await kubelet.allocate(DPDK, ["0000:3b:02.0"])
        assert "/dev/vfio/99" in [d.host_path for d in resp.container_responses[0].devices]


async def test_probes_and_metrics_report_pool_state_when_scraped(
    workdir: Path, host: FakeHost
) -> None:
    port = free_port()
    base = settings_for(workdir, host)
    settings = replace(base, **{"health_address": f"127.0.0.1:{port}",
                           "metrics_address": f"127.0.0.1:{port}"})
    write(settings.config_file, CONFIG)
    async with running(settings, CONFIG, published=False):
        assert await http_get(port, "/healthz") == (200, "ok\n")
        status, body = await http_get(port, "/readyz")
        assert status == 503 and "first pass not published" in body

        async def waiting_for_the_kubelet() -> bool:
            status, body = await http_get(port, "/readyz")
            return status == 503 and "waiting for the kubelet" in body and NET in body

        await eventually(waiting_for_the_kubelet, what="/readyz names the kubelet")
        async with KubeletEmulator(settings.device_plugin_dir) as kubelet:
            await kubelet.wait_for(NET, lambda d: len(d) == 4, timeout=3)
            await kubelet.wait_for(DPDK, lambda d: len(d) == 4, timeout=3)
            await eventually(lambda: _status(port, "/readyz"), what="ready")
            await kubelet.admit(DPDK, 2)
            status, text = await http_get(port, "/metrics")
            assert status == 200
            assert 'sriovdp_pool_devices{resource="intel.com/dpdk"} 4.0' in text
            assert 'sriovdp_pool_healthy_devices{resource="intel.com/net"} 4.0' in text
            assert 'sriovdp_allocations_total{resource="intel.com/dpdk"} 2.0' in text
            assert 'sriovdp_registrations_total{resource="intel.com/net"} 1.0' in text
            assert "sriovdp_scan_duration_seconds_count" in text
            assert (await http_get(port, "/nope"))[0] == 404


async def test_metrics_follow_an_allocation_and_a_link_change_when_scraped(
    workdir: Path, host: FakeHost
) -> None:
    from sriovdp.daemon.reconciler import Reconciler
    from sriovdp.model.config import parse_config
    from sriovdp.model.health import LinkState
    from sriovdp.testing.links import FakeLinkSource

    port = free_port()
    base = settings_for(workdir, host)
    settings = replace(base, **{"metrics_address": f"127.0.0.1:{port}"})
    links = FakeLinkSource([LinkState("ens785f0", True, "UP")])
    daemon = Reconciler(settings, parse_config(json.dumps(CONFIG)), links=links)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet:
        task = asyncio.create_task(daemon.run())
        try:
            await kubelet.wait_capacity(NET, (4, 4), timeout=5)
            await kubelet.admit(NET, 2)
            links.set_carrier("ens785f0", False)  # the PF loses its link
            await kubelet.wait_capacity(NET, (4, 0), timeout=3)
            _, text = await http_get(port, "/metrics")
            for line in ('sriovdp_pool_devices{resource="intel.com/net"} 4.0',
                         'sriovdp_pool_healthy_devices{resource="intel.com/net"} 0.0',
                         'sriovdp_pool_unhealthy_devices{resource="intel.com/net"} 4.0',
                         'sriovdp_pool_unhealthy_devices{resource="intel.com/dpdk"} 4.0',
                         'sriovdp_allocations_total{resource="intel.com/net"} 2.0',
                         'sriovdp_pool_registered{resource="intel.com/net"} 1.0',
                         "sriovdp_link_events_total 1.0"):
                assert line in text, line
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await kubelet.allocate(NET, ["0000:99:00.0"])
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            _, text = await http_get(port, "/metrics")
            assert 'sriovdp_allocate_errors_total{resource="intel.com/net"} 1.0' in text
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 10)


async def test_an_assigned_device_is_never_offered_by_two_pools_when_the_config_moves_it(
    workdir: Path, host: FakeHost
) -> None:
    base = settings_for(workdir, host)
    settings = replace(base, resync_interval=0.3,
                       pod_resources_socket=workdir / "pr" / "kubelet.sock")
    write(settings.config_file, CONFIG)
    async with KubeletEmulator(settings.device_plugin_dir,
                               pod_resources_socket=settings.pod_resources_socket) as kubelet, \
            running(settings, CONFIG):
        await kubelet.wait_capacity(NET, (4, 4))
        (dev,) = (await kubelet.admit(NET, 1, pod="busy")).device_ids
        moved = json.loads(json.dumps(CONFIG))
        others = sorted(ALL_NET - {dev})
        idx = ",".join(str(int(a[-1])) for a in others)
        moved["resourceList"][0]["selectors"][0]["pfNames"] = [f"ens785f0#{idx}"]
        moved["resourceList"].append({"resourceName": "other",
                                      "selectors": [{"drivers": ["iavf"]}]})
        write(settings.config_file, moved)
        other = "intel.com/other"
        await kubelet.wait_registered(other, timeout=3)
        # the pod still holds dev: it stays in net (Healthy: not a fault), other does not
        # offer it
        await kubelet.wait_for(other, lambda d: dev not in d, timeout=3)
        devs = kubelet.devices(NET)
        assert set(devs) == ALL_NET and devs[dev].healthy
        await asyncio.sleep(0.8)  # a few periodic resyncs
        assert dev not in kubelet.devices(other)
        kubelet.release("busy")
        await kubelet.wait_for(other, lambda d: dev in d, timeout=3)
        await kubelet.wait_for(NET, lambda d: dev not in d, timeout=3)
