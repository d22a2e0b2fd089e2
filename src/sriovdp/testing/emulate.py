"""An emulated kubelet to run the daemon against off a node, until Ctrl-C.

    python -m sriovdp.testing.emulate --device-plugin-dir DIR [--pod-resources-socket PATH]
                                      [--plugins-registry-dir DIR] [--allocate RESOURCE[=N]]

Serves ``DIR/kubelet.sock`` (the device plugin Registration service) and, with
``--pod-resources-socket``, the pod resources API (no pods: nothing is held), with the
:class:`~sriovdp.testing.kubelet.KubeletEmulator`; with ``--plugins-registry-dir`` it also
runs the plugin watcher there (the daemon puts its pool sockets there when that directory
exists). It prints each registration and each pool's device count as it changes, one line
each, on stdout. With ``--allocate RESOURCE[=N]`` (repeatable) it admits a pod asking for N
devices (default 1) of that resource once the pool offers that many healthy ones, as the
kubelet does (GetPreferredAllocation, then Allocate), and prints what its container would
get: the device ids, env, device nodes, mounts, annotations and CDI devices. The pod keeps
them (the pod resources API lists it) until the emulator stops.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from sriovdp.kubelet.api import deviceplugin_pb2
from sriovdp.testing.kubelet import AdmissionError, ContainerAllocation, KubeletEmulator

POLL = 0.25  # seconds between looks at what the emulator received


def _say(text: str) -> None:
    print(text, flush=True)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def container_lines(answer: deviceplugin_pb2.ContainerAllocateResponse) -> list[str]:
    """What a container gets from one Allocate answer, one indented line each: env, device
    nodes, mounts, annotations, CDI devices."""
    return ([f"  env {name}={value}" for name, value in sorted(answer.envs.items())]
            + [f"  device {d.host_path} -> {d.container_path} ({d.permissions})"
               for d in answer.devices]
            + [f"  mount {m.host_path} -> {m.container_path}"
               f"{' (read-only)' if m.read_only else ''}" for m in answer.mounts]
            + [f"  annotation {key}={value}"
               for key, value in sorted(answer.annotations.items())]
            + [f"  CDI device {cdi.name}" for cdi in answer.cdi_devices])


def _say_allocation(pod: str, got: ContainerAllocation) -> None:
    _say(f"allocated {got.resource} to pod {pod}: {', '.join(got.device_ids)}")
    for line in container_lines(got.response):
        _say(line)


class _Reporter:
    """Prints what is new in the emulator's records since the last look, and admits the
    pods asked for once their pools offer enough healthy devices."""

    def __init__(self, kubelet: KubeletEmulator,
                 allocate: Sequence[tuple[str, int]] = ()) -> None:
        self.kubelet = kubelet
        self.seen_registrations = 0
        self.shown: dict[str, tuple[int, int]] = {}
        self.pending = list(allocate)
        self.admitted = 0

    async def admit_pending(self) -> None:
        for resource, count in list(self.pending):
            devices = self.kubelet.devices(resource)
            if sum(1 for d in devices.values() if d.healthy) < count:
                continue
            self.pending.remove((resource, count))
            self.admitted += 1
            pod = f"try-{self.admitted}"
            try:
                got = await self.kubelet.admit(resource, count, pod=pod)
            except AdmissionError as exc:
                _say(f"pod {pod} asking for {count} {resource} not admitted: {exc}")
                continue
            _say_allocation(pod, got)

    def report(self) -> None:
        kubelet = self.kubelet
        for reg in kubelet.registrations[self.seen_registrations:]:
            if reg.accepted:
                _say(f"registered {reg.resource} ({reg.mode} mode, endpoint {reg.socket_path})")
            else:
                _say(f"refused {reg.resource}: {reg.error}")
        self.seen_registrations = len(kubelet.registrations)
        for resource in sorted(kubelet.streams):
            devices = kubelet.devices(resource)
            counts = (len(devices), sum(1 for d in devices.values() if d.healthy))
            if self.shown.get(resource) != counts:
                self.shown[resource] = counts
                _say(f"{resource}: {_plural(counts[0], 'device')}, {counts[1]} healthy "
                     f"({', '.join(sorted(devices)) or 'none'})")


async def serve(device_plugin_dir: Path, *, pod_resources_socket: Path | None = None,
                plugins_registry_dir: Path | None = None,
                allocate: Sequence[tuple[str, int]] = (),
                stop: asyncio.Event | None = None) -> None:
    """Run the emulated kubelet until ``stop`` is set (or SIGINT/SIGTERM when None); paths
    absolute (gRPC reads ``unix:dp/kubelet.sock`` as a host name)."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    kubelet = KubeletEmulator(device_plugin_dir, plugins_registry_dir,
                              watcher=plugins_registry_dir is not None,
                              pod_resources_socket=pod_resources_socket)
    async with kubelet:
        _say(f"emulated kubelet serving {kubelet.kubelet_socket}")
        if kubelet.pod_resources_socket is not None:
            pods = "the --allocate pods" if allocate else "no pods"
            _say(f"pod resources API ({pods}) at {kubelet.pod_resources_socket}")
        if plugins_registry_dir is not None:
            _say(f"plugin watcher on {kubelet.plugins_registry_dir}")
        _say("waiting for device plugins; Ctrl-C stops")
        reporter = _Reporter(kubelet, allocate)
        while not stop.is_set():
            reporter.report()
            await reporter.admit_pending()
            try:
                await asyncio.wait_for(stop.wait(), POLL)
            except TimeoutError:
                pass
        reporter.report()
    _say("emulated kubelet stopped")


def _allocation(text: str) -> tuple[str, int]:
    resource, _, count = text.partition("=")
    if "/" not in resource or (count and not (count.isdigit() and int(count) > 0)):
        raise argparse.ArgumentTypeError(
            f"expected RESOURCE[=N] like intel.com/intel_sriov_netdevice=2, got {text!r}")
    return resource, int(count or 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sriovdp.testing.emulate",
        description="An emulated kubelet (device plugin registration, ListAndWatch, pod "
                    "resources) for trying the daemon off a node; runs until Ctrl-C.")
    parser.add_argument("--device-plugin-dir", metavar="DIR", type=Path, required=True,
                        help="where kubelet.sock is served: the daemon's --device-plugin-dir "
                             "(created if missing; its sockets are removed at start, as the "
                             "kubelet does)")
    parser.add_argument("--pod-resources-socket", metavar="PATH", type=Path, default=None,
                        help="also serve the pod resources API here (no pods): the daemon's "
                             "--pod-resources-socket; default: not served")
    parser.add_argument("--plugins-registry-dir", metavar="DIR", type=Path, default=None,
                        help="also run the plugin watcher here (created if missing, so the "
                             "daemon started afterwards with this --plugins-registry-dir puts "
                             "its sockets there); default: socket-mode registration only")
    parser.add_argument("--allocate", metavar="RESOURCE[=N]", type=_allocation,
                        action="append", default=[],
                        help="admit a pod asking for N (default 1) devices of RESOURCE (e.g. "
                             "intel.com/intel_sriov_netdevice=2) once its pool offers them, "
                             "and print what its container gets; repeatable")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    def absolute(path: Path | None) -> Path | None:
        return None if path is None else path.absolute()

    asyncio.run(serve(args.device_plugin_dir.absolute(),
                      pod_resources_socket=absolute(args.pod_resources_socket),
                      plugins_registry_dir=absolute(args.plugins_registry_dir),
                      allocate=args.allocate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
