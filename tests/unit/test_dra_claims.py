"""Translating a ResourceClaim as the official ``kubernetes`` client returns it.

The claims are JSON documents in the ``resource.k8s.io/v1`` shape, turned into
``ResourceV1ResourceClaim`` objects by the client's own deserializer (as a read would).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes.client import ApiClient

from sriovdp.kubelet.dra.claims import ClaimReadError, claim_from_api
from sriovdp.model.dra.prepare import AllocatedDevice, ClaimRef

REF = ClaimRef("default", "nic", "2f1e0d9c-0000-4000-8000-00000000000a")


@dataclass
class _Response:
    data: str


def v1_claim(uid: str = REF.uid, results: list[dict[str, Any]] | None = None,
             allocated: bool = True) -> Any:
    doc: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": REF.name, "namespace": REF.namespace, "uid": uid},
        "spec": {"devices": {"requests": [{"name": "nic", "exactly": {
            "deviceClassName": "sriov-vf"}}]}},
        "status": {},
    }
    if allocated:
        doc["status"]["allocation"] = {"devices": {"results": results or []}}
    return ApiClient().deserialize(_Response(json.dumps(doc)), "ResourceV1ResourceClaim")


def test_claim_results_are_read_for_every_driver_when_allocated() -> None:
    claim = v1_claim(results=[
        {"request": "nic", "driver": "sriov.network.k8s.io", "pool": "worker-1",
         "device": "0000-3b-02-1"},
        {"request": "gpu", "driver": "gpu.example.com", "pool": "worker-1", "device": "gpu-0"},
    ])
    allocation = claim_from_api(REF, claim)
    assert allocation.ref == REF
    assert allocation.results == (
        AllocatedDevice("nic", "sriov.network.k8s.io", "worker-1", "0000-3b-02-1"),
        AllocatedDevice("gpu", "gpu.example.com", "worker-1", "gpu-0"))


def test_claim_is_refused_when_its_uid_differs_from_the_kubelets() -> None:
    with pytest.raises(ClaimReadError, match="deleted and created again"):
        claim_from_api(REF, v1_claim(uid="ffffffff-0000-4000-8000-000000000000"))


def test_claim_is_refused_when_it_is_not_allocated() -> None:
    with pytest.raises(ClaimReadError, match="not allocated"):
        claim_from_api(REF, v1_claim(allocated=False))
