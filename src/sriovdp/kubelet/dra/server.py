"""The DRA plugin's two sockets: ``dra.sock`` (the services) and the registration socket.

Paths, as the kubelet expects them (``<kubelet root>`` = ``/var/lib/kubelet``)::

    <kubelet root>/plugins/<driver>/dra.sock            DRAPlugin, DRAResourceHealth
    <kubelet root>/plugins_registry/<driver>-reg.sock   pluginregistration.Registration

The kubelet's plugin watcher finds the registration socket, calls GetInfo, dials the
endpoint it names and reports NotifyRegistrationStatus. A kubelet restart scans the
registry directory again, so no re-registration is needed while the socket file exists;
noticing its deletion (as :mod:`sriovdp.kubelet.endpoint` does for device plugin sockets)
is left to the daemon wiring.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc

from sriovdp.kubelet.api import pluginregistration_pb2_grpc as reg_grpc
from sriovdp.kubelet.dra.preparer import ClaimPreparer
from sriovdp.kubelet.dra.servicer import (
    HEALTH_RESEND_SECONDS,
    DraRegistrationServicer,
    add_dra_services,
)
from sriovdp.kubelet.feed import LatestValue
from sriovdp.model.dra.slices import DraDevice

log = logging.getLogger("sriovdp.kubelet.dra")


def plugin_socket(plugins_dir: Path, driver: str) -> Path:
    """``<plugins dir>/<driver>/dra.sock``."""
    return plugins_dir / driver / "dra.sock"


def registration_socket(plugins_registry_dir: Path, driver: str) -> Path:
    """``<plugins_registry>/<driver>-reg.sock``."""
    return plugins_registry_dir / f"{driver}-reg.sock"


class DraPluginServer:
    """Serves the DRA services on ``dra.sock`` and registration on its own socket.

    Stale socket files are removed before listening; both are removed on :meth:`stop`.
    Use as ``async with DraPluginServer(...) as server:``.

    Args:
        preparer: prepares and unprepares claims.
        socket: ``dra.sock``'s path as this process sees it.
        registration: the registration socket's path.
        endpoint: ``dra.sock``'s host path for GetInfo (differs from ``socket`` when the
            kubelet directory is mounted elsewhere in the container); default ``socket``.
        health: the node's DRA devices; when given, the health services are served too.
        on_status: NotifyRegistrationStatus callback.
        health_resend: seconds between two full health reports (changes go at once).
    """

    def __init__(
        self,
        preparer: ClaimPreparer,
        *,
        socket: Path,
        registration: Path,
        endpoint: str | None = None,
        health: LatestValue[Mapping[str, DraDevice]] | None = None,
        on_status: Callable[[bool, str], None] | None = None,
        health_resend: float = HEALTH_RESEND_SECONDS,
    ) -> None:
        self.socket = socket
        self.registration = registration
        self._server = grpc.aio.server()
        services = add_dra_services(self._server, preparer, health,
                                    health_resend=health_resend)
        reg_grpc.add_RegistrationServicer_to_server(
            DraRegistrationServicer(preparer.driver, endpoint or str(socket),
                                    services=services, on_status=on_status),
            self._server)

    async def start(self) -> None:
        for path in (self.socket, self.registration):
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._server.add_insecure_port(f"unix:{path}")
        await self._server.start()
        log.info("DRA plugin serving on %s, registration on %s", self.socket, self.registration)

    async def stop(self, grace: float | None = 1.0) -> None:
        # the registration socket goes first, so the kubelet stops using us before we stop
        with contextlib.suppress(FileNotFoundError):
            self.registration.unlink()
        await self._server.stop(grace)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
