"""AllocationLog on tmp dirs: what a restarted daemon learns of its predecessor's Allocates."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from sriovdp.errors import HostError
from sriovdp.host.allocationlog import FILE_NAME, ROTATE_BYTES, AllocationLog

NET = "intel.com/net"


def test_a_new_process_reads_what_the_last_one_recorded_when_it_is_recent(tmp_path: Path) -> None:
    now = [100.0]
    log = AllocationLog(tmp_path / "dp", clock=lambda: now[0])
    log.record(NET, ["0000:3b:02.0"])
    now[0] = 130.0
    log.record(NET, ["0000:3b:02.1", "0000:3b:02.2"])
    log.record("intel.com/dpdk", ["0000:3b:02.0"])
    log.close()
    now[0] = 135.0
    later = AllocationLog(tmp_path / "dp", clock=lambda: now[0])  # the restarted daemon
    assert later.recent(10.0) == {NET: {"0000:3b:02.1": 5.0, "0000:3b:02.2": 5.0},
                                  "intel.com/dpdk": {"0000:3b:02.0": 5.0}}
    assert later.recent(60.0)[NET]["0000:3b:02.0"] == 35.0
    assert stat.S_IMODE((tmp_path / "dp" / FILE_NAME).stat().st_mode) == 0o600


def test_nothing_is_reported_when_there_is_no_log(tmp_path: Path) -> None:
    assert AllocationLog(tmp_path).recent(60.0) == {}


def test_lines_that_do_not_parse_are_skipped_when_read(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text(
        "garbage\n12.5 intel.com/net\nnan intel.com/net 0000:3b:02.0\n"
        "50.0 intel.com/net 0000:3b:02.3\n60.0 intel.com/net 0000:3b:02.4")  # cut short
    assert AllocationLog(tmp_path, clock=lambda: 70.0).recent(60.0) == {
        NET: {"0000:3b:02.3": 20.0, "0000:3b:02.4": 10.0}}


def test_every_recent_line_stays_readable_when_the_log_rotates(tmp_path: Path) -> None:
    now = [0.0]
    log = AllocationLog(tmp_path, keep=60.0, clock=lambda: now[0])
    ids = [f"0000:3b:{i // 8:02x}.{i % 8}" for i in range(8)]
    writes = 0
    while (tmp_path / (FILE_NAME + ".1")).exists() is False or writes < 3 * ROTATE_BYTES // 100:
        now[0] += 0.05
        log.record(NET, ids)
        writes += 1
    line = len(f"{now[0]:.6f} {NET} {','.join(ids)}\n")
    per_minute = int(60.0 / 0.05 + 2) * line  # lines younger than 60 s are never rotated away
    assert (tmp_path / FILE_NAME).stat().st_size <= max(ROTATE_BYTES, per_minute) + line
    recent = log.recent(60.0)[NET]
    assert set(recent) == set(ids) and min(recent.values()) == pytest.approx(0.0)
    # nothing younger than 60 s is lost: the oldest line kept is at least 60 s old
    first = float((tmp_path / (FILE_NAME + ".1")).read_text().split(" ", 1)[0])
    assert now[0] - first >= 60.0


def test_a_record_fails_with_the_path_named_when_the_log_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).mkdir()
    with pytest.raises(HostError, match=FILE_NAME):
        AllocationLog(tmp_path).record(NET, ["0000:3b:02.0"])


def test_a_fifo_in_place_of_the_log_is_never_read_when_asked(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / FILE_NAME)
    assert AllocationLog(tmp_path).recent(60.0) == {}


def test_lines_are_stamped_with_boot_time_when_recorded(tmp_path: Path) -> None:
    # a step of the wall clock (NTP correcting a slow RTC) must not age a line
    AllocationLog(tmp_path).record(NET, ["0000:3b:02.0"])
    stamp = float((tmp_path / FILE_NAME).read_text().split(" ", 1)[0])
    assert abs(stamp - time.clock_gettime(time.CLOCK_BOOTTIME)) < 60.0


def test_a_record_reopens_the_log_when_it_was_removed_under_the_daemon(tmp_path: Path) -> None:
    log = AllocationLog(tmp_path)
    log.record(NET, ["0000:3b:02.0"])
    (tmp_path / FILE_NAME).unlink()  # a node clean-up
    log.record(NET, ["0000:3b:02.1"])
    assert set(AllocationLog(tmp_path).recent(60.0)[NET]) == {"0000:3b:02.1"}


def test_the_next_line_starts_on_its_own_when_the_log_ends_in_a_cut_line(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"1.000000 intel.com/net 0000:3b:0")
    AllocationLog(tmp_path).record(NET, ["0000:3b:02.1"])
    assert set(AllocationLog(tmp_path).recent(60.0)[NET]) == {"0000:3b:02.1"}


def test_a_failed_record_is_kept_as_the_error_until_one_succeeds(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).mkdir()
    log = AllocationLog(tmp_path)
    with pytest.raises(HostError):
        log.record(NET, ["0000:3b:02.0"])
    assert FILE_NAME in log.error
    (tmp_path / FILE_NAME).rmdir()
    log.record(NET, ["0000:3b:02.0"])
    assert log.error == ""
