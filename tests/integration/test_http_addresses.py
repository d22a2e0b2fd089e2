"""Which addresses the health and metrics endpoints listen on (real sockets on loopback)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sriovdp.daemon.http import parse_address, routes, serve_all, start_http


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6 = _has_ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not IPV6, reason="no IPv6 loopback on this machine")


def free_port() -> int:
    """A port free on both loopbacks (so a dual-stack bind does not collide)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not IPV6:
            return port
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                s6.bind(("::1", port))
            return port
        except OSError:
            continue


async def get(host: str, port: int, path: str = "/healthz") -> int:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return int(data.split()[1])


async def reaches(host: str, port: int) -> bool:
    try:
        return await get(host, port) == 200
    except OSError:
        return False


HEALTH = {"/healthz": lambda: (200, "text/plain", b"ok\n")}


@pytest.mark.parametrize("spelling", [":{port}", "[::]:{port}"])
async def test_health_answers_on_ipv4_and_ipv6_when_the_host_is_empty_or_wildcard(
    spelling: str,
) -> None:
    port = free_port()
    server = await start_http(spelling.format(port=port), HEALTH)
    try:
        assert await reaches("127.0.0.1", port)
        if IPV6:
            assert await reaches("::1", port)
    finally:
        server.close()
        await server.wait_closed()


@needs_ipv6
async def test_health_answers_only_on_ipv6_loopback_when_given_it() -> None:
    port = free_port()
    server = await start_http(f"[::1]:{port}", HEALTH)
    try:
        assert await reaches("::1", port)
        assert not await reaches("127.0.0.1", port)
    finally:
        server.close()
        await server.wait_closed()


async def test_health_answers_only_on_ipv4_when_given_0_0_0_0() -> None:
    port = free_port()
    server = await start_http(f"0.0.0.0:{port}", HEALTH)
    try:
        assert await reaches("127.0.0.1", port)
        if IPV6:
            assert not await reaches("::1", port)
    finally:
        server.close()
        await server.wait_closed()


def test_address_parses_to_every_address_when_the_host_is_empty_or_wildcard() -> None:
    assert parse_address(":8081") == ("", 8081)
    assert parse_address("[::]:8081") == ("", 8081)
    assert parse_address("[::1]:8081") == ("::1", 8081)
    assert parse_address("0.0.0.0:8081") == ("0.0.0.0", 8081)


async def test_one_server_serves_both_when_health_and_metrics_share_a_wildcard_port() -> None:
    port = free_port()
    table = routes(f"0.0.0.0:{port}", f":{port}", status=lambda: None,  # type: ignore[arg-type]
                   metrics=lambda: b"")
    assert list(table) == [f":{port}"]
    assert set(table[f":{port}"]) == {"/healthz", "/readyz", "/metrics"}
    servers = await serve_all(table)
    try:
        assert await get("127.0.0.1", port, "/metrics") == 200
        if IPV6:
            assert await get("::1", port, "/metrics") == 200
    finally:
        for server in servers.values():
            server.close()
            await server.wait_closed()
