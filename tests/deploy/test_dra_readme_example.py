"""The DRA example in the README is valid ``resource.k8s.io/v1``, selects what it says, and is
the overlay's example files (which the conformance suite runs on a real control plane)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from sriovdp.testing.fakehost import FakeHost

REPO = Path(__file__).parents[2]
README = REPO / "README.md"
EXAMPLES = REPO / "deployments" / "overlays" / "dra" / "examples"


def dra_section() -> str:
    text = README.read_text()
    start = text.index("\n## DRA mode\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def readme_docs() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", dra_section(), re.DOTALL)
    return [d for block in blocks for d in yaml.safe_load_all(block)]


def test_dra_example_manifests_are_valid_when_checked_against_1_34() -> None:
    docs = readme_docs()
    assert [d["kind"] for d in docs] == ["DeviceClass", "ResourceClaimTemplate", "Pod"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.34.0", strict=True)
    device_class, template, pod = docs
    request = template["spec"]["spec"]["devices"]["requests"][0]
    assert request["exactly"]["deviceClassName"] == device_class["metadata"]["name"]
    assert pod["spec"]["resourceClaims"][0]["resourceClaimTemplateName"] == (
        template["metadata"]["name"])


def test_dra_example_in_the_readme_is_the_overlay_example_files_when_compared() -> None:
    files = {d["kind"]: d for p in EXAMPLES.glob("*.yaml") for d in yaml.safe_load_all(
        p.read_text()) if d}
    for doc in readme_docs():
        assert doc == files[doc["kind"]], doc["kind"]


def test_dra_discover_excerpt_is_what_discover_prints_for_that_device() -> None:
    """The console excerpt's device is the demo host's VF 4 as `discover --dra` prints it."""
    block = re.search(r"```console\n\$ (sriovdp discover --dra[^\n]*)\n(.*?)```",
                      dra_section(), re.DOTALL)
    assert block is not None
    excerpt = yaml.safe_load(block[2])
    config = re.search(r"```json\n(.*?)```", dra_section(), re.DOTALL)
    assert config is not None
    with tempfile.TemporaryDirectory() as tmp:
        host = FakeHost.load(Path(tmp) / "host", REPO / "tests/data/hosts/x710-cx5-demo.yaml")
        cfg = Path(tmp) / "config.json"
        cfg.write_text(config[1])
        args = block[1].split()[1:]
        proc = subprocess.run([sys.executable, "-m", "sriovdp", *args, "--host-root",
                               str(host.root), "--config-file", str(cfg)],
                              capture_output=True, text=True, timeout=60, check=True)
    (printed,) = [s for s in yaml.safe_load_all(proc.stdout) if s]
    assert {k: v for k, v in printed["spec"].items() if k != "devices"} == {
        k: v for k, v in excerpt["spec"].items() if k != "devices"}
    assert printed["metadata"] == excerpt["metadata"]
    (device,) = excerpt["spec"]["devices"]
    by_name = {d["name"]: d for d in printed["spec"]["devices"]}
    assert by_name[device["name"]] == device, json.dumps(by_name[device["name"]])
