"""DRA benchmark against a real kube-apiserver and the kubelet's real DRA manager.

Uses the DRA conformance peer (``tests/conformance/dra``, built with ``go build``; needs Go):
etcd and the kube-apiserver on 127.0.0.1, the scheduler's structured allocator and the
kubelet's DRA manager. The host is a scaled FakeHost, 8 PFs x 256 VFs = 2,048 VFs, one pool
per PF. Prints:

* publish: the first ``SlicePublisher.publish`` of all VFs to a new node (16 creates), each
  of N runs, and the floor: listing the same slices back from the apiserver; ratio;
* health flip: one VF goes Unhealthy (then back), ``publish`` until the apiserver has
  acknowledged the replaced slices (replaces only: the publisher knows the versions its
  last writes stored) — the latency of a carrier change to the ResourceSlice at the
  apiserver, minus the link monitor's own — under ``withdraw`` and ``taint``, with the
  number of slices written;
* prepare: the kubelet DRA manager's PrepareResources for a pod with a one-VF claim
  (allocated by the structured allocator), through our ``DraPluginServer`` (claim read from
  the apiserver, CDI spec and checkpoint written), and the floor: one claim GET with the
  official client; unprepare.

With ``--daemon`` (root) it measures through the daemon **process** instead: the whole bench
moves into a network namespace of its own (``unshare(CLONE_NEWNET)``; gone when it exits,
the host's links are never touched), where the peer serves on 127.0.0.1 and PF ``ens0f0`` of
the same scaled FakeHost is a veth. ``sriovdp run --dra=all`` runs as a subprocess on that
host against the real apiserver (``--kubeconfig``), registered with the peer's kubelet DRA
manager, which has prepared a pod's claim for one VF of ``ens0f0`` (allocated by the
structured allocator). Each sample takes ``ens0f0``'s carrier away (or gives it back) with
pyroute2 and times, from just before that call:

* **health update in the kubelet's DRA manager**: the manager's update channel
  (``Manager.Updates``, read by the peer as the kubelet's sync loop reads it) naming the
  pod, after our ``DRAResourceHealth.NodeWatchResources`` stream carried the new health of
  all the node's devices and the manager's health cache took it (wall clock on both sides).
  The device plugin's counterpart is ListAndWatch to the kubelet: ``health_latency.py``
  (emulator; ``--real-kubelet``: the real device manager's allocatable);
* **first slice event** at the apiserver's watch of the node's slices: the first slice of
  the new pool generation is stored, so the allocator sees the newest generation
  incomplete and gives out none of the pool's devices — the withdrawn ones included;
* **complete new generation**: the event after which the stored slices are a complete pool
  of the new generation without (or with again) ens0f0's 256 VFs — what the allocator
  then allocates from.

Last, the daemon's RSS (the overlay's memory limit is 256Mi).

Figures of ``--daemon`` (withdraw, 2,048 VFs, 16 slices; the 2-core box shared with other
work, load 2-3; old and new code run in turn, 4 runs each of 30 samples; medians, and the
range of the runs' medians and p99s):

================================  ================================  ================================
carrier change ->                 list, then 8 writes at a time     no list, 1 write alone, then 8
================================  ================================  ================================
health update, kubelet DRA mgr    ~35 ms (34-41), p99 63-340 ms     ~28 ms (25-47), p99 65-313 ms
first slice event: unallocatable  ~0.36 s (0.34-0.38), p99 0.6-0.9  ~0.09 s (0.08-0.12), p99 0.1-0.4
complete new generation           ~0.79 s (0.77-0.88), p99 1.4-1.6  ~0.73 s (0.63-1.0), p99 1.1-2.6
================================  ================================  ================================

(p99s without a unit in seconds). The health update's new column includes the health list
built in place (~3 ms instead of ~12 ms for 2,048 devices; the last two runs). The complete
generation did not move: it is the apiserver's writes of all 16 slices (every change bumps
the pool generation), ~40-60 ms of a shared core each; the list (~95 ms) saved is spent
again by the write made alone. The device plugin's counterparts on the same box, same
hour: carrier -> ListAndWatch list at the kubelet (``health_latency.py``) ~3 ms, p99 ~8 ms;
-> the real device manager's allocatable (``--real-kubelet``) ~5 ms, p99 ~11 ms; the
scheduler sees that allocatable only when the kubelet posts its node status, at the next
``nodeStatusUpdateFrequency`` tick (10 s by default).
Earlier figures (one write at a time): complete 1.46 s, first event 0.20 s.

Later (the box less loaded, load ~1.5; old and new code in turn, 2 runs each of 40
samples): rebuilding only the changed pools' DRA entries (``DraDeviceSet.updated``, ~0.3
instead of ~6 ms of the loop for 2,048 devices) and comparing only those in the health
stream took the health update from ~17 ms (16.5-17.2; p99 37-43 ms) to ~11 ms (11.0-11.1;
p99 29-34 ms). With timestamps in the daemon, ~5 ms of that is ours (carrier change ->
the message sent) and ~5 ms the kubelet's: its DRA manager rewrites its whole health
checkpoint before it notifies (the kubelet's ``state`` types marshalled and written as
``healthinfo.go`` does, measured apart: 377 KB, ~3 ms median, p99 ~6 ms). The real device manager's
allocatable, same hour: ~4.3 ms (p99 7-8 ms). First slice event ~54-62 ms, complete new
generation ~0.52-0.61 s, unchanged by this.

Run: ``.venv/bin/python bench/dra_apiserver.py [--runs 3] [--flips 40] [--claims 40]``, or
``sudo .venv/bin/python bench/dra_apiserver.py --daemon [--toggles 20] [--dra-health
withdraw|taint]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import urllib3
from harness import summary  # bench/ is the script's directory
from kubernetes import client as k8s, config as k8s_config

from sriovdp.host.cdi import CdiStore
from sriovdp.host.draclaims import ClaimCheckpoint
from sriovdp.host.sysfs import scan
from sriovdp.kubelet.dra.claims import KubernetesClaimReader
from sriovdp.kubelet.dra.preparer import ClaimPreparer
from sriovdp.kubelet.dra.publisher import KubernetesSliceApi, SlicePublisher
from sriovdp.kubelet.dra.server import DraPluginServer, plugin_socket, registration_socket
from sriovdp.kubelet.feed import LatestValue
from sriovdp.model.config import parse_config
from sriovdp.model.dra.prepare import SPEC_FILE_PREFIX
from sriovdp.model.dra.slices import DraDevice, HealthPolicy, dra_devices
from sriovdp.model.health import Health
from sriovdp.model.pools import build_pools
from sriovdp.testing.drapeer import DraPeer, PeerPod, build_dra_peer, why_no_dra_peer
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator

DRIVER = "sriov.network.k8s.io"
PFS = 8
CONFIG = parse_config(json.dumps({"resourceList": [
    {"resourceName": f"pf{i}", "selectors": [{"pfNames": [f"ens{i}f0"]}]} for i in range(PFS)]}))


def devices_of(host: FakeHost, health: Mapping[str, str] | None = None) -> dict[str, DraDevice]:
    pools = build_pools(scan(host.paths), CONFIG.resources, default_prefix="intel.com",
                        health=dict(health or {}))
    return dra_devices(pools)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


async def main_async(runs: int, flips: int, claims: int) -> None:
    binary = build_dra_peer(Path(os.environ.get("DRA_PEER_BUILD_DIR",
                                                Path(tempfile.gettempdir()) / "sriovdp-dra-peer")))
    work = Path(tempfile.mkdtemp(prefix="sdpdb-", dir="/tmp"))
    peer = DraPeer(binary, work / "cp")
    await asyncio.to_thread(peer.start)
    try:
        api = k8s_config.new_client_from_config(config_file=str(peer.kubeconfig))
        resource, core = k8s.ResourceV1Api(api), k8s.CoreV1Api(api)
        host = FakeHost.scaled(work / "host", pfs=PFS, vfs_per_pf=256)
        devices = devices_of(host)

        first, floor = [], []
        for run in range(runs):
            name = f"bench-{run}"
            uid = core.create_node({"metadata": {"name": name}}).metadata.uid
            pub = SlicePublisher(KubernetesSliceApi(resource), driver=DRIVER, node_name=name,
                                 node_uid=uid)
            start = time.perf_counter()
            await pub.publish(devices)
            first.append(time.perf_counter() - start)
            start = time.perf_counter()
            listed = json.loads(resource.list_resource_slice(
                field_selector=f"spec.nodeName={name}", _preload_content=False).data)["items"]
            floor.append(time.perf_counter() - start)
        print(f"dra vs real apiserver: {len(devices)} VFs -> {len(listed)} ResourceSlices")
        print(f"  publish (creates)          {summary(first)}")
        print(f"  floor (list them back)     {summary(floor)}"
              f"  ratio {median_ms(first) / median_ms(floor):5.2f}")

        vf = next(iter(devices.values())).device.id
        sick = devices_of(host, {vf: Health.UNHEALTHY})
        for policy in (HealthPolicy.WITHDRAW, HealthPolicy.TAINT):
            name = f"bench-{policy}"
            uid = core.create_node({"metadata": {"name": name}}).metadata.uid
            pub = SlicePublisher(KubernetesSliceApi(resource), driver=DRIVER, node_name=name,
                                 node_uid=uid, policy=policy)
            await pub.publish(devices)
            flip, sent = [], []
            for i in range(flips):
                start = time.perf_counter()
                plan = await pub.publish(sick if i % 2 == 0 else devices)
                flip.append(time.perf_counter() - start)
                sent.append(len(plan.create) + len(plan.replace) + len(plan.delete))
            print(f"  health flip, {policy:8} ({statistics.median(sent):2.0f} writes) "
                  f"{summary(flip)}")

        node = "bench-kubelet"
        await asyncio.to_thread(peer.kubelet_start, node, work / "registry", work / "kubelet")
        feed: LatestValue[Mapping[str, DraDevice]] = LatestValue(devices)
        facts = scan(host.paths).facts  # the daemon's latest scan
        node_uid = core.read_node(node).metadata.uid
        await SlicePublisher(KubernetesSliceApi(resource), driver=DRIVER, node_name=node,
                             node_uid=node_uid).publish(devices)
        preparer = ClaimPreparer(
            driver=DRIVER, pool_name=node, reader=KubernetesClaimReader(resource),
            devices=lambda: feed.value, facts=lambda: facts,
            cdi=CdiStore(work / "cdi", prefix=SPEC_FILE_PREFIX),
            checkpoint=ClaimCheckpoint(work / "plugins" / "checkpoint.json"))
        registered = asyncio.Event()
        server = DraPluginServer(
            preparer, socket=plugin_socket(work / "plugins", DRIVER),
            registration=registration_socket(work / "registry", DRIVER), health=feed,
            on_status=lambda ok, _: registered.set() if ok else None)
        await server.start()
        try:
            await asyncio.wait_for(registered.wait(), 30)
            resource.create_device_class({
                "metadata": {"name": "bench-sriov"},
                "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]}})
            pods = []
            for i in range(claims):
                resource.create_namespaced_resource_claim("default", {
                    "metadata": {"name": f"c{i}"}, "spec": {"devices": {"requests": [
                        {"name": "nic", "exactly": {"deviceClassName": "bench-sriov"}}]}}})
                pod = PeerPod(f"p{i}", str(uuid.uuid4()), {"nic": f"c{i}"}, {"c0": ["nic"]})
                await asyncio.to_thread(peer.allocate, node, "default", [f"c{i}"], pod)
                pods.append(pod)
            prep, unprep, get = [], [], []
            for i, pod in enumerate(pods):
                start = time.perf_counter()
                resource.read_namespaced_resource_claim(f"c{i}", "default")
                get.append(time.perf_counter() - start)
                start = time.perf_counter()
                await peer.aprepare(pod)
                prep.append(time.perf_counter() - start)
            for pod in pods:
                start = time.perf_counter()
                await peer.aunprepare(pod)
                unprep.append(time.perf_counter() - start)
            print(f"  prepare via the DRA manager (1 VF) {summary(prep)}")
            print(f"  floor (one claim GET)              {summary(get)}"
                  f"  ratio {median_ms(prep) / median_ms(get):5.2f}")
            print(f"  unprepare via the DRA manager      {summary(unprep)}")
        finally:
            await server.stop()
            await asyncio.to_thread(peer.kubelet_stop)
    finally:
        await asyncio.to_thread(peer.stop)
        shutil.rmtree(work, ignore_errors=True)


# --- --daemon: carrier change -> ResourceSlices at the apiserver, through the process -------

CLONE_NEWNET = 0x40000000
PF = "ens0f0"


def enter_own_netns() -> None:
    """Move this process into a new, empty network namespace (root; lo brought up). Every
    thread and child started afterwards is in it; it goes away with the last of them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["ip", "link", "add", PF, "type", "veth", "peer", "name", f"{PF}p"],
                ["ip", "link", "set", PF, "up"], ["ip", "link", "set", f"{PF}p", "up"]):
        subprocess.run(cmd, check=True, capture_output=True)


