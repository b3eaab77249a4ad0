#!/usr/bin/env bash
# Compile matrix (CI): every kernel config for sm_80, sm_86, sm_89, sm_90a, sm_100a and
# sm_120 on the newest Triton (the installed one) and the minimum one (3.6, installed
# once into .cache/, git-ignored), checked against the per-architecture bounds of
# bench/compile_matrix.py; exits non-zero on a violation. No GPU needed.
# Writes build/compile-matrix/matrix.{json,md}; with --update, the committed records
# bench/results/sass/matrix.json and the table of docs/compatibility.md instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
MIN_TRITON="3.6.0"
SIDE=".cache/triton-${MIN_TRITON}"
if [ ! -f "${SIDE}/triton/__init__.py" ]; then
    "$PY" -m pip install --quiet --no-deps --target "${SIDE}" "triton==${MIN_TRITON}"
fi
OUT="build/compile-matrix"
TABLE=(--markdown "${OUT}/matrix.md")
if [ "${1:-}" = "--update" ]; then
    OUT="bench/results/sass"
    TABLE=(--docs docs/compatibility.md)
fi
mkdir -p "${OUT}"
env -u TRITON_INTERPRET "$PY" bench/compile_matrix.py --arch all --triton-path "${SIDE}" \
    --json "${OUT}/matrix.json" "${TABLE[@]}"
