"""Two daemon processes on one node (issue 11 item 3): one owns each pool's socket, the other
waits and takes over when the first exits."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from daemon_kit import free_port, http_get

from sriovdp.testing import eventually
from sriovdp.testing.demo import build_demo_host
from sriovdp.testing.kubelet import KubeletEmulator

NET = "intel.com/net"
DPDK = "intel.com/dpdk"
CONFIG = {"resourceList": [
    {"resourceName": "net", "selectors": [{"drivers": ["iavf"], "pfNames": ["ens785f0"]}]},
    {"resourceName": "dpdk", "selectors": [{"drivers": ["vfio-pci"]}]},
]}


async def _ready(daemon: Daemon) -> bool:
    return (await daemon.readyz())[0] == 200


class Daemon:
    """``python -m sriovdp`` with its stderr collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, work: Path, host_root: Path) -> Daemon:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sriovdp", "--config-file", str(work / "config.json"),
            "--host-root", str(host_root), "--device-plugin-dir", str(work / "dp"),
            "--plugins-registry-dir", str(work / "no-registry"),
            "--device-info-dir", str(work / "devinfo"), "--cdi-dir", str(work / "cdi"),
            "--pod-resources-socket", str(work / "pr.sock"),
            "--health-address", f"127.0.0.1:{port}", "-logtostderr",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        return cls(proc, port)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.lines.append(line.decode(errors="replace"))
            self._changed.set()

    async def wait_line(self, text: str, timeout: float = 15.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                self._changed.clear()
                await self._changed.wait()

    async def readyz(self) -> tuple[int, str]:
        return await http_get(self.port, "/readyz")

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 15)
        await asyncio.wait_for(self._reader, 5)
        return code


def accepted(kubelet: KubeletEmulator, resource: str) -> int:
    return sum(1 for r in kubelet.registrations if r.resource == resource and r.accepted)


async def test_second_instance_waits_then_takes_over_cleanly_when_the_first_exits(
    workdir: Path,
) -> None:
    host = build_demo_host(workdir / "host")
    (workdir / "config.json").write_text(json.dumps(CONFIG))
    sock = workdir / "dp" / "intel.com_net.sock"
    async with KubeletEmulator(workdir / "dp") as kubelet:
        first = await Daemon.start(workdir, host.root)
        second: Daemon | None = None
        try:
            for name in (NET, DPDK):
                await kubelet.wait_capacity(name, (4, 4), timeout=20)
            inode = sock.stat().st_ino
            second = await Daemon.start(workdir, host.root)
            line = await second.wait_line("serves this node; waiting for it to exit")
            assert f"pid {first.proc.pid}" in line

            async def second_names_the_first() -> bool:
                status, body = await second.readyz()
                return status == 503 and (f"waiting for another sriovdp instance (pid "
                                          f"{first.proc.pid}) to exit") in body

            await eventually(second_names_the_first, timeout=10, what="/readyz of the second")
            await asyncio.sleep(0.5)  # the second instance touches nothing meanwhile
            assert sock.stat().st_ino == inode
            assert (accepted(kubelet, NET), accepted(kubelet, DPDK)) == (1, 1)
            assert kubelet.capacity(NET) == (4, 4) and (await first.readyz())[0] == 200

            assert await first.stop() == 0
            for name in (NET, DPDK):
                await kubelet.wait_registered(name, count=2, timeout=10)
                await kubelet.wait_capacity(name, (4, 4), timeout=10)
            await second.wait_line("exited; taking over")
            # the socket is the second instance's now (tmpfs may reuse the inode number, so
            # the log line and the second registration are the evidence, not st_ino)
            assert sock.is_socket()
            assert (accepted(kubelet, NET), accepted(kubelet, DPDK)) == (2, 2)
            await eventually(lambda: _ready(second), timeout=10, what="second instance ready")
        finally:
            await first.stop()
            if second is not None:
                assert await second.stop() == 0
        assert sorted(p.name for p in (workdir / "dp").iterdir() if p.name != "kubelet.sock"
                      and not p.name.startswith("kubelet_internal")) == [".sriovdp"]
        assert list((workdir / "dp" / ".sriovdp").iterdir()) == []  # the lock dir stays


async def test_waiting_instance_exits_without_touching_the_owners_socket(workdir: Path) -> None:
    host = build_demo_host(workdir / "host")
    (workdir / "config.json").write_text(json.dumps(CONFIG))
    sock = workdir / "dp" / "intel.com_net.sock"
    async with KubeletEmulator(workdir / "dp") as kubelet:
        first = await Daemon.start(workdir, host.root)
        try:
            await kubelet.wait_capacity(NET, (4, 4), timeout=20)
            inode = sock.stat().st_ino
            second = await Daemon.start(workdir, host.root)
            await second.wait_line("serves this node; waiting for it to exit")
            assert await second.stop() == 0
            assert sock.stat().st_ino == inode
            assert (workdir / "dp" / ".intel.com_net.sock.lock").exists()
            assert accepted(kubelet, NET) == 1 and kubelet.is_connected(NET)
            assert kubelet.capacity(NET) == (4, 4) and (await first.readyz())[0] == 200
        finally:
            assert await first.stop() == 0
        assert not sock.exists() and not (workdir / "dp" / ".intel.com_net.sock.lock").exists()
