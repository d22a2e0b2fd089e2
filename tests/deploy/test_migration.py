"""Moving a cluster from the Go plugin to sriovdp (issue 9 items 1-3).

deployments/migrate-from-go.sh runs against a cluster held in a JSON file by
tests/deploy/data/fake_kubectl.py (a kubectl whose `get` evaluates the script's jsonpath
with the real kubectl, offline, and whose `kustomize` is the real one). Node selection is
checked by evaluating nodeSelector, required node affinity and taints/tolerations, the
scheduler's rules for a DaemonSet pod, on a set of nodes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rendering import DEPLOY, KUBECTL, TARGETS, Obj, kustomize, one, render

SCRIPT = DEPLOY / "migrate-from-go.sh"
FAKE = Path(__file__).parent / "data" / "fake_kubectl.py"
IMAGE = "registry.example.com/net/sriovdp:0.1.0"
SELECTOR = {"name": "sriov-device-plugin"}

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")



def go_daemonset(name: str, namespace: str = "kube-system", *,
                 selector: dict[str, str] | None = None, owner: str | None = None,
                 arch: str | None = None) -> Obj:
    """A DaemonSet shaped like the Go plugin's manifests (upstream-behavior.md §9.2)."""
    labels = selector or SELECTOR
    meta: Obj = {"name": name, "namespace": namespace,
                 "labels": {"tier": "node", "app": "sriovdp"}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "sriovnetwork.openshift.io/v1", "kind": owner,
                                    "name": "default", "uid": "1234"}]
    image = "ghcr.io/k8snetworkplumbingwg/sriov-network-device-plugin"
    spec: Obj = {"hostNetwork": True,
                 "containers": [{"name": "kube-sriovdp", "image": image}]}
    if arch:
        spec["nodeSelector"] = {"kubernetes.io/arch": arch}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": {**labels, "tier": "node"}},
                                  "spec": spec}}}


