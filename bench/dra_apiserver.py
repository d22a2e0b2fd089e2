"""DRA benchmark against a real kube-apiserver and the kubelet's real DRA manager.

Uses the DRA conformance peer (``tests/conformance/dra``, built with ``go build``; needs Go):
etcd and the kube-apiserver on 127.0.0.1, the scheduler's structured allocator and the
kubelet's DRA manager. The host is a scaled FakeHost, 8 PFs x 256 VFs = 2,048 VFs, one pool
per PF. Prints:

* publish: the first ``SlicePublisher.publish`` of all VFs to a new node (16 creates), each
  of N runs, and the floor: listing the same slices back from the apiserver; ratio;
* health flip: one VF goes Unhealthy (then back), ``publish`` until the apiserver has
  acknowledged the replaced slices (list + replaces) — the latency of a carrier change to
  the ResourceSlice at the apiserver, minus the link monitor's own — under ``withdraw``
  and ``taint``, with the number of slices written;
* prepare: the kubelet DRA manager's PrepareResources for a pod with a one-VF claim
  (allocated by the structured allocator), through our ``DraPluginServer`` (claim read from
  the apiserver, CDI spec and checkpoint written), and the floor: one claim GET with the
  official client; unprepare.

Run: ``.venv/bin/python bench/dra_apiserver.py [--runs 3] [--flips 40] [--claims 40]``.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

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
            print(f"  health flip, {policy:8} (list + {statistics.median(sent):2.0f} writes) "
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flips", type=int, default=40)
    parser.add_argument("--claims", type=int, default=40)
    args = parser.parse_args()
    why = why_no_dra_peer()
    if why is not None:
        print(f"dra_apiserver: skipped: {why}")
        return 0
    asyncio.run(main_async(args.runs, args.flips, args.claims))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
