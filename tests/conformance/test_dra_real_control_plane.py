"""DRA mode against Kubernetes' own code: a real kube-apiserver (resource.k8s.io/v1) on a real
etcd, the scheduler's structured allocator and the kubelet's DRA manager with its plugin
watcher, all from the Go peer in ``tests/conformance/dra`` (k8s.io/kubernetes v1.37.2).

Our side is the library as the daemon will wire it: :class:`SlicePublisher` on the official
client, :class:`ClaimPreparer` reading claims with the official client, and
:class:`DraPluginServer` on real unix sockets that the kubelet's plugin watcher finds. The
node is the demo FakeHost scanned by the real sysfs reader. Every path is under a temp dir;
etcd and the apiserver listen on 127.0.0.1 only.

Without ``go`` on PATH the module is skipped with one line saying why.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s, config as k8s_config

from sriovdp.host.cdi import CdiStore
from sriovdp.host.draclaims import ClaimCheckpoint
from sriovdp.host.sysfs import scan
from sriovdp.kubelet.dra.claims import KubernetesClaimReader
from sriovdp.kubelet.dra.preparer import ClaimPreparer
from sriovdp.kubelet.dra.publisher import KubernetesSliceApi, SlicePublisher
from sriovdp.kubelet.dra.server import (
    DraPluginServer,
    plugin_socket,
    registration_socket,
)
from sriovdp.kubelet.feed import LatestValue
from sriovdp.model.config import parse_config
from sriovdp.model.dra.prepare import SPEC_FILE_PREFIX
from sriovdp.model.dra.slices import (
    DraDevice,
    HealthPolicy,
    dra_devices,
    resource_slices,
)
from sriovdp.model.health import Health
from sriovdp.model.pools import build_pools
from sriovdp.testing.demo import DEMO_CONFIG, build_demo_host
from sriovdp.testing.drapeer import DraPeer, PeerPod, build_dra_peer, why_no_dra_peer
from sriovdp.testing.fakehost import FakeHost

_WHY_NOT = why_no_dra_peer()
if _WHY_NOT is not None:
    pytest.skip(_WHY_NOT, allow_module_level=True)

pytestmark = pytest.mark.conformance

DRIVER = "sriov.network.k8s.io"
DOMAIN = DRIVER
_BUILD_DIR = Path(tempfile.gettempdir()) / "sriovdp-dra-peer"
_nodes = itertools.count(1)


@pytest.fixture(scope="session")
def dra_peer() -> Iterator[DraPeer]:
    """The peer, built once (``go build``; Go's cache keeps rebuilds cheap), with etcd and
    the kube-apiserver started once per session in a temp dir; each test has its own node."""
    binary = build_dra_peer(Path(os.environ.get("DRA_PEER_BUILD_DIR", _BUILD_DIR)))
    work = Path(tempfile.mkdtemp(prefix="sdpdra-", dir="/tmp"))
    peer = DraPeer(binary, work / "cp")
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def dra_api(dra_peer: DraPeer) -> k8s.ApiClient:
    """The official client on the peer's kubeconfig (token, the apiserver's own CA)."""
    return k8s_config.new_client_from_config(config_file=str(dra_peer.kubeconfig))


def node_devices(host: FakeHost, health: Mapping[str, str] | None = None,
                 ) -> dict[str, DraDevice]:
    config = parse_config(json.dumps(DEMO_CONFIG))
    pools = build_pools(scan(host.paths), config.resources, default_prefix="intel.com",
                        health=dict(health or {}))
    return dra_devices(pools)


@dataclass
class DraNode:
    """One node: the FakeHost, our plugin (publisher, preparer, server) and the peer's
    kubelet for it; ``namespace`` is this test's own namespace."""

    name: str
    uid: str
    work: Path
    host: FakeHost
    peer: DraPeer
    api: k8s.ApiClient
    namespace: str
    devices: LatestValue[Mapping[str, DraDevice]]
    publisher: SlicePublisher
    server: DraPluginServer | None = None
    health_resend: float = 10.0
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    registrations: list[tuple[bool, str]] = field(default_factory=list)

    @property
    def resource(self) -> k8s.ResourceV1Api:
        return k8s.ResourceV1Api(self.api)

    @property
    def cdi_dir(self) -> Path:
        return self.work / "cdi"

    def preparer(self) -> ClaimPreparer:
        return ClaimPreparer(
            driver=DRIVER, pool_name=self.name, reader=KubernetesClaimReader(self.resource),
            devices=lambda: self.devices.value, facts=lambda: scan(self.host.paths).facts,
            cdi=CdiStore(self.cdi_dir, prefix=SPEC_FILE_PREFIX),
            checkpoint=ClaimCheckpoint(self.work / "plugins" / DRIVER / "checkpoint.json"))

    def _on_status(self, registered: bool, error: str) -> None:
        self.registrations.append((registered, error))
        if registered:
            self.registered.set()

    async def start_plugin(self) -> None:
        """Our DRA plugin on its sockets; returns once the kubelet registered it."""
        self.registered.clear()
        self.server = DraPluginServer(
            self.preparer(), socket=plugin_socket(self.work / "plugins", DRIVER),
            registration=registration_socket(self.work / "registry", DRIVER),
            health=self.devices, on_status=self._on_status, health_resend=self.health_resend)
        await self.server.start()
        await asyncio.wait_for(self.registered.wait(), 30)

    async def stop_plugin(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def publish(self, health: Mapping[str, str] | None = None) -> None:
        self.devices.publish(node_devices(self.host, health))
        await self.publisher.publish(self.devices.value)

    def slices(self) -> list[dict[str, Any]]:
        """This node's ResourceSlices as the apiserver stores them."""
        answer = self.resource.list_resource_slice(
            field_selector=f"spec.nodeName={self.name},spec.driver={DRIVER}")
        items: list[dict[str, Any]] = [self.api.sanitize_for_serialization(s)
                                       for s in answer.items]
        return items

    def published_devices(self) -> dict[str, dict[str, Any]]:
        return {d["name"]: d for s in self.slices() for d in s["spec"].get("devices") or []}

    def device_class(self, name: str, expression: str = f'device.driver == "{DRIVER}"') -> None:
        self.resource.create_device_class({
            "apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
            "metadata": {"name": name},
            "spec": {"selectors": [{"cel": {"expression": expression}}]}})

    def claim(self, name: str, device_class: str, expression: str, count: int = 1,
              request: str = "nic") -> str:
        """Create a claim with one request; returns its UID."""
        created = self.resource.create_namespaced_resource_claim(self.namespace, {
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": name},
            "spec": {"devices": {"requests": [{"name": request, "exactly": {
                "deviceClassName": device_class, "count": count,
                "selectors": [{"cel": {"expression": expression}}]}}]}}})
        return str(created.metadata.uid)

    def pod(self, name: str, claims: dict[str, str]) -> PeerPod:
        return PeerPod(name=name, uid=str(uuid.uuid4()), namespace=self.namespace,
                       claims=claims, containers={"c0": list(claims)})

    def allocate(self, claims: list[str], pod: PeerPod) -> list[dict[str, Any]] | None:
        return self.peer.allocate(self.name, self.namespace, claims, pod)

    def specs(self) -> dict[str, Any]:
        return {p.name: yaml.safe_load(p.read_text())
                for p in sorted(self.cdi_dir.glob(f"{SPEC_FILE_PREFIX}*.yaml"))}


@pytest.fixture
async def dra_node(dra_peer: DraPeer, dra_api: k8s.ApiClient) -> AsyncIterator[DraNode]:
    api = dra_api
    work = Path(tempfile.mkdtemp(prefix="sdpdn-", dir="/tmp"))  # short unix socket paths
    name = f"node-{next(_nodes)}"
    host = build_demo_host(work / "host")
    uid = await asyncio.to_thread(dra_peer.kubelet_start, name, work / "registry",
                                  work / "kubelet")
    namespace = f"dra-{name}"
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    devices: LatestValue[Mapping[str, DraDevice]] = LatestValue(node_devices(host))
    publisher = SlicePublisher(KubernetesSliceApi(k8s.ResourceV1Api(api)), driver=DRIVER,
                               node_name=name, node_uid=uid)
    node = DraNode(name, uid, work, host, dra_peer, api, namespace, devices, publisher)
    try:
        yield node
    finally:
        await node.stop_plugin()
        await asyncio.to_thread(dra_peer.kubelet_stop)
        shutil.rmtree(work, ignore_errors=True)


# --- slices --------------------------------------------------------------------------------


async def test_slices_match_the_host_when_published_to_the_real_apiserver(
        dra_node: DraNode) -> None:
    await dra_node.publish()
    slices = dra_node.slices()
    assert slices, "no ResourceSlice for the node"
    for s in slices:
        assert s["spec"]["driver"] == DRIVER
        assert s["spec"]["nodeName"] == dra_node.name
        assert s["spec"]["pool"]["name"] == dra_node.name
        assert s["spec"]["pool"]["resourceSliceCount"] == len(slices)
        assert [(o["kind"], o["name"], o["uid"]) for o in s["metadata"]["ownerReferences"]] == [
            ("Node", dra_node.name, dra_node.uid)]
    published = dra_node.published_devices()
    assert sorted(published) == sorted(dra_node.devices.value)
    # what the apiserver stored is what the model built: no field dropped or defaulted away
    state = dra_node.publisher.state
    assert state is not None
    built = resource_slices(state, driver=DRIVER, node_name=dra_node.name,
                            node_uid=dra_node.uid)
    wanted = {d["name"]: d for s in built for d in s["spec"]["devices"]}
    for name, device in published.items():
        assert device["attributes"] == wanted[name]["attributes"], name
    vf = published["0000-d8-00-2"]["attributes"]
    assert (vf["pfName"], vf["rdma"], vf["resource.kubernetes.io/pciBusID"]) == (
        {"string": "ens1f0"}, {"bool": True}, {"string": "0000:d8:00.2"})


async def test_slices_follow_the_host_when_a_vf_turns_unhealthy_and_back(
        dra_node: DraNode) -> None:
    await dra_node.publish()
    generation = dra_node.slices()[0]["spec"]["pool"]["generation"]
    vf = dra_node.devices.value["0000-d8-00-3"].device.id
    await dra_node.publish(health={vf: Health.UNHEALTHY})
    assert "0000-d8-00-3" not in dra_node.published_devices()
    assert dra_node.slices()[0]["spec"]["pool"]["generation"] > generation
    await dra_node.publish()
    assert "0000-d8-00-3" in dra_node.published_devices()


async def test_slices_follow_the_host_when_a_vf_is_rebound(dra_node: DraNode) -> None:
    await dra_node.publish()
    before = dra_node.published_devices()["0000-3b-02-0"]["attributes"]
    assert before["driver"] == {"string": "iavf"}
    dra_node.host.bind("0000:3b:02.0", "vfio-pci")
    await dra_node.publish()
    after = dra_node.published_devices().get("0000-3b-02-0")
    assert after is not None and after["attributes"]["driver"] == {"string": "vfio-pci"}


async def test_stale_slices_are_replaced_when_another_process_published_before(
        dra_node: DraNode) -> None:
    await dra_node.publish()
    generation = dra_node.slices()[0]["spec"]["pool"]["generation"]
    again = SlicePublisher(KubernetesSliceApi(dra_node.resource), driver=DRIVER,
                           node_name=dra_node.name, node_uid=dra_node.uid)
    dra_node.host.bind("0000:3b:02.1", "vfio-pci")
    dra_node.devices.publish(node_devices(dra_node.host))
    await again.publish(dra_node.devices.value)
    slices = dra_node.slices()
    assert {s["spec"]["pool"]["generation"] for s in slices} == {generation + 1}


HOSTS = Path(__file__).parents[1] / "data" / "hosts"
CATCH_ALL = {"resourceList": [
    {"resourceName": "all_net", "selectors": [{}]},
    {"resourceName": "all_accel", "deviceType": "accelerator", "selectors": [{}]},
    {"resourceName": "all_sf", "deviceType": "auxNetDevice", "selectors": [{"auxTypes": ["sf"]}]},
]}


async def publish_host(api: k8s.ApiClient, host: FakeHost, policy: HealthPolicy,
                       unhealthy: bool = False) -> tuple[dict[str, DraDevice],
                                                         list[dict[str, Any]]]:
    """Publish every device of ``host`` for a new Node; returns them and the stored slices."""
    name = f"node-{next(_nodes)}"
    node = k8s.CoreV1Api(api).create_node({"metadata": {"name": name}})
    inventory = scan(host.paths)
    pools = build_pools(inventory, parse_config(json.dumps(CATCH_ALL)).resources,
                        default_prefix="intel.com")
    if unhealthy:
        every = {d.id: Health.UNHEALTHY for pool in pools.values() for d in pool.devices.values()}
        pools = build_pools(inventory, parse_config(json.dumps(CATCH_ALL)).resources,
                            default_prefix="intel.com", health=every)
    devices = dra_devices(pools)
    resource = k8s.ResourceV1Api(api)
    publisher = SlicePublisher(KubernetesSliceApi(resource), driver=DRIVER, node_name=name,
                               node_uid=node.metadata.uid, policy=policy)
    await publisher.publish(devices)
    stored = resource.list_resource_slice(field_selector=f"spec.nodeName={name}")
    return devices, [api.sanitize_for_serialization(s) for s in stored.items]


@pytest.mark.parametrize("spec", sorted(p.name for p in HOSTS.glob("*.yaml")))
async def test_golden_host_devices_are_accepted_by_the_apiserver_when_published(
        dra_api: k8s.ApiClient, tmp_path: Path, spec: str) -> None:
    host = FakeHost.load(tmp_path / "host", HOSTS / spec)
    devices, slices = await publish_host(dra_api, host, HealthPolicy.WITHDRAW)
    published = {d["name"]: d for s in slices for d in s["spec"]["devices"]}
    assert devices and sorted(published) == sorted(devices)


@pytest.mark.parametrize(("policy", "per_slice"), [(HealthPolicy.WITHDRAW, 128),
                                                   (HealthPolicy.TAINT, 64)])
async def test_a_big_pool_is_split_into_slices_the_apiserver_accepts(
        dra_api: k8s.ApiClient, tmp_path: Path, policy: HealthPolicy, per_slice: int,
) -> None:
    """The API allows 128 devices per slice, 64 when they have taints."""
    host = FakeHost.scaled(tmp_path / "host", pfs=2, vfs_per_pf=150)
    devices, slices = await publish_host(dra_api, host, policy,
                                         unhealthy=policy is HealthPolicy.TAINT)
    assert len(slices) == -(-300 // per_slice)
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {len(slices)}
    assert all(len(s["spec"]["devices"]) <= per_slice for s in slices)
    assert sorted(d["name"] for s in slices for d in s["spec"]["devices"]) == sorted(devices)


# --- allocate, prepare, unprepare ----------------------------------------------------------

PF_ENS1F0 = f'device.attributes["{DOMAIN}"].pfName == "ens1f0"'
RDMA = f'device.attributes["{DOMAIN}"].rdma == true'


async def test_claim_with_cel_selector_is_allocated_prepared_and_gives_the_pod_its_devices(
        dra_node: DraNode) -> None:
    await dra_node.publish()
    await dra_node.start_plugin()
    dra_node.device_class(f"sriov-{dra_node.name}")
    claim_uid = dra_node.claim("rdma", f"sriov-{dra_node.name}", f"{PF_ENS1F0} && {RDMA}",
                               count=2)
    pod = dra_node.pod("pod-a", {"nic": "rdma"})

    statuses = dra_node.allocate(["rdma"], pod)

    assert statuses is not None, "the allocator found no devices for the claim"
    results = statuses[0]["allocation"]["devices"]["results"]
    assert [(r["driver"], r["pool"], r["request"]) for r in results] == [
        (DRIVER, dra_node.name, "nic")] * 2
    chosen = sorted(r["device"] for r in results)
    published = dra_node.published_devices()
    assert {published[d]["attributes"]["pfName"]["string"] for d in chosen} == {"ens1f0"}

    cdi = await dra_node.peer.aprepare(pod)

    assert list(dra_node.specs()) == [f"{SPEC_FILE_PREFIX}{claim_uid}.yaml"]
    container = dra_node.peer.cdi_resolve(dra_node.cdi_dir, cdi["c0"])
    addresses = sorted(dra_node.devices.value[d].device.id for d in chosen)
    assert f"PCIDEVICE_INTEL_COM_MLNX_SRIOV_RDMA={','.join(addresses)}" in container["env"]
    paths = sorted(d["path"] for d in container["device_nodes"])
    assert "/dev/infiniband/rdma_cm" in paths
    assert len([p for p in paths if p.startswith("/dev/infiniband/uverbs")]) == 2

    await dra_node.peer.aunprepare(pod)
    assert dra_node.specs() == {}


async def test_claim_is_unschedulable_when_no_device_matches_its_selector(
        dra_node: DraNode) -> None:
    await dra_node.publish()
    dra_node.device_class(f"sriov-{dra_node.name}")
    dra_node.claim("too-many", f"sriov-{dra_node.name}", PF_ENS1F0, count=5)
    assert dra_node.allocate(["too-many"], dra_node.pod("pod-x", {"nic": "too-many"})) is None


async def test_unhealthy_device_is_not_allocated_when_tainted(dra_node: DraNode) -> None:
    dra_node.publisher.policy = HealthPolicy.TAINT
    await dra_node.publish()
    vfs = sorted(n for n, d in dra_node.published_devices().items()
                 if d["attributes"]["pfName"] == {"string": "ens1f0"})
    sick = {dra_node.devices.value[n].device.id: Health.UNHEALTHY for n in vfs[1:]}
    await dra_node.publish(health=sick)
    published = dra_node.published_devices()
    assert [t["key"] for t in published[vfs[1]]["taints"]] == [f"{DRIVER}/unhealthy"]
    dra_node.device_class(f"sriov-{dra_node.name}")
    dra_node.claim("one", f"sriov-{dra_node.name}", PF_ENS1F0, count=1)
    dra_node.claim("two", f"sriov-{dra_node.name}", PF_ENS1F0, count=1)
    first = dra_node.allocate(["one"], dra_node.pod("pod-1", {"nic": "one"}))
    assert first is not None
    assert [r["device"] for r in first[0]["allocation"]["devices"]["results"]] == [vfs[0]]
    assert dra_node.allocate(["two"], dra_node.pod("pod-2", {"nic": "two"})) is None


@pytest.mark.parametrize("claim_deleted", [False, True], ids=["claim-kept", "claim-gone"])
async def test_unprepare_cleans_up_when_the_plugin_restarted(
        dra_node: DraNode, claim_deleted: bool) -> None:
    await dra_node.publish()
    await dra_node.start_plugin()
    dra_node.device_class(f"sriov-{dra_node.name}")
    dra_node.claim("dpdk", f"sriov-{dra_node.name}",
                   f'device.attributes["{DOMAIN}"].driver == "vfio-pci"')
    pod = dra_node.pod("pod-r", {"nic": "dpdk"})
    assert dra_node.allocate(["dpdk"], pod) is not None
    cdi = await dra_node.peer.aprepare(pod)
    assert len(dra_node.specs()) == 1
    container = dra_node.peer.cdi_resolve(dra_node.cdi_dir, cdi["c0"])
    assert any(n["path"].startswith("/dev/vfio/") for n in container["device_nodes"])

    await dra_node.stop_plugin()
    if claim_deleted:
        dra_node.resource.delete_namespaced_resource_claim("dpdk", dra_node.namespace)
    await dra_node.start_plugin()
    await dra_node.peer.aunprepare(pod)

    assert dra_node.specs() == {}


async def test_plugin_is_registered_again_and_prepares_when_the_kubelet_restarted(
        dra_node: DraNode) -> None:
    await dra_node.publish()
    await dra_node.start_plugin()
    dra_node.registered.clear()
    await asyncio.to_thread(dra_node.peer.kubelet_stop)
    await asyncio.to_thread(dra_node.peer.kubelet_start, dra_node.name,
                            dra_node.work / "registry", dra_node.work / "kubelet")
    await asyncio.wait_for(dra_node.registered.wait(), 30)
    assert [r for r in dra_node.registrations if not r[0]] == []
    # a starting kubelet deletes every ResourceSlice of its node (no driver is usable yet);
    # the devices did not change, so only a forced publish (the resync) brings them back
    assert dra_node.slices() == []
    assert (await dra_node.publisher.publish(dra_node.devices.value)).empty
    await dra_node.publisher.publish(dra_node.devices.value, force=True)
    assert sorted(dra_node.published_devices()) == sorted(dra_node.devices.value)

    dra_node.device_class(f"sriov-{dra_node.name}")
    dra_node.claim("after", f"sriov-{dra_node.name}", PF_ENS1F0)
    pod = dra_node.pod("pod-k", {"nic": "after"})
    assert dra_node.allocate(["after"], pod) is not None
    cdi = await dra_node.peer.aprepare(pod)
    assert cdi["c0"]


# --- health --------------------------------------------------------------------------------


async def wait_health(node: DraNode, pod: PeerPod, want: str, timeout: float = 20.0,
                      ) -> dict[str, str]:
    """Poll the DRA manager's view of ``pod`` until every device has ``want``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        health = (await node.peer.apod_health(pod)).get("c0", {})
        if health and set(health.values()) == {want}:
            return health
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"pod health is {health}, not all {want}")
        await asyncio.sleep(0.2)


async def allocated_pod(node: DraNode, name: str) -> tuple[PeerPod, str]:
    """A pod with one prepared claim for one ens1f0 VF; returns it and the VF's PCI address."""
    await node.publish()
    await node.start_plugin()
    node.device_class(f"sriov-{node.name}")
    node.claim(name, f"sriov-{node.name}", PF_ENS1F0)
    pod = node.pod(f"pod-{name}", {"nic": name})
    statuses = node.allocate([name], pod)
    assert statuses is not None
    device = statuses[0]["allocation"]["devices"]["results"][0]["device"]
    await node.peer.aprepare(pod)
    return pod, node.devices.value[device].device.id


async def test_pod_sees_its_device_unhealthy_when_the_vf_loses_health(
        dra_node: DraNode) -> None:
    pod, address = await allocated_pod(dra_node, "watched")
    await wait_health(dra_node, pod, "Healthy")

    dra_node.devices.publish(node_devices(dra_node.host, {address: Health.UNHEALTHY}))
    await wait_health(dra_node, pod, "Unhealthy")

    dra_node.devices.publish(node_devices(dra_node.host))
    await wait_health(dra_node, pod, "Healthy")


async def test_the_kubelet_is_told_to_sync_the_pod_when_its_vf_loses_health(
        dra_node: DraNode) -> None:
    """The DRA manager's update channel (what the kubelet's sync loop reads to refresh a
    pod's status at once) names the pod after the stream reported its VF Unhealthy; a VF
    of no pod changing names nobody."""
    pod, address = await allocated_pod(dra_node, "notified")
    await wait_health(dra_node, pod, "Healthy")
    await dra_node.peer.ahealth_updates()  # none before this change
    other = next(d.device.id for d in dra_node.devices.value.values()
                 if d.device.id != address)
    dra_node.devices.publish(node_devices(dra_node.host, {other: Health.UNHEALTHY}))
    dra_node.devices.publish(node_devices(dra_node.host, {other: Health.UNHEALTHY,
                                                          address: Health.UNHEALTHY}))
    await wait_health(dra_node, pod, "Unhealthy")
    updates: list[tuple[int, list[str]]] = []
    for _ in range(100):  # the peer's reader of the channel may lag the health cache
        updates += await dra_node.peer.ahealth_updates()
        if updates:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    updates += await dra_node.peer.ahealth_updates()
    assert [pods for _, pods in updates] == [[pod.uid]]


async def test_pod_device_health_stays_known_when_nothing_changes_past_the_kubelet_timeout(
        dra_node: DraNode) -> None:
    """The kubelet forgets a device's health (Unknown) when the stream said nothing about
    it for its health check timeout (30 s unless the plugin names another)."""
    pod, _ = await allocated_pod(dra_node, "quiet")
    await wait_health(dra_node, pod, "Healthy")
    await asyncio.sleep(32)
    health = (await dra_node.peer.apod_health(pod))["c0"]
    assert set(health.values()) == {"Healthy"}


def kubelet_health_cache(node: DraNode) -> dict[str, str]:
    """The DRA manager's health checkpoint (written on every change): device → health."""
    path = node.work / "kubelet" / "dra_health_state"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    raw = data.get("Data", data)
    state = json.loads(raw) if isinstance(raw, str) else raw
    return {key: device["Health"]
            for driver in state.values() for key, device in driver["Devices"].items()}


async def test_every_device_keeps_its_health_when_changes_are_sent_alone_past_the_timeout(
        dra_node: DraNode) -> None:
    """With a change sent alone (only that device in the report) the real DRA manager still
    knows every device across several resend periods and past the health check timeout
    (3 s here): the full report every ``resend`` (1 s) keeps the others fresh; nothing
    turns Unknown."""
    dra_node.health_resend = 1.0
    pod, address = await allocated_pod(dra_node, "deltas")
    await wait_health(dra_node, pod, "Healthy")
    names = {f"{dra_node.name}/{n}" for n in dra_node.devices.value}
    other = next(d for d in dra_node.devices.value.values() if d.device.id != address)
    for i in range(5):  # a change (a short report) every ~1.2 s for 6 s: twice the timeout
        down = i % 2 == 0
        dra_node.devices.publish(node_devices(
            dra_node.host, {other.device.id: Health.UNHEALTHY} if down else {}))
        want = "Unhealthy" if down else "Healthy"
        key = f"{dra_node.name}/{other.name}"
        for _ in range(100):
            if kubelet_health_cache(dra_node).get(key) == want:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)
        cache = kubelet_health_cache(dra_node)
        assert cache.keys() == names
        assert cache[key] == want
        assert {h for k, h in cache.items() if k != key} == {"Healthy"}
    assert set((await dra_node.peer.apod_health(pod))["c0"].values()) == {"Healthy"}
