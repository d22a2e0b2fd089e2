"""DDP profiles from ``ddptool`` (upstream-behavior §2.9, §10.15), with a fake ddptool on PATH."""

from __future__ import annotations

import json
import logging
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from sriovdp.host import ddp
from sriovdp.host.ddp import fill_ddp_profiles, parse_ddptool_output, read_ddp_profile
from sriovdp.host.sysfs import scan
from sriovdp.model.devices import Inventory
from sriovdp.testing.fakehost import FakeHost

HOSTS = Path(__file__).parent.parent / "data/hosts"
GTP = "GTPv1-C/U IPv4/IPv6 payload"
VALID = json.dumps({"DDPInventory": {
    "device": "154C", "address": "0000:03:02.0", "name": "enp3s2",
    "display": "Intel(R) Ethernet Virtual Function 700 Series",
    "DDPpackage": {"track_id": "80000008", "version": "1.0.3.0", "name": GTP}}})
TABLE = "02:00.0    enp1s0f0       abcdece      1.0.3.a  GTPv1-C/U IPv4/IPv6 payload"
ADDR = "0000:03:02.0"

FAKE_DDPTOOL = """#!/bin/sh
# Fake ddptool: answers/<last argument>.out is stdout, answers/<last argument>.rc the status.
here=$(dirname "$0")
echo "$@" >> "$here/calls"
for last; do :; done
[ -f "$here/answers/$last.out" ] && cat "$here/answers/$last.out"
exit "$(cat "$here/answers/$last.rc" 2>/dev/null || echo 0)"
"""


