"""deployments/: the kustomize base and overlays, rendered by `kubectl kustomize`.

Every rendered object is checked offline against the Kubernetes OpenAPI JSON schemas that the
kubernetes-validate package ships (strict: unknown fields are errors), then the things an
operator relies on: the mounts, args, probes and resources of the DaemonSet, the example
config passing `sriovdp validate`, and that each overlay changes only what it says.
Reference: upstream-behavior.md §9 (the Go deployment), performance-anchors.md §4.4.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from rendering import (
    CLUSTER_SCOPED,
    DEPLOY,
    DRA_EXAMPLES,
    KUBECTL,
    REPO,
    TARGETS,
    Obj,
    dra_examples,
    kustomize,
    one,
    render,
)

from sriovdp.model.config import parse_config

ENTRYPOINT = REPO / "images" / "entrypoint.sh"
# The oldest and the newest Kubernetes minor the manifests are checked against.
K8S_VERSIONS = ("1.30.0", "1.37.0")
NAMESPACE = "kube-system"
BASE_ARGS = ["--log-level=2", "--health-address=:8081"]

pytestmark = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl is not on PATH: these tests render deployments/ with `kubectl kustomize`",
)


def pod_spec(objs: list[Obj]) -> Obj:
    return one(objs, "DaemonSet")["spec"]["template"]["spec"]


def container(objs: list[Obj]) -> Obj:
    (c,) = pod_spec(objs)["containers"]
    return c


def volumes(objs: list[Obj]) -> dict[str, Obj]:
    return {v["name"]: v for v in pod_spec(objs)["volumes"]}


def mounts(objs: list[Obj]) -> dict[str, Obj]:
    return {m["mountPath"]: m for m in container(objs)["volumeMounts"]}


def named_port(c: Obj, name: str) -> int:
    (port,) = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == name]
    return port


# -- schema validation -------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_every_object_passes_the_kubernetes_schema(target: str, version: str) -> None:
    objs = render(target)
    assert objs
    for obj in objs:
        what = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{target}: {what} is invalid for Kubernetes {version} at {path}: "
                        f"{exc.message}")


def test_schemas_ship_with_the_package() -> None:
    """kubernetes-validate works offline: the schemas are files inside the package."""
    import importlib.resources

    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    for version in K8S_VERSIONS:
        minor = version.rsplit(".", 1)[0]
        schema = root / f"v{minor}.0-local-strict" / "daemonset-apps-v1.json"
        assert schema.is_file(), schema


def test_a_broken_manifest_is_caught() -> None:
    """The validation above is not vacuous: a misspelt field and a wrong type fail."""
    ds = one(render("base"), "DaemonSet")
    typo = copy.deepcopy(ds)
    typo["spec"]["template"]["spec"]["hostNetwrok"] = True
    wrong_type = copy.deepcopy(ds)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "x"
    for bad in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


# -- the base --------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_everything_is_in_kube_system(target: str) -> None:
    for obj in render(target):
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], obj["metadata"]["name"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


def test_deployments_dir_renders_the_base() -> None:
    assert render("deployments") == render("base")


def test_base_objects() -> None:
    objs = render("base")
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objs) == [
        ("ConfigMap", "sriovdp-config"),
        ("DaemonSet", "kube-sriov-device-plugin"),
        ("ServiceAccount", "sriov-device-plugin"),
    ]


def test_daemonset_identity_matches_the_go_deployment() -> None:
    """Same name, labels and (immutable) selector: `kubectl apply` replaces the Go pods."""
    ds = one(render("base"), "DaemonSet")
    assert ds["metadata"]["labels"] == {"tier": "node", "app": "sriovdp"}
    selector = ds["spec"]["selector"]["matchLabels"]
    assert selector == {"name": "sriov-device-plugin"}
    template_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()
    assert {"tier": "node", "app": "sriovdp"}.items() <= template_labels.items()


def test_pod_placement_and_identity() -> None:
    objs = render("base")
    spec = pod_spec(objs)
    assert spec["hostNetwork"] is True
    assert spec["serviceAccountName"] == one(objs, "ServiceAccount")["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["priorityClassName"] == "system-node-critical"
    assert "nodeSelector" not in spec, "the Go plugin's node selection (overlays/nfd opts in)"
    tolerated = {(t["key"], t["operator"], t["effect"]) for t in spec["tolerations"]}
    assert {("node-role.kubernetes.io/control-plane", "Exists", "NoSchedule"),
            ("node-role.kubernetes.io/master", "Exists", "NoSchedule")} <= tolerated
    (term,) = spec["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (arch,) = term["matchExpressions"]
    assert arch["key"] == "kubernetes.io/arch"
    assert set(arch["values"]) == {"amd64", "arm64", "ppc64le", "s390x"}


def test_container_args_image_and_security() -> None:
    c = container(render("base"))
    assert c["name"] == "kube-sriovdp"
    assert c["image"].startswith("sriovdp:")
    assert c["args"] == BASE_ARGS
    assert "command" not in c, "the image's /entrypoint.sh must stay the entrypoint"
    sc = c["securityContext"]
    assert sc["privileged"] is True and sc["runAsUser"] == 0
    assert sc["readOnlyRootFilesystem"] is True


def test_host_mounts() -> None:
    objs = render("base")
    vols = volumes(objs)
    expected = {
        # mount path: (hostPath type or None, read-only)
        "/var/lib/kubelet/device-plugins": ("Directory", False),
        "/var/lib/kubelet/plugins_registry": (None, False),
        "/var/run/k8s.cni.cncf.io/devinfo/dp": ("DirectoryOrCreate", False),
        "/var/run/cdi": ("DirectoryOrCreate", False),
        "/dev": ("Directory", False),
        "/sys": ("Directory", True),
        "/var/log": ("Directory", False),
    }
    got = mounts(objs)
    for path, (host_type, read_only) in expected.items():
        assert path in got, f"no mount at {path}"
        host = vols[got[path]["name"]]["hostPath"]
        assert host["path"] == path, "the host path is mounted at the same place"
        assert host.get("type") == host_type, path
        assert got[path].get("readOnly", False) is read_only, path


def test_config_mount() -> None:
    objs = render("base")
    config = mounts(objs)["/etc/pcidp"]
    assert config.get("readOnly") is True
    source = volumes(objs)[config["name"]]["configMap"]
    assert source["name"] == one(objs, "ConfigMap")["metadata"]["name"] == "sriovdp-config"
    # /etc/pcidp/config.json is the daemon's default --config-file.
    assert source["items"] == [{"key": "config.json", "path": "config.json"}]


def test_every_mount_has_a_volume_and_every_volume_is_mounted() -> None:
    for target in TARGETS:
        objs = render(target)
        mounted = {m["name"] for m in container(objs)["volumeMounts"]}
        assert mounted == set(volumes(objs)), target


def test_probes_use_the_health_address() -> None:
    c = container(render("base"))
    port = named_port(c, "health")
    assert port == 8081
    health_address = next(a for a in c["args"] if a.startswith("--health-address="))
    assert health_address.rsplit(":", 1)[1] == str(port)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert get["port"] in ("health", port)


def test_resources() -> None:
    assert container(render("base"))["resources"] == {
        "requests": {"cpu": "10m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "128Mi"},
    }


def test_example_config_is_valid() -> None:
    cm = one(render("base"), "ConfigMap")
    text = cm["data"]["config.json"]
    json.loads(text)
    config = parse_config(text)
    assert config.warnings == ()
    assert [r.resource_name("intel.com") for r in config.resources] == [
        "intel.com/intel_sriov_netdevice",
        "intel.com/intel_sriov_dpdk",
        "intel.com/mlnx_sriov_netdevice",
    ]


def test_example_config_passes_sriovdp_validate(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(one(render("base"), "ConfigMap")["data"]["config.json"])
    proc = subprocess.run([sys.executable, "-m", "sriovdp", "validate", "--config-file", str(cfg)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid, 3 resources" in proc.stdout


# -- overlays: each changes only what it says ----------------------------------------------


def _base_daemonset() -> Obj:
    return one(render("base"), "DaemonSet")


def test_cdi_overlay() -> None:
    objs = render("cdi")
    c = container(objs)
    assert c["args"] == [*BASE_ARGS, "--use-cdi"]
    assert "/var/run/cdi" in mounts(objs)
    ds = one(objs, "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["args"].remove("--use-cdi")
    assert ds == _base_daemonset()


def test_metrics_overlay() -> None:
    objs = render("metrics")
    c = container(objs)
    assert c["args"] == [*BASE_ARGS, "--metrics-address=:8082"]
    port = named_port(c, "metrics")
    assert port == 8082
    assert port != named_port(c, "health")

    svc = one(objs, "Service")
    assert svc["metadata"]["name"] == "sriov-device-plugin-metrics"
    assert svc["spec"]["clusterIP"] == "None"
    pod_labels = one(objs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (svc_port,) = svc["spec"]["ports"]
    assert svc_port["name"] == "metrics"
    assert svc_port["port"] == 8082
    assert svc_port["targetPort"] in ("metrics", 8082)

    ds = one(objs, "DaemonSet")
    ct = ds["spec"]["template"]["spec"]["containers"][0]
    ct["args"].remove("--metrics-address=:8082")
    ct["ports"] = [p for p in ct["ports"] if p["name"] != "metrics"]
    assert ds == _base_daemonset()


def _servicemonitor() -> Obj:
    return yaml.safe_load((TARGETS["metrics"] / "servicemonitor.yaml").read_text())


def test_servicemonitor_is_optional_and_matches_the_service() -> None:
    kustomization = yaml.safe_load((TARGETS["metrics"] / "kustomization.yaml").read_text())
    assert "servicemonitor.yaml" not in kustomization["resources"]
    assert all(o["kind"] != "ServiceMonitor" for o in render("metrics"))

    sm = _servicemonitor()
    svc = one(render("metrics"), "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
    assert svc["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [svc["spec"]["ports"][0]["name"]]


def test_servicemonitor_can_be_added_to_the_overlay(tmp_path: Path) -> None:
    """As documented: add servicemonitor.yaml to the overlay's resources."""
    tree = tmp_path / "deployments"
    shutil.copytree(DEPLOY, tree)
    kfile = tree / "overlays" / "metrics" / "kustomization.yaml"
    kustomization = yaml.safe_load(kfile.read_text())
    kustomization["resources"].append("servicemonitor.yaml")
    kfile.write_text(yaml.safe_dump(kustomization))
    objs = kustomize(kfile.parent)
    sm = one(objs, "ServiceMonitor")
    assert sm["metadata"]["namespace"] == NAMESPACE
    assert sm["spec"] == _servicemonitor()["spec"]


