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
defaults to :func:`per_triton.paths.default_output_dir`: ``bench/results`` in a
checkout), or exactly to ``--out`` when it ends in ``.json``. The suites are
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
from per_triton.cli._args import int_at_least
from per_triton.experiments.methods import order_key

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
        help="results folder (default: bench/results in a checkout, else ./per-triton-results; "
        "the file goes to <out>/<gpu-or-cpu>/) or a file path ending in .json",
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


def training_table(benchmarks: list[dict[str, Any]]) -> str:
    """Time per iteration of every training benchmark and its ratio to vanilla."""
    groups: dict[tuple[str, str], dict[str, float]] = {}
    for b in benchmarks:
        info = b.get("extra_info", {})
        if info.get("suite") != "training":
            continue
        median = info.get("median_s", b["stats"]["median"])
        groups.setdefault((info["model"], info["dtype"]), {})[info["method"]] = median
    lines = []
    header = f"{'model':<10} {'dtype':<14} {'method':<10} {'ms/iter':>10} {'x vanilla':>10}"
    for (model, dtype), times in groups.items():
        lines += ["", header, "-" * len(header)]
        base = times.get("vanilla")
        for method in sorted(times, key=order_key):
            ratio = f"{times[method] / base:10.3f}" if base else f"{'-':>10}"
            lines.append(
                f"{model:<10} {dtype:<14} {method:<10} {times[method] * 1e3:10.3f} {ratio}"
            )
        if "per" in times and "per_torch" in times:
            lines.append(f"per speed-up over per_torch: {times['per_torch'] / times['per']:.2f}x")
    return "\n".join(lines)


def cpu_table(benchmarks: list[dict[str, Any]]) -> str:
    """Markdown table of the cpu suite: both providers' medians and their ratio."""
    rows = [b["extra_info"] for b in benchmarks if b.get("extra_info", {}).get("suite") == "cpu"]
    if not rows:
        return ""
    lines = [
        "| threads | busy core | b | d | s | per_triton (ms) | plain torch (ms) | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["threads"], r["d"], r["b"], r["s"])):
        lines.append(
            f"| {r['threads']} | {'yes' if r['busy'] else 'no'} | {r['b']} | {r['d']} | {r['s']} "
            f"| {r['per_triton_median_s'] * 1e3:.2f} | {r['torch_median_s'] * 1e3:.2f} "
            f"| {r['ratio']:.2f} |"
        )
    ratios = [r["ratio"] for r in rows]
    lines.append("")
    median = sorted(ratios)[len(ratios) // 2]
    lines.append(f"max ratio {max(ratios):.2f}, median ratio {median:.2f}")
    lines.append(f"CPU sampler: {', '.join(samplers(benchmarks)) or 'not recorded'}")
    return "\n".join(lines)


def samplers(benchmarks: list[dict[str, Any]]) -> list[str]:
    """The CPU samplers the benchmarks record (``extra_info["sampler"]``), sorted."""
    names = {b.get("extra_info", {}).get("sampler") for b in benchmarks}
    return sorted(n for n in names if n)


def _other_table(benchmarks: list[dict[str, Any]]) -> str:
    """Median time of every benchmark of the other suites (the kernel suite), one per line."""
    suites = ("training", "cpu")
    rows = [b for b in benchmarks if b.get("extra_info", {}).get("suite") not in suites]
    if not rows:
        return ""
    header = f"{'benchmark':<70} {'median':>13}"
    lines = [header, "-" * len(header)]
    lines += [f"{b['name']:<70} {b['stats']['median'] * 1e3:10.4f} ms" for b in rows]
    return "\n".join(lines)


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


def run(args: argparse.Namespace) -> int:
    import torch

    device = args.device
    if args.suite == "cpu":
        device = "cpu"  # the cpu suite times the CPU path only
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("per-triton bench: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if importlib.util.find_spec("pytest_benchmark") is None:
        print("per-triton bench: needs pytest-benchmark: pip install 'per-triton[bench]'",
              file=sys.stderr)  # fmt: skip
        return 2
    if device == "cpu" and args.suite in ("kernel", "all") and not args.quick:
        print(
            "per-triton bench: the kernel suite at full size needs a GPU (on the CPU its "
            "Triton floor kernel runs in the interpreter for hours); use --quick for a "
            "smoke run, or --suite training",
            file=sys.stderr,
        )
        return 2
    bench_dir = _find_bench_dir(args.bench_dir)
    from per_triton.bench import common

    files = [bench_dir / f for f in SUITE_FILES[args.suite] if (bench_dir / f).is_file()]
    missing = [f for f in SUITE_FILES[args.suite] if not (bench_dir / f).is_file()]
    if missing:
        print(f"per-triton bench: suite file(s) not found, skipped: {', '.join(missing)}")
    if not files:
        return 2

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
    out_path = _result_path(args, common, device)
    problem = _check_writable(out_path)
    if problem:
        print(f"per-triton bench: {problem}", file=sys.stderr)
        return 2
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
        rc = _run_pytest(cmd, cwd=bench_dir.parent, env=env)
        if not raw.is_file() or not raw.read_text().strip():
            print(f"per-triton bench: pytest wrote no result (exit {rc})", file=sys.stderr)
            return rc or 1
        extras = common.machine_extras(device, _command_line(args))
        extras["note"] = _note(args.quick, device, args.suite)
        extras["load_average_start"] = load_start
        extras["load_average"] = [round(x, 2) for x in os.getloadavg()]
        data = common.stamp_result_file(raw, extras)
        data["machine_info"]["sampler"] = ", ".join(samplers(data.get("benchmarks", []))) or None
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(data, indent=2) + "\n")
    benchmarks = data.get("benchmarks", [])
    print(training_table(benchmarks))
    table = cpu_table(benchmarks)
    if table:
        header = (
            f"# CPU sweep: per_triton vs plain torch (forward + backward)\n\n"
            f"command: `{extras['command']}`\n\ncommit: {extras.get('commit')}\n\n"
            f"load average (1, 5, 15 min) at the start {load_start}, at the end "
            f"{extras['load_average']}; busy process beside: {getattr(args, 'busy', False)}; "
            f"nproc {os.cpu_count()}\n\n"
        )
        out_path.with_suffix(".md").write_text(header + table + "\n")
        print("\n" + table)
    other = _other_table(benchmarks)
    if other:
        print("\n" + other)
    if extras["note"]:
        print(f"\n[bench] NOT A COST MEASUREMENT: {extras['note']}")
    print(f"\n[bench] {len(benchmarks)} results written to {out_path}")
    return rc
