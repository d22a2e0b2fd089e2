"""The same scenario against the KubeletEmulator and the real device manager: what each
recorded must be equal, so the emulator (the fast path of every other test) cannot drift
from the kubelet it stands for.

No DRA registration scenario: this peer's plugin watcher has the device manager's handler
only (a DRA manager needs an apiserver client). The emulator's ``DRAPlugin`` handling
follows the DRA manager of k8s.io/kubernetes v1.37.2 (``pkg/kubelet/cm/dra/plugin``), which
the DRA peer (``tests/conformance/dra``, ``test_dra_*.py``) runs against the daemon."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from nodekit import POOLS, Node

from sriovdp.kubelet.api import deviceplugin_pb2
from sriovdp.kubelet.podresources import assigned_devices
from sriovdp.testing import eventually
from sriovdp.testing.kubelet import AdmissionError, KubeletEmulator
from sriovdp.testing.realkubelet import RESTART_DOWNTIME, PeerError, RealKubelet

NET = "intel.com/intel_sriov_netdevice"
DPDK = "intel.com/intel_sriov_dpdk"
RDMA = "intel.com/mlnx_sriov_rdma"


def envs_in_any_order(envs: dict[str, str]) -> dict[str, Any]:
    """The id lists (``PCIDEVICE_<RESOURCE>``) as sets: the kubelet sends Allocate its
    device ids in Go set order, which the plugin echoes."""
    return {k: v if k.endswith("_INFO") else sorted(v.split(",")) for k, v in envs.items()}


def checkpoint_shape(path: Path) -> dict[str, Any]:
    """The checkpoint's content without its checksum (Go-specific; the emulator writes 0)."""
    data = json.loads(path.read_text())["Data"]
    entries = []
    for e in data["PodDeviceEntries"] or []:
        resp = deviceplugin_pb2.ContainerAllocateResponse.FromString(
            base64.b64decode(e["AllocResp"]))
        entries.append({"pod": e["PodUID"], "container": e["ContainerName"],
                        "resource": e["ResourceName"],
                        "ids": {k: sorted(v) for k, v in e["DeviceIDs"].items()},
                        "envs": envs_in_any_order(dict(resp.envs))})
    entries.sort(key=lambda e: (e["pod"], e["resource"]))
    registered = {k: sorted(v or []) for k, v in (data["RegisteredDevices"] or {}).items()}
    return {"entries": entries, "registered": registered}


async def settled_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint once every pool's devices are in it: the kubelet writes it after each
    ListAndWatch message, so right after a restart it may still name only some pools."""
    async with asyncio.timeout(5):
        while True:
            shape = checkpoint_shape(path)
            if {k: len(v) for k, v in shape["registered"].items()} == POOLS:
                return shape
            await asyncio.sleep(0.01)


class Emulated:
    """The scenario's steps on the KubeletEmulator."""

    def __init__(self, kubelet: KubeletEmulator) -> None:
        self.k = kubelet

    async def wait(self, want: dict[str, int]) -> None:
        await eventually(  # node-status syncs until allocatable matches
            lambda: all(self.k.capacity(name)[1] == n for name, n in want.items()),
            timeout=20, interval=0.005, what=f"allocatable {want}")

    async def capacity(self) -> dict[str, tuple[int, int]]:
        return {name: self.k.capacity(name) for name in POOLS}

    async def admit(self, pod: str, resource: str, n: int) -> list[str] | str:
        try:
            return sorted((await self.k.admit(resource, n, pod=pod)).device_ids)
        except AdmissionError as exc:
            return exc.error

    async def run_options(self, pod: str) -> dict[str, Any]:
        c = await self.k.start_container(pod)
        return {"envs": envs_in_any_order(c.envs), "annotations": c.annotations,
                "cdi": sorted(c.cdi_devices),
                "devices": sorted((d.host_path, d.container_path, d.permissions)
                                  for d in c.devices),
                "mounts": sorted((m.host_path, m.container_path, m.read_only)
                                 for m in c.mounts)}

    async def remove(self, pod: str) -> None:
        self.k.release(pod)

    async def restart(self) -> None:
        await self.k.restart(downtime=RESTART_DOWNTIME)


