#!/usr/bin/env bash
# The README's test command: sets up the project-local .venv/ (CPU torch, the
# project with the dev extra; scripts/setup.sh), then lint, the docs build, the
# wheel check and the whole test suite, all with .venv's Python. Nothing is
# installed into the Python that runs this script, and nothing system-wide:
# the dashboard's browser test needs Debian's Chromium, which `.ci/run` installs
# (scripts/install_browser.sh); without it this command stops before the tests.
#
#   bash scripts/test.sh                  # everything
#   bash scripts/test.sh tests/test_x.py  # arguments go to pytest
#   PER_TRITON_NO_BROWSER=1 bash scripts/test.sh   # no Chromium: deselect the browser
#                                                  # test, said loudly, not a pass
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
venv="$(cd "${PER_TRITON_VENV:-.venv}" && pwd)"
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"  # this process and its children only
PY="$venv/bin/python"
marker=()
if [ ! -x /usr/bin/chromium ]; then
    if [ -z "${PER_TRITON_NO_BROWSER:-}" ]; then
        echo "[test] /usr/bin/chromium is missing: the dashboard's browser test needs it." >&2
        echo "[test] install it with 'bash scripts/install_browser.sh' (apt-get install chromium)," >&2
        echo "[test] or set PER_TRITON_NO_BROWSER=1 to run everything else." >&2
        exit 1
    fi
    echo "[test] ************************************************************"
    echo "[test] PER_TRITON_NO_BROWSER=1: the browser test is NOT run (no Chromium)"
    echo "[test] ************************************************************"
    marker=(-m "not browser")
fi
echo "[test] ruff"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
echo "[test] compile matrix: every GPU arch on Triton 3.6 and the installed one"; PYTHON="$PY" bash scripts/compile_matrix.sh
echo "[test] docs: mkdocs build --strict"
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --site-dir "$site"  # no --quiet: it hides the warnings strict counts
echo "[test] wheel: build, install in a fresh venv, run the CLI and imports"
PYTHON="$PY" bash scripts/wheel_smoke.sh
export TRITON_INTERPRET=1
mkdir -p test-artifacts
# pytest's own script, not "python -m pytest": -m puts the checkout root on sys.path, where
# the top-level kernels/ folder hides the PyPI package "kernels" that transformers imports
# (pyproject's --import-mode=importlib keeps pytest from adding it too); per_triton comes
# from the editable install
"$venv/bin/pytest" -n 2 --timeout 900 "${marker[@]}" "$@"
