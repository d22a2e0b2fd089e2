"""The compiled kubelet API descriptors match the API facts in /work/shared/spec.

Every message, field (name, number, descriptor type/label, type name, json name),
map entry, service and method of the generated ``*_pb2`` modules is compared with
the JSON facts, and the generated files are checked to be up to date with the
``.proto`` sources.
"""

from __future__ import annotations

import filecmp
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from sriovdp.kubelet.api import deviceplugin_pb2, pluginregistration_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
API_DIR = REPO_ROOT / "src" / "sriovdp" / "kubelet" / "api"
# The contract lives beside the repository (``../shared/spec``), in CI as on a developer's
# machine; fall back to the workplace path when the clone sits elsewhere.
SPEC_DIR = next(
    (p for p in (REPO_ROOT.parent / "shared" / "spec", Path("/work/shared/spec")) if p.is_dir()),
    REPO_ROOT.parent / "shared" / "spec",
)
FACTS_FILES = {
    "deviceplugin": SPEC_DIR / "deviceplugin-v1beta1.json",
    "pluginregistration": SPEC_DIR / "pluginregistration-v1.json",
}
MODULES: dict[str, ModuleType] = {
    "deviceplugin": deviceplugin_pb2,
    "pluginregistration": pluginregistration_pb2,
}
API_NAMES = sorted(MODULES)

FieldProto = descriptor_pb2.FieldDescriptorProto


def _facts(api: str) -> dict[str, Any]:
    path = FACTS_FILES[api]
    if not path.exists():
        pytest.skip(f"API facts file {path} not available")
    return json.loads(path.read_text())


def _file_proto(api: str) -> descriptor_pb2.FileDescriptorProto:
    fp = descriptor_pb2.FileDescriptorProto()
    MODULES[api].DESCRIPTOR.CopyToProto(fp)
    return fp


