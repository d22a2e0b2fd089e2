"""File stores on tmp dirs: NPWG device-info files (§7.1, §10.5 R2), CDI spec files (§7.2)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

from sriovdp.errors import HostError
from sriovdp.host.cdi import CdiStore
from sriovdp.host.devinfo import DeviceInfoStore
from sriovdp.model.cdi import cdi_spec, pool_spec_file_name
from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import HostFacts, Inventory, PciFunction, RdmaInfo
from sriovdp.model.pools import PoolDevice, build_pools
from sriovdp.model.selectors import NetSelector

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "cdi-schema.json").read_text())


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def dev(addr: str, *, rdma: tuple[str, ...] = ()) -> PoolDevice:
    fn = PciFunction(address=addr, vendor="15b3", device="101e", class_code=0x020000,
                     driver="mlx5_core", rdma=RdmaInfo(devices=rdma) if rdma else None)
    return PoolDevice(id=addr, function=fn, is_rdma=bool(rdma))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------------------------
# DeviceInfoStore


def test_write_creates_the_dir_0755_and_a_0444_file_when_the_dir_is_missing_r2(
    tmp_path: Path, umask_077: None
) -> None:
    store = DeviceInfoStore(tmp_path / "devinfo" / "dp")
    path = store.write("fakeOrg.io/fakeResource", dev("0000:01:00.1", rdma=("rdmadevice1",)))
    assert path == tmp_path / "devinfo/dp/fakeOrg.io-fakeResource-0000:01:00.1-device.json"
    assert path.read_text() == (
        '{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:01:00.1",'
        '"rdma-device":"rdmadevice1"}}')
    assert mode(path) == 0o444
    assert mode(store.directory) == 0o755


def test_write_replaces_the_read_only_file_when_it_already_exists(tmp_path: Path) -> None:
    store = DeviceInfoStore(tmp_path)
    store.write("a.io/r", dev("0000:01:00.1", rdma=("mlx5_0",)))
    path = store.write("a.io/r", dev("0000:01:00.1"))
    assert json.loads(path.read_text())["pci"] == {"pci-address": "0000:01:00.1"}
    assert sorted(os.listdir(tmp_path)) == ["a.io-r-0000:01:00.1-device.json"]  # no temp left


def test_write_leaves_the_file_in_place_when_the_same_device_is_written_again(
    tmp_path: Path,
) -> None:
    store = DeviceInfoStore(tmp_path)
    first = store.write("a.io/r", dev("0000:01:00.1")).stat()
    again = store.write("a.io/r", dev("0000:01:00.1")).stat()
    assert (again.st_ino, again.st_ctime_ns) == (first.st_ino, first.st_ctime_ns)


@pytest.mark.parametrize(
    "meddle",
    [
        pytest.param(lambda p: p.unlink(), id="deleted"),
        pytest.param(lambda p: (p.unlink(), p.write_text("{}")), id="replaced"),
        pytest.param(lambda p: (p.chmod(0o644), p.write_text("{}  ")), id="rewritten"),
    ],
)
def test_write_restores_the_file_when_someone_else_changed_it_since(
    tmp_path: Path, meddle: Callable[[Path], object]
) -> None:
    store = DeviceInfoStore(tmp_path)
    path = store.write("a.io/r", dev("0000:01:00.1"))
    expected = path.read_text()
    meddle(path)
    store.write("a.io/r", dev("0000:01:00.1"))
    assert path.read_text() == expected and mode(path) == 0o444


def test_write_rewrites_the_file_when_the_device_content_changed(tmp_path: Path) -> None:
    store = DeviceInfoStore(tmp_path)
    store.write("a.io/r", dev("0000:01:00.1"))
    path = store.write("a.io/r", dev("0000:01:00.1", rdma=("mlx5_0",)))
    assert json.loads(path.read_text())["pci"]["rdma-device"] == "mlx5_0"


def test_write_writes_again_when_the_file_was_removed_through_the_store(tmp_path: Path) -> None:
    store = DeviceInfoStore(tmp_path)
    path = store.write("a.io/r", dev("0000:01:00.1"))
    assert store.remove("a.io/r", "0000:01:00.1")
    store.write("a.io/r", dev("0000:01:00.1"))
    assert path.exists()


def test_write_keeps_an_existing_dir_mode_when_the_dir_exists(tmp_path: Path) -> None:
    directory = tmp_path / "dp"
    directory.mkdir(mode=0o700)
    DeviceInfoStore(directory).write("a.io/r", dev("0000:01:00.1"))
    assert mode(directory) == 0o700


def test_files_lists_only_device_info_files_when_other_files_exist(tmp_path: Path) -> None:
    store = DeviceInfoStore(tmp_path)
    store.write("a.io/r", dev("0000:01:00.1"))
    store.write("b.io/s", dev("0000:01:00.2"))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "a.io-r-0000:01:00.3-device.json.abc.tmp").write_text("x")
    assert store.files() == {"a.io-r-0000:01:00.1-device.json", "b.io-s-0000:01:00.2-device.json"}


def test_files_is_empty_when_the_dir_does_not_exist(tmp_path: Path) -> None:
    assert DeviceInfoStore(tmp_path / "missing").files() == set()


def test_remove_deletes_the_file_and_reports_missing_ones_when_called_twice_r2(
    tmp_path: Path
) -> None:
    store = DeviceInfoStore(tmp_path)
    store.write("fakeOrg.io/fakeResource", dev("fake1"))
    store.write("fakeOrg.io/fakeResource", dev("fake2"))
    assert store.remove("fakeOrg.io/fakeResource", "fake1") is True
    assert store.remove("fakeOrg.io/fakeResource", "fake1") is False
    assert store.files() == {"fakeOrg.io-fakeResource-fake2-device.json"}
    assert store.remove_file("fakeOrg.io-fakeResource-fake2-device.json") is True
    assert store.files() == set()


@pytest.mark.parametrize(("name", "device_id"), [
    ("intel.com-net-0000:3b:02.1-device.json", "0000:3b:02.1"),
    ("intel.com-net_b-0000:3b:02.1-device.json", None),   # another pool named like ours
    ("intel.com-net-b-0000:3b:02.1-device.json", None),  # "net-b"'s file
    ("intel.com-net-mlx5_core.sf.4-device.json", None),  # not a PCI address
    ("intel.com-net-0000:3b:02.1-device.json.tmp", None),
])
def test_device_id_is_parsed_back_when_the_name_is_a_file_of_that_resource(
    tmp_path: Path, name: str, device_id: str | None,
) -> None:
    store = DeviceInfoStore(tmp_path)
    assert store.device_id("intel.com/net", name) == device_id
    if device_id is not None:
        assert store.path("intel.com/net", device_id).name == name


@pytest.mark.parametrize("name", ["../x-device.json", "notes.txt"])
def test_remove_file_refuses_names_when_they_are_not_device_info_files(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(ValueError):
        DeviceInfoStore(tmp_path).remove_file(name)


def test_write_raises_host_error_and_leaves_no_temp_when_the_target_is_a_dir(
    tmp_path: Path
) -> None:
    store = DeviceInfoStore(tmp_path)
    blocker = store.path("a.io/r", "0000:01:00.1")
    blocker.mkdir()
    (blocker / "keep").write_text("x")
    with pytest.raises(HostError, match="0000:01:00.1-device.json"):
        store.write("a.io/r", dev("0000:01:00.1"))
    assert sorted(os.listdir(tmp_path)) == [blocker.name]


def test_write_raises_host_error_when_the_dir_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(HostError, match="cannot write device-info file"):
        DeviceInfoStore(tmp_path / "file" / "dp").write("a.io/r", dev("0000:01:00.1"))


# --------------------------------------------------------------------------------------------
# CdiStore

def _spec_doc() -> tuple[dict[str, object], str]:
    fns = [PciFunction(address="0000:3b:02.0", vendor="8086", device="154c",
                       class_code=0x020000, driver="vfio-pci", iommu_group="87"),
           PciFunction(address="0000:3b:02.1", vendor="8086", device="154c",
                       class_code=0x020000, driver="iavf")]
    inventory = Inventory(functions={f.address: f for f in fns})
    cfg = ResourceConfig(name="intel_sriov_dpdk", selectors=(NetSelector(),))
    pool = build_pools(inventory, (cfg,), default_prefix="intel.com")["intel.com/intel_sriov_dpdk"]
    doc = cdi_spec(pool, HostFacts())
    assert doc is not None
    return doc, pool_spec_file_name(pool)


def test_cdi_store_writes_a_valid_yaml_spec_when_given_a_pool_spec(
    tmp_path: Path, umask_077: None
) -> None:
    doc, name = _spec_doc()
    store = CdiStore(tmp_path / "cdi")
    path = store.write(doc, name)
    assert path.name == "sriov-dp-intel.com-net-pci-intel_sriov_dpdk.yaml"
    loaded = yaml.safe_load(path.read_text())
    assert loaded == doc
    jsonschema.validate(loaded, SCHEMA)
    assert (mode(path), mode(store.directory)) == (0o644, 0o755)
    assert store.files() == {name}


def test_cdi_store_writes_json_when_the_name_ends_in_json(tmp_path: Path) -> None:
    doc, _ = _spec_doc()
    path = CdiStore(tmp_path).write(doc, "sriov-dp-intel.com-net-pci-x.json")
    assert json.loads(path.read_text()) == doc


def test_cdi_store_replaces_a_spec_when_written_again(tmp_path: Path) -> None:
    doc, name = _spec_doc()
    store = CdiStore(tmp_path)
    store.write({**doc, "devices": doc["devices"][:1]}, name)  # type: ignore[index]
    store.write(doc, name)
    assert yaml.safe_load((tmp_path / name).read_text()) == doc
    assert os.listdir(tmp_path) == [name]


@pytest.mark.parametrize(
    "name",
    [pytest.param("nvidia.com-gpu.yaml", id="other-vendor"),
     pytest.param("sriov-dp-x.txt", id="extension"),
     pytest.param("sriov-dp-../x.yaml", id="slash")],
)
def test_cdi_store_refuses_names_when_not_ours(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="sriov-dp-"):
        CdiStore(tmp_path).write({}, name)


def test_cdi_cleanup_removes_only_our_files_when_other_vendors_share_the_dir(
    tmp_path: Path
) -> None:
    doc, name = _spec_doc()
    store = CdiStore(tmp_path)
    store.write(doc, name)
    store.write(doc, "sriov-dp-intel.com-net-pci-other.yaml")
    (tmp_path / "sriov-dp-intel.com-net-pci-x.yaml.k3j4.tmp").write_text("partial")
    (tmp_path / "nvidia.com-gpu.yaml").write_text("cdiVersion: 0.5.0\n")
    removed = store.cleanup(keep={name})
    assert removed == ["sriov-dp-intel.com-net-pci-other.yaml",
                       "sriov-dp-intel.com-net-pci-x.yaml.k3j4.tmp"]
    assert sorted(os.listdir(tmp_path)) == ["nvidia.com-gpu.yaml", name]
    assert store.cleanup() == [name]


def test_cdi_cleanup_and_files_are_empty_when_the_dir_does_not_exist(tmp_path: Path) -> None:
    store = CdiStore(tmp_path / "missing")
    assert store.cleanup() == [] and store.files() == set()


def test_cdi_remove_reports_whether_the_spec_existed_when_called(tmp_path: Path) -> None:
    doc, name = _spec_doc()
    store = CdiStore(tmp_path)
    store.write(doc, name)
    assert store.remove(name) is True
    assert store.remove(name) is False


def test_write_keeps_a_file_a_previous_run_wrote_when_it_holds_the_same_bytes(
    tmp_path: Path,
) -> None:
    path = DeviceInfoStore(tmp_path).write("a.io/r", dev("0000:01:00.1"))
    before = path.stat()
    DeviceInfoStore(tmp_path).write("a.io/r", dev("0000:01:00.1"))  # a restarted daemon
    assert (path.stat().st_ino, path.stat().st_ctime_ns) == (before.st_ino, before.st_ctime_ns)


@pytest.mark.parametrize(
    "meddle",
    [
        pytest.param(lambda p: p.chmod(0o644), id="other-mode"),
        pytest.param(lambda p: (p.chmod(0o644), p.write_text(p.read_text()[:-1] + " ")),
                     id="same-size-other-bytes"),
        pytest.param(lambda p: (p.rename(p.with_name("x")),
                                p.symlink_to(p.with_name("x"))), id="symlink"),
    ],
)
def test_write_rewrites_a_file_a_previous_run_left_when_it_is_not_exactly_ours(
    tmp_path: Path, meddle: Callable[[Path], object]
) -> None:
    path = DeviceInfoStore(tmp_path).write("a.io/r", dev("0000:01:00.1"))
    expected = path.read_text()
    meddle(path)
    DeviceInfoStore(tmp_path).write("a.io/r", dev("0000:01:00.1"))
    assert path.read_text() == expected and mode(path) == 0o444 and not path.is_symlink()
