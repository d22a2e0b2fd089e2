"""The ``sriovdp`` daemon process in DRA mode against Kubernetes' own code: the installed
daemon (``python -m sriovdp --dra=all``) on the demo FakeHost, with the kubeconfig of the Go
peer's real kube-apiserver (on a real etcd) and the plugin dirs its kubelet DRA manager and
plugin watcher use (``tests/conformance/dra``, k8s.io/kubernetes v1.37.2). Nothing is wired
by hand: the daemon publishes the slices, registers its plugin and prepares the claim the
real structured allocator allocated, as it would on a node.

Without ``go`` on PATH the module is skipped with one line saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s, config as k8s_config

from sriovdp.host.sysfs import scan
from sriovdp.model.config import parse_config
from sriovdp.model.dra.prepare import SPEC_FILE_PREFIX
from sriovdp.model.dra.slices import dra_devices
from sriovdp.model.pools import build_pools
from sriovdp.testing import eventually
from sriovdp.testing.demo import DEMO_CONFIG, build_demo_host
from sriovdp.testing.drapeer import DraPeer, PeerPod, build_dra_peer, why_no_dra_peer
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator

_WHY_NOT = why_no_dra_peer()
if _WHY_NOT is not None:
    pytest.skip(_WHY_NOT, allow_module_level=True)

pytestmark = pytest.mark.conformance

DRIVER = "sriov.network.k8s.io"
_BUILD_DIR = Path(tempfile.gettempdir()) / "sriovdp-dra-peer"


@pytest.fixture(scope="module")
def daemon_peer() -> Iterator[DraPeer]:
    """The peer (etcd, kube-apiserver, allocator, kubelet DRA manager) for this module."""
    binary = build_dra_peer(Path(os.environ.get("DRA_PEER_BUILD_DIR", _BUILD_DIR)))
    work = Path(tempfile.mkdtemp(prefix="sdpdd-", dir="/tmp"))
    peer = DraPeer(binary, work / "cp")
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()
        shutil.rmtree(work, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DaemonNode:
    """A node: the FakeHost, the peer's kubelet for it and the ``sriovdp`` process."""

    name: str
    work: Path
    host: FakeHost
    peer: DraPeer
    api: k8s.ApiClient
    proc: asyncio.subprocess.Process
    health_port: int

    @property
    def resource(self) -> k8s.ResourceV1Api:
        return k8s.ResourceV1Api(self.api)

    @property
    def cdi_dir(self) -> Path:
        return self.work / "cdi"

    def log(self) -> str:
        return (self.work / "sriovdp.log").read_text(errors="replace")

    def slice_uids(self) -> set[str]:
        answer = self.resource.list_resource_slice(
            field_selector=f"spec.nodeName={self.name},spec.driver={DRIVER}")
        return {s.metadata.uid for s in answer.items}

    def published(self) -> dict[str, dict[str, Any]]:
        answer = self.resource.list_resource_slice(
            field_selector=f"spec.nodeName={self.name},spec.driver={DRIVER}")
        return {d["name"]: d for s in answer.items
                for d in self.api.sanitize_for_serialization(s)["spec"].get("devices") or []}

    async def readyz(self) -> tuple[int, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.health_port)
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await reader.read()
        writer.close()
        head, _, body = data.decode().partition("\r\n\r\n")
        return int(head.split()[1]), body


@pytest.fixture(params=["5"])
def resync(request: pytest.FixtureRequest) -> str:
    """The daemon's ``--resync-interval`` (a test that must not be rescued by the periodic
    forced publication sets a long one)."""
    return str(request.param)


