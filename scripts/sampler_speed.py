"""Nanoseconds per float32 standard normal on the CPU, for each candidate sampler.

Candidates, each filling the same preallocated buffer of ``--rows x --cols`` normals
(median of ``--reps`` fills, after one warm-up fill):

- ``torch.randn`` (mt19937 and torch's vectorised Box-Muller);
- numpy's ``Generator.standard_normal(dtype=float32)`` (ziggurat) with the PCG64,
  SFC64, Philox and MT19937 bit generators;
- per-triton's CPU stream (``per_triton.core.normals``): the compiled Philox4x32-10 sampler
  on one thread and split over the threads, and its torch implementation (the
  fallback when no C compiler works).

Usage::

    python scripts/sampler_speed.py [--rows 256] [--cols 4096] [--reps 15] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

from per_triton.core import normals
from per_triton.core.directions import draw_columns


def _median_ns(fill, count: int, reps: int) -> float:
    fill()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fill()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / count * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    rows, cols = args.rows, args.cols
    count = rows * cols
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = torch.empty(rows, cols)
    out_np = np.empty((rows, cols), dtype=np.float32)
    gen = torch.Generator().manual_seed(0)
    results = {
        "torch.randn": _median_ns(
            lambda: torch.randn(rows, cols, generator=gen, out=out), count, args.reps
        )
    }
    for name in ("PCG64", "SFC64", "Philox", "MT19937"):
        rng = np.random.Generator(getattr(np.random, name)(0))
        results[f"numpy {name}"] = _median_ns(
            lambda rng=rng: rng.standard_normal(out=out_np, dtype=np.float32), count, args.reps
        )
    key = 12345
    results[f"per_triton C ({normals.sampler()})"] = _median_ns(
        lambda: normals.fill(key, 0, 0, out), count, args.reps
    )
    results["per_triton torch fallback"] = _median_ns(
        lambda: out.copy_(normals._torch_normals(*normals.key_words(key), 0, rows, 0, cols)),
        count,
        max(3, args.reps // 5),
    )
    torch.set_num_threads(threads)
    if threads > 1:
        results[f"per_triton C, rows over {threads} threads"] = _median_ns(
            lambda: draw_columns(7, rows, 0, cols, out, threads), count, args.reps
        )
    width = max(map(len, results))
    print(
        f"{rows} x {cols} float32 normals, median of {args.reps} fills, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    for name, ns in results.items():
        print(
            f"{name:<{width}}  {ns:6.2f} ns/normal  "
            f"({results['torch.randn'] / ns:4.2f}x torch.randn)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "command": " ".join(["python", *sys.argv]),
                    "load": os.getloadavg()[0],
                    "rows": rows,
                    "cols": cols,
                    "reps": args.reps,
                    "ns_per_normal": results,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
