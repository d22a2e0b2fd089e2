"""AllocationLog on tmp dirs: what a restarted daemon learns of its predecessor's Allocates."""

from __future__ import annotations

import os
import stat
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
    later = AllocationLog(tmp_path / "dp")  # the restarted daemon
    assert later.since(120.0) == {NET: {"0000:3b:02.1": 130.0, "0000:3b:02.2": 130.0},
                                  "intel.com/dpdk": {"0000:3b:02.0": 130.0}}
    assert later.since(90.0)[NET]["0000:3b:02.0"] == 100.0
    assert stat.S_IMODE((tmp_path / "dp" / FILE_NAME).stat().st_mode) == 0o600


def test_nothing_is_reported_when_there_is_no_log(tmp_path: Path) -> None:
    assert AllocationLog(tmp_path).since(0.0) == {}


def test_lines_that_do_not_parse_are_skipped_when_read(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text(
        "garbage\n12.5 intel.com/net\nnan intel.com/net 0000:3b:02.0\n"
        "50.0 intel.com/net 0000:3b:02.3\n60.0 intel.com/net 0000:3b:02.4")  # cut short
    assert AllocationLog(tmp_path).since(0.0) == {
        NET: {"0000:3b:02.3": 50.0, "0000:3b:02.4": 60.0}}


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
    recent = log.since(now[0] - 60.0)[NET]
    assert set(recent) == set(ids) and max(recent.values()) == pytest.approx(now[0])
    # nothing younger than 60 s is lost: the oldest line kept is at least 60 s old
    first = float((tmp_path / (FILE_NAME + ".1")).read_text().split(" ", 1)[0])
    assert now[0] - first >= 60.0


def test_a_record_fails_with_the_path_named_when_the_log_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).mkdir()
    with pytest.raises(HostError, match=FILE_NAME):
        AllocationLog(tmp_path).record(NET, ["0000:3b:02.0"])


def test_a_fifo_in_place_of_the_log_is_never_read_when_asked(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / FILE_NAME)
    assert AllocationLog(tmp_path).since(0.0) == {}
