"""Where things are, in a source checkout and in an installed wheel: the one place.

Layout (docs/design.md, "Layout"): the repository keeps the top-level folders
``kernels/``, ``dashboard/`` and ``bench/``; ``per_triton/kernels``,
``per_triton/dashboard`` and ``per_triton/bench`` are relative symbolic links to
them. So ``per_triton.kernels``, ``per_triton.dashboard`` and ``per_triton.bench``
are ordinary subpackages for every tool that reads files (``PYTHONPATH=.``, an
editable install, IDEs, type checkers, ruff), and a wheel holds real copies
(setuptools follows the links), committed results included as package data.

Nothing here imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "BENCH_DIR",
    "DASHBOARD_APP",
    "ENV_RESULTS",
    "LOCAL_RESULTS",
    "PACKAGE_DIR",
    "REPO_ROOT",
    "committed_results",
    "default_output_dir",
]

#: The installed (or checked-out) ``per_triton`` package folder.
PACKAGE_DIR = Path(__file__).resolve().parent


def _repo_root() -> Path | None:
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "bench").is_dir():
        return root
    return None


#: The repository root when running from a checkout (or an editable install); else None.
REPO_ROOT: Path | None = _repo_root()
#: The benchmark suites and their helpers (``bench/``, shipped as ``per_triton.bench``).
BENCH_DIR = PACKAGE_DIR / "bench"
#: The dashboard's Streamlit entry script.
DASHBOARD_APP = PACKAGE_DIR / "dashboard" / "app.py"
#: Environment variable naming a results folder to use instead of the committed one.
ENV_RESULTS = "PER_TRITON_RESULTS"
#: Folder, under the working directory, that an installed (non-checkout) bench writes to.
INSTALLED_OUTPUT = "per-triton-results"
#: Folder, inside a results folder, of the user's own runs: where ``per-triton bench`` and
#: ``per-triton train`` write in a checkout (``bench/results/local``, ignored by git), and
#: what the dashboard labels as the user's runs, never as committed ones.
LOCAL_RESULTS = "local"


def committed_results() -> Path | None:
    """The results folder to read: ``$PER_TRITON_RESULTS``, else the committed ``bench/results``.

    From a checkout that is the repository's ``bench/results``; from a wheel, the
    copy shipped as package data (``per_triton/bench/results``). None if absent.
    """
    env = os.environ.get(ENV_RESULTS)
    if env:
        return Path(env)
    base = REPO_ROOT / "bench" if REPO_ROOT is not None else BENCH_DIR
    path = base / "results"
    return path if path.is_dir() else None


def default_output_dir() -> Path:
    """Where ``per-triton bench`` (and ``per-triton train``) write when no ``--out`` is given.

    ``$PER_TRITON_RESULTS`` if set; ``bench/results/local`` of a checkout (ignored by
    git, so a run leaves the checkout clean; the dashboard shows it as the user's own);
    else ``./per-triton-results`` (an installed package is not written into).
    """
    env = os.environ.get(ENV_RESULTS)
    if env:
        return Path(env)
    if REPO_ROOT is not None:
        return REPO_ROOT / "bench" / "results" / LOCAL_RESULTS
    return Path.cwd() / INSTALLED_OUTPUT
