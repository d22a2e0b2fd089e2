"""images/build.sh and the Dockerfile's builder stage, checked offline (issue 9 item 2).

No registry and no emulation here: build.sh --dry-run prints the buildx command, and the
Dockerfile's per-architecture source-build list is run with sh for each TARGETARCH.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "images" / "build.sh"
DOCKERFILE = REPO / "images" / "Dockerfile"
ARCHES = ("amd64", "arm64", "ppc64le", "s390x")
# PyPI, checked with `images/build.sh --check-wheels` for the pins in pyproject.toml:
# grpcio 1.85.1 has no ppc64le/s390x wheels, PyYAML 6.0.3 no ppc64le wheel.
SOURCE_BUILDS = {"amd64": "", "arm64": "", "ppc64le": "grpcio,pyyaml", "s390x": "grpcio"}


def build(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER": "docker"}
    return subprocess.run(["sh", str(BUILD), *args], capture_output=True, text=True, env=env,
                          timeout=30, check=False)


def test_build_pushes_all_four_architectures_when_asked_to_push() -> None:
    proc = build("--dry-run", "--push", "registry.example.com/sriovdp:0.1.0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "docker buildx build --platform linux/amd64,linux/arm64,linux/ppc64le,linux/s390x "
        f"-f {REPO}/images/Dockerfile -t registry.example.com/sriovdp:0.1.0 --push {REPO}"]


def test_build_loads_one_platform_when_asked_to_load() -> None:
    proc = build("--dry-run", "--load", "--platforms", "linux/arm64", "sriovdp:dev")
    assert proc.returncode == 0, proc.stderr
    assert "--platform linux/arm64 " in proc.stdout and proc.stdout.rstrip().endswith(
        f"--load {REPO}")


@pytest.mark.parametrize(("args", "message"), [
    (["--dry-run"], "an image name is required"),
    (["--dry-run", "--load", "x:1"], "--load takes one platform"),
    (["--dry-run", "--platforms", "linux/riscv64", "x:1"], 'unsupported platform "linux/riscv64"'),
    (["--dry-run", "--bogus", "x:1"], 'unknown option "--bogus"'),
    (["--dry-run", "a:1", "b:1"], "one image name only"),
])
def test_build_refuses_bad_usage(args: list[str], message: str) -> None:
    proc = build(*args)
    assert proc.returncode == 2 and message in proc.stderr
    assert proc.stdout == ""


def test_wheel_check_asks_for_every_pin_on_every_platform() -> None:
    proc = build("--dry-run", "--check-wheels")
    assert proc.returncode == 0, proc.stderr
    pins = re.findall(r'^\s+"([^"]+==[^"]+)",?$',
                      (REPO / "pyproject.toml").read_text().split("[project.optional")[0], re.M)
    assert len(pins) >= 7
    lines = proc.stdout.splitlines()
    assert len(lines) == len(pins) * 4
    for arch, tag in (("x86_64", "amd64"), ("aarch64", "arm64"), ("ppc64le", "ppc64le"),
                      ("s390x", "s390x")):
        mine = [ln for ln in lines if f"--platform manylinux2014_{arch} " in ln]
        assert sorted(ln.rsplit(" ", 1)[1] for ln in mine) == sorted(pins), tag
        assert all("--only-binary=:all:" in ln for ln in mine)


def _source_build_step() -> str:
    text = DOCKERFILE.read_text()
    match = re.search(r'^RUN (case "\$\{TARGETARCH\}" in .*?esac) > /tmp/source-builds', text,
                      re.M | re.S)
    assert match, "the builder stage lists source builds per TARGETARCH"
    return match.group(1).replace("\\\n", "\n")


@pytest.mark.parametrize("arch", ARCHES)
def test_builder_compiles_only_what_has_no_wheel_when_building_for(arch: str) -> None:
    proc = subprocess.run(["sh", "-c", _source_build_step()], env={"TARGETARCH": arch},
                          capture_output=True, text=True, check=True)
    assert proc.stdout == SOURCE_BUILDS[arch]


def test_builder_installs_a_compiler_and_passes_the_source_builds_to_pip() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG TARGETARCH" in text
    assert "apt-get install -y --no-install-recommends build-essential" in text
    builder, runtime = text.split("\nFROM ${PYTHON_IMAGE}\n")
    assert "build-essential" not in runtime, "no compiler in the runtime image"
    assert re.search(r"install --only-binary=:all: \\\n\s+\$\{SOURCE:\+--no-binary=\"\$SOURCE\"\}",
                     builder)


def test_build_script_is_posix_sh_and_executable() -> None:
    assert os.access(BUILD, os.X_OK)
    assert BUILD.read_text().startswith("#!/bin/sh\n")


def test_build_names_the_missing_buildx_plugin_when_docker_has_none(tmp_path: Path) -> None:
    # a docker without the plugin answers "unknown flag: --platform" to `docker buildx build`
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\necho "docker: unknown command: docker $1" >&2\nexit 1\n')
    docker.chmod(0o755)
    proc = subprocess.run(["sh", str(BUILD), "--push", "x:1"], capture_output=True, text=True,
                          env={**os.environ, "DOCKER": str(docker)}, timeout=30, check=False)
    assert proc.returncode == 2 and "buildx plugin" in proc.stderr, proc.stderr
    assert "unknown flag" not in proc.stderr


def test_build_help_says_what_happens_without_push_or_load() -> None:
    proc = build("--help")
    assert proc.returncode == 0 and "with neither, the image is only built" in proc.stdout
