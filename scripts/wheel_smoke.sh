#!/usr/bin/env bash
# Wheel smoke test (CI, from scripts/test.sh): build the wheel, install it in a
# fresh virtualenv, and run the CLI and the imports from outside the checkout.
#
# The fresh venv gets the wheel only (pip --no-deps --no-index); its dependencies
# (torch, numpy, streamlit, pytest-benchmark, ...) are the ones already installed
# in the current Python, made visible through a .pth file, so nothing is
# downloaded. The checkout is never on sys.path: everything runs from a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
repo=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "[wheel] building"
# the build needs setuptools >= 77 (PEP 639 license metadata): reuse the current
# Python's when it has one that new (scripts/setup.sh installs it), else isolate
if "$PY" -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" 2>/dev/null; then
    isolation=--no-build-isolation
else
    isolation=
fi
"$PY" -m pip wheel -q --no-deps $isolation -w "$tmp/dist" "$repo" >"$tmp/build.log" 2>&1 \
    || { cat "$tmp/build.log"; exit 1; }
wheel=$(ls "$tmp"/dist/per_triton-*.whl)
echo "[wheel] $(basename "$wheel"): installing in a fresh venv"
"$PY" -m venv "$tmp/venv"
venv_site=$("$tmp/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib']); print(sysconfig.get_paths()['platlib'])" \
    | sort -u >"$venv_site/_per_triton_smoke_deps.pth"
"$tmp/venv/bin/python" -m pip install -q --no-deps --no-index "$wheel"

cd "$tmp"  # not the checkout
export PATH="$tmp/venv/bin:$PATH" TRITON_INTERPRET=1 PER_TRITON_CACHE_DIR="$tmp/cache"
echo "[wheel] imports"
# stderr shown on failure only: importing the dashboard outside Streamlit logs warnings
if python - 2>"$tmp/imports.err" <<'EOF'
import pathlib, sys
import per_triton, per_triton.kernels.per_fused, per_triton.dashboard.loaders, per_triton.bench.common
from per_triton import paths
venv = pathlib.Path(sys.prefix)
for mod in (per_triton, per_triton.kernels.per_fused, per_triton.dashboard.loaders, per_triton.bench.common):
    assert venv in pathlib.Path(mod.__file__).resolve().parents, (mod.__name__, mod.__file__)
assert paths.REPO_ROOT is None, paths.REPO_ROOT
results = paths.committed_results()
assert results is not None and any(results.rglob("*.json")), results
from per_triton.dashboard import loaders  # the shipped results are the ones it reads
shipped = loaders.load_results(results)
assert shipped.runs and not shipped.problems, [str(p) for p in shipped.problems]
assert loaders.load_closeness(results).records, results
import torch
h = torch.randn(16, 8)
loss = per_triton.per_loss(h, num_slices=32, seed=0)
assert loss.ndim == 0 and torch.isfinite(loss)
from per_triton.core import normals, normals_c  # the C sampler's source ships in the wheel
assert normals_c.SOURCE.is_file() and normals.backend() == "c", normals_c.SOURCE
print(f"[wheel] imports from {venv}; committed results at {results}")
EOF
then :; else cat "$tmp/imports.err"; exit 1; fi
echo "[wheel] CLI"
per-triton --help >/dev/null
version=$(python -c "import per_triton; print(per_triton.__version__)")
test "$(per-triton --version)" = "per-triton $version"
per-triton train --help >/dev/null
per-triton dashboard --help >/dev/null
if per-triton dashboard --port 99999 2>"$tmp/err.txt"; then
    echo "[wheel] dashboard --port 99999 should fail"; exit 1
fi
grep -q -- "--port" "$tmp/err.txt"
per-triton bench --suite training --quick --device cpu -k "vanilla and float32" --out "$tmp/out" \
    >"$tmp/bench.log" 2>&1 || { cat "$tmp/bench.log"; exit 1; }
ls "$tmp"/out/cpu/training-quick-*.json >/dev/null
per-triton train --tiny --methods vanilla --seeds 0 --out "$tmp/train" >"$tmp/train.log" 2>&1 \
    || { cat "$tmp/train.log"; exit 1; }
test -s "$tmp/train/vanilla.jsonl"
echo "[wheel] ok: the installed wheel imports, benchmarks and trains without the checkout"
