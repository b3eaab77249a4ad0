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

from per_triton.core import normals, normals_torch
from per_triton.core.directions import draw_columns


def _median_ns(fill, count: int, reps: int) -> float:
    fill()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fill()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / count * 1e9


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser.parse_args()


def _other_samplers(rows: int, cols: int, reps: int) -> dict[str, float]:
    """ns per normal of ``torch.randn`` and numpy's bit generators (one thread)."""
    count = rows * cols
    out = torch.empty(rows, cols)
    out_np = np.empty((rows, cols), dtype=np.float32)
    gen = torch.Generator().manual_seed(0)
    results = {
        "torch.randn": _median_ns(
            lambda: torch.randn(rows, cols, generator=gen, out=out), count, reps
        )
    }
    for name in ("PCG64", "SFC64", "Philox", "MT19937"):
        rng = np.random.Generator(getattr(np.random, name)(0))
        results[f"numpy {name}"] = _median_ns(
            lambda rng=rng: rng.standard_normal(out=out_np, dtype=np.float32), count, reps
        )
    return results


def _cpu_stream(rows: int, cols: int, reps: int) -> dict[str, float]:
    """ns per normal of the CPU stream: the compiled sampler and the torch fallback."""
    count, key = rows * cols, 12345
    out = torch.empty(rows, cols)
    k0, k1 = normals_torch.key_words(key)
    return {
        f"per_triton C ({normals.sampler()})": _median_ns(
            lambda: normals.fill(key, 0, 0, out), count, reps
        ),
        "per_triton torch fallback": _median_ns(
            lambda: out.copy_(normals_torch.normals_block(k0, k1, 0, rows, 0, cols)),
            count,
            max(3, reps // 5),
        ),
    }


def _print_table(results: dict[str, float], rows: int, cols: int, reps: int) -> None:
    width = max(map(len, results))
    print(f"{rows} x {cols} float32 normals, median of {reps} fills, load {os.getloadavg()[0]:.2f}")
    for name, ns in results.items():
        print(
            f"{name:<{width}}  {ns:6.2f} ns/normal  "
            f"({results['torch.randn'] / ns:4.2f}x torch.randn)"
        )


def main() -> None:
    args = _arguments()
    rows, cols = args.rows, args.cols
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results = _other_samplers(rows, cols, args.reps) | _cpu_stream(rows, cols, args.reps)
    torch.set_num_threads(threads)
    if threads > 1:
        out = torch.empty(rows, cols)
        results[f"per_triton C, rows over {threads} threads"] = _median_ns(
            lambda: draw_columns(7, rows, 0, cols, out, threads), rows * cols, args.reps
        )
    _print_table(results, rows, cols, args.reps)
    if args.json:
        record = {
            "command": " ".join(["python", *sys.argv]),
            "load": os.getloadavg()[0],
            "rows": rows,
            "cols": cols,
            "reps": args.reps,
            "ns_per_normal": results,
        }
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