@dataclass
class SliceWatch:
    """The node's slices as a watch on the apiserver delivers them, in a thread; ``events``
    receives ``(arrival time, untainted devices of the complete newest generation or None)``
    for every event."""

    resource: k8s.ResourceV1Api
    node: str
    events: queue.Queue[tuple[float, int | None]] = field(default_factory=queue.Queue)
    slices: dict[str, dict[str, object]] = field(default_factory=dict)

    def start(self) -> None:
        listed = json.loads(self.resource.list_resource_slice(
            field_selector=f"spec.nodeName={self.node}", _preload_content=False).data)
        for item in listed["items"]:
            self.slices[item["metadata"]["name"]] = item
        threading.Thread(target=self._run, args=(listed["metadata"]["resourceVersion"],),
                         daemon=True).start()

    def complete(self) -> int | None:
        """Untainted devices of the newest generation when all its slices are stored (what
        the allocator can give out), else None."""
        specs = [s["spec"] for s in self.slices.values()]  # type: ignore[index]
        if not specs:
            return None
        newest = max(sp["pool"]["generation"] for sp in specs)
        current = [sp for sp in specs if sp["pool"]["generation"] == newest]
        if len(current) != current[0]["pool"]["resourceSliceCount"]:
            return None
        return sum(1 for sp in current for d in sp.get("devices") or [] if not d.get("taints"))

    def _run(self, version: str) -> None:
        answer = self.resource.list_resource_slice(
            field_selector=f"spec.nodeName={self.node}", watch=True, resource_version=version,
            timeout_seconds=3600, _preload_content=False)
        buffer = b""
        try:
            for chunk in answer.stream(65536):
                buffer = self._take(buffer + chunk, time.perf_counter())
        except (OSError, urllib3.exceptions.HTTPError):
            return  # the apiserver stopped at the end of the bench

    def _take(self, buffer: bytes, now: float) -> bytes:
        """Apply the complete event lines of ``buffer`` (received at ``now``); returns the
        incomplete rest."""
        *lines, rest = buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            event = json.loads(line)
            obj = event["object"]
            if event["type"] == "DELETED":
                self.slices.pop(obj["metadata"]["name"], None)
            elif event["type"] in ("ADDED", "MODIFIED"):
                self.slices[obj["metadata"]["name"]] = obj
            self.events.put((now, self.complete()))
        return rest


