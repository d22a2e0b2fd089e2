"""Every config in the README and the docs matches something: `sriovdp validate` accepts
it, and each of its pools gets devices on at least one golden host (`sriovdp discover`)
(issue 9, "Done when")."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sriovdp.cli import main
from sriovdp.daemon.settings import Settings
from sriovdp.discover import discover_report
from sriovdp.model.config import parse_config
from sriovdp.testing.fakehost import FakeHost

REPO = Path(__file__).resolve().parents[2]
HOSTS = sorted((REPO / "tests" / "data" / "hosts").glob("*.yaml"))
DOCS = [REPO / "README.md", REPO / "docs" / "real-node.md"]


def configs() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, block in enumerate(re.findall(r"```json\n(.*?)```", doc.read_text(), re.S)):
            if '"resourceList"' in block:
                found.append((f"{doc.name}#{i}", block))
    return found


def test_the_docs_hold_configs() -> None:
    assert any(name.startswith("README.md") for name, _ in configs())


def _validate_takes_dra() -> bool:
    """A config marking a pool "dra": true validates with --dra (DRA mode's daemon)."""
    from sriovdp.cli import _parser

    return any("--dra" in a.option_strings for a in _parser("validate")._actions)


@pytest.mark.parametrize(("name", "text"), configs(), ids=[n for n, _ in configs()])
def test_every_doc_config_validates_and_fills_each_pool_on_a_golden_host(
    name: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(text)
    dra = ["--dra"] if re.search(r'"dra":\s*true', text) and _validate_takes_dra() else []
    assert main(["validate", "--config-file", str(cfg), *dra,
                 "--plugins-registry-dir", str(tmp_path / "none")]) == 0, capsys.readouterr()
    config = parse_config(text)
    filled: dict[str, list[str]] = {}
    for spec in HOSTS:
        host = FakeHost.load(tmp_path / spec.stem, spec)
        report = discover_report(Settings(host=host.paths), config)
        for pool in report["pools"]:
            if pool["devices"]:
                filled.setdefault(pool["resource"], []).append(spec.name)
    names = [r.resource_name("intel.com") for r in config.resources]
    empty = [n for n in names if n not in filled]
    assert not empty, f"{name}: no golden host gives these pools a device: {empty}"


def test_discover_says_why_a_qat_selector_matches_nothing_when_run_on_the_qat_host(
    tmp_path: Path,
) -> None:
    host = FakeHost.load(tmp_path / "h", REPO / "tests/data/hosts/accel-acc100-qat.yaml")
    config = parse_config(json.dumps({"resourceList": [
        {"resourceName": "qat", "deviceType": "accelerator",
         "selectors": [{"vendors": ["8086"], "devices": ["37c9"]}]}]}))
    report = discover_report(Settings(host=host.paths), config)
    others = {o["address"]: o for o in report["other_functions"]}
    assert others["0000:3d:01.0"]["class"] == "0x0b4000"
    assert others["0000:3d:01.0"]["device"] == "37c9"
    (pool,) = report["pools"]
    reasons = {r["address"]: r["reason"] for r in pool["rejected"]}
    assert reasons["0000:3d:01.0"].startswith("class 0x0b4000 (processor)")
    assert "0000:3d:00.0" not in reasons, "the PF (37c8) is not named by the selector"


BENCHES = sorted(p for p in (REPO / "bench").glob("*.py") if p.name != "harness.py")


@pytest.mark.parametrize("bench", BENCHES, ids=[p.name for p in BENCHES])
def test_bench_help_gives_its_whole_summary_when_asked(bench: Path) -> None:
    doc = ast.get_docstring(ast.parse(bench.read_text()))
    assert doc
    summary = " ".join(doc.split("\n\n")[0].split())
    proc = subprocess.run([sys.executable, str(bench), "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert summary in " ".join(proc.stdout.split())


def test_readme_names_the_benches_that_need_root_when_they_refuse_without_it() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())
    need_root = sorted(p.name for p in BENCHES if "os.geteuid() != 0" in p.read_text())
    assert need_root == ["dra_apiserver.py", "health_latency.py", "hotplug.py"]
    assert "`health_latency.py` and `hotplug.py` need root" in readme
    assert "`dra_apiserver.py --daemon` needs root" in readme


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_into_the_docs_land_on_a_heading_when_followed() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)#([^)]+)\)", (REPO / "README.md").read_text())
    assert links
    for path, anchor in links:
        headings = re.findall(r"^#+ (.+)$", (REPO / path).read_text(), re.M)
        assert anchor in {_anchor(h) for h in headings}, f"{path}#{anchor}"


def test_every_exported_metric_is_explained_in_the_docs_when_served() -> None:
    source = (REPO / "src/sriovdp/daemon/metrics.py").read_text()
    names = [name + ("_total" if kind == "Counter" else "") for kind, name in
             re.findall(r'(Gauge|Counter|Histogram)MetricFamily\(\s*"(sriovdp_\w+)"', source)]
    assert len(names) >= 12
    docs = (REPO / "docs/real-node.md").read_text()
    table = docs[docs.index("## 8. Metrics"):docs.index("## 9.")]
    readme = (REPO / "README.md").read_text()
    for name in names:
        assert f"`{name}`" in table and f"`{name}" in readme, name


def test_readme_names_every_daemon_flag_when_it_lists_the_flags() -> None:
    from sriovdp.cli import _parser

    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| flag | default | meaning |"):]
    table = table[:table.index("\n\n")]
    parser = _parser("run")
    glog = {a.dest for g in parser._action_groups if g.title and "glog" in g.title
            for a in g._group_actions}
    assert "the glog flags `-v`, `-logtostderr`, `-log_dir`, …" in " ".join(readme.split())
    for action in parser._actions:
        if action.dest in ("help", "version") or action.dest in glog:
            continue
        flag = action.option_strings[0]
        assert f"| `{flag}` |" in table, flag
