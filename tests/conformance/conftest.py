"""Conformance against the kubelet's own code: the peer (tests/conformance/kubelet, built from
k8s.io/kubernetes) runs the real device manager, plugin watcher and pod resources server; the
installed ``sriovdp`` runs as a subprocess on a FakeHost tree. Every path is under a temp dir.

Without ``go`` on PATH the suite is not collected and one line says why."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nodekit import Node

from sriovdp.testing.demo import DEMO_CONFIG, build_demo_host
from sriovdp.testing.realkubelet import build_peer, why_no_go

_WHY_NOT = why_no_go()
_BUILD_DIR = Path(tempfile.gettempdir()) / "sriovdp-kubelet-peer"

if _WHY_NOT is not None:
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _WHY_NOT is not None:
        terminalreporter.write_line(f"conformance suite skipped: {_WHY_NOT}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.conformance)


@pytest.fixture(scope="session")
def peer_binary() -> Path:
    """The peer, built once per session (``go build``; Go's cache keeps rebuilds cheap)."""
    return build_peer(Path(os.environ.get("KUBELET_PEER_BUILD_DIR", _BUILD_DIR)))


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sdpc-", dir="/tmp"))  # short unix socket paths
    try:
        yield path
    finally:
        if not os.environ.get("CONFORMANCE_KEEP"):  # keep the logs to read them
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def node(workdir: Path) -> AsyncIterator[Node]:
    host = build_demo_host(workdir / "host")
    config = workdir / "config.json"
    config.write_text(json.dumps(DEMO_CONFIG))
    n = Node(work=workdir, host=host, config=config,
             device_plugin_dir=workdir / "dp", plugins_registry=workdir / "reg",
             pod_resources=workdir / "pr.sock", device_info_dir=workdir / "devinfo",
             cdi_dir=workdir / "cdi")
    n.device_plugin_dir.mkdir()
    try:
        yield n
    finally:
        for proc in n.daemons:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


