"""The leak checks in tests/conftest.py fail a test that leaves a task or a thread running."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).parent.parent / "conftest.py"


def run_one_test(tmp_path: Path, test_source: str) -> subprocess.CompletedProcess[str]:
    """Run a one-module pytest session under the project's conftest.py."""
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(CONFTEST, suite / "conftest.py")
    (suite / "test_one.py").write_text(test_source)
    env = {**os.environ, "SRIOVDP_GUARDED_DIRS": str(tmp_path / "none")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(suite), "-c", os.devnull, "-o", "asyncio_mode=auto", str(suite)],
        capture_output=True, text=True, env=env, timeout=60, check=False)


def test_test_fails_naming_the_task_when_it_leaves_one_pending(tmp_path: Path) -> None:
    run = run_one_test(tmp_path, (
        "import asyncio\n\n"
        "async def test_one():\n"
        "    asyncio.get_running_loop().create_task(asyncio.sleep(60), name='orphan')\n"))
    assert run.returncode == 1, run.stdout
    assert "tasks still pending after the test" in run.stdout and "orphan" in run.stdout


def test_test_fails_naming_the_thread_when_it_leaves_one_running(tmp_path: Path) -> None:
    run = run_one_test(tmp_path, (
        "import threading\n\n"
        "STOP = threading.Event()\n\n"
        "def test_one():\n"
        "    threading.Thread(target=STOP.wait, args=(5,), name='stray', daemon=True).start()\n"))
    assert run.returncode == 1, run.stdout
    assert "threads still running after the test" in run.stdout and "stray" in run.stdout


def test_test_passes_when_its_tasks_end_within_the_grace(tmp_path: Path) -> None:
    run = run_one_test(tmp_path, (
        "import asyncio\n\n"
        "async def test_one():\n"
        "    asyncio.get_running_loop().create_task(asyncio.sleep(0.1))\n"))
    assert run.returncode == 0, run.stdout
