"""Checks of a parsed config against the daemon's settings (model.config.deployment): file
names two pools would share, prefixes CDI cannot use, socket paths too long."""

from __future__ import annotations

import json
from pathlib import PurePath

from sriovdp.model.config import Config, ResourceConfig, parse_config
from sriovdp.model.config.deployment import (
    cdi_problems,
    deployment_problems,
    file_name_problems,
    socket_problems,
)


def _config(*resources: dict[str, object]) -> Config:
    return parse_config(json.dumps({"resourceList": [
        {"selectors": [{}], **r} for r in resources]}))


def test_file_names_clash_when_prefix_and_name_share_a_dash_form() -> None:
    # parse_config already refuses this pair (their POSIX env names collide too)
    config = Config(resources=(ResourceConfig(name="x-y"),
                               ResourceConfig(name="y", prefix="intel.com-x")))
    [problem] = file_name_problems(config, "intel.com", use_cdi=False)
    assert problem.path == "resourceList[1].resourceName"
    assert "with resourceList[0]" in problem.message


def test_cdi_prefix_is_refused_when_it_cannot_be_a_cdi_vendor() -> None:
    config = _config({"resourceName": "net", "resourcePrefix": "1x.com"})
    [problem] = cdi_problems(config, "intel.com")
    assert problem.path == "resourceList[0].resourcePrefix"
    assert problem.message.startswith("unusable with --use-cdi")


def test_socket_path_problem_names_the_resource_when_the_name_is_the_cause() -> None:
    config = _config({"resourceName": "n" * 63, "resourcePrefix": "example.com"})
    directory = PurePath("/var/lib/kubelet/device-plugins")
    [problem] = socket_problems(config, "intel.com", directory)
    assert problem.path == "resourceList[0].resourceName"
    assert "a unix socket path holds at most 107" in problem.message


def test_socket_path_problem_names_the_directory_when_no_socket_could_fit() -> None:
    config = _config({"resourceName": "a"}, {"resourceName": "b"})
    directory = PurePath("/" + "d" * 100)
    [problem] = socket_problems(config, "intel.com", directory)
    assert problem.path == ""
    assert f"the socket directory '{directory}' is 101 bytes long" in problem.message
    assert "--device-plugin-dir" in problem.message


def test_deployment_problems_refuse_a_config_when_it_has_no_resources() -> None:
    config = parse_config('{"resourceList": []}')
    assert [str(p) for p in deployment_problems(config, "intel.com")] == [
        "resourceList: no resources configured"]


def test_cdi_prefix_is_accepted_when_only_the_go_annotation_key_would_be_too_long() -> None:
    # Allocate's annotation key is per pool and falls back to a hashed name when
    # "<prefix>_<name>" breaks the annotation-name rule: a long prefix is usable with CDI
    prefix = "a" * 50 + ".example.com"
    config = _config({"resourceName": "net", "resourcePrefix": prefix})
    assert cdi_problems(config, "intel.com") == []


def test_cdi_prefix_is_refused_when_the_spec_file_name_would_be_too_long() -> None:
    prefix = ".".join(["a" * 60] * 4)  # 243 characters: a valid prefix
    config = _config({"resourceName": "net", "resourcePrefix": prefix})
    [problem] = cdi_problems(config, "intel.com")
    assert problem.path == "resourceList[0].resourcePrefix"
    assert "255" in problem.message