async def wait_complete(watch: SliceWatch, devices: int, timeout: float,
                        proc: asyncio.subprocess.Process, since: float = 0.0
                        ) -> tuple[float, float]:
    """The first event, and the one completing a pool of ``devices``, from now on (events
    that arrived before ``since``, such as the deletions after the last complete pool, are
    no first event)."""
    deadline = time.perf_counter() + timeout
    first = None
    while True:
        try:
            at, complete = await asyncio.to_thread(watch.events.get, True, 1.0)
        except queue.Empty:
            if proc.returncode is not None:
                raise SystemExit(f"the daemon exited ({proc.returncode}): see its log "
                                 "(BENCH_KEEP=1 keeps it)") from None
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no complete pool of {devices} devices") from None
            continue
        if first is None and at >= since:
            first = at
        if complete == devices and first is not None:
            return first, at


async def prepare_vf_of(peer: DraPeer, resource: k8s.ResourceV1Api, node: str,
                        pf: str) -> PeerPod:
    """A pod with a claim for one VF of ``pf``, allocated by the structured allocator and
    prepared through the kubelet's DRA manager (which then follows that VF's health)."""
    resource.create_device_class({
        "metadata": {"name": f"bench-{pf}"},
        "spec": {"selectors": [{"cel": {"expression":
                                        f'device.attributes["{DRIVER}"].pfName == "{pf}"'}}]}})
    resource.create_namespaced_resource_claim("default", {
        "metadata": {"name": "health"}, "spec": {"devices": {"requests": [
            {"name": "nic", "exactly": {"deviceClassName": f"bench-{pf}"}}]}}})
    pod = PeerPod("health", str(uuid.uuid4()), {"nic": "health"}, {"c0": ["nic"]})
    if await asyncio.to_thread(peer.allocate, node, "default", ["health"], pod) is None:
        raise SystemExit(f"the allocator found no VF of {pf}")
    await peer.aprepare(pod)
    return pod


