"""One pool's socket lifecycle: serve, register, notice loss, serve and register again.

Registration modes (decided once at start, as the Go plugin does):

* **watcher** — ``plugins_registry/`` exists: the socket lives there and also serves
  ``pluginregistration.Registration``; the kubelet's plugin watcher finds it, calls GetInfo,
  dials the DevicePlugin service and reports NotifyRegistrationStatus.
* **socket** — otherwise: the socket lives in ``device-plugins/`` and the endpoint calls
  ``Register`` on ``device-plugins/kubelet.sock``.

Re-registration (the socket is served anew and registered again):

* its socket file is deleted (both modes);
* socket mode: ``kubelet.sock`` is created again (a kubelet restart), or the registered
  kubelet's ListAndWatch stream ends (the kubelet never re-dials: F11), or ``Register`` is
  refused (retried with back-off; never a process exit);
* watcher mode: the registered kubelet's stream ends while that kubelet keeps running, or a
  credible ``NotifyRegistrationStatus(false)`` arrives. A kubelet restart does *not*
  re-create the socket: the new plugin watcher registers every socket it finds in
  ``plugins_registry/`` by itself, and deleting the socket under its in-flight ``GetInfo``
  would cost it a retry pass. Should no ``GetInfo`` come within ``watcher_grace`` seconds
  after the kubelet went away (or after its new ``kubelet.sock`` appeared), the socket is
  re-created anyway.

  Which of the two a stream end is, is judged ``stream_end_settle`` seconds later, never at
  once: a kubelet process that exits ends our stream a moment before its ``kubelet.sock``
  stops accepting connections. A running kubelet ends a plugin's stream when its plugin
  watcher deregisters the socket (the socket was deleted or created anew: we re-create it
  anyway, and the watcher registers the new one with a ``GetInfo``, which ends the wait) or
  when the stream breaks; in that last case its plugin watcher still counts the unchanged
  socket as registered and never comes back to it. So: no ``GetInfo`` within the settle
  time and the *same* ``kubelet.sock`` (inode and change time) still accepting a connection
  means a running kubelet that dropped us: re-create the socket, which its watcher sees as
  new. Anything else (the socket gone, refusing, or a new one) is a kubelet going away.

Only the registered kubelet's stream counts: the first ListAndWatch stream opened after this
endpoint started a registration (socket mode: just before ``Register``; watcher mode: at
``GetInfo``) is the kubelet's. grpc shows no peer identity on a unix socket (no pid, no
credentials), so order is what tells them apart; streams of any other client (a probe,
grpcurl) just end. ``NotifyRegistrationStatus`` is believed only when a ``GetInfo`` on this
socket came before it and no status answered that ``GetInfo`` yet: that is the plugin
watcher's sequence; a stray status is logged and ignored.

A pool's socket belongs to one instance at a time (:class:`~sriovdp.kubelet.socketlock.SocketLock`,
held for the life of the endpoint): a second instance waits in state ``waiting`` and takes
over when the first lets go; nothing touches a socket whose lock it does not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
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
from sriovdp.kubelet.probe import listening
from sriovdp.kubelet.servicer import (
    API_VERSION,
    OPTIONS,
    AllocateHook,
    DevicePluginServicer,
    WatcherRegistrationServicer,
)
from sriovdp.kubelet.socketlock import InstanceLock, SocketLock
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
        kubelet_root_dir: the kubelet's root dir as the *host* sees it (``--root-dir``),
            when it differs from where this process sees it: watcher-mode GetInfo reports
            socket paths under ``<kubelet_root_dir>/plugins_registry``, the path the
            kubelet dials. None: report the paths as seen here.
    """

    device_plugin_dir: Path
    plugins_registry_dir: Path
    mode: Mode
    kubelet_root_dir: Path | None = None

    @classmethod
    def detect(cls, device_plugin_dir: Path, plugins_registry_dir: Path,
               kubelet_root_dir: Path | None = None) -> KubeletDirs:
        mode = Mode.WATCHER if plugins_registry_dir.is_dir() else Mode.SOCKET
        return cls(device_plugin_dir, plugins_registry_dir, mode, kubelet_root_dir)

    @property
    def reported_socket_dir(self) -> Path:
        """Where the kubelet finds our sockets, in its own mount namespace."""
        if self.mode is Mode.WATCHER and self.kubelet_root_dir is not None:
            return self.kubelet_root_dir / "plugins_registry"
        return self.socket_dir

    @property
    def socket_dir(self) -> Path:
        """Where pool sockets live in this mode."""
        return self.plugins_registry_dir if self.mode is Mode.WATCHER else self.device_plugin_dir

    @property
    def kubelet_socket(self) -> Path:
        return self.device_plugin_dir / KUBELET_SOCKET


