#!/usr/bin/env bash
# One call on a lent GPU: install, run the gpu tests and the kernel tests on the GPU,
# the kernel benchmark (paper shape, then sweeps) and the training benchmark, and
# write everything to $OUT (at most 8 files). Budget: under 10 minutes in all; each
# stage has its own time limit (seconds, override through the environment).
#
#   OUT=/tmp/out bash bench/gpu.sh
#
# Files written to $OUT:
#   env.txt             GPU, driver, torch / triton / CUDA versions, commit
#   gpu-tests.log       pytest output: -m gpu over tests/, plus the kernel tests on CUDA
#   gpu-tests.xml       the same as JUnit XML
#   kernel-paper.json   kernel suite, b=128 d=196608 s=256, all modes and providers
#   kernel-sweep.json   kernel suite, sweeps of d and s
#   training.json       training suite (per-triton bench --suite training)
#   bench.log           output of the three benchmark runs
#   summary.txt         the targets at the paper shape: ratios, memory, time over floor
#
# Copy the JSON files to bench/results/<gpu-slug>/ (bench/common.py machine_folder)
# and commit them; their machine_info holds GPU name, versions, commit and command.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"

T_TESTS="${T_TESTS:-170}"
T_PAPER="${T_PAPER:-150}"
T_SWEEP="${T_SWEEP:-120}"
T_TRAIN="${T_TRAIN:-120}"
PY="${PYTHON:-python3}"

log() { echo "[gpu.sh $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/bench.log"; }

# --- install (no network: no dependencies, no build isolation) -------------------
"$PY" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/env.txt" 2>&1 ||
    echo "pip install failed (see above)" >>"$OUT/env.txt"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    "$PY" - <<'EOF'
import sys
import torch
print("python", sys.version.split()[0])
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, "sm", p.multi_processor_count, "cc", f"{p.major}.{p.minor}")
try:
    import triton
    print("triton", triton.__version__)
except ImportError as exc:
    print("triton missing:", exc)
for mod in ("pytest", "pytest_benchmark", "scipy", "numpy"):
    try:
        m = __import__(mod)
        print(mod, getattr(m, "__version__", "?"))
    except ImportError:
        print(mod, "MISSING")
EOF
    echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
} >>"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# --- tests on the GPU ---------------------------------------------------------------
log "tests: -m gpu over tests/, and the kernel tests on CUDA (limit ${T_TESTS}s)"
timeout -s INT -k 15 "$T_TESTS" "$PY" -m pytest -q -p no:cacheprovider \
    -m "gpu or not gpu" tests/test_gpu_kernels.py tests/test_kernels_fused.py \
    tests/test_philox_stream.py --junitxml="$OUT/gpu-tests.xml" >"$OUT/gpu-tests.log" 2>&1
echo "kernel tests exit $?" >>"$OUT/gpu-tests.log"
others=$(grep -l "mark.gpu\|pytestmark = pytest.mark.gpu" tests/test_*.py 2>/dev/null |
    grep -v "test_gpu_kernels.py" | tr '\n' ' ')
if [ -n "$others" ]; then
    timeout -s INT -k 15 60 "$PY" -m pytest -q -p no:cacheprovider -m gpu $others \
        >>"$OUT/gpu-tests.log" 2>&1
    echo "other gpu tests exit $?" >>"$OUT/gpu-tests.log"
fi
tail -n 25 "$OUT/gpu-tests.log"

# --- kernel benchmark: the paper shape first, then the sweeps ---------------------
log "kernel benchmark, paper shape (limit ${T_PAPER}s)"
timeout -s INT -k 20 "$T_PAPER" per-triton bench --suite kernel --device cuda \
    -k "d196608-s256" --out "$OUT/kernel-paper.json" >>"$OUT/bench.log" 2>&1
log "exit $?"
log "kernel benchmark, sweeps (limit ${T_SWEEP}s)"
timeout -s INT -k 20 "$T_SWEEP" per-triton bench --suite kernel --device cuda \
    -k "not d196608-s256" --out "$OUT/kernel-sweep.json" >>"$OUT/bench.log" 2>&1
log "exit $?"

# --- training benchmark --------------------------------------------------------------
log "training benchmark (limit ${T_TRAIN}s)"
timeout -s INT -k 20 "$T_TRAIN" per-triton bench --suite training --device cuda \
    --out "$OUT/training.json" >>"$OUT/bench.log" 2>&1
log "exit $?"

# --- summary of the targets ---------------------------------------------------------
"$PY" - "$OUT/kernel-paper.json" >"$OUT/summary.txt" 2>&1 <<'EOF'
import json
import sys
from pathlib import Path

path = Path(sys.argv[1])
if not path.is_file():
    sys.exit(f"no {path.name}: the paper-shape kernel benchmark did not finish")
data = json.loads(path.read_text())
mi = data.get("machine_info", {})
print(f"gpu {mi.get('gpu')} torch {mi.get('torch')} triton {mi.get('triton')} cuda {mi.get('cuda')}")
rows = {}
for b in data["benchmarks"]:
    e = b["extra_info"]
    rows[(e["dtype"], e["mode"], e["provider"])] = e
print("targets (float32 full): fused >= 3x eager, >= 2x compile, mem < 1% eager, <= 2x floor")
for dtype in ("float32", "bf16"):
    for mode in ("forward", "backward", "full"):
        f = rows.get((dtype, mode, "fused"))
        if not f:
            continue
        line = f"{dtype:8} {mode:8} fused {f['median_s'] * 1e3:8.3f} ms"
        for other in ("eager", "eager_tf32", "compile"):
            o = rows.get((dtype, mode, other))
            if o:
                line += f" | {other} {o['median_s'] * 1e3:8.3f} ms ({o['median_s'] / f['median_s']:.2f}x)"
        e = rows.get((dtype, mode, "eager"))
        if e and e.get("peak_mem_bytes"):
            line += f" | mem {f['peak_mem_bytes'] / e['peak_mem_bytes'] * 100:.3f}% of eager"
        line += f" | floor {f['floor_s'] * 1e3:.3f} ms (draw {f['draw_s'] * 1e3:.3f}) over {f['over_floor']:.2f}x"
        print(line)
EOF
cat "$OUT/summary.txt"
log "done; files: $(ls "$OUT" | tr '\n' ' ')"
