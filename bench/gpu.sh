#!/usr/bin/env bash
# One call on a lent GPU: install, run the gpu tests and the kernel tests on the GPU,
# the kernel benchmark (paper shape, then sweeps) and the training benchmark, and
# write everything to $OUT (8 files at most). The whole run stops before DEADLINE
# seconds (default 570, under the device tool's 10-minute limit); each stage has its
# own limit on top (override through the environment), and STAGES picks stages, so
# a session can also split the work over several calls.
#
#   OUT=/tmp/out bash bench/gpu.sh
#   OUT=/tmp/out STAGES="paper sweep" bash bench/gpu.sh
#   OUT=/tmp/out STAGES="report" bash bench/gpu.sh      # static sm_90a SASS report only
#
# The lent machine gets a copy of the tree without .git: pass the commit as
# PER_TRITON_COMMIT=$(git rev-parse HEAD) so every result file records it.
#
# Files written to $OUT:
#   env.txt              GPU, driver, torch / triton / CUDA versions, commit
#   run.log              output of every stage (tests, benchmarks), timestamped
#   gpu-tests.xml        JUnit XML of the test stage
#   kernel-paper.json    kernel suite, b=128 d=196608 s=256, all modes and providers
#   kernel-sweep.json    kernel suite, sweeps of d and s
#   kernel-partial.jsonl every kernel result as it finished (kept if a stage is cut off)
#   training.json        training suite (per-triton bench --suite training)
#   summary.txt          the targets at the paper shape: ratios, memory, time over floor
#                        (fused and exact), and per / per_exact over vanilla in training
#   sass-report.json     stage "report" (not in the default stages: it needs no GPU and
#                        gives the same result on any machine with the same Triton)
#
# Copy the JSON files to bench/results/<gpu-slug>/ (bench/common.py machine_folder)
# and commit them; their machine_info holds GPU name, versions, commit and command.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

STAGES="${STAGES:-tests paper sweep train}"
DEADLINE="${DEADLINE:-570}"
T_TESTS="${T_TESTS:-210}"
T_PAPER="${T_PAPER:-170}"
T_SWEEP="${T_SWEEP:-100}"
T_TRAIN="${T_TRAIN:-300}"
PY="${PYTHON:-python3}"
LOG="$OUT/run.log"
export PER_TRITON_BENCH_PARTIAL="$OUT/kernel-partial.jsonl"

log() { echo "[gpu.sh $(date -u +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$LOG"; }
want() { [[ " $STAGES " == *" $1 "* ]]; }
# limit STAGE_SECONDS: the stage's limit, cut to what is left before DEADLINE.
limit() {
    local left=$((DEADLINE - SECONDS - 10))
    ((left < $1)) && echo "$left" || echo "$1"
}
# run LIMIT CMD...: run with SIGINT at the limit, SIGKILL 10 s later; log the exit.
run() {
    local t=$1
    shift
    if ((t < 20)); then
        log "skipped (no time left): $*"
        return 0
    fi
    log "run (limit ${t}s): $*"
    timeout -s INT -k 10 "$t" "$@" >>"$LOG" 2>&1
    log "exit $?"
}

# --- install (no network: no dependencies, no build isolation) -------------------
if ! "$PY" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/env.txt" 2>&1; then
    echo "pip install failed (see above): nothing else can run" >>"$OUT/env.txt"
    cat "$OUT/env.txt"
    exit 1
fi
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
    echo "commit ${PER_TRITON_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
    echo "stages: $STAGES"
} >>"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# --- tests on the GPU: the kernel files (gpu-marked and the rest, now on CUDA) ------
if want tests; then
    run "$(limit "$T_TESTS")" "$PY" -m pytest -q -p no:cacheprovider -rfEs \
        --junitxml="$OUT/gpu-tests.xml" tests/test_gpu_kernels.py tests/test_kernels_fused.py \
        tests/test_philox_stream.py tests/test_exact.py
    # gpu-marked tests of the other parts of the project
    others=$(grep -l "mark.gpu" tests/test_*.py 2>/dev/null | grep -v "test_gpu_kernels.py" |
        tr '\n' ' ')
    if [ -n "$others" ]; then
        # shellcheck disable=SC2086
        run "$(limit 90)" "$PY" -m pytest -q -p no:cacheprovider -rfEs -m gpu $others
    fi
    grep -E " (passed|failed|error)" "$LOG" | tail -n 2
