"""Publishing the node's ResourceSlices: the apiserver port, its client adapter, the publisher.

:class:`SlicePublisher` turns the node's DRA devices into slices
(:mod:`sriovdp.model.dra.slices`), compares them with what the apiserver has
(:mod:`sriovdp.model.dra.publish`) and sends only the difference: one slice of the new
generation first and alone (one whose devices changed), so the allocator sees the pool's
newest generation incomplete, and gives out none of its devices, from the first write on;
then the other creates and replacements (:data:`WRITE_CONCURRENCY` at a time, those whose
devices changed first); stale deletions last, once the new generation is complete.

What the apiserver has is known without asking when this publisher's last publication
succeeded: it keeps the objects its writes stored (their ``resourceVersion`` included) and
replaces against them. It lists the node's slices only when that is not known: the first
publication (so the pool generation continues from what a previous process published),
the next one after a failure, a forced one (as a periodic resync should do, to repair
slices someone else deleted or changed), and when a write finds the apiserver's slices
other than kept (409 conflict, 404): then it lists and publishes again at once. A
publication that fails half-way leaves the next one to list and write a whole new
generation above it. When the devices are the same as last published nothing is sent at
all unless ``force`` is set.

:class:`SliceApi` is the port; :class:`KubernetesSliceApi` implements it with the official
client (``ResourceV1Api``, calls in a worker thread); the test kit has an in-memory one
(:class:`sriovdp.testing.dra.FakeSliceApi`). Retrying with back-off, coalescing triggers
and reporting in ``/readyz`` are the daemon's job: :meth:`SlicePublisher.publish` raises
:class:`SliceApiError` and keeps nothing half-applied in its state.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from sriovdp.errors import SriovdpError
from sriovdp.kubelet.dra.httperrors import failure_text
from sriovdp.model.dra.publish import SyncPlan, comparable_device, plan_sync, published_state
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

WRITE_CONCURRENCY = 8
"""Slices written at the same time. Every change bumps the pool generation, so every slice
is written again, and until the last one is stored the scheduler's allocator sees the pool
as incomplete and allocates none of its devices: at 2,048 VFs (16 slices) writing them one
after another kept it so for ~1.5 s."""


class SliceApiError(SriovdpError):
    """The apiserver refused or could not be reached; ``status`` is the HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class JsonBody(dict[str, Any]):
    """A request body that is plain JSON already (dicts, lists, strings, numbers, booleans):
    the client of :func:`~sriovdp.kubelet.dra.apiserver.connect` sends it as it is, without
    the generated client's recursive walk (``sanitize_for_serialization``, ~10-20 ms a slice
    of 128 devices, holding the GIL); any other client walks it as the plain dict it is."""


