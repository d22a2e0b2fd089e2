"""The inventory's own views (model only)."""

from __future__ import annotations

from sriovdp.model.devices import Inventory, PciFunction


def test_netdev_names_lists_vf_and_pf_netdevs_when_functions_have_them() -> None:
    vf = PciFunction(address="0000:3b:02.0", vendor="8086", device="154c", class_code=0x020000,
                     physfn="0000:3b:00.0", pf_netdev="ens785f0", netdevs=("ens785f0v0",))
    bound = PciFunction(address="0000:3b:02.1", vendor="8086", device="154c",
                        class_code=0x020000, driver="vfio-pci", physfn="0000:3b:00.0",
                        pf_netdev="ens785f0")
    inventory = Inventory(functions={f.address: f for f in (vf, bound)})

    assert inventory.netdev_names() == {"ens785f0", "ens785f0v0"}
    assert Inventory().netdev_names() == frozenset()
