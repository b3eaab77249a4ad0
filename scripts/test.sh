#!/usr/bin/env bash
# The README's test command: sets up a fresh machine (CPU torch, the project,
# Debian's Chromium for the browser test) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/install_browser.sh
echo "[test] ruff"
python3 -m ruff check .
python3 -m ruff format --check .
echo "[test] wheel: build, install in a fresh venv, run the CLI and imports"
bash scripts/wheel_smoke.sh
export TRITON_INTERPRET=1
mkdir -p test-artifacts
python3 -m pytest -n 2 --timeout 900 "$@"
