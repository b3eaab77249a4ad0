"""The tables ``per-triton bench`` prints (and, for the cpu suite, writes as Markdown).

Each takes the ``benchmarks`` list of a pytest-benchmark result file (with the
``extra_info`` keys of docs/design.md, "Benchmark result files") and returns text;
a suite with no benchmarks in the list gives ``""``.
"""

from __future__ import annotations

from typing import Any

from per_triton.experiments.methods import order_key

__all__ = ["cpu_markdown", "cpu_table", "other_table", "samplers", "training_table"]


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


def other_table(benchmarks: list[dict[str, Any]]) -> str:
    """Median time of every benchmark of the other suites (the kernel suite), one per line."""
    suites = ("training", "cpu")
    rows = [b for b in benchmarks if b.get("extra_info", {}).get("suite") not in suites]
    if not rows:
        return ""
    header = f"{'benchmark':<70} {'median':>13}"
    lines = [header, "-" * len(header)]
    lines += [f"{b['name']:<70} {b['stats']['median'] * 1e3:10.4f} ms" for b in rows]
    return "\n".join(lines)


def cpu_markdown(table: str, extras: dict[str, Any], busy: bool, nproc: int | None) -> str:
    """The cpu suite's Markdown file: the command, commit and load around ``table``.

    ``extras``: the ``machine_info`` additions of the run (``command``, ``commit``,
    ``load_average_start``, ``load_average``).
    """
    return (
        f"# CPU sweep: per_triton vs plain torch (forward + backward)\n\n"
        f"command: `{extras['command']}`\n\ncommit: {extras.get('commit')}\n\n"
        f"load average (1, 5, 15 min) at the start {extras['load_average_start']}, at the "
        f"end {extras['load_average']}; busy process beside: {busy}; nproc {nproc}\n\n"
        f"{table}\n"
    )
