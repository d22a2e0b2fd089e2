"""Rendering deployments/ offline with `kubectl kustomize`: shared by the tests in this dir."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deployments"
KUBECTL = shutil.which("kubectl")
TARGETS = {
    "deployments": DEPLOY,
    "base": DEPLOY / "base",
    "cdi": DEPLOY / "overlays" / "cdi",
    "metrics": DEPLOY / "overlays" / "metrics",
    "per-node-config": DEPLOY / "overlays" / "per-node-config",
    "nfd": DEPLOY / "overlays" / "nfd",
    "dra": DEPLOY / "overlays" / "dra",
}
#: The DRA overlay's example DeviceClass, ResourceClaimTemplate and pod (plain files for
#: ``kubectl apply -f``, not a kustomization).
DRA_EXAMPLES = DEPLOY / "overlays" / "dra" / "examples"
#: Kinds without a namespace.
CLUSTER_SCOPED = frozenset({"ClusterRole", "ClusterRoleBinding", "DeviceClass"})

Obj = dict[str, Any]


def kustomize(path: Path) -> list[Obj]:
    assert KUBECTL is not None
    proc = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@functools.cache
def _rendered(name: str) -> str:
    return json.dumps(kustomize(TARGETS[name]))


def render(name: str) -> list[Obj]:
    """The objects of one target (a fresh copy: tests may change them)."""
    return json.loads(_rendered(name))


def dra_examples() -> dict[str, Obj]:
    """The example objects by kind."""
    objs = [doc for path in sorted(DRA_EXAMPLES.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]
    return {o["kind"]: o for o in objs}


def one(objs: list[Obj], kind: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]
