"""KubeletEmulator: the kubelet's device manager, emulated over real unix sockets.

The emulator is what a device plugin talks to in tests. It follows the kubelet's
behaviour as written down in ``kubelet-protocol.md`` (kubelet >= 1.25):

* **Socket-API registration (§2.1).** ``v1beta1.Registration`` is served on
  ``<device_plugin_dir>/kubelet.sock``. ``Register`` checks the version and the
  extended resource name, dials the plugin endpoint (blocking, 10 s), calls
  ``GetDevicePluginOptions`` once, stores *those* options (``RegisterRequest.options``
  is ignored like the kubelet does), starts reading ``ListAndWatch`` and only then
  returns. Errors reach the plugin as gRPC ``UNKNOWN`` with the kubelet's text.
* **Plugin-watcher registration (§2.6)**, with ``watcher=True``: new sockets in
  ``plugins_registry_dir`` are found through inotify and registered with
  ``GetInfo`` → validation → connect → ``NotifyRegistrationStatus``. A ``DRAPlugin``
  answer goes to the DRA manager's handler instead: its supported services are checked,
  the plugin is recorded in :attr:`KubeletEmulator.dra_plugins` (the ``dra.sock`` is not
  dialled, nor its health stream opened: the DRA side is :class:`~sriovdp.testing.dra.
  DraKubelet`'s and the DRA conformance peer's) and removed when its socket goes.
* **ListAndWatch (§3).** Every message is recorded in :attr:`KubeletEmulator.streams`;
  each one replaces the resource's device sets. When a stream ends the resource's
  healthy devices turn unhealthy, the endpoint is marked stopped and nothing is
  re-dialled; after the 5-minute grace period the resource reads ``0/0``.
* **Node status (§3.2)**: :meth:`KubeletEmulator.capacity` is one node-status sync.
* **Pod admission (§4)**: :meth:`KubeletEmulator.admit` selects devices like
  ``devicesToAllocate`` (optionally asking ``GetPreferredAllocation``), calls
  ``Allocate`` and records the allocation; :meth:`KubeletEmulator.start_container`
  runs ``PreStartContainer`` when the plugin asks for it and merges the responses.
* **Kubelet restart (§6)**: :meth:`KubeletEmulator.restart` drops every connection,
  restores the allocations and registered resource names from the checkpoint file,
  deletes every unix socket in ``device_plugin_dir`` and serves a fresh ``kubelet.sock``.

Example::

    async with KubeletEmulator(tmp / "device-plugins") as kubelet:
        await start_my_plugin()
        await kubelet.wait_for("intel.com/sriov", lambda devs: len(devs) == 4)
        assert kubelet.capacity("intel.com/sriov") == (4, 4)
        allocation = await kubelet.admit("intel.com/sriov", 1)

Where the kubelet iterates a Go set or map (random order), the emulator uses a
deterministic order instead (sorted ids, or the order the plugin sent); this is noted
at each such place.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import posixpath
import re
import stat
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import grpc
from asyncinotify import Inotify, Mask

from sriovdp.kubelet.api import (
    deviceplugin_pb2,
    deviceplugin_pb2_grpc,
    pluginregistration_pb2,
    pluginregistration_pb2_grpc,
    podresources_pb2,
    podresources_pb2_grpc,
)

__all__ = [
    "API_VERSION",
    "CHECKPOINT_FILE_NAME",
    "DEVICE_PLUGIN_TYPE",
    "DRA_PLUGIN_TYPE",
    "ENDPOINT_STOP_GRACE_PERIOD",
    "WATCHER_RECONCILE_PERIOD",
    "HEALTHY",
    "KUBELET_SOCKET_NAME",
    "AdmissionError",
    "ContainerAllocation",
    "ContainerConfig",
    "ContainerStartError",
    "DeviceRecord",
    "DraPluginRecord",
    "EmulatorClock",
    "KubeletEmulator",
    "KubeletEmulatorError",
    "PluginOptions",
    "Registration",
    "RegistrationMode",
    "RpcCall",
    "is_extended_resource_name",
]

_log = logging.getLogger(__name__)

API_VERSION: Final = "v1beta1"
"""The only device plugin API version the kubelet supports (``SupportedVersions``)."""
SUPPORTED_VERSIONS: Final = (API_VERSION,)
KUBELET_SOCKET_NAME: Final = "kubelet.sock"
CHECKPOINT_FILE_NAME: Final = "kubelet_internal_checkpoint"
DEPRECATION_FILE_NAME: Final = "DEPRECATION"
HEALTHY: Final = "Healthy"
"""A device is healthy iff its ``health`` is exactly this string."""
DEVICE_PLUGIN_TYPE: Final = "DevicePlugin"
"""``PluginInfo.type`` the plugin watcher routes to the device manager."""
DRA_PLUGIN_TYPE: Final = "DRAPlugin"
"""``PluginInfo.type`` the plugin watcher routes to the DRA manager."""
DRA_SERVICES: Final = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
"""The ``DRAPlugin`` services the kubelet (1.37) can call, newest first."""
DRA_HEALTH_SERVICES: Final = ("v1.DRAResourceHealth", "v1alpha1.DRAResourceHealth")
"""The optional ``DRAResourceHealth`` services it can watch, newest first."""
ENDPOINT_STOP_GRACE_PERIOD: Final = 300.0
"""Seconds a stopped endpoint keeps its resource before it is removed (``0/0``)."""
DIAL_TIMEOUT: Final = 10.0
GET_INFO_TIMEOUT: Final = 1.0
PRE_START_TIMEOUT: Final = 30.0
_NO_TOPOLOGY: Final = -1
"""The fake NUMA node the checkpoint files devices without topology under."""
_WATCHER_BACKOFF_MAX: Final = 122.0
"""Cap of the plugin manager's exponential retry back-off (2 min 2 s)."""
WATCHER_RECONCILE_PERIOD: Final = 1.0
"""The plugin manager's reconciler loop (``loopSleepDuration``): sockets are registered and
deregistered on its passes, the first at start, then one pass a second after the last."""

RegistrationMode = Literal["socket", "watcher"]
"""How a plugin registered: ``Register`` on ``kubelet.sock`` or the plugin watcher."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class PluginOptions:
    """``DevicePluginOptions`` as the kubelet keeps them for an endpoint."""

    pre_start_required: bool = False
    """Call ``PreStartContainer`` before every container start."""
    get_preferred_allocation_available: bool = False
    """Call ``GetPreferredAllocation`` during admission."""

    @classmethod
    def from_proto(cls, options: deviceplugin_pb2.DevicePluginOptions) -> PluginOptions:
        return cls(options.pre_start_required, options.get_preferred_allocation_available)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One ``Device`` of a ListAndWatch message."""

    id: str
    """``Device.ID``, e.g. ``"0000:3b:02.1"``."""
    health: str
    """``Device.health`` exactly as sent, e.g. ``"Healthy"``."""
    numa_nodes: tuple[int, ...] = ()
    """``Device.topology.nodes[].ID`` in message order; ``()`` when there is no topology."""

    @property
    def healthy(self) -> bool:
        """What the kubelet concludes: healthy iff ``health == "Healthy"``."""
        return self.health == HEALTHY

    @classmethod
    def from_proto(cls, device: deviceplugin_pb2.Device) -> DeviceRecord:
        nodes = tuple(n.ID for n in device.topology.nodes) if device.HasField("topology") else ()
        return cls(device.ID, device.health, nodes)


@dataclass(frozen=True, slots=True)
class Registration:
    """One registration attempt: a ``Register`` call, or a plugin-watcher ``GetInfo`` answer."""

    resource: str
    """``RegisterRequest.resource_name`` / ``PluginInfo.name``, e.g. ``"intel.com/sriov"``."""
    endpoint: str
    """The endpoint exactly as the plugin sent it, e.g. ``"intel.com_sriov.sock"``."""
    socket_path: str
    """The path the kubelet dials, e.g.
    ``"/var/lib/kubelet/device-plugins/intel.com_sriov.sock"``."""
    version: str
    """``RegisterRequest.version``; in watcher mode ``"v1beta1"`` if supported, else ``""``."""
    options: PluginOptions | None
    """What ``GetDevicePluginOptions`` returned (the options the kubelet uses); ``None`` if
    the sequence failed before that call."""
    accepted: bool
    """The kubelet registered the plugin."""
    error: str | None
    """The kubelet's error text when not accepted."""
    mode: RegistrationMode = "socket"
    requested_options: PluginOptions | None = None
    """``RegisterRequest.options`` (ignored by the kubelet); ``None`` when unset or in
    watcher mode."""
    supported_versions: tuple[str, ...] = ()
    """``PluginInfo.supported_versions`` (watcher mode) or ``(version,)``."""
    plugin_type: str = DEVICE_PLUGIN_TYPE
    """``PluginInfo.type`` (watcher mode); always ``"DevicePlugin"`` in socket mode."""


