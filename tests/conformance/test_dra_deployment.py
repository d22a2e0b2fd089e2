"""deployments/overlays/dra on a real kube-apiserver (authorization Node,RBAC): the overlay's
RBAC lets the daemon do what DRA mode does and its examples are allocated and prepared.

The objects are the overlay as ``kubectl kustomize`` renders it and the files of
``deployments/overlays/dra/examples``, created as they are. The daemon's calls are made with
its own adapters (:class:`KubernetesSliceApi` through :class:`SlicePublisher`,
:class:`KubernetesClaimReader`, a Node GET) on the official client, authenticated as the
DaemonSet's service account with a token from the TokenRequest API: the way the pod's
in-cluster config authenticates. A role with one verb removed must make the matching call
fail with 403, or the RBAC check would prove nothing.

The claim is made from the example ResourceClaimTemplate as the resourceclaim controller
makes it (the template's spec, unchanged), allocated by the scheduler's structured allocator
against slices published for a FakeHost node under the base config, and prepared through the
kubelet's DRA manager (peer in ``tests/conformance/dra``).

Without ``go`` (the peer) or ``kubectl`` (rendering) on PATH the module is skipped.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s, config as k8s_config
from kubernetes.client.exceptions import ApiException

from sriovdp.host.cdi import CdiStore
from sriovdp.host.draclaims import ClaimCheckpoint
from sriovdp.host.sysfs import scan
from sriovdp.kubelet.dra.claims import ClaimReadError, KubernetesClaimReader
from sriovdp.kubelet.dra.preparer import ClaimPreparer
from sriovdp.kubelet.dra.publisher import KubernetesSliceApi, SliceApiError, SlicePublisher
from sriovdp.kubelet.dra.server import DraPluginServer, plugin_socket, registration_socket
from sriovdp.kubelet.feed import LatestValue
from sriovdp.model.config import Config, parse_config
from sriovdp.model.dra.prepare import SPEC_FILE_PREFIX, ClaimRef
from sriovdp.model.dra.slices import DraDevice, dra_devices
from sriovdp.model.health import Health
from sriovdp.model.pools import build_pools
from sriovdp.testing.demo import build_demo_host
from sriovdp.testing.drapeer import DraPeer, PeerPod, build_dra_peer, why_no_dra_peer
from sriovdp.testing.fakehost import FakeHost

_WHY_NOT = why_no_dra_peer()
if _WHY_NOT is not None:
    pytest.skip(_WHY_NOT, allow_module_level=True)
KUBECTL = shutil.which("kubectl")
if KUBECTL is None:
    pytest.skip("kubectl is not on PATH: the overlay is rendered with `kubectl kustomize`",
                allow_module_level=True)

pytestmark = pytest.mark.conformance

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "deployments" / "overlays" / "dra"
EXAMPLES = OVERLAY / "examples"
DRIVER = "sriov.network.k8s.io"
_BUILD_DIR = Path(tempfile.gettempdir()) / "sriovdp-dra-peer"
_nodes = itertools.count(1)

Obj = dict[str, Any]


def _render() -> list[Obj]:
    assert KUBECTL is not None
    proc = subprocess.run([KUBECTL, "kustomize", str(OVERLAY)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


OVERLAY_OBJECTS = _render()


def _one(kind: str) -> Obj:
    (obj,) = [o for o in OVERLAY_OBJECTS if o["kind"] == kind]
    return copy.deepcopy(obj)


def _examples() -> dict[str, Obj]:
    docs = [d for p in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())
            if d]
    return {d["kind"]: d for d in docs}


ROLE, BINDING, ACCOUNT = _one("ClusterRole"), _one("ClusterRoleBinding"), _one("ServiceAccount")
BASE_CONFIG: Config = parse_config(_one("ConfigMap")["data"]["config.json"])
SA_NAME, SA_NAMESPACE = ACCOUNT["metadata"]["name"], ACCOUNT["metadata"]["namespace"]


@pytest.fixture(scope="module")
def peer() -> Iterator[DraPeer]:
    binary = build_dra_peer(Path(os.environ.get("DRA_PEER_BUILD_DIR", _BUILD_DIR)))
    work = Path(tempfile.mkdtemp(prefix="sdpdd-", dir="/tmp"))
    p = DraPeer(binary, work / "cp")
    p.start()
    try:
        yield p
    finally:
        p.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def admin(peer: DraPeer) -> k8s.ApiClient:
    """system:masters (the peer's token)."""
    return k8s_config.new_client_from_config(config_file=str(peer.kubeconfig))


def _ensure_namespace(admin: k8s.ApiClient, name: str) -> None:
    try:
        k8s.CoreV1Api(admin).create_namespace({"metadata": {"name": name}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def _wait_allowed(admin: k8s.ApiClient, user: str, attrs: Obj) -> None:
    """Until the apiserver's RBAC authorizer has seen a new binding: it reads roles and
    bindings through informers, so a binding takes effect shortly after it is created."""
    auth = k8s.AuthorizationV1Api(admin)
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{SA_NAMESPACE}",
              "system:authenticated"]
    deadline = time.monotonic() + 30
    while True:
        review = auth.create_subject_access_review({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, "resourceAttributes": attrs}})
        if review.status.allowed:
            return
        assert time.monotonic() < deadline, f"{user} never got {attrs}: {review.status}"
        time.sleep(0.1)


def as_service_account(admin: k8s.ApiClient, account: str, role: Obj) -> k8s.ApiClient:
    """Create ``account`` in the overlay's namespace, ``role`` and a binding of it to the
    account (both as in the overlay, renamed after the account), wait until RBAC has them,
    and return a client that authenticates with a token of that account."""
    core, rbac = k8s.CoreV1Api(admin), k8s.RbacAuthorizationV1Api(admin)
    _ensure_namespace(admin, SA_NAMESPACE)
    sa = copy.deepcopy(ACCOUNT)
    sa["metadata"]["name"] = account
    core.create_namespaced_service_account(SA_NAMESPACE, sa)
    role = copy.deepcopy(role)
    role["metadata"]["name"] = f"{ROLE['metadata']['name']}-{account}"
    rbac.create_cluster_role(role)
    binding = copy.deepcopy(BINDING)
    binding["metadata"]["name"] = role["metadata"]["name"]
    binding["roleRef"]["name"] = role["metadata"]["name"]
    (subject,) = binding["subjects"]
    subject["name"] = account
    rbac.create_cluster_role_binding(binding)
    first = role["rules"][0]
    _wait_allowed(admin, f"system:serviceaccount:{SA_NAMESPACE}:{account}", {
        "group": first["apiGroups"][0], "resource": first["resources"][0],
        "verb": first["verbs"][0]})

    token = core.create_namespaced_service_account_token(account, SA_NAMESPACE, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}}).status.token
    config = k8s.Configuration(host=admin.configuration.host,
                               api_key={"BearerToken": f"Bearer {token}"})
    config.ssl_ca_cert = admin.configuration.ssl_ca_cert
    client = k8s.ApiClient(config)
    who = k8s.AuthenticationV1Api(client).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert who.status.user_info.username == f"system:serviceaccount:{SA_NAMESPACE}:{account}"
    return client


