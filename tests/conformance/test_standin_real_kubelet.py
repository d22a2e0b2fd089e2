"""A node moved from the device plugin to ``--dra=all``, against Kubernetes' own code: the
kubelet's device manager, plugin watcher and pod resources server (the kubelet peer) and a
real kube-apiserver on etcd (the DRA peer, whose kubelet DRA manager registers the Node).

A pod got a VF from the device plugin and ended while no daemon ran, after the kubelet's
last write of its device checkpoint: the file still grants the VF to it, and with every
pool served through DRA no device plugin endpoint of ours streams a list that would make
the kubelet rewrite the file. The daemon's stand-in endpoint (no devices, registered the
usual way, stopped once the kubelet took its list) makes the real device manager rewrite
it without the ended pod; the daemon then releases the VF into its ResourceSlices.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s, config as k8s_config
from nodekit import POOLS, Node
from test_real_kubelet import NET

from sriovdp.testing import eventually
from sriovdp.testing.drapeer import DraPeer, build_dra_peer, why_no_dra_peer

_WHY_NOT = why_no_dra_peer()
if _WHY_NOT is not None:
    pytest.skip(_WHY_NOT, allow_module_level=True)

DRIVER = "sriov.network.k8s.io"
_BUILD_DIR = Path(tempfile.gettempdir()) / "sriovdp-dra-peer"


@pytest.fixture(scope="module")
def control_plane() -> Iterator[DraPeer]:
    binary = build_dra_peer(Path(os.environ.get("DRA_PEER_BUILD_DIR", _BUILD_DIR)))
    work = Path(tempfile.mkdtemp(prefix="sdpsi-", dir="/tmp"))
    peer = DraPeer(binary, work / "cp")
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()
        shutil.rmtree(work, ignore_errors=True)


def _granted_pods(checkpoint: Path) -> set[str]:
    data = json.loads(checkpoint.read_text())["Data"]
    return {e["PodUID"] for e in data.get("PodDeviceEntries") or []}


def _published_ids(api: k8s.ApiClient, node: str) -> set[str]:
    answer = k8s.ResourceV1Api(api).list_resource_slice(
        field_selector=f"spec.nodeName={node},spec.driver={DRIVER}")
    devices: list[dict[str, Any]] = [
        d for s in answer.items
        for d in api.sanitize_for_serialization(s)["spec"].get("devices") or []]
    return {d["attributes"]["pciAddress"]["string"] for d in devices
            if "pciAddress" in d.get("attributes", {})}


@pytest.mark.parametrize("watcher", [False, True], ids=["socket", "watcher"])
async def test_a_vf_of_a_pod_that_ended_while_no_daemon_ran_is_published_by_a_dra_all_daemon(
        node: Node, peer_binary: Path, control_plane: DraPeer, watcher: bool) -> None:
    name = f"snode-{uuid.uuid4().hex[:6]}"
    assert control_plane.kubeconfig is not None
    api = k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    async with node.kubelet(peer_binary, watcher=watcher) as kubelet:
        # the device plugin era: a pod gets a VF
        daemon = await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("p1", {"c0": {NET: 1}})
        (dev,) = pod["c0"]["devices"][NET]
        assert await node.stop_daemon(daemon) == 0
        # the pod ends while no daemon runs: the kubelet forgets it, its file keeps it
        await kubelet.remove("p1")
        assert "p1" in _granted_pods(kubelet.checkpoint_path)

        # every pool moved to DRA
        await asyncio.to_thread(control_plane.kubelet_start, name, node.work / "dra-reg",
                                node.work / "dra-state")
        try:
            daemon = await node.start_daemon(
                "--dra=all", "--kubeconfig", str(control_plane.kubeconfig),
                "--node-name", name, "--kubelet-plugins-dir", str(node.work / "plugins"))

            async def published() -> set[str]:
                return await asyncio.to_thread(_published_ids, api, name)

            await eventually(lambda: _has(published(), dev), timeout=60,
                             what=f"{dev} in the node's ResourceSlices")
            log = node.daemon_log()
            assert "opening a stand-in device plugin endpoint" in log, log[-3000:]
            assert "p1" not in _granted_pods(kubelet.checkpoint_path), \
                "the real device manager rewrote its file without the ended pod"
            assert f"{dev} is held by a pod through {NET}" in log.split("opening a stand-in")[0]
            socket = (node.plugins_registry if watcher else node.device_plugin_dir) \
                / "intel.com_intel_sriov_netdevice.sock"
            await eventually(lambda: not socket.exists(), timeout=15,
                             what="the stand-in's socket removed")
            capacity, allocatable, _ = await kubelet.capacity()
            assert allocatable.get(NET, 0) == 0, "the stand-in offered nothing"
            assert await node.stop_daemon(daemon) == 0
        finally:
            await asyncio.to_thread(control_plane.kubelet_stop)


async def _has(ids: Any, dev: str) -> bool:
    return dev in await ids
