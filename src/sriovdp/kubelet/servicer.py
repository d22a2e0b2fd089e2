"""gRPC servicers of one pool's socket: translate protobuf ↔ model, hold no policy.

``DevicePluginServicer`` answers the kubelet's ``v1beta1.DevicePlugin`` calls from the pool's
:class:`~sriovdp.kubelet.feed.LatestValue`; the decisions (what a device allocation contains,
which devices to prefer) are the model's (:mod:`sriovdp.model.allocation`,
:mod:`sriovdp.model.preferred`). ``WatcherRegistrationServicer`` answers the kubelet plugin
watcher's ``pluginregistration.Registration`` calls on the same socket.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from sriovdp.errors import AllocationError
from sriovdp.kubelet.api import (
    deviceplugin_pb2 as pb,
    deviceplugin_pb2_grpc as pb_grpc,
    pluginregistration_pb2 as reg_pb,
    pluginregistration_pb2_grpc as reg_grpc,
)
from sriovdp.kubelet.feed import LatestValue
from sriovdp.model.allocation import AnswerCache, ContainerAllocation, allocate, distinct
from sriovdp.model.cdi import CdiError, cdi_allocation
from sriovdp.model.devices import HostFacts
from sriovdp.model.pools import ResourcePool
from sriovdp.model.preferred import plain_allocation, preferred_allocation

log = logging.getLogger("sriovdp.kubelet")

API_VERSION = "v1beta1"
WATCHER_SUPPORTED_VERSIONS = ("v1alpha1", "v1beta1")
OPTIONS = pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True)
"""What we tell the kubelet, both in ``RegisterRequest.options`` and GetDevicePluginOptions."""


_DEVICE_CACHE: dict[tuple[str, str, int | None], pb.Device] = {}


def _device_message(dev_id: str, health: str, numa_node: int | None) -> pb.Device:
    # A health flip of 256 VFs rebuilds the whole list; building protobuf messages is the
    # costly part (~4 us each), so messages are kept per (id, health, node) and reused.
    key = (dev_id, health, numa_node)
    message = _DEVICE_CACHE.get(key)
    if message is None:
        if len(_DEVICE_CACHE) > 65536:
            _DEVICE_CACHE.clear()
        topology = (pb.TopologyInfo(nodes=[pb.NUMANode(ID=numa_node)])
                    if numa_node is not None else None)
        message = _DEVICE_CACHE[key] = pb.Device(ID=dev_id, health=health, topology=topology)
    return message


def list_and_watch_response(pool: ResourcePool) -> pb.ListAndWatchResponse:
    """The full device list of a pool: ID, health and NUMA topology (unless unknown/excluded).

    A device whose id protobuf cannot carry (not valid UTF-8) is left out with an error log
    instead of failing the whole stream; the scanner should never produce one.
    """
    devices = []
    for dev in pool.devices.values():
        try:
            devices.append(_device_message(dev.id, dev.health, dev.numa_node))
        except (ValueError, TypeError) as exc:
            log.error("%r left out of %s: %s", dev.id, pool.resource_name, exc,
                      extra={"resource": pool.resource_name})
    return pb.ListAndWatchResponse(devices=devices)


_LIST_CACHE: dict[str, tuple[ResourcePool, pb.ListAndWatchResponse]] = {}


def pool_list(pool: ResourcePool) -> pb.ListAndWatchResponse:
    """:func:`list_and_watch_response`, built once per published pool value: pools are
    immutable, so the streams a kubelet restart opens again (8 pools of 256 devices: ~3 ms
    of the loop, in the restart's critical path) reuse the message of the unchanged pool.
    grpc only reads a message it sends."""
    cached = _LIST_CACHE.get(pool.resource_name)
    if cached is not None and cached[0] is pool:
        return cached[1]
    if len(_LIST_CACHE) > 4096:  # one entry per resource name; never reached by a config
        _LIST_CACHE.clear()
    response = list_and_watch_response(pool)
    _LIST_CACHE[pool.resource_name] = (pool, response)
    return response


def container_response(alloc: ContainerAllocation) -> pb.ContainerAllocateResponse:
    return pb.ContainerAllocateResponse(
        envs=dict(alloc.envs),
        devices=[
            pb.DeviceSpec(container_path=s.container_path, host_path=s.host_path,
                          permissions=s.permissions)
            for s in alloc.devices
        ],
        mounts=[
            pb.Mount(container_path=m.container_path, host_path=m.host_path,
                     read_only=m.read_only)
            for m in alloc.mounts
        ],
        annotations=dict(alloc.annotations),
        cdi_devices=[pb.CDIDevice(name=n) for n in alloc.cdi_devices],
    )


AllocateHook = Callable[[ResourcePool, list[str], bool], None]
"""Called after each container request of an Allocate with (pool, ids, succeeded)."""


class DevicePluginServicer(pb_grpc.DevicePluginServicer):
    """``v1beta1.DevicePlugin`` for one pool.

    Args:
        feed: the pool's current value; ListAndWatch streams every new value.
        facts: returns the host facts of the latest scan (``/dev/vhost-net`` present ...).
        on_stream_start: called when a ListAndWatch stream opens; returns the stream's id.
        on_stream_end: called with the stream's id when a ListAndWatch stream ends for any
            reason other than ``feed`` closing (the client went away). Whether that client
            was the kubelet is the endpoint's call, not the servicer's.
        on_sent: called with the stream's id after each device list was sent on it.
        on_allocate: called after each container request with the pool, the ids and
            whether it succeeded (device-info files, metrics).
        cdi: answer Allocate with CDI device names and the CDI annotation instead of device
            specs (``--use-cdi``).
    """

    def __init__(
        self,
        feed: LatestValue[ResourcePool],
        facts: Callable[[], HostFacts],
        *,
        on_stream_start: Callable[[], int] | None = None,
        on_stream_end: Callable[[int], None] | None = None,
        on_sent: Callable[[int], None] | None = None,
        on_allocate: AllocateHook | None = None,
        cdi: bool = False,
    ) -> None:
        self._feed = feed
        self._allocate = cdi_allocation if cdi else allocate
        self._answers = AnswerCache()
        self._facts = facts
        self._on_stream_start = on_stream_start
        self._on_stream_end = on_stream_end
        self._on_sent = on_sent
        self._on_allocate = on_allocate
        self.open_streams = 0
        self.delivered = False
        """A ListAndWatch message reached the kubelet through this server."""

    async def GetDevicePluginOptions(self, request: pb.Empty,
                                     context: Any) -> pb.DevicePluginOptions:
        return OPTIONS

    async def ListAndWatch(
        self, request: pb.Empty, context: Any
    ) -> AsyncIterator[pb.ListAndWatchResponse]:
        name = self._feed.value.resource_name
        log.info("ListAndWatch(%s) invoked", name, extra={"resource": name})
        self.open_streams += 1
        stream = self._on_stream_start() if self._on_stream_start is not None else 0
        closed_by_us = False
        try:
            async for pool in self._feed.watch():
                response = pool_list(pool)
                log.debug("ListAndWatch(%s): send %d devices", name, len(response.devices),
                          extra={"resource": name})
                yield response
                self.delivered = True  # resumed: the message was sent
                if self._on_sent is not None:
                    self._on_sent(stream)
            closed_by_us = True
        finally:
            self.open_streams -= 1
            if not closed_by_us and self._on_stream_end is not None:
                self._on_stream_end(stream)

    async def GetPreferredAllocation(
        self, request: pb.PreferredAllocationRequest, context: Any
    ) -> pb.PreferredAllocationResponse:
        """Never fails: odd requests get a best-effort list drawn from ``available``."""
        pool = self._feed.value
        responses = []
        for req in request.container_requests:
            available, must = req.available_deviceIDs, req.must_include_deviceIDs
            try:
                ids = preferred_allocation(pool, available, must, req.allocation_size)
            except Exception:  # a bug here must not fail the pod's admission
                log.exception("GetPreferredAllocation(%s): ranking failed; answering in "
                              "request order", pool.resource_name,
                              extra={"resource": pool.resource_name})
                ids = plain_allocation(available, must, req.allocation_size)
            responses.append(pb.ContainerPreferredAllocationResponse(deviceIDs=ids))
        return pb.PreferredAllocationResponse(container_responses=responses)

    async def Allocate(self, request: pb.AllocateRequest, context: Any) -> pb.AllocateResponse:
        """Answers from the pool's last published value; work is proportional to the
        distinct ids (a repeated id counts once), and each device's encoded part is reused
        from :class:`AnswerCache` while the device is unchanged."""
        pool = self._feed.value
        facts = self._facts()
        name = pool.resource_name
        responses = []
        for req in request.container_requests:
            ids = distinct(req.devices_ids)
            try:
                response = container_response(self._allocate(pool, ids, facts, self._answers))
                response.SerializeToString()  # surface encoding problems here, not in grpc
            except (AllocationError, CdiError) as exc:
                self._allocate_done(pool, ids, False)
                log.warning("Allocate(%s) refused: %s", name, exc, extra={"resource": name})
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                raise  # abort raises; this keeps type checkers honest
            except Exception as exc:  # never an UNKNOWN with a traceback for the kubelet
                self._allocate_done(pool, ids, False)
                log.exception("Allocate(%s) failed for %s", name, ids[:5],
                              extra={"resource": name})
                await context.abort(grpc.StatusCode.INTERNAL,
                                    f"allocating {ids[:5]} from {name}: {exc}")
                raise
            responses.append((ids, response))
        # only once every container request succeeded: a refused request leaves no trace
        for ids, _ in responses:
            joined = ",".join(ids)
            log.info("allocated %s from %s", joined, name,
                     extra={"resource": name, "pci": joined})
            self._allocate_done(pool, ids, True)
        return pb.AllocateResponse(container_responses=[r for _, r in responses])

    def _allocate_done(self, pool: ResourcePool, ids: list[str], ok: bool) -> None:
        if self._on_allocate is not None:
            self._on_allocate(pool, ids, ok)

    async def PreStartContainer(
        self, request: pb.PreStartContainerRequest, context: Any
    ) -> pb.PreStartContainerResponse:
        return pb.PreStartContainerResponse()


class WatcherRegistrationServicer(reg_grpc.RegistrationServicer):
    """``pluginregistration.Registration`` served beside the DevicePlugin service.

    Args:
        resource_name: e.g. ``intel.com/sriov_net``.
        endpoint: absolute socket path the kubelet dials for the DevicePlugin service (the
            host's path: the kubelet's mount namespace, not ours).
        on_status: called with (registered, error) from NotifyRegistrationStatus.
        on_info: called on every GetInfo (the plugin watcher starts registering us).
    """

    def __init__(
        self, resource_name: str, endpoint: str, on_status: Callable[[bool, str], None],
        on_info: Callable[[], None] | None = None,
    ) -> None:
        self._info = reg_pb.PluginInfo(
            type="DevicePlugin", name=resource_name, endpoint=endpoint,
            supported_versions=list(WATCHER_SUPPORTED_VERSIONS),
        )
        self._on_status = on_status
        self._on_info = on_info

    async def GetInfo(self, request: reg_pb.InfoRequest, context: Any) -> reg_pb.PluginInfo:
        if self._on_info is not None:
            self._on_info()
        return self._info

    async def NotifyRegistrationStatus(
        self, request: reg_pb.RegistrationStatus, context: Any
    ) -> reg_pb.RegistrationStatusResponse:
        self._on_status(request.plugin_registered, request.error)
        return reg_pb.RegistrationStatusResponse()
