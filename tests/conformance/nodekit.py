"""The conformance suite's node: one temp dir holding the FakeHost, the plugin's and the
kubelet's directories (both see the same paths, as on a real node), and the daemon processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.realkubelet import RealKubelet


@dataclass
class Node:
    """One node's directories: the plugin and the kubelet see the same paths."""

    work: Path
    host: FakeHost
    config: Path
    device_plugin_dir: Path
    plugins_registry: Path
    pod_resources: Path
    device_info_dir: Path
    cdi_dir: Path
    daemons: list[asyncio.subprocess.Process] = field(default_factory=list)

    def kubelet(self, binary: Path, *, watcher: bool = False) -> RealKubelet:
        if watcher:
            self.plugins_registry.mkdir(exist_ok=True)
        return RealKubelet(binary, self.device_plugin_dir,
                           plugins_registry=self.plugins_registry if watcher else None,
                           pod_resources=self.pod_resources, log=self.work / "kubelet.log")

    async def start_daemon(self, *extra: str, netns: str | None = None,
                           env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        """The installed sriovdp as a subprocess (``ip netns exec`` into ``netns``), with
        ``env`` added to this process's environment. ``--kubelet-settle 0`` unless given:
        each test's kubelet has just started."""
        settle = [] if "--kubelet-settle" in extra else ["--kubelet-settle", "0"]
        cmd = [sys.executable, "-m", "sriovdp", "--config-file", str(self.config),
               "--host-root", str(self.host.root),
               "--device-plugin-dir", str(self.device_plugin_dir),
               "--plugins-registry-dir", str(self.plugins_registry),
               "--pod-resources-socket", str(self.pod_resources),
               "--device-info-dir", str(self.device_info_dir),
               "--cdi-dir", str(self.cdi_dir), "-v", "5", *settle, *extra]
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        log = (self.work / f"sriovdp-{len(self.daemons)}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=log, stderr=log, env=None if env is None else {**os.environ, **env})
        log.close()
        self.daemons.append(proc)
        return proc

    def daemon_log(self, n: int = -1) -> str:
        index = n if n >= 0 else len(self.daemons) + n
        return (self.work / f"sriovdp-{index}.log").read_text(errors="replace")

    async def stop_daemon(self, proc: asyncio.subprocess.Process,
                          sig: int = signal.SIGTERM) -> int:
        if proc.returncode is None:
            proc.send_signal(sig)
        return await asyncio.wait_for(proc.wait(), 15)



#: The demo host's pools as the kubelet names them, with their device counts.
POOLS: dict[str, int] = {
    "intel.com/intel_sriov_netdevice": 4,
    "intel.com/intel_sriov_dpdk": 4,
    "intel.com/mlnx_sriov_rdma": 4,
    "intel.com/mlnx_sf": 2,
}


def info(envs: dict[str, str], resource: str) -> dict[str, Any]:
    """The ``PCIDEVICE_<RESOURCE>_INFO`` env the plugin sets, parsed."""
    key = "PCIDEVICE_" + resource.upper().replace(".", "_").replace("/", "_") + "_INFO"
    return json.loads(envs[key])  # type: ignore[no-any-return]