def _base_env() -> list[dict[str, object]]:
    env: list[dict[str, object]] = _base_daemonset()["spec"]["template"]["spec"][
        "containers"][0]["env"]
    return env


def test_base_daemonset_tells_the_daemon_its_own_pod_when_deployed() -> None:
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in _base_env()}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}


def test_per_node_config_overlay() -> None:
    objs = render("per-node-config")
    c = container(objs)
    assert c["args"] == [*BASE_ARGS, "--config-file=/etc/pcidp/$(NODE_NAME)"]
    by_name = sorted(c["env"], key=lambda e: e["name"])
    assert by_name == sorted([*_base_env(), {"name": "NODE_NAME", "valueFrom": {
        "fieldRef": {"fieldPath": "spec.nodeName"}}}], key=lambda e: str(e["name"]))
    # The whole ConfigMap is mounted: one file per node key.
    config_volume = volumes(objs)[mounts(objs)["/etc/pcidp"]["name"]]
    assert config_volume["configMap"] == {"name": "sriovdp-config"}

    ds = one(objs, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    spec["containers"][0]["args"].remove("--config-file=/etc/pcidp/$(NODE_NAME)")
    spec["containers"][0]["env"] = [e for e in spec["containers"][0]["env"]
                                    if e["name"] != "NODE_NAME"]
    base = _base_daemonset()
    base_spec = base["spec"]["template"]["spec"]
    del base_spec["volumes"][[v["name"] for v in base_spec["volumes"]].index(
        config_volume["name"])]["configMap"]["items"]
    # The patch may reorder the volumes; their content must be the base's.
    for pod in (spec, base_spec):
        pod["volumes"].sort(key=lambda v: v["name"])
    assert ds == base


# -- the DRA overlay and its examples ------------------------------------------------------

DRA_VERSIONS = ("1.34.0", K8S_VERSIONS[-1])  # resource.k8s.io/v1 is GA from 1.34
DRA_DRIVER = "sriov.network.k8s.io"


def test_dra_overlay_serves_every_pool_through_dra_with_the_node_name_and_a_token() -> None:
    objs = render("dra")
    c = container(objs)
    assert c["args"] == [*BASE_ARGS, "--dra=all"]
    assert sorted(c["env"], key=lambda e: e["name"]) == sorted([*_base_env(), {
        "name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        key=lambda e: e["name"])
    spec = pod_spec(objs)
    assert spec["automountServiceAccountToken"] is True, "in-cluster config needs the token"
    assert spec["serviceAccountName"] == one(objs, "ServiceAccount")["metadata"]["name"]
    assert c["resources"]["limits"]["memory"] == "256Mi"


def test_dra_overlay_mounts_the_kubelet_plugin_dirs_and_the_cdi_dir() -> None:
    objs = render("dra")
    vols, got = volumes(objs), mounts(objs)
    for path in ("/var/lib/kubelet/plugins", "/var/lib/kubelet/plugins_registry",
                 "/var/run/cdi"):
        assert path in got, f"no mount at {path}"
        assert vols[got[path]["name"]]["hostPath"]["path"] == path
        assert not got[path].get("readOnly", False), path
    assert vols[got["/var/lib/kubelet/plugins"]["name"]]["hostPath"]["type"] == \
        "DirectoryOrCreate"


def test_dra_overlay_changes_only_args_env_token_memory_and_the_plugins_mount() -> None:
    ds = one(render("dra"), "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    c = spec["containers"][0]
    c["args"].remove("--dra=all")
    c["env"] = [e for e in c["env"] if e["name"] != "NODE_NAME"]
    c["volumeMounts"] = [m for m in c["volumeMounts"]
                         if m["mountPath"] != "/var/lib/kubelet/plugins"]
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "kubelet-plugins"]
    spec["automountServiceAccountToken"] = False
    base = _base_daemonset()
    c["resources"]["requests"]["memory"] = c["resources"]["limits"]["memory"] = "x"
    base_c = base["spec"]["template"]["spec"]["containers"][0]
    base_c["resources"]["requests"]["memory"] = base_c["resources"]["limits"]["memory"] = "x"
    assert ds == base


def _rules(role: Obj) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"]
            for verb in rule["verbs"]}


def test_dra_cluster_role_grants_what_dra_mode_calls_and_nothing_else() -> None:
    """The verbs agreed for DRA mode (DRA-INTERFACE.md); the conformance suite checks on a
    real apiserver that the daemon's calls pass with them (test_dra_rbac.py)."""
    objs = render("dra")
    role = one(objs, "ClusterRole")
    slice_verbs = ("get", "list", "watch", "create", "update", "patch", "delete",
                   "deletecollection")
    assert _rules(role) == {
        *(("resource.k8s.io", "resourceslices", v) for v in slice_verbs),
        *(("resource.k8s.io", "resourceclaims", v) for v in ("get", "list", "watch")),
        *(("resource.k8s.io", "resourceclaims/status", v) for v in ("update", "patch")),
        ("", "nodes", "get"),
    }
    binding = one(objs, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role["metadata"]["name"]}
    account = one(objs, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                    "namespace": account["namespace"]}]


def test_dra_examples_are_applied_by_hand_not_by_the_overlay() -> None:
    kinds = {o["kind"] for o in render("dra")}
    assert kinds.isdisjoint({"DeviceClass", "ResourceClaimTemplate", "Pod"})
    assert not (DRA_EXAMPLES / "kustomization.yaml").exists(), "kubectl apply -f examples/"
    assert sorted(dra_examples()) == ["DeviceClass", "Pod", "ResourceClaimTemplate"]


@pytest.mark.parametrize("version", DRA_VERSIONS)
def test_dra_examples_pass_the_kubernetes_schema(version: str) -> None:
    for kind, obj in dra_examples().items():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{kind} is invalid for Kubernetes {version} at {path}: {exc.message}")


def test_dra_examples_chain_pod_to_template_to_class_to_a_base_pool() -> None:
    """The names line up, and the class selects a pool of the base config by the
    ``resourceName`` attribute (the real allocator runs them in test_dra_rbac.py)."""
    ex = dra_examples()
    (claim,) = ex["Pod"]["spec"]["resourceClaims"]
    assert claim["resourceClaimTemplateName"] == ex["ResourceClaimTemplate"]["metadata"]["name"]
    (c,) = ex["Pod"]["spec"]["containers"]
    assert c["resources"]["claims"] == [{"name": claim["name"]}]
    devices = ex["ResourceClaimTemplate"]["spec"]["spec"]["devices"]
    (request,) = devices["requests"]
    assert request["exactly"]["deviceClassName"] == ex["DeviceClass"]["metadata"]["name"]
    (constraint,) = devices["constraints"]
    assert constraint["matchAttribute"] == f"{DRA_DRIVER}/pfName"
    (selector,) = ex["DeviceClass"]["spec"]["selectors"]
    expression = selector["cel"]["expression"]
    assert f'device.driver == "{DRA_DRIVER}"' in expression
    pool = re.search(r'\.resourceName == "([^"]+)"', expression)
    assert pool is not None
    config = parse_config(one(render("dra"), "ConfigMap")["data"]["config.json"])
    assert pool[1] in [r.resource_name("intel.com") for r in config.resources]


# -- manifests and image together ------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_entrypoint_accepts_the_manifest_args(target: str, tmp_path: Path) -> None:
    """Every arg the DaemonSets pass is an option of images/entrypoint.sh."""
    stub = tmp_path / "sriovdp"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    c = container(render(target))
    env = {**os.environ, "SRIOVDP_BIN": str(stub), "SRIOVDP_LOG_BASE": str(tmp_path / "log"),
           "NODE_NAME": "worker-1"}
    args = [a.replace("$(NODE_NAME)", "worker-1") for a in c["args"]]
    proc = subprocess.run(["sh", str(ENTRYPOINT), *args], capture_output=True, text=True,
                          env=env, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == ["--logtostderr", "-v", "2"]


@pytest.mark.parametrize("name", ["deployments", "cdi", "metrics", "nfd", "per-node-config",
                                  "dra"])
def test_each_kustomization_says_how_to_deploy_it_with_your_image_when_read(name: str) -> None:
    header = (TARGETS[name] / "kustomization.yaml").read_text().split("\napiVersion:")[0]
    assert "kubectl apply -k deployments" not in header, "that deploys sriovdp:0.1.0"
    (command,) = [line[1:].strip() for line in header.splitlines()
                  if line.lstrip("# ").startswith("kubectl kustomize ")]
    render_part = command.rsplit(" | kubectl apply -f -", 1)[0]
    proc = subprocess.run(["sh", "-c", render_part], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "IMAGE": "registry.example.com/sriovdp:9"},
                          timeout=120, check=True)
    images = re.findall(r"^\s*image: (\S+)$", proc.stdout, re.M)
    assert images == ["registry.example.com/sriovdp:9"]