def without(role: Obj, group: str, resource: str, verb: str) -> Obj:
    """``role`` with ``verb`` removed from the rule for ``resource``."""
    role = copy.deepcopy(role)
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            assert verb in rule["verbs"], (resource, verb)
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    role["rules"] = [r for r in role["rules"] if r["verbs"]]
    return role


def node_devices(host: FakeHost, config: Config = BASE_CONFIG,
                 health: Mapping[str, str] | None = None) -> dict[str, DraDevice]:
    pools = build_pools(scan(host.paths), config.resources, default_prefix="intel.com",
                        health=dict(health or {}))
    return dra_devices(pools)


def new_node(admin: k8s.ApiClient) -> tuple[str, str]:
    name = f"node-{next(_nodes)}"
    node = k8s.CoreV1Api(admin).create_node({"metadata": {"name": name}})
    return name, str(node.metadata.uid)


def allocated_claim(admin: k8s.ApiClient, peer: DraPeer, node: str, namespace: str,
                    ) -> tuple[str, str]:
    """A claim for one device of the node, allocated by the real allocator; (name, UID)."""
    resource = k8s.ResourceV1Api(admin)
    class_name = f"any-{node}"
    resource.create_device_class({
        "apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
        "metadata": {"name": class_name},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]}})
    claim = resource.create_namespaced_resource_claim(namespace, {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": "one"},
        "spec": {"devices": {"requests": [{"name": "nic", "exactly": {
            "deviceClassName": class_name}}]}}})
    pod = PeerPod("p", str(uuid.uuid4()), {"nic": "one"}, {"c0": ["nic"]}, namespace)
    assert peer.allocate(node, namespace, ["one"], pod) is not None
    return "one", str(claim.metadata.uid)


