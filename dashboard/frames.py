"""Tidy tables behind the charts, built from checked runs (pandas only)."""

from __future__ import annotations

import pandas as pd

from per_triton.api.monitor_schema import RECORD_KEYS
from per_triton.bench.providers import PROVIDERS
from per_triton.experiments.methods import METHODS, label, order_key

from .schema import ClosenessRecord, Run

# Joo, Kang & Kim (ICLR 2020): seconds per training iteration on one TITAN X.
PAPER_SERIES = "paper, TITAN X (their model)"
PAPER_SECONDS = {"vanilla": 0.071, "bn": 0.083, "vcl": 0.087, "per": 0.093}

#: Where a run's file came from, in words for people (``Run.source`` is the key).
ORIGIN = {
    "committed": "results folder",
    "local": "your run (local/)",
    "extra": "--extra",
    "uploaded": "uploaded",
}

METHOD_ORDER = list(METHODS)  # per_triton.experiments.methods is the source
PROVIDER_ORDER = list(PROVIDERS)  # per_triton.bench.providers is the source

TRAINING_COLUMNS = [
    "series", "gpu", "file", "source", "model", "method", "batch", "dtype", "num_slices",
    "median_s", "p20_s", "p80_s",
]  # fmt: skip
KERNEL_COLUMNS = [
    "series", "gpu", "file", "provider", "mode", "b", "d", "s", "dtype",
    "median_s", "p20_s", "p80_s", "peak_mem_bytes", "floor_s",
]  # fmt: skip


def training_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per training benchmark, labelled with its run."""
    rows = [
        {"series": r.label, "gpu": r.gpu, "file": r.name, "source": r.source, **row}
        for r in runs
        for row in r.training
    ]
    return pd.DataFrame(rows, columns=TRAINING_COLUMNS)


def kernel_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per kernel benchmark, labelled with its run."""
    rows = [
        {"series": r.label, "gpu": r.gpu, "file": r.name, **row} for r in runs for row in r.kernel
    ]
    return pd.DataFrame(rows, columns=KERNEL_COLUMNS)


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per result file: where it came from, its suites, device (the GPU's name
    or ``cpu``) and CPU sampler, and what produced it."""
    return pd.DataFrame(
        [
            {
                "file": r.name,
                "source": r.source,
                "from": ORIGIN[r.source],
                "suite": r.suites,
                "device": r.gpu,
                "sampler": r.sampler,
                "torch": r.torch,
                "triton": r.triton,
                "cuda": r.cuda,
                "commit": r.commit[:12] + (" (dirty)" if r.dirty else ""),
                "datetime": r.datetime,
                "benchmarks": r.benchmarks,
                "training rows": len(r.training),
                "kernel rows": len(r.kernel),
                "cpu rows": len(r.cpu),
                "command": r.command,
            }
            for r in runs
        ]
    )


def versions(run: Run) -> str:
    """A run's torch and Triton versions, and CUDA's where it had one, on one line."""
    cuda = f" · cuda {run.cuda}" if run.cuda not in ("-", "") else ""  # "-": not recorded
    return f"torch {run.torch} · triton {run.triton}{cuda}"


def paper_frame(model: str = "", batch: int | None = None, dtype: str = "") -> pd.DataFrame:
    """The paper's TITAN X figures as rows shaped like :func:`training_frame`'s."""
    rows = [
        {
            "series": PAPER_SERIES,
            "gpu": "TITAN X (paper)",
            "file": "arXiv 2002.05366",
            "source": "paper",
            "model": model,
            "method": method,
            "batch": batch,
            "dtype": dtype,
            "num_slices": 256,
            "median_s": sec,
            "p20_s": sec,
            "p80_s": sec,
        }  # fmt: skip
        for method, sec in PAPER_SECONDS.items()
    ]
    return pd.DataFrame(rows, columns=TRAINING_COLUMNS)


def with_ratio_to_vanilla(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``ratio``: median time over the vanilla median of the same series and case."""
    keys = ["series", "model", "batch", "dtype"]
    vanilla = (
        df[df["method"] == "vanilla"]
        .groupby(keys, dropna=False)["median_s"]
        .first()
        .rename("vanilla_s")
    )
    out = df.join(vanilla, on=keys)
    out["ratio"] = out["median_s"] / out["vanilla_s"]
    return out