def _all_message_facts(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level and nested message facts, flattened."""
    out: list[dict[str, Any]] = []
    stack = list(facts["messages"])
    while stack:
        msg = stack.pop(0)
        out.append(msg)
        stack.extend(msg.get("nested_messages", []))
    return out


def _message_proto(
    fp: descriptor_pb2.FileDescriptorProto, full_name: str
) -> descriptor_pb2.DescriptorProto:
    package, _, rest = full_name.partition(".")
    assert package == fp.package
    parts = rest.split(".")
    candidates = fp.message_type
    found: descriptor_pb2.DescriptorProto | None = None
    for part in parts:
        matches = [m for m in candidates if m.name == part]
        assert len(matches) == 1, f"message {full_name} not found (at {part})"
        found = matches[0]
        candidates = found.nested_type
    assert found is not None
    return found


def _message_descriptor(api: str, full_name: str) -> Any:
    pool = MODULES[api].DESCRIPTOR.pool
    return pool.FindMessageTypeByName(full_name)


@pytest.mark.parametrize("api", API_NAMES)
def test_file_header(api: str) -> None:
    facts = _facts(api)
    fp = _file_proto(api)
    assert fp.syntax == facts["proto"]["syntax"]
    assert fp.package == facts["proto"]["package"]
    assert fp.options.go_package == facts["proto"]["go_package"]
    assert list(fp.dependency) == list(facts["proto"].get("imports", []))
    assert fp.name == f"sriovdp/kubelet/api/{api}.proto"
    assert not fp.enum_type
    assert facts.get("enums", []) == []


@pytest.mark.parametrize("api", API_NAMES)
def test_message_declaration_order(api: str) -> None:
    facts = _facts(api)
    fp = _file_proto(api)
    assert [m.name for m in fp.message_type] == facts["message_names_in_declaration_order"]
    assert [m["name"] for m in facts["messages"]] == facts["message_names_in_declaration_order"]


@pytest.mark.parametrize("api", API_NAMES)
def test_messages_and_fields(api: str) -> None:
    facts = _facts(api)
    fp = _file_proto(api)
    for msg_facts in _all_message_facts(facts):
        full_name = msg_facts["full_name"]
        mp = _message_proto(fp, full_name)
        md = _message_descriptor(api, full_name)
        assert mp.name == msg_facts["name"]
        assert md.name == msg_facts["name"]
        assert md.full_name == full_name
        assert bool(mp.options.map_entry) == bool(msg_facts.get("map_entry", False)), full_name
        assert md.GetOptions().map_entry == bool(msg_facts.get("map_entry", False))
        assert [o.name for o in mp.oneof_decl] == [o["name"] for o in msg_facts["oneofs"]]
        assert sorted(n.name for n in mp.nested_type) == sorted(
            n["name"] for n in msg_facts.get("nested_messages", [])
        ), full_name
        assert not mp.enum_type

        assert [f.name for f in mp.field] == [f["name"] for f in msg_facts["fields"]], full_name
        for fp_field, fd, ff in zip(mp.field, md.fields, msg_facts["fields"], strict=True):
            where = f"{full_name}.{ff['name']}"
            assert fp_field.name == fd.name == ff["name"], where
            assert fp_field.number == fd.number == ff["number"], where
            assert FieldProto.Type.Name(fp_field.type) == ff["descriptor_type"], where
            assert FieldProto.Label.Name(fp_field.label) == ff["descriptor_label"], where
            assert fp_field.type_name == ff.get("descriptor_type_name", ""), where
            assert fd.json_name == ff["json_name"], where
            assert fp_field.proto3_optional == ff["proto3_optional"], where
            assert fd.full_name == f"{full_name}.{ff['name']}", where
            if ff["kind"] == "map":
                entry = fd.message_type
                assert entry.full_name == ff["map_entry_type"], where
                assert entry.GetOptions().map_entry, where
                key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
                assert (key.number, value.number) == (1, 2), where
                assert FieldProto.Type.Name(key.type) == f"TYPE_{ff['key_type'].upper()}"
                assert FieldProto.Type.Name(value.type) == f"TYPE_{ff['value_type'].upper()}"
            elif ff["kind"] == "message":
                assert fd.message_type.full_name == ff["type"], where
                assert fp_field.type_name == "." + ff["type"], where
            else:
                assert ff["kind"] == "scalar", where
                assert FieldProto.Type.Name(fp_field.type) == f"TYPE_{ff['type'].upper()}"
            assert (ff["descriptor_label"] == "LABEL_REPEATED") == (
                ff["repeated"] or ff["kind"] == "map"
            ), where


@pytest.mark.parametrize("api", API_NAMES)
def test_no_extra_messages(api: str) -> None:
    facts = _facts(api)
    fp = _file_proto(api)
    expected = {m["full_name"] for m in _all_message_facts(facts)}
    actual: set[str] = set()

    def walk(prefix: str, msgs: Any) -> None:
        for m in msgs:
            actual.add(f"{prefix}.{m.name}")
            walk(f"{prefix}.{m.name}", m.nested_type)

    walk(fp.package, fp.message_type)
    assert actual == expected


@pytest.mark.parametrize("api", API_NAMES)
def test_services_and_methods(api: str) -> None:
    facts = _facts(api)
    fp = _file_proto(api)
    fd = MODULES[api].DESCRIPTOR
    assert [s.name for s in fp.service] == [s["name"] for s in facts["services"]]
    for sp, sf in zip(fp.service, facts["services"], strict=True):
        sd = fd.services_by_name[sf["name"]]
        assert sd.full_name == sf["full_name"]
        assert [m.name for m in sp.method] == [m["name"] for m in sf["methods"]]
        for mp, mf in zip(sp.method, sf["methods"], strict=True):
            md = sd.methods_by_name[mf["name"]]
            assert f"/{sd.full_name}/{md.name}" == mf["full_method"]
            assert md.input_type.full_name == mf["input_type"]
            assert md.output_type.full_name == mf["output_type"]
            assert mp.input_type == "." + mf["input_type"]
            assert mp.output_type == "." + mf["output_type"]
            assert mp.client_streaming == mf["client_streaming"]
            assert mp.server_streaming == mf["server_streaming"]


def test_generated_grpc_modules_expose_services() -> None:
    from sriovdp.kubelet.api import deviceplugin_pb2_grpc, pluginregistration_pb2_grpc

    for name in ("Registration", "DevicePlugin"):
        assert hasattr(deviceplugin_pb2_grpc, f"{name}Stub")
        assert hasattr(deviceplugin_pb2_grpc, f"{name}Servicer")
        assert hasattr(deviceplugin_pb2_grpc, f"add_{name}Servicer_to_server")
    assert hasattr(pluginregistration_pb2_grpc, "RegistrationStub")
    assert hasattr(pluginregistration_pb2_grpc, "add_RegistrationServicer_to_server")


def test_generated_files_up_to_date(tmp_path: Path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpc_tools (grpcio-tools) is not installed")
    src = tmp_path / "src"
    out_dir = src / "sriovdp" / "kubelet" / "api"
    out_dir.mkdir(parents=True)
    protos = sorted(API_DIR.glob("*.proto"))
    names = [p.stem for p in protos]
    assert set(API_NAMES) <= set(names)
    for proto in protos:
        shutil.copy(proto, out_dir / proto.name)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-Isrc",
        "--python_out=src",
        "--pyi_out=src",
        "--grpc_python_out=src",
        *(f"src/sriovdp/kubelet/api/{p.name}" for p in protos),
    ]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    generated = sorted(p.name for p in out_dir.iterdir() if p.suffix in {".py", ".pyi"})
    expected = sorted(
        f"{api}{suffix}" for api in names for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
    )
    assert generated == expected
    stale = [
        name for name in generated if not filecmp.cmp(out_dir / name, API_DIR / name, shallow=False)
    ]
    assert not stale, f"generated files out of date, run scripts/gen_proto.sh: {stale}"
