"""The Makefile rebuilds a .venv made by a Python below 3.11, or a broken one (issue 9
item 9). Run with `make -n` in a copy: the check runs while make reads the Makefile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def make_dry_run(tmp_path: Path, venv_python: str | None) -> subprocess.CompletedProcess[str]:
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    if venv_python is not None:
        bin_dir = tmp_path / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "python").write_text(venv_python)
        (bin_dir / "python").chmod(0o755)
    return subprocess.run(["make", "-n", "install", f"PYTHON={sys.executable}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)


# A stand-in interpreter answering the Makefile's version check as an old Python would.
OLD = "#!/bin/sh\nexit 1\n"
GOOD = "#!/bin/sh\nexit 0\n"


@pytest.mark.parametrize("venv_python", [OLD, "#!/nonexistent/python3.9\n"],
                         ids=["python-3.10", "interpreter-gone"])
def test_venv_is_rebuilt_when_made_by_an_old_or_broken_python(
    tmp_path: Path, venv_python: str
) -> None:
    proc = make_dry_run(tmp_path, venv_python)
    assert proc.returncode == 0, proc.stderr
    assert "older than 3.11 or is broken: rebuilding it" in proc.stdout
    assert not (tmp_path / ".venv").exists()
    assert f"{sys.executable} -m venv --clear .venv" in proc.stdout


def test_venv_is_kept_when_its_python_is_new_enough(tmp_path: Path) -> None:
    proc = make_dry_run(tmp_path, GOOD)
    assert proc.returncode == 0, proc.stderr
    assert "rebuilding" not in proc.stdout and "-m venv" not in proc.stdout
    assert (tmp_path / ".venv" / "bin" / "python").exists()


def test_a_fresh_checkout_builds_the_venv_without_a_warning(tmp_path: Path) -> None:
    proc = make_dry_run(tmp_path, None)
    assert proc.returncode == 0, proc.stderr
    assert "rebuilding" not in proc.stdout and "-m venv --clear .venv" in proc.stdout


def test_too_old_a_python_is_named_when_building_the_venv(tmp_path: Path) -> None:
    text = (REPO / "Makefile").read_text()
    assert "sriovdp needs Python 3.11 or newer" in text


def test_make_test_says_the_conformance_build_is_long_and_how_to_skip_it_when_go_is_there(
    tmp_path: Path,
) -> None:
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(GOOD)
    (bin_dir / "python").chmod(0o755)
    proc = subprocess.run(["make", "-n", "test"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    start = proc.stdout.index("! command -v go")
    announce = proc.stdout[start:proc.stdout.index("'not conformance'\"", start) + 18]
    said = subprocess.run(["sh", "-c", announce], capture_output=True, text=True, timeout=10,
                          env={"PATH": os.environ["PATH"]}, check=True).stdout
    if shutil.which("go"):
        assert "~11 min" in said and "-m 'not conformance'" in said
    else:
        assert said == ""


def test_make_test_runs_pip_only_when_pyproject_changed_since_the_last_install(
    tmp_path: Path,
) -> None:
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)

    def dry_run() -> str:
        return subprocess.run(["make", "-n", "test"], cwd=tmp_path, capture_output=True,
                              text=True, check=True).stdout

    assert "pip install" in dry_run()  # never installed
    (venv / ".installed-test").touch()
    assert "pip install" not in dry_run()  # installed after the last pyproject change
    os.utime(tmp_path / "pyproject.toml", (time.time() + 5, time.time() + 5))
    assert "pip install" in dry_run()
