"""The compiled DRA kubelet API descriptors match the published API facts.

The facts below are the service, method, message, field and enum names and numbers of
k8s.io/kubelet ``pkg/apis/dra/{v1,v1beta1}/api.proto`` and
``pkg/apis/dra-health/{v1,v1alpha1}/api.proto`` (kubernetes/kubernetes, staging; read
2026-12). A change in a number or name breaks the wire protocol with the kubelet, so each is
checked. (The generated files being up to date with the ``.proto`` sources is checked by
``test_api_descriptors.test_generated_files_up_to_date``, which compiles every ``.proto``.)
"""

from __future__ import annotations

from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2

from sriovdp.kubelet.api import (
    dra_v1_pb2,
    dra_v1beta1_pb2,
    drahealth_v1_pb2,
    drahealth_v1alpha1_pb2,
)

F = descriptor_pb2.FieldDescriptorProto
STR, I64, MSG, ENUM = F.TYPE_STRING, F.TYPE_INT64, F.TYPE_MESSAGE, F.TYPE_ENUM
ONE, MANY = F.LABEL_OPTIONAL, F.LABEL_REPEATED

# message -> [(field, number, type, label, type name relative to the package or "")]
DRA_MESSAGES = {
    "NodePrepareResourcesRequest": [("claims", 1, MSG, MANY, "Claim")],
    "NodePrepareResourcesResponse": [
        ("claims", 1, MSG, MANY, "NodePrepareResourcesResponse.ClaimsEntry")],
    "NodePrepareResourceResponse": [
        ("devices", 1, MSG, MANY, "Device"), ("error", 2, STR, ONE, "")],
    "Device": [
        ("request_names", 1, STR, MANY, ""), ("pool_name", 2, STR, ONE, ""),
        ("device_name", 3, STR, ONE, ""), ("cdi_device_ids", 4, STR, MANY, "")],
    "NodeUnprepareResourcesRequest": [("claims", 1, MSG, MANY, "Claim")],
    "NodeUnprepareResourcesResponse": [
        ("claims", 1, MSG, MANY, "NodeUnprepareResourcesResponse.ClaimsEntry")],
    "NodeUnprepareResourceResponse": [("error", 1, STR, ONE, "")],
    "Claim": [("namespace", 1, STR, ONE, ""), ("uid", 2, STR, ONE, ""),
              ("name", 3, STR, ONE, "")],
}
DRA_METHODS = {
    "NodePrepareResources": ("NodePrepareResourcesRequest", "NodePrepareResourcesResponse",
                             False),
    "NodeUnprepareResources": ("NodeUnprepareResourcesRequest",
                               "NodeUnprepareResourcesResponse", False),
}
HEALTH_MESSAGES = {
    "NodeWatchResourcesRequest": [],
    "DeviceIdentifier": [("pool_name", 1, STR, ONE, ""), ("device_name", 2, STR, ONE, "")],
    "DeviceHealth": [
        ("device", 1, MSG, ONE, "DeviceIdentifier"), ("health", 2, ENUM, ONE, "HealthStatus"),
        ("last_updated_time", 3, I64, ONE, ""), ("health_check_timeout_seconds", 4, I64, ONE, ""),
        ("message", 5, STR, ONE, "")],
    "NodeWatchResourcesResponse": [("devices", 1, MSG, MANY, "DeviceHealth")],
}
HEALTH_METHODS = {
    "NodeWatchResources": ("NodeWatchResourcesRequest", "NodeWatchResourcesResponse", True),
}

# module, proto package, go_package, service, messages, methods
APIS: dict[str, tuple[ModuleType, str, str, str, dict, dict]] = {  # type: ignore[type-arg]
    "dra_v1": (dra_v1_pb2, "k8s.io.kubelet.pkg.apis.dra.v1", "k8s.io/kubelet/pkg/apis/dra/v1",
               "DRAPlugin", DRA_MESSAGES, DRA_METHODS),
    "dra_v1beta1": (dra_v1beta1_pb2, "k8s.io.kubelet.pkg.apis.dra.v1beta1",
                    "k8s.io/kubelet/pkg/apis/dra/v1beta1", "DRAPlugin", DRA_MESSAGES,
                    DRA_METHODS),
    "drahealth_v1": (drahealth_v1_pb2, "v1", "k8s.io/kubelet/pkg/apis/dra-health/v1",
                     "DRAResourceHealth", HEALTH_MESSAGES, HEALTH_METHODS),
    "drahealth_v1alpha1": (drahealth_v1alpha1_pb2, "v1alpha1",
                           "k8s.io/kubelet/pkg/apis/dra-health/v1alpha1", "DRAResourceHealth",
                           HEALTH_MESSAGES, HEALTH_METHODS),
}


def _file(api: str) -> descriptor_pb2.FileDescriptorProto:
    fp = descriptor_pb2.FileDescriptorProto()
    APIS[api][0].DESCRIPTOR.CopyToProto(fp)
    return fp


@pytest.mark.parametrize("api", sorted(APIS))
def test_package_and_go_package_match_the_kubelet_when_compiled(api: str) -> None:
    _, package, go_package, *_ = APIS[api]
    fp = _file(api)
    assert fp.syntax == "proto3"
    assert fp.package == package
    assert fp.options.go_package == go_package
    assert list(fp.dependency) == []


@pytest.mark.parametrize("api", sorted(APIS))
def test_messages_and_fields_match_the_published_numbers_when_compiled(api: str) -> None:
    _, package, _, _, messages, _ = APIS[api]
    fp = _file(api)
    assert [m.name for m in fp.message_type] == list(messages)
    for mp in fp.message_type:
        got = [(f.name, f.number, f.type, f.label, f.type_name) for f in mp.field]
        want = [(n, num, t, lab, f".{package}.{tn}" if tn else "")
                for n, num, t, lab, tn in messages[mp.name]]
        assert got == want, mp.name
        for entry in mp.nested_type:  # map<string, X> entries
            assert entry.options.map_entry
            key = entry.field[0]
            assert (key.name, key.number, key.type) == ("key", 1, STR)


@pytest.mark.parametrize("api", sorted(APIS))
def test_service_method_paths_match_the_kubelet_when_compiled(api: str) -> None:
    module, package, _, service, _, methods = APIS[api]
    sd = module.DESCRIPTOR.services_by_name[service]
    assert sd.full_name == f"{package}.{service}"
    assert [m.name for m in sd.methods] == list(methods)
    for md in sd.methods:
        request, response, server_streaming = methods[md.name]
        assert md.input_type.full_name == f"{package}.{request}"
        assert md.output_type.full_name == f"{package}.{response}"
        mp = next(m for s in _file(api).service for m in s.method if m.name == md.name)
        assert mp.server_streaming == server_streaming
        assert not mp.client_streaming


@pytest.mark.parametrize("api", ["drahealth_v1", "drahealth_v1alpha1"])
def test_health_status_enum_matches_the_published_values_when_compiled(api: str) -> None:
    fp = _file(api)
    assert [e.name for e in fp.enum_type] == ["HealthStatus"]
    assert [(v.name, v.number) for v in fp.enum_type[0].value] == [
        ("UNKNOWN", 0), ("HEALTHY", 1), ("UNHEALTHY", 2)]