def with_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``speedup``: each provider's median over fused's at the same point."""
    keys = ["series", "mode", "b", "d", "s", "dtype"]
    fused = df[df["provider"] == "fused"].groupby(keys)["median_s"].first().rename("fused_s")
    out = df.join(fused, on=keys)
    out["speedup"] = out["median_s"] / out["fused_s"]
    return out


TIME_AND_EXTRA = {"median_s", "p20_s", "p80_s", "peak_mem_bytes", "floor_s", "num_slices"}


def comparable_pair(runs: list[Run]) -> tuple[int, int]:
    """Indices of the first two runs that share a benchmark (else the first two)."""
    for i, a in enumerate(runs):
        for j in range(i + 1, len(runs)):
            if not compare_runs(a, runs[j]).empty:
                return i, j
    return 0, min(1, len(runs) - 1)


def compare_runs(a: Run, b: Run) -> pd.DataFrame:
    """Benchmarks present in both runs, matched by their parameters, with ``b / a``."""
    frames = []
    for rows_of, name in ((lambda r: r.training, "training"), (lambda r: r.kernel, "kernel")):
        left, right = pd.DataFrame(rows_of(a)), pd.DataFrame(rows_of(b))
        if left.empty or right.empty:
            continue
        keys = [c for c in left.columns if c not in TIME_AND_EXTRA and c in right.columns]
        both = left.merge(right, on=keys, suffixes=("_a", "_b"))
        if both.empty:
            continue
        method = "method" if name == "training" else "provider"
        both["suite"] = name
        both["method"] = both[method]
        both["case"] = both[[k for k in keys if k != method]].astype(str).agg(" ".join, axis=1)
        both["ratio_b_over_a"] = both["median_s_b"] / both["median_s_a"]
        frames.append(
            both[["suite", "method", "case", "median_s_a", "median_s_b", "ratio_b_over_a"]]
        )
    if not frames:
        return pd.DataFrame(
            columns=["suite", "method", "case", "median_s_a", "median_s_b", "ratio_b_over_a"]
        )
    return pd.concat(frames, ignore_index=True)


def closeness_frame(records: list[ClosenessRecord]) -> pd.DataFrame:
    """One row per (run, step, layer) closeness record."""
    return pd.DataFrame(records, columns=list(RECORD_KEYS))


def most_distinct_layer(df: pd.DataFrame) -> str | None:
    """The layer whose methods differ most at the last recorded step (the default view).

    For each layer: the mean sliced W1 of each method over the last step of every
    run, then the range (max - min) over methods. Ties (and a single method) go to
    the layer recorded first. None for an empty table.
    """
    if df.empty:
        return None
    layers = list(dict.fromkeys(df["layer"]))
    last = df[df["step"] == df.groupby(["run", "method", "seed"])["step"].transform("max")]
    per_method = last.groupby(["layer", "method"])["sw1"].mean()
    spread = per_method.groupby(level="layer").agg(lambda v: v.max() - v.min()).fillna(0.0)
    best = max(layers, key=lambda layer: (spread.get(layer, 0.0), -layers.index(layer)))
    return best


def summary_by_method(summary: pd.DataFrame) -> pd.DataFrame:
    """``closeness/summary.json`` per method: seeds, test accuracy (mean, min, max) and
    mean final loss, methods in the project's order and named by their labels."""
    out = summary.groupby("method", as_index=False).agg(
        seeds=("seed", "nunique"),
        accuracy_mean=("test_accuracy", "mean"),
        accuracy_min=("test_accuracy", "min"),
        accuracy_max=("test_accuracy", "max"),
        final_loss_mean=("final_loss", "mean"),
    )
    out = out.sort_values("method", key=lambda m: m.map(order_key)).reset_index(drop=True)
    return out.assign(method=out["method"].map(label))
