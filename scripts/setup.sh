#!/usr/bin/env bash
# Sets up the project-local virtual environment .venv/ (git-ignored) with torch,
# per-triton (editable) and the extras asked for. It never installs into the
# Python that runs it: everything goes through .venv/bin/python.
#
#   bash scripts/setup.sh [EXTRAS]       # default: dev (tests, lint, docs, zoo)
#   PYTHON=python3.12 bash scripts/setup.sh   # the interpreter that makes .venv
#   PER_TRITON_VENV=/path bash scripts/setup.sh   # another folder than .venv
#   TORCH_SPEC="torch" bash scripts/setup.sh   # e.g. a CUDA build on a GPU machine
#
# torch: a .venv without torch gets TORCH_SPEC, by default torch==2.13.0 when no
# NVIDIA GPU is seen (the CPU build: pip takes the local wheel where a machine has
# one; elsewhere add e.g. PIP_INDEX_URL=https://download.pytorch.org/whl/cpu), or
# plain "torch" (a CUDA build, which brings Triton) when nvidia-smi finds a GPU.
# Installing torch first means the project's "torch>=2.11" is already met and pip
# never swaps it.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
venv="${PER_TRITON_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating the virtual environment $venv (from ${PYTHON:-python3})"
    "${PYTHON:-python3}" -m venv "$venv"
fi
PY="$venv/bin/python"
if [ -z "${TORCH_SPEC:-}" ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        TORCH_SPEC="torch"
    else
        TORCH_SPEC="torch==2.13.0"
    fi
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "[setup] installing $TORCH_SPEC into $venv"
    "$PY" -m pip install -q "$TORCH_SPEC"
fi
# PEP 639 metadata (license = "MIT") needs setuptools >= 77 to build the wheel
"$PY" -m pip install -q "setuptools>=77"
case ",$extras," in
*,dev,* | *,zoo,*)
    # timm needs torchvision. PyPI's torchvision pins one torch release and would
    # replace a CPU build by a multi-GB CUDA one (and timm asks for torchvision), so
    # take the release paired with the installed torch (torch 2.N.p <-> torchvision
    # 0.(N+15).p) and timm, both without dependencies, into .venv only (the zoo
    # extra lists timm's other requirements). On the CPU wheel torchvision's C ops do
    # not load; the zoo tests define the two op schemas its import needs, inside the
    # test process (tests/zoo.py).
    tv=$("$PY" -c "import torch; v = torch.__version__.split('+')[0].split('.'); \
print(f'0.{int(v[1]) + 15}.{v[2]}' if v[0] == '2' else '')" 2>/dev/null)
    if [ -n "$tv" ] && ! "$PY" -c "import importlib.metadata as m; m.version('torchvision')" 2>/dev/null; then
        echo "[setup] installing torchvision==$tv (no dependencies) for timm"
        "$PY" -m pip install -q --no-deps "torchvision==$tv" || echo "[setup] torchvision==$tv not installed: the timm tests will skip"
    fi
    if ! "$PY" -c "import importlib.metadata as m; m.version('timm')" 2>/dev/null; then
        echo "[setup] installing timm (no dependencies: it would pull PyPI's torchvision)"
        "$PY" -m pip install -q --no-deps "timm>=1.0"
    fi
    ;;
esac
echo "[setup] installing per-triton[$extras] into $venv"
"$PY" -m pip install -q -e ".[$extras]"
