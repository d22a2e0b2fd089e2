"""FakeHost's RDMA, pkey, vDPA, sub-function and switchdev-port builders and spec keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from sriovdp.host.sysfs import scan
from sriovdp.testing.fakehost import FakeHost

PF = "0000:3b:00.0"


@pytest.fixture
def mlx(host: FakeHost) -> FakeHost:
    host.add_pf(PF, vendor="15b3", device="101d", driver="mlx5_core", ifname="enp59s0f0np0",
                total_vfs=8, vf_offset=2)
    host.add_vfs(PF, 2, device="101e", driver="mlx5_core", ifname="enp59s0f0v{n}")
    return host


def real(host: FakeHost, rel: str) -> Path:
    return Path(os.path.realpath(host.root / rel))


def test_rdma_laid_out_like_kernel_when_added(mlx: FakeHost) -> None:
    mlx.add_rdma("0000:3b:00.2", "mlx5_2", uverbs=2, umad=2, issm=2, ucm=0)
    mlx.enable_rdma_cm()
    vf_dir = real(mlx, "sys/bus/pci/devices/0000:3b:00.2")

    assert real(mlx, "sys/class/infiniband/mlx5_2") == vf_dir / "infiniband/mlx5_2"
    assert (vf_dir / "infiniband/mlx5_2/ports/1/pkeys/0").read_text() == "0xffff\n"
    for cls, entry in (("infiniband_verbs", "uverbs2"), ("infiniband_mad", "umad2"),
                       ("infiniband_mad", "issm2"), ("infiniband_cm", "ucm0")):
        link = mlx.root / "sys/class" / cls / entry
        assert os.readlink(link) == f"../../devices/pci0000:3b/0000:3b:00.2/{cls}/{entry}"
        assert (link / "ibdev").read_text() == "mlx5_2\n"
        assert (mlx.root / "dev/infiniband" / entry).exists()
    assert (mlx.root / "dev/infiniband/rdma_cm").exists()


def test_next_free_numbers_used_when_numbers_omitted(mlx: FakeHost) -> None:
    mlx.add_rdma(PF, "mlx5_0", uverbs=1)
    mlx.add_rdma("0000:3b:00.2", "mlx5_2")

    names = sorted(p.name for p in (mlx.root / "dev/infiniband").iterdir())

    assert names == ["issm0", "issm1", "umad0", "umad1", "uverbs0", "uverbs1"]


def test_value_error_when_rdma_name_or_number_taken(mlx: FakeHost) -> None:
    mlx.add_rdma(PF, "mlx5_0", uverbs=0)

    with pytest.raises(ValueError, match="mlx5_0 already exists"):
        mlx.add_rdma("0000:3b:00.2", "mlx5_0")
    with pytest.raises(ValueError, match="uverbs0 already exists"):
        mlx.add_rdma("0000:3b:00.2", "mlx5_2", uverbs=0)


def test_pkey_written_when_set(mlx: FakeHost) -> None:
    mlx.add_rdma(PF, "mlx5_0")
    mlx.set_pkey(PF, "0x7fff")

    assert (real(mlx, f"sys/bus/pci/devices/{PF}") / "infiniband/mlx5_0/ports/1/pkeys/0"
            ).read_text() == "0x7fff\n"


def test_value_error_when_pkey_set_without_rdma(mlx: FakeHost) -> None:
    with pytest.raises(ValueError, match="no RDMA device"):
        mlx.set_pkey(PF, "0x7fff")


def test_vdpa_laid_out_like_kernel_when_added(mlx: FakeHost) -> None:
    mlx.add_vdpa("0000:3b:00.2", "vdpa0")
    vf_dir = real(mlx, "sys/bus/pci/devices/0000:3b:00.2")
    link = mlx.root / "sys/bus/vdpa/devices/vdpa0"

    assert os.readlink(link) == "../../../devices/pci0000:3b/0000:3b:00.2/vdpa0"
    assert real(mlx, "sys/bus/vdpa/devices/vdpa0/driver") == real(
        mlx, "sys/bus/vdpa/drivers/vhost_vdpa")
    assert (vf_dir / "vdpa0/vhost-vdpa-0").is_dir()
    assert (mlx.root / "dev/vhost-vdpa-0").exists()


def test_sf_laid_out_like_kernel_when_added(mlx: FakeHost) -> None:
    mlx.add_sf(PF, 4, ifname="enp59s0f0s4", rdma="mlx5_4")
    link = mlx.root / "sys/bus/auxiliary/devices/mlx5_core.sf.4"
    sf_dir = real(mlx, f"sys/bus/pci/devices/{PF}") / "mlx5_core.sf.4"

    assert os.readlink(link) == "../../../devices/pci0000:3b/0000:3b:00.0/mlx5_core.sf.4"
    assert real(mlx, "sys/bus/auxiliary/devices/mlx5_core.sf.4") == sf_dir
    assert (sf_dir / "sfnum").read_text() == "4\n"
    assert real(mlx, "sys/class/net/enp59s0f0s4") == sf_dir / "net/enp59s0f0s4"
    assert real(mlx, "sys/class/infiniband/mlx5_4") == sf_dir / "infiniband/mlx5_4"
    assert real(mlx, "sys/bus/auxiliary/devices/mlx5_core.sf.4/driver") == real(
        mlx, "sys/bus/auxiliary/drivers/mlx5_core.sf")


def test_phys_port_files_written_when_port_set(mlx: FakeHost) -> None:
    mlx.set_phys_port("enp59s0f0np0", "p0", switch_id="a8b0d10003ba5e0c")
    net = mlx.root / "sys/class/net/enp59s0f0np0"

    assert (net / "phys_port_name").read_text() == "p0\n"
    assert (net / "phys_switch_id").read_text() == "a8b0d10003ba5e0c\n"


def test_driver_objects_removed_when_function_rebound(mlx: FakeHost) -> None:
    vf = "0000:3b:00.2"
    mlx.add_rdma(vf, "mlx5_2")
    mlx.add_vdpa(vf, "vdpa0")
    mlx.add_sf(PF, 4, ifname="enp59s0f0s4")

    mlx.bind(vf, "vfio-pci", iommu_group=7)
    mlx.unbind(PF)
    inventory = scan(mlx.paths)

    assert inventory.functions[vf].rdma is None and inventory.functions[vf].vdpa is None
    assert inventory.aux == {}
    for rel in ("sys/class/infiniband/mlx5_2", "sys/bus/vdpa/devices/vdpa0",
                "sys/bus/auxiliary/devices/mlx5_core.sf.4", "sys/class/net/enp59s0f0s4",
                "dev/vhost-vdpa-0", "dev/infiniband/uverbs0"):
        assert not os.path.lexists(mlx.root / rel), rel


def test_no_dangling_links_when_pf_removed(mlx: FakeHost) -> None:
    mlx.add_sf(PF, 4, ifname="enp59s0f0s4", rdma="mlx5_4")
    mlx.add_aux(PF, "mlx5_core.eth.0")

    mlx.remove(PF)

    dangling = [p for p in (mlx.root / "sys").rglob("*")
                if p.is_symlink() and not p.exists()]
    assert dangling == []


def test_same_scan_when_spec_with_every_facet_round_trips(mlx: FakeHost, tmp_path: Path) -> None:
    mlx.add_rdma(PF, "mlx5_0", ucm=3)
    mlx.add_rdma("0000:3b:00.2", "mlx5_2", char_devices=False)
    mlx.add_rdma("0000:3b:00.3", "mlx5_3", pkey="0x8001")
    mlx.add_vdpa("0000:3b:00.2", "vdpa0", vhost=5)
    mlx.add_vdpa("0000:3b:00.3", "vdpa1", driver=None)
    mlx.set_phys_port("enp59s0f0np0", "p0")
    mlx.add_sf(PF, 2, ifname=["enp59s0f0s2", "enp59s0f0s2b"], rdma={"device": "mlx5_9"},
               link_type=32)
    mlx.add_aux(PF, "mlx5_core.eth.0")
    mlx.enable_rdma_cm()
    spec = mlx.to_spec()

    again = FakeHost.from_spec(tmp_path / "again", yaml.safe_load(yaml.safe_dump(spec)))

    assert again.to_spec() == spec
    assert scan(again.paths) == scan(mlx.paths)
    assert spec["rdma_cm"] is True
    vf1 = spec["functions"][0]["vfs"][1]
    assert (vf1["pkey"], vf1["vdpa"]) == ("0x8001", {"name": "vdpa1", "driver": None})


def base_spec(**extra: Any) -> dict[str, Any]:
    return {"functions": [{"address": PF, "vendor": "15b3", "device": "101d",
                           "driver": "mlx5_core", "ifname": "enp59s0f0np0", **extra}]}


@pytest.mark.parametrize(("extra", "message"), [
    ({"rdma": "mlx5_0", "pkey": 0x7FFF}, r"functions\[0\]\.pkey: quote it"),
    ({"pkey": "0x7fff"}, r"functions\[0\]\.pkey: needs an rdma device"),
    ({"rdma": {"name": "mlx5_0"}}, r"functions\[0\]\.rdma: unknown keys \['name'\]"),
    ({"aux": [{"sfnum": 2, "mtu": 9000}]}, r"functions\[0\]\.aux\[0\]: unknown keys"),
    ({"aux": [{"ifname": "x"}]}, r"functions\[0\]\.aux\[0\]: needs a name or an sfnum"),
    ({"phys_port_names": {"nope0": "p0"}}, r"phys_port_names: no netdev nope0"),
    ({"phys_port_names": ["p0"]}, r"phys_port_names: a mapping"),
    ({"vdpa": {"name": "vdpa0", "type": "vhost"}}, r"functions\[0\]\.vdpa: unknown keys"),
])
def test_value_error_names_spec_path_when_facet_key_bad(
        tmp_path: Path, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FakeHost.from_spec(tmp_path, base_spec(**extra))


def test_sf_name_defaults_to_sfnum_when_spec_gives_only_sfnum(tmp_path: Path) -> None:
    host = FakeHost.from_spec(tmp_path, base_spec(aux=[{"sfnum": 3}]))

    assert list(scan(host.paths).aux) == ["mlx5_core.sf.3"]
