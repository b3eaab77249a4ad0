"""What every page needs: the app's arguments and the results they point to.

The app takes ``--results DIR`` and repeatable ``--extra FILE`` after ``--`` on the
``streamlit run`` line (``per-triton dashboard`` writes them). Where the app is not
started that way (AppTest), ``PER_TRITON_DASHBOARD_RESULTS`` and
``PER_TRITON_DASHBOARD_EXTRA`` (paths joined by ``os.pathsep``) stand in for them.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from per_triton import paths

from .loaders import Closeness, Results, load_closeness, load_results, parse_upload

APP_PATH = paths.DASHBOARD_APP.resolve()
UPLOAD_KEY = "upload"
ENV_RESULTS = "PER_TRITON_DASHBOARD_RESULTS"
ENV_EXTRA = "PER_TRITON_DASHBOARD_EXTRA"


@dataclass(frozen=True)
class Settings:
    """Where the committed results are, and which extra files to show."""

    results_dir: Path | None
    extras: tuple[Path, ...] = ()


def default_results_dir() -> Path | None:
    """The committed results: ``bench/results`` of a checkout, or the wheel's copy."""
    return paths.committed_results()


def parse_app_args(argv: list[str]) -> Settings:
    """Parse the arguments given after ``--`` on the ``streamlit run`` line."""
    parser = argparse.ArgumentParser(prog="per_triton.dashboard", add_help=False)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--extra", type=Path, action="append", default=[])
    args, _ = parser.parse_known_args(argv)
    return Settings(args.results or default_results_dir(), tuple(args.extra))


def settings() -> Settings:
    """The app's settings, from its command line or, failing that, the environment."""
    if sys.argv and Path(sys.argv[0]).resolve() == APP_PATH:
        return parse_app_args(sys.argv[1:])
    results = os.environ.get(ENV_RESULTS)
    extras = [p for p in os.environ.get(ENV_EXTRA, "").split(os.pathsep) if p]
    return Settings(
        Path(results) if results else default_results_dir(), tuple(Path(p) for p in extras)
    )


def results() -> Results:
    """Committed runs, extra files and uploaded files, with every skipped file."""
    conf = settings()
    out = load_results(conf.results_dir, conf.extras)
    for upload in st.session_state.get(UPLOAD_KEY) or []:
        out.extend(parse_upload(upload.name, upload.getvalue()))
    seen: set[str] = set()
    for run in out.runs:  # the same file name from two places stays two runs
        base, n = run.name, 1
        while run.name in seen:
            n += 1
            run.name = f"{base} ({n})"
        seen.add(run.name)
    return out


def closeness() -> Closeness:
    """Closeness records under the results folder."""
    return load_closeness(settings().results_dir)
