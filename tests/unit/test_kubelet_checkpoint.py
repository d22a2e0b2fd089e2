"""The kubelet's device checkpoint as a source of holds (its format is checked against the
real device manager in tests/conformance/test_breakit2_real_kubelet.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sriovdp.daemon.holds import HoldTracker
from sriovdp.kubelet.checkpoint import (
    CHECKPOINT_NAME,
    MAX_BYTES,
    CheckpointError,
    KubeletCheckpoint,
    parse_checkpoint,
)
from sriovdp.testing.podresources import FakePodResources

NET = "intel.com/net"
DPDK = "intel.com/dpdk"


def _entry(pod: str, container: str, resource: str, ids: Any) -> dict[str, Any]:
    return {"PodUID": pod, "ContainerName": container, "ResourceName": resource,
            "DeviceIDs": ids, "AllocResp": "CgA="}


def _write(path: Path, *entries: dict[str, Any]) -> None:
    doc = {"Data": {"PodDeviceEntries": list(entries),
                    "RegisteredDevices": {NET: ["0000:3b:02.0"]}}, "Checksum": 1}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)  # as the kubelet's checkpoint manager writes it


def test_grants_are_read_per_resource_when_entries_span_numa_nodes() -> None:
    text = json.dumps({"Data": {"PodDeviceEntries": [
        _entry("p1", "setup", NET, {"0": ["0000:3b:02.0"], "1": ["0000:af:02.0"]}),
        _entry("p2", "c0", NET, {"-1": ["0000:3b:02.1"]}),
        _entry("p2", "c1", DPDK, {"0": ["0000:3b:0a.0"]}),
        _entry("p3", "c0", "nvidia.com/gpu", None),
    ]}, "Checksum": 7})
    assert parse_checkpoint(text) == {
        NET: {"0000:3b:02.0": "p1", "0000:af:02.0": "p1", "0000:3b:02.1": "p2"},
        DPDK: {"0000:3b:0a.0": "p2"}}


def test_grants_are_read_when_the_checkpoint_predates_numa_nodes() -> None:
    # kubelets before 1.20 wrote DeviceIDs as a plain list
    text = json.dumps({"Data": {"PodDeviceEntries": [
        _entry("p1", "c0", NET, ["0000:3b:02.0"])], "RegisteredDevices": {}}, "Checksum": 1})
    assert parse_checkpoint(text) == {NET: {"0000:3b:02.0": "p1"}}


def test_nothing_is_granted_when_no_pod_has_devices() -> None:
    assert parse_checkpoint('{"Data": {"PodDeviceEntries": null}, "Checksum": 0}') == {}


@pytest.mark.parametrize(("text", "says"), [
    ("{not json", "not JSON"),
    ('{"Checksum": 1}', "Data is missing"),
    ('{"Data": {"PodDeviceEntries": {}}}', "not a list"),
    ('{"Data": {"PodDeviceEntries": [{"ResourceName": 3}]}}', "ResourceName"),
    ('{"Data": {"PodDeviceEntries": [{"ResourceName": "a/b", "DeviceIDs": {"0": [1]}}]}}',
     "DeviceIDs"),
])
def test_a_damaged_checkpoint_is_an_error_naming_the_field_when_parsed(
        text: str, says: str) -> None:
    with pytest.raises(CheckpointError, match=says):
        parse_checkpoint(text)


def test_nothing_is_granted_and_nothing_raised_when_the_file_is_missing(tmp_path: Path) -> None:
    checkpoint = KubeletCheckpoint(tmp_path / CHECKPOINT_NAME)
    assert checkpoint.granted() == {} and checkpoint.error == ""


def test_a_damaged_file_is_logged_once_and_grants_nothing_until_it_is_rewritten(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / CHECKPOINT_NAME
    path.write_text('{"Data": ')
    checkpoint = KubeletCheckpoint(path)
    assert checkpoint.granted() == {}
    assert "not JSON" in checkpoint.error
    path.touch()
    os.utime(path, ns=(1, 1))
    assert checkpoint.changed()
    assert checkpoint.granted() == {}
    assert sum("checkpoint unreadable" in r.message for r in caplog.records) == 1
    _write(path, _entry("p1", "c0", NET, {"0": ["0000:3b:02.0"]}))
    assert checkpoint.granted() == {NET: {"0000:3b:02.0": "p1"}}
    assert checkpoint.error == ""


def test_the_file_is_read_again_only_when_it_changed(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    _write(path, _entry("p1", "c0", NET, {"0": ["0000:3b:02.0"]}))
    checkpoint = KubeletCheckpoint(path)
    first = checkpoint.granted()
    assert not checkpoint.changed()
    assert checkpoint.granted() is first
    _write(path)
    assert checkpoint.changed()
    assert checkpoint.granted() == {}


async def test_a_device_granted_to_an_init_container_is_held_when_pod_resources_omit_it(
        tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    _write(path, _entry("p1", "setup", NET, {"0": ["0000:3b:02.0"]}),
           _entry("p2", "c0", NET, {"0": ["0000:3b:02.1"]}))
    api = FakePodResources()
    api.hold(NET, ["0000:3b:02.1"])  # List reports the app container only
    tracker = HoldTracker(api, checkpoint=KubeletCheckpoint(path))
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.0", "0000:3b:02.1"})}


async def test_a_hold_ends_when_the_kubelet_drops_the_entry_and_the_api_agrees(
        tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    _write(path, _entry("p1", "setup", NET, {"0": ["0000:3b:02.0"]}))
    tracker = HoldTracker(FakePodResources(), checkpoint=KubeletCheckpoint(path))
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.0"})}
    _write(path)  # the pod ended and a later allocation rewrote the file
    assert await tracker.refresh()
    assert tracker.current() == {}


async def test_checkpoint_grants_are_held_when_the_api_fails_or_is_not_mounted(
        tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    _write(path, _entry("p1", "c0", NET, {"0": ["0000:3b:02.0"]}))
    api = FakePodResources()
    api.fail("UNAVAILABLE")
    tracker = HoldTracker(api, checkpoint=KubeletCheckpoint(path))
    assert not await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.0"})}


async def test_the_kubelet_is_asked_to_rewrite_once_per_new_set_of_unconfirmed_grants(
        tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    _write(path, _entry("p1", "setup", NET, {"0": ["0000:3b:02.0"]}),
           _entry("p2", "c0", NET, {"0": ["0000:3b:02.1"]}))
    now = [0.0]
    api = FakePodResources()
    api.hold(NET, ["0000:3b:02.1"])
    tracker = HoldTracker(api, clock=lambda: now[0], checkpoint=KubeletCheckpoint(path))
    assert not tracker.rewrite_due()  # not asked yet
    assert await tracker.refresh()
    assert tracker.unconfirmed() == {(NET, "0000:3b:02.0")}
    assert tracker.rewrite_due()
    tracker.rewrite_asked()
    waits = []
    for _ in range(6):  # the same grant stays (a live init container): 2, 4, ... 30 s
        start = now[0]
        while not tracker.rewrite_due():
            now[0] += 0.5
        waits.append(now[0] - start)
        tracker.rewrite_asked()
    assert waits == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    _write(path, _entry("p1", "setup", NET, {"0": ["0000:3b:02.0"]}),
           _entry("p3", "setup", NET, {"0": ["0000:3b:02.2"]}))
    assert await tracker.refresh()
    assert tracker.rewrite_due()  # a new set: asked at once


async def test_no_rewrite_is_asked_when_the_answer_lists_every_grant_or_the_api_failed(
        tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    _write(path, _entry("p2", "c0", NET, {"0": ["0000:3b:02.1"]}))
    api = FakePodResources()
    api.hold(NET, ["0000:3b:02.1"])
    tracker = HoldTracker(api, checkpoint=KubeletCheckpoint(path))
    assert await tracker.refresh()
    assert tracker.unconfirmed() == frozenset() and not tracker.rewrite_due()
    api.release(NET, ["0000:3b:02.1"])
    api.fail("UNAVAILABLE")  # the kubelet was not asked: it forgot nothing
    assert not await tracker.refresh()
    assert not tracker.rewrite_due()


async def test_an_own_allocation_is_held_until_the_kubelet_records_it_when_its_admission_is_slow(
        tmp_path: Path) -> None:
    # the kubelet writes a grant only once every resource of the container is allocated:
    # another plugin's slow Allocate keeps it out of both sources for seconds
    path = tmp_path / CHECKPOINT_NAME
    _write(path)
    os.utime(path, (4.0, 4.0))  # written before the allocation
    now = [5.0]
    tracker = HoldTracker(FakePodResources(), clock=lambda: now[0], wall=lambda: now[0],
                          checkpoint=KubeletCheckpoint(path))
    tracker.allocated(NET, ["0000:3b:02.1"])
    now[0] = 9.0
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.1"})}
    assert tracker.unconfirmed() == frozenset()
    assert tracker.awaiting_rewrite() == {(NET, "0000:3b:02.1")}  # did the kubelet get it?
    _write(path, _entry("p1", "setup", NET, {"0": ["0000:3b:02.1"]}))  # recorded now
    os.utime(path, (9.5, 9.5))
    now[0] = 10.0
    assert await tracker.refresh()
    assert tracker.awaiting_rewrite() == {(NET, "0000:3b:02.1")}  # an init container's grant
    _write(path)  # the pod ended and the file was rewritten: no own record keeps it
    os.utime(path, (10.5, 10.5))
    now[0] = 11.0
    assert await tracker.refresh()
    assert tracker.current() == {}


async def test_an_own_allocation_ends_when_the_kubelet_writes_its_file_without_it(
        tmp_path: Path) -> None:
    # the admission failed after our Allocate: the kubelet's next write lacks the grant
    path = tmp_path / CHECKPOINT_NAME
    now = [5.0]
    tracker = HoldTracker(FakePodResources(), clock=lambda: now[0], wall=lambda: now[0],
                          checkpoint=KubeletCheckpoint(path))
    tracker.allocated(NET, ["0000:3b:02.1"])
    _write(path)
    os.utime(path, (5.2, 5.2))  # a write that may have started before our reply arrived
    now[0] = 6.0
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.1"})}
    _write(path)
    os.utime(path, (6.5, 6.5))  # the write the resend asked for
    now[0] = 7.0
    assert await tracker.refresh()
    assert tracker.current() == {}


async def test_an_own_allocation_ends_after_the_grace_when_no_source_ever_lists_it(
        tmp_path: Path) -> None:
    now = [5.0]
    tracker = HoldTracker(FakePodResources(), clock=lambda: now[0], grace=60.0,
                          checkpoint=KubeletCheckpoint(tmp_path / CHECKPOINT_NAME))
    tracker.allocated(NET, ["0000:3b:02.1"])  # the admission failed after our Allocate
    now[0] = 64.0
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.1"})}
    now[0] = 66.0
    assert await tracker.refresh()
    assert tracker.current() == {}


async def test_last_good_grants_are_kept_when_the_checkpoint_becomes_unreadable(
        tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    _write(path, _entry("p1", "setup", NET, {"0": ["0000:3b:02.0"]}))
    tracker = HoldTracker(FakePodResources(), checkpoint=KubeletCheckpoint(path))
    assert await tracker.refresh()
    path.write_text('{"Data": {"PodDeviceEntries": [')  # truncated
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.0"})}
    assert "not JSON" in tracker.checkpoint_error
    path.unlink()  # gone altogether (the kubelet's state was wiped): nothing granted
    assert await tracker.refresh()
    assert tracker.current() == {}


@pytest.mark.parametrize("odd", ["fifo", "directory", "deep", "huge"])
def test_an_odd_file_is_an_error_and_never_blocks_when_read(tmp_path: Path, odd: str) -> None:
    path = tmp_path / CHECKPOINT_NAME
    if odd == "fifo":
        os.mkfifo(path)
    elif odd == "directory":
        path.mkdir()
    elif odd == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    else:
        with path.open("wb") as f:
            f.truncate(MAX_BYTES + 1)  # sparse
    checkpoint = KubeletCheckpoint(path)
    assert checkpoint.granted() == {}
    assert checkpoint.error


async def test_a_grant_the_answer_listed_stops_holding_when_the_answer_drops_it(
        tmp_path: Path) -> None:
    # an app container's pod ended: List drops it at once, the file only at the kubelet's
    # next write (which may never come when no device plugin is left to resend through)
    path = tmp_path / CHECKPOINT_NAME
    _write(path, _entry("p1", "c0", NET, {"0": ["0000:3b:02.0"]}),
           _entry("p2", "setup", NET, {"0": ["0000:3b:02.1"]}))
    api = FakePodResources()
    api.hold(NET, ["0000:3b:02.0"])
    tracker = HoldTracker(api, checkpoint=KubeletCheckpoint(path))
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.0", "0000:3b:02.1"})}
    api.release(NET, ["0000:3b:02.0"])
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.1"})}  # the init one stays
    assert tracker.unconfirmed() == {(NET, "0000:3b:02.1")}
    _write(path, _entry("p1", "c0", NET, {"0": ["0000:3b:02.0"]}),
           _entry("p2", "setup", NET, {"0": ["0000:3b:02.1"]}),
           _entry("p3", "setup", DPDK, {"0": ["0000:3b:0a.0"]}))
    assert await tracker.refresh()  # the same VF id granted again, to another pod, holds
    _write(path, _entry("p4", "setup", NET, {"0": ["0000:3b:02.0"]}))
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.0"})}


async def test_a_listed_grant_holds_again_when_a_restarted_kubelet_has_not_got_its_pod_back(
        tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    kubelet_sock = tmp_path / "kubelet.sock"
    kubelet_sock.touch()
    _write(path, _entry("p1", "c0", NET, {"0": ["0000:3b:02.0"]}))
    api = FakePodResources()
    api.hold(NET, ["0000:3b:02.0"])
    tracker = HoldTracker(api, checkpoint=KubeletCheckpoint(path), kubelet_socket=kubelet_sock)
    assert await tracker.refresh()
    kubelet_sock.unlink()
    kubelet_sock.touch()  # the kubelet restarted; its pods come from the API server later
    api.release(NET, ["0000:3b:02.0"])
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.0"})}


async def test_a_previous_process_allocation_is_held_until_the_kubelet_records_it_when_adopted(
        tmp_path: Path) -> None:
    # the daemon restarted while an admission it served waits on another plugin: the
    # allocation log line of its Allocate (5 s ago) is the only trace of the grant
    path = tmp_path / CHECKPOINT_NAME
    _write(path)
    os.utime(path, (90.0, 90.0))  # the kubelet's last write came before that Allocate
    now = [100.0]
    tracker = HoldTracker(FakePodResources(), clock=lambda: now[0], wall=lambda: now[0],
                          grace=60.0, checkpoint=KubeletCheckpoint(path))
    tracker.adopt({NET: {"0000:3b:02.1": 5.0, "0000:3b:02.2": 70.0}})  # .2: beyond the grace
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.1"})}
    assert tracker.awaiting_rewrite() == {(NET, "0000:3b:02.1")}  # the resend asks the kubelet
    _write(path, _entry("p1", "setup", NET, {"0": ["0000:3b:02.1"]}))
    os.utime(path, (101.0, 101.0))  # written after it, with the grant: the file holds it now
    now[0] = 102.0
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.1"})}
    assert tracker.unconfirmed() == {(NET, "0000:3b:02.1")}
    _write(path)  # the pod ended
    os.utime(path, (103.0, 103.0))
    now[0] = 104.0
    assert await tracker.refresh()
    assert tracker.current() == {}


async def test_an_adopted_allocation_ends_when_the_api_lists_it_or_the_grace_runs_out(
        tmp_path: Path) -> None:
    now = [100.0]
    api = FakePodResources()
    tracker = HoldTracker(api, clock=lambda: now[0], wall=lambda: now[0], grace=60.0,
                          checkpoint=KubeletCheckpoint(tmp_path / CHECKPOINT_NAME))
    tracker.adopt({NET: {"0000:3b:02.1": 1.0, "0000:3b:02.2": 50.0}})
    api.hold(NET, ["0000:3b:02.1"])
    assert await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.1", "0000:3b:02.2"})}
    api.release(NET, ["0000:3b:02.1"])  # listed once, then gone: the pod ended
    now[0] = 111.0  # 61 s after .2's Allocate
    assert await tracker.refresh()
    assert tracker.current() == {}


async def test_an_own_allocation_ends_on_the_kubelets_later_write_when_the_api_is_not_mounted(
        tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    now = [100.0]
    api = FakePodResources()
    api.fail("UNAVAILABLE")  # the API fails (or is not mounted) throughout
    tracker = HoldTracker(api, clock=lambda: now[0], wall=lambda: now[0],
                          checkpoint=KubeletCheckpoint(path))
    tracker.adopt({NET: {"0000:3b:02.1": 1.0}})  # a previous process's Allocate, 1 s ago
    assert not await tracker.refresh()
    assert tracker.current() == {NET: frozenset({"0000:3b:02.1"})}
    _write(path)  # the pod ended: the kubelet's file, written after the Allocate, lacks it
    os.utime(path, (101.0, 101.0))
    now[0] = 102.0
    assert not await tracker.refresh()
    assert tracker.current() == {}
