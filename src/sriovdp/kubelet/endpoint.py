"""One pool's socket lifecycle: serve, register, notice loss, serve and register again.

Registration modes (decided once at start, as the Go plugin does):

* **watcher** — ``plugins_registry/`` exists: the socket lives there and also serves
  ``pluginregistration.Registration``; the kubelet's plugin watcher finds it, calls GetInfo,
  dials the DevicePlugin service and reports NotifyRegistrationStatus.
* **socket** — otherwise: the socket lives in ``device-plugins/`` and the endpoint calls
  ``Register`` on ``device-plugins/kubelet.sock``.

In both modes the endpoint re-creates its socket and registers again when its socket is
deleted, when ``kubelet.sock`` is created again (a kubelet restart), when a ListAndWatch stream
ends while the endpoint is not stopping (the kubelet never re-dials: F11), or when the
registration is refused (retried with back-off; never a process exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import grpc

from sriovdp.kubelet.api import (
    deviceplugin_pb2 as pb,
    deviceplugin_pb2_grpc as pb_grpc,
    pluginregistration_pb2_grpc as reg_grpc,
)
from sriovdp.kubelet.feed import LatestValue
from sriovdp.kubelet.servicer import (
    API_VERSION,
    OPTIONS,
    AllocateHook,
    DevicePluginServicer,
    WatcherRegistrationServicer,
)
from sriovdp.model.devices import HostFacts
from sriovdp.model.pools import ResourcePool

log = logging.getLogger("sriovdp.kubelet")

KUBELET_SOCKET = "kubelet.sock"


class Mode(StrEnum):
    """How the kubelet learns about our sockets."""

    WATCHER = "watcher"
    SOCKET = "socket"


@dataclass(frozen=True, slots=True)
class KubeletDirs:
    """The kubelet's directories and the registration mode.

    Attributes:
        device_plugin_dir: ``/var/lib/kubelet/device-plugins`` (holds ``kubelet.sock``).
        plugins_registry_dir: ``/var/lib/kubelet/plugins_registry``.
        mode: watcher when ``plugins_registry_dir`` existed at start, else socket.
    """

    device_plugin_dir: Path
    plugins_registry_dir: Path
    mode: Mode

    @classmethod
    def detect(cls, device_plugin_dir: Path, plugins_registry_dir: Path) -> KubeletDirs:
        mode = Mode.WATCHER if plugins_registry_dir.is_dir() else Mode.SOCKET
        return cls(device_plugin_dir, plugins_registry_dir, mode)

    @property
    def socket_dir(self) -> Path:
        """Where pool sockets live in this mode."""
        return self.plugins_registry_dir if self.mode is Mode.WATCHER else self.device_plugin_dir

    @property
    def kubelet_socket(self) -> Path:
        return self.device_plugin_dir / KUBELET_SOCKET


class State(StrEnum):
    STARTING = "starting"
    REGISTERING = "registering"
    REGISTERED = "registered"
    STOPPED = "stopped"


class PluginEndpoint:
    """Serves one pool on ``<socket_dir>/<prefix>_<name>.sock`` and keeps it registered.

    Args:
        feed: the pool's current value (published by the daemon).
        dirs: kubelet directories and mode.
        facts: host facts of the latest scan, for Allocate.
        on_allocate: hook after each successful Allocate (device-info files, metrics).
        register_timeout: seconds for one Register call (the kubelet dials back inside it).
        max_backoff: longest wait between refused registrations, seconds.
        cdi: Allocate answers with CDI names (``--use-cdi``).
    """

    def __init__(
        self,
        feed: LatestValue[ResourcePool],
        dirs: KubeletDirs,
        facts: Callable[[], HostFacts],
        *,
        on_allocate: AllocateHook | None = None,
        register_timeout: float = 15.0,
        max_backoff: float = 5.0,
        cdi: bool = False,
    ) -> None:
        self.feed = feed
        self.dirs = dirs
        self._facts = facts
        self._on_allocate = on_allocate
        self._register_timeout = register_timeout
        self._max_backoff = max_backoff
        self._cdi = cdi
        pool = feed.value
        self.resource_name = pool.resource_name
        self.socket_path = dirs.socket_dir / pool.socket_name
        self.state = State.STARTING
        self.registrations = 0
        self.restarts = 0
        self._generation = 0
        self._server: grpc.aio.Server | None = None
        self._servicer: DevicePluginServicer | None = None
        self._inode: int | None = None
        self._registered_kubelet_inode: int | None = None
        self._restart = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._unserved_restarts = 0
        self._stopping = False
        self.registered = asyncio.Event()

    # --- what the daemon and the directory watcher call -------------------------------------

    @property
    def streaming(self) -> bool:
        """True while the kubelet holds a ListAndWatch stream open."""
        return self._servicer is not None and self._servicer.open_streams > 0

    def request_restart(self, reason: str) -> None:
        """Re-create the socket and register again (coalesced; safe to call repeatedly)."""
        if self._stopping or self._restart.is_set():
            return
        log.warning("%s: %s; re-creating socket and registering again", self.resource_name,
                    reason, extra={"resource": self.resource_name})
        self._restart.set()
        self._wakeup.set()

    def socket_dir_event(self, name: str, created: bool) -> None:
        """A file appeared in or vanished from a kubelet directory."""
        if name == self.socket_path.name and not created:
            if self._inode is not None and self._current_inode(self.socket_path) != self._inode:
                self.request_restart(f"socket {self.socket_path} was deleted")
        elif name == KUBELET_SOCKET and created:
            self._kubelet_socket_created()
        elif name == "" and created:
            self.request_restart("socket directory re-created")

    def _kubelet_socket_created(self) -> None:
        if self.state is State.REGISTERING:
            self._wakeup.set()  # retry now instead of after the back-off
            return
        inode = self._current_inode(self.dirs.kubelet_socket)
        if inode is not None and inode == self._registered_kubelet_inode:
            return  # the kubelet.sock we registered with; nothing new
        self.request_restart("kubelet.sock was created again (kubelet restarted)")

    async def stop(self) -> None:
        """Stop for good: end streams, stop serving, remove our socket."""
        self._stopping = True
        self.feed.close()
        self._restart.set()
        self._wakeup.set()

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve and keep registered until :meth:`stop`; never raises for kubelet trouble."""
        try:
            while not self._stopping:
                self._restart.clear()
                try:
                    await self._serve()
                except Exception as exc:  # bind failure: keep trying, never die silently
                    log.error("%s: cannot serve on %s: %s; retrying in %.0f s",
                              self.resource_name, self.socket_path, exc, self._max_backoff,
                              extra={"resource": self.resource_name})
                    await self._stop_server(grace=None)
                    await self._wait_wakeup(self._max_backoff)
                    continue
                if self.dirs.mode is Mode.SOCKET:
                    await self._register_until_done()
                else:
                    self.state = State.REGISTERING
                await self._restart.wait()
                served = self._servicer is not None and self._servicer.delivered
                await self._stop_server(grace=None if not self._stopping else 0.5)
                if not self._stopping:
                    self.restarts += 1
                    await self._pace_restarts(served)
        finally:
            await self._stop_server(grace=None)
            self.state = State.STOPPED
            log.info("%s: stopped, socket %s removed", self.resource_name, self.socket_path,
                     extra={"resource": self.resource_name})

    async def _pace_restarts(self, served: bool) -> None:
        """Back off when restarts keep coming without the kubelet ever getting a device list
        in between (a stream that keeps failing, a socket that keeps being deleted): never a
        busy loop, whatever goes wrong. A kubelet restart costs two or three quick restarts;
        only from the fourth unserved one in a row does the wait grow (50 ms doubling, up to
        ``max_backoff``). A server that delivered a list resets the count."""
        if served:
            self._unserved_restarts = 0
            return
        self._unserved_restarts += 1
        if self._unserved_restarts <= 3:
            return
        wait = min(0.05 * 2 ** (self._unserved_restarts - 4), self._max_backoff)
        if wait >= 0.4:
            log.warning("%s: restarting repeatedly without serving the kubelet; waiting %.1f s",
                        self.resource_name, wait, extra={"resource": self.resource_name})
        await self._wait_wakeup(wait)
        self._restart.clear()

    async def _serve(self) -> None:
        self._generation += 1
        self.registered.clear()
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server = grpc.aio.server()
        servicer = DevicePluginServicer(
            self.feed, self._facts, on_stream_end=self._stream_ended,
            on_allocate=self._on_allocate, generation=self._generation, cdi=self._cdi,
        )
        pb_grpc.add_DevicePluginServicer_to_server(servicer, server)
        if self.dirs.mode is Mode.WATCHER:
            reg_grpc.add_RegistrationServicer_to_server(
                WatcherRegistrationServicer(self.resource_name, str(self.socket_path),
                                            self._registration_status),
                server,
            )
        server.add_insecure_port(f"unix://{self.socket_path}")  # binds: the file exists now
        self._inode = self._current_inode(self.socket_path)
        self._server, self._servicer = server, servicer
        await server.start()
        log.info("starting %s device plugin endpoint at: %s (%s mode)", self.resource_name,
                 self.socket_path, self.dirs.mode, extra={"resource": self.resource_name})

    async def _stop_server(self, grace: float | None) -> None:
        server, self._server, self._servicer = self._server, None, None
        self._generation += 1  # streams of the old server ending now are not "lost kubelet"
        self.registered.clear()
        if server is not None:
            await server.stop(grace)
        if self._inode is not None and self._current_inode(self.socket_path) == self._inode:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        self._inode = None

    async def _register_until_done(self) -> None:
        self.state = State.REGISTERING
        backoff = 0.1
        waiting_logged = False
        while not self._restart.is_set():
            kubelet_inode = self._current_inode(self.dirs.kubelet_socket)
            if kubelet_inode is None:
                if not waiting_logged:
                    log.warning("%s: waiting for %s to appear", self.resource_name,
                                self.dirs.kubelet_socket, extra={"resource": self.resource_name})
                    waiting_logged = True
                await self._wait_wakeup(None)
                continue
            if self._inode is None or self._current_inode(self.socket_path) != self._inode:
                # The kubelet's start-up cleanup removed the socket we serve on: registering
                # now would make it dial a path that no longer leads to us.
                self.request_restart(f"socket {self.socket_path} is gone")
                return
            error = await self._register_or_restart()
            if error is None and self._restart.is_set():
                return
            if error is None:
                self._registered_kubelet_inode = kubelet_inode
                self.registrations += 1
                self.state = State.REGISTERED
                self.registered.set()
                log.info("%s device plugin registered with Kubelet", self.resource_name,
                         extra={"resource": self.resource_name})
                return
            log.warning("%s: registration failed (%s); retrying in %.1fs", self.resource_name,
                        error, backoff, extra={"resource": self.resource_name})
            await self._wait_wakeup(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _register_or_restart(self) -> str | None:
        """Register, but give up at once when a restart is requested meanwhile."""
        call = asyncio.ensure_future(self._register_once())
        restart = asyncio.ensure_future(self._restart.wait())
        try:
            await asyncio.wait({call, restart}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            restart.cancel()
        if not call.done():
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            return None
        return call.result()

    async def _register_once(self) -> str | None:
        request = pb.RegisterRequest(
            version=API_VERSION, endpoint=self.socket_path.name,
            resource_name=self.resource_name, options=OPTIONS,
        )
        try:
            async with grpc.aio.insecure_channel(f"unix://{self.dirs.kubelet_socket}") as channel:
                await pb_grpc.RegistrationStub(channel).Register(
                    request, timeout=self._register_timeout
                )
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        return None

    async def _wait_wakeup(self, timeout: float | None) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    # --- callbacks from the servicers -------------------------------------------------------

    def _stream_ended(self, generation: int) -> None:
        if generation == self._generation and not self._stopping:
            self.request_restart("the kubelet's ListAndWatch stream ended")

    def _registration_status(self, registered: bool, error: str) -> None:
        if registered:
            self.registrations += 1
            self.state = State.REGISTERED
            self.registered.set()
            log.info("Plugin: %s gets registered successfully at Kubelet", self.socket_path.name,
                     extra={"resource": self.resource_name})
            return
        log.warning("Plugin: %s failed to be registered at Kubelet: %s", self.socket_path.name,
                    error, extra={"resource": self.resource_name})
        asyncio.get_running_loop().call_later(
            1.0, self.request_restart, "registration refused by the kubelet"
        )

    @staticmethod
    def _current_inode(path: Path) -> int | None:
        try:
            return os.stat(path).st_ino
        except OSError:
            return None
