"""Upstream-style flat sysfs fixtures for the host reader tests (imported by conftest)."""

from __future__ import annotations

import os
from pathlib import Path

from sriovdp.host.paths import HostPaths

_PREFIXES = {
    "pci/": "sys/bus/pci/devices/",
    "drv/": "sys/bus/pci/drivers/",
    "grp/": "sys/kernel/iommu_groups/",
    "net/": "sys/class/net/",
    "dev/": "dev/",
    "proc/": "proc/",
}


class FlatSysfs:
    """The Go plugin's unit-test fixture style: ``pci/<bdf>`` are plain directories.

    Paths start with ``pci/`` (``sys/bus/pci/devices``), ``drv/`` (``sys/bus/pci/drivers``),
    ``grp/`` (``sys/kernel/iommu_groups``), ``net/`` (``sys/class/net``), ``dev/`` or
    ``proc/``; link targets are written verbatim (relative, possibly dangling).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "sys/bus/pci/devices").mkdir(parents=True)

    def _abs(self, rel: str) -> Path:
        for short, full in _PREFIXES.items():
            if rel.startswith(short):
                return self.root / (full + rel[len(short):])
        raise ValueError(rel)

    def dirs(self, *rels: str) -> FlatSysfs:
        for rel in rels:
            self._abs(rel).mkdir(parents=True, exist_ok=True)
        return self

    def file(self, rel: str, content: str) -> FlatSysfs:
        path = self._abs(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return self

    def link(self, rel: str, target: str) -> FlatSysfs:
        path = self._abs(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        return self

    def nic(self, addr: str, *, device: str = "154c", driver: str | None = "fake",
            cls: str = "0x020000") -> FlatSysfs:
        """A function with vendor/device/class files and (optionally) a driver link."""
        self.file(f"pci/{addr}/vendor", "0x8086\n").file(f"pci/{addr}/device", f"0x{device}\n")
        self.file(f"pci/{addr}/class", f"{cls}\n")
        if driver is not None:
            self.dirs(f"drv/{driver}")
            self.link(f"pci/{addr}/driver", f"../../../../bus/pci/drivers/{driver}")
        return self

    @property
    def paths(self) -> HostPaths:
        return HostPaths(self.root)
