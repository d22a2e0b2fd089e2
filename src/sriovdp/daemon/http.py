"""A tiny HTTP endpoint on the daemon's event loop: ``/healthz``, ``/readyz``, ``/metrics``.

``/healthz`` answers 200 while the process runs its loop. ``/readyz`` answers 200 when the
first pass is published, every pool is registered with the kubelet and has a ListAndWatch
stream open, no supervised task is failed and no CDI spec is pending; 503 naming each of
those otherwise. ``/metrics`` is the Prometheus text format. Only GET; one
request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sriovdp.daemon.status import Status
from sriovdp.errors import HostError

log = logging.getLogger("sriovdp.daemon")

Handler = Callable[[], tuple[int, str, bytes]]
MAX_CONNECTIONS = 32
REQUEST_DEADLINE = 5.0  # seconds for the whole request, however slowly it trickles in
MAX_HEADERS = 64
LINE_LIMIT = 8192
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


ALL_ADDRESSES = ""
"""The host of ``":8081"`` (and ``"[::]:8081"``): every address of both families, as Go's
``net.Listen`` serves them (an IPv4 and an IPv6 socket)."""


def parse_address(address: str) -> tuple[str, int]:
    """``":8081"`` and ``"[::]:8081"`` → ``("", 8081)`` (:data:`ALL_ADDRESSES`: IPv4 and
    IPv6); ``"127.0.0.1:8082"``, ``"[::1]:8082"`` → the host without brackets;
    ``"0.0.0.0:8082"`` → IPv4 only.

    Raises:
        ValueError: when the port is not a number in 1..65535.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):
        raise ValueError(f"expected [HOST]:PORT with a numeric port, got {address!r}")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port out of range in {address!r}")
    host = host.removeprefix("[").removesuffix("]")
    return (ALL_ADDRESSES if host in ("", "::") else host), number


async def start_http(address: str, routes: dict[str, Handler]) -> asyncio.Server:
    """Bind and start serving ``routes`` (path → handler returning (status, content type,
    body)); the caller closes the returned server.

    Raises:
        OSError: the address cannot be bound (in use, unknown host ...).
    """
    host, port = parse_address(address)
    pending: dict[asyncio.StreamWriter, None] = {}  # insertion order = arrival order

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Over the cap, the oldest unanswered connection is dropped, not the new one: a
        # flood of idle or slow clients must not starve the kubelet's probes.
        while len(pending) >= MAX_CONNECTIONS:
            oldest = next(iter(pending))
            del pending[oldest]
            oldest.close()
        pending[writer] = None
        try:
            async with asyncio.timeout(REQUEST_DEADLINE):
                line = await reader.readline()
                for _ in range(MAX_HEADERS):
                    if (await reader.readline()) in (b"\r\n", b"\n", b""):
                        break
                else:
                    return
            parts = line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            if not parts or parts[0] not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"only GET\n"
            elif path in routes:
                status, ctype, body = routes[path]()
            else:
                status, ctype, body = 404, "text/plain", b"not found\n"
            head = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + (body if parts and parts[0] == "GET" else b""))
            await writer.drain()
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass  # over-long lines (LimitOverrunError is a ValueError), slow or gone clients
        finally:
            pending.pop(writer, None)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # host None: one socket per family getaddrinfo offers (0.0.0.0 and ::, the IPv6 one
    # IPv6-only), so probes reach it over either on a single- or dual-stack node.
    server = await asyncio.start_server(handle, host or None, port, limit=LINE_LIMIT,
                                        backlog=64)
    log.info("serving %s on %s", ", ".join(sorted(routes)), address)
    return server


def routes(health_address: str, metrics_address: str, status: Callable[[], Status],
           metrics: Callable[[], bytes]) -> dict[str, dict[str, Handler]]:
    """Address → path → handler for the probes and metrics (an address given twice, as
    ``":8082"`` and ``"[::]:8082"``, is one server; so is ``"0.0.0.0:8082"`` beside
    ``":8082"``, which serves IPv4 too); empty addresses are off."""

    def healthz() -> tuple[int, str, bytes]:
        return 200, "text/plain", b"ok\n"

    def readyz() -> tuple[int, str, bytes]:
        reasons = status().not_ready()
        if not reasons:
            return 200, "text/plain", b"ready\n"
        return 503, "text/plain", ("not ready: " + "; ".join(reasons) + "\n").encode()

    def metrics_page() -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4; charset=utf-8", metrics()

    table: dict[tuple[str, int], dict[str, Handler]] = {}
    names: dict[tuple[str, int], str] = {}
    for address, handlers in ((health_address, {"/healthz": healthz, "/readyz": readyz}),
                              (metrics_address, {"/metrics": metrics_page})):
        if address:
            key = parse_address(address)
            if key[0] == "0.0.0.0" and (ALL_ADDRESSES, key[1]) in table:
                key = (ALL_ADDRESSES, key[1])
            elif key[0] == ALL_ADDRESSES and ("0.0.0.0", key[1]) in table:
                table[key] = table.pop(("0.0.0.0", key[1]))
                del names[("0.0.0.0", key[1])]
                names[key] = address  # served on every address: bound as the wider one
            names.setdefault(key, address)
            table.setdefault(key, {}).update(handlers)
    return {names[k]: v for k, v in table.items()}


async def serve_all(table: dict[str, dict[str, Handler]]) -> dict[str, asyncio.Server]:
    """Bind one server per address of ``table`` (all or none).

    Raises:
        HostError: an address cannot be bound (the servers already bound are closed).
    """
    servers: dict[str, asyncio.Server] = {}
    for address, handlers in table.items():
        try:
            servers[address] = await start_http(address, handlers)
        except OSError as exc:
            for server in servers.values():
                server.close()
            raise HostError(f"cannot serve health/metrics on {address}: "
                            f"{exc.strerror or exc}") from exc
    return servers