fi

# --- static SASS report (compiles only; about a minute) ------------------------------
if want report; then
    run "$(limit 120)" env -u TRITON_INTERPRET "$PY" bench/sass_report.py \
        --json "$OUT/sass-report.json"
fi

# --- kernel benchmark: the paper shape first, then the sweeps -----------------------
if want paper; then
    run "$(limit "$T_PAPER")" "$PY" -m per_triton.cli bench --suite kernel --device cuda \
        -k "d196608-s256" --out "$OUT/kernel-paper.json"
fi
if want sweep; then
    run "$(limit "$T_SWEEP")" "$PY" -m per_triton.cli bench --suite kernel --device cuda \
        -k "not d196608-s256" --out "$OUT/kernel-sweep.json"
fi

# --- training benchmark --------------------------------------------------------------
if want train; then
    run "$(limit "$T_TRAIN")" "$PY" -m per_triton.cli bench --suite training --device cuda \
        --out "$OUT/training.json"
fi

# --- summary of the targets (from the result file, else from the partial lines) -----
"$PY" - "$OUT/kernel-paper.json" "$OUT/kernel-partial.jsonl" >"$OUT/summary.txt" 2>&1 <<'EOF'
import json
import sys
from pathlib import Path

paper, partial = Path(sys.argv[1]), Path(sys.argv[2])
rows = {}
if paper.is_file():
    data = json.loads(paper.read_text())
    mi = data.get("machine_info", {})
    print(f"gpu {mi.get('gpu')} torch {mi.get('torch')} triton {mi.get('triton')} "
          f"cuda {mi.get('cuda')} commit {mi.get('commit')}")
    infos = [b["extra_info"] for b in data["benchmarks"]]
elif partial.is_file():
    print(f"{paper.name} missing: from {partial.name} (results of a cut-off run)")
    infos = [json.loads(line) for line in partial.read_text().splitlines() if line.strip()]
else:
    sys.exit("no kernel results")
for e in infos:
    if (e["b"], e["d"], e["s"]) == (128, 196608, 256):
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
        if e and e.get("peak_mem_bytes") and f.get("peak_mem_bytes") is not None:
            line += f" | mem {f['peak_mem_bytes'] / e['peak_mem_bytes'] * 100:.3f}% of eager"
        line += (f" | floor {f['floor_s'] * 1e3:.3f} ms (draw {f['draw_s'] * 1e3:.3f})"
                 f" over {f['over_floor']:.2f}x")
        print(line)
print("target: exact (estimator='exact') within 1.5x of its memory floor")
for dtype in ("float32", "bf16"):
    for mode in ("forward", "backward", "full"):
        x = rows.get((dtype, mode, "exact"))
        if x:
            print(f"{dtype:8} {mode:8} exact {x['median_s'] * 1e3:8.3f} ms | floor "
                  f"{x['floor_s'] * 1e3:.3f} ms over {x['over_floor']:.2f}x")
EOF
# training targets: per and per_exact over vanilla (cnn11 b=128: per_exact <= 1.03x)
"$PY" - "$OUT/training.json" >>"$OUT/summary.txt" 2>&1 <<'EOF'
import json
import sys
from pathlib import Path

path = Path(sys.argv[1])
if not path.is_file():
    sys.exit(f"{path.name} missing: no training figures")
times = {}
for b in json.loads(path.read_text())["benchmarks"]:
    e = b["extra_info"]
    times.setdefault((e["model"], e["dtype"]), {})[e["method"]] = e["median_s"]
print("training: ratio to vanilla (target: cnn11 per_exact <= 1.03x)")
for (model, dtype), t in times.items():
    if "vanilla" in t:
        ratios = " ".join(f"{m} {t[m] / t['vanilla']:.3f}x" for m in ("per", "per_exact") if m in t)
        print(f"{model:10} {dtype:14} {ratios}")
EOF
cat "$OUT/summary.txt" | tee -a "$LOG"
log "done; files: $(ls "$OUT" | tr '\n' ' ')"
