"""Host discovery on the Go plugin's fixtures (upstream-behavior §10.2, H1-H6).

Upstream only checks "no error" for these, because ghw finds nothing in fixtures whose
modalias has no trailing newline. These tests pin the *intended* semantics instead.
"""

from __future__ import annotations

from sysfs_fixtures import FlatSysfs

from sriovdp.host.sysfs import scan
from sriovdp.model.devices import SkippedFunction

MODALIAS_X710_PF = "pci:v00008086d00001572sv00008086sd00000004bc02sc00i00"  # 53 chars, no \n
MODALIAS_X710_VF = "pci:v00008086d0000154Csv00008086sd00000000bc02sc00i00"


def test_no_functions_when_pci_dir_is_empty(flat: FlatSysfs) -> None:  # H1
    inventory = scan(flat.paths)

    assert inventory.functions == {}
    assert inventory.skipped == ()


def test_function_ignored_when_modalias_is_junk_and_no_id_files(flat: FlatSysfs) -> None:  # H2
    flat.dirs("pci/0000:00:00.0", "drv/i40e")
    flat.file("pci/0000:00:00.0/modalias", "pci:junk")
    flat.file("pci/0000:00:00.0/sriov_totalvfs", "0")
    flat.link("pci/0000:00:00.0/driver", "../../../../bus/pci/drivers/i40e")

    inventory = scan(flat.paths)

    assert inventory.functions == {}


def test_pf_without_vfs_included_when_modalias_has_no_newline(flat: FlatSysfs) -> None:  # H3
    flat.dirs("pci/0000:00:00.0", "drv/i40e")
    flat.file("pci/0000:00:00.0/modalias", MODALIAS_X710_PF)
    flat.file("pci/0000:00:00.0/sriov_totalvfs", "0")
    flat.link("pci/0000:00:00.0/driver", "../../../../bus/pci/drivers/i40e")

    fn = scan(flat.paths).functions["0000:00:00.0"]

    assert (fn.vendor, fn.device, fn.class_code, fn.driver) == ("8086", "1572", 0x020000, "i40e")
    assert (fn.total_vfs, fn.num_vfs, fn.is_pf_with_vfs) == (0, 0, False)


def test_function_skipped_with_reason_when_no_driver_bound(flat: FlatSysfs) -> None:  # H4
    flat.dirs("pci/0000:00:00.0")
    flat.file("pci/0000:00:00.0/modalias", MODALIAS_X710_PF)
    flat.file("pci/0000:00:00.0/sriov_totalvfs", "0")

    inventory = scan(flat.paths)

    assert inventory.functions == {}
    assert inventory.skipped == (SkippedFunction("0000:00:00.0", "no driver bound"),)


def _h5(flat: FlatSysfs) -> None:
    flat.dirs("pci/0000:00:00.0", "pci/0000:00:00.1", "drv/i40e", "drv/i40evf")
    flat.file("pci/0000:00:00.0/modalias", MODALIAS_X710_PF)
    flat.file("pci/0000:00:00.0/sriov_totalvfs", "1")
    flat.file("pci/0000:00:00.0/sriov_numvfs", "1")
    flat.link("pci/0000:00:00.0/driver", "../../../../bus/pci/drivers/i40e")
    flat.link("pci/0000:00:00.0/virtfn0", "../0000:00:00.1")
    flat.file("pci/0000:00:00.1/modalias", MODALIAS_X710_VF)
    flat.link("pci/0000:00:00.1/driver", "../../../../bus/pci/drivers/i40evf")


def test_pf_marked_with_vfs_and_vf_listed_when_vfs_enabled(flat: FlatSysfs) -> None:  # H5
    _h5(flat)

    functions = scan(flat.paths).functions

    pf, vf = functions["0000:00:00.0"], functions["0000:00:00.1"]
    assert (pf.total_vfs, pf.num_vfs, pf.is_pf_with_vfs) == (1, 1, True)
    assert (vf.device, vf.driver) == ("154c", "i40evf")


def test_vf_gets_index_zero_when_physfn_links_back_to_pf(flat: FlatSysfs) -> None:  # H5
    # The upstream fixture lacks the VF's physfn link that the kernel always creates.
    _h5(flat)
    flat.link("pci/0000:00:00.1/physfn", "../0000:00:00.0")

    vf = scan(flat.paths).functions["0000:00:00.1"]

    assert (vf.physfn, vf.vf_index, vf.is_vf) == ("0000:00:00.0", 0, True)


def test_driver_named_when_igb_uio_link_is_dangling(flat: FlatSysfs) -> None:  # H6
    for addr in ("0000:03:02.0", "0000:03:02.1"):
        flat.file(f"pci/{addr}/modalias", MODALIAS_X710_VF)
        flat.file(f"pci/{addr}/max_vfs", "0")
        flat.link(f"pci/{addr}/driver", "../../../../bus/pci/drivers/igb_uio")

    functions = scan(flat.paths).functions

    assert {a: f.driver for a, f in functions.items()} == {
        "0000:03:02.0": "igb_uio", "0000:03:02.1": "igb_uio"}
