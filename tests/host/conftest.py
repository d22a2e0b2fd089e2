"""Fixtures for the host readers: FakeHost trees and upstream-style flat sysfs fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from sysfs_fixtures import FlatSysfs

from sriovdp.testing.fakehost import FakeHost


@pytest.fixture
def flat(tmp_path: Path) -> FlatSysfs:
    """An empty upstream-style fixture tree (only ``sys/bus/pci/devices``)."""
    return FlatSysfs(tmp_path)


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    """An empty FakeHost."""
    return FakeHost(tmp_path / "host")