class Real:
    """The same steps on the real device manager."""

    def __init__(self, kubelet: RealKubelet) -> None:
        self.k = kubelet

    async def wait(self, want: dict[str, int]) -> None:
        await self.k.wait_allocatable(want, timeout=20)

    async def capacity(self) -> dict[str, tuple[int, int]]:
        capacity, allocatable, _ = await self.k.capacity()
        return {name: (capacity.get(name, -1), allocatable.get(name, -1)) for name in POOLS}

    async def admit(self, pod: str, resource: str, n: int) -> list[str] | str:
        try:
            return (await self.k.admit(pod, {"c0": {resource: n}}))["c0"]["devices"][resource]
        except PeerError as exc:
            return str(exc)

    async def run_options(self, pod: str) -> dict[str, Any]:
        o = await self.k.run_options(pod, "c0")
        return {"envs": envs_in_any_order(o.envs), "annotations": o.annotations,
                "cdi": sorted(o.cdi_devices),
                "devices": sorted((d["host_path"], d["container_path"], d["permissions"])
                                  for d in o.devices),
                "mounts": sorted((m["host_path"], m["container_path"], m["read_only"])
                                 for m in o.mounts)}

    async def remove(self, pod: str) -> None:
        await self.k.remove(pod)

    async def restart(self) -> None:
        await self.k.restart()


async def scenario(node: Node, k: Emulated | Real, checkpoint: Path) -> dict[str, Any]:
    """Register, admit 1 and 4 VFs, fail an admission, read the pod resources, restart the
    kubelet, stop the plugin: what the kubelet side recorded at each step."""
    seen: dict[str, Any] = {}
    proc = await node.start_daemon()
    await k.wait(POOLS)
    seen["registered"] = await k.capacity()
    seen["admit_1"] = await k.admit("a", DPDK, 1)
    seen["admit_4"] = await k.admit("b", NET, 4)
    seen["admit_rdma"] = await k.admit("r", RDMA, 2)
    seen["admit_too_many"] = await k.admit("c", NET, 1)
    seen["options_1"] = await k.run_options("a")
    seen["options_4"] = await k.run_options("b")
    seen["options_rdma"] = await k.run_options("r")
    seen["after_admit"] = await k.capacity()
    seen["pod_resources"] = await assigned_devices(node.pod_resources)
    seen["checkpoint"] = checkpoint_shape(checkpoint)
    await k.remove("b")
    seen["admit_after_remove"] = await k.admit("d", NET, 2)
    await k.restart()
    await k.wait(POOLS)
    seen["restarted"] = await k.capacity()
    seen["checkpoint_after_restart"] = await settled_checkpoint(checkpoint)
    seen["options_after_restart"] = await k.run_options("a")
    assert await node.stop_daemon(proc, signal.SIGTERM) == 0
    await k.wait(dict.fromkeys(POOLS, 0))
    seen["plugin_stopped"] = await k.capacity()
    return seen


@pytest.mark.parametrize("watcher", [False, True], ids=["socket-mode", "watcher-mode"])
async def test_the_emulator_records_what_the_real_manager_records_when_run_through_a_scenario(
    node: Node, peer_binary: Path, watcher: bool
) -> None:
    async with node.kubelet(peer_binary, watcher=watcher) as real:
        truth = await scenario(node, Real(real), real.checkpoint_path)
    # a fresh node (same host) for the emulator
    shutil.rmtree(node.device_plugin_dir)
    node.device_plugin_dir.mkdir()
    for p in node.device_info_dir.glob("*"):
        p.unlink()
    registry = node.plugins_registry if watcher else None  # the emulator creates it
    async with KubeletEmulator(node.device_plugin_dir, registry, watcher=watcher,
                               pod_resources_socket=node.pod_resources) as emulator:
        emulated = await scenario(node, Emulated(emulator), emulator.checkpoint_path)
    assert truth["admit_4"] != truth["admit_too_many"]  # the scenario did what it says
    for step in truth:
        assert emulated[step] == truth[step], step
