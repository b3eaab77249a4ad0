"""Checking parsers for the result files (pure functions: no Streamlit, no I/O).

Only JSON is parsed (``json.loads``; no pickle, no eval). Every problem is returned
as a :class:`Problem` naming the file and what is wrong, so one bad file never hides
the others.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, cast

from per_triton.api.monitor_schema import STAT_KEYS, check_record

from .schema import (
    BenchmarkFile,
    ClosenessRecord,
    CpuRow,
    KernelRow,
    Problem,
    Run,
    Source,
    SummaryRow,
    TrainingRow,
)

MAX_PROBLEMS_PER_FILE = 3


class FormatError(ValueError):
    """A value in a result file is missing or has the wrong type."""


def _decode(data: bytes | str) -> object:
    """Parse JSON text; raise FormatError with a readable reason."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise FormatError(f"not UTF-8 text (byte {err.start})") from None
    if not data.strip():
        raise FormatError("the file is empty")
    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        raise FormatError(
            f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None


def _text(obj: dict, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise FormatError(f"'{key}' must be a non-empty string, got {value!r}")
    return value


def _int(obj: dict, key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"'{key}' must be an integer, got {value!r}")
    return value


def _float(obj: dict, key: str, *, positive: bool = False) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FormatError(f"'{key}' must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise FormatError(f"'{key}' must be positive, got {value!r}")
    return float(value)


def _stat(obj: dict, key: str) -> float:
    """A monitored statistic: a finite number, or null (non-finite, shown as a gap)."""
    return math.nan if key in obj and obj[key] is None else _float(obj, key)


def _optional(read: Callable[[dict, str], Any], obj: dict, key: str) -> Any:
    return None if obj.get(key) is None else read(obj, key)


def _timing(extra: dict) -> dict[str, float]:
    median = _float(extra, "median_s", positive=True)
    p20 = _float(extra, "p20_s", positive=True)
    p80 = _float(extra, "p80_s", positive=True)
    if not p20 <= median <= p80:
        raise FormatError(f"needs p20_s <= median_s <= p80_s, got {p20}, {median}, {p80}")
    return {"median_s": median, "p20_s": p20, "p80_s": p80}


def training_row(extra: dict) -> TrainingRow:
    """The chart row for one training-suite benchmark (seconds per iteration)."""
    return TrainingRow(
        model=_text(extra, "model"),
        method=_text(extra, "method"),
        batch=_int(extra, "batch"),
        dtype=_text(extra, "dtype"),
        num_slices=_optional(_int, extra, "num_slices"),
        **_timing(extra),
    )


def kernel_row(extra: dict) -> KernelRow:
    """The chart row for one kernel-suite benchmark."""
    return KernelRow(
        provider=_text(extra, "provider"),
        mode=_text(extra, "mode"),
        b=_int(extra, "b"),
        d=_int(extra, "d"),
        s=_int(extra, "s"),
        dtype=_text(extra, "dtype"),
        peak_mem_bytes=_optional(_int, extra, "peak_mem_bytes"),
        floor_s=_optional(_float, extra, "floor_s"),
        **_timing(extra),
    )


def cpu_row(extra: dict) -> CpuRow:
    """The row kept of one cpu-suite benchmark (per_triton's CPU path / plain torch)."""
    return CpuRow(
        b=_int(extra, "b"),
        d=_int(extra, "d"),
        s=_int(extra, "s"),
        threads=_int(extra, "threads"),
        sampler=_optional(_text, extra, "sampler"),
        per_triton_median_s=_float(extra, "per_triton_median_s", positive=True),
        torch_median_s=_float(extra, "torch_median_s", positive=True),
        ratio=_float(extra, "ratio", positive=True),
    )


def _sampler(machine: dict, rows: list[CpuRow]) -> str:
    """The file's CPU sampler: ``machine_info.sampler``, else those its rows record."""
    if isinstance(machine.get("sampler"), str) and machine["sampler"]:
        return machine["sampler"]
    return ", ".join(sorted({r["sampler"] for r in rows if r["sampler"]})) or "-"


def _machine_text(info: dict, key: str) -> str:
    value = info.get(key)
    return "-" if value is None else str(value)


def parse_benchmark_file(
    name: str, data: bytes | str, source: Source
) -> tuple[Run | None, list[Problem]]:
    """Check one pytest-benchmark JSON file and return its usable rows.

    Returns ``(None, [problem])`` for a malformed or foreign file; otherwise the run
    and one problem per skipped benchmark (at most ``MAX_PROBLEMS_PER_FILE`` listed).
    """
    try:
        doc = _decode(data)
        if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
            raise FormatError("not a pytest-benchmark file (no 'benchmarks' list at the top)")
        machine = doc.get("machine_info")
        if not isinstance(machine, dict):
            raise FormatError("not a pytest-benchmark file (no 'machine_info' object)")
    except FormatError as err:
        return None, [Problem(name, str(err))]
    doc = cast(BenchmarkFile, doc)  # the top level is checked; each benchmark is below
    commit = doc.get("commit_info") if isinstance(doc.get("commit_info"), dict) else {}
    run = Run(
        name=name,
        source=source,
        gpu=_machine_text(machine, "gpu"),
        torch=_machine_text(machine, "torch"),
        triton=_machine_text(machine, "triton"),
        cuda=_machine_text(machine, "cuda"),
        command=_machine_text(machine, "command"),
        commit=str(commit.get("id") or "-"),
        dirty=bool(commit.get("dirty", False)),
        datetime=str(doc.get("datetime") or "-"),
        benchmarks=len(doc["benchmarks"]),
    )
    skipped: list[str] = []
    for index, bench in enumerate(doc["benchmarks"]):
        label = bench.get("name", f"#{index}") if isinstance(bench, dict) else f"#{index}"
        try:
            extra = bench.get("extra_info") if isinstance(bench, dict) else None
            if not isinstance(extra, dict):
                raise FormatError("no 'extra_info' object")
            suite = extra.get("suite")
            if suite == "training":
                run.training.append(training_row(extra))
            elif suite == "kernel":
                run.kernel.append(kernel_row(extra))
            elif suite == "cpu":
                run.cpu.append(cpu_row(extra))
            else:
                raise FormatError(
                    f"extra_info.suite is {suite!r}, not 'training', 'kernel' or 'cpu'"
                )
        except FormatError as err:
            skipped.append(f"benchmark {label!r}: {err}")
    run.sampler = _sampler(machine, run.cpu)
    problems = [Problem(name, msg) for msg in skipped[:MAX_PROBLEMS_PER_FILE]]
    if len(skipped) > MAX_PROBLEMS_PER_FILE:
        more = len(skipped) - MAX_PROBLEMS_PER_FILE
        problems.append(Problem(name, f"{more} more benchmarks skipped"))
    return run, problems


def closeness_record(obj: object) -> ClosenessRecord:
    """Check one closeness JSON line (:func:`per_triton.api.monitor_schema.check_record`).

    A null statistic becomes NaN (a gap in the charts).
    """
    try:
        rec = check_record(obj)
    except ValueError as err:
        raise FormatError(str(err)) from None
    stats = {k: math.nan if rec[k] is None else rec[k] for k in STAT_KEYS}
    return cast(ClosenessRecord, {**rec, **stats})


def parse_closeness_lines(
    name: str, data: bytes | str
) -> tuple[list[ClosenessRecord], list[Problem]]:
    """Check a JSON-lines closeness file; bad lines are reported and skipped."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    records: list[ClosenessRecord] = []
    bad: list[str] = []
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(closeness_record(_decode(line)))
        except FormatError as err:
            bad.append(f"line {lineno}: {err}")
    problems = [Problem(name, msg) for msg in bad[:MAX_PROBLEMS_PER_FILE]]
    if len(bad) > MAX_PROBLEMS_PER_FILE:
        problems.append(Problem(name, f"{len(bad) - MAX_PROBLEMS_PER_FILE} more lines skipped"))
    if not records and not bad:
        problems.append(Problem(name, "the file has no records"))
    return records, problems


def parse_summary(name: str, data: bytes | str) -> tuple[list[SummaryRow], list[Problem]]:
    """Check ``closeness/summary.json`` (a list of per-method, per-seed results)."""
    try:
        doc = _decode(data)
        if not isinstance(doc, list):
            raise FormatError("expected a JSON list of {method, seed, test_accuracy, final_loss}")
        rows: list[SummaryRow] = []
        for row in doc:
            if not isinstance(row, dict):
                raise FormatError("every entry must be a JSON object")
            rows.append(
                SummaryRow(
                    method=_text(row, "method"),
                    seed=_int(row, "seed"),
                    test_accuracy=_float(row, "test_accuracy"),
                    final_loss=_float(row, "final_loss"),
                )
            )
    except FormatError as err:
        return [], [Problem(name, str(err))]
    return rows, []
