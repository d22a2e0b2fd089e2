"""Break-it pass 4 on the holds read from the kubelet's device checkpoint
(``device-plugins/kubelet_internal_checkpoint``): ways a VF reaches two consumers, stays
out of every pool for good, or the daemon stops working. Each test reproduced a defect of
that pass and passes since its fix.

A plain init container's grant is in the checkpoint but not in the pod resources answer:
here the KubeletEmulator writes the checkpoint (it records every admission) and a
:class:`FakePodResources` stands for ``List`` (which leaves such grants out).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from daemon_kit import ALL_DPDK, ALL_NET, CONFIG, NET, settings_for, write
from test_dra_daemon import Apiserver, dra_daemon, dra_settings, emulator, published

from sriovdp.daemon.reconciler import Reconciler
from sriovdp.kubelet.checkpoint import CHECKPOINT_NAME
from sriovdp.model.config import parse_config
from sriovdp.model.dra.modes import DraMode
from sriovdp.testing import eventually
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator
from sriovdp.testing.podresources import FakePodResources

OTHER = "intel.com/other"


def moved(dev: str) -> dict[str, Any]:
    """CONFIG with ``dev`` moved from net to a new pool ``other``."""
    out: dict[str, Any] = json.loads(json.dumps(CONFIG))
    keep = ",".join(str(int(a[-1])) for a in sorted(ALL_NET - {dev}))
    out["resourceList"][0]["selectors"][0]["pfNames"] = [f"ens785f0#{keep}"]
    out["resourceList"].append({"resourceName": "other",
                                "selectors": [{"drivers": ["iavf"], "pfNames": ["ens785f0"]}]})
    return out


@contextlib.asynccontextmanager
async def daemon_on(settings: Any, pods: FakePodResources, config: dict[str, Any] = CONFIG,
                    *, ready: float = 5.0) -> Any:
    daemon = Reconciler(settings, parse_config(json.dumps(config)), pod_resources=pods)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), ready)
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)


# --- a checkpoint that stops parsing releases what it held ---------------------------------


async def test_an_init_container_vf_stays_out_of_its_new_pool_when_the_checkpoint_is_truncated(
        workdir: Path, host: FakeHost) -> None:
    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    pods = FakePodResources()  # List leaves plain init containers out
    async with emulator(settings) as kubelet, daemon_on(settings, pods) as daemon:
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        (dev,) = (await kubelet.admit(NET, 1, pod="init", container="setup")).device_ids
        await asyncio.sleep(1.2)  # past the allocation grace: only the checkpoint holds it
        write(settings.config_file, moved(dev))
        assert daemon.reload_config("test")
        await kubelet.wait_for(OTHER, lambda d: True, timeout=5)  # registered, empty
        await asyncio.sleep(2.5)  # a hold poll: still kept in net
        assert dev in kubelet.devices(NET) and dev not in kubelet.devices(OTHER)
        text = kubelet.checkpoint_path.read_bytes()
        write(kubelet.checkpoint_path, text[: len(text) // 2].decode())  # cut short
        await asyncio.sleep(4.5)  # two hold polls
        assert dev not in kubelet.devices(OTHER), \
            f"{OTHER} offers {dev} while the init container's pod holds it"


# --- a file that ends the daemon ------------------------------------------------------------


async def test_the_daemon_keeps_serving_when_the_checkpoint_is_nested_too_deeply(
        workdir: Path, host: FakeHost) -> None:
    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    write(settings.device_plugin_dir / CHECKPOINT_NAME, "[" * 5000 + "]" * 5000)
    daemon = Reconciler(settings, parse_config(json.dumps(CONFIG)),
                        pod_resources=FakePodResources())
    task = asyncio.create_task(daemon.run())
    ready = asyncio.ensure_future(daemon.ready.wait())
    try:
        await asyncio.wait({task, ready}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        assert not task.done(), f"the daemon ended: {task.exception()!r}"
        assert daemon.ready.is_set(), "published its pools"
        assert daemon.holds.checkpoint_error, "the odd file is named"
    finally:
        ready.cancel()
        daemon.stop()
        await asyncio.gather(ready, return_exceptions=True)
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)


# --- a read that never ends ----------------------------------------------------------------


def _unblock(fifo: Path) -> None:
    """Give a reader blocked on ``fifo`` its end of file."""
    for _ in range(50):
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            return  # no reader waiting
        os.close(fd)


async def test_the_first_publication_is_not_held_up_when_the_checkpoint_read_hangs(
        workdir: Path, host: FakeHost) -> None:
    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    fifo = settings.device_plugin_dir / CHECKPOINT_NAME
    os.mkfifo(fifo)
    daemon = Reconciler(settings, parse_config(json.dumps(CONFIG)),
                        pod_resources=FakePodResources())
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 5)
        assert daemon.holds.checkpoint_error, "the odd file is named"
    finally:
        daemon.stop()
        for _ in range(20):
            _unblock(fifo)
            await asyncio.sleep(0.05)
        await asyncio.wait_for(task, 10)


# --- DRA only: nothing to resend through (a stand-in endpoint makes the kubelet write) -------


def _stale_checkpoint(kubelet: KubeletEmulator, resource: str, dev: str) -> None:
    """The file as the kubelet last wrote it while a pod (ended since) held ``dev``; the
    kubelet itself forgot the pod when pod resources ``List`` was called."""
    write(kubelet.checkpoint_path, {"Data": {
        "PodDeviceEntries": [{"PodUID": "ended", "ContainerName": "c0", "ResourceName": resource,
                              "DeviceIDs": {"0": [dev]}, "AllocResp": ""}],
        "RegisteredDevices": {resource: sorted(ALL_NET)}}, "Checksum": 0})


async def test_a_vf_of_an_ended_device_plugin_pod_is_published_when_every_pool_moved_to_dra(
        workdir: Path, host: FakeHost) -> None:
    """The node moved from the device plugin to ``--dra=all``. A pod that got its VF from
    the device plugin ended after the kubelet's last write of its checkpoint (the kubelet
    writes it on allocations, device list updates, and once when a resource's 5 min grace
    after its plugin stopped runs out; with no device plugin left, never again)."""
    settings = replace(dra_settings(workdir, host, CONFIG), dra=DraMode.ALL)
    api = Apiserver()
    dev = sorted(ALL_NET)[0]
    async with emulator(settings) as kubelet:
        _stale_checkpoint(kubelet, NET, dev)
        async with dra_daemon(settings, api, CONFIG, pods=FakePodResources()):
            await published(api, ALL_NET - {dev} | ALL_DPDK, "the free VFs")
            await eventually(lambda: dev in api.ids(), timeout=10,
                             what=f"{dev} published once its pod ended")


async def test_a_vf_of_a_device_plugin_pod_is_published_by_dra_when_the_pod_ends_after_the_move(
        workdir: Path, host: FakeHost) -> None:
    """The usual move to ``--dra=all``: pods that got VFs from the device plugin run on and
    end later. The kubelet's file keeps an ended pod's entry until its next write, which
    may never come; the answer that listed the pod and now lacks it releases the VF."""
    settings = replace(dra_settings(workdir, host, CONFIG), dra=DraMode.ALL)
    api = Apiserver()
    pods = FakePodResources()
    async with emulator(settings) as kubelet:
        async with daemon_on(replace(settings, dra=None), pods):
            await kubelet.wait_capacity(NET, (4, 4), timeout=5)
            (dev,) = (await kubelet.admit(NET, 1, pod="p1")).device_ids
            pods.hold(NET, [dev])  # an app container: List reports it
        async with dra_daemon(settings, api, CONFIG, pods=pods):
            await published(api, ALL_NET - {dev} | ALL_DPDK, "the free VFs")
            pods.release(NET, [dev])  # the pod ended; the kubelet's file is unchanged
            await eventually(lambda: dev in api.ids(), timeout=10,
                             what=f"{dev} published once its pod ended")


# --- a daemon restart while an admission it served waits on another plugin -----------------


async def test_an_init_container_vf_stays_out_of_its_new_pool_when_the_daemon_restarts_mid_admission(  # noqa: E501
        workdir: Path, host: FakeHost) -> None:
    """The emulator's side of break-it 5's real-kubelet case: our Allocate answered, the
    container's other plugin is slow, so the kubelet's file (written before) lacks the
    grant and ``List`` never shows a plain init container. The daemon restarts with the VF
    moved to a new pool; only its allocation log tells the new process."""
    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    pods = FakePodResources()
    async with emulator(settings) as kubelet:
        async with daemon_on(settings, pods):
            await kubelet.wait_capacity(NET, (4, 4), timeout=5)
            before = kubelet.checkpoint_path.read_bytes()
            (dev,) = (await kubelet.admit(NET, 1, pod="init", container="setup")).device_ids
        pending = kubelet.checkpoint_path.read_bytes()
        kubelet.checkpoint_path.write_bytes(before)  # still waiting on the slow plugin
        os.utime(kubelet.checkpoint_path, (1.0, 1.0))
        write(settings.config_file, moved(dev))
        async with daemon_on(settings, pods, moved(dev)) as daemon:
            await kubelet.wait_for(OTHER, lambda d: True, timeout=5)
            await asyncio.sleep(1.5)  # hold polls
            assert dev in kubelet.devices(NET) and dev not in kubelet.devices(OTHER), \
                f"{OTHER} offers {dev} while the admission that got it is under way"
            kubelet.checkpoint_path.write_bytes(pending)  # the admission completed
            await asyncio.sleep(2.5)
            assert dev not in kubelet.devices(OTHER)
            kubelet.release("init")  # the pod ended: the kubelet rewrites its file
            await eventually(lambda: dev in kubelet.devices(OTHER), timeout=10,
                             what=f"{dev} offered by {OTHER} once its pod ended")
            assert daemon.holds.current().get(NET, frozenset()) == frozenset()
