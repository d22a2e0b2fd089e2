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


CEL_ATTRIBUTE = re.compile(r'device\.attributes\["([^"]+)"\]\.(\w+)(?:\s*==\s*"([^"]*)")?')
MATCH_ATTRIBUTE = re.compile(r"matchAttribute:\s*([\w.-]+)/(\w+)")
CEL_DRIVER = re.compile(r'device\.driver\s*==\s*"([^"]+)"')


def test_dra_example_selectors_name_attributes_and_values_discover_prints_when_compared(
        tmp_path: Path) -> None:
    """Every attribute a CEL selector or ``matchAttribute`` of the README's DRA section or of
    the example files names (comments included: the pin-a-PF hint) is one `discover --dra=all`
    prints on the golden host, and every value compared is one of its devices' values."""
    texts = [dra_section(), *(p.read_text() for p in sorted(EXAMPLES.glob("*.yaml")))]
    host = FakeHost.load(tmp_path / "host", REPO / "tests/data/hosts/x710-cx5-demo.yaml")
    config = re.search(r"```json\n(.*?)```", dra_section(), re.DOTALL)
    assert config is not None
    cfg = tmp_path / "config.json"
    cfg.write_text(config[1])
    proc = subprocess.run([sys.executable, "-m", "sriovdp", "discover", "--dra=all",
                           "--node-name", "worker-1", "--host-root", str(host.root),
                           "--config-file", str(cfg)],
                          capture_output=True, text=True, timeout=60, check=True)
    slices = [s for s in yaml.safe_load_all(proc.stdout) if s]
    drivers = {s["spec"]["driver"] for s in slices}
    printed: dict[tuple[str, str], set[str]] = {}
    for s in slices:
        for device in s["spec"]["devices"]:
            for key, value in device["attributes"].items():
                domain, _, name = key.rpartition("/")
                (val,) = value.values()
                printed.setdefault((domain or s["spec"]["driver"], name), set()).add(str(val))
    named = [(m[1], m[2], m[3]) for t in texts for m in CEL_ATTRIBUTE.finditer(t)]
    named += [(m[1], m[2], None) for t in texts for m in MATCH_ATTRIBUTE.finditer(t)]
    assert len(named) >= 4, named
    for domain, name, value in named:
        assert (domain, name) in printed, f"{domain}/{name} is not an attribute discover prints"
        if value is not None:
            assert value in printed[domain, name], (domain, name, value, printed[domain, name])
    assert {d for t in texts for d in CEL_DRIVER.findall(t)} == drivers


def _verbs(text: str) -> set[tuple[str, str]]:
    """``(resource, verb)`` of a README phrase like "`resourceslices` list/create, `nodes` get"."""
    return {(resource, verb) for resource, verbs in re.findall(r"`([\w/]+)` ([\w/]+)", text)
            for verb in verbs.split("/")}


def test_dra_readme_names_the_role_verbs_the_daemon_uses_and_the_ones_it_does_not() -> None:
    """The README's verbs "the daemon's calls need" are the ones the conformance suite shows
    refused with 403 when removed, and with the "also grants" ones they are rbac.yaml's role."""
    section = " ".join(dra_section().split())
    needed = re.search(r"The daemon's calls need (.*?); the role also grants (.*?), which this "
                       r"version never uses", section)
    assert needed is not None
    used, extra = _verbs(needed[1]), _verbs(needed[2])
    conformance = (REPO / "tests/conformance/test_dra_deployment.py").read_text()
    missing = conformance[conformance.index("MISSING = ["):]
    missing = missing[:missing.index("]\n")]
    assert used == {(r, v) for _, r, v in re.findall(r'\("([^"]*)", "([^"]+)", "([^"]+)"\)',
                                                      missing)}
    role = next(d for d in yaml.safe_load_all(
        (REPO / "deployments/overlays/dra/rbac.yaml").read_text()) if d["kind"] == "ClusterRole")
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert used | extra == granted
    assert not used & extra
