"""CPU side-by-side timings of the exact estimator, written to a JSON file.

Two ratios, each measured in one process with the two contenders interleaved
(A B A B ...), medians over ``--reps`` repetitions, machine load recorded:

1. ``per_loss(h, estimator="exact")`` forward + backward against the plain-torch
   Monte Carlo PER a user would write (``torch.randn`` directions materialised
   ``s x d``, normalised, ``reference.psi``; bench/kernel_utils.py ``eager_per_loss``)
   at ``(b, d) = (32, 196608)``, ``s = 256``, float32.
2. A ``cnn11`` training step (the training suite's full-size config: batch 128,
   32x32, 100 classes) with ``per_exact`` against the same step with ``l2``.

    python bench/cpu_exact.py --out bench/results/cpu/exact-cpu.json

CPU timings are smoke-level figures on a shared machine: only the ratios count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import per_triton as pt
from per_triton.bench.bench_training import FULL, synthetic_batch
from per_triton.bench.common import git_commit
from per_triton.bench.kernel_utils import eager_per_loss
from per_triton.experiments.models import build_model
from per_triton.experiments.training import train_step


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(calls: dict[str, object], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(reps):
        for k, fn in calls.items():
            times[k].append(_timed(fn))
    return times


def loss_case(reps: int) -> dict[str, object]:
    b, d, s = 32, 196608, 256
    torch.manual_seed(0)
    h = torch.randn(b, d, requires_grad=True)

    def mc() -> None:
        torch.autograd.grad(eager_per_loss(h, s), h)

    def exact() -> None:
        torch.autograd.grad(pt.per_loss(h, estimator="exact"), h)

    t = interleaved({"plain_torch_mc_s256": mc, "exact": exact}, reps)
    med = {k: statistics.median(v) for k, v in t.items()}
    return {
        "shape": {"b": b, "d": d, "s": s, "dtype": "float32"},
        "median_s": med,
        "samples_s": t,
        "speedup_exact_over_mc": med["plain_torch_mc_s256"] / med["exact"],
    }


def step_case(reps: int) -> dict[str, object]:
    cfg = FULL["cnn11"]
    device = torch.device("cpu")
    calls = {}
    for method in ("l2", "per_exact"):
        torch.manual_seed(0)
        model = build_model(cfg["factory"], method, **cfg["build"])
        x, y = synthetic_batch("cnn11", cfg, device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        calls[method] = lambda m=model, o=opt, x=x, y=y: train_step(m, x, y, o, coeff=1e-4)
    t = interleaved(calls, reps)
    med = {k: statistics.median(v) for k, v in t.items()}
    return {
        "model": "cnn11",
        "config": {k: v for k, v in cfg.items() if k != "build"} | cfg["build"],
        "median_s": med,
        "samples_s": t,
        "ratio_per_exact_over_l2": med["per_exact"] / med["l2"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "commit": git_commit(),
        "loadavg_before": load_before,
        "loss": loss_case(args.reps),
        "train_step": step_case(args.reps),
        "loadavg_after": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"exact fwd+bwd {result['loss']['speedup_exact_over_mc']:.1f}x faster than plain-torch MC "
        f"(s=256, b=32, d=196608); cnn11 step per_exact / l2 = "
        f"{result['train_step']['ratio_per_exact_over_l2']:.3f}; load {load_before} -> "
        f"{result['loadavg_after']}"
    )


if __name__ == "__main__":
    main()
