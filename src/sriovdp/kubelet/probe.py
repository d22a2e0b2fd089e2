"""Whether something accepts connections on a unix socket (a socket file can outlive the
process that served it: a kubelet killed without clean-up leaves ``kubelet.sock``)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path


async def listening(socket: Path, *, timeout: float = 1.0) -> bool:
    """Some process accepts a connection on ``socket`` within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_unix_connection(str(socket))
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