def published(admin: k8s.ApiClient, node: str) -> dict[str, Obj]:
    """Device name → attributes, as the apiserver stores the node's slices."""
    answer = json.loads(k8s.ResourceV1Api(admin).list_resource_slice(
        field_selector=f"spec.nodeName={node}", _preload_content=False).data)
    return {d["name"]: d["attributes"] for s in answer["items"]
            for d in s["spec"].get("devices") or []}


# --- RBAC ----------------------------------------------------------------------------------


async def daemon_calls(client: k8s.ApiClient, admin: k8s.ApiClient, peer: DraPeer,
                       tmp_path: Path) -> None:
    """What DRA mode does with the API server, in its order, as ``client``: read the Node
    (its UID for the owner reference), publish the node's slices (list, create), publish a
    health change (list, replace), read an allocated claim, delete a slice."""
    node, _ = new_node(admin)
    uid = str(k8s.CoreV1Api(client).read_node(node).metadata.uid)
    host = build_demo_host(tmp_path / "host")
    publisher = SlicePublisher(KubernetesSliceApi(k8s.ResourceV1Api(client)), driver=DRIVER,
                               node_name=node, node_uid=uid)
    devices = node_devices(host)
    plan = await publisher.publish(devices)
    assert plan.create and not plan.replace
    sick = next(iter(devices.values())).device.id
    plan = await publisher.publish(node_devices(host, health={sick: Health.UNHEALTHY}))
    assert plan.replace

    namespace = f"ns-{node}"
    _ensure_namespace(admin, namespace)
    name, claim_uid = allocated_claim(admin, peer, node, namespace)
    claim = await KubernetesClaimReader(k8s.ResourceV1Api(client)).read(
        ClaimRef(namespace=namespace, name=name, uid=claim_uid))
    assert [d.pool for d in claim.results] == [node]

    slice_name = plan.replace[0]["metadata"]["name"]
    await KubernetesSliceApi(k8s.ResourceV1Api(client)).delete(slice_name)
    left = k8s.ResourceV1Api(admin).list_resource_slice(field_selector=f"spec.nodeName={node}")
    assert slice_name not in [s.metadata.name for s in left.items]


async def test_the_overlay_role_allows_every_call_dra_mode_makes_when_bound_to_the_account(
        admin: k8s.ApiClient, peer: DraPeer, tmp_path: Path) -> None:
    client = as_service_account(admin, SA_NAME, ROLE)
    await daemon_calls(client, admin, peer, tmp_path)


# (group, resource, verb) removed → the call that must then be refused
MISSING = [
    ("", "nodes", "get"),
    ("resource.k8s.io", "resourceslices", "list"),
    ("resource.k8s.io", "resourceslices", "create"),
    ("resource.k8s.io", "resourceslices", "update"),
    ("resource.k8s.io", "resourceslices", "delete"),
    ("resource.k8s.io", "resourceclaims", "get"),
]


@pytest.mark.parametrize(("group", "resource", "verb"), MISSING,
                         ids=[f"{r}-{v}" for _, r, v in MISSING])
async def test_dra_mode_is_refused_403_when_the_role_lacks_a_verb(
        admin: k8s.ApiClient, peer: DraPeer, tmp_path: Path, group: str, resource: str,
        verb: str) -> None:
    client = as_service_account(admin, f"no-{resource}-{verb}",
                                without(ROLE, group, resource, verb))
    with pytest.raises((ApiException, SliceApiError, ClaimReadError)) as caught:
        await daemon_calls(client, admin, peer, tmp_path)
    refused = caught.value if isinstance(caught.value, ApiException) else caught.value.__cause__
    assert isinstance(refused, ApiException), repr(caught.value)
    assert refused.status == 403, repr(caught.value)
    message = json.loads(refused.body)["message"]
    assert f'cannot {verb} resource "{resource}"' in message, message