class State(StrEnum):
    STARTING = "starting"
    WAITING = "waiting"
    """Another instance owns the socket (holds its lock); this one takes over when it exits."""
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
        watcher_grace: watcher mode, seconds to wait for the plugin watcher to register the
            kept socket again after the kubelet went away, before re-creating it.
        stream_end_settle: watcher mode, seconds after the kubelet's stream ended before
            judging whether that kubelet keeps running (a dying kubelet's socket accepts
            connections for a moment after its streams ended).
        lock_poll: seconds between attempts to take the socket's lock while another
            instance holds it (its lock file's deletion also wakes the attempt).
        instance: this daemon instance's node-wide lock, taken before the socket's.
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
        watcher_grace: float = 10.0,
        stream_end_settle: float = 1.0,
        lock_poll: float = 0.2,
        instance: InstanceLock | None = None,
    ) -> None:
        self.feed = feed
        self.dirs = dirs
        self._facts = facts
        self._on_allocate = on_allocate
        self._register_timeout = register_timeout
        self._max_backoff = max_backoff
        self._cdi = cdi
        self._watcher_grace = watcher_grace
        self._stream_end_settle = stream_end_settle
        self._lock_poll = lock_poll
        pool = feed.value
        self.resource_name = pool.resource_name
        self.socket_path = dirs.socket_dir / pool.socket_name
        self._lock = SocketLock(self.socket_path, instance=instance)
        self.state = State.STARTING
        self.registrations = 0
        self.restarts = 0
        self._stream_ids = itertools.count(1)
        self._kubelet_stream: int | None = None
        """Id of the registered kubelet's open ListAndWatch stream."""
        self._claim_open = False
        """A registration is under way: the next stream opened is the kubelet's."""
        self._info_pending = False
        """Watcher mode: a GetInfo was answered and no registration status followed yet."""
        self._kubelet_lost_at: float | None = None
        """Watcher mode: loop time the kubelet went away (or its new kubelet.sock appeared)."""
        self._check_kubelet = False
        """Watcher mode: the kubelet's stream ended; judge whether it keeps running once the
        settle time has passed."""
        self._server: grpc.aio.Server | None = None
        self._servicer: DevicePluginServicer | None = None
        self._inode: tuple[int, int] | None = None
        self._registered_kubelet: tuple[int, int] | None = None
        self._restart = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._unserved_restarts = 0
        self._stopping = False
        self.registered = asyncio.Event()
        self.listed = asyncio.Event()
        """Set once the registered kubelet's stream got a device list from the current server
        (the kubelet's device manager writes its checkpoint after each list it gets)."""

    # --- what the daemon and the directory watcher call -------------------------------------

    @property
    def streaming(self) -> bool:
        """True while the registered kubelet holds its ListAndWatch stream open."""
        return self._kubelet_stream is not None

    def request_restart(self, reason: str) -> None:
        """Re-create the socket and register again (coalesced; safe to call repeatedly)."""
        if self._stopping or self._restart.is_set():
            return
        if not self._lock.held:  # waiting for the owner: there is nothing of ours to re-create
            self._wakeup.set()
            return
        log.warning("%s: %s; re-creating socket and registering again", self.resource_name,
                    reason, extra={"resource": self.resource_name})
        self._restart.set()
        self._wakeup.set()

    def socket_dir_event(self, name: str, created: bool) -> None:
        """A file appeared in or vanished from a kubelet directory."""
        if name == self._lock.path.name and not created:
            self._lock_file_deleted()
        elif name == self.socket_path.name and not created:
            if self._inode is not None and self._file_id(self.socket_path) != self._inode:
                self.request_restart(f"socket {self.socket_path} was deleted")
        elif name == KUBELET_SOCKET and created:
            self._kubelet_socket_created()
        elif name == "" and created:
            self.request_restart("socket directory re-created")

    def _lock_file_deleted(self) -> None:
        if not self._lock.held:
            self._wakeup.set()  # the owner let go: try now, not at the next poll
            return
        if self._lock.valid:
            return
        # Someone removed our lock file (an old kubelet's cleanup, an operator): lock a new
        # one, or step down if another instance was quicker.
        self._lock.release()
        try:
            relocked = self._lock.try_acquire()
        except OSError as exc:
            relocked, why = False, f"cannot lock it again ({exc.strerror or exc})"
        else:
            why = "another instance took it"
        if relocked:
            log.warning("%s: lock file %s was deleted; locked a new one", self.resource_name,
                        self._lock.path, extra={"resource": self.resource_name})
            return
        log.warning("%s: lock file %s was deleted and %s; stepping down", self.resource_name,
                    self._lock.path, why, extra={"resource": self.resource_name})
        self._restart.set()
        self._wakeup.set()

    def _kubelet_socket_created(self) -> None:
        if self.dirs.mode is Mode.WATCHER:
            # The new kubelet's plugin watcher registers our socket by itself; give it time.
            if self._kubelet_lost_at is not None:
                self._kubelet_lost_at = asyncio.get_running_loop().time()
                self._wakeup.set()
            return
        if self.state is State.REGISTERING:
            self._wakeup.set()  # retry now instead of after the back-off
            return
        inode = self._file_id(self.dirs.kubelet_socket)
        if inode is not None and inode == self._registered_kubelet:
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
                if not await self._own_socket():
                    break
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
                    await self._await_plugin_watcher()
                await self._restart.wait()
                served = self._servicer is not None and self._servicer.delivered
                # Stop before serving anew, never beside it: grpc unlinks a unix socket's
                # path when its server stops, even if a newer server is bound there by then.
                await self._stop_server(grace=None if not self._stopping else 0.5)
                if not self._stopping:
                    self.restarts += 1
                    await self._pace_restarts(served)
        finally:
            owned = self._lock.held
            await self._stop_server(grace=None)
            self._lock.release()  # after the socket is gone: the next owner finds a clean dir
            self.state = State.STOPPED
            if owned:
                log.info("%s: stopped, socket %s removed", self.resource_name,
                         self.socket_path, extra={"resource": self.resource_name})

    async def _own_socket(self) -> bool:
        """Hold the socket's lock, waiting while another instance holds it; False if stopped
        meanwhile."""
        if self._lock.valid:
            return True
        self._lock.release()
        waiting_since: float | None = None
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                if self._lock.try_acquire():
                    if waiting_since is not None:
                        log.info("%s: the other instance let go of %s after %.1f s; taking over",
                                 self.resource_name, self.socket_path,
                                 loop.time() - waiting_since,
                                 extra={"resource": self.resource_name})
                    return True
                problem = f"held by another sriovdp instance (pid {self._lock.holder()})"
            except OSError as exc:
                problem = f"lock {self._lock.path} unusable: {exc.strerror or exc}"
            if waiting_since is None:
                waiting_since = loop.time()
                self.state = State.WAITING
                log.warning("%s: socket %s is %s; waiting for it to be let go",
                            self.resource_name, self.socket_path, problem,
                            extra={"resource": self.resource_name})
            await self._wait_wakeup(self._lock_poll)
        return False

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
        self.registered.clear()
        self.listed.clear()
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server = grpc.aio.server()
        servicer = DevicePluginServicer(
            self.feed, self._facts, on_stream_start=self._stream_started,
            on_stream_end=self._stream_ended, on_sent=self._list_sent,
            on_allocate=self._on_allocate, cdi=self._cdi,
        )
        pb_grpc.add_DevicePluginServicer_to_server(servicer, server)
        if self.dirs.mode is Mode.WATCHER:
            reported = self.dirs.reported_socket_dir / self.socket_path.name
            reg_grpc.add_RegistrationServicer_to_server(
                WatcherRegistrationServicer(self.resource_name, str(reported),
                                            self._registration_status, self._registration_info),
                server,
            )
        server.add_insecure_port(f"unix://{self.socket_path}")  # binds: the file exists now
        self._inode = self._file_id(self.socket_path)
        self._server, self._servicer = server, servicer
        await server.start()
        reported = self.dirs.reported_socket_dir / self.socket_path.name
        log.info("starting %s device plugin endpoint at: %s (%s mode%s)", self.resource_name,
                 self.socket_path, self.dirs.mode,
                 "" if reported == self.socket_path else f"; the kubelet dials {reported}",
                 extra={"resource": self.resource_name})

    async def _stop_server(self, grace: float | None) -> None:
        server, self._server, self._servicer = self._server, None, None
        # streams of the old server ending now are not a lost kubelet
        self._kubelet_stream = None
        self._claim_open = self._info_pending = self._check_kubelet = False
        self._kubelet_lost_at = None
        self.registered.clear()
        self.listed.clear()
        if server is not None:
            await server.stop(grace)
        if self._inode is not None and self._file_id(self.socket_path) == self._inode:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        self._inode = None

    async def _register_until_done(self) -> None:
        self.state = State.REGISTERING
        backoff = 0.1
        waiting_logged = False
        while not self._restart.is_set():
            kubelet_inode = self._file_id(self.dirs.kubelet_socket)
            if kubelet_inode is None:
                if not waiting_logged:
                    log.warning("%s: waiting for %s to appear", self.resource_name,
                                self.dirs.kubelet_socket, extra={"resource": self.resource_name})
                    waiting_logged = True
                await self._wait_wakeup(None)
                continue
            if self._inode is None or self._file_id(self.socket_path) != self._inode:
                # The kubelet's start-up cleanup removed the socket we serve on: registering
                # now would make it dial a path that no longer leads to us.
                self.request_restart(f"socket {self.socket_path} is gone")
                return
            self._claim_open = True  # the kubelet opens its stream inside or right after Register
            error = await self._register_or_restart()
            if error is not None:
                self._claim_open = False
            if error is None and self._restart.is_set():
                return
            if error is None:
                self._registered_kubelet = kubelet_inode
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

    async def _await_plugin_watcher(self) -> None:
        """Watcher mode: the kubelet's plugin watcher registers the socket; re-create it only
        when the watcher will not come back to it by itself. Returns on a restart request."""
        self.state = State.REGISTERING
        loop = asyncio.get_running_loop()
        while not self._restart.is_set():
            if self._kubelet_lost_at is not None and self._check_kubelet:
                settle = self._kubelet_lost_at + self._stream_end_settle - loop.time()
                if settle > 0:  # a GetInfo meanwhile (the watcher is back) ends the wait
                    await self._wait_wakeup(settle)
                    continue
                self._check_kubelet = False
                running = await self._kubelet_still_running()
                if self._kubelet_lost_at is None:
                    continue  # the plugin watcher came back meanwhile
                if running:
                    self.request_restart(
                        f"the kubelet ended its ListAndWatch stream, still runs "
                        f"{self._stream_end_settle:g} s later and did not register "
                        f"{self.socket_path.name} again (its plugin watcher registers only a "
                        f"new socket)")
                    return
                log.info("%s: the kubelet is gone; keeping socket %s for its plugin watcher "
                         "to register again", self.resource_name, self.socket_path,
                         extra={"resource": self.resource_name})
                continue
            if self._kubelet_lost_at is None:
                await self._wait_wakeup(None)
                continue
            remaining = self._kubelet_lost_at + self._watcher_grace - loop.time()
            if remaining > 0:
                await self._wait_wakeup(remaining)
                continue
            listening = await self._kubelet_listening()
            if self._kubelet_lost_at is None:
                continue  # the plugin watcher came back meanwhile
            if not listening:
                # no kubelet yet: its plugin watcher will find the socket when it starts
                self._kubelet_lost_at = loop.time()
                continue
            self.request_restart(f"the plugin watcher did not register {self.socket_path} "
                                 f"again within {self._watcher_grace:.0f} s")
            return

    async def _kubelet_still_running(self) -> bool:
        """The kubelet we registered with still listens on the same ``kubelet.sock``."""
        kubelet = self._file_id(self.dirs.kubelet_socket)
        if kubelet is None or kubelet != self._registered_kubelet:
            return False  # gone, or a new kubelet (whose plugin watcher comes to us)
        return await self._kubelet_listening()

    async def _kubelet_listening(self) -> bool:
        """Some kubelet accepts connections on ``kubelet.sock``."""
        return await listening(self.dirs.kubelet_socket)

    async def _wait_wakeup(self, timeout: float | None) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    # --- callbacks from the servicers -------------------------------------------------------

    def _stream_started(self) -> int:
        stream = next(self._stream_ids)
        if self._claim_open:
            self._claim_open = False
            self._kubelet_stream = stream
            self._kubelet_lost_at = None
            log.debug("%s: ListAndWatch stream %d is the registered kubelet's",
                      self.resource_name, stream, extra={"resource": self.resource_name})
        else:
            log.debug("%s: ListAndWatch stream %d opened by a client other than the registered "
                      "kubelet; its end changes nothing", self.resource_name, stream,
                      extra={"resource": self.resource_name})
        return stream

    def _list_sent(self, stream: int) -> None:
        if stream == self._kubelet_stream:
            self.listed.set()

    def _stream_ended(self, stream: int) -> None:
        if stream != self._kubelet_stream or self._stopping:
            log.debug("%s: ListAndWatch stream %d of another client ended", self.resource_name,
                      stream, extra={"resource": self.resource_name})
            return
        self._kubelet_stream = None
        if self.dirs.mode is Mode.SOCKET:
            self.request_restart("the kubelet's ListAndWatch stream ended")
            return
        if self._claim_open:
            return  # a new kubelet's watcher is registering us already (its GetInfo came first)
        log.warning("%s: the kubelet's ListAndWatch stream ended", self.resource_name,
                    extra={"resource": self.resource_name})
        self.registered.clear()
        self.state = State.REGISTERING
        self._kubelet_lost_at = asyncio.get_running_loop().time()
        self._check_kubelet = True
        self._wakeup.set()

    def _registration_info(self) -> None:
        """GetInfo: the plugin watcher is registering this socket now, unless the kubelet we
        are registered with still streams from the same ``kubelet.sock`` (then it is some
        other client asking, and nothing changes)."""
        kubelet = self._file_id(self.dirs.kubelet_socket)
        if self._kubelet_stream is not None and kubelet == self._registered_kubelet:
            log.info("%s: GetInfo while the registered kubelet streams; not a new registration",
                     self.resource_name, extra={"resource": self.resource_name})
            return
        self._info_pending = True
        self._claim_open = True
        self._kubelet_lost_at = None
        self._registered_kubelet = kubelet
        self._wakeup.set()

    def _registration_status(self, registered: bool, error: str) -> None:
        if not self._info_pending:
            log.warning("%s: ignoring NotifyRegistrationStatus(registered=%s, error=%r): no "
                        "GetInfo on this socket came before it, so it is not the plugin "
                        "watcher's answer", self.resource_name, registered, error[:200],
                        extra={"resource": self.resource_name})
            return
        self._info_pending = False
        if registered:
            self.registrations += 1
            self.state = State.REGISTERED
            self.registered.set()
            log.info("Plugin: %s gets registered successfully at Kubelet", self.socket_path.name,
                     extra={"resource": self.resource_name})
            return
        log.warning("Plugin: %s failed to be registered at Kubelet: %s", self.socket_path.name,
                    error, extra={"resource": self.resource_name})
        self._claim_open = False
        asyncio.get_running_loop().call_later(
            1.0, self.request_restart, "registration refused by the kubelet"
        )

    @staticmethod
    def _file_id(path: Path) -> tuple[int, int] | None:
        """Inode and change time: a file created again may get the freed inode number."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_ino, st.st_ctime_ns
