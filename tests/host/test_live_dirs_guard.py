"""The session-wide guard in tests/conftest.py fails a run that writes to guarded dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).parent.parent / "conftest.py"


def run_guarded_session(tmp_path: Path, test_body: str) -> subprocess.CompletedProcess[str]:
    """Run a one-test pytest session with the guard watching ``tmp_path/live``."""
    live = tmp_path / "live"
    (live / "devinfo").mkdir(parents=True)
    (live / "devinfo" / "kept.json").write_text("{}")
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(CONFTEST, suite / "conftest.py")
    (suite / "test_one.py").write_text(
        f"from pathlib import Path\n\ndef test_one():\n    live = Path({str(live)!r})\n"
        f"    {test_body}\n")
    env = {**os.environ, "SRIOVDP_GUARDED_DIRS": str(live)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(suite), "-c", os.devnull, str(suite)],
        capture_output=True, text=True, env=env, timeout=60, check=False)


def test_session_fails_naming_the_file_when_a_test_writes_to_a_guarded_dir(
    tmp_path: Path,
) -> None:
    run = run_guarded_session(tmp_path, "(live / 'devinfo' / 'x-device.json').write_text('{}')")
    assert run.returncode == 1, run.stdout
    assert "added " + str(tmp_path / "live/devinfo/x-device.json") in run.stdout


def test_session_fails_when_a_test_removes_a_file_from_a_guarded_dir(tmp_path: Path) -> None:
    run = run_guarded_session(tmp_path, "(live / 'devinfo' / 'kept.json').unlink()")
    assert run.returncode == 1, run.stdout
    assert "removed " + str(tmp_path / "live/devinfo/kept.json") in run.stdout


def test_session_passes_when_a_test_leaves_guarded_dirs_alone(tmp_path: Path) -> None:
    run = run_guarded_session(tmp_path, "assert (live / 'devinfo' / 'kept.json').exists()")
    assert run.returncode == 0, run.stdout
