"""What the whole-daemon tests share: the demo host's pools, settings under a work dir, a
running daemon, and small file and HTTP helpers. Imported by the test modules here (it is no
test module itself); fixtures live in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sriovdp.daemon.reconciler import Reconciler
from sriovdp.daemon.settings import Settings
from sriovdp.model.config import parse_config
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.waiting import eventually

NET = "intel.com/net"
DPDK = "intel.com/dpdk"
CONFIG = {"resourceList": [
    {"resourceName": "net", "selectors": [{"drivers": ["iavf"], "pfNames": ["ens785f0"]}]},
    {"resourceName": "dpdk", "selectors": [{"drivers": ["vfio-pci"]}]},
]}
ALL_NET = {f"0000:3b:02.{i}" for i in range(4)}
ALL_DPDK = {f"0000:3b:02.{i}" for i in range(4, 8)}


def settings_for(work: Path, host: FakeHost, *, watcher: bool = False) -> Settings:
    dp = work / "dp"
    reg = work / "reg"
    dp.mkdir(exist_ok=True)
    if watcher:
        reg.mkdir(exist_ok=True)
    return Settings(host=host.paths, config_file=work / "config.json", device_plugin_dir=dp,
                    plugins_registry_dir=reg, device_info_dir=work / "devinfo",
                    cdi_dir=work / "cdi", pod_resources_socket=work / "pr" / "kubelet.sock",
                    kubelet_settle=0.0)  # each test's emulator has just started


@contextlib.asynccontextmanager
async def running(settings: Settings, config: dict[str, Any] = CONFIG, *,
                  published: bool = True) -> AsyncIterator[Reconciler]:
    """A daemon running on the loop; entered once it has published its first pass, or, with
    ``published=False`` (no kubelet yet: the first publication waits for it), once its
    endpoints are open or it waits for another instance to exit."""
    daemon = Reconciler(settings, parse_config(json.dumps(config)))
    task = asyncio.create_task(daemon.run())
    try:
        if published:
            await asyncio.wait_for(daemon.ready.wait(), 5)
        else:
            await eventually(lambda: bool(daemon.endpoints) or any(
                "another sriovdp instance" in p for p in daemon.status().problems),
                what="endpoints open, or waiting for another instance")
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)


def write(path: Path, doc: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    os.replace(tmp, path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body
