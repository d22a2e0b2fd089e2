"""RealKubelet: the kubelet's own device manager, plugin watcher and pod resources server.

The peer is a small Go program under ``tests/conformance/kubelet/`` built from
``k8s.io/kubernetes`` (the release pinned in its ``go.mod``). It runs the real packages in
one process and answers JSON lines on stdin/stdout; this module starts it and gives each
operation an async method. Nothing here decides what a kubelet decides: every answer is
what the Go packages returned.

Example::

    binary = build_peer(cache_dir)
    async with RealKubelet(binary, tmp / "device-plugins") as kubelet:
        await start_my_plugin()
        await kubelet.wait_allocatable({"intel.com/sriov": 4})
        pod = await kubelet.admit("pod-1", {"c0": {"intel.com/sriov": 1}})
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sriovdp.testing.gopeer import CONFORMANCE_SOURCE, go_build, why_no_go_peer

__all__ = ["PEER_SOURCE", "RESTART_DOWNTIME", "PeerError", "RealKubelet", "RunOptions",
           "build_peer", "why_no_go"]

#: Seconds between the old kubelet process's end and the new one's start (RealKubelet.restart).
RESTART_DOWNTIME = 0.1

#: The Go module of the peer (in the source tree, not in the installed package).
PEER_SOURCE = CONFORMANCE_SOURCE / "kubelet"


class PeerError(Exception):
    """An operation the real kubelet code refused, with its error text."""


def why_no_go() -> str | None:
    """Why the peer cannot be built here, or None when it can."""
    return why_no_go_peer(PEER_SOURCE, "real-kubelet")


def build_peer(out_dir: Path) -> Path:
    """``go build`` the peer into ``out_dir``."""
    return go_build(PEER_SOURCE, out_dir, "kubeletpeer")


@dataclass(frozen=True)
class RunOptions:
    """What the device manager hands the container runtime (``DeviceRunContainerOptions``)."""

    envs: dict[str, str]
    devices: list[dict[str, Any]]
    mounts: list[dict[str, Any]]
    annotations: dict[str, str]
    cdi_devices: list[str]


class RealKubelet:
    """The real device manager on ``device_plugin_dir`` (its ``kubelet.sock`` and
    checkpoint), optionally the plugin watcher on ``plugins_registry`` and the pod
    resources server on ``pod_resources``; ``numa_nodes`` is the machine topology given
    to the manager. ``log`` receives the kubelet's klog output."""

    def __init__(self, binary: Path, device_plugin_dir: Path, *,
                 plugins_registry: Path | None = None, pod_resources: Path | None = None,
                 numa_nodes: tuple[int, ...] = (0, 1), log: Path | None = None,
                 verbosity: int = 4) -> None:
        self.binary = binary
        self.device_plugin_dir = device_plugin_dir
        self.plugins_registry = plugins_registry
        self.pod_resources = pod_resources
        self.numa_nodes = numa_nodes
        self.log_path = log or device_plugin_dir.parent / "kubelet.log"
        self.verbosity = verbosity
        self.version = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._next_id = 0
        self._lock = asyncio.Lock()
        self._pods: dict[str, dict[str, Any]] = {}  # admitted pods, by uid
        self.started_at = 0.0
        """``time.perf_counter()`` just before the last restart's new manager started."""

    @property
    def checkpoint_path(self) -> Path:
        return self.device_plugin_dir / "kubelet_internal_checkpoint"

    async def __aenter__(self) -> RealKubelet:
        self.device_plugin_dir.mkdir(parents=True, exist_ok=True)
        await self._spawn()
        await self.start()
        return self

    async def _spawn(self) -> None:
        log = self.log_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                str(self.binary), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=log, env={**os.environ, "KUBELET_PEER_V": str(self.verbosity)},
                limit=1 << 24)
        finally:
            log.close()
        hello = json.loads(await self._readline())
        self.version = hello["kubernetes"]

    async def __aexit__(self, *exc_info: object) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            await asyncio.wait_for(self._call("quit"), 10)
        except (TimeoutError, PeerError, ConnectionError):
            proc.kill()
        await proc.wait()

    def log(self) -> str:
        """The kubelet's log so far."""
        return self.log_path.read_text(errors="replace")

    async def _readline(self) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            raise ConnectionError(f"the kubelet peer exited; its log:\n{self.log()[-4000:]}")
        return line

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        async with self._lock:
            self._next_id += 1
            self._proc.stdin.write(json.dumps({"id": self._next_id, "op": op, **args}).encode()
                                   + b"\n")
            await self._proc.stdin.drain()
            answer: dict[str, Any] = json.loads(await self._readline())
        if not answer.pop("ok"):
            raise PeerError(answer["error"])
        answer.pop("id", None)
        return answer

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """A new device manager (and watcher, pod resources server) on the same dirs:
        it reads the checkpoint, deletes every socket in the device plugin dir, serves a
        fresh ``kubelet.sock``."""
        await self._call(
            "start", device_plugin_dir=str(self.device_plugin_dir),
            plugins_registry=str(self.plugins_registry) if self.plugins_registry else "",
            pod_resources=str(self.pod_resources) if self.pod_resources else "",
            numa_nodes=list(self.numa_nodes))

    async def stop(self) -> None:
        """The manager's ``Stop``: endpoints disconnected, ``kubelet.sock`` closed."""
        await self._call("stop")

    async def restart(self, downtime: float = RESTART_DOWNTIME) -> None:
        """Kubelet restart: the kubelet process ends (SIGTERM, no clean-up: its streams and
        ``kubelet.sock`` die together and the socket file stays), ``downtime`` seconds
        pass, and a new process starts a new manager on the same dirs (it reads the
        checkpoint), knowing the active pods first, as from the API server."""
        proc = self._proc
        assert proc is not None
        proc.terminate()
        await proc.wait()
        await asyncio.sleep(downtime)
        await self._spawn()
        await self._call("add_pods", pods=list(self._pods.values()))
        self.started_at = time.perf_counter()
        await self.start()

    async def deregister(self, resource: str, endpoint: Path) -> None:
        """The device plugin handler's ``DeRegisterPlugin`` (what the plugin watcher calls
        when a socket goes): the plugin's stream ends while this kubelet runs on, and its
        plugin watcher still counts the unchanged socket as registered."""
        await self._call("deregister", resource=resource, endpoint=str(endpoint))

    # -- node status ------------------------------------------------------------------------

    async def capacity(self) -> tuple[dict[str, int], dict[str, int], list[str]]:
        """One node-status sync: ``GetCapacity`` → (capacity, allocatable, removed)."""
        a = await self._call("capacity")
        return a["capacity"], a["allocatable"], a["inactive"]

    async def wait_allocatable(self, want: dict[str, int], timeout: float = 10.0) -> float:
        """Poll ``GetCapacity`` until each named resource has the wanted allocatable
        count; returns the seconds it took. Raises TimeoutError with what was seen."""
        a = await self._call("wait_allocatable", want=want, timeout_ms=int(timeout * 1000))
        if not a["reached"]:
            raise TimeoutError(f"allocatable {a['allocatable']} never reached {want}")
        return float(a["elapsed_ms"]) / 1000

    async def allocatable_devices(self) -> dict[str, list[dict[str, Any]]]:
        """``GetAllocatableDevices``: resource → [{id, health, numa}] (healthy devices)."""
        return (await self._call("allocatable_devices"))["devices"]  # type: ignore[no-any-return]

    # -- pods -------------------------------------------------------------------------------

    async def admit(self, uid: str, containers: dict[str, dict[str, int]], *,
                    name: str = "", namespace: str = "default") -> dict[str, dict[str, Any]]:
        """Admit a pod: the manager's ``Allocate`` per container (which calls the plugin's
        GetPreferredAllocation and Allocate). Returns container → {devices, allocate_ms}.
        A rejected pod raises PeerError and is not kept."""
        pod = {"uid": uid, "name": name or uid, "namespace": namespace,
               "containers": [{"name": c, "resources": r} for c, r in containers.items()]}
        answer = await self._call("admit", pod=pod)
        self._pods[uid] = pod
        return answer["containers"]  # type: ignore[no-any-return]

    async def devices(self, uid: str, container: str) -> dict[str, list[str]]:
        """``GetDevices``: the devices the manager holds for the container."""
        a = await self._call("devices", uid=uid, container=container)
        return a["devices"]  # type: ignore[no-any-return]

    async def run_options(self, uid: str, container: str) -> RunOptions:
        """``GetDeviceRunContainerOptions`` for an admitted pod's container."""
        a = await self._call("run_options", uid=uid, container=container)
        return RunOptions(envs=a["envs"], devices=a["devices"], mounts=a["mounts"],
                          annotations=a["annotations"], cdi_devices=a["cdi_devices"])

    async def remove(self, uid: str) -> None:
        """The pod is gone from the active pods; ``UpdateAllocatedDevices`` frees it."""
        self._pods.pop(uid, None)
        await self._call("remove", uid=uid)

    async def hints(self, uid: str, containers: dict[str, dict[str, int]]
                    ) -> dict[str, dict[str, list[dict[str, Any]] | None]]:
        """The manager's topology hints (``GetTopologyHints``) per container and resource:
        [{numa: [ids], preferred: bool}], or None where the resource has no topology."""
        pod = {"uid": uid, "containers": [{"name": c, "resources": r}
                                          for c, r in containers.items()]}
        return (await self._call("hints", pod=pod))["hints"]  # type: ignore[no-any-return]
