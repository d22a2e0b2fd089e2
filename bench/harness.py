"""Shared set-up of the end-to-end benches: a scaled FakeHost (8 PFs x 256 VFs on tmpfs,
8 pools, one per PF), the KubeletEmulator, and the daemon, in one process over real unix
sockets. Benches print figures; they assert nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sriovdp.daemon.reconciler import Reconciler
from sriovdp.daemon.settings import Settings
from sriovdp.host.links import LinkSource
from sriovdp.model.config import parse_config
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator
from sriovdp.testing.realkubelet import RealKubelet, build_peer, why_no_go

PFS = 8


def summary(samples: list[float]) -> str:
    """``median X ms  p99 Y ms  max Z ms (n=N)`` of samples in seconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"median {statistics.median(ordered) * 1e3:7.2f} ms  p99 {p99 * 1e3:7.2f} ms  "
            f"max {ordered[-1] * 1e3:7.2f} ms  (n={len(ordered)})")


def pool_names() -> list[str]:
    return [f"intel.com/pf{i}" for i in range(PFS)]


@dataclass
class Rig:
    host: FakeHost
    settings: Settings
    kubelet: KubeletEmulator
    daemon: Reconciler


@dataclass
class RealRig:
    host: FakeHost
    settings: Settings
    kubelet: RealKubelet
    daemon: Reconciler


def peer_binary() -> Path:
    """The real-kubelet peer (tests/conformance/kubelet), built with ``go build``."""
    why = why_no_go()
    if why is not None:
        raise SystemExit(f"--real-kubelet: {why}")
    default = Path(tempfile.gettempdir()) / "sriovdp-kubelet-peer"
    return build_peer(Path(os.environ.get("KUBELET_PEER_BUILD_DIR", default)))


def _shm() -> Path | None:
    """``/dev/shm`` when there is one: the scaled host's tree in memory."""
    return Path("/dev/shm") if Path("/dev/shm").is_dir() else None


@contextlib.asynccontextmanager
async def real_rig(vfs_per_pf: int = 256, *, links: LinkSource | None = None,
                   watcher: bool = False, verbosity: int = 0,
                   freeze_gc: bool = True) -> AsyncIterator[RealRig]:
    """The same daemon and host, registered with the kubelet's own device manager (and
    plugin watcher when ``watcher``) from the Go peer; all pools at full allocatable.
    ``freeze_gc``: as the daemon process does (see :func:`rig`)."""
    binary = peer_binary()
    shm = _shm()
    work = Path(tempfile.mkdtemp(prefix="sdpb-", dir=shm))
    sock_dir = Path(tempfile.mkdtemp(prefix="sdpb-", dir="/tmp"))
    try:
        host = FakeHost.scaled(work / "host", pfs=PFS, vfs_per_pf=vfs_per_pf)
        config = {"resourceList": [{"resourceName": f"pf{i}",
                                    "selectors": [{"pfNames": [f"ens{i}f0"]}]}
                                   for i in range(PFS)]}
        (work / "config.json").write_text(json.dumps(config))
        registry = sock_dir / "reg"
        if watcher:
            registry.mkdir()
        settings = Settings(host=host.paths, config_file=work / "config.json",
                            device_info_dir=work / "devinfo", cdi_dir=work / "cdi",
                            device_plugin_dir=sock_dir / "dp", plugins_registry_dir=registry,
                            pod_resources_socket=sock_dir / "pr.sock", resync_interval=30.0)
        settings.device_plugin_dir.mkdir()
        daemon = Reconciler(settings, parse_config(json.dumps(config)), links=links,
                            freeze_gc=freeze_gc)
        async with RealKubelet(binary, settings.device_plugin_dir,
                               plugins_registry=registry if watcher else None,
                               pod_resources=settings.pod_resources_socket,
                               log=work / "kubelet.log", verbosity=verbosity) as kubelet:
            task = asyncio.create_task(daemon.run())
            try:
                await kubelet.wait_allocatable(dict.fromkeys(pool_names(), vfs_per_pf), 60)
                yield RealRig(host, settings, kubelet, daemon)
            finally:
                daemon.stop()
                await asyncio.wait_for(task, 30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sock_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def rig(vfs_per_pf: int = 256, *, links: LinkSource | None = None,
              resync_interval: float = 30.0, freeze_gc: bool = True) -> AsyncIterator[Rig]:
    """A running daemon on a scaled host, registered with the emulator (all pools streaming).

    ``freeze_gc``: the daemon moves what start-up made out of the garbage collector's reach
    after its first publication, as ``sriovdp`` (the CLI) runs it; without, a collection of
    the older generations now and then walks every device object and pauses the loop."""
    shm = _shm()
    work = Path(tempfile.mkdtemp(prefix="sdpb-", dir=shm))
    sock_dir = Path(tempfile.mkdtemp(prefix="sdpb-", dir="/tmp"))  # short unix socket paths
    try:
        host = FakeHost.scaled(work / "host", pfs=PFS, vfs_per_pf=vfs_per_pf)
        config = {"resourceList": [{"resourceName": f"pf{i}",
                                    "selectors": [{"pfNames": [f"ens{i}f0"]}]}
                                   for i in range(PFS)]}
        (work / "config.json").write_text(json.dumps(config))
        settings = Settings(host=host.paths, config_file=work / "config.json",
                            device_info_dir=work / "devinfo", cdi_dir=work / "cdi",
                            device_plugin_dir=sock_dir / "dp",
                            plugins_registry_dir=sock_dir / "none",
                            pod_resources_socket=sock_dir / "pr.sock",
                            resync_interval=resync_interval)
        settings.device_plugin_dir.mkdir()
        daemon = Reconciler(settings, parse_config(json.dumps(config)), links=links,
                            freeze_gc=freeze_gc)
        async with KubeletEmulator(settings.device_plugin_dir) as kubelet:
            task = asyncio.create_task(daemon.run())
            try:
                for name in pool_names():
                    await kubelet.wait_capacity(name, (vfs_per_pf, vfs_per_pf), timeout=30)
                yield Rig(host, settings, kubelet, daemon)
            finally:
                daemon.stop()
                await asyncio.wait_for(task, 30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sock_dir, ignore_errors=True)
