"""Where on the host sriovdp reads and writes; one root for tests and the demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class HostPaths:
    """Paths under a host root (``/`` in production, a FakeHost tree in tests).

    Attributes:
        root: the host root; ``sys/``, ``dev/`` and ``proc/`` are read below it.
    """

    root: Path

    @property
    def sys(self) -> Path:
        return self.root / "sys"

    @property
    def pci_devices(self) -> Path:
        """``sys/bus/pci/devices``: one relative symlink per PCI function."""
        return self.root / "sys/bus/pci/devices"

    @property
    def class_net(self) -> Path:
        """``sys/class/net``: one symlink per netdev visible in this network namespace."""
        return self.root / "sys/class/net"

    @property
    def dev(self) -> Path:
        return self.root / "dev"

    @property
    def proc_net(self) -> Path:
        """``proc/net`` (``route``, ``ipv6_route``) of the plugin's network namespace."""
        return self.root / "proc/net"
