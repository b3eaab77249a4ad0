#!/usr/bin/env bash
# Installs per-triton and its extras into the current Python.
# torch: if none is importable, take the CPU build 2.13.0 first, so that the
# "torch>=2.6" requirement is already met and pip never pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "[setup] installing torch==2.13.0 (CPU build)"
    "$PY" -m pip install -q torch==2.13.0
fi
echo "[setup] installing per-triton[$extras]"
"$PY" -m pip install -q -e ".[$extras]"