# --- the examples on the real allocator and DRA manager --------------------------------------


def claim_from_template(template: Obj, pod: str, pod_claim: str) -> Obj:
    """The ResourceClaim the resourceclaim controller makes for a pod's claim that names
    ``template``: the template's spec unchanged (and its labels, annotations)."""
    meta = template["spec"].get("metadata") or {}
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"generateName": f"{pod}-{pod_claim}-",
                         "labels": meta.get("labels") or {},
                         "annotations": {**(meta.get("annotations") or {}),
                                         "resource.kubernetes.io/pod-claim-name": pod_claim}},
            "spec": copy.deepcopy(template["spec"]["spec"])}


def two_pfs_one_dpdk_vf_each(root: Path) -> FakeHost:
    """Two X710 PFs, each with one VF on vfio-pci (and one on iavf)."""
    host = FakeHost(root)
    for n, pf_address in enumerate(("0000:3b:00.0", "0000:5e:00.0")):
        pf = host.add_pf(pf_address, vendor="8086", device="1572", driver="i40e",
                         ifname=f"ens785f{n}", numa_node=0, iommu_group=40 + n)
        vfs = host.add_vfs(pf, 2, device="154c", driver="iavf", ifname=f"ens785f{n}v{{n}}",
                           iommu_group_base=100 + 10 * n)
        host.bind(vfs[1], "vfio-pci")
    return host


@pytest.fixture(scope="module")
def examples(admin: k8s.ApiClient) -> dict[str, Obj]:
    """The example DeviceClass created as is; the template in a namespace of its own."""
    ex = _examples()
    resource = k8s.ResourceV1Api(admin)
    resource.create_device_class(ex["DeviceClass"])
    _ensure_namespace(admin, "examples")
    resource.create_namespaced_resource_claim_template("examples", ex["ResourceClaimTemplate"])
    return ex


