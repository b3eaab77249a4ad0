"""Cached loaders: find result files, read them once, return typed, checked data.

Each file is cached by (path, mtime, size), so a file written while the app runs is
picked up on the next rerun. Uploaded files are cached by their bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from per_triton.paths import LOCAL_RESULTS

from .parse import parse_benchmark_file, parse_closeness_lines, parse_summary
from .schema import ClosenessRecord, Problem, Run, Source, SummaryRow

CLOSENESS_DIR = "closeness"
# Files ``per-triton train`` writes beside its records, and the cnn11 step timing of
# scripts/step_by_sampler.py: not benchmarks, skipped silently.
NOT_BENCHMARKS = frozenset(
    {"config.json", "summary.json", "overhead.json", "cnn11-step-by-sampler.json"}
)


@dataclass
class Results:
    """Everything the pages show: checked runs and the files that were skipped."""

    runs: list[Run] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def extend(self, other: Results) -> None:
        self.runs.extend(other.runs)
        self.problems.extend(other.problems)


@dataclass
class Closeness:
    """Closeness records, the training summary, and the files that were skipped."""

    records: list[ClosenessRecord] = field(default_factory=list)
    summary: list[SummaryRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def benchmark_files(results_dir: Path) -> list[Path]:
    """The ``*.json`` files under ``results_dir`` (its ``local/`` folder too), except the
    closeness folder and the files ``per-triton train`` writes (``config.json``,
    ``summary.json``, ``overhead.json``)."""
    if not results_dir.is_dir():
        return []
    skip = results_dir / CLOSENESS_DIR
    return sorted(
        p
        for p in results_dir.rglob("*.json")
        if skip not in p.parents and p.name not in NOT_BENCHMARKS and p.is_file()
    )


@st.cache_data(show_spinner=False, max_entries=512)
def _read_benchmark(path: str, name: str, source: str, mtime_ns: int, size: int) -> Results:
    """Read and check one file; ``mtime_ns`` and ``size`` only key the cache."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return Results(problems=[Problem(name, f"cannot be read ({err.strerror})")])
    run, problems = parse_benchmark_file(name, data, source)  # type: ignore[arg-type]
    in_folder = source in ("committed", "local")  # found in the results folder, not named
    if run is None and in_folder and _script_result(data):
        return Results()  # a script's own result file beside the benchmarks: not a problem
    return Results(runs=[run] if run else [], problems=problems)


def _script_result(data: bytes) -> bool:
    """True for a JSON object that records its ``command`` but has no ``benchmarks``:
    the result files of the project's scripts (e.g. ``bench/cpu_exact.py``), committed
    beside the pytest-benchmark files and read by people, not by the dashboard."""
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    if isinstance(doc, list):  # bench/sass_report.py --json: one record per kernel build
        return bool(doc) and all(isinstance(x, dict) and "sass_path" in x for x in doc)
    return isinstance(doc, dict) and "command" in doc and "benchmarks" not in doc


def _read(path: Path, name: str, source: Source) -> Results:
    try:
        stat = path.stat()
    except OSError as err:
        return Results(problems=[Problem(name, f"cannot be read ({err.strerror})")])
    return _read_benchmark(str(path), name, source, stat.st_mtime_ns, stat.st_size)


def folder_source(name: str) -> Source:
    """Where a file found in the results folder came from, by its relative ``name``:
    ``local/...`` is the user's own run (``per-triton bench`` writes there in a checkout),
    anything else was committed."""
    return "local" if name.split("/", 1)[0] == LOCAL_RESULTS else "committed"


def load_results(results_dir: Path | None, extras: Sequence[Path] = ()) -> Results:
    """The runs under ``results_dir`` (committed, and the user's own under ``local/``)
    plus the extra files named.

    An extra file that is already one of the folder's files is not read twice.
    """
    out = Results()
    in_folder: set[Path] = set()
    if results_dir is not None:
        for path in benchmark_files(results_dir):
            in_folder.add(path.resolve())
            name = path.relative_to(results_dir).as_posix()
            out.extend(_read(path, name, folder_source(name)))
    for path in extras:
        if path.is_file():
            if path.resolve() in in_folder:
                continue
            out.extend(_read(path, path.name, "extra"))
        else:
            out.problems.append(Problem(str(path), "no such file"))
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def parse_upload(name: str, data: bytes) -> Results:
    """Check one uploaded file (cached by its bytes)."""
    run, problems = parse_benchmark_file(f"upload:{name}", data, "uploaded")
    return Results(runs=[run] if run else [], problems=problems)


@st.cache_data(show_spinner=False, max_entries=16)
def _read_closeness(folder: str, fingerprint: tuple[tuple[str, int, int], ...]) -> Closeness:
    """Read every closeness file in ``folder``; ``fingerprint`` keys the cache."""
    out = Closeness()
    for name, _, _ in fingerprint:
        path = Path(folder) / name
        try:
            data = path.read_bytes()
        except OSError as err:
            out.problems.append(Problem(name, f"cannot be read ({err.strerror})"))
            continue
        out.files.append(name)
        if name.endswith(".jsonl"):
            records, problems = parse_closeness_lines(name, data)
            out.records.extend(records)
        else:
            rows, problems = parse_summary(name, data)
            out.summary.extend(rows)
        out.problems.extend(problems)
    return out


def load_closeness(results_dir: Path | None) -> Closeness:
    """The records in ``results_dir/closeness/*.jsonl`` and its ``summary.json``."""
    if results_dir is None or not (results_dir / CLOSENESS_DIR).is_dir():
        return Closeness()
    folder = results_dir / CLOSENESS_DIR
    paths = sorted(folder.glob("*.jsonl"))
    if (folder / "summary.json").is_file():
        paths.append(folder / "summary.json")
    fingerprint = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    return _read_closeness(str(folder), fingerprint)


SASS_MATRIX = Path("sass") / "matrix.json"
#: Columns of the static compile matrix the Kernels page shows, in order.
STATIC_COLUMNS = (
    "triton", "arch", "name", "role", "dtype", "precision", "BLOCK_S", "BLOCK_D",
    "num_warps", "num_stages", "registers", "spill_bytes", "ctas_per_sm", "mma",
    "instr_per_normal",
)  # fmt: skip


@st.cache_data(show_spinner=False, max_entries=8)
def _read_sass_matrix(path: str, mtime_ns: int, size: int) -> list[dict]:
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise ValueError(f"{path}: expected a list of build records")
    return [{k: r.get(k) for k in STATIC_COLUMNS} for r in doc]


def load_sass_matrix(results_dir: Path | None) -> tuple[list[dict], Problem | None]:
    """Records of the compile matrix (``<results>/sass/matrix.json``, scripts/compile_matrix.sh).

    Returns ``(records, problem)``: no records and no problem where the file is absent,
    no records and a :class:`Problem` where it cannot be read.
    """
    if results_dir is None or not (results_dir / SASS_MATRIX).is_file():
        return [], None
    path = results_dir / SASS_MATRIX
    try:
        stat = path.stat()
        return _read_sass_matrix(str(path), stat.st_mtime_ns, stat.st_size), None
    except (OSError, ValueError) as err:
        return [], Problem(SASS_MATRIX.as_posix(), f"cannot be read ({err})")
