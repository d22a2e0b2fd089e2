"""RDMA devices, their char devices and InfiniBand pkeys (upstream-behavior §2.4, §2.10,
§2.11, §10.9 G8)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from sysfs_fixtures import FlatSysfs

from sriovdp.host.files import HostRoot
from sriovdp.host.sysfs import scan
from sriovdp.host.sysfs.rdma import RdmaReader
from sriovdp.model.devices import RdmaInfo
from sriovdp.testing.fakehost import FakeHost

HOSTS = Path(__file__).parent.parent / "data/hosts"
PF = "0000:af:00.0"


def chars(*entries: str) -> tuple[str, ...]:
    return tuple(f"/dev/infiniband/{e}" for e in entries)


@pytest.fixture
def cx5(host: FakeHost) -> FakeHost:
    """ConnectX-5 PF with 2 VFs on mlx5_core, no RDMA devices yet."""
    host.add_pf(PF, vendor="15b3", device="1017", driver="mlx5_core", ifname="ens1f0",
                total_vfs=8, vf_offset=2)
    host.add_vfs(PF, 2, device="1018", driver="mlx5_core", ifname="ens1f0v{n}")
    return host


def test_rdma_devices_and_char_devices_read_when_every_vf_has_rdma(tmp_path: Path) -> None:
    fns = scan(FakeHost.load(tmp_path, HOSTS / "cx5-rdma.yaml").paths).functions

    assert fns[PF].rdma == RdmaInfo(devices=("mlx5_0",),
                                    char_devices=chars("issm0", "umad0", "uverbs0", "rdma_cm"))
    vfs = [f for f in fns.values() if f.is_vf]
    assert [(f.address, f.rdma.devices if f.rdma else None) for f in vfs] == [
        ("0000:af:00.2", ("mlx5_2",)), ("0000:af:00.3", ("mlx5_3",)),
        ("0000:af:00.4", ("mlx5_4",)), ("0000:af:00.5", ("mlx5_5",))]
    assert fns["0000:af:00.5"].rdma is not None
    assert fns["0000:af:00.5"].rdma.char_devices == chars("issm5", "umad5", "uverbs5", "rdma_cm")


def test_char_devices_in_go_order_when_ucm_issm_umad_uverbs_exist(cx5: FakeHost) -> None:  # G8
    cx5.add_rdma("0000:af:00.2", "mlx5_2", uverbs=7, umad=3, issm=3, ucm=1)
    cx5.enable_rdma_cm()

    rdma = scan(cx5.paths).functions["0000:af:00.2"].rdma

    assert rdma is not None
    assert rdma.char_devices == chars("ucm1", "issm3", "umad3", "uverbs7", "rdma_cm")


def test_no_rdma_cm_when_rdma_ucm_not_loaded(cx5: FakeHost) -> None:
    cx5.add_rdma("0000:af:00.2", "mlx5_2")

    rdma = scan(cx5.paths).functions["0000:af:00.2"].rdma

    assert rdma == RdmaInfo(devices=("mlx5_2",), char_devices=chars("issm0", "umad0", "uverbs0"))


def test_rdma_cm_listed_once_when_function_has_two_rdma_devices(cx5: FakeHost) -> None:  # G8
    cx5.add_rdma(PF, "mlx5_0")
    cx5.add_rdma(PF, "mlx5_1", char_devices=False)
    cx5.enable_rdma_cm()

    rdma = scan(cx5.paths).functions[PF].rdma

    assert rdma is not None and rdma.devices == ("mlx5_0", "mlx5_1")
    assert rdma.char_devices == chars("issm0", "umad0", "uverbs0", "rdma_cm")


def test_no_rdma_when_function_has_no_rdma_device(cx5: FakeHost) -> None:
    cx5.add_rdma("0000:af:00.2", "mlx5_2")
    cx5.enable_rdma_cm()

    fns = scan(cx5.paths).functions

    assert fns[PF].rdma is None and fns["0000:af:00.3"].rdma is None


def test_rdma_devices_without_char_devices_when_class_maps_missing(cx5: FakeHost) -> None:
    cx5.add_rdma("0000:af:00.2", "mlx5_2", char_devices=False)

    rdma = scan(cx5.paths).functions["0000:af:00.2"].rdma

    assert rdma == RdmaInfo(devices=("mlx5_2",), char_devices=())


def test_first_entry_by_name_used_when_two_entries_name_the_same_device(
        cx5: FakeHost) -> None:  # G8: first match per type
    cx5.add_rdma("0000:af:00.2", "mlx5_2", uverbs=5)
    extra = cx5.root / "sys/class/infiniband_verbs/uverbs3"
    extra.mkdir()
    (extra / "ibdev").write_text("mlx5_2\n")

    rdma = scan(cx5.paths).functions["0000:af:00.2"].rdma

    assert rdma is not None and rdma.char_devices[-1] == "/dev/infiniband/uverbs3"


def test_rdma_found_by_listing_when_tree_has_no_infiniband_class(flat: FlatSysfs) -> None:
    flat.nic("0000:01:00.0", driver="mlx5_core").dirs("pci/0000:01:00.0/infiniband/mlx5_0")

    rdma = scan(flat.paths).functions["0000:01:00.0"].rdma

    assert rdma == RdmaInfo(devices=("mlx5_0",), char_devices=())


def test_char_device_maps_read_once_when_many_functions_have_rdma(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = FakeHost.load(tmp_path, HOSTS / "cx5-rdma.yaml").paths
    calls = []
    original = RdmaReader._read_chars

    def counting(self: RdmaReader) -> Any:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(RdmaReader, "_read_chars", counting)

    scan(paths)

    assert len(calls) == 1


def test_nothing_rdma_or_vdpa_opened_when_host_has_neither(
        cx5: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open, real_open_at = HostRoot.open, HostRoot.open_at
    real_beneath = HostRoot.open_beneath

    def spy_open(self: HostRoot, rel: str, *args: Any) -> int:
        opened.append(f"/{rel}")
        return real_open(self, rel, *args)

    def spy_open_at(self: HostRoot, dir_fd: int, name: str, rel: str, *args: Any) -> int:
        opened.append(f"/{rel}")
        return real_open_at(self, dir_fd, name, rel, *args)

    def spy_beneath(self: HostRoot, dir_fd: int, rel: str, *args: Any) -> int:
        opened.append(f"<fd>/{rel}")
        return real_beneath(self, dir_fd, rel, *args)

    monkeypatch.setattr(HostRoot, "open", spy_open)
    monkeypatch.setattr(HostRoot, "open_at", spy_open_at)
    monkeypatch.setattr(HostRoot, "open_beneath", spy_beneath)

    scan(cx5.paths)

    touched = [p for p in opened if "infiniband" in p or "vdpa" in p or "auxiliary" in p]
    assert sorted(touched) == [
        "/sys/bus/auxiliary/devices", "/sys/bus/vdpa/devices", "/sys/class/infiniband"]


def test_sf_rdma_device_not_given_to_pf_when_sf_has_rdma(host: FakeHost) -> None:
    pf = host.add_pf("0000:3b:00.0", vendor="15b3", device="101d", driver="mlx5_core",
                     ifname="enp59s0f0np0")
    host.add_sf(pf, 4, ifname="enp59s0f0s4", rdma="mlx5_4")

    inventory = scan(host.paths)

    assert inventory.functions[pf].rdma is None
    sf_rdma = inventory.aux["mlx5_core.sf.4"].rdma
    assert sf_rdma is not None and sf_rdma.devices == ("mlx5_4",)


# -- pkeys (§2.10) ---------------------------------------------------------------------------


def test_pkeys_read_when_link_type_is_infiniband(tmp_path: Path) -> None:
    fns = scan(FakeHost.load(tmp_path, HOSTS / "ib-hca-pkeys.yaml").paths).functions

    assert {f.link_type for f in fns.values()} == {"infiniband"}
    assert [(a, f.pkey) for a, f in fns.items()] == [
        ("0000:d8:00.0", "0xffff"), ("0000:d8:00.2", "0x7fff"), ("0000:d8:00.3", "0x8001"),
        ("0000:d8:00.4", "0xffff"), ("0000:d8:00.5", "0x8002")]


def test_no_pkey_when_link_type_is_ether(cx5: FakeHost) -> None:
    cx5.add_rdma("0000:af:00.2", "mlx5_2", pkey="0x7fff")

    fn = scan(cx5.paths).functions["0000:af:00.2"]

    assert fn.link_type == "ether" and fn.rdma is not None and fn.pkey is None


def test_pkey_none_with_log_when_pkeys_file_missing(
        host: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    pf = host.add_pf("0000:d8:00.0", vendor="15b3", device="101b", driver="mlx5_core",
                     ifname="ib0", link_type=32, class_code=0x020700)
    host.add_rdma(pf, "mlx5_0")
    pf_dir = Path(os.path.realpath(host.paths.pci_devices / pf))
    (pf_dir / "infiniband/mlx5_0/ports/1/pkeys/0").unlink()

    with caplog.at_level(logging.INFO, logger="sriovdp.host.sysfs"):
        fn = scan(host.paths).functions[pf]

    assert fn.pkey is None and fn.rdma is not None and fn.driver == "mlx5_core"
    assert any("pkeys/0" in r.getMessage() for r in caplog.records)


def test_pkey_kept_verbatim_when_kernel_writes_lowercase_hex(host: FakeHost) -> None:
    pf = host.add_pf("0000:d8:00.0", vendor="15b3", device="101b", driver="mlx5_core",
                     ifname="ib0", link_type=32)
    host.add_rdma(pf, "mlx5_0")
    host.set_pkey(pf, "0xabcd")

    assert scan(host.paths).functions[pf].pkey == "0xabcd"  # "0xABCD" will not match it