async def test_example_pod_gets_two_dpdk_vfs_of_one_pf_when_allocated_and_prepared(
        admin: k8s.ApiClient, peer: DraPeer, examples: dict[str, Obj]) -> None:
    resource = k8s.ResourceV1Api(admin)
    work = Path(tempfile.mkdtemp(prefix="sdpdx-", dir="/tmp"))  # short unix socket paths
    try:
        node = f"node-{next(_nodes)}"
        host = build_demo_host(work / "host")
        node_uid = await asyncio.to_thread(peer.kubelet_start, node, work / "registry",
                                           work / "kubelet")
        account = as_service_account(admin, "example-prepare", ROLE)
        as_daemon = k8s.ResourceV1Api(account)
        feed: LatestValue[Mapping[str, DraDevice]] = LatestValue(node_devices(host))
        await SlicePublisher(KubernetesSliceApi(as_daemon), driver=DRIVER, node_name=node,
                             node_uid=node_uid).publish(feed.value)
        registered = asyncio.Event()
        server = DraPluginServer(
            ClaimPreparer(driver=DRIVER, pool_name=node, reader=KubernetesClaimReader(as_daemon),
                          devices=lambda: feed.value, facts=lambda: scan(host.paths).facts,
                          cdi=CdiStore(work / "cdi", prefix=SPEC_FILE_PREFIX),
                          checkpoint=ClaimCheckpoint(work / "plugins" / DRIVER / "cp.json")),
            socket=plugin_socket(work / "plugins", DRIVER),
            registration=registration_socket(work / "registry", DRIVER), health=feed,
            on_status=lambda ok, _: registered.set() if ok else None)
        await server.start()
        try:
            await asyncio.wait_for(registered.wait(), 30)
            pod_doc = examples["Pod"]
            (pod_claim,) = pod_doc["spec"]["resourceClaims"]
            template = resource.read_namespaced_resource_claim_template(
                pod_claim["resourceClaimTemplateName"], "examples")
            claim = resource.create_namespaced_resource_claim("examples", claim_from_template(
                admin.sanitize_for_serialization(template), pod_doc["metadata"]["name"],
                pod_claim["name"]))
            (container,) = pod_doc["spec"]["containers"]
            pod = PeerPod(pod_doc["metadata"]["name"], str(uuid.uuid4()),
                          {pod_claim["name"]: claim.metadata.name},
                          {container["name"]: [c["name"] for c in
                                               container["resources"]["claims"]]},
                          namespace="examples")

            statuses = peer.allocate(node, "examples", [claim.metadata.name], pod)

            assert statuses is not None, "the allocator found no two DPDK VFs on one PF"
            chosen = [r["device"] for r in statuses[0]["allocation"]["devices"]["results"]]
            assert len(chosen) == 2
            attrs = [published(admin, node)[d] for d in chosen]
            assert {a["resourceName"]["string"] for a in attrs} == {"intel.com/intel_sriov_dpdk"}
            assert {a["pfName"]["string"] for a in attrs} == {"ens785f0"}
            assert {a["driver"]["string"] for a in attrs} == {"vfio-pci"}

            cdi = await peer.aprepare(pod)
            edits = peer.cdi_resolve(work / "cdi", cdi[container["name"]])
            addresses = ",".join(sorted(a["pciAddress"]["string"] for a in attrs))
            assert f"PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK={addresses}" in edits["env"]
            paths = {n["path"] for n in edits["device_nodes"]}
            groups = {f"/dev/vfio/{a['iommuGroup']['int']}" for a in attrs}
            assert {"/dev/vfio/vfio", *groups} <= paths
            assert [p.name for p in (work / "cdi").iterdir()] == [
                f"{SPEC_FILE_PREFIX}{claim.metadata.uid}.yaml"]
            await peer.aunprepare(pod)
        finally:
            await server.stop()
            await asyncio.to_thread(peer.kubelet_stop)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def test_example_claim_is_unschedulable_when_no_pf_has_two_dpdk_vfs(
        admin: k8s.ApiClient, peer: DraPeer, examples: dict[str, Obj], tmp_path: Path) -> None:
    """The template's matchAttribute constraint is what keeps the two VFs on one PF: two
    DPDK VFs on two PFs do not satisfy it."""
    resource = k8s.ResourceV1Api(admin)
    node, uid = new_node(admin)
    host = two_pfs_one_dpdk_vf_each(tmp_path / "host")
    devices = node_devices(host)
    assert [d.pool.resource_name for d in devices.values()].count(
        "intel.com/intel_sriov_dpdk") == 2
    await SlicePublisher(KubernetesSliceApi(resource), driver=DRIVER, node_name=node,
                         node_uid=uid).publish(devices)
    template = admin.sanitize_for_serialization(resource.read_namespaced_resource_claim_template(
        examples["ResourceClaimTemplate"]["metadata"]["name"], "examples"))
    claim = resource.create_namespaced_resource_claim(
        "examples", claim_from_template(template, "split", "vfs"))
    pod = PeerPod("split", str(uuid.uuid4()), {"vfs": claim.metadata.name}, {"app": ["vfs"]},
                  namespace="examples")
    assert peer.allocate(node, "examples", [claim.metadata.name], pod) is None

    single = copy.deepcopy(template)
    del single["spec"]["spec"]["devices"]["constraints"]
    claim = resource.create_namespaced_resource_claim(
        "examples", claim_from_template(single, "unconstrained", "vfs"))
    pod = PeerPod("unconstrained", str(uuid.uuid4()), {"vfs": claim.metadata.name},
                  {"app": ["vfs"]}, namespace="examples")
    assert peer.allocate(node, "examples", [claim.metadata.name], pod) is not None, \
        "without the constraint the two VFs are allocatable: the constraint made the difference"


def test_claim_template_spec_round_trips_through_the_apiserver(
        admin: k8s.ApiClient, examples: dict[str, Obj]) -> None:
    """What the apiserver stored is the example's spec (no field dropped or defaulted)."""
    stored = admin.sanitize_for_serialization(
        k8s.ResourceV1Api(admin).read_namespaced_resource_claim_template(
            examples["ResourceClaimTemplate"]["metadata"]["name"], "examples"))
    want = examples["ResourceClaimTemplate"]["spec"]["spec"]["devices"]
    got = stored["spec"]["spec"]["devices"]
    assert got["constraints"] == want["constraints"]
    (request,) = got["requests"]
    assert request["exactly"]["deviceClassName"] == "sriov-dpdk"
    assert request["exactly"]["count"] == 2
