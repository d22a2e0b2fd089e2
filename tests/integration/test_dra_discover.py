"""``sriovdp discover --dra``: the ResourceSlices a node would publish, printed as YAML."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from sriovdp.cli import main
from sriovdp.testing.demo import DEMO_CONFIG
from sriovdp.testing.fakehost import FakeHost


def run(workdir: Path, host: FakeHost, *extra: str, flag: str = "--dra=all",
        config: object = DEMO_CONFIG) -> list[str]:
    path = workdir / "config.json"
    path.write_text(json.dumps(config))
    return ["discover", flag, "--host-root", str(host.root), "--config-file", str(path),
            "--device-plugin-dir", str(workdir / "dp"), *extra]


def marked(*names: str) -> dict[str, object]:
    """DEMO_CONFIG with the pools ``names`` marked ``"dra": true``."""
    return {"resourceList": [{**r, "dra": True} if r["resourceName"] in names else r
                             for r in DEMO_CONFIG["resourceList"]]}


def pools_of(out: str) -> set[str]:
    return {d["attributes"]["resourceName"]["string"]
            for s in yaml.safe_load_all(out) for d in s["spec"]["devices"]}


def test_discover_dra_prints_valid_slices_of_every_pool_when_dra_is_all(
        workdir: Path, host: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(run(workdir, host, "--node-name", "worker-1")) == 0
    slices = list(yaml.safe_load_all(capsys.readouterr().out))
    assert len(slices) == 1
    for s in slices:
        kubernetes_validate.validate(s, "1.34.0", strict=True)
    spec = slices[0]["spec"]
    assert (spec["driver"], spec["nodeName"], spec["pool"]["name"]) == (
        "sriov.network.k8s.io", "worker-1", "worker-1")
    by_pool: dict[str, list[str]] = {}
    for d in spec["devices"]:
        by_pool.setdefault(d["attributes"]["resourceName"]["string"], []).append(d["name"])
    assert by_pool["intel.com/intel_sriov_dpdk"] == [f"0000-3b-02-{n}" for n in range(4, 8)]
    assert by_pool["intel.com/mlnx_sf"] == ["mlx5-core-sf-2", "mlx5-core-sf-3"]
    rdma = next(d for d in spec["devices"] if d["name"] == "0000-d8-00-2")["attributes"]
    assert rdma["rdma"] == {"bool": True} and rdma["pfName"] == {"string": "ens1f0"}
    assert rdma["resource.kubernetes.io/pcieRoot"] == {"string": "pci0000:d8"}


def test_discover_dra_uses_the_driver_flag_when_given(
        workdir: Path, host: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(run(workdir, host, "--node-name", "n1", "--dra-driver", "vf.example.com")) == 0
    (s,) = yaml.safe_load_all(capsys.readouterr().out)
    assert s["spec"]["driver"] == "vf.example.com"
    assert s["metadata"]["name"] == "n1-vf.example.com-0"


def test_discover_dra_exits_2_naming_the_rule_when_the_driver_is_not_a_dns_subdomain(
        workdir: Path, host: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(run(workdir, host, "--dra-driver", "SRIOV_net"))
    assert exc.value.code == 2
    assert "DNS subdomain" in capsys.readouterr().err


def test_discover_dra_exits_2_when_the_node_name_is_not_a_pool_name(
        workdir: Path, host: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(run(workdir, host, "--node-name", "Bad Node")) == 2
    assert "--node-name" in capsys.readouterr().err


def test_discover_dra_prints_a_json_list_when_asked_for_json(
        workdir: Path, host: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(run(workdir, host, "--node-name", "worker-1", "-o", "json")) == 0
    (s,) = json.loads(capsys.readouterr().out)
    assert s["kind"] == "ResourceSlice"


def test_discover_dra_prints_only_the_marked_pools_when_dra_is_bare(
        workdir: Path, host: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    """Bare --dra is the daemon's --dra: the other pools stay device plugin pools, so their
    devices are in no slice (a DeviceClass written for them would match nothing)."""
    assert main(run(workdir, host, "--node-name", "worker-1", flag="--dra",
                    config=marked("intel_sriov_dpdk"))) == 0
    captured = capsys.readouterr()
    assert pools_of(captured.out) == {"intel.com/intel_sriov_dpdk"}
    assert captured.err == ""


def test_discover_dra_says_nothing_is_published_when_no_pool_is_marked(
        workdir: Path, host: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(run(workdir, host, "--node-name", "worker-1", flag="--dra")) == 0
    captured = capsys.readouterr()
    assert pools_of(captured.out) == set()
    assert 'no pool of' in captured.err and 'is marked "dra": true' in captured.err
    assert "--dra=all" in captured.err


def test_discover_dra_says_where_to_look_when_the_dra_pools_have_no_device(
        workdir: Path, host: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    config = {"resourceList": [{"resourceName": "none", "dra": True,
                                "selectors": [{"vendors": ["1234"]}]}]}
    assert main(run(workdir, host, "--node-name", "worker-1", flag="--dra",
                    config=config)) == 0
    captured = capsys.readouterr()
    assert pools_of(captured.out) == set()
    assert "no device joined a DRA pool (intel.com/none)" in captured.err
    assert f"sriovdp discover --config-file {workdir / 'config.json'}" in captured.err


def test_discover_table_says_which_pools_are_marked_for_dra_when_some_are(
        workdir: Path, host: FakeHost, capsys: pytest.CaptureFixture[str]) -> None:
    args = run(workdir, host, config=marked("intel_sriov_dpdk"))
    args.remove("--dra=all")
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert 'Pool intel.com/intel_sriov_dpdk: 4 devices (marked "dra": true: served through ' \
        "DRA with --dra)" in lines
    assert "Pool intel.com/intel_sriov_netdevice: 4 devices" in lines