async def health_update(peer: DraPeer, pod_uid: str, proc: asyncio.subprocess.Process,
                        timeout: float = 10.0) -> int:
    """When (wall clock, ns) the DRA manager's next health update naming ``pod_uid`` came."""
    deadline = time.monotonic() + timeout
    while True:
        for at, pods in await peer.ahealth_updates():
            if pod_uid in pods:
                return at
        if proc.returncode is not None:
            raise SystemExit(f"the daemon exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no health update for pod {pod_uid} in {timeout:.0f} s")
        await asyncio.sleep(0.02)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


async def wait_ready(url: str, proc: asyncio.subprocess.Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(ready, url):
        if proc.returncode is not None:
            raise SystemExit(f"the daemon exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise SystemExit(f"the daemon is not ready after {timeout:.0f} s ({url})")
        await asyncio.sleep(0.2)


async def daemon_async(toggles: int, health: str) -> None:
    from pyroute2 import AsyncIPRoute  # type: ignore[import-untyped]

    binary = build_dra_peer(Path(os.environ.get("DRA_PEER_BUILD_DIR",
                                                Path(tempfile.gettempdir()) / "sriovdp-dra-peer")))
    work = Path(tempfile.mkdtemp(prefix="sdpdd-", dir="/tmp"))
    peer = DraPeer(binary, work / "cp")
    await asyncio.to_thread(peer.start)
    proc = None
    device_manager = None
    try:
        node = "bench-daemon"
        await asyncio.to_thread(peer.kubelet_start, node, work / "registry", work / "kubelet")
        host = FakeHost.scaled(work / "host", pfs=PFS, vfs_per_pf=256)
        config = work / "config.json"
        config.write_text(json.dumps({"resourceList": [
            {"resourceName": f"pf{i}", "selectors": [{"pfNames": [f"ens{i}f0"]}]}
            for i in range(PFS)]}))
        for d in ("dp", "cdi", "devinfo", "plugins", "pr"):
            (work / d).mkdir()
        # the device manager's side of the kubelet (kubelet.sock, pod resources): asked what
        # pods hold before the daemon's first publication; the DRA side is the Go peer's
        device_manager = KubeletEmulator(work / "dp",
                                         pod_resources_socket=work / "pr" / "kubelet.sock")
        await device_manager.__aenter__()
        log = (work / "daemon.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sriovdp", "run", "--dra=all", f"--dra-health={health}",
             "--kubeconfig", str(peer.kubeconfig), "--node-name", node,
             "--host-root", str(host.root), "--config-file", str(config),
             "--device-plugin-dir", str(work / "dp"),
             "--plugins-registry-dir", str(work / "registry"),
             "--kubelet-plugins-dir", str(work / "plugins"),
             "--pod-resources-socket", str(work / "pr" / "kubelet.sock"),
             "--cdi-dir", str(work / "cdi"),
             "--device-info-dir", str(work / "devinfo"),
             "--health-address", "127.0.0.1:8081",
             # the emulator's kubelet.sock is brand new; on a node the kubelet has long been
             # up, so the first publication does not wait for a young kubelet's pods
             "--kubelet-settle", "0", stdout=log, stderr=log)
        api = k8s_config.new_client_from_config(config_file=str(peer.kubeconfig))
        watch = SliceWatch(k8s.ResourceV1Api(api), node)
        watch.start()
        start = time.perf_counter()
        await wait_complete(watch, PFS * 256, 120, proc)
        print(f"dra through the daemon process (--dra=all --dra-health={health}), "
              f"{PFS * 256} VFs: exec -> complete slices at the apiserver "
              f"{time.perf_counter() - start:.2f} s")
        await wait_ready("http://127.0.0.1:8081/readyz", proc, 60)
        await asyncio.sleep(1.0)  # the registration's forced publication has gone through
        pod = await prepare_vf_of(peer, k8s.ResourceV1Api(api), node, PF)
        await peer.ahealth_updates()  # only those of the toggles from now on
        while not watch.events.empty():
            watch.events.get()

        ipr = AsyncIPRoute()
        peer_index = (await ipr.link_lookup(ifname=f"{PF}p"))[0]
        healths, firsts, completes = [], [], []
        for n in range(2 * toggles):
            up = n % 2 == 1
            await peer.ahealth_updates()  # none of the last toggle's left
            wall, start = time.time_ns(), time.perf_counter()
            await ipr.link("set", index=peer_index, state="up" if up else "down")
            first, done = await wait_complete(watch, PFS * 256 - (0 if up else 256), 30, proc,
                                              since=start)
            firsts.append(first - start)
            completes.append(done - start)
            healths.append((await health_update(peer, pod.uid, proc) - wall) / 1e9)
            await asyncio.sleep(0.2)
        ipr.close()
        print(f"  carrier change -> health update in the kubelet's DRA manager "
              f"{summary(healths)}")
        print(f"  carrier change -> first slice event: pool unallocatable  {summary(firsts)}")
        print(f"  carrier change -> complete new generation stored       {summary(completes)}")
        print(f"  pool unallocatable (first event -> complete)           "
              f"{summary([c - f for f, c in zip(firsts, completes, strict=True)])}")
        print("  floor: the same carrier change -> kubelet list through the device plugin, "
              "bench/health_latency.py (~5 ms median)")
        status = await asyncio.to_thread(Path(f"/proc/{proc.pid}/status").read_text)
        rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
        print(f"  daemon RSS after the toggles: {rss:.0f} MiB "
              "(deployments/overlays/dra limits it to 256Mi)")
    finally:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
        if device_manager is not None:
            await device_manager.__aexit__(None, None, None)
        await asyncio.to_thread(peer.stop)
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flips", type=int, default=40)
    parser.add_argument("--claims", type=int, default=40)
    parser.add_argument("--daemon", action="store_true",
                        help="carrier change -> slices at the apiserver through "
                             "`sriovdp run --dra=all` (root: a network namespace of its own)")
    parser.add_argument("--toggles", type=int, default=20,
                        help="--daemon: down+up pairs (samples = 2 x toggles)")
    parser.add_argument("--dra-health", choices=("withdraw", "taint"), default="withdraw",
                        help="--daemon: the daemon's --dra-health")
    args = parser.parse_args()
    why = why_no_dra_peer()
    if why is not None:
        print(f"dra_apiserver: skipped: {why}")
        return 0
    if args.daemon:
        if os.geteuid() != 0:
            print("dra_apiserver --daemon: needs root (a network namespace)", file=sys.stderr)
            return 2
        enter_own_netns()
        asyncio.run(daemon_async(args.toggles, args.dra_health))
        return 0
    asyncio.run(main_async(args.runs, args.flips, args.claims))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
