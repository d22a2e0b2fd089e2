"""scan() of this machine's real sysfs, checked against an independent read of /sys."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from sriovdp.host.paths import HostPaths
from sriovdp.host.sysfs import scan

SYS_PCI = Path("/sys/bus/pci/devices")

pytestmark = pytest.mark.skipif(not SYS_PCI.is_dir(), reason="no /sys/bus/pci on this machine")


def independent_view() -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """address → (driver, netdevs) of every class 0x02/0x12 function, read the slow way."""
    view = {}
    for dev in sorted(SYS_PCI.iterdir()):
        if int((dev / "class").read_text(), 16) >> 16 not in (0x02, 0x12):
            continue
        driver = dev / "driver"
        name = Path(os.path.realpath(driver)).name if driver.is_symlink() else None
        nets = glob.glob(str(dev / "net/*")) + glob.glob(str(dev / "virtio*/net/*"))
        view[dev.name] = (name, tuple(sorted(Path(n).name for n in nets)))
    return view


def test_every_network_function_found_when_scanning_this_machine() -> None:
    expected = independent_view()

    inventory = scan(HostPaths(Path("/")))

    found = {a: (f.driver, f.netdevs) for a, f in inventory.functions.items()}
    found.update({s.address: (None, ()) for s in inventory.skipped
                  if s.reason == "no driver bound"})
    assert found == expected


def test_link_types_known_when_scanning_this_machine() -> None:
    inventory = scan(HostPaths(Path("/")))

    for fn in inventory.functions.values():
        if fn.netdevs:
            arphrd = int(Path(f"/sys/class/net/{fn.netdevs[0]}/type").read_text())
            assert fn.link_type == {1: "ether", 32: "infiniband"}.get(arphrd, fn.link_type)
            assert fn.link_type
