"""Fixtures for whole-daemon tests: a short work dir (unix socket paths < 108 bytes)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sriovdp.testing.fakehost import FakeHost


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sdp-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host(workdir: Path) -> FakeHost:
    """The demo host: an X710 PF with 8 VFs (4 on vfio-pci) and a ConnectX-5 PF with 4 VFs."""
    from sriovdp.testing.demo import build_demo_host

    return build_demo_host(workdir / "host")
