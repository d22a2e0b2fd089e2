"""Publishing the node's ResourceSlices: the apiserver port, its client adapter, the publisher.

:class:`SlicePublisher` turns the node's DRA devices into slices
(:mod:`sriovdp.model.dra.slices`), compares them with what the apiserver has
(:mod:`sriovdp.model.dra.publish`) and sends only the difference: creates and replacements
first, stale deletions last. The first publication reads the slices back, so the pool
generation continues from what a previous process published. When the devices are the
same as last published nothing is sent at all (no list either) unless ``force`` is set, as
a periodic resync should do to repair slices someone else deleted.

:class:`SliceApi` is the port; :class:`KubernetesSliceApi` implements it with the official
client (``ResourceV1Api``, calls in a worker thread); the test kit has an in-memory one
(:class:`sriovdp.testing.dra.FakeSliceApi`). Retrying with back-off, coalescing triggers
and reporting in ``/readyz`` are the daemon's job: :meth:`SlicePublisher.publish` raises
:class:`SliceApiError` and keeps nothing half-applied in its state.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from sriovdp.errors import SriovdpError
from sriovdp.model.dra.publish import SyncPlan, plan_sync, published_state
from sriovdp.model.dra.slices import (
    DraDevice,
    HealthPolicy,
    PoolState,
    advance,
    resource_slices,
    slice_devices,
)
from sriovdp.threads import in_daemon_thread

log = logging.getLogger("sriovdp.kubelet.dra")


class SliceApiError(SriovdpError):
    """The apiserver refused or could not be reached; ``status`` is the HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class SliceApi(Protocol):
    """The ResourceSlices of the apiserver, as plain ``resource.k8s.io/v1`` dicts."""

    async def list(self, *, driver: str, node_name: str) -> list[dict[str, Any]]: ...
    async def create(self, doc: Mapping[str, Any]) -> None: ...
    async def replace(self, doc: Mapping[str, Any], resource_version: str) -> None: ...
    async def delete(self, name: str) -> None: ...


class SlicePublisher:
    """Keeps the apiserver's slices of this node equal to its devices.

    Args:
        api: the apiserver port.
        driver: our driver name.
        node_name: the node (and pool) name.
        node_uid: the Node's UID for the owner reference (None: no owner reference).
        policy: withdraw or taint Unhealthy devices.
    """

    def __init__(self, api: SliceApi, *, driver: str, node_name: str,
                 node_uid: str | None = None,
                 policy: HealthPolicy = HealthPolicy.WITHDRAW) -> None:
        self._api = api
        self.driver = driver
        self.node_name = node_name
        self.node_uid = node_uid
        self.policy = policy
        self.state: PoolState | None = None
        """What the apiserver was last brought to (None before the first success)."""

    async def publish(self, devices: Mapping[str, DraDevice], *,
                      pcie_roots: Mapping[str, str] | None = None,
                      force: bool = False) -> SyncPlan:
        """Bring the apiserver's slices to ``devices``; returns what was sent.

        Raises:
            SliceApiError: a call failed; the next publish lists again and resumes.
        """
        wanted = slice_devices(devices, driver=self.driver, policy=self.policy,
                               pcie_roots=pcie_roots)
        if (not force and self.state is not None
                and advance(self.state, wanted, self.policy) is self.state):
            return SyncPlan()
        existing = await self._api.list(driver=self.driver, node_name=self.node_name)
        previous = self.state if self.state is not None else published_state(
            existing, node_name=self.node_name)
        state = advance(previous, wanted, self.policy)
        desired = resource_slices(state, driver=self.driver, node_name=self.node_name,
                                  node_uid=self.node_uid, policy=self.policy)
        plan = plan_sync(existing, desired)
        versions = {s["metadata"]["name"]: s["metadata"].get("resourceVersion", "")
                    for s in existing}
        for doc in plan.create:
            await self._api.create(doc)
        for doc in plan.replace:
            await self._api.replace(doc, versions[doc["metadata"]["name"]])
        for name in plan.delete:
            await self._api.delete(name)
        self.state = state
        if not plan.empty:
            log.info("published %d devices in %d ResourceSlices (generation %d): "
                     "%d created, %d replaced, %d deleted", len(wanted), len(desired),
                     state.generation, len(plan.create), len(plan.replace), len(plan.delete))
        return plan


class KubernetesSliceApi:
    """:class:`SliceApi` on ``kubernetes.client.ResourceV1Api``.

    Answers are read as plain JSON (``_preload_content=False``), not as the client's typed
    models: for 2,048 devices in 16 slices, building and serialising the models took about
    0.6 s per list and 80 ms per replace against a real apiserver, the JSON about 50 ms.

    Example::

        from kubernetes import client, config
        config.load_incluster_config()
        api = KubernetesSliceApi(client.ResourceV1Api())
    """

    def __init__(self, api: Any, *, timeout: float = 10.0) -> None:
        self._api = api
        self._timeout = timeout

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return await in_daemon_thread(functools.partial(
                fn, *args, _request_timeout=self._timeout, _preload_content=False, **kwargs))
        except ApiException as exc:
            raise SliceApiError(f"{what}: {exc.status} {exc.reason}", exc.status) from exc
        except (OSError, ValueError) as exc:  # urllib3 connection errors are OSErrors
            raise SliceApiError(f"{what}: {exc}") from exc

    async def list(self, *, driver: str, node_name: str) -> list[dict[str, Any]]:
        selector = f"spec.nodeName={node_name},spec.driver={driver}"
        answer = await self._call(f"listing ResourceSlices ({selector})",
                                  self._api.list_resource_slice, field_selector=selector)
        try:
            items: list[dict[str, Any]] = json.loads(answer.data)["items"] or []
        except (ValueError, KeyError, TypeError) as exc:
            raise SliceApiError(f"listing ResourceSlices ({selector}): bad answer: {exc}") from exc
        return items

    async def create(self, doc: Mapping[str, Any]) -> None:
        name = doc["metadata"]["name"]
        await self._call(f"creating ResourceSlice {name}", self._api.create_resource_slice,
                         dict(doc))

    async def replace(self, doc: Mapping[str, Any], resource_version: str) -> None:
        body = copy.deepcopy(dict(doc))
        body["metadata"]["resourceVersion"] = resource_version
        name = body["metadata"]["name"]
        await self._call(f"replacing ResourceSlice {name}", self._api.replace_resource_slice,
                         name, body)

    async def delete(self, name: str) -> None:
        try:
            await self._call(f"deleting ResourceSlice {name}", self._api.delete_resource_slice,
                             name)
        except SliceApiError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise
