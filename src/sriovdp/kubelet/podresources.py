"""What pods hold, from the kubelet's pod resources API (``podresources.v1`` List).

The kubelet never tells a device plugin when a pod releases its devices; the pod resources
API is the supported way to ask. This adapter answers "resource name → device ids held" or
raises :class:`PodResourcesError`: a failed call (``RESOURCE_EXHAUSTED`` from the kubelet's
rate limit, ``UNAVAILABLE``, a timeout, no socket) is never an empty answer, because an
empty answer would release every hold.

Before Kubernetes 1.34 List also reports pods that have terminated but are not yet deleted
(kubernetes #119423): their devices stay held until the pod object goes.

A kubelet that has just started serves List before its pod manager has the API server's
pods: for that while List lists none of them, although its device manager still assigns
their devices. An answer that lacks the daemon's own pod (when it runs as one: ``own_pod``)
is such an early answer, and raises ``INCOMPLETE`` instead of releasing every hold.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import grpc

from sriovdp.kubelet.api import podresources_pb2 as pb, podresources_pb2_grpc as pb_grpc

log = logging.getLogger("sriovdp.kubelet")


class PodResourcesError(Exception):
    """The pod resources API did not answer; ``code`` names why, e.g. ``"UNAVAILABLE"``."""

    def __init__(self, code: str, detail: str = "", *, absent: bool = False) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.absent = absent
        """No socket to ask (the API is not mounted), as opposed to a failing call."""


class PodResources(Protocol):
    """The port: what pods hold. Implementations: :class:`PodResourcesClient`,
    :class:`sriovdp.testing.podresources.FakePodResources`."""

    async def held(self) -> dict[str, frozenset[str]]:
        """Resource name → device ids pods hold.

        Raises:
            PodResourcesError: the kubelet could not be asked.
        """
        ...


class PodResourcesClient:
    """:class:`PodResources` over the kubelet's unix socket.

    Args:
        socket: ``<kubelet root>/pod-resources/kubelet.sock``.
        timeout: seconds for one List call.
        own_pod: ``(namespace, name)`` of the pod this daemon runs in (the downward API's
            ``POD_NAMESPACE``/``POD_NAME``); an answer without it is incomplete. None: not
            run as a pod, every answer is taken as complete.
    """

    def __init__(self, socket: Path, *, timeout: float = 2.0,
                 own_pod: tuple[str, str] | None = None) -> None:
        self.socket = socket
        self.timeout = timeout
        self.own_pod = own_pod

    async def held(self) -> dict[str, frozenset[str]]:
        if not self.socket.exists():
            raise PodResourcesError("UNAVAILABLE", f"{self.socket} does not exist",
                                    absent=True)
        try:
            async with grpc.aio.insecure_channel(f"unix://{self.socket}") as channel:
                response = await pb_grpc.PodResourcesListerStub(channel).List(
                    pb.ListPodResourcesRequest(), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise PodResourcesError(exc.code().name, exc.details() or "") from None
        if self.own_pod is not None and not any(
                (pod.namespace, pod.name) == self.own_pod for pod in response.pod_resources):
            raise PodResourcesError(
                "INCOMPLETE", f"the answer lists {len(response.pod_resources)} pods but not "
                f"this daemon's own pod {'/'.join(self.own_pod)}: the kubelet has not got its "
                "pods from the API server yet (or POD_NAMESPACE/POD_NAME are wrong)")
        out: dict[str, set[str]] = {}
        for pod in response.pod_resources:
            for container in pod.containers:
                for devices in container.devices:
                    out.setdefault(devices.resource_name, set()).update(devices.device_ids)
        return {name: frozenset(ids) for name, ids in out.items()}


async def assigned_devices(socket: Path, *, timeout: float = 2.0) -> dict[str, set[str]] | None:
    """Resource name → device ids held, or None when the API cannot be reached."""
    try:
        held = await PodResourcesClient(socket, timeout=timeout).held()
    except PodResourcesError as exc:
        log.warning("pod resources API at %s unavailable: %s", socket, exc.code)
        return None
    return {name: set(ids) for name, ids in held.items()}