def go_configmap(config: str) -> Obj:
    """The Go plugin's ConfigMap (same name and key as ours) holding ``config``."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "sriovdp-config", "namespace": "kube-system"},
            "data": {"config.json": config}}


BASE_CONFIG = yaml.safe_load((DEPLOY / "base" / "configmap.yaml").read_text())["data"][
    "config.json"]
OPERATOR_CONFIG = json.dumps({"resourceList": [{"resourceName": "our_own_pool",
                                                "selectors": {"pfNames": ["ens1f0"]}}]},
                             indent=2)
MUTATING = ("delete", "apply")


class Cluster:
    def __init__(self, tmp: Path, daemonsets: list[Obj],
                 configmaps: list[Obj] | None = None) -> None:
        self.state = tmp / "cluster.json"
        self.log = tmp / "calls.log"
        self.state.write_text(json.dumps({"daemonsets": daemonsets, "applied": [],
                                          "configmaps": configmaps or []}))
        self.kubectl = tmp / "kubectl"
        self.kubectl.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
        self.kubectl.chmod(0o755)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECTL": str(self.kubectl), "REAL_KUBECTL": str(KUBECTL),
               "FAKE_CLUSTER": str(self.state), "FAKE_LOG": str(self.log)}
        return subprocess.run(["sh", str(SCRIPT), *args], capture_output=True, text=True,
                              env=env, timeout=120, check=False)

    def daemonsets(self) -> list[Obj]:
        return json.loads(self.state.read_text())["daemonsets"]

    def configmaps(self) -> list[Obj]:
        return json.loads(self.state.read_text())["configmaps"]

    def mutations(self) -> list[list[str]]:
        return [c for c in self.calls() if any(m in c for m in MUTATING)]

    def applied(self) -> list[Obj]:
        return json.loads(self.state.read_text())["applied"]

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def names(objs: list[Obj]) -> set[str]:
    return {f'{o["metadata"]["namespace"]}/{o["metadata"]["name"]}' for o in objs}


def plugin_daemonsets(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["spec"]["selector"]["matchLabels"].get("name") == SELECTOR["name"]]


UNRELATED = go_daemonset("kube-proxy", selector={"k8s-app": "kube-proxy"})


def test_migration_removes_old_per_arch_daemonsets_when_applied(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, [
        go_daemonset("kube-sriov-device-plugin-amd64", arch="amd64"),
        go_daemonset("kube-sriov-device-plugin-arm64", arch="arm64"),
        go_daemonset("kube-sriov-device-plugin-ppc64le", arch="ppc64le"),
        UNRELATED,
    ])
    proc = cluster.run("--image", IMAGE, "--apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = cluster.daemonsets()
    assert names(after) == {"kube-system/kube-proxy", "kube-system/kube-sriov-device-plugin"}
    (ours,) = plugin_daemonsets(after)
    assert ours["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    deletes = [c for c in cluster.calls() if "delete" in c]
    # orphan: the old pods keep serving until the new DaemonSet adopts and replaces them
    assert all(c[-1] == "--cascade=orphan" for c in deletes) and len(deletes) == 3


def test_migration_updates_the_multi_arch_daemonset_in_place_when_applied(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, [go_daemonset("kube-sriov-device-plugin"), UNRELATED])
    proc = cluster.run("--image", IMAGE, "--apply")
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in cluster.calls() if "delete" in c]
    (ours,) = plugin_daemonsets(cluster.daemonsets())
    assert ours["metadata"]["labels"]["app"] == "sriovdp"
    assert ours["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE


def test_migration_deletes_a_renamed_copy_by_its_selector_when_applied(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, [go_daemonset("my-sriov-dp", "networking"),
                                 go_daemonset("kube-sriov-device-plugin-amd64", "networking")])
    proc = cluster.run("--image", IMAGE, "--apply")
    assert proc.returncode == 0, proc.stderr
    assert names(cluster.daemonsets()) == {"kube-system/kube-sriov-device-plugin"}
    deletes = [c for c in cluster.calls() if "delete" in c]
    assert all("--cascade=orphan" not in c for c in deletes)  # cannot be adopted across namespaces


def test_migration_changes_nothing_when_not_applied(tmp_path: Path) -> None:
    before = [go_daemonset("kube-sriov-device-plugin-amd64"), UNRELATED]
    cluster = Cluster(tmp_path, before)
    proc = cluster.run("--image", IMAGE)
    assert proc.returncode == 0, proc.stderr
    assert cluster.daemonsets() == before and cluster.applied() == []
    assert "would run: " in proc.stdout and "--cascade=orphan" in proc.stdout
    assert cluster.mutations() == []


def test_dry_run_says_what_apply_would_do_when_not_applied(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, [go_daemonset("kube-sriov-device-plugin-amd64"),
                                 go_daemonset("my-sriov-dp", "networking")])
    proc = cluster.run("--image", IMAGE)
    assert proc.returncode == 0, proc.stderr
    found = [line for line in proc.stdout.splitlines() if line.startswith("found ")]
    assert found == [
        "found kube-system/kube-sriov-device-plugin-amd64: old Go DaemonSet, --apply would "
        "delete it (its pods would be adopted and replaced)",
        "found networking/my-sriov-dp: old Go DaemonSet in another namespace, --apply would "
        "delete it with its pods"]
    assert "deleted" not in proc.stdout
    assert ("config: kube-system/sriovdp-config does not exist; --apply would create it"
            in proc.stdout)


def test_dry_run_shows_the_config_apply_would_replace_when_the_cluster_config_differs(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path, [go_daemonset("kube-sriov-device-plugin")],
                      [go_configmap(OPERATOR_CONFIG)])
    proc = cluster.run("--image", IMAGE)
    assert proc.returncode == 0, proc.stderr
    assert ("config: --apply would replace the config.json of kube-system/sriovdp-config "
            "(the pools the cluster runs now) with the one" in proc.stdout)
    assert "deployments/base/configmap.yaml" in proc.stdout
    assert '-      "resourceName": "our_own_pool",' in proc.stdout  # the diff: what is lost
    assert '+      "resourceName": "intel_sriov_netdevice",' in proc.stdout
    assert "--replace-config" in proc.stdout
    assert cluster.mutations() == []


def test_dry_run_says_the_config_is_kept_when_the_cluster_config_is_the_same(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path, [go_daemonset("kube-sriov-device-plugin")],
                      [go_configmap(BASE_CONFIG)])
    proc = cluster.run("--image", IMAGE)
    assert proc.returncode == 0, proc.stderr
    assert "is the same as the one" in proc.stdout and "would replace" not in proc.stdout


def test_apply_changes_nothing_when_the_cluster_config_differs(tmp_path: Path) -> None:
    before = [go_daemonset("kube-sriov-device-plugin-amd64")]
    cluster = Cluster(tmp_path, before, [go_configmap(OPERATOR_CONFIG)])
    proc = cluster.run("--image", IMAGE, "--apply")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "nothing was changed" in proc.stderr
    assert cluster.mutations() == [] and cluster.daemonsets() == before
    assert cluster.configmaps() == [go_configmap(OPERATOR_CONFIG)]


def test_apply_replaces_the_cluster_config_when_given_replace_config(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, [go_daemonset("kube-sriov-device-plugin-amd64")],
                      [go_configmap(OPERATOR_CONFIG)])
    proc = cluster.run("--image", IMAGE, "--apply", "--replace-config")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the apply replaces the config.json of kube-system/sriovdp-config" in proc.stdout
    (cm,) = cluster.configmaps()
    assert cm["data"]["config.json"] == BASE_CONFIG


def test_apply_goes_ahead_when_the_cluster_config_is_the_same(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, [go_daemonset("kube-sriov-device-plugin-amd64")],
                      [go_configmap(BASE_CONFIG)])
    proc = cluster.run("--image", IMAGE, "--apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "found kube-system/kube-sriov-device-plugin-amd64: old Go DaemonSet, deleting it" \
        in proc.stdout
    assert names(cluster.daemonsets()) == {"kube-system/kube-sriov-device-plugin"}


def test_dry_run_leaves_the_config_alone_when_the_target_renders_no_configmap(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path, [go_daemonset("kube-sriov-device-plugin")],
                      [go_configmap(OPERATOR_CONFIG)])
    proc = cluster.run("--image", IMAGE, "--target", str(TARGETS["per-node-config"]),
                       "--apply")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "renders no kube-system/sriovdp-config ConfigMap" in proc.stdout
    assert cluster.configmaps() == [go_configmap(OPERATOR_CONFIG)]


def test_migration_leaves_operator_managed_daemonsets_alone(tmp_path: Path) -> None:
    before = [go_daemonset("sriov-device-plugin", "sriov-network-operator",
                           owner="SriovOperatorConfig"),
              go_daemonset("kube-sriov-device-plugin-amd64")]
    cluster = Cluster(tmp_path, before)
    proc = cluster.run("--image", IMAGE, "--apply")
    assert proc.returncode == 3
    assert "sriov-network-operator/sriov-device-plugin" in proc.stderr
    assert "docs/real-node.md" in proc.stderr
    assert cluster.daemonsets() == before and cluster.applied() == []


def test_migration_applies_an_overlay_when_given_as_target(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, [go_daemonset("kube-sriov-device-plugin")])
    proc = cluster.run("--image", IMAGE, "--target", str(TARGETS["cdi"]), "--apply")
    assert proc.returncode == 0, proc.stderr
    (ours,) = plugin_daemonsets(cluster.daemonsets())
    assert "--use-cdi" in ours["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("args", [[], ["--image"], ["--bogus", "--image", IMAGE]])
def test_migration_refuses_bad_usage(tmp_path: Path, args: list[str]) -> None:
    cluster = Cluster(tmp_path, [])
    proc = cluster.run(*args)
    assert proc.returncode == 2 and proc.stderr
    assert cluster.calls() == []


# -- setting the image with only kubectl --------------------------------------------------------


def set_image(rendered: str, image: str) -> str:
    """The README's and the script's sed: only the sriovdp image line changes."""
    proc = subprocess.run(["sed", rf"s|^\( *image: \)sriovdp:.*$|\1{image}|"], input=rendered,
                          capture_output=True, text=True, check=True)
    return proc.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_image_is_set_with_only_kubectl_when_rendered_through_sed(target: str) -> None:
    assert KUBECTL is not None
    rendered = subprocess.run([KUBECTL, "kustomize", str(TARGETS[target])], capture_output=True,
                              text=True, check=True).stdout
    objs = [d for d in yaml.safe_load_all(set_image(rendered, IMAGE)) if d]
    ds = one(objs, "DaemonSet")
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = one(render(target), "DaemonSet")[
        "spec"]["template"]["spec"]["containers"][0]["image"]
    assert objs == render(target), "only the image changes"


def test_readme_sets_the_image_the_way_the_test_does() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    assert "kubectl kustomize deployments/ | sed" in readme
    assert r"s|^\( *image: \)sriovdp:.*$|\1$IMAGE|" in readme


# -- node selection: the Go plugin's by default, NFD as an opt-in --------------------------


def _expression_matches(expr: Obj, labels: dict[str, str]) -> bool:
    op, key = expr["operator"], expr["key"]
    if op == "In":
        return labels.get(key) in expr["values"]
    if op == "NotIn":
        return labels.get(key) not in expr["values"]
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise AssertionError(f"operator {op} not handled by this test")


def _tolerated(taint: Obj, tolerations: list[Obj]) -> bool:
    for t in tolerations:
        if t.get("effect") not in (None, "", taint["effect"]):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint["key"]):
            return True
        if t.get("key") == taint["key"] and t.get("value") == taint.get("value"):
            return True
    return False


def schedulable(pod: Obj, node: Obj) -> bool:
    """A DaemonSet pod's placement rules (nodeSelector, required affinity, NoSchedule and
    NoExecute taints)."""
    labels = node["labels"]
    if any(labels.get(k) != v for k, v in (pod.get("nodeSelector") or {}).items()):
        return False
    terms = (pod.get("affinity", {}).get("nodeAffinity", {})
             .get("requiredDuringSchedulingIgnoredDuringExecution", {})
             .get("nodeSelectorTerms"))
    if terms and not any(all(_expression_matches(e, labels) for e in t["matchExpressions"])
                         for t in terms):
        return False
    return all(_tolerated(t, pod.get("tolerations", [])) for t in node.get("taints", [])
               if t["effect"] in ("NoSchedule", "NoExecute"))


# The Go plugin's multi-arch DaemonSet (upstream-behavior.md §9.2, its CDI variant and the
# current kube-sriov-device-plugin): these are the only fields that decide placement.
UPSTREAM_PLACEMENT: Obj = {
    "tolerations": [
        {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
         "effect": "NoSchedule"},
    ],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/arch", "operator": "In",
             "values": ["amd64", "arm64", "ppc64le", "s390x"]}]}]}}},
}
NFD = "feature.node.kubernetes.io/network-sriov.capable"
CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
NODES: list[Obj] = [
    {"name": f"{arch}-{kind}",
     "labels": {"kubernetes.io/arch": arch, "kubernetes.io/os": "linux",
                **({NFD: "true"} if kind == "nfd" else {})},
     "taints": [CP_TAINT] if kind == "cp" else
     [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}] if kind == "gpu" else []}
    for arch in ("amd64", "arm64", "ppc64le", "s390x", "riscv64")
    for kind in ("plain", "nfd", "cp", "gpu")
]


def selected(pod: Obj) -> set[str]:
    return {n["name"] for n in NODES if schedulable(pod, n)}


@pytest.mark.parametrize("target", ["deployments", "base", "cdi", "metrics", "per-node-config"])
def test_default_render_selects_the_nodes_upstream_selects(target: str) -> None:
    ours = one(render(target), "DaemonSet")["spec"]["template"]["spec"]
    assert selected(ours) == selected(UPSTREAM_PLACEMENT)
    # not vacuous: control-plane nodes in, tainted and unknown-arch nodes out, NFD irrelevant
    assert "s390x-plain" in selected(ours) and "arm64-cp" in selected(ours)
    assert "amd64-gpu" not in selected(ours) and "riscv64-plain" not in selected(ours)


def test_nfd_overlay_selects_only_labelled_nodes() -> None:
    ours = one(render("nfd"), "DaemonSet")["spec"]["template"]["spec"]
    assert selected(ours) == {n for n in selected(UPSTREAM_PLACEMENT) if n.endswith("-nfd")}
    ds = one(render("nfd"), "DaemonSet")
    del ds["spec"]["template"]["spec"]["nodeSelector"]
    assert ds == one(render("base"), "DaemonSet"), "the overlay only adds the node selector"


def test_nfd_component_combines_with_another_overlay(tmp_path: Path) -> None:
    tree = tmp_path / "deployments"
    shutil.copytree(DEPLOY, tree)
    kfile = tree / "overlays" / "cdi" / "kustomization.yaml"
    doc = yaml.safe_load(kfile.read_text())
    doc["components"] = ["../../components/nfd"]
    kfile.write_text(yaml.safe_dump(doc))
    spec = one(kustomize(kfile.parent), "DaemonSet")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {NFD: "true"}
    assert "--use-cdi" in spec["containers"][0]["args"]


# -- what each overlay applies -------------------------------------------------------------


def test_per_node_keys_survive_an_apply_when_using_per_node_config() -> None:
    """The overlay renders no ConfigMap, so `kubectl apply -k` cannot replace the per-node
    keys made with `kubectl create configmap`."""
    objs = render("per-node-config")
    assert [o for o in objs if o["kind"] == "ConfigMap"] == []
    volume = next(v for v in one(objs, "DaemonSet")["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "config-volume")
    assert volume["configMap"] == {"name": "sriovdp-config"}  # every key, one file per node


@pytest.mark.parametrize("target", TARGETS)
def test_every_overlay_renders_exactly_what_it_says(target: str) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in render(target))
    expected = {
        "per-node-config": [("DaemonSet", "kube-sriov-device-plugin"),
                            ("ServiceAccount", "sriov-device-plugin")],
        "metrics": [("ConfigMap", "sriovdp-config"), ("DaemonSet", "kube-sriov-device-plugin"),
                    ("Service", "sriov-device-plugin-metrics"),
                    ("ServiceAccount", "sriov-device-plugin")],
        "dra": [("ClusterRole", "sriovdp-dra"), ("ClusterRoleBinding", "sriovdp-dra"),
                ("ConfigMap", "sriovdp-config"), ("DaemonSet", "kube-sriov-device-plugin"),
                ("ServiceAccount", "sriov-device-plugin")],
    }.get(target, [("ConfigMap", "sriovdp-config"), ("DaemonSet", "kube-sriov-device-plugin"),
                   ("ServiceAccount", "sriov-device-plugin")])
    assert kinds == expected


def test_configmap_comment_says_changes_apply_live() -> None:
    text = (DEPLOY / "base" / "configmap.yaml").read_text()
    comment = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    assert "apply live" in comment and "no restart" in comment
    assert not re.search(r"restart the pods", comment)


def test_migration_script_is_posix_sh_and_executable() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/bin/sh\n")
    if shutil.which("dash"):
        assert subprocess.run(["dash", "-n", str(SCRIPT)], check=False).returncode == 0


def test_migration_stops_with_a_clear_message_when_the_cluster_cannot_be_listed(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path, [])
    cluster.kubectl.write_text("#!/bin/sh\necho 'connection refused' >&2\nexit 1\n")
    proc = cluster.run("--image", IMAGE, "--apply")
    assert proc.returncode == 1
    assert "cannot list the DaemonSets" in proc.stderr