class FakeDdptool:
    """A real ``ddptool`` executable in a temp dir that is put first on PATH."""

    def __init__(self, bin_dir: Path) -> None:
        self.dir = bin_dir
        (bin_dir / "answers").mkdir(parents=True)
        tool = bin_dir / "ddptool"
        tool.write_text(FAKE_DDPTOOL)
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def answer(self, address: str, stdout: str, status: int = 0) -> None:
        (self.dir / "answers" / f"{address}.out").write_text(stdout)
        (self.dir / "answers" / f"{address}.rc").write_text(f"{status}\n")

    @property
    def calls(self) -> list[str]:
        path = self.dir / "calls"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def ddptool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDdptool:
    fake = FakeDdptool(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{fake.dir}:/usr/bin:/bin")
    return fake


# -- §10.15 through a real process --------------------------------------------------------------


def test_profile_name_returned_when_ddptool_prints_inventory(ddptool: FakeDdptool) -> None:
    ddptool.answer(ADDR, VALID)

    assert read_ddp_profile(ADDR) == GTP
    assert ddptool.calls == [f"-l -a -j -s {ADDR}"]


@pytest.mark.parametrize(("stdout", "status"), [
    ("What ever output", 0),
    ("", 127),
    (VALID, 127),  # a non-zero exit wins over valid output
    (TABLE, 0),
], ids=["junk-exit0", "empty-exit127", "json-exit127", "table-exit0"])
def test_no_profile_with_warning_when_ddptool_output_unusable(
        ddptool: FakeDdptool, caplog: pytest.LogCaptureFixture, stdout: str, status: int) -> None:
    ddptool.answer(ADDR, stdout, status)

    with caplog.at_level(logging.WARNING, logger="sriovdp.host.ddp"):
        assert read_ddp_profile(ADDR) is None

    (record,) = caplog.records
    assert ADDR in record.getMessage()


def test_no_profile_quietly_when_ddptool_exits_8(
        ddptool: FakeDdptool, caplog: pytest.LogCaptureFixture) -> None:
    ddptool.answer(ADDR, "", 8)

    with caplog.at_level(logging.WARNING, logger="sriovdp.host.ddp"):
        assert read_ddp_profile(ADDR) is None

    assert caplog.records == []


def test_one_log_line_per_reader_when_ddptool_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ddptool here
    reader = ddp.DdpReader()

    with caplog.at_level(logging.INFO, logger="sriovdp.host.ddp"):
        assert reader.read(ADDR) is None
        assert reader.read("0000:03:02.1") is None

    (record,) = caplog.records
    assert "ddpProfiles" in record.getMessage() and "ddptool" in record.getMessage()


def test_no_profile_when_runner_times_out(caplog: pytest.LogCaptureFixture) -> None:
    def hang(argv: Sequence[str]) -> tuple[int, str]:
        raise subprocess.TimeoutExpired(list(argv), 10)

    with caplog.at_level(logging.WARNING, logger="sriovdp.host.ddp"):
        assert read_ddp_profile(ADDR, runner=hang) is None

    assert "did not answer" in caplog.text


def test_runner_gets_ddptool_argv_when_injected() -> None:
    seen: list[Sequence[str]] = []

    def runner(argv: Sequence[str]) -> tuple[int, str]:
        seen.append(argv)
        return 0, VALID

    assert read_ddp_profile(ADDR, runner=runner, tool="/usr/bin/ddptool") == GTP
    assert seen == [["/usr/bin/ddptool", "-l", "-a", "-j", "-s", ADDR]]


# -- parsing only (§10.15) ----------------------------------------------------------------------


def test_name_parsed_when_output_valid() -> None:
    assert parse_ddptool_output(VALID) == GTP


@pytest.mark.parametrize("stdout", [
    json.dumps({"DDPInventory": {"device": "154C", "address": ADDR}}),
    json.dumps({"DDPInventory": {"error": "2", "message": "Cannot find device"}}),
    '{"DDPInventory": {"DDPpackage": ',
    "",
    "   \n",
    TABLE,
    json.dumps({"DDPInventory": {"DDPpackage": {"name": ""}}}),
    json.dumps({"DDPInventory": {"DDPpackage": {"name": 7}}}),
    json.dumps(["DDPInventory"]),
    json.dumps({"DDPInventory": "none"}),
], ids=["no-package", "error-object", "malformed", "empty", "blank", "table", "empty-name",
        "number-name", "list", "inventory-string"])
def test_value_error_when_output_has_no_profile(stdout: str) -> None:
    with pytest.raises(ValueError, match="ddptool"):
        parse_ddptool_output(stdout)


def test_error_message_kept_when_ddptool_reports_error_object() -> None:
    doc = json.dumps({"DDPInventory": {"error": "2", "message": "Cannot find device"}})

    with pytest.raises(ValueError, match="Cannot find device"):
        parse_ddptool_output(doc)


# -- fill_ddp_profiles -------------------------------------------------------------------------


@pytest.fixture
def e810(tmp_path: Path) -> Inventory:
    return scan(FakeHost.load(tmp_path / "host", HOSTS / "e810-ddp.yaml").paths)


def test_profiles_set_only_for_listed_addresses_when_filled(
        e810: Inventory, ddptool: FakeDdptool) -> None:
    comms = VALID.replace(GTP, "ICE COMMS Package")
    ddptool.answer("0000:5e:01.0", comms)
    ddptool.answer("0000:5e:01.1", "", 8)
    ddptool.answer("0000:5e:01.2", comms)

    filled = fill_ddp_profiles(e810, ["0000:5e:01.0", "0000:5e:01.1", "0000:5e:01.2",
                                      "0000:99:00.0"])

    assert {a: f.ddp_profile for a, f in filled.functions.items()} == {
        "0000:5e:00.0": None, "0000:5e:01.0": "ICE COMMS Package", "0000:5e:01.1": None,
        "0000:5e:01.2": "ICE COMMS Package", "0000:5e:01.3": None}
    assert sorted(c.split()[-1] for c in ddptool.calls) == [
        "0000:5e:01.0", "0000:5e:01.1", "0000:5e:01.2"]
    assert all(f.ddp_profile is None for f in e810.functions.values())  # input untouched
    assert list(filled.functions) == list(e810.functions)
    assert (filled.aux, filled.skipped, filled.facts) == (e810.aux, e810.skipped, e810.facts)


def test_inventory_returned_unchanged_when_ddptool_missing(
        e810: Inventory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    reader = ddp.DdpReader()
    with caplog.at_level(logging.WARNING, logger="sriovdp.host.ddp"):
        assert reader.fill(e810, list(e810.functions)) is e810
        assert reader.fill(e810, list(e810.functions)) is e810

    assert len(caplog.records) == 1


def test_no_runs_when_no_address_is_in_inventory(e810: Inventory) -> None:
    def runner(argv: Sequence[str]) -> tuple[int, str]:
        raise AssertionError("ddptool must not run")

    assert fill_ddp_profiles(e810, ["0000:99:00.0"], runner=runner) is e810


def test_a_closed_reader_runs_no_tool_and_another_reader_still_does(
        ddptool: FakeDdptool) -> None:
    ddptool.answer(ADDR, VALID)
    closed = ddp.DdpReader()
    closed.close()

    assert closed.read(ADDR) is None
    assert ddptool.calls == []
    assert ddp.DdpReader().read(ADDR) == GTP  # closing one reader disables nothing else
