"""Building a conformance peer: a Go module under ``tests/conformance/`` built with ``go build``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["CONFORMANCE_SOURCE", "go_build", "why_no_go_peer"]

#: Where the peers' Go modules live (in the source tree, not in the installed package).
CONFORMANCE_SOURCE = Path(__file__).resolve().parents[3] / "tests" / "conformance"


def why_no_go_peer(source: Path, suite: str) -> str | None:
    """Why the peer in ``source`` cannot be built here, or None when it can."""
    if shutil.which("go") is None:
        return f"go is not on PATH: the {suite} conformance suite needs Go to build its peer"
    if not (source / "go.mod").is_file():
        return f"the {suite} peer's source is not at {source}"
    return None


def go_build(source: Path, out_dir: Path, name: str) -> Path:
    """``go build`` the module in ``source`` into ``out_dir/name`` (Go's build cache makes a
    rebuild cheap); modules come from the Go module proxy. Raises with go's output when it
    fails."""
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / name
    proc = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=source,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"go build of the {name} peer failed:\n{proc.stderr}")
    return binary