class SliceApi(Protocol):
    """The ResourceSlices of the apiserver, as plain ``resource.k8s.io/v1`` dicts."""

    async def list(self, *, driver: str, node_name: str) -> list[dict[str, Any]]: ...
    async def create(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Create the slice; returns the object stored (with its ``resourceVersion``)."""
        ...
    async def replace(self, doc: Mapping[str, Any], resource_version: str) -> dict[str, Any]:
        """Replace the slice stored at ``resource_version`` (else 409); returns the object
        stored."""
        ...
    async def delete(self, name: str) -> None: ...


class SlicePublisher:
    """Keeps the apiserver's slices of this node equal to its devices.

    Args:
        api: the apiserver port.
        driver: our driver name.
        node_name: the node (and pool) name.
        node_uid: the Node's UID for the owner reference (None: no owner reference).
        policy: withdraw or taint Unhealthy devices.
        concurrency: slices written at the same time.
    """

    def __init__(self, api: SliceApi, *, driver: str, node_name: str,
                 node_uid: str | None = None,
                 policy: HealthPolicy = HealthPolicy.WITHDRAW,
                 concurrency: int = WRITE_CONCURRENCY) -> None:
        self._api = api
        self.concurrency = concurrency
        self.driver = driver
        self.node_name = node_name
        self.node_uid = node_uid
        self.policy = policy
        self.state: PoolState | None = None
        """What the apiserver was last brought to (None before the first success)."""
        self._stored: dict[str, dict[str, Any]] | None = None
        """The node's slices as stored by the last successful publication, by name (None:
        not known, the next publication lists them)."""

    async def publish(self, devices: Mapping[str, DraDevice], *,
                      pcie_roots: Mapping[str, str] | None = None,
                      force: bool = False) -> SyncPlan:
        """Bring the apiserver's slices to ``devices``; returns what was sent.

        Raises:
            SliceApiError: a call failed; the next publish lists again and resumes.
        """
        return await self.publish_entries(
            slice_devices(devices, driver=self.driver, policy=self.policy,
                          pcie_roots=pcie_roots), force=force)

    async def publish_entries(self, wanted: Sequence[dict[str, Any]], *,
                              force: bool = False) -> SyncPlan:
        """:meth:`publish` for the pool's ``spec.devices`` entries, as
        :func:`~sriovdp.model.dra.slices.slice_devices` builds them with this publisher's
        driver and policy (a caller may build them off the event loop)."""
        if (not force and self.state is not None
                and advance(self.state, wanted, self.policy) is self.state):
            return SyncPlan()
        known = None if force else self._stored
        try:
            return await self._publish(wanted, known)
        except SliceApiError as exc:
            if known is None or exc.status not in (404, 409):
                raise
            # someone else changed or deleted a slice: what we kept is stale
            log.info("ResourceSlices not as last published (%s): listing them again", exc)
        return await self._publish(wanted, None)

    async def _publish(self, wanted: Sequence[dict[str, Any]],
                       known: Mapping[str, dict[str, Any]] | None) -> SyncPlan:
        """One publication against ``known`` (the stored slices; None: list them)."""
        if known is not None:
            existing = list(known.values())
        else:
            existing = await self._api.list(driver=self.driver, node_name=self.node_name)
        previous = self.state if self.state is not None else published_state(
            existing, node_name=self.node_name)
        state = advance(previous, wanted, self.policy)
        desired = resource_slices(state, driver=self.driver, node_name=self.node_name,
                                  node_uid=self.node_uid, policy=self.policy)
        plan = plan_sync(existing, desired)
        have = {s["metadata"]["name"]: s for s in existing}
        stored = dict(have)

        async def create(doc: Mapping[str, Any]) -> None:
            stored[doc["metadata"]["name"]] = await self._api.create(doc)

        async def replace(doc: Mapping[str, Any]) -> None:
            name = doc["metadata"]["name"]
            stored[name] = await self._api.replace(
                doc, have[name]["metadata"].get("resourceVersion", ""))

        writes = [functools.partial(create, doc) for doc in plan.create] + [
            functools.partial(replace, doc) for doc in plan.replace]
        changed = [_devices_changed(doc, have) for doc in (*plan.create, *plan.replace)]
        ordered = ([w for w, c in zip(writes, changed, strict=True) if c]
                   + [w for w, c in zip(writes, changed, strict=True) if not c])
        self._stored = None  # until this publication has succeeded
        try:
            # one slice of the new generation alone: from its write on the allocator sees
            # the newest generation incomplete and gives out none of the pool's devices
            # (written beside others, it waited for the apiserver as long as they did);
            # then the rest of the generation, those whose devices changed first; then the
            # stale ones, once the new generation is complete
            await self._all(ordered[:1])
            await self._all(ordered[1:])
            await self._all([functools.partial(self._api.delete, name)
                             for name in plan.delete])
        except BaseException:
            # some slices of the new generation may be written: the next publication lists
            # them, finds that generation incomplete and writes a whole new one above it (a
            # generation half of one content and half of another could list a device twice)
            self.state = None
            raise
        for name in plan.delete:
            stored.pop(name, None)
        self.state, self._stored = state, stored
        if not plan.empty:
            log.info("published %d devices in %d ResourceSlices (generation %d): "
                     "%d created, %d replaced, %d deleted%s", len(wanted), len(desired),
                     state.generation, len(plan.create), len(plan.replace), len(plan.delete),
                     "" if known is not None else " (listed first)")
        return plan

    async def _all(self, calls: Sequence[Callable[[], Awaitable[None]]]) -> None:
        """Run ``calls``, up to ``concurrency`` at a time, in their order; after a failure
        no more start, those running are awaited (none outlives the publication), and the
        first error is raised."""
        if len(calls) <= 1 or self.concurrency <= 1:
            for call in calls:
                await call()
            return
        slots = asyncio.Semaphore(self.concurrency)
        failed: list[BaseException] = []

        async def run(call: Callable[[], Awaitable[None]]) -> None:
            async with slots:
                if failed:
                    return
                try:
                    await call()
                except Exception as exc:
                    failed.append(exc)

        await asyncio.gather(*(run(call) for call in calls))
        if failed:
            raise failed[0]


def _devices_changed(doc: Mapping[str, Any], have: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether ``doc`` lists other devices than the listed slice of its name (not just
    another generation)."""
    old = have.get(doc["metadata"]["name"])
    if old is None:
        return True
    new_devices = [comparable_device(d) for d in doc["spec"].get("devices") or []]
    return new_devices != [comparable_device(d) for d in old["spec"].get("devices") or []]


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
        """``fn(*args, **kwargs)``'s answer (JSON), read and decoded in the worker thread:
        an answer left unread keeps its connection out of the pool, and every write then
        opened a new one (a TLS handshake each)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        def call() -> Any:
            answer = fn(*args, _request_timeout=self._timeout, _preload_content=False,
                        **kwargs)
            data = answer.data
            return json.loads(data) if data else None  # a delete may answer with no body

        try:
            return await in_daemon_thread(call)
        except ApiException as exc:
            raise SliceApiError(f"{what}: {exc.status} {exc.reason}", exc.status) from exc
        except (OSError, ValueError, HTTPError) as exc:  # connection errors are OSErrors
            raise SliceApiError(f"{what}: {failure_text(exc)}") from exc

    async def list(self, *, driver: str, node_name: str) -> list[dict[str, Any]]:
        selector = f"spec.nodeName={node_name},spec.driver={driver}"
        answer = await self._call(f"listing ResourceSlices ({selector})",
                                  self._api.list_resource_slice, field_selector=selector)
        try:
            items: list[dict[str, Any]] = answer["items"] or []
        except (KeyError, TypeError) as exc:
            raise SliceApiError(f"listing ResourceSlices ({selector}): bad answer: {exc}") from exc
        return items

    async def create(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        name = doc["metadata"]["name"]
        what = f"creating ResourceSlice {name}"
        return _stored(what, await self._call(what, self._api.create_resource_slice,
                                              JsonBody(doc)))

    async def replace(self, doc: Mapping[str, Any], resource_version: str) -> dict[str, Any]:
        # a new top level and metadata only: a deep copy of a slice of 128 devices costs
        # ~10-20 ms of the loop's CPU per slice, and the client only reads the body
        body = JsonBody(doc, metadata={**doc["metadata"], "resourceVersion": resource_version})
        name = body["metadata"]["name"]
        what = f"replacing ResourceSlice {name}"
        return _stored(what, await self._call(what, self._api.replace_resource_slice, name,
                                              body))

    async def delete(self, name: str) -> None:
        try:
            await self._call(f"deleting ResourceSlice {name}", self._api.delete_resource_slice,
                             name)
        except SliceApiError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise


def _stored(what: str, answer: Any) -> dict[str, Any]:
    """A write's answer, which must be the stored slice (the publisher replaces against its
    ``resourceVersion`` next time)."""
    if not isinstance(answer, dict) or "metadata" not in answer:
        raise SliceApiError(f"{what}: bad answer: not a ResourceSlice")
    return answer
