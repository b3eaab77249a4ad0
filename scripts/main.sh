#!/usr/bin/env bash
# The README's main command: set up the project-local .venv/ (scripts/setup.sh),
# run the benchmarks, then open the dashboard showing the committed results plus
# the run just made. Nothing is installed outside .venv/.
#
#   bash scripts/main.sh            # GPU if present: full suites; else a quick CPU run
#   PORT=8600 bash scripts/main.sh  # another port for the dashboard
#   NO_DASHBOARD=1 bash scripts/main.sh   # bench only (e.g. over ssh)
set -euo pipefail
cd "$(dirname "$0")/.."
# Only what the main job needs: the dev extra adds test tools and the zoo stack
# (with a torchvision that only the tests can import), which a user's env need not get.
bash scripts/setup.sh bench,dashboard,train
venv="$(cd "${PER_TRITON_VENV:-.venv}" && pwd)"
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"  # this process and its children only
# the dashboard's port is checked before the benchmark, so a taken port costs no run
if [ -z "${NO_DASHBOARD:-}" ] && ! "$venv/bin/python" - "${PORT:-8501}" <<'PY'
import sys
from per_triton.cli._args import port
from per_triton.cli.dashboard import listen_problem
try:
    number = port(sys.argv[1])
except Exception as err:  # argparse's ArgumentTypeError: the message names the rule
    sys.exit(f"[main] PORT={sys.argv[1]!r}: {err}; set PORT=8600, say (or NO_DASHBOARD=1)")
problem = listen_problem("127.0.0.1", number)
if problem:
    sys.exit(f"[main] PORT={number}: {problem}; "
             "set PORT=8600, say, or NO_DASHBOARD=1 to skip the dashboard")
PY
then
    exit 2
fi
# the user's own runs: bench/results/local/ is git-ignored (the checkout stays clean) and
# the dashboard lists its files as "your run", beside the committed results
mkdir -p bench/results/local
run_file="bench/results/local/run-$(date -u +%Y%m%dT%H%M%SZ).json"
status=0
if "$venv/bin/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "[main] CUDA found: kernel and training suites on the GPU"
    per-triton bench --suite all --device cuda --out "$run_file" || status=$?
else
    echo "[main] no CUDA: quick training suite on the CPU (a smoke run; timings are not costs)"
    per-triton bench --suite training --quick --device cpu --out "$run_file" || status=$?
fi
if [ ! -s "$run_file" ]; then
    echo "[main] the benchmark wrote no result (exit $status)" >&2
    exit "${status/#0/1}"
fi
if [ "$status" != 0 ]; then
    echo "[main] some benchmarks failed (exit $status); showing the ones that finished"
fi
if [ -n "${NO_DASHBOARD:-}" ]; then
    echo "[main] results in $run_file"
    exit 0
fi
echo "[main] dashboard on http://127.0.0.1:${PORT:-8501} (Ctrl-C stops it)"
exec per-triton dashboard --port "${PORT:-8501}" --extra "$run_file"
