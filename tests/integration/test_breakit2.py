"""Break-it pass 2: ways left for one device to reach two pods, or to be offered Healthy by
two pools at once (device-plugin mode; the daemon in-process against the KubeletEmulator)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path

from daemon_kit import ALL_DPDK, DPDK, NET, running, write
from test_never_offered_twice import DEV, config_moving, emulator, held_settings

from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import AdmissionError, KubeletEmulator


async def admit_or_none(kubelet: KubeletEmulator, resource: str, count: int,
                        pod: str) -> tuple[str, ...]:
    try:
        return tuple((await kubelet.admit(resource, count, pod=pod)).device_ids)
    except AdmissionError:
        return ()


async def test_a_vf_allocated_by_the_first_instance_is_not_offered_twice_when_the_second_takes_over(
    workdir: Path, host: FakeHost
) -> None:
    """A rolling update with ``maxSurge`` that also rolls out a config change: the new
    instance starts (and waits) while the old one still serves and allocates."""
    old = held_settings(workdir, host)
    new = replace(old, config_file=workdir / "config-new.json")
    moved = config_moving(DEV)
    write(new.config_file, moved)
    async with emulator(old) as kubelet, contextlib.AsyncExitStack() as first:
        await first.enter_async_context(running(old))
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        async with running(new, moved, published=False) as second:
            assert not second.is_ready  # waits: the first owns the node
            allocation = await kubelet.admit(NET, 1, pod="busy")  # through the first
            assert allocation.device_ids == (DEV,)
            await first.aclose()  # the first exits: the second takes over
            dpdk = await kubelet.wait_for(DPDK, lambda d: set(d) >= ALL_DPDK, timeout=10)
            await asyncio.sleep(0.5)  # a pass or two of the second instance
            got = await admit_or_none(kubelet, DPDK, 5, pod="second")
            assert DEV not in got, f"{DEV} given to two pods (busy via {NET}, second via {DPDK})"
            assert DEV not in kubelet.healthy_ids(DPDK), dpdk


async def test_a_vf_is_offered_by_one_instance_only_when_two_instances_differ_in_registration_mode(
    workdir: Path, host: FakeHost
) -> None:
    """A DaemonSet update that adds the ``plugins_registry`` mount (or the daemon run by
    hand where the DaemonSet does not mount it), with ``maxSurge`` and a config change: the
    old instance registers through ``kubelet.sock``, the new one through the plugin
    watcher."""
    old = replace(held_settings(workdir, host), plugins_registry_dir=workdir / "no-registry")
    new = replace(old, plugins_registry_dir=workdir / "reg",
                  config_file=workdir / "config-new.json")
    new.plugins_registry_dir.mkdir()
    moved = config_moving(DEV)
    write(new.config_file, moved)
    kubelet = KubeletEmulator(old.device_plugin_dir, new.plugins_registry_dir, watcher=True,
                              pod_resources_socket=old.pod_resources_socket)
    async with kubelet, running(old), running(new, moved, published=False) as second:
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        allocation = await kubelet.admit(NET, 1, pod="busy")
        assert allocation.device_ids == (DEV,)
        with contextlib.suppress(TimeoutError):  # were it allowed to register
            await kubelet.wait_for(DPDK, lambda d: DEV in d, timeout=3)
        got = await admit_or_none(kubelet, DPDK, 5, pod="second")
        assert DEV not in got, f"{DEV} given to two pods (busy via {NET}, second via {DPDK})"
        assert not second.is_ready  # it should wait: another instance serves this node


async def test_a_waiting_instance_keeps_waiting_when_the_lock_files_are_deleted(
    workdir: Path, host: FakeHost
) -> None:
    """Kubelets before the socket-only clean-up delete every file but the checkpoint in
    ``device-plugins/`` when they start (and an operator may clean the dir by hand)."""
    old = held_settings(workdir, host)
    new = replace(old, resource_prefix="example.com")
    async with emulator(old) as kubelet, running(old):
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        async with running(new, published=False) as second:
            assert not second.is_ready
            keep = {"kubelet_internal_checkpoint", "kubelet.sock"}  # (then made anew)
            for entry in old.device_plugin_dir.iterdir():  # as an old kubelet's clean-up
                if not entry.is_dir() and entry.name not in keep:
                    entry.unlink()
            with contextlib.suppress(TimeoutError):  # were it allowed to register
                await kubelet.wait_capacity("example.com/net", (4, 4), timeout=3)
            both = set(kubelet.healthy_ids(NET)) & set(kubelet.healthy_ids("example.com/net"))
            assert not both, f"offered Healthy as {NET} and example.com/net: {sorted(both)}"
