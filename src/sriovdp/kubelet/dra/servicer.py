"""gRPC services of DRA mode: translate protobuf ↔ model, hold no policy.

* :class:`DraPluginServicer` — ``DRAPlugin`` (``v1`` and ``v1beta1``: the same messages in two
  proto packages; one instance per generated module) on ``dra.sock``; each claim is
  prepared by :class:`~sriovdp.kubelet.dra.preparer.ClaimPreparer`, claims of one call
  concurrently, and a claim that fails gets its ``error`` in the answer (never a failed
  call, which would fail every claim of the call).
* :class:`DraHealthServicer` — ``DRAResourceHealth.NodeWatchResources`` (``v1`` and
  ``v1alpha1``): the health of every device of the node when the stream opens and at least
  every ``resend`` seconds (the kubelet turns health it has not heard again within the
  health check timeout into Unknown), and in between, on a change, only the devices whose
  health changed (the kubelet merges a report into what it knows).
* :class:`DraRegistrationServicer` — ``pluginregistration.Registration`` on the plugin
  watcher's socket: type ``DRAPlugin``, name = the driver, endpoint = ``dra.sock``'s host
  path, and the services we serve, newest first, as ``<proto package>.<service>`` short
  names (the kubelet takes the first ``DRAPlugin`` version it knows and ignores names it
  does not know; kubelets 1.35+ pick the health service from the same list).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from sriovdp.errors import SriovdpError
from sriovdp.kubelet.api import (
    dra_v1_pb2,
    dra_v1_pb2_grpc,
    dra_v1beta1_pb2,
    dra_v1beta1_pb2_grpc,
    drahealth_v1_pb2,
    drahealth_v1_pb2_grpc,
    drahealth_v1alpha1_pb2,
    drahealth_v1alpha1_pb2_grpc,
    pluginregistration_pb2 as reg_pb,
    pluginregistration_pb2_grpc as reg_grpc,
)
from sriovdp.kubelet.dra.preparer import ClaimPreparer
from sriovdp.kubelet.feed import LatestValue
from sriovdp.model.dra.prepare import ClaimRef, PreparedDevice
from sriovdp.model.dra.slices import DraDevice
from sriovdp.model.health import Health

log = logging.getLogger("sriovdp.kubelet.dra")

PLUGIN_TYPE = "DRAPlugin"
DRA_SERVICES = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
HEALTH_SERVICES = ("v1.DRAResourceHealth", "v1alpha1.DRAResourceHealth")
PLUGIN_APIS: tuple[tuple[ModuleType, Any], ...] = (
    (dra_v1_pb2, dra_v1_pb2_grpc.add_DRAPluginServicer_to_server),
    (dra_v1beta1_pb2, dra_v1beta1_pb2_grpc.add_DRAPluginServicer_to_server),
)
HEALTH_APIS: tuple[tuple[ModuleType, Any], ...] = (
    (drahealth_v1_pb2, drahealth_v1_pb2_grpc.add_DRAResourceHealthServicer_to_server),
    (drahealth_v1alpha1_pb2,
     drahealth_v1alpha1_pb2_grpc.add_DRAResourceHealthServicer_to_server),
)


def _ref(claim: Any) -> ClaimRef:
    return ClaimRef(namespace=claim.namespace, name=claim.name, uid=claim.uid)


class DraPluginServicer:
    """``DRAPlugin`` of one API version (``pb`` is ``dra_v1_pb2`` or ``dra_v1beta1_pb2``)."""

    def __init__(self, preparer: ClaimPreparer, pb: ModuleType) -> None:
        self._preparer = preparer
        self._pb = pb

    def _device(self, d: PreparedDevice) -> Any:
        return self._pb.Device(request_names=list(d.request_names), pool_name=d.pool_name,
                               device_name=d.device_name, cdi_device_ids=list(d.cdi_device_ids))

    async def _prepare_one(self, claim: Any) -> Any:
        ref = _ref(claim)
        try:
            devices = await self._preparer.prepare(ref)
            return self._pb.NodePrepareResourceResponse(
                devices=[self._device(d) for d in devices])
        except SriovdpError as exc:
            log.warning("NodePrepareResources %s: %s", ref, exc)
            return self._pb.NodePrepareResourceResponse(error=str(exc))
        except Exception as exc:  # a per-claim error, never an UNKNOWN with a traceback
            log.exception("NodePrepareResources %s failed", ref)
            return self._pb.NodePrepareResourceResponse(error=f"preparing {ref}: {exc}")

    async def _unprepare_one(self, claim: Any) -> Any:
        ref = _ref(claim)
        try:
            await self._preparer.unprepare(ref)
            return self._pb.NodeUnprepareResourceResponse()
        except SriovdpError as exc:
            log.warning("NodeUnprepareResources %s: %s", ref, exc)
            return self._pb.NodeUnprepareResourceResponse(error=str(exc))
        except Exception as exc:
            log.exception("NodeUnprepareResources %s failed", ref)
            return self._pb.NodeUnprepareResourceResponse(error=f"unpreparing {ref}: {exc}")

    async def NodePrepareResources(self, request: Any, context: Any) -> Any:
        claims = list(request.claims)
        answers = await asyncio.gather(*(self._prepare_one(c) for c in claims))
        response = self._pb.NodePrepareResourcesResponse()
        for claim, answer in zip(claims, answers, strict=True):
            response.claims[claim.uid].CopyFrom(answer)
        return response

    async def NodeUnprepareResources(self, request: Any, context: Any) -> Any:
        claims = list(request.claims)
        answers = await asyncio.gather(*(self._unprepare_one(c) for c in claims))
        response = self._pb.NodeUnprepareResourcesResponse()
        for claim, answer in zip(claims, answers, strict=True):
            response.claims[claim.uid].CopyFrom(answer)
        return response


HEALTH_RESEND_SECONDS = 10.0
"""How often an unchanged health list is sent again; the stream names three times this as
each device's ``health_check_timeout_seconds`` (30 s, the kubelet's default)."""


class DraHealthServicer:
    """``DRAResourceHealth`` of one API version (``drahealth_v1_pb2`` or ``..._v1alpha1_pb2``).

    Each stream sends a full report (every device) when it opens, at least every ``resend``
    seconds, and whenever the set of devices changed; any other change of the feed sends
    only the devices whose health differs from what the stream last told (nothing if none
    does). The kubelet (1.34+) updates the devices a report names and keeps the others, so
    a short report is enough; a device no longer in the feed is simply not reported again
    and the kubelet turns it Unknown, then forgets it, after its health check timeout
    (``3 × resend``, above the full-report period, so a device still in the feed never
    times out between two full reports).

    Args:
        pool_name: this node's DRA pool.
        feed: the node's DRA devices; every published value is streamed (coalesced).
        resend: seconds between full reports (at most; keep it under 10 s for kubelets
            1.34, whose timeout is a fixed 30 s).
        clock: Unix time in seconds for ``last_updated_time``.
    """

    def __init__(
        self,
        pool_name: str,
        feed: LatestValue[Mapping[str, DraDevice]],
        pb: ModuleType,
        *,
        resend: float = HEALTH_RESEND_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool_name = pool_name
        self._feed = feed
        self._pb = pb
        self._resend = resend
        self._timeout = math.ceil(3 * resend)
        self._clock = clock

    def _health(self, device: DraDevice) -> int:
        return int(self._pb.UNHEALTHY if device.device.health == Health.UNHEALTHY
                   else self._pb.HEALTHY)

    def response(self, devices: Mapping[str, DraDevice],
                 only: Sequence[str] | None = None) -> Any:
        """The health list of ``devices`` (or of the names in ``only``)."""
        pb = self._pb
        now = int(self._clock())
        out = pb.NodeWatchResourcesResponse()
        # filled in place: keyword-built messages (a DeviceIdentifier then copied into each
        # DeviceHealth) took ~12 ms for 2,048 devices, on the health path; this ~3 ms
        add = out.devices.add
        for name in devices if only is None else only:
            entry = add(health=self._health(devices[name]), last_updated_time=now,
                        health_check_timeout_seconds=self._timeout)
            entry.device.pool_name = self._pool_name
            entry.device.device_name = name
        return out

    async def NodeWatchResources(self, request: Any, context: Any) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        updates = self._feed.watch()
        devices: Mapping[str, DraDevice] | None = None
        told: dict[str, int] | None = None  # device name → health this stream last sent
        last: Mapping[str, DraDevice] = {}  # the feed's value this stream last looked at
        full_due = 0.0  # loop time of the next full report
        pending = asyncio.ensure_future(anext(updates))
        try:
            while True:
                timeout = None if told is None else max(0.0, full_due - loop.time())
                done, _ = await asyncio.wait({pending}, timeout=timeout)
                if done:
                    try:
                        devices = pending.result()
                    except StopAsyncIteration:  # the feed was closed
                        return
                    pending = asyncio.ensure_future(anext(updates))
                if devices is None:
                    continue
                if told is None or not done or devices.keys() != told.keys():
                    told = {name: self._health(d) for name, d in devices.items()}
                    last = devices
                    yield self.response(devices)
                    full_due = loop.time() + self._resend
                    continue
                # an entry that is the same object as last time has not changed (the feed
                # rebuilds only the entries of changed pools): only the others are compared
                changed = [name for name, d in devices.items()
                           if d is not last[name] and told[name] != self._health(d)]
                last = devices
                if changed:
                    told.update((name, self._health(devices[name])) for name in changed)
                    yield self.response(devices, changed)
        finally:
            pending.cancel()


class DraRegistrationServicer(reg_grpc.RegistrationServicer):
    """``pluginregistration.Registration`` for the plugin watcher.

    Args:
        driver: the driver name (the plugin's name).
        endpoint: host path of ``dra.sock``, e.g.
            ``/var/lib/kubelet/plugins/sriov.network.k8s.io/dra.sock``.
        services: the short service names served on it, newest first.
        on_status: called with (registered, error) from NotifyRegistrationStatus.
    """

    def __init__(
        self,
        driver: str,
        endpoint: str,
        *,
        services: Sequence[str] = DRA_SERVICES + HEALTH_SERVICES,
        on_status: Callable[[bool, str], None] | None = None,
    ) -> None:
        self._info = reg_pb.PluginInfo(type=PLUGIN_TYPE, name=driver, endpoint=endpoint,
                                       supported_versions=list(services))
        self._on_status = on_status

    async def GetInfo(self, request: reg_pb.InfoRequest, context: Any) -> reg_pb.PluginInfo:
        return self._info

    async def NotifyRegistrationStatus(
        self, request: reg_pb.RegistrationStatus, context: Any
    ) -> reg_pb.RegistrationStatusResponse:
        if request.plugin_registered:
            log.info("DRA plugin %s registered with the kubelet", self._info.name)
        else:
            log.error("the kubelet refused DRA plugin %s: %s", self._info.name, request.error)
        if self._on_status is not None:
            self._on_status(request.plugin_registered, request.error)
        return reg_pb.RegistrationStatusResponse()


def add_dra_services(
    server: Any,
    preparer: ClaimPreparer,
    health: LatestValue[Mapping[str, DraDevice]] | None = None,
    *,
    health_resend: float = HEALTH_RESEND_SECONDS,
) -> tuple[str, ...]:
    """Add ``DRAPlugin`` v1 and v1beta1 (and, with ``health``, ``DRAResourceHealth`` v1 and
    v1alpha1, a full report at least every ``health_resend`` seconds) to a ``grpc.aio``
    server; returns the short names to register with."""
    for pb, add in PLUGIN_APIS:
        add(DraPluginServicer(preparer, pb), server)
    if health is None:
        return DRA_SERVICES
    for pb, add in HEALTH_APIS:
        add(DraHealthServicer(preparer.pool_name, health, pb, resend=health_resend), server)
    return DRA_SERVICES + HEALTH_SERVICES