@pytest.fixture
async def daemon_node(daemon_peer: DraPeer, resync: str) -> AsyncIterator[DaemonNode]:
    work = Path(tempfile.mkdtemp(prefix="sdpdn-", dir="/tmp"))  # short unix socket paths
    name = f"dnode-{uuid.uuid4().hex[:6]}"
    host = build_demo_host(work / "host")
    await asyncio.to_thread(daemon_peer.kubelet_start, name, work / "registry",
                            work / "kubelet")
    config = work / "config.json"
    config.write_text(json.dumps(DEMO_CONFIG))
    port = _free_port()
    (work / "dp").mkdir()
    assert daemon_peer.kubeconfig is not None
    cmd = [sys.executable, "-m", "sriovdp", "--dra=all",
           "--kubeconfig", str(daemon_peer.kubeconfig), "--node-name", name,
           "--config-file", str(config), "--host-root", str(host.root),
           "--device-plugin-dir", str(work / "dp"),
           "--plugins-registry-dir", str(work / "registry"),
           "--kubelet-plugins-dir", str(work / "plugins"),
           "--pod-resources-socket", str(work / "pr" / "kubelet.sock"),
           "--device-info-dir", str(work / "devinfo"), "--cdi-dir", str(work / "cdi"),
           "--health-address", f"127.0.0.1:{port}", "--resync-interval", resync, "-v", "5"]
    # the device manager's side of the kubelet (kubelet.sock, pod resources) answers what
    # pods hold before the daemon's first publication; the DRA side is the Go peer's
    device_manager = KubeletEmulator(work / "dp", pod_resources_socket=work / "pr" / "kubelet.sock")
    await device_manager.__aenter__()
    log = (work / "sriovdp.log").open("wb")
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=log)
    api = k8s_config.new_client_from_config(config_file=str(daemon_peer.kubeconfig))
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    node = DaemonNode(name, work, host, daemon_peer, api, proc, port)
    try:
        yield node
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()
        await device_manager.__aexit__(None, None, None)
        await asyncio.to_thread(daemon_peer.kubelet_stop)
        if not os.environ.get("CONFORMANCE_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


async def test_the_daemon_publishes_registers_and_prepares_when_run_against_the_real_apiserver(
        daemon_node: DaemonNode) -> None:
    node = daemon_node
    pools = build_pools(scan(node.host.paths),
                        parse_config(json.dumps(DEMO_CONFIG)).resources,
                        default_prefix="intel.com")
    expected = dra_devices(pools)

    async def all_published() -> bool:
        return sorted(await asyncio.to_thread(node.published)) == sorted(expected)

    await eventually(all_published, timeout=60, what="the node's devices in its slices")
    # the plugin is registered with the real plugin watcher and the slices are up: ready
    await eventually(lambda: _ready(node), timeout=30, what="/readyz 200")

    pf_rdma = (f'device.attributes["{DRIVER}"].pfName == "ens1f0" && '
               f'device.attributes["{DRIVER}"].rdma == true')
    node.resource.create_device_class({
        "apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
        "metadata": {"name": f"sriov-{node.name}"},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]}})
    claim = node.resource.create_namespaced_resource_claim(node.name, {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": "rdma"},
        "spec": {"devices": {"requests": [{"name": "nic", "exactly": {
            "deviceClassName": f"sriov-{node.name}", "count": 2,
            "selectors": [{"cel": {"expression": pf_rdma}}]}}]}}})
    pod = PeerPod(name="pod-a", uid=str(uuid.uuid4()), namespace=node.name,
                  claims={"nic": "rdma"}, containers={"c0": ["nic"]})

    statuses = await asyncio.to_thread(node.peer.allocate, node.name, node.name, ["rdma"], pod)

    assert statuses is not None, "the allocator found no devices in the daemon's slices"
    chosen = sorted(r["device"] for r in statuses[0]["allocation"]["devices"]["results"])
    cdi = await node.peer.aprepare(pod)

    assert [p.name for p in node.cdi_dir.glob(f"{SPEC_FILE_PREFIX}*")] == [
        f"{SPEC_FILE_PREFIX}{claim.metadata.uid}.yaml"]
    container = await asyncio.to_thread(node.peer.cdi_resolve, node.cdi_dir, cdi["c0"])
    addresses = sorted(expected[d].device.id for d in chosen)
    assert f"PCIDEVICE_INTEL_COM_MLNX_SRIOV_RDMA={','.join(addresses)}" in container["env"]
    paths = sorted(d["path"] for d in container["device_nodes"])
    assert "/dev/infiniband/rdma_cm" in paths
    checkpoint = json.loads((node.work / "plugins" / DRIVER / "checkpoint.json").read_text())
    assert list(checkpoint["claims"]) == [claim.metadata.uid]

    await node.peer.aunprepare(pod)

    assert list(node.cdi_dir.glob(f"{SPEC_FILE_PREFIX}*")) == []
    node.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(node.proc.wait(), 15) == 0, node.log()
    assert not (node.work / "registry" / f"{DRIVER}-reg.sock").exists()


async def _ready(node: DaemonNode) -> bool:
    code, _ = await node.readyz()
    return code == 200



@pytest.mark.parametrize("resync", ["3600"], indirect=True)
async def test_the_daemon_restores_its_slices_when_the_real_kubelet_restarts(
        daemon_node: DaemonNode) -> None:
    """A starting kubelet deletes its node's slices; the devices did not change, so only the
    publication forced by the plugin's new registration brings them back (the resync is an
    hour here)."""
    node = daemon_node

    async def published() -> int:
        return len(await asyncio.to_thread(node.published))

    await eventually(published, timeout=60, what="the node's slices")
    count = await published()
    await eventually(lambda: _ready(node), timeout=30, what="/readyz 200")
    before = await asyncio.to_thread(node.slice_uids)
    await asyncio.to_thread(node.peer.kubelet_stop)
    await asyncio.to_thread(node.peer.kubelet_start, node.name, node.work / "registry",
                            node.work / "kubelet")
    await eventually(lambda: _restored(node, count), timeout=30,
                     what="the slices back after the kubelet restart")
    # new objects: the kubelet deleted ours, the daemon created them again
    assert not await asyncio.to_thread(node.slice_uids) & before


async def _restored(node: DaemonNode, count: int) -> bool:
    return len(await asyncio.to_thread(node.published)) == count
