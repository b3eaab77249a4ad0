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
case ",$extras," in
*,dev,* | *,zoo,*)
    # timm needs torchvision. PyPI's torchvision pins one torch release and would
    # replace a CPU build by a multi-GB CUDA one, so take the release paired with the
    # installed torch (torch 2.N.p <-> torchvision 0.(N+15).p) without its
    # dependencies. On the CPU wheel its C ops do not load; the zoo tests define the
    # two op schemas torchvision's import needs (tests/zoo.py).
    tv=$("$PY" -c "import torch; v = torch.__version__.split('+')[0].split('.'); \
print(f'0.{int(v[1]) + 15}.{v[2]}' if v[0] == '2' else '')")
    if [ -n "$tv" ] && ! "$PY" -c "import importlib.metadata as m; m.version('torchvision')" 2>/dev/null; then
        echo "[setup] installing torchvision==$tv (no dependencies) for timm"
        "$PY" -m pip install -q --no-deps "torchvision==$tv" || echo "[setup] torchvision==$tv not installed: the timm tests will skip"
    fi
    ;;
esac
echo "[setup] installing per-triton[$extras]"
"$PY" -m pip install -q -e ".[$extras]"