@dataclass(frozen=True, slots=True)
class DraPluginRecord:
    """A DRA plugin as the kubelet's DRA manager keeps it after a plugin-watcher
    registration."""

    driver: str
    """``PluginInfo.name``: the DRA driver, e.g. ``"sriov.network.k8s.io"``."""
    endpoint: str
    """Where the DRA manager calls the plugin (``PluginInfo.endpoint``, or the registration
    socket when empty), e.g. ``".../plugins/sriov.network.k8s.io/dra.sock"``."""
    socket_path: str
    """The registration socket in ``plugins_registry``."""
    service: str
    """The ``DRAPlugin`` service chosen: the first of ``PluginInfo.supported_versions``
    the kubelet knows (:data:`DRA_SERVICES`)."""
    health_service: str = ""
    """The ``DRAResourceHealth`` service the kubelet would watch (the newest of
    :data:`DRA_HEALTH_SERVICES` the plugin lists); ``""`` when it lists none."""


@dataclass(frozen=True, slots=True)
class ContainerAllocation:
    """Devices the kubelet allocated to one container for one resource."""

    pod: str
    container: str
    resource: str
    device_ids: tuple[str, ...]
    """The ids sent in ``Allocate``, in the order the emulator chose them."""
    response: deviceplugin_pb2.ContainerAllocateResponse
    """``AllocateResponse.container_responses[0]``, as cached by the kubelet."""
    preferred: tuple[str, ...] | None = None
    """What ``GetPreferredAllocation`` answered; ``None`` when it was not called."""


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """What the runtime would get for a container: the merged Allocate responses (§5.2)."""

    envs: dict[str, str]
    mounts: tuple[deviceplugin_pb2.Mount, ...]
    devices: tuple[deviceplugin_pb2.DeviceSpec, ...]
    annotations: dict[str, str]
    cdi_devices: tuple[str, ...]


class RpcCall(NamedTuple):
    """One call the emulator made to a plugin."""

    resource: str
    """Resource name; for ``GetInfo`` the registry socket path (the name is not known yet)."""
    method: str
    """``GetDevicePluginOptions``, ``ListAndWatch``, ``GetPreferredAllocation``, ``Allocate``,
    ``PreStartContainer``, ``GetInfo`` or ``NotifyRegistrationStatus``."""


class KubeletEmulatorError(Exception):
    """Base of the errors the emulator raises for kubelet-side failures."""

    def __init__(self, error: str, message: str | None = None) -> None:
        self.error = error
        """The kubelet's error text, e.g. ``"cannot allocate unregistered device x.io/y"``."""
        super().__init__(message if message is not None else error)


class AdmissionError(KubeletEmulatorError):
    """Pod admission failed (§4.5); ``str()`` is the pod status message."""

    reason: str = "UnexpectedAdmissionError"
    """The pod status reason."""

    def __init__(self, error: str) -> None:
        super().__init__(error, f"Allocate failed due to {error}, which is unexpected")


class ContainerStartError(KubeletEmulatorError):
    """``PreStartContainer`` failed, so the container could not start (§5.1)."""


class EmulatorClock:
    """Monotonic seconds: a base clock plus an offset that :meth:`advance` moves forward.

    The default base is :func:`time.monotonic`, so time also passes for real; pass
    ``base=lambda: 0.0`` for a clock that moves only when advanced.
    """

    def __init__(self, base: Callable[[], float] = time.monotonic) -> None:
        self._base = base
        self._offset = 0.0

    def now(self) -> float:
        return self._base() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot move the clock backwards ({seconds} s)")
        self._offset += seconds


# ------------------------------------------------------------- kubelet string helpers

_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def is_extended_resource_name(name: str) -> bool:
    """The kubelet's ``v1helper.IsExtendedResourceName`` (§2.3).

    ``nvidia.com/gpu`` and ``example.com/Foo_1.x`` pass; ``gpu``, ``kubernetes.io/gpu``,
    ``foo.kubernetes.io/x``, ``Example.com/gpu``, ``a/b/c`` and ``example.com/-x`` do not.
    """
    if "/" not in name or "kubernetes.io/" in name or name.startswith("requests."):
        return False
    parts = f"requests.{name}".split("/")
    if len(parts) != 2:
        return False
    prefix, short = parts
    if not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix):
        return False
    return 0 < len(short) <= 63 and bool(_QUALIFIED_NAME.fullmatch(short))


def _go_quote(text: str) -> str:
    """Close enough to Go's ``%q`` for the error texts."""
    return json.dumps(text, ensure_ascii=False)


