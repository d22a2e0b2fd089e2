"""Which devices the kubelet has assigned to running pods (``podresources.v1`` List).

The kubelet never tells a device plugin when a pod releases its devices; the pod resources
API is the supported way to ask. sriovdp asks only when a device it advertised has vanished
from the host, to decide whether to keep reporting it (Unhealthy, still in use) or drop it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from sriovdp.kubelet.api import podresources_pb2 as pb, podresources_pb2_grpc as pb_grpc

log = logging.getLogger("sriovdp.kubelet")

DEFAULT_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")


async def assigned_devices(socket: Path, *, timeout: float = 2.0) -> dict[str, set[str]] | None:
    """Resource name → device ids assigned to pods, from ``List`` on ``socket``.

    Returns:
        the map, or None when the API cannot be reached (socket missing, kubelet down,
        rate-limited), in which case the caller must assume devices may be in use.
    """
    if not socket.exists():
        return None
    try:
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            response = await pb_grpc.PodResourcesListerStub(channel).List(
                pb.ListPodResourcesRequest(), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        log.warning("pod resources API at %s unavailable: %s", socket, exc.code().name)
        return None
    out: dict[str, set[str]] = {}
    for pod in response.pod_resources:
        for container in pod.containers:
            for devices in container.devices:
                out.setdefault(devices.resource_name, set()).update(devices.device_ids)
    return out
