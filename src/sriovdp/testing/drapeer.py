"""DraPeer: a real control plane and kubelet DRA manager for DRA mode's conformance tests.

The peer is a small Go program under ``tests/conformance/dra/`` built from Kubernetes' own
modules (the versions pinned in its ``go.mod``): etcd (embedded) and the kube-apiserver on
127.0.0.1, the scheduler's structured allocator, and the kubelet's DRA manager fed by its
plugin watcher. It answers JSON lines on stdin/stdout; this module starts it and gives each
operation a method. Nothing here decides what those components decide: every answer is what
the Go packages returned.

Calls block until the peer answers. A test whose own event loop serves the plugin the peer
calls (NodePrepareResources) must not block that loop: use the ``a``-prefixed methods, which
wait in a worker thread.

Example::

    binary = build_dra_peer(cache_dir)
    with DraPeer(binary, tmp / "cp") as peer:       # etcd + kube-apiserver, kubeconfig
        node_uid = peer.kubelet_start("node-1", registry, state_dir)
        ...publish slices, create a DeviceClass and a claim with the official client...
        peer.allocate("node-1", "default", ["claim-1"], pod)
        cdi_ids = await peer.aprepare(pod)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from sriovdp.testing.gopeer import CONFORMANCE_SOURCE, go_build, why_no_go_peer

__all__ = ["DRA_PEER_SOURCE", "DraPeer", "DraPeerError", "PeerPod", "build_dra_peer",
           "why_no_dra_peer"]

#: The Go module of the peer (in the source tree, not in the installed package).
DRA_PEER_SOURCE = CONFORMANCE_SOURCE / "dra"


class DraPeerError(Exception):
    """An operation the real Kubernetes code refused, with its error text."""


def why_no_dra_peer() -> str | None:
    """Why the peer cannot be built here, or None when it can."""
    return why_no_go_peer(DRA_PEER_SOURCE, "DRA")


def build_dra_peer(out_dir: Path) -> Path:
    """``go build`` the peer into ``out_dir``."""
    return go_build(DRA_PEER_SOURCE, out_dir, "drapeer")


@dataclass(frozen=True)
class PeerPod:
    """A pod as the kubelet sees it: claims by pod-level name → ResourceClaim name, and
    containers by name → the pod-level claim names they use."""

    name: str
    uid: str
    claims: dict[str, str]
    containers: dict[str, list[str]] = field(default_factory=dict)
    namespace: str = "default"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "uid": self.uid, "namespace": self.namespace,
            "claims": [{"name": n, "claim_name": c} for n, c in self.claims.items()],
            "containers": [{"name": n, "claims": c} for n, c in self.containers.items()],
        }


class DraPeer:
    """The peer process: :meth:`start` brings up etcd and the kube-apiserver under
    ``work_dir`` (which then holds ``kubeconfig``); ``log`` receives the Go components'
    logs (default ``work_dir/peer.log``)."""

    def __init__(self, binary: Path, work_dir: Path, *, log: Path | None = None,
                 verbosity: int = 2) -> None:
        self.binary = binary
        self.work_dir = work_dir
        self.log_path = log or work_dir / "peer.log"
        self.verbosity = verbosity
        self.kubeconfig: Path | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None
        self._next = 0
        self._lock = threading.Lock()

    def start(self, timeout: float = 180.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("a")
        self._proc = subprocess.Popen(
            [str(self.binary), f"-v={self.verbosity}"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1)
        answer = self.call({"op": "start", "dir": str(self.work_dir)}, timeout=timeout)
        self.kubeconfig = Path(answer["kubeconfig"])

    def call(self, request: dict[str, Any], timeout: float = 120.0) -> Any:
        """One operation; returns its result or raises :class:`DraPeerError`."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise DraPeerError("the peer is not running")
        with self._lock:
            self._next += 1
            request = {**request, "id": self._next}
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            try:
                line = proc.stdout.readline()
            finally:
                timer.cancel()
        if not line:
            raise DraPeerError(f"the peer exited during {request['op']} "
                               f"(rc {proc.poll()}; see {self.log_path})")
        answer = json.loads(line)
        if "error" in answer:
            raise DraPeerError(answer["error"])
        return answer.get("result")

    async def acall(self, request: dict[str, Any], timeout: float = 120.0) -> Any:
        return await asyncio.to_thread(self.call, request, timeout)

    def version(self) -> dict[str, str]:
        """The module versions the peer was built from."""
        result: dict[str, str] = self.call({"op": "version"})
        return result

    def kubelet_start(self, node_name: str, plugins_registry: Path, state_dir: Path) -> str:
        """Register ``node_name`` and start the DRA manager (checkpoint in ``state_dir``)
        and its plugin watcher on ``plugins_registry``; returns the Node's UID."""
        result = self.call({"op": "kubelet_start", "node_name": node_name,
                            "plugins_registry": str(plugins_registry),
                            "state_dir": str(state_dir)})
        return str(result["node_uid"])

    def kubelet_stop(self) -> None:
        self.call({"op": "kubelet_stop"})

    def allocate(self, node_name: str, namespace: str, claims: list[str],
                 pod: PeerPod | None = None) -> list[dict[str, Any]] | None:
        """Allocate ``claims`` on ``node_name`` with the scheduler's allocator and write the
        results (and ``pod`` in reservedFor) into their status; returns the statuses, or
        None when the allocator found no allocation (unschedulable)."""
        result = self.call({"op": "allocate", "node_name": node_name, "namespace": namespace,
                            "claims": claims, "pod": pod.to_json() if pod else None})
        if not result["allocated"]:
            return None
        statuses: list[dict[str, Any]] = result["status"]
        return statuses

    async def aprepare(self, pod: PeerPod) -> dict[str, list[str]]:
        """The DRA manager's PrepareResources for ``pod``; returns the CDI device ids each
        container gets."""
        result = await self.acall({"op": "prepare", "pod": pod.to_json()})
        devices: dict[str, list[str]] = result["cdi_devices"]
        return devices

    async def aunprepare(self, pod: PeerPod) -> None:
        """The DRA manager's UnprepareResources for ``pod``."""
        await self.acall({"op": "unprepare", "pod": pod.to_json()})

    def cdi_resolve(self, spec_dir: Path, cdi_devices: list[str]) -> dict[str, Any]:
        """What a container runtime makes of ``cdi_devices`` with the CDI library's cache on
        ``spec_dir`` (every spec there loaded and validated, each id resolved): the edits
        ``{"env": [...], "device_nodes": [{"path", "hostPath", "type"}], "mounts": [...]}``
        in CDI's order. Raises :class:`DraPeerError` for an invalid spec or unknown id."""
        result: dict[str, Any] = self.call({"op": "cdi_resolve", "spec_dir": str(spec_dir),
                                            "cdi_devices": cdi_devices})
        return result

    async def apod_health(self, pod: PeerPod) -> dict[str, dict[str, str]]:
        """What the DRA manager puts in ``pod``'s container statuses
        (``allocatedResourcesStatus``): container → resource id (the CDI id) → health."""
        result = await self.acall({"op": "pod_health", "pod": pod.to_json()})
        out: dict[str, dict[str, str]] = {}
        for container, statuses in (result or {}).items():
            out[container] = {r["resourceID"]: r["health"]
                              for st in statuses or [] for r in st.get("resources") or []}
        return out

    async def ahealth_updates(self) -> list[tuple[int, list[str]]]:
        """The DRA manager's update channel (``Manager.Updates``, which the kubelet's sync
        loop reads to sync the status of pods whose devices' health changed), read by the
        peer as the kubelet does: the messages since the last call, each as (arrival,
        wall-clock Unix nanoseconds; the pod UIDs)."""
        result = await self.acall({"op": "health_updates"})
        return [(int(u["at_unix_nano"]), list(u["pods"] or [])) for u in result or []]

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                self.call({"op": "stop"}, timeout=60)
        except DraPeerError:
            pass
        finally:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._proc = None
            if self._log is not None:
                self._log.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
