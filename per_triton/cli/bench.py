"""`per-triton bench`: run the pytest-benchmark suites and write the result JSON.

Runs ``pytest`` on ``bench/bench_training.py`` (``--suite training``),
``bench/bench_kernels.py`` (``--suite kernel``) and/or ``bench/bench_cpu.py``
(``--suite cpu``: per_triton's CPU path against plain torch) in a subprocess with
``--benchmark-json``, streaming pytest's progress, then adds the ``machine_info``
keys of docs/design.md, "Benchmark result files" (GPU name, torch / triton / CUDA
versions, commit, this command) and prints, for the training suite, the time per
iteration of each method and its ratio to ``vanilla``; for the cpu suite, the
per_triton / plain-torch ratio table, also written as Markdown beside the JSON
(``<stem>.md``).

The file goes to ``<out>/<gpu-or-cpu>/<suite>[-quick]-<UTC time>.json`` (``<out>``
defaults to :func:`per_triton.paths.default_output_dir`: ``bench/results/local``, ignored
by git, in a checkout), or exactly to ``--out`` when it ends in ``.json``. The suites are
``per_triton.bench`` (the ``bench/`` folder), so an installed wheel runs them too.
Timing is synchronised: CUDA events on a GPU (bench/common.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from per_triton import paths
from per_triton.cli import bench_tables
from per_triton.cli._args import int_at_least

SUITE_FILES = {
    "training": ("bench_training.py",),
    "kernel": ("bench_kernels.py",),
    "cpu": ("bench_cpu.py",),
}
SUITE_FILES["all"] = SUITE_FILES["kernel"] + SUITE_FILES["training"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--suite", choices=sorted(SUITE_FILES), default="training", help="default: training"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny shapes, 3 rounds: a smoke run (e.g. on CPU)"
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if any"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default: bench/results/local in a checkout, git-ignored, else "
        "./per-triton-results; the file goes to <out>/<gpu-or-cpu>/) or a file path ending "
        "in .json",
    )
    parser.add_argument(
        "--busy",
        action="store_true",
        help="cpu suite: keep a CPU-bound process running beside the benchmarks",
    )
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k expression")
    parser.add_argument(
        "--rounds", type=int_at_least(1), default=None, help="timed rounds per benchmark (>= 1)"
    )
    parser.add_argument(
        "--bench-dir",
        type=Path,
        default=None,
        help="folder holding the suites (default: the installed per_triton.bench, i.e. bench/)",
    )


def _check_writable(out_path: Path) -> str | None:
    """Why ``out_path`` cannot be written (checked before any benchmark runs), or None."""
    folder = out_path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"--out: cannot create folder {folder}: {err.strerror or err}"
    if not os.access(folder, os.W_OK):
        return f"--out: folder {folder} is not writable"
    if out_path.is_dir():
        return f"--out: {out_path} is a folder, not a file"
    return None


def _find_bench_dir(given: Path | None) -> Path:
    path = given if given is not None else paths.BENCH_DIR
    if (path / "common.py").is_file():
        return path.resolve()
    raise SystemExit(f"per-triton bench: no benchmark suites (common.py) in {path}")


def _command_line(args: argparse.Namespace) -> str:
    parts = ["per-triton", "bench", "--suite", args.suite, "--device", args.device]
    if args.quick:
        parts.append("--quick")
    if getattr(args, "busy", False):
        parts.append("--busy")
    if args.out is not None:
        parts += ["--out", str(args.out)]
    if args.keyword:
        parts += ["-k", args.keyword]
    if args.rounds is not None:
        parts += ["--rounds", str(args.rounds)]
    return shlex.join(parts)


def _result_path(args: argparse.Namespace, common: ModuleType, device: str) -> Path:
    if args.out is not None and args.out.suffix == ".json":
        return args.out
    root = args.out if args.out is not None else paths.default_output_dir()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"{args.suite}{'-quick' if args.quick else ''}-{stamp}.json"
    return Path(root) / common.machine_folder(device) / name


def _run_pytest(cmd: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Run pytest; on Ctrl-C / ``timeout -s INT`` let it finish writing partial results.

    GNU ``timeout`` signals the whole process group, so pytest sees the interrupt
    itself and writes the benchmarks done so far; if only this process was
    interrupted, the interrupt is passed on.
    """
    proc = subprocess.Popen(cmd, cwd=cwd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        print("[bench] interrupted: keeping the results written so far", flush=True)
        for _ in range(2):
            try:
                return proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
        proc.kill()
        return proc.wait()


def _note(quick: bool, device: str, suite: str = "training") -> str | None:
    """Label for results that are not cost measurements.

    Which are: docs/design.md, "Measuring performance".
    """
    notes = []
    if quick:
        notes.append("quick run: tiny shapes and few rounds, a smoke test")
    if suite == "cpu":
        notes.append("CPU suite: the claim is the per_triton / plain-torch ratio, side by side")
    elif device == "cpu":
        notes.append("CPU timings: not a cost measurement, only GPU figures count")
    return "; ".join(notes) or None


def _device(args: argparse.Namespace) -> str | None:
    """The device the suites run on, or None (after saying why) when they cannot run."""
    import torch

    device = "cpu" if args.suite == "cpu" else args.device  # the cpu suite: CPU path only
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("per-triton bench: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return None
    if importlib.util.find_spec("pytest_benchmark") is None:
        print("per-triton bench: needs pytest-benchmark: pip install 'per-triton[bench]'",
              file=sys.stderr)  # fmt: skip
        return None
    if device == "cpu" and args.suite in ("kernel", "all") and not args.quick:
        print(
            "per-triton bench: the kernel suite at full size needs a GPU (on the CPU its "
            "Triton floor kernel runs in the interpreter for hours); use --quick for a "
            "smoke run, or --suite training",
            file=sys.stderr,
        )
        return None
    return device


def _suite_files(bench_dir: Path, suite: str) -> list[Path]:
    """The suite's files found in ``bench_dir`` (the missing ones are named)."""
    files = [bench_dir / f for f in SUITE_FILES[suite] if (bench_dir / f).is_file()]
    missing = [f for f in SUITE_FILES[suite] if not (bench_dir / f).is_file()]
    if missing:
        print(f"per-triton bench: suite file(s) not found, skipped: {', '.join(missing)}")
    return files


def _environment(args: argparse.Namespace, common: ModuleType, device: str) -> dict[str, str]:
    """The pytest subprocess's environment: the suite's controls of bench/common.py."""
    import torch

    # a run started from inside an xdist worker (the CLI test) must not look like one:
    # pytest-benchmark disables itself under xdist
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env[common.ENV_DEVICE] = device
    env[common.ENV_QUICK] = "1" if args.quick else "0"
    env["PER_TRITON_BENCH_BUSY"] = "1" if getattr(args, "busy", False) else "0"
    if args.rounds is not None:
        env[common.ENV_ROUNDS] = str(args.rounds)
    if not torch.cuda.is_available():
        env.setdefault("TRITON_INTERPRET", "1")
    return env


def _measure(
    args: argparse.Namespace, common: ModuleType, device: str, files: list[Path], out_path: Path
) -> tuple[int, dict[str, Any] | None]:
    """Run the suite ``files`` under pytest (from the folder above the suites' folder) and
    write the stamped result file to ``out_path``.

    Returns pytest's exit status and the result data (None when pytest wrote none).
    """
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "result.json"
        cmd = [
            sys.executable, "-m", "pytest", *map(str, files),
            "-v", "-p", "no:cacheprovider", "-p", "no:xdist", "--benchmark-only",
            # our own table follows; pytest-benchmark's table and its note of the
            # temporary JSON path would only be noise
            f"--benchmark-json={raw}", "--benchmark-quiet",
        ]  # fmt: skip
        if args.keyword:
            cmd += ["-k", args.keyword]
        print(f"[bench] {device}: {' '.join(f.name for f in files)}", flush=True)
        load_start = [round(x, 2) for x in os.getloadavg()]
        cwd = files[0].parent.parent
        rc = _run_pytest(cmd, cwd=cwd, env=_environment(args, common, device))
        if not raw.is_file() or not raw.read_text().strip():
            print(f"per-triton bench: pytest wrote no result (exit {rc})", file=sys.stderr)
            return rc or 1, None
        extras = common.machine_extras(device, _command_line(args))
        extras["note"] = _note(args.quick, device, args.suite)
        extras["load_average_start"] = load_start
        extras["load_average"] = [round(x, 2) for x in os.getloadavg()]
        data = common.stamp_result_file(raw, extras)
    benchmarks = data.get("benchmarks", [])
    data["machine_info"]["sampler"] = ", ".join(bench_tables.samplers(benchmarks)) or None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(data, indent=2) + "\n")
    return rc, data


def _report(args: argparse.Namespace, data: dict[str, Any], out_path: Path) -> None:
    """Print the tables of the result (and write the cpu suite's beside it as Markdown)."""
    benchmarks = data.get("benchmarks", [])
    extras = data["machine_info"]
    print(bench_tables.training_table(benchmarks))
    table = bench_tables.cpu_table(benchmarks)
    if table:
        text = bench_tables.cpu_markdown(
            table, extras, getattr(args, "busy", False), os.cpu_count()
        )
        out_path.with_suffix(".md").write_text(text)
        print("\n" + table)
    other = bench_tables.other_table(benchmarks)
    if other:
        print("\n" + other)
    if extras["note"]:
        print(f"\n[bench] NOT A COST MEASUREMENT: {extras['note']}")
    print(f"\n[bench] {len(benchmarks)} results written to {out_path}")


def run(args: argparse.Namespace) -> int:
    """``per-triton bench``: check, run the suites, write and print the results.

    Returns pytest's exit status (non-zero if it wrote no result), or 2 when the run cannot
    start (no device, no pytest-benchmark, no suite file, an unwritable ``--out``).
    """
    device = _device(args)
    if device is None:
        return 2
    bench_dir = _find_bench_dir(args.bench_dir)
    from per_triton.bench import common

    files = _suite_files(bench_dir, args.suite)
    if not files:
        return 2
    out_path = _result_path(args, common, device)
    problem = _check_writable(out_path)
    if problem:
        print(f"per-triton bench: {problem}", file=sys.stderr)
        return 2
    rc, data = _measure(args, common, device, files, out_path)
    if data is not None:
        _report(args, data, out_path)
    return rc
