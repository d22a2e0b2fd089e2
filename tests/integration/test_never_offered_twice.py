"""Never one device to two pods: holds across restarts, reloads, link changes and a kubelet
whose pod resources API fails (issue 11 items 0, 7, 9; issue 12 bugs 1 and 2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from daemon_kit import (
    ALL_DPDK,
    ALL_NET,
    CONFIG,
    DPDK,
    NET,
    free_port,
    http_get,
    running,
    settings_for,
    write,
)

from sriovdp.daemon.reconciler import Reconciler
from sriovdp.daemon.settings import Settings
from sriovdp.errors import HostError
from sriovdp.model.config import parse_config
from sriovdp.model.health import LinkState
from sriovdp.testing import eventually
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator
from sriovdp.testing.links import FakeLinkSource

DEV = "0000:3b:02.0"


def held_settings(workdir: Path, host: FakeHost, **extra: Any) -> Settings:
    settings = replace(settings_for(workdir, host), resync_interval=0.3,
                       pod_resources_socket=workdir / "pr" / "kubelet.sock", **extra)
    write(settings.config_file, CONFIG)
    return settings


def emulator(settings: Settings) -> KubeletEmulator:
    return KubeletEmulator(settings.device_plugin_dir,
                           pod_resources_socket=settings.pod_resources_socket)


def config_moving(dev: str) -> dict[str, Any]:
    """CONFIG, but ``dev`` (an iavf VF of ens785f0) now belongs to intel.com/dpdk."""
    moved = json.loads(json.dumps(CONFIG))
    index = int(dev[-1])
    rest = ",".join(str(i) for i in range(4) if i != index)
    moved["resourceList"][0]["selectors"][0]["pfNames"] = [f"ens785f0#{rest}"]
    moved["resourceList"][1]["selectors"] = [{"drivers": ["vfio-pci"]},
                                             {"pfNames": [f"ens785f0#{index}"]}]
    return moved


@contextlib.asynccontextmanager
async def daemon_with_links(settings: Settings, links: FakeLinkSource,
                            config: dict[str, Any] = CONFIG) -> AsyncIterator[Reconciler]:
    daemon = Reconciler(settings, parse_config(json.dumps(config)), links=links)
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 5)
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 10)


async def passes(daemon: Reconciler, n: int) -> None:
    """Wait for ``n`` more full passes (periodic resyncs, here)."""
    target = daemon.passes + n
    await eventually(lambda: daemon.passes >= target, what=f"{n} more passes")


async def hold_one(kubelet: KubeletEmulator, pod: str = "busy") -> str:
    await kubelet.wait_capacity(NET, (4, 4), timeout=5)
    allocation = await kubelet.admit(NET, 1, pod=pod)
    (dev,) = allocation.device_ids
    return dev


# --- item 0(a): across a daemon restart ----------------------------------------------------


@pytest.mark.parametrize("change", ["rebound", "config"])
async def test_a_held_vf_is_offered_only_by_its_granting_pool_when_it_moved_across_a_restart(
    workdir: Path, host: FakeHost, change: str
) -> None:
    settings = held_settings(workdir, host)
    info = settings.device_info_dir / f"intel.com-net-{DEV}-device.json"
    async with emulator(settings) as kubelet:
        async with running(settings):
            await kubelet.wait_capacity(NET, (4, 4), timeout=5)
            allocation = await kubelet.admit(NET, 1, pod="busy")
            assert allocation.device_ids == (DEV,)
            assert info.exists()
        config = CONFIG
        if change == "rebound":
            host.bind(DEV, "vfio-pci", iommu_group=99)  # rebound while the daemon is down
        else:
            config = config_moving(DEV)
            write(settings.config_file, config)
        async with running(settings, config) as daemon:
            await kubelet.wait_registered(DPDK, count=2)
            await kubelet.wait_registered(NET, count=2)
            dpdk = await kubelet.wait_for(DPDK, lambda d: set(d) >= ALL_DPDK)
            assert DEV not in dpdk  # never offered by a second pool
            net = kubelet.devices(NET)
            assert DEV in net and net[DEV].healthy  # Healthy: the pod's device works
            assert info.exists()  # not deleted as "stale": the pod's CNI may read it
            await passes(daemon, 2)  # periodic resyncs change nothing while it is held
            assert DEV not in kubelet.devices(DPDK)
            kubelet.release("busy")
            await kubelet.wait_for(DPDK, lambda d: DEV in d, timeout=5)
            await kubelet.wait_for(NET, lambda d: DEV not in d, timeout=5)
            assert not info.exists()


async def test_a_held_device_that_vanished_while_the_daemon_was_down_is_listed_unhealthy(
    workdir: Path, host: FakeHost
) -> None:
    settings = held_settings(workdir, host)
    async with emulator(settings) as kubelet:
        async with running(settings):
            dev = await hold_one(kubelet)
        host.remove(dev)
        async with running(settings) as daemon:
            net = await kubelet.wait_for(NET, lambda d: dev in d and not d[dev].healthy,
                                         timeout=5)
            assert set(net) == ALL_NET
            await passes(daemon, 2)  # resyncs keep it while a pod holds it
            assert dev in kubelet.devices(NET)
            kubelet.release("busy")
            await kubelet.wait_for(NET, lambda d: dev not in d, timeout=5)


# --- item 0(b): a live reload renames, splits or merges the granting pool -----------------


def renamed(config: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    out["resourceList"][0]["resourceName"] = "net2"
    return out


def merged(config: dict[str, Any]) -> dict[str, Any]:
    return {"resourceList": [{"resourceName": "all", "selectors": [
        {"drivers": ["iavf", "vfio-pci"], "pfNames": ["ens785f0"]}]}]}


def split(config: dict[str, Any]) -> dict[str, Any]:
    return {"resourceList": [
        {"resourceName": "net-a", "selectors": [{"pfNames": ["ens785f0#0-1"]}]},
        {"resourceName": "net-b", "selectors": [{"pfNames": ["ens785f0#2-3"]}]},
        CONFIG["resourceList"][1]]}


@pytest.mark.parametrize(("reshape", "new"), [(renamed, "intel.com/net2"),
                                              (merged, "intel.com/all"),
                                              (split, "intel.com/net-a")])
async def test_a_held_vf_is_not_offered_by_a_new_pool_when_a_reload_reshapes_its_pool(
    workdir: Path, host: FakeHost, reshape: Any, new: str
) -> None:
    settings = held_settings(workdir, host)
    async with emulator(settings) as kubelet, running(settings) as daemon:
        dev = await hold_one(kubelet)
        assert dev == DEV
        write(settings.config_file, reshape(CONFIG))
        await kubelet.wait_registered(new, timeout=5)
        offered = await kubelet.wait_for(new, lambda d: len(d) > 0, timeout=5)
        assert dev not in offered
        # the granting pool lives on, offering only the held device, Healthy
        net = await kubelet.wait_for(NET, lambda d: set(d) == {dev}, timeout=5)
        assert net[dev].healthy
        await passes(daemon, 2)
        assert dev not in kubelet.devices(new)
        kubelet.release("busy")
        await kubelet.wait_for(new, lambda d: dev in d, timeout=5)
        await eventually(lambda: not kubelet.is_connected(NET), what="net endpoint stopped")


# --- item 9 / issue 12 bug 1: one health rule on every path -------------------------------


async def test_a_held_moved_vf_follows_its_link_and_stays_put_when_an_unrelated_carrier_changes(
    workdir: Path, host: FakeHost
) -> None:
    settings = held_settings(workdir, host)
    links = FakeLinkSource([LinkState("ens785f0", True, "UP"), LinkState("ens1f0", True, "UP")])
    async with emulator(settings) as kubelet, daemon_with_links(settings, links) as daemon:
        dev = await hold_one(kubelet)
        write(settings.config_file, config_moving(dev))
        await eventually(lambda: daemon.metrics.reloads["ok"] >= 1, what="reload applied")
        await passes(daemon, 1)
        net = kubelet.devices(NET)
        assert net[dev].healthy  # not a fault: the pod's device works
        assert dev not in kubelet.devices(DPDK)
        published = daemon.publications
        links.set_carrier("ens1f0", False)  # unrelated link: fast path
        links.set_carrier("ens1f0", True)
        await eventually(lambda: daemon.metrics.link_events >= 2, what="link events")
        await eventually(lambda: daemon.publications > published, what="a fast-path pass")
        assert dev not in kubelet.devices(DPDK)
        assert kubelet.devices(NET)[dev].healthy
        links.set_carrier("ens785f0", False)  # its PF loses carrier: a real fault
        await kubelet.wait_for(NET, lambda d: not d[dev].healthy, timeout=3)
        assert dev not in kubelet.devices(DPDK)
        links.set_carrier("ens785f0", True)
        await kubelet.wait_for(NET, lambda d: d[dev].healthy, timeout=3)
        assert dev not in kubelet.devices(DPDK)


# --- issue 12 bug 2: a link source that fails is logged, shown and restarted ---------------


class FlakyLinks(FakeLinkSource):
    """Fails on purpose: :meth:`start` raises while ``broken`` is set."""

    def __init__(self, links: list[LinkState]) -> None:
        super().__init__(links)
        self.broken = False
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        if self.broken:
            raise HostError("netlink socket refused (on purpose)")
        await super().start()


async def test_a_failing_link_source_is_logged_shown_in_readyz_and_restarted_when_it_raises(
    workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = held_settings(workdir, host, health_address=f"127.0.0.1:{port}")
    links = FlakyLinks([LinkState("ens785f0", True, "UP")])
    async with emulator(settings) as kubelet, daemon_with_links(settings, links):
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        await eventually(lambda: _status(port, 200), what="ready")
        links.broken = True
        with caplog.at_level(logging.ERROR):
            links.fail(HostError("link source socket failed: boom"))
            _, body = await eventually(lambda: _status(port, 503), what="not ready")
        assert "links" in body
        assert any("boom" in r.getMessage() for r in caplog.records)
        await eventually(lambda: links.starts >= 2, what="a restart was tried")
        # a carrier change while the source is down is seen once it resynchronises
        links.set_carrier("ens785f0", False)
        links.broken = False
        await kubelet.wait_capacity(NET, (4, 0), timeout=10)
        await eventually(lambda: _status(port, 200), timeout=10, what="ready again")
        links.set_carrier("ens785f0", True)
        await kubelet.wait_capacity(NET, (4, 4), timeout=3)
        assert links.starts >= 3  # started, failed to restart, restarted


async def _status(port: int, want: int) -> tuple[int, str] | None:
    status, body = await http_get(port, "/readyz")
    return (status, body) if status == want else None


async def _status_saying(port: int, text: str) -> bool:
    status, body = await http_get(port, "/readyz")
    return status == 503 and text in body


# --- item 7: pod resources errors are not releases ----------------------------------------


@pytest.mark.parametrize("code", [grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  grpc.StatusCode.UNAVAILABLE])
async def test_a_hold_is_kept_when_the_pod_resources_api_fails_and_released_once_it_answers(
    workdir: Path, host: FakeHost, code: grpc.StatusCode
) -> None:
    settings = held_settings(workdir, host)
    async with emulator(settings) as kubelet, running(settings) as daemon:
        dev = await hold_one(kubelet)
        write(settings.config_file, config_moving(dev))
        await kubelet.wait_for(DPDK, lambda d: len(d) == 4 and dev not in d, timeout=5)
        asked = kubelet.pod_resources_calls
        await eventually(lambda: kubelet.pod_resources_calls > asked, what="an answer listing it")
        kubelet.fail_pod_resources(code)
        await asyncio.sleep(0.6)  # the pod lives a while (the kubelet's file has its grant)
        # released, but the daemon cannot learn it: its last answer listed the pod (the
        # kubelet's file, rewritten without the grant, shows only what the last answer
        # already covers)
        kubelet.release("busy")
        calls = kubelet.pod_resources_calls
        await eventually(lambda: kubelet.pod_resources_calls >= calls + 2, what="retried")
        assert dev in kubelet.devices(NET) and dev not in kubelet.devices(DPDK)
        kubelet.fail_pod_resources(None)
        await kubelet.wait_for(DPDK, lambda d: dev in d, timeout=10)
        await kubelet.wait_for(NET, lambda d: dev not in d, timeout=5)
        assert daemon.is_ready


async def test_allocate_never_asks_the_pod_resources_api_when_pods_are_admitted(
    workdir: Path, host: FakeHost
) -> None:
    settings = replace(held_settings(workdir, host), resync_interval=30.0)
    async with emulator(settings) as kubelet, running(settings):
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        calls = kubelet.pod_resources_calls
        for n in range(4):
            await kubelet.admit(NET, 1, pod=f"p{n}")
            await kubelet.admit(DPDK, 1, pod=f"p{n}")
        assert kubelet.pod_resources_calls == calls


# --- issue 12 item 2: the uevent follower is supervised too ---------------------------------


async def test_a_failing_uevent_source_is_shown_in_readyz_and_restarted_when_it_breaks(
    workdir: Path, host: FakeHost
) -> None:
    from sriovdp.testing.uevents import FakeUeventSource

    port = free_port()
    settings = replace(held_settings(workdir, host, health_address=f"127.0.0.1:{port}"),
                       resync_interval=60.0)
    uevents = FakeUeventSource()
    daemon = Reconciler(settings, parse_config(json.dumps(CONFIG)), uevents=uevents)
    async with emulator(settings) as kubelet:
        task = asyncio.create_task(daemon.run())
        try:
            await kubelet.wait_capacity(NET, (4, 4), timeout=5)
            await asyncio.wait_for(daemon.supervisor.ready_event("uevents").wait(), 5)
            uevents.broken = True
            uevents.fail()
            _, body = await eventually(lambda: _status(port, 503), what="not ready")
            assert "uevents" in body
            await eventually(lambda: uevents.starts >= 3, what="restarts tried")
            uevents.broken = False
            await asyncio.wait_for(daemon.supervisor.ready_event("uevents").wait(), 10)
            await eventually(lambda: _status(port, 200), what="ready again")
            host.bind("0000:3b:02.4", "iavf")  # rebound from vfio-pci: net gets it
            uevents.emit("bind")
            await kubelet.wait_for(NET, lambda d: len(d) == 5, timeout=5)
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 10)


# --- item 8: a VF that is mid-rebind joins no new pool ----------------------------------------


async def test_a_rebound_vf_moves_only_after_the_settle_window_when_the_host_keeps_changing(
    workdir: Path, host: FakeHost
) -> None:
    settings = replace(held_settings(workdir, host), resync_interval=60.0, settle_window=1.5)
    async with emulator(settings) as kubelet, running(settings) as daemon:
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        host.bind(DEV, "vfio-pci", iommu_group=99)  # an operator rebinding VFs
        daemon.trigger("test: bind")
        passes = daemon.passes
        await eventually(lambda: daemon.passes > passes, what="a rescan")
        assert DEV in kubelet.devices(NET) and DEV not in kubelet.devices(DPDK)
        await kubelet.wait_for(DPDK, lambda d: DEV in d, timeout=5)  # settled: it moves
        await kubelet.wait_for(NET, lambda d: DEV not in d, timeout=5)


# --- item 5 (scan side): a rescan that hangs is abandoned, the kubelet is still answered -----


async def test_a_hung_rescan_is_logged_abandoned_and_named_while_allocate_still_answers(
    workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    from sriovdp.host.sysfs import scan

    hang = threading.Event()
    release = threading.Event()

    def scanner(paths: Any) -> Any:
        if hang.is_set():
            release.wait(30)
        return scan(paths)

    port = free_port()
    settings = replace(held_settings(workdir, host, health_address=f"127.0.0.1:{port}"),
                       resync_interval=60.0, scan_deadline=0.3)
    daemon = Reconciler(settings, parse_config(json.dumps(CONFIG)), scanner=scanner)
    async with emulator(settings) as kubelet:
        task = asyncio.create_task(daemon.run())
        try:
            await kubelet.wait_capacity(NET, (4, 4), timeout=5)
            hang.set()
            with caplog.at_level(logging.ERROR):
                daemon.trigger("test: a sysfs read hangs")
                # (503 may first come for another reason on a loaded machine)
                await eventually(lambda: _status_saying(port, "host scan stuck"),
                                 what="/readyz names the stuck scan")
            assert "abandoned" in caplog.text
            response = await kubelet.allocate(NET, [DEV])  # answered from the last snapshot
            assert response.container_responses
            daemon.trigger("test: another pass while the scan is stuck")
            hang.clear()
            release.set()
            await eventually(lambda: _status(port, 200), what="ready again")
            host.bind(DEV, "vfio-pci", iommu_group=99)
            daemon.trigger("test: rebind")
            await kubelet.wait_for(DPDK, lambda d: DEV in d, timeout=5)
        finally:
            release.set()
            daemon.stop()
            await asyncio.wait_for(task, 10)


async def test_the_first_publication_waits_for_a_settled_scan_when_a_vf_is_mid_rebind(
    workdir: Path, host: FakeHost
) -> None:
    from sriovdp.host.sysfs import scan

    vf = "0000:3b:02.5"
    scans = 0

    def scanner(paths: Any) -> Any:
        nonlocal scans
        scans += 1
        if scans == 1:  # the operator unbound it and binds vfio-pci right after this scan
            host.unbind(vf)
            inventory = scan(paths)
            host.bind(vf, "vfio-pci", iommu_group=105)
            return inventory
        return scan(paths)

    settings = replace(held_settings(workdir, host), settle_window=0.3)
    daemon = Reconciler(settings, parse_config(json.dumps(CONFIG)), scanner=scanner)
    async with emulator(settings) as kubelet:
        task = asyncio.create_task(daemon.run())
        try:
            await kubelet.wait_for(DPDK, lambda d: len(d) > 0, timeout=5)
            assert {d.id for d in kubelet.streams[DPDK][0]} == ALL_DPDK  # never without 02.5
            assert scans >= 2
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 10)


async def test_a_released_device_leaves_its_granting_pool_soon_when_no_resync_is_due(
    workdir: Path, host: FakeHost
) -> None:
    settings = replace(held_settings(workdir, host), resync_interval=60.0)
    async with emulator(settings) as kubelet, running(settings) as daemon:
        dev = await hold_one(kubelet)
        write(settings.config_file, config_moving(dev))
        await eventually(lambda: daemon.metrics.reloads["ok"] >= 1, what="reload applied")
        await eventually(lambda: (NET, dev) in daemon.retention.kept, what="kept in net")
        assert dev in kubelet.devices(NET) and dev not in kubelet.devices(DPDK)
        kubelet.release("busy")
        # the pod resources API is polled while a held device is kept (every 2 s)
        await kubelet.wait_for(DPDK, lambda d: dev in d, timeout=6)
        await kubelet.wait_for(NET, lambda d: dev not in d, timeout=3)


async def test_a_kept_device_is_regranted_only_by_its_granting_pool_when_released_and_taken_again(
    workdir: Path, host: FakeHost
) -> None:
    # issue 11 item 0 / followups item 2: after the pod releases a kept device there is a
    # window (the next pod resources poll) in which its granting pool still offers it; a
    # second pod may get it there. One holder at a time: the new pool must not offer it
    # while the second pod holds it, across the polls that follow.
    settings = replace(held_settings(workdir, host), resync_interval=60.0)
    async with emulator(settings) as kubelet, running(settings) as daemon:
        dev = await hold_one(kubelet)
        write(settings.config_file, config_moving(dev))
        await eventually(lambda: (NET, dev) in daemon.retention.kept, what="kept in net")
        await kubelet.wait_for(NET, lambda d: dev in d, timeout=3)
        kubelet.release("busy")
        again = await kubelet.admit(NET, 1, pod="next")  # before the daemon sees the release
        assert tuple(again.device_ids) == (dev,)
        seen_polls = 0
        start = daemon.publications
        while seen_polls < 2:  # two pod resources polls (2 s apart) with the second pod
            await asyncio.sleep(0.05)
            assert dev not in kubelet.devices(DPDK)
            assert dev in kubelet.devices(NET)
            seen_polls = daemon.publications - start
        kubelet.release("next")
        await kubelet.wait_for(DPDK, lambda d: dev in d, timeout=6)


# --- break-it: the first ask after a restart fails ----------------------------------------


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE,
                                  grpc.StatusCode.RESOURCE_EXHAUSTED])
async def test_a_held_vf_is_never_offered_by_a_second_pool_when_the_first_ask_after_a_restart_fails(
    workdir: Path, host: FakeHost, code: grpc.StatusCode
) -> None:
    settings = held_settings(workdir, host)
    async with emulator(settings) as kubelet:
        async with running(settings):
            dev = await hold_one(kubelet)
        moved = config_moving(dev)
        write(settings.config_file, moved)
        kubelet.fail_pod_resources(code)  # e.g. the kubelet restarting with the node
        calls = kubelet.pod_resources_calls
        daemon = Reconciler(settings, parse_config(json.dumps(moved)))
        task = asyncio.create_task(daemon.run())
        try:
            await eventually(lambda: kubelet.pod_resources_calls >= calls + 2, timeout=10,
                             what="the pod resources API asked again")
            await kubelet.wait_registered(DPDK, count=2)
            assert dev not in kubelet.devices(DPDK)  # held through intel.com/net
            assert not daemon.is_ready  # and /readyz says why nothing is offered yet
            kubelet.fail_pod_resources(None)
            await asyncio.wait_for(daemon.ready.wait(), 10)
            dpdk = await kubelet.wait_for(DPDK, lambda d: len(d) == 4, timeout=5)
            assert dev not in dpdk
            assert dev in await kubelet.wait_for(NET, lambda d: dev in d, timeout=5)
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 10)


async def test_a_device_is_offered_under_one_resource_when_two_instances_differ_in_prefix(
    workdir: Path, host: FakeHost
) -> None:
    """A rollout with ``maxSurge`` that also changes ``--resource-prefix`` (or the config)
    runs two instances whose pools have different sockets: per-socket locks alone let both
    serve, every VF offered as intel.com/net and as example.com/net."""
    old = held_settings(workdir, host)
    new = replace(old, resource_prefix="example.com")
    async with emulator(old) as kubelet, contextlib.AsyncExitStack() as first:
        await first.enter_async_context(running(old))
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        async with running(new, published=False) as second:
            await asyncio.sleep(1.0)  # time to register its pools, were it allowed to
            assert kubelet.devices("example.com/net") == {}
            assert not second.is_ready  # /readyz: its sockets are owned by another instance
            await first.aclose()  # the first instance exits: the second takes over
            await kubelet.wait_capacity("example.com/net", (4, 4), timeout=5)
            assert ALL_NET == set(kubelet.devices("example.com/net"))


async def test_a_held_vf_is_never_offered_by_a_second_pool_when_the_kubelet_restarts_with_it(
    workdir: Path, host: FakeHost
) -> None:
    """The node's kubelet and the daemon restart together (a node upgrade): at the first
    pass the pod resources socket is not there yet, though its directory is."""
    settings = held_settings(workdir, host)
    async with emulator(settings) as kubelet:
        async with running(settings):
            dev = await hold_one(kubelet)
        moved = config_moving(dev)
        write(settings.config_file, moved)
        restart = asyncio.create_task(kubelet.restart(downtime=1.5))
        await eventually(lambda: not settings.pod_resources_socket.exists(), what="down")
        daemon = Reconciler(settings, parse_config(json.dumps(moved)))
        task = asyncio.create_task(daemon.run())
        try:
            await restart
            await asyncio.wait_for(daemon.ready.wait(), 10)
            await kubelet.wait_registered(DPDK, count=2)
            dpdk = await kubelet.wait_for(DPDK, lambda d: len(d) == 4, timeout=5)
            assert dev not in dpdk
            assert dev in await kubelet.wait_for(NET, lambda d: dev in d, timeout=5)
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 10)


async def test_an_answer_without_the_daemons_own_pod_releases_nothing_when_the_kubelet_lags(
    workdir: Path, host: FakeHost
) -> None:
    """A kubelet that has just restarted lists pods before its pod manager has them from
    the API server; the daemon's own pod missing from an answer marks such an answer."""
    from sriovdp.kubelet.podresources import PodResourcesClient, PodResourcesError

    settings = held_settings(workdir, host)
    async with emulator(settings) as kubelet, running(settings):
        dev = await hold_one(kubelet)
        client = PodResourcesClient(settings.pod_resources_socket,
                                    own_pod=("default", "sriovdp-x7k2p"))
        with pytest.raises(PodResourcesError, match="own pod default/sriovdp-x7k2p") as err:
            await client.held()
        assert err.value.code == "INCOMPLETE" and not err.value.absent
        await kubelet.admit(DPDK, 1, pod="sriovdp-x7k2p")
        assert dev in (await client.held())[NET]


async def test_metrics_count_kept_devices_and_failed_pod_resources_calls_when_scraped(
    workdir: Path, host: FakeHost
) -> None:
    port = free_port()
    settings = held_settings(workdir, host, metrics_address=f"127.0.0.1:{port}")
    async with emulator(settings) as kubelet, running(settings) as daemon:
        dev = await hold_one(kubelet)
        kubelet.fail_pod_resources(grpc.StatusCode.RESOURCE_EXHAUSTED)
        write(settings.config_file, config_moving(dev))  # the move needs an answer: it fails
        await eventually(lambda: daemon.holds.failures >= 1, what="a failed List")
        kubelet.fail_pod_resources(None)

        async def scraped(line: str) -> bool:
            return line in (await http_get(port, "/metrics"))[1]

        await eventually(lambda: scraped('sriovdp_retained_devices{reason="kept"} 1.0'),
                         what="the held VF counted as kept")
        _, text = await http_get(port, "/metrics")
        errors = next(float(line.split()[-1]) for line in text.splitlines()
                      if line.startswith("sriovdp_pod_resources_errors_total "))
        assert errors >= 1
        assert 'sriovdp_retained_devices{reason="withheld"} 0.0' in text
        assert "sriovdp_draining_pools 0.0" in text
