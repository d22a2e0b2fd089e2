"""Break-it pass 7 against Kubernetes' own DRA code (the Go peer of
``test_dra_daemon_process``: a real kube-apiserver, the scheduler's structured allocator and
the kubelet's DRA manager, with the ``sriovdp --dra=all`` process). The test reproduced a
defect of that pass (a VF prepared for two claims) and passes since its fix."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from test_dra_daemon_process import (  # noqa: F401 - fixtures
    DRIVER,
    DaemonNode,
    _ready,
    daemon_node,
    daemon_peer,
    resync,
)

from sriovdp.model.dra.names import device_name
from sriovdp.model.dra.prepare import SPEC_FILE_PREFIX
from sriovdp.testing import eventually
from sriovdp.testing.drapeer import DraPeerError, PeerPod

pytestmark = pytest.mark.conformance

VF = "0000:3b:02.0"  # an iavf VF of ens785f0 (pool intel_sriov_netdevice)


async def _up(node: DaemonNode) -> bool:
    try:
        return await _ready(node)
    except OSError:  # not listening yet
        return False


async def _published(node: DaemonNode, name: str) -> bool:
    return name in await asyncio.to_thread(node.published)


def _claim_for(node: DaemonNode, name: str) -> None:
    """A claim for the VF ``VF`` (a request selector pins it, as an operator may)."""
    pinned = f'device.attributes["{DRIVER}"].pciAddress == "{VF}"'
    node.resource.create_namespaced_resource_claim(node.name, {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": {"devices": {"requests": [{"name": "nic", "exactly": {
            "deviceClassName": f"sriov-{node.name}",
            "selectors": [{"cel": {"expression": pinned}}]}}]}}})


def _pod(node: DaemonNode, name: str, claim: str) -> PeerPod:
    return PeerPod(name=name, uid=str(uuid.uuid4()), namespace=node.name,
                   claims={"nic": claim}, containers={"c0": ["nic"]})


def _gone(node: DaemonNode, name: str) -> None:
    """What the resourceclaim controller does once the pod object is gone (``kubectl delete
    pod --force``, or the node unreachable): the claim is deallocated and deleted, without
    waiting for the kubelet to unprepare it."""
    claim = node.resource.read_namespaced_resource_claim(name, node.name)
    claim.status = None
    node.resource.replace_namespaced_resource_claim_status(name, node.name, claim)
    node.resource.patch_namespaced_resource_claim(
        name, node.name, {"metadata": {"finalizers": None}})
    node.resource.delete_namespaced_resource_claim(name, node.name)


async def test_a_vf_still_prepared_for_a_force_deleted_pod_is_not_prepared_for_the_next_pod(
        daemon_node: DaemonNode) -> None:  # noqa: F811
    node = daemon_node
    await eventually(lambda: _up(node), timeout=60, what="/readyz 200")
    await eventually(lambda: _published(node, device_name(VF)), timeout=60,
                     what=f"{VF} in the slices")
    node.resource.create_device_class({
        "apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
        "metadata": {"name": f"sriov-{node.name}"},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]}})
    _claim_for(node, "first")
    first = _pod(node, "first", "first")
    assert await asyncio.to_thread(node.peer.allocate, node.name, node.name, ["first"], first)
    await node.peer.aprepare(first)
    # the first pod is force-deleted: its container still runs, its claim is prepared
    await asyncio.to_thread(_gone, node, "first")
    _claim_for(node, "second")
    second = _pod(node, "second", "second")
    statuses = await asyncio.to_thread(node.peer.allocate, node.name, node.name, ["second"],
                                       second)
    assert statuses is not None, "the allocator gives the VF to the next claim"
    with pytest.raises(DraPeerError, match="still prepared for claim"):
        await node.peer.aprepare(second)  # the kubelet retries it
    specs = sorted(p.name for p in node.cdi_dir.glob(f"{SPEC_FILE_PREFIX}*"))
    assert len(specs) == 1, f"{VF} prepared for two claims: {specs}"
    # once the kubelet unprepared the first claim, the second is prepared
    await node.peer.aunprepare(first)
    await node.peer.aprepare(second)
