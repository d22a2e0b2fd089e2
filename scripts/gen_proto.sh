#!/usr/bin/env bash
# Regenerate the kubelet API bindings (*_pb2.py, *_pb2.pyi, *_pb2_grpc.py) in
# src/sriovdp/kubelet/api/ from the .proto files next to them.
#
# Usage: scripts/gen_proto.sh            (uses $PYTHON, else .venv/bin/python, else python3)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then
    python=.venv/bin/python
  else
    python=python3
  fi
fi

"$python" -m grpc_tools.protoc -Isrc --python_out=src --pyi_out=src --grpc_python_out=src \
  src/sriovdp/kubelet/api/*.proto
