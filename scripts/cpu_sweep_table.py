"""Before/after table of `per-triton bench --suite cpu` result files (docs/benchmarks.md).

Each argument is ``LABEL=FILE`` (a result JSON of the cpu suite); runs with the busy
process beside are told apart by their ``busy`` flag. A label given several files
(repeated runs, e.g. alternated with another label's) gets the median of their ratios
per shape. Prints a summary per (label, threads, busy): shapes, runs, the max and
median of the per-shape ratios, how many exceed 1.0, the median at d >= 49152, and the
largest ratio of any single run; then the ratio (per_triton / plain torch, medians) of
every shape::

    python scripts/cpu_sweep_table.py before=old-quiet.json before=old-busy.json \\
        now=bench/results/cpu/after4-e9febf7-r1.json \\
        now=bench/results/cpu/after4-e9febf7-busy-r1.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if not argv or any("=" not in a for a in argv):
        print(__doc__, file=sys.stderr)
        return 2
    runs: dict[tuple, list[float]] = {}
    labels: list[str] = []
    for arg in argv:
        label, path = arg.split("=", 1)
        labels += [label] if label not in labels else []
        for bench in json.loads(Path(path).read_text())["benchmarks"]:
            e = bench["extra_info"]
            key = (label, e["threads"], e["busy"], e["b"], e["d"], e["s"])
            runs.setdefault(key, []).append(e["ratio"])
    ratios = {key: statistics.median(values) for key, values in runs.items()}
    present = {k[:3] for k in ratios}
    every = [(w, t, b) for b in (False, True) for t in (1, 2) for w in labels]
    cols = [c for c in every if c in present]
    print(
        "| run | threads | busy core | shapes | runs | max | median | over 1.0 "
        "| median d >= 49152 | max of a single run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for w, t, busy in cols:
        rows = [(k[4], v) for k, v in ratios.items() if k[:3] == (w, t, busy)]
        if rows:
            vals = [v for _, v in rows]
            big = [v for d, v in rows if d >= 49152] or [float("nan")]
            single = [x for k, xs in runs.items() if k[:3] == (w, t, busy) for x in xs]
            count = max(len(xs) for k, xs in runs.items() if k[:3] == (w, t, busy))
            print(f"| {w} | {t} | {'yes' if busy else 'no'} | {len(vals)} | {count} "
                  f"| {max(vals):.2f} | {statistics.median(vals):.2f} | {sum(v > 1 for v in vals)} "
                  f"| {statistics.median(big):.2f} | {max(single):.2f} |")  # fmt: skip
    shapes = sorted({k[3:] for k in ratios}, key=lambda x: (x[1], x[0], x[2]))
    names = [f"{w} t{t}{' busy' if busy else ''}" for w, t, busy in cols]
    print("\n| b | d | s | " + " | ".join(names) + " |")
    print("|" + "---|" * (3 + len(cols)))
    for b, d, s in shapes:
        cells = [ratios.get((w, t, busy, b, d, s)) for w, t, busy in cols]
        text = " | ".join("-" if r is None else f"{r:.2f}" for r in cells)
        print(f"| {b} | {d} | {s} | {text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
