"""An apiserver nobody answers at: every call of the official client is a clear, retried
error of ours (the new-user pass saw urllib3's MaxRetryError end the publishing task instead,
so /readyz was 200 between restarts and sriovdp_dra_publish_errors_total stayed 0)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sriovdp.kubelet.dra.apiserver import connect
from sriovdp.kubelet.dra.claims import ClaimReadError
from sriovdp.kubelet.dra.publisher import SliceApiError
from sriovdp.model.dra.prepare import ClaimRef


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


def _kubeconfig(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    return path


async def test_reading_the_node_is_a_slice_api_error_when_the_apiserver_refuses(
        tmp_path: Path) -> None:
    apis = connect(_kubeconfig(tmp_path, _closed_port()))
    with pytest.raises(SliceApiError, match="reading Node worker-1") as err:
        await apis.nodes.uid("worker-1")
    assert "Connection refused" in str(err.value)
    assert "Max retries" not in str(err.value)  # the client makes one try: say why it failed


async def test_reading_a_claim_is_a_claim_read_error_when_the_apiserver_refuses(
        tmp_path: Path) -> None:
    apis = connect(_kubeconfig(tmp_path, _closed_port()))
    with pytest.raises(ClaimReadError, match="reading claim default/c1") as err:
        await apis.claims.read(ClaimRef("default", "c1", "uid-1"))
    assert "Connection refused" in str(err.value) and "Max retries" not in str(err.value)


async def test_listing_slices_says_why_the_connection_failed_when_the_apiserver_refuses(
        tmp_path: Path) -> None:
    apis = connect(_kubeconfig(tmp_path, _closed_port()))
    with pytest.raises(SliceApiError, match="listing ResourceSlices") as err:
        await apis.slices.list(driver="sriov.network.k8s.io", node_name="worker-1")
    assert "Connection refused" in str(err.value) and "Max retries" not in str(err.value)
