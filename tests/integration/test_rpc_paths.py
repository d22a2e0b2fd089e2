"""The kubelet's RPCs on a running daemon: odd requests and a wedged host never block them.

Field hardening items 5 (never block the kubelet), 6 (GetPreferredAllocation never fails an
admission) and 12 (an Allocate repeating one id costs one id's work).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from sriovdp.daemon.reconciler import Reconciler
from sriovdp.daemon.settings import Settings
from sriovdp.host.paths import HostPaths
from sriovdp.host.sysfs import scan
from sriovdp.kubelet.api import (
    deviceplugin_pb2 as pb,
    deviceplugin_pb2_grpc as pb_grpc,
    pluginregistration_pb2 as reg_pb,
    pluginregistration_pb2_grpc as reg_grpc,
)
from sriovdp.model.config import parse_config
from sriovdp.model.devices import Inventory
from sriovdp.testing import eventually
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator

NET = "intel.com/net"
CONFIG = {"resourceList": [
    {"resourceName": "net", "selectors": [{"drivers": ["iavf"]}]},
    {"resourceName": "dpdk", "selectors": [{"drivers": ["vfio-pci"]}]},
]}
HANG_DETECTOR = 5.0
"""gRPC deadline of each call: only there to turn a hang into a failure, not a target."""


def settings_for(work: Path, host: FakeHost, *, watcher: bool = False) -> Settings:
    (work / "dp").mkdir(exist_ok=True)
    if watcher:
        (work / "reg").mkdir(exist_ok=True)
    return Settings(host=host.paths, config_file=work / "config.json",
                    device_plugin_dir=work / "dp", plugins_registry_dir=work / "reg",
                    device_info_dir=work / "devinfo", cdi_dir=work / "cdi",
                    pod_resources_socket=work / "pr.sock", watch_config=False)


@contextlib.asynccontextmanager
async def running(settings: Settings,
                  scanner: Callable[[HostPaths], Inventory] = scan) -> AsyncIterator[Reconciler]:
    daemon = Reconciler(settings, parse_config(json.dumps(CONFIG)), scanner=scanner)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 10)
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)


class WedgedScanner:
    """The real scan, which once :meth:`wedge` is called first reads a FIFO in the fake
    tree with a plain blocking read: a sysfs attribute of a wedged device, whose read the
    kernel does not answer (``O_NONBLOCK`` does not help on sysfs files)."""

    def __init__(self, host: FakeHost) -> None:
        self.fifo = host.root / "sys" / "wedged"
        self._writer: int | None = None

    def __call__(self, paths: HostPaths) -> Inventory:
        if self.fifo.exists():
            with open(self.fifo, "rb") as attribute:  # blocks until released
                attribute.read()
        return scan(paths)

    def wedge(self) -> None:
        os.mkfifo(self.fifo)

    async def wait_stuck(self) -> None:
        """Return once the scan thread sits in the read (the FIFO has a reader) and hold it
        there: the write end stays open and nothing is written."""
        while self._writer is None:
            try:
                self._writer = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                await asyncio.sleep(0.01)  # a FIFO signals no reader but by ENXIO: poll

    def release(self) -> None:
        self.fifo.unlink()
        if self._writer is not None:
            os.close(self._writer)  # the read sees end of file, the scan goes on
            self._writer = None


async def _four_rpcs(socket: Path, ids: list[str]) -> tuple[
        pb.DevicePluginOptions, reg_pb.PluginInfo, pb.PreferredAllocationResponse,
        pb.AllocateResponse]:
    async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
        plugin = pb_grpc.DevicePluginStub(channel)
        options = await plugin.GetDevicePluginOptions(pb.Empty(), timeout=HANG_DETECTOR)
        info = await reg_grpc.RegistrationStub(channel).GetInfo(
            reg_pb.InfoRequest(), timeout=HANG_DETECTOR)
        preferred = await plugin.GetPreferredAllocation(
            pb.PreferredAllocationRequest(container_requests=[
                pb.ContainerPreferredAllocationRequest(available_deviceIDs=ids,
                                                       allocation_size=2)]),
            timeout=HANG_DETECTOR)
        allocated = await plugin.Allocate(
            pb.AllocateRequest(container_requests=[
                pb.ContainerAllocateRequest(devices_ids=ids[:1])]),
            timeout=HANG_DETECTOR)
    return options, info, preferred, allocated


async def test_all_four_rpcs_answer_from_the_last_pools_when_a_rescan_hangs_on_sysfs(
    workdir: Path, host: FakeHost
) -> None:
    settings = settings_for(workdir, host, watcher=True)
    scanner = WedgedScanner(host)
    async with KubeletEmulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                               watcher=True) as kubelet, running(settings, scanner) as daemon:
        listed = await kubelet.wait_for(NET, lambda d: len(d) == 4)
        scanner.wedge()
        daemon.trigger("test: rescan into a wedged device")
        await asyncio.wait_for(scanner.wait_stuck(), 10)
        try:
            options, info, preferred, allocated = await _four_rpcs(
                settings.plugins_registry_dir / "intel.com_net.sock", sorted(listed))
            assert options.get_preferred_allocation_available
            assert info.name == NET and info.endpoint == str(
                settings.plugins_registry_dir / "intel.com_net.sock")
            assert len(preferred.container_responses[0].deviceIDs) == 2
            assert allocated.container_responses[0].envs["PCIDEVICE_INTEL_COM_NET"] == (
                sorted(listed)[0])
            assert daemon.passes == 1  # still the pools of the pass before the wedge
        finally:
            scanner.release()


async def test_allocate_gives_each_id_once_and_logs_one_line_when_a_request_repeats_an_id(
    workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        caplog.set_level(logging.INFO, logger="sriovdp")
        ids = ["0000:3b:02.1"] * 50_000 + ["0000:3b:02.0", "0000:3b:02.1"]
        response = (await kubelet.allocate(NET, ids)).container_responses[0]
        assert response.envs["PCIDEVICE_INTEL_COM_NET"] == "0000:3b:02.1,0000:3b:02.0"
        assert set(json.loads(response.envs["PCIDEVICE_INTEL_COM_NET_INFO"])) == {
            "0000:3b:02.0", "0000:3b:02.1"}
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("allocated")]
        assert lines == ["allocated 0000:3b:02.1,0000:3b:02.0 from intel.com/net"]
        assert sorted(p.name for p in settings.device_info_dir.glob("*-device.json")) == [
            "intel.com-net-0000:3b:02.0-device.json", "intel.com-net-0000:3b:02.1-device.json"]


@pytest.mark.parametrize(
    ("available", "must_include", "size", "expected"),
    [
        pytest.param(["nope", "0000:3b:02.0"], [], 1, ["0000:3b:02.0"], id="unknown-ids"),
        pytest.param(["0000:3b:02.0"], ["0000:3b:02.2"], 1, ["0000:3b:02.0"],
                     id="must-include-outside-available"),
        pytest.param(["0000:3b:02.0", "0000:3b:02.1"], [], 9,
                     ["0000:3b:02.0", "0000:3b:02.1"], id="size-beyond-available"),
        pytest.param(["0000:3b:02.0"], [], 0, [], id="zero-size"),
        pytest.param(["0000:3b:02.0"], [], -5, [], id="negative-size"),
    ],
)
async def test_preferred_allocation_answers_ok_from_available_when_the_request_is_odd(
    workdir: Path, host: FakeHost, available: list[str], must_include: list[str], size: int,
    expected: list[str],
) -> None:
    settings = settings_for(workdir, host)
    async with KubeletEmulator(settings.device_plugin_dir) as kubelet, running(settings):
        await kubelet.wait_for(NET, lambda d: len(d) == 4)
        got = await kubelet.preferred_allocation(NET, available, must_include, size)
        assert got == expected


async def test_all_four_rpcs_answer_when_a_rescan_waits_for_a_hung_ddptool(
    workdir: Path, host: FakeHost
) -> None:
    bindir = workdir / "bin"
    bindir.mkdir()
    hang, started = workdir / "hang", workdir / "started"
    (bindir / "ddptool").write_text(
        f'#!/bin/sh\nif [ -e {hang} ]; then touch {started}; exec sleep 1000; fi\n'
        'echo \'{"DDPInventory": {"DDPpackage": {"name": "ICE COMMS Package"}}}\'\n')
    (bindir / "ddptool").chmod(0o755)
    settings = settings_for(workdir, host, watcher=True)
    settings.config_file.write_text(json.dumps({"resourceList": [
        {"resourceName": "net", "selectors": [{"drivers": ["iavf"]}]},
        {"resourceName": "comms", "selectors": [{"ddpProfiles": ["ICE COMMS Package"]}]}]}))
    async with KubeletEmulator(settings.device_plugin_dir, settings.plugins_registry_dir,
                               watcher=True) as kubelet:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sriovdp", "--config-file", str(settings.config_file),
            "--host-root", str(host.root),
            "--device-plugin-dir", str(settings.device_plugin_dir),
            "--plugins-registry-dir", str(settings.plugins_registry_dir),
            "--device-info-dir", str(settings.device_info_dir),
            "--pod-resources-socket", str(settings.pod_resources_socket),
            env={**os.environ, "PATH": f"{bindir}:/usr/bin:/bin"},
            stderr=asyncio.subprocess.DEVNULL)
        try:
            listed = await kubelet.wait_for(NET, lambda d: len(d) == 4, timeout=15)
            hang.touch()
            proc.send_signal(signal.SIGHUP)  # rescan: this time ddptool never answers
            await eventually(started.exists, timeout=10, what="ddptool started")
            options, info, preferred, allocated = await _four_rpcs(
                settings.plugins_registry_dir / "intel.com_net.sock", sorted(listed))
            assert options.get_preferred_allocation_available and info.name == NET
            assert len(preferred.container_responses[0].deviceIDs) == 2
            assert allocated.container_responses[0].envs["PCIDEVICE_INTEL_COM_NET"] == (
                sorted(listed)[0])
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 15)
