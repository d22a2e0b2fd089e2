"""The supervisor and the hold tracker (fakes at their ports, temp dirs for sockets)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sriovdp.daemon.holds import HoldTracker
from sriovdp.daemon.supervisor import Ready, Supervisor
from sriovdp.testing import eventually
from sriovdp.testing.podresources import FakePodResources


async def test_a_failing_task_is_named_restarted_and_cleared_when_it_reports_ready(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    healthy = asyncio.Event()

    async def flaky(ready: Ready) -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise OSError("socket refused")
        ready()
        healthy.set()
        await asyncio.Event().wait()

    async with Supervisor(first_backoff=0.01) as supervisor:
        supervisor.start("source", flaky)
        await asyncio.wait_for(supervisor.ready_event("source").wait(), 5)
        assert supervisor.failures == {}
        assert runs == 3
        assert supervisor.restarts == {"source": 2}  # /metrics: sriovdp_task_restarts_total
    assert "source failed: OSError: socket refused" in caplog.text


async def test_a_task_meant_to_run_forever_is_restarted_when_it_ends() -> None:
    runs = 0

    async def quits(ready: Ready) -> None:
        nonlocal runs
        runs += 1

    async with Supervisor(first_backoff=0.01) as supervisor:
        supervisor.start("quitter", quits)
        await eventually(lambda: runs >= 2)
        assert supervisor.failures["quitter"] == "ended unexpectedly"


async def test_a_failed_list_keeps_every_hold_and_backs_off_when_the_api_fails() -> None:
    now = [0.0]
    api = FakePodResources()
    api.hold("intel.com/net", ["0000:3b:02.0"])
    tracker = HoldTracker(api, first_backoff=1.0, clock=lambda: now[0])
    assert await tracker.refresh()
    api.release("intel.com/net", ["0000:3b:02.0"])
    api.fail("RESOURCE_EXHAUSTED")
    assert not await tracker.refresh()
    assert tracker.current() == {"intel.com/net": frozenset({"0000:3b:02.0"})}
    calls = api.calls
    assert not await tracker.refresh() and api.calls == calls  # inside the back-off: no call
    now[0] = 1.0
    assert not await tracker.refresh() and tracker.retry_at == 3.0  # doubled
    api.fail(None)
    now[0] = 3.0
    assert await tracker.refresh()
    assert tracker.current() == {}


async def test_an_allocation_made_while_asking_is_kept_when_the_answer_predates_it() -> None:
    now = [5.0]
    api = FakePodResources()
    tracker = HoldTracker(api, clock=lambda: now[0], grace=1.0)
    tracker.allocated("intel.com/net", ["0000:3b:02.1"])  # at 5.0, before the question
    now[0] = 7.0
    tracker.allocated("intel.com/net", ["0000:3b:02.2"])  # at 7.0
    now[0] = 6.5  # (the question is asked at 6.5, the answer has neither)
    assert await tracker.refresh()
    assert tracker.current() == {"intel.com/net": frozenset({"0000:3b:02.2"})}


async def test_an_allocation_is_kept_when_the_answer_came_right_after_it() -> None:
    # the kubelet records a grant after our Allocate reply reaches it: a pod resources
    # answer in between lacks it, and dropping it would let another pool offer the device
    now = [5.0]
    api = FakePodResources()
    tracker = HoldTracker(api, clock=lambda: now[0], grace=1.0)
    tracker.allocated("intel.com/net", ["0000:3b:02.1"])
    now[0] = 5.01
    assert await tracker.refresh()
    assert tracker.current() == {"intel.com/net": frozenset({"0000:3b:02.1"})}
    now[0] = 6.5
    assert await tracker.refresh()
    assert tracker.current() == {}


async def test_the_first_answer_waits_for_the_kubelet_when_both_restart_together(
    tmp_path: Path,
) -> None:
    from sriovdp.kubelet.podresources import PodResourcesClient

    kubelet_sock = tmp_path / "device-plugins" / "kubelet.sock"
    tracker = HoldTracker(PodResourcesClient(tmp_path / "pod-resources" / "kubelet.sock"),
                          first_backoff=0.05, kubelet_socket=kubelet_sock)
    waiting = asyncio.create_task(tracker.first_answer(grace=0.2))
    await eventually(lambda: "waiting for the kubelet" in tracker.waiting, what="waiting")
    await asyncio.sleep(0.3)
    assert not waiting.done()  # no kubelet: nothing could register, and no answer yet
    assert tracker.retry_at is not None and tracker.retry_at - time.monotonic() <= 0.05
    kubelet_sock.parent.mkdir()
    kubelet_sock.touch()  # a socket file left by a killed kubelet: still down
    await asyncio.sleep(0.3)
    assert not waiting.done()
    kubelet_sock.unlink()
    kubelet = await asyncio.start_unix_server(lambda r, w: w.close(), path=str(kubelet_sock))
    async with kubelet:  # the kubelet is up, its pod resources API never comes: not mounted
        await asyncio.wait_for(waiting, 5)
    assert tracker.waiting == "" and tracker.absent


async def test_a_release_waits_while_the_kubelet_is_still_adding_its_pods(tmp_path: Path) -> None:
    kubelet_sock = tmp_path / "kubelet.sock"
    kubelet_sock.touch()  # the kubelet started now
    started = kubelet_sock.stat().st_ctime
    wall = [started + 1.0]
    api = FakePodResources()
    api.hold("intel.com/net", ["0000:3b:02.0"])
    tracker = HoldTracker(api, kubelet_socket=kubelet_sock, kubelet_settle=10.0,
                          wall=lambda: wall[0])
    assert await tracker.refresh()
    api.release("intel.com/net", ["0000:3b:02.0"])  # not listed: not added yet, or released
    assert await tracker.refresh()
    assert tracker.current() == {"intel.com/net": frozenset({"0000:3b:02.0"})}
    api.hold("intel.com/dpdk", ["0000:3b:02.4"])
    assert await tracker.refresh()  # what it lists is held at once
    assert tracker.current()["intel.com/dpdk"] == frozenset({"0000:3b:02.4"})
    wall[0] = started + 10.5  # the kubelet has had its 10 s
    assert await tracker.refresh()
    assert tracker.current() == {"intel.com/dpdk": frozenset({"0000:3b:02.4"})}


async def test_the_first_answer_waits_until_the_kubelet_has_had_time_to_list_its_pods(
    tmp_path: Path,
) -> None:
    kubelet_sock = tmp_path / "kubelet.sock"
    kubelet_sock.touch()
    api = FakePodResources()
    tracker = HoldTracker(api, kubelet_socket=kubelet_sock, kubelet_settle=0.5)
    waiting = asyncio.create_task(tracker.first_answer())
    await eventually(lambda: "for the kubelet, started" in tracker.waiting, what="waiting")
    api.hold("intel.com/net", ["0000:3b:02.0"])  # its pod arrives while it settles
    await asyncio.wait_for(waiting, 5)
    assert tracker.waiting == "" and api.calls >= 2
    assert tracker.current() == {"intel.com/net": frozenset({"0000:3b:02.0"})}


async def test_an_allocation_of_ours_stays_held_while_a_young_kubelet_lacks_it(
    tmp_path: Path,
) -> None:
    kubelet_sock = tmp_path / "kubelet.sock"
    kubelet_sock.touch()
    started = kubelet_sock.stat().st_ctime
    wall, now = [started + 1.0], [100.0]
    tracker = HoldTracker(FakePodResources(), kubelet_socket=kubelet_sock, kubelet_settle=10.0,
                          wall=lambda: wall[0], clock=lambda: now[0], grace=1.0)
    tracker.allocated("intel.com/net", ["0000:3b:02.1"])
    now[0] = 105.0  # well past the grace: a settled kubelet's answer would end it
    assert await tracker.refresh()
    assert tracker.current() == {"intel.com/net": frozenset({"0000:3b:02.1"})}
    wall[0] = started + 11.0
    assert await tracker.refresh()
    assert tracker.current() == {}


async def test_a_missing_socket_is_not_counted_as_a_failed_call_when_the_kubelet_is_down(
    tmp_path: Path,
) -> None:
    from sriovdp.kubelet.podresources import PodResourcesClient

    tracker = HoldTracker(PodResourcesClient(tmp_path / "kubelet.sock"))
    assert not await tracker.refresh()
    assert tracker.absent and tracker.failures == 0
