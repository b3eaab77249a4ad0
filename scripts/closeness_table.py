"""The closeness table of docs/closeness.md from a `per-triton train` output folder.

Per method (in the order and with the labels of :mod:`per_triton.experiments.methods`):
test accuracy (mean and sd over seeds, in %), and the "late" SW1 and
variance of each monitored layer: the mean over the records of the last quarter of
training and over the seeds. Also prints the step-0 values and the final training
and test losses.

    python scripts/closeness_table.py bench/results/closeness
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from per_triton.api.monitor import read_records
from per_triton.experiments.methods import label, order_key


def main(folder: Path) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    methods = sorted({e["method"] for e in summary}, key=order_key)
    print("| method | test accuracy (mean ± sd) | late SW1 per layer | late variance per layer |")
    print("| --- | --- | --- | --- |")
    extra = []
    for m in methods:
        acc = [100 * e["test_accuracy"] for e in summary if e["method"] == m]
        recs = read_records(folder / f"{m}.jsonl")
        layers = sorted({r["layer"] for r in recs})
        last = max(r["step"] for r in recs)
        late = [r for r in recs if r["step"] >= 0.75 * last]
        first = [r for r in recs if r["step"] == 0]

        def mean(rows, layer, key):
            return statistics.fmean(r[key] for r in rows if r["layer"] == layer)

        sw1 = " / ".join(f"{mean(late, ly, 'sw1'):.2f}" for ly in layers)
        var = " / ".join(f"{mean(late, ly, 'var'):.2f}" for ly in layers)
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        print(f"| {label(m)} | {statistics.fmean(acc):.2f} ± {sd:.2f} % | {sw1} | {var} |")
        s0 = " / ".join(f"{mean(first, ly, 'sw1'):.2f}" for ly in layers)
        v0 = " / ".join(f"{mean(first, ly, 'var'):.2f}" for ly in layers)
        train = statistics.fmean(e["final_loss"] for e in summary if e["method"] == m)
        test = statistics.fmean(e["test_loss"] for e in summary if e["method"] == m)
        ms = statistics.fmean(1e3 * e["seconds_per_step"] for e in summary if e["method"] == m)
        extra.append(
            f"{m}: layers {layers}; step 0 SW1 {s0}, var {v0}; final train loss {train:.4g}, "
            f"test loss {test:.4g}; {ms:.1f} ms/step"
        )
    print()
    print("\n".join(extra))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/closeness"))
