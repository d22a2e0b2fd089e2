"""DRA mode's test kit: in-memory apiserver ports (claims, ResourceSlices) and the kubelet's
side of the DRA plugin protocol.

:class:`FakeClaimReader` implements :class:`~sriovdp.kubelet.dra.claims.ClaimReader`,
:class:`FakeNodeReader` :class:`~sriovdp.kubelet.dra.apiserver.NodeReader`;
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
from pathlib import Path
from typing import Any, Self

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

    def _store(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        stored = _wire(doc)  # what went over the wire: JSON only, never shared
        self._version += 1
        stored["metadata"]["resourceVersion"] = str(self._version)
        stored["metadata"].setdefault("uid", f"uid-{self._version}")
        for device in stored["spec"].get("devices") or []:
            for taint in device.get("taints", []):
                taint.setdefault("timeAdded", "2026-12-04T14:00:00Z")
        self.slices[stored["metadata"]["name"]] = stored
        return _wire(stored)

    async def list(self, *, driver: str, node_name: str) -> list[dict[str, Any]]:
        self._check("list", "")
        return [_wire(s) for s in self.slices.values()
                if s["spec"]["driver"] == driver and s["spec"].get("nodeName") == node_name]

    async def create(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        name = doc["metadata"]["name"]
        self._check("create", name)
        if name in self.slices:
            raise SliceApiError(f"creating ResourceSlice {name}: 409 AlreadyExists", 409)
        return self._store(doc)

    async def replace(self, doc: Mapping[str, Any], resource_version: str) -> dict[str, Any]:
        name = doc["metadata"]["name"]
        self._check("replace", name)
        current = self.slices.get(name)
        if current is None:
            raise SliceApiError(f"replacing ResourceSlice {name}: 404 NotFound", 404)
        if current["metadata"]["resourceVersion"] != resource_version:
            raise SliceApiError(f"replacing ResourceSlice {name}: 409 Conflict", 409)
        return self._store(doc)

    async def delete(self, name: str) -> None:
        self._check("delete", name)
        if self.slices.pop(name, None) is None:
            raise SliceApiError(f"deleting ResourceSlice {name}: 404 NotFound", 404)


class FakeNodeReader:
    """Node UIDs by name (:class:`~sriovdp.kubelet.dra.apiserver.NodeReader`); a missing
    node or ``unreachable`` fails as the apiserver would."""

    def __init__(self, uids: Mapping[str, str] | None = None) -> None:
        self.uids = dict(uids or {})
        self.unreachable = False

    async def uid(self, node_name: str) -> str:
        if self.unreachable:
            raise SliceApiError(f"reading Node {node_name}: connection refused")
        if node_name not in self.uids:
            raise SliceApiError(f"reading Node {node_name}: 404 NotFound", 404)
        return self.uids[node_name]


KUBELET_DRA_SERVICES = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
"""The DRAPlugin versions a 1.34+ kubelet knows, in the short form plugins advertise."""


class DraKubelet:
    """The kubelet's side of a DRA plugin, as its plugin watcher and DRA manager act.

    :meth:`register` dials a registration socket, calls GetInfo, checks the type
    (``DRAPlugin``), the name and the supported services (the first one it knows is chosen,
    as the kubelet does, unknown names are ignored) and reports NotifyRegistrationStatus;
    :meth:`prepare` and :meth:`unprepare` then call the chosen ``DRAPlugin`` version at the
    endpoint GetInfo named. Use as ``async with DraKubelet() as kubelet:``.

    Attributes:
        driver: the registered plugin's name (the driver); None before a registration.
        service: the chosen service, e.g. ``"v1.DRAPlugin"``.
        endpoint: the ``dra.sock`` path GetInfo named.
    """

    def __init__(self) -> None:
        self.driver: str | None = None
        self.service: str | None = None
        self.endpoint: str | None = None
        self._channel: Any = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def register(self, registration_socket: Path) -> tuple[bool, str]:
        """Register the plugin behind ``registration_socket``; returns (registered, error),
        which is also what the plugin was told."""
        import grpc

        from sriovdp.kubelet.api import (
            pluginregistration_pb2 as reg_pb,
            pluginregistration_pb2_grpc as reg_grpc,
        )

        async with grpc.aio.insecure_channel(f"unix:{registration_socket}") as channel:
            stub = reg_grpc.RegistrationStub(channel)
            info = await stub.GetInfo(reg_pb.InfoRequest())
            chosen = next((s for s in info.supported_versions if s in KUBELET_DRA_SERVICES),
                          None)
            error = ""
            if info.type != "DRAPlugin":
                error = f"plugin type {info.type!r} is not DRAPlugin"
            elif not info.name:
                error = "empty plugin name"
            elif chosen is None:
                error = (f"none of services supported by the plugin "
                         f"({list(info.supported_versions)}) are supported by the kubelet "
                         f"({list(KUBELET_DRA_SERVICES)})")
            await stub.NotifyRegistrationStatus(reg_pb.RegistrationStatus(
                plugin_registered=not error, error=error))
        if error:
            return False, error
        self.driver, self.service, self.endpoint = info.name, chosen, info.endpoint
        self._channel = grpc.aio.insecure_channel(f"unix:{info.endpoint}")
        return True, ""

    def _api(self) -> tuple[Any, Any]:
        from sriovdp.kubelet.api import (
            dra_v1_pb2,
            dra_v1_pb2_grpc,
            dra_v1beta1_pb2,
            dra_v1beta1_pb2_grpc,
        )

        if self._channel is None:
            raise RuntimeError("no DRA plugin registered")
        if self.service == "v1.DRAPlugin":
            return dra_v1_pb2, dra_v1_pb2_grpc.DRAPluginStub(self._channel)
        return dra_v1beta1_pb2, dra_v1beta1_pb2_grpc.DRAPluginStub(self._channel)

    async def prepare(self, *refs: ClaimRef) -> dict[str, Any]:
        """NodePrepareResources for ``refs``; claim UID → that claim's answer."""
        pb, stub = self._api()
        response = await stub.NodePrepareResources(pb.NodePrepareResourcesRequest(claims=[
            pb.Claim(namespace=r.namespace, name=r.name, uid=r.uid) for r in refs]))
        return dict(response.claims)

    async def unprepare(self, *refs: ClaimRef) -> dict[str, Any]:
        """NodeUnprepareResources for ``refs``; claim UID → that claim's answer."""
        pb, stub = self._api()
        response = await stub.NodeUnprepareResources(pb.NodeUnprepareResourcesRequest(claims=[
            pb.Claim(namespace=r.namespace, name=r.name, uid=r.uid) for r in refs]))
        return dict(response.claims)