def _go_quote_list(items: Sequence[str]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(_go_quote(i) for i in items) + "]"


def _registration_version(plugin_type: str, versions: Sequence[str]) -> str:
    """:attr:`Registration.version` of a watcher registration: ``v1beta1`` for a device
    plugin that supports it, the chosen ``DRAPlugin`` service for a DRA plugin."""
    if plugin_type == DRA_PLUGIN_TYPE:
        return next((v for v in versions if v in DRA_SERVICES), "")
    return API_VERSION if API_VERSION in versions else ""


def _go_rpc_error(exc: grpc.aio.AioRpcError) -> str:
    """How a grpc-go client error prints: ``rpc error: code = Unknown desc = ...``."""
    code = exc.code()
    go_name = (
        "Canceled"
        if code is grpc.StatusCode.CANCELLED
        else ("".join(part.capitalize() for part in code.name.split("_")))
    )
    return f"rpc error: code = {go_name} desc = {exc.details()}"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return _go_rpc_error(exc)
    if isinstance(exc, TimeoutError):
        return "context deadline exceeded"
    return str(exc) or type(exc).__name__


# ------------------------------------------------------------------- internal state


@dataclass(eq=False)
class _Endpoint:
    """A connection to one plugin endpoint (the kubelet's client + endpointImpl)."""

    resource: str
    socket_path: str
    channel: grpc.aio.Channel | None
    options: PluginOptions | None
    stop_time: float | None = None
    reader: asyncio.Task[None] | None = None
    disconnected: bool = False

    @property
    def stub(self) -> deviceplugin_pb2_grpc.DevicePluginStub:
        assert self.channel is not None
        return deviceplugin_pb2_grpc.DevicePluginStub(self.channel)  # type: ignore[no-untyped-call]

    @property
    def stopped(self) -> bool:
        return self.stop_time is not None

    def stopped_error(self) -> str:
        # The kubelet prints the endpoint struct with %v; this keeps the shape readable.
        return f"endpoint {self.resource} ({self.socket_path}) has been stopped"


class _PodResourcesServicer(podresources_pb2_grpc.PodResourcesListerServicer):
    """``v1.PodResourcesLister/List`` from the emulator's allocations (one entry per device)."""

    def __init__(self, emulator: KubeletEmulator) -> None:
        self._emulator = emulator

    async def List(  # noqa: N802 (gRPC method name)
        self, request: podresources_pb2.ListPodResourcesRequest, context: Any
    ) -> podresources_pb2.ListPodResourcesResponse:
        self._emulator.pod_resources_calls += 1
        failure = self._emulator.pod_resources_failure
        if failure is not None:
            await context.abort(failure, f"emulated pod resources failure: {failure.name}")
        pods: dict[str, dict[str, list[podresources_pb2.ContainerDevices]]] = {}
        for allocation in self._emulator.allocations():
            containers = pods.setdefault(allocation.pod, {})
            devices = containers.setdefault(allocation.container, [])
            for device_id in allocation.device_ids:
                devices.append(podresources_pb2.ContainerDevices(
                    resource_name=allocation.resource, device_ids=[device_id]))
        return podresources_pb2.ListPodResourcesResponse(pod_resources=[
            podresources_pb2.PodResources(name=pod, namespace="default", containers=[
                podresources_pb2.ContainerResources(name=c, devices=d)
                for c, d in sorted(containers.items())])
            for pod, containers in sorted(pods.items())
        ])


class _RejectedError(Exception):
    """A kubelet-side failure inside the emulator; ``str()`` is the kubelet's text."""


@dataclass(eq=False)
class _RegistryWatcher:
    """The plugin manager's desired/actual state of ``plugins_registry`` (§2.6)."""

    inotify: Inotify
    desired: dict[str, int] = field(default_factory=dict)
    """Socket path → generation (bumped when the socket is created again)."""
    actual: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    """Socket path → (generation, plugin name, endpoint) registered with the handler."""
    inflight: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    retry: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Socket path → (loop time of the next attempt, current back-off)."""
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    generation: int = 0


class _RegistrationServicer(deviceplugin_pb2_grpc.RegistrationServicer):
    def __init__(self, emulator: KubeletEmulator) -> None:
        self._emulator = emulator

    async def Register(  # noqa: N802 - gRPC method name
        self, request: deviceplugin_pb2.RegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> deviceplugin_pb2.Empty:
        # grpc.aio runs each call in its own task and server.stop() does not wait for it.
        self._emulator._track_rpc_task()
        error = await self._emulator._handle_register(request)
        if error is not None:
            await context.abort(grpc.StatusCode.UNKNOWN, error)
        return deviceplugin_pb2.Empty()


# ----------------------------------------------------------------------- the emulator


class KubeletEmulator:
    """The kubelet device manager, serving and dialling real unix sockets.

    Args:
        device_plugin_dir: the kubelet's ``/var/lib/kubelet/device-plugins``; created if
            missing. ``kubelet.sock`` and the checkpoint live here.
        plugins_registry_dir: the kubelet's ``/var/lib/kubelet/plugins_registry``; created
            if missing. Required when ``watcher`` is true.
        watcher: also run the plugin watcher on ``plugins_registry_dir``.
        dial_timeout: the blocking-dial timeout of the kubelet (10 s).
        grace_period: ``endpointStopGracePeriod`` (5 min).
        clock: the clock for stop times and the grace period; ``advance()`` moves it.
        watcher_retry: first back-off (seconds) before the plugin watcher retries a
            socket whose registration failed; doubles up to 2 min 2 s.
        watcher_period: the plugin manager's reconciler period (1 s): a socket that
            appears, or whose registration failed, is (re-)registered on a later pass.
        deprecation_file: create ``device_plugin_dir/DEPRECATION`` like
            ``server.GetPluginHandler()`` does (the production kubelet does not).

    Resource handling:
        Use as ``async with``. Entering starts the kubelet (§6 steps 1–3: read the
        checkpoint, delete every socket in ``device_plugin_dir``, serve ``kubelet.sock``,
        then scan the registry in watcher mode). Exiting cancels every task, closes every
        connection and removes ``kubelet.sock``.

    Records (kept across :meth:`restart`):
        ``registrations``, ``streams``, ``rpc_log``, ``watcher_errors``.
    """

    def __init__(
        self,
        device_plugin_dir: Path,
        plugins_registry_dir: Path | None = None,
        *,
        watcher: bool = False,
        dial_timeout: float = DIAL_TIMEOUT,
        grace_period: float = ENDPOINT_STOP_GRACE_PERIOD,
        clock: EmulatorClock | None = None,
        watcher_retry: float = 0.5,
        watcher_period: float = WATCHER_RECONCILE_PERIOD,
        deprecation_file: bool = False,
        pod_resources_socket: Path | None = None,
    ) -> None:
        if watcher and plugins_registry_dir is None:
            raise ValueError("watcher mode needs plugins_registry_dir")
        self.device_plugin_dir = Path(device_plugin_dir)
        self.plugins_registry_dir = (
            None if plugins_registry_dir is None else Path(plugins_registry_dir)
        )
        self.watcher = watcher
        self.dial_timeout = dial_timeout
        self.grace_period = grace_period
        self.clock = clock if clock is not None else EmulatorClock()
        self.watcher_retry = watcher_retry
        self.watcher_period = watcher_period
        self.deprecation_file = deprecation_file
        self.pod_resources_socket = pod_resources_socket
        """Where ``v1.PodResourcesLister/List`` is served (kubelet-protocol §10); None: not."""
        self.pod_resources_calls = 0
        """How many ``List`` calls the pod resources server answered (or refused)."""
        self.pod_resources_failure: grpc.StatusCode | None = None
        """While set, ``List`` fails with this code (see :meth:`fail_pod_resources`)."""

        self.registrations: list[Registration] = []
        self.received_at: defaultdict[str, list[float]] = defaultdict(list)
        """``time.perf_counter()`` at which each ListAndWatch message arrived (benches)."""
        """Every registration attempt, in order (socket and watcher mode)."""
        self.streams: defaultdict[str, list[list[DeviceRecord]]] = defaultdict(list)
        """Resource → every ListAndWatch message received, in order."""
        self.rpc_log: list[RpcCall] = []
        """Every RPC the emulator made to a plugin, in order (Register is not here)."""
        self.watcher_errors: list[tuple[str, str]] = []
        """Plugin-watcher attempts that failed before ``GetInfo`` answered: (socket, error)."""
        self.dra_plugins: dict[str, list[DraPluginRecord]] = {}
        """The DRA manager's registered plugins: driver → instances in registration order
        (two during a rolling update); emptied by a restart (a new DRA manager)."""

        # The device manager's maps (manager.go), rebuilt on every (re)start.
        self._endpoints: dict[str, _Endpoint] = {}
        self._healthy: dict[str, set[str]] = {}
        self._unhealthy: dict[str, set[str]] = {}
        self._all: dict[str, dict[str, DeviceRecord]] = {}
        self._allocations: dict[tuple[str, str, str], ContainerAllocation] = {}
        # node.status, which outlives kubelet restarts.
        self._node_capacity: dict[str, int] = {}
        self._node_allocatable: dict[str, int] = {}

        self._connections: set[_Endpoint] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rpc_tasks: set[asyncio.Task[Any]] = set()
        self._server: grpc.aio.Server | None = None
        self._registry: _RegistryWatcher | None = None
        self._reject_next: str | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._records: dict[bytes, tuple[DeviceRecord, ...]] = {}

    # ------------------------------------------------------------------ paths

    @property
    def kubelet_socket(self) -> Path:
        """``<device_plugin_dir>/kubelet.sock``."""
        return self.device_plugin_dir / KUBELET_SOCKET_NAME

    @property
    def checkpoint_path(self) -> Path:
        """``<device_plugin_dir>/kubelet_internal_checkpoint``."""
        return self.device_plugin_dir / CHECKPOINT_FILE_NAME

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> KubeletEmulator:
        await self._start(restarting=False)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.kubelet_socket.lstat().st_mode):
                self.kubelet_socket.unlink()

    async def restart(self, downtime: float = 0.0, *, exit_lag: float = 0.0) -> None:
        """Restart the kubelet (§6).

        Closes every plugin connection and stream (the plugin sees its ListAndWatch
        cancelled); with ``exit_lag``, the old ``kubelet.sock`` still accepts connections
        for that many seconds after the streams ended and the plugin watcher stopped, as
        when a real kubelet process exits (its files close one by one: the conformance
        suite saw a connect to the dying kubelet's socket succeed after its streams had
        ended). Then waits ``downtime`` seconds and starts again: allocations and the
        registered resource names come back from the checkpoint with empty device sets
        and stopped endpoints (so they read ``0/0`` until the plugin registers again),
        every unix socket in ``device_plugin_dir`` is deleted (plugin sockets and the old
        ``kubelet.sock``; not the checkpoint, other files or directories) and a fresh
        ``kubelet.sock`` is served. In watcher mode the registry is scanned again and
        every socket there is registered anew.
        """
        await self._stop(exit_lag=exit_lag)
        if downtime > 0:
            await asyncio.sleep(downtime)
        await self._start(restarting=True)

    async def disconnect(self, resource: str) -> None:
        """End ``resource``'s ListAndWatch stream from the kubelet's side (F11).

        Sockets are left alone; the kubelet marks the devices unhealthy and, like the real
        one, never dials again: the plugin has to notice and register again.
        """
        endpoint = self._endpoints.get(resource)
        if endpoint is None:
            raise LookupError(f"no endpoint for {resource}")
        await self._disconnect(endpoint, plugin_disconnected=True)

    async def _start(self, *, restarting: bool) -> None:
        self.dra_plugins = {}
        self.device_plugin_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        if self.plugins_registry_dir is not None:
            self.plugins_registry_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        self._restore_from_checkpoint(restarting=restarting)
        self._cleanup_plugin_directory()
        if self.deprecation_file:
            (self.device_plugin_dir / DEPRECATION_FILE_NAME).touch()
        server = grpc.aio.server()
        deviceplugin_pb2_grpc.add_RegistrationServicer_to_server(  # type: ignore[no-untyped-call]
            _RegistrationServicer(self), server
        )
        server.add_insecure_port(f"unix:{self.kubelet_socket}")
        if self.pod_resources_socket is not None:
            self.pod_resources_socket.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.pod_resources_socket.unlink()
            podresources_pb2_grpc.add_PodResourcesListerServicer_to_server(  # type: ignore[no-untyped-call]
                _PodResourcesServicer(self), server
            )
            server.add_insecure_port(f"unix:{self.pod_resources_socket}")
        await server.start()
        self._server = server
        if self.watcher:
            self._start_registry_watcher()
        self._wake()

    async def _stop(self, *, exit_lag: float = 0.0) -> None:
        registry, self._registry = self._registry, None
        if registry is not None:
            for task in registry.inflight.values():
                task.cancel()
        if exit_lag > 0:  # a dying process: streams and watcher gone, kubelet.sock not yet
            for endpoint in list(self._connections):
                await self._disconnect(endpoint, plugin_disconnected=False)
            await self._cancel_tasks()
            await asyncio.sleep(exit_lag)
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(None)
            if self._rpc_tasks:
                await asyncio.wait(set(self._rpc_tasks), timeout=5.0)
        for endpoint in list(self._connections):
            await self._disconnect(endpoint, plugin_disconnected=False)
        await self._cancel_tasks()
        if registry is not None:
            registry.inotify.close()

    async def _cancel_tasks(self) -> None:
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"kubelet-emulator: {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _track_rpc_task(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._rpc_tasks.add(task)
            task.add_done_callback(self._rpc_tasks.discard)

    def _cleanup_plugin_directory(self) -> None:
        """``CleanupPluginDirectory``: remove every unix socket directly in the dir."""
        with os.scandir(self.device_plugin_dir) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                        os.unlink(entry.path)

    # ------------------------------------------------------------ test controls

    def fail_pod_resources(self, code: grpc.StatusCode | None) -> None:
        """Incident: every pod resources ``List`` fails with ``code`` (e.g.
        ``RESOURCE_EXHAUSTED``, the kubelet's rate limit) until called with None."""
        self.pod_resources_failure = code

    def reject_next_registration(self, error: str) -> None:
        """Make the next registration fail with ``error``.

        Socket mode: the next ``Register`` returns ``UNKNOWN`` with exactly ``error``
        (before any other check). Watcher mode: after a valid ``GetInfo`` the plugin gets
        ``NotifyRegistrationStatus(false, "RegisterPlugin error -- plugin registration
        failed with err: <error>")`` and is not retried, like a failing ``RegisterPlugin``.
        """
        self._reject_next = error

    def advance(self, seconds: float) -> None:
        """Move :attr:`clock` forward, e.g. past the 5-minute grace period."""
        self.clock.advance(seconds)
        self._wake()

    # ------------------------------------------------------------------ queries

    def devices(self, resource: str) -> dict[str, DeviceRecord]:
        """The latest full device list of ``resource`` as the plugin reported it.

        ``{}`` before the first message since the kubelet (re)started. Health values are
        the plugin's; a disconnect does not change them here (see :meth:`capacity`).
        """
        return dict(self._all.get(resource, {}))

    def healthy_ids(self, resource: str) -> set[str]:
        """The kubelet's healthy set (after a disconnect: empty)."""
        return set(self._healthy.get(resource, set()))

    def is_connected(self, resource: str) -> bool:
        """The resource has an endpoint that is not stopped."""
        endpoint = self._endpoints.get(resource)
        return endpoint is not None and not endpoint.stopped

    def endpoint_options(self, resource: str) -> PluginOptions | None:
        """The options the kubelet holds for the resource's current endpoint."""
        endpoint = self._endpoints.get(resource)
        return None if endpoint is None else endpoint.options

    def allocations(self, pod: str | None = None) -> list[ContainerAllocation]:
        """Current allocations (all pods, or one pod), ordered by (pod, container, resource)."""
        return [a for k, a in sorted(self._allocations.items()) if pod is None or k[0] == pod]

    def capacity(self, resource: str) -> tuple[int, int]:
        """``(capacity, allocatable)`` of ``resource`` in node status after a sync (§3.2).

        Runs the kubelet's ``GetCapacity`` at :attr:`clock` time: an endpoint stopped for
        longer than the grace period drops the resource, which then reads ``(0, 0)``
        for good (until it registers and lists devices again). ``(-1, -1)`` means the
        resource is absent from node status (never listed any device), like the e2e
        tests' convention.
        """
        self._sync_node_status()
        return self._node_capacity.get(resource, -1), self._node_allocatable.get(resource, -1)

    def _sync_node_status(self) -> None:
        capacity: dict[str, int] = {}
        allocatable: dict[str, int] = {}
        deleted: set[str] = set()
        now = self.clock.now()

        def expired(resource: str) -> bool:
            endpoint = self._endpoints.get(resource)
            return endpoint is None or (
                endpoint.stop_time is not None and now - endpoint.stop_time > self.grace_period
            )

        for resource, healthy in list(self._healthy.items()):
            if expired(resource):
                self._endpoints.pop(resource, None)
                del self._healthy[resource]
                deleted.add(resource)
            else:
                capacity[resource] = allocatable[resource] = len(healthy)
        for resource, unhealthy in list(self._unhealthy.items()):
            if expired(resource):
                self._endpoints.pop(resource, None)
                del self._unhealthy[resource]
                deleted.add(resource)
            else:
                capacity[resource] = capacity.get(resource, 0) + len(unhealthy)
        if deleted:
            self._write_checkpoint()
        # nodestatus.MachineInfo: capacity keys persist, removed resources get an
        # explicit 0, allocatable starts as capacity and device-plugin values override.
        self._node_capacity.update(capacity)
        for resource in deleted:
            self._node_capacity[resource] = 0
        self._node_allocatable = dict(self._node_capacity)
        self._node_allocatable.update(allocatable)

    # -------------------------------------------------------------------- waits

    def _wake(self) -> None:
        """Something a waiter may be waiting for changed: let every waiter re-check."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_until(
        self, check: Callable[[], Any], timeout: float, what: str, poll: float | None = None
    ) -> Any:
        """Re-run ``check`` on every change (and every ``poll`` seconds) until it returns
        something other than None/False."""

        async def wait() -> Any:
            loop = asyncio.get_running_loop()
            while True:
                result = check()
                if result is not None and result is not False:
                    return result
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.add(waiter)
                try:
                    await asyncio.wait([waiter], timeout=poll)
                finally:
                    self._waiters.discard(waiter)

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None

    async def wait_for(
        self,
        resource: str,
        predicate: Callable[[dict[str, DeviceRecord]], bool],
        timeout: float = 5.0,
    ) -> dict[str, DeviceRecord]:
        """Wait for a ListAndWatch message of ``resource`` that satisfies ``predicate``.

        The latest message since the kubelet (re)started is checked first; after that
        every new message is checked in order, so none is missed.

        Returns:
            the matching device list (id → record).
        Raises:
            TimeoutError: with the latest list in the message.
        """
        seen = len(self.streams[resource])
        if resource in self._all and predicate(self.devices(resource)):
            return self.devices(resource)

        def check() -> dict[str, DeviceRecord] | None:
            nonlocal seen
            messages = self.streams[resource]
            while seen < len(messages):
                devices = {d.id: d for d in messages[seen]}
                seen += 1
                if predicate(devices):
                    return devices
            return None

        try:
            result: dict[str, DeviceRecord] = await self._wait_until(
                check, timeout, f"a ListAndWatch message of {resource}"
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; latest devices: {self.devices(resource)}") from None
        return result

    async def wait_registered(
        self, resource: str, timeout: float = 5.0, count: int = 1, *, accepted: bool | None = True
    ) -> Registration:
        """Wait until ``resource`` has ``count`` registrations (accepted ones by default;
        ``accepted=False`` counts rejected ones, ``None`` all). Returns the latest of them."""

        def check() -> Registration | None:
            matching = [
                r
                for r in self.registrations
                if r.resource == resource and (accepted is None or r.accepted == accepted)
            ]
            return matching[-1] if len(matching) >= count else None

        result: Registration = await self._wait_until(
            check, timeout, f"{count} registration(s) of {resource}"
        )
        return result

    async def wait_dra_registered(self, driver: str, timeout: float = 5.0) -> DraPluginRecord:
        """Wait until the DRA manager has a plugin of ``driver``; returns the newest."""

        def check() -> DraPluginRecord | None:
            instances = self.dra_plugins.get(driver)
            return instances[-1] if instances else None

        result: DraPluginRecord = await self._wait_until(
            check, timeout, f"a DRA plugin of {driver}"
        )
        return result

    async def wait_capacity(
        self, resource: str, expected: tuple[int, int], timeout: float = 5.0
    ) -> None:
        """Wait until :meth:`capacity` returns ``expected``."""
        try:
            # Polled as well: the grace period can also run out in real time.
            await self._wait_until(
                lambda: self.capacity(resource) == expected,
                timeout,
                f"{resource} at {expected}",
                poll=0.05,
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; now {self.capacity(resource)}") from None

    # ----------------------------------------------------------- registration

    async def _handle_register(self, request: deviceplugin_pb2.RegisterRequest) -> str | None:
        """The kubelet's ``Register`` handler; returns the error text or None."""
        socket_path = posixpath.normpath(f"{self.device_plugin_dir}/{request.endpoint}")
        requested = (
            PluginOptions.from_proto(request.options) if request.HasField("options") else None
        )

        def record(options: PluginOptions | None, error: str | None) -> None:
            self.registrations.append(
                Registration(
                    resource=request.resource_name,
                    endpoint=request.endpoint,
                    socket_path=socket_path,
                    version=request.version,
                    options=options,
                    accepted=error is None,
                    error=error,
                    mode="socket",
                    requested_options=requested,
                    supported_versions=(request.version,),
                )
            )
            self._wake()

        try:
            if self._reject_next is not None:
                error, self._reject_next = self._reject_next, None
                raise _RejectedError(error)
            if request.version not in SUPPORTED_VERSIONS:
                raise _RejectedError(
                    f"requested API version {_go_quote(request.version)} is not supported by "
                    f"kubelet. Supported version is "
                    f"[{' '.join(_go_quote(v) for v in SUPPORTED_VERSIONS)}]"
                )
            if not is_extended_resource_name(request.resource_name):
                raise _RejectedError(
                    f"the ResourceName {_go_quote(request.resource_name)} is invalid"
                )
            endpoint = await self._connect(request.resource_name, socket_path)
        except _RejectedError as exc:
            _log.info("registration of %s rejected: %s", request.resource_name, exc)
            record(None, str(exc))
            return str(exc)
        record(endpoint.options, None)
        return None

    async def _connect(self, resource: str, socket_path: str) -> _Endpoint:
        """§2.1 steps 4–7: dial, GetDevicePluginOptions, store, start ListAndWatch.

        Raises:
            _RejectedError: with the kubelet's text when dialling or the options call fails.
        """
        channel = grpc.aio.insecure_channel(
            f"unix:{socket_path}", options=[("grpc.default_authority", "localhost")]
        )
        try:
            await asyncio.wait_for(channel.channel_ready(), self.dial_timeout)
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            await channel.close()
            raise _RejectedError(f"failed to dial device plugin: {_error_text(exc)}") from exc
        except BaseException:
            await channel.close()
            raise
        endpoint = _Endpoint(resource, socket_path, channel, options=None)
        self._connections.add(endpoint)
        self.rpc_log.append(RpcCall(resource, "GetDevicePluginOptions"))
        try:
            options = await endpoint.stub.GetDevicePluginOptions(deviceplugin_pb2.Empty())
        except grpc.aio.AioRpcError as exc:
            await self._disconnect(endpoint, plugin_disconnected=False)
            raise _RejectedError(
                f"failed to get device plugin options: {_go_rpc_error(exc)}"
            ) from exc
        endpoint.options = PluginOptions.from_proto(options)
        # Re-registration overwrites the endpoint; the old connection stays open (§2.5).
        self._endpoints[resource] = endpoint
        endpoint.reader = self._spawn(
            self._run_list_and_watch(endpoint), f"ListAndWatch {resource}"
        )
        return endpoint

    async def _disconnect(self, endpoint: _Endpoint, *, plugin_disconnected: bool) -> None:
        """Close a plugin connection; optionally run ``PluginDisconnected`` (§3.3)."""
        if endpoint.disconnected:
            return
        endpoint.disconnected = True
        self._connections.discard(endpoint)
        reader = endpoint.reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if endpoint.channel is not None:
            await endpoint.channel.close()
        if plugin_disconnected:
            self._plugin_disconnected(endpoint.resource)
        self._wake()

    def _plugin_disconnected(self, resource: str) -> None:
        # Keyed by resource name only: if an *old* stream of a re-registered resource ends,
        # the current endpoint is the one marked stopped (kubelet-protocol §2.5 hazard).
        endpoint = self._endpoints.get(resource)
        if endpoint is None:
            return
        healthy = self._healthy.get(resource)
        if healthy is not None:
            self._healthy[resource] = set()
        self._unhealthy[resource] = self._unhealthy.get(resource, set()) | (healthy or set())
        endpoint.stop_time = self.clock.now()
        _log.info("device plugin for %s disconnected", resource)

    async def _run_list_and_watch(self, endpoint: _Endpoint) -> None:
        resource = endpoint.resource
        self.rpc_log.append(RpcCall(resource, "ListAndWatch"))
        try:
            async for response in endpoint.stub.ListAndWatch(deviceplugin_pb2.Empty()):
                await self._on_list_and_watch(resource, response)
            _log.info("ListAndWatch of %s ended", resource)
        except grpc.aio.AioRpcError as exc:
            _log.info("ListAndWatch of %s failed: %s", resource, _go_rpc_error(exc))
        # No retry, ever (§3.3): the plugin has to register again.
        await self._disconnect(endpoint, plugin_disconnected=True)

    async def _on_list_and_watch(
        self, resource: str, response: deviceplugin_pb2.ListAndWatchResponse
    ) -> None:
        """``genericDeviceUpdateCallback``: every message is the complete list (§3.1)."""
        self.received_at[resource].append(time.perf_counter())
        # A message seen before (a re-registration resends the same list) maps to the same
        # records: immutable, so shared; the kept history then costs one list per message,
        # not one object per device, and a bench's full collections stay short.
        key = response.SerializeToString(deterministic=True)
        records = self._records.get(key)
        if records is None:
            if len(self._records) >= 256:
                self._records.clear()
            records = self._records[key] = tuple(
                DeviceRecord.from_proto(d) for d in response.devices)
        devices = list(records)
        self.streams[resource].append(devices)
        self._all[resource] = {d.id: d for d in devices}
        self._healthy[resource] = {d.id for d in devices if d.healthy}
        self._unhealthy[resource] = {d.id for d in devices if not d.healthy}
        self._write_checkpoint()
        self._wake()

    # ---------------------------------------------------------- plugin watcher

    def _start_registry_watcher(self) -> None:
        assert self.plugins_registry_dir is not None
        inotify = Inotify()
        # Watch first, then scan, so that no socket created in between is missed.
        inotify.add_watch(
            self.plugins_registry_dir,
            Mask.CREATE | Mask.MOVED_TO | Mask.DELETE | Mask.MOVED_FROM | Mask.ONLYDIR,
        )
        registry = _RegistryWatcher(inotify)
        self._registry = registry
        for path in self._registry_sockets():
            registry.generation += 1
            registry.desired[path] = registry.generation
        self._spawn(self._watch_registry(registry), "registry inotify")
        self._spawn(self._reconcile_registry(registry), "registry reconciler")

    def _registry_sockets(self) -> list[str]:
        assert self.plugins_registry_dir is not None
        found = []
        with os.scandir(self.plugins_registry_dir) as entries:
            for entry in entries:
                if self._is_registry_socket(entry.path):
                    found.append(entry.path)
        return sorted(found)

    @staticmethod
    def _is_registry_socket(path: str) -> bool:
        # The plugin watcher skips dot-files and anything that is not a unix socket.
        if os.path.basename(path).startswith("."):
            return False
        try:
            return stat.S_ISSOCK(os.stat(path).st_mode)
        except OSError:
            return False

    async def _watch_registry(self, registry: _RegistryWatcher) -> None:
        assert self.plugins_registry_dir is not None
        async for event in registry.inotify:
            if Mask.Q_OVERFLOW in event.mask:
                present = set(self._registry_sockets())
                for path in set(registry.desired) - present:
                    del registry.desired[path]
                for path in present - set(registry.desired):
                    registry.generation += 1
                    registry.desired[path] = registry.generation
            elif event.name is None:
                continue
            else:
                path = str(self.plugins_registry_dir / event.name)
                if event.mask & (Mask.CREATE | Mask.MOVED_TO):
                    if self._is_registry_socket(path):
                        registry.generation += 1
                        registry.desired[path] = registry.generation
                        registry.retry.pop(path, None)
                elif event.mask & (Mask.DELETE | Mask.MOVED_FROM):
                    registry.desired.pop(path, None)
            registry.wakeup.set()

    async def _reconcile_registry(self, registry: _RegistryWatcher) -> None:
        """The plugin manager's reconciler: deregister gone sockets, register new ones, on
        a pass every ``watcher_period`` (``wait.Until``: the first pass at once). A socket
        created between passes waits for the next one, as with the kubelet."""
        loop = asyncio.get_running_loop()
        while True:
            for path, (generation, name, endpoint) in list(registry.actual.items()):
                if registry.desired.get(path) != generation:
                    del registry.actual[path]
                    await self._deregister_plugin(name, endpoint)
            now = loop.time()
            for path, generation in registry.desired.items():
                if path in registry.actual or path in registry.inflight:
                    continue
                due = registry.retry.get(path)
                if due is not None and due[0] > now:
                    continue
                registry.inflight[path] = self._spawn(
                    self._register_from_registry(registry, path, generation), f"register {path}"
                )
            await asyncio.sleep(self.watcher_period)

    async def _deregister_plugin(self, name: str, endpoint_path: str) -> None:
        instances = self.dra_plugins.get(name)
        if instances is not None:  # the DRA manager's DeRegisterPlugin
            kept = [p for p in instances if p.endpoint != endpoint_path]
            if kept:
                self.dra_plugins[name] = kept
            else:
                del self.dra_plugins[name]
            self._wake()
            return
        endpoint = self._endpoints.get(name)
        if endpoint is not None and endpoint.socket_path == endpoint_path:
            await self._disconnect(endpoint, plugin_disconnected=True)

    async def _register_from_registry(
        self, registry: _RegistryWatcher, path: str, generation: int
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            registered = await self._watcher_register(registry, path, generation)
        finally:
            registry.inflight.pop(path, None)
        if registered:
            registry.retry.pop(path, None)
        else:
            delay = registry.retry.get(path, (0.0, self.watcher_retry / 2))[1] * 2
            delay = min(delay, _WATCHER_BACKOFF_MAX)
            registry.retry[path] = (loop.time() + delay, delay)
        registry.wakeup.set()

    async def _watcher_register(
        self, registry: _RegistryWatcher, path: str, generation: int
    ) -> bool:
        """One plugin-manager ``RegisterPlugin`` operation; True when no retry is needed."""
        channel = grpc.aio.insecure_channel(
            f"unix:{path}", options=[("grpc.default_authority", "localhost")]
        )
        try:
            try:
                await asyncio.wait_for(channel.channel_ready(), self.dial_timeout)
            except (TimeoutError, grpc.aio.AioRpcError) as exc:
                error = (
                    f"RegisterPlugin error -- dial failed at socket {path}, err: {_error_text(exc)}"
                )
                self.watcher_errors.append((path, error))
                return False
            stub = pluginregistration_pb2_grpc.RegistrationStub(channel)  # type: ignore[no-untyped-call]
            self.rpc_log.append(RpcCall(path, "GetInfo"))
            try:
                info = await stub.GetInfo(
                    pluginregistration_pb2.InfoRequest(), timeout=GET_INFO_TIMEOUT
                )
            except grpc.aio.AioRpcError as exc:
                error = (
                    "RegisterPlugin error -- failed to get plugin info using RPC GetInfo at "
                    f"socket {path}, err: {_go_rpc_error(exc)}"
                )
                self.watcher_errors.append((path, error))
                return False
            return await self._watcher_handle_info(registry, stub, path, generation, info)
        finally:
            await channel.close()

    async def _watcher_handle_info(
        self,
        registry: _RegistryWatcher,
        stub: pluginregistration_pb2_grpc.RegistrationStub,
        path: str,
        generation: int,
        info: pluginregistration_pb2.PluginInfo,
    ) -> bool:
        name = info.name
        endpoint_path = info.endpoint or path
        versions = tuple(info.supported_versions)

        async def notify(error: str | None) -> None:
            self.rpc_log.append(RpcCall(name, "NotifyRegistrationStatus"))
            status = pluginregistration_pb2.RegistrationStatus(
                plugin_registered=error is None, error=error or ""
            )
            try:
                await stub.NotifyRegistrationStatus(status)
            except grpc.aio.AioRpcError as exc:
                _log.info("NotifyRegistrationStatus to %s failed: %s", path, _go_rpc_error(exc))

        def record(options: PluginOptions | None, error: str | None) -> None:
            self.registrations.append(
                Registration(
                    resource=name,
                    endpoint=info.endpoint,
                    socket_path=endpoint_path,
                    version=_registration_version(info.type, versions),
                    options=options,
                    accepted=error is None,
                    error=error,
                    mode="watcher",
                    supported_versions=versions,
                    plugin_type=info.type,
                )
            )
            self._wake()

        if info.type == DRA_PLUGIN_TYPE:
            return await self._dra_register(registry, path, generation, info, record, notify)
        if info.type != DEVICE_PLUGIN_TYPE:
            error = (
                "RegisterPlugin error -- no handler registered for plugin type: "
                f"{info.type} at socket {path}"
            )
            record(None, error)
            await notify(error)
            return False
        validation = self._validate_plugin(name, versions)
        if validation is not None:
            error = f"RegisterPlugin error -- plugin validation failed with err: {validation}"
            record(None, error)
            await notify(error)
            return False
        # The plugin manager records the plugin before calling the handler, so a failing
        # RegisterPlugin is not retried (only a new socket brings it back).
        registry.actual[path] = (generation, name, endpoint_path)
        try:
            if self._reject_next is not None:
                reject, self._reject_next = self._reject_next, None
                raise _RejectedError(reject)
            endpoint = await self._connect(name, endpoint_path)
        except _RejectedError as exc:
            error = f"RegisterPlugin error -- plugin registration failed with err: {exc}"
            record(None, error)
            await notify(error)
            return True
        record(endpoint.options, None)
        await notify(None)
        return True

    async def _dra_register(
        self,
        registry: _RegistryWatcher,
        path: str,
        generation: int,
        info: pluginregistration_pb2.PluginInfo,
        record: Callable[[PluginOptions | None, str | None], None],
        notify: Callable[[str | None], Coroutine[Any, Any, None]],
    ) -> bool:
        """The DRA manager's ValidatePlugin and RegisterPlugin for a ``DRAPlugin`` answer."""
        driver, endpoint = info.name, info.endpoint or path
        offered = tuple(info.supported_versions)
        service = next((s for s in offered if s in DRA_SERVICES), "")
        if not service:
            reason = (
                f"none of services supported by the plugin ({_go_quote_list(offered)}) are "
                f"supported by the kubelet ({_go_quote_list(DRA_SERVICES)})" if offered else
                "empty list of supported gRPC services (aka supported versions)")
            error = ("RegisterPlugin error -- plugin validation failed with err: invalid "
                     f"supported gRPC versions of DRA driver plugin {driver} at endpoint "
                     f"{endpoint}: {reason}")
            record(None, error)
            await notify(error)
            return False
        instances = self.dra_plugins.get(driver, [])
        failure = None
        if self._reject_next is not None:
            failure, self._reject_next = self._reject_next, None
        elif any(p.endpoint == endpoint for p in instances):
            # one instance cannot take over the endpoint of another
            failure = f"endpoint {endpoint} already registered for DRA driver plugin {driver}"
        if failure is not None:
            # The plugin manager forgets a plugin its handler refused (1.37), so a later
            # pass tries again, and deleting its socket deregisters nothing.
            error = f"RegisterPlugin error -- plugin registration failed with err: {failure}"
            record(None, error)
            await notify(error)
            return False
        registry.actual[path] = (generation, driver, endpoint)
        health = next((s for s in DRA_HEALTH_SERVICES if s in offered), "")
        self.dra_plugins[driver] = [*instances, DraPluginRecord(
            driver=driver, endpoint=endpoint, socket_path=path, service=service,
            health_service=health)]
        record(None, None)
        await notify(None)
        return True

    @staticmethod
    def _validate_plugin(name: str, versions: Sequence[str]) -> str | None:
        """The device manager's ``ValidatePlugin``; returns the error text or None."""
        if not any(v in SUPPORTED_VERSIONS for v in versions):
            return (
                f"manager version, {API_VERSION}, is not among plugin supported versions "
                f"[{' '.join(versions)}]"
            )
        if not is_extended_resource_name(name):
            return (
                "invalid name of device plugin socket: "
                f"the ResourceName {_go_quote(name)} is invalid"
            )
        return None

    # ------------------------------------------------------------ raw plugin RPCs

    def _live_endpoint(self, resource: str) -> _Endpoint:
        endpoint = self._endpoints.get(resource)
        if endpoint is None or endpoint.channel is None or endpoint.disconnected:
            raise LookupError(f"no connected device plugin endpoint for {resource}")
        return endpoint

    async def allocate(
        self, resource: str, ids: Sequence[str]
    ) -> deviceplugin_pb2.AllocateResponse:
        """Call ``Allocate`` with one container request for ``ids`` on the resource's endpoint.

        Raises:
            grpc.aio.AioRpcError: the plugin's error, unchanged.
            LookupError: no connected endpoint for ``resource``.
        """
        endpoint = self._live_endpoint(resource)
        self.rpc_log.append(RpcCall(resource, "Allocate"))
        request = deviceplugin_pb2.AllocateRequest(
            container_requests=[deviceplugin_pb2.ContainerAllocateRequest(devices_ids=list(ids))]
        )
        response: deviceplugin_pb2.AllocateResponse = await endpoint.stub.Allocate(request)
        return response

    async def preferred_allocation(
        self,
        resource: str,
        available: Iterable[str],
        must_include: Iterable[str] = (),
        size: int = 1,
    ) -> list[str]:
        """Call ``GetPreferredAllocation`` with one container request.

        Returns:
            ``container_responses[0].deviceIDs`` (``[]`` for an empty response), the only
            part the kubelet reads.
        Raises:
            grpc.aio.AioRpcError: the plugin's error, unchanged.
            LookupError: no connected endpoint for ``resource``.
        """
        endpoint = self._live_endpoint(resource)
        self.rpc_log.append(RpcCall(resource, "GetPreferredAllocation"))
        request = deviceplugin_pb2.PreferredAllocationRequest(
            container_requests=[
                deviceplugin_pb2.ContainerPreferredAllocationRequest(
                    available_deviceIDs=list(available),
                    must_include_deviceIDs=list(must_include),
                    allocation_size=size,
                )
            ]
        )
        response = await endpoint.stub.GetPreferredAllocation(request)
        if not response.container_responses:
            return []
        return list(response.container_responses[0].deviceIDs)

    async def pre_start(
        self, resource: str, ids: Sequence[str]
    ) -> deviceplugin_pb2.PreStartContainerResponse:
        """Call ``PreStartContainer`` with the kubelet's 30 s deadline.

        Raises:
            grpc.aio.AioRpcError: the plugin's error, unchanged.
            LookupError: no connected endpoint for ``resource``.
        """
        endpoint = self._live_endpoint(resource)
        self.rpc_log.append(RpcCall(resource, "PreStartContainer"))
        request = deviceplugin_pb2.PreStartContainerRequest(devices_ids=list(ids))
        response: deviceplugin_pb2.PreStartContainerResponse = (
            await endpoint.stub.PreStartContainer(request, timeout=PRE_START_TIMEOUT)
        )
        return response

    # ---------------------------------------------------------------- admission

    async def admit(
        self,
        resource: str,
        count: int,
        pod: str = "pod-1",
        container: str = "c0",
        *,
        numa_affinity: Iterable[int] | None = None,
    ) -> ContainerAllocation:
        """Admit a container that requests ``count`` devices of ``resource`` (§4.2, §4.3).

        Reuses the container's cached devices if it has any (no RPC). Otherwise takes
        ``available = healthy − allocated``, asks ``GetPreferredAllocation`` when the
        endpoint's options say so, fills up from the rest (sorted by id, where the kubelet
        iterates a Go set), calls ``Allocate`` and records the allocation and checkpoint.

        Args:
            numa_affinity: the Topology Manager's NUMA hint; devices on these nodes are
                "aligned" and preferred. ``None`` (no hint) puts everything in
                "no affinity", as with the ``none`` policy.

        Raises:
            AdmissionError: with the kubelet's text in ``.error``, e.g. ``requested number
                of devices unavailable for x.io/y. Requested: 3, Available: 2``.
        """
        key = (pod, container, resource)
        try:
            cached = self._allocations.get(key)
            chosen, preferred = await self._devices_to_allocate(
                key, count, None if numa_affinity is None else frozenset(numa_affinity)
            )
            if chosen is None:
                assert cached is not None
                return cached
            response = await self._allocate_container(resource, chosen)
        except _RejectedError as exc:
            raise AdmissionError(str(exc)) from None
        allocation = ContainerAllocation(
            pod, container, resource, tuple(chosen), response, preferred
        )
        self._allocations[key] = allocation
        self._write_checkpoint()
        return allocation

    def _allocated(self, resource: str) -> set[str]:
        return {
            i for (_, _, r), a in self._allocations.items() if r == resource for i in a.device_ids
        }

    async def _devices_to_allocate(
        self, key: tuple[str, str, str], required: int, hint: frozenset[int] | None
    ) -> tuple[list[str] | None, tuple[str, ...] | None]:
        """``devicesToAllocate``: (ids to allocate or None to reuse the cache, preferred)."""
        resource = key[2]
        healthy, needed = self._check_allocatable(key, required)
        if needed == 0:
            return None, None
        available = healthy - self._allocated(resource)
        if len(available) < needed:
            raise _RejectedError(
                f"requested number of devices unavailable for {resource}. "
                f"Requested: {needed}, Available: {len(available)}"
            )
        aligned, unaligned, no_affinity = self._filter_by_affinity(resource, available, hint)
        chosen: list[str] = []

        def take(candidates: Iterable[str]) -> bool:
            # The kubelet iterates Go sets here (random order); callers pass sorted ids or
            # the plugin's preference order instead.
            for device in candidates:
                if len(chosen) == needed:
                    break
                if device not in chosen:
                    chosen.append(device)
            return len(chosen) == needed

        if needed < len(aligned):
            preferred = await self._preferred_if_available(resource, sorted(aligned), [], required)
            if take(d for d in preferred or () if d in aligned) or take(sorted(aligned)):
                return chosen, preferred
            raise _RejectedError(self._short_allocation(required, len(chosen)))
        if take(sorted(aligned)):
            return chosen, None
        preferred = await self._preferred_if_available(
            resource, sorted(available | set(chosen)), list(chosen), required
        )
        if (
            take(d for d in preferred or () if d in available)
            or take(sorted(unaligned))
            or take(sorted(no_affinity))
        ):
            return chosen, preferred
        raise _RejectedError(self._short_allocation(required, len(chosen)))

    def _check_allocatable(self, key: tuple[str, str, str], required: int) -> tuple[set[str], int]:
        """The checks that run before choosing (§4.2 steps 1 and 3): (healthy set, needed)."""
        pod, container, resource = key
        needed = required
        cached = self._allocations.get(key)
        if cached is not None:
            needed -= len(cached.device_ids)
            if needed != 0:
                raise _RejectedError(
                    f"pod {_go_quote(pod)} container {_go_quote(container)} changed request for "
                    f"resource {_go_quote(resource)}: requested {required}, but "
                    f"{len(cached.device_ids)} are already allocated to the container"
                )
        healthy = self._healthy.get(resource)
        if healthy is None:
            raise _RejectedError(f"cannot allocate unregistered device {resource}")
        if not healthy:
            raise _RejectedError(
                f"no healthy devices present; cannot allocate unhealthy devices {resource}"
            )
        if cached is not None and not healthy.issuperset(cached.device_ids):
            raise _RejectedError(
                "previously allocated devices are no longer healthy; "
                f"cannot allocate unhealthy devices {resource}"
            )
        return healthy, needed

    @staticmethod
    def _short_allocation(required: int, got: int) -> str:
        return (
            "unexpectedly allocated less resources than required. "
            f"Requested: {required}, Got: {got}"
        )

    def _filter_by_affinity(
        self, resource: str, available: set[str], hint: frozenset[int] | None
    ) -> tuple[set[str], set[str], set[str]]:
        devices = self._all.get(resource, {})
        has_topology = any(d.numa_nodes for d in devices.values())
        if hint is None or not has_topology:
            return set(), set(), set(available)
        aligned, unaligned, no_affinity = set(), set(), set()
        for device_id in available:
            record = devices.get(device_id)
            nodes = record.numa_nodes if record is not None else ()
            if not nodes:
                no_affinity.add(device_id)
            elif hint.intersection(nodes):
                aligned.add(device_id)
            else:
                unaligned.add(device_id)
        return aligned, unaligned, no_affinity

    async def _preferred_if_available(
        self, resource: str, available: list[str], must_include: list[str], size: int
    ) -> tuple[str, ...] | None:
        """``callGetPreferredAllocationIfAvailable``; None when the plugin does not offer it."""
        endpoint = self._endpoints.get(resource)
        if endpoint is None:
            raise _RejectedError(
                f"endpoint not found in cache for a registered resource: {resource}"
            )
        if endpoint.options is None or not endpoint.options.get_preferred_allocation_available:
            return None
        if endpoint.stopped or endpoint.disconnected:
            error = endpoint.stopped_error()
        else:
            try:
                return tuple(
                    await self.preferred_allocation(resource, available, must_include, size)
                )
            except grpc.aio.AioRpcError as exc:
                error = _go_rpc_error(exc)
        raise _RejectedError(f"device plugin GetPreferredAllocation rpc failed with err: {error}")

    async def _allocate_container(
        self, resource: str, ids: list[str]
    ) -> deviceplugin_pb2.ContainerAllocateResponse:
        endpoint = self._endpoints.get(resource)
        if endpoint is None:
            raise _RejectedError(f"unknown Device Plugin {resource}")
        if endpoint.stopped or endpoint.disconnected:
            raise _RejectedError(endpoint.stopped_error())
        try:
            response = await self.allocate(resource, ids)
        except grpc.aio.AioRpcError as exc:
            raise _RejectedError(_go_rpc_error(exc)) from exc
        if not response.container_responses:
            raise _RejectedError(f"no containers return in allocation response {response}")
        first: deviceplugin_pb2.ContainerAllocateResponse = response.container_responses[0]
        return first

    def release(self, pod: str) -> list[ContainerAllocation]:
        """Forget every allocation of ``pod`` (the pod is gone); returns what was freed."""
        freed = [a for k, a in self._allocations.items() if k[0] == pod]
        for allocation in freed:
            del self._allocations[(allocation.pod, allocation.container, allocation.resource)]
        if freed:
            self._write_checkpoint()
        return freed

    async def start_container(self, pod: str, container: str = "c0") -> ContainerConfig:
        """Start a container (§5): ``PreStartContainer`` per resource when the endpoint's
        options require it (30 s deadline), then merge the cached Allocate responses.

        Merging keeps the first value for a duplicate env key, ``container_path``,
        annotation key or CDI name; resources are merged in name order.

        Raises:
            ContainerStartError: ``device plugin PreStartContainer rpc failed with err: ...``.
        """
        envs: dict[str, str] = {}
        annotations: dict[str, str] = {}
        mounts: dict[str, deviceplugin_pb2.Mount] = {}
        specs: dict[str, deviceplugin_pb2.DeviceSpec] = {}
        cdi: list[str] = []
        for allocation in self.allocations(pod):
            if allocation.container != container:
                continue
            endpoint = self._endpoints.get(allocation.resource)
            options = None if endpoint is None else endpoint.options
            if endpoint is not None and options is not None and options.pre_start_required:
                await self._pre_start_for(endpoint, allocation)
            response = allocation.response
            for key, value in response.envs.items():
                envs.setdefault(key, value)
            for mount in response.mounts:
                mounts.setdefault(mount.container_path, mount)
            for spec in response.devices:
                specs.setdefault(spec.container_path, spec)
            for key, value in response.annotations.items():
                annotations.setdefault(key, value)
            cdi.extend(c.name for c in response.cdi_devices if c.name not in cdi)
        return ContainerConfig(
            envs, tuple(mounts.values()), tuple(specs.values()), annotations, tuple(cdi)
        )

    async def _pre_start_for(self, endpoint: _Endpoint, allocation: ContainerAllocation) -> None:
        if endpoint.stopped or endpoint.disconnected:
            error = endpoint.stopped_error()
        else:
            try:
                await self.pre_start(allocation.resource, allocation.device_ids)
                return
            except grpc.aio.AioRpcError as exc:
                error = _go_rpc_error(exc)
        raise ContainerStartError(f"device plugin PreStartContainer rpc failed with err: {error}")

    # --------------------------------------------------------------- checkpoint

    def _write_checkpoint(self) -> None:
        """Write the checkpoint in the kubelet's v2 shape (temp file + rename, like the kubelet).

        The checksum is Go-specific (FNV-32a over a spew dump); the emulator writes 0 and
        never verifies it.
        """
        entries = []
        for (pod, container, resource), allocation in sorted(self._allocations.items()):
            per_node: dict[str, list[str]] = {}
            known = self._all.get(resource, {})
            for device_id in allocation.device_ids:
                record = known.get(device_id)
                nodes = (
                    record.numa_nodes
                    if record is not None and record.numa_nodes
                    else (_NO_TOPOLOGY,)
                )
                for node in nodes:
                    per_node.setdefault(str(node), []).append(device_id)
            entries.append(
                {
                    "PodUID": pod,
                    "ContainerName": container,
                    "ResourceName": resource,
                    "DeviceIDs": per_node,
                    "AllocResp": base64.b64encode(allocation.response.SerializeToString()).decode(),
                }
            )
        data = {
            "Data": {
                "PodDeviceEntries": entries,
                "RegisteredDevices": {r: sorted(ids) for r, ids in sorted(self._healthy.items())},
            },
            "Checksum": 0,
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{CHECKPOINT_FILE_NAME}", dir=self.device_plugin_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(json.dumps(data, separators=(",", ":")).encode())
            os.replace(tmp, self.checkpoint_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _restore_from_checkpoint(self, *, restarting: bool) -> None:
        """Kubelet start (§6 step 1): fresh maps, then allocations and stopped endpoints
        for the registered resources from the checkpoint."""
        self._endpoints.clear()
        self._healthy.clear()
        self._unhealthy.clear()
        self._all.clear()
        self._allocations.clear()
        try:
            data = json.loads(self.checkpoint_path.read_text())["Data"]
        except FileNotFoundError:
            if restarting:
                # No checkpoint: the kubelet assumes a new node and zeroes extended resources.
                self._node_capacity = dict.fromkeys(self._node_capacity, 0)
                self._node_allocatable = dict.fromkeys(self._node_allocatable, 0)
            return
        now = self.clock.now()
        for resource in data.get("RegisteredDevices") or {}:
            self._healthy[resource] = set()
            self._unhealthy[resource] = set()
            self._endpoints[resource] = _Endpoint(
                resource,
                socket_path="",
                channel=None,
                options=None,
                stop_time=now,
                disconnected=True,
            )
        for entry in data.get("PodDeviceEntries") or []:
            ids: list[str] = []
            for node_ids in (entry.get("DeviceIDs") or {}).values():
                ids.extend(i for i in node_ids if i not in ids)
            response = deviceplugin_pb2.ContainerAllocateResponse.FromString(
                base64.b64decode(entry.get("AllocResp") or "")
            )
            key = (entry["PodUID"], entry["ContainerName"], entry["ResourceName"])
            self._allocations[key] = ContainerAllocation(*key, tuple(ids), response)
