"""In-memory apiserver ports for DRA mode: claims and ResourceSlices.

:class:`FakeClaimReader` implements :class:`~sriovdp.kubelet.dra.claims.ClaimReader`;
:class:`FakeSliceApi` implements :class:`~sriovdp.kubelet.dra.publisher.SliceApi` with the
apiserver's rules that matter to a publisher (409 on a create of an existing name or a
replace with a stale ``resourceVersion``, 404 on a missing name, server-set fields).

Example::

    reader = FakeClaimReader()
    reader.put(ClaimAllocation(ClaimRef("default", "c1", "uid-1"),
                               (AllocatedDevice("nic", DRIVER, "worker-1", "0000-3b-02-1"),)))
    reader.delete("default", "c1")     # the claim is gone: reads now fail, as with a 404
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sriovdp.kubelet.dra.claims import ClaimReadError
from sriovdp.kubelet.dra.publisher import SliceApiError
from sriovdp.model.dra.prepare import ClaimAllocation, ClaimRef


class FakeClaimReader:
    """Claims by namespace/name, read with the same checks as the real reader.

    Attributes:
        reads: how many reads were asked (a repeated prepare must not ask again).
        unreachable: when set, every read fails as an unreachable apiserver would.
    """

    def __init__(self) -> None:
        self._claims: dict[tuple[str, str], ClaimAllocation] = {}
        self.reads = 0
        self.unreachable = False

    def put(self, claim: ClaimAllocation) -> None:
        """Create or replace the claim (by namespace and name)."""
        self._claims[(claim.ref.namespace, claim.ref.name)] = claim

    def delete(self, namespace: str, name: str) -> None:
        self._claims.pop((namespace, name), None)

    async def read(self, ref: ClaimRef) -> ClaimAllocation:
        self.reads += 1
        if self.unreachable:
            raise ClaimReadError(f"reading claim {ref}: connection refused")
        claim = self._claims.get((ref.namespace, ref.name))
        if claim is None:
            raise ClaimReadError(f"claim {ref.namespace}/{ref.name} not found")
        if claim.ref.uid != ref.uid:
            raise ClaimReadError(f"claim {ref.namespace}/{ref.name} has UID {claim.ref.uid}, "
                                 f"not {ref.uid} (it was deleted and created again)")
        return claim


def _wire(doc: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(doc))
    return copied


class FakeSliceApi:
    """ResourceSlices by name.

    Attributes:
        slices: name → stored object (with ``resourceVersion``, ``uid``, taint ``timeAdded``).
        calls: every call as ``(verb, name)``; ``("list", "")`` for lists.
        unreachable: when set, every call fails as an unreachable apiserver would.
    """

    def __init__(self) -> None:
        self.slices: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.unreachable = False
        self._version = 0

    def _check(self, verb: str, name: str) -> None:
        self.calls.append((verb, name))
        if self.unreachable:
            raise SliceApiError(f"{verb} {name}: connection refused")

    def _store(self, doc: Mapping[str, Any]) -> None:
        stored = _wire(doc)  # what went over the wire: JSON only, never shared
        self._version += 1
        stored["metadata"]["resourceVersion"] = str(self._version)
        stored["metadata"].setdefault("uid", f"uid-{self._version}")
        for device in stored["spec"].get("devices") or []:
            for taint in device.get("taints", []):
                taint.setdefault("timeAdded", "2026-12-04T14:00:00Z")
        self.slices[stored["metadata"]["name"]] = stored

    async def list(self, *, driver: str, node_name: str) -> list[dict[str, Any]]:
        self._check("list", "")
        return [_wire(s) for s in self.slices.values()
                if s["spec"]["driver"] == driver and s["spec"].get("nodeName") == node_name]

    async def create(self, doc: Mapping[str, Any]) -> None:
        name = doc["metadata"]["name"]
        self._check("create", name)
        if name in self.slices:
            raise SliceApiError(f"creating ResourceSlice {name}: 409 AlreadyExists", 409)
        self._store(doc)

    async def replace(self, doc: Mapping[str, Any], resource_version: str) -> None:
        name = doc["metadata"]["name"]
        self._check("replace", name)
        current = self.slices.get(name)
        if current is None:
            raise SliceApiError(f"replacing ResourceSlice {name}: 404 NotFound", 404)
        if current["metadata"]["resourceVersion"] != resource_version:
            raise SliceApiError(f"replacing ResourceSlice {name}: 409 Conflict", 409)
        self._store(doc)

    async def delete(self, name: str) -> None:
        self._check("delete", name)
        if self.slices.pop(name, None) is None:
            raise SliceApiError(f"deleting ResourceSlice {name}: 404 NotFound", 404)
