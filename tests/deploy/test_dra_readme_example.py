"""The DRA example in the README is valid ``resource.k8s.io/v1`` and selects what it says."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import yaml

README = Path(__file__).parents[2] / "README.md"


def dra_section() -> str:
    text = README.read_text()
    start = text.index("## DRA mode (preview)")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_dra_example_manifests_are_valid_when_checked_against_1_34() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", dra_section(), re.DOTALL)
    docs = [d for block in blocks for d in yaml.safe_load_all(block)]
    assert [d["kind"] for d in docs] == ["DeviceClass", "ResourceClaimTemplate", "Pod"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.34.0", strict=True)
    device_class, template, pod = docs
    request = template["spec"]["spec"]["devices"]["requests"][0]
    assert request["exactly"]["deviceClassName"] == device_class["metadata"]["name"]
    assert pod["spec"]["resourceClaims"][0]["resourceClaimTemplateName"] == (
        template["metadata"]["name"])
