"""CPU benchmark: ``per_triton.per_loss`` against the five-line plain-torch PER, side by side.

One benchmark per ``(b, d, s, threads)``. Each timed round runs forward + backward of
both providers, in alternating order, on the same activations ``h (b, d)`` float32:

- ``per_triton``: ``per_loss(h, s, seed=r).backward()`` (the CPU path of
  per_triton/core/cpu_path.py; a new seed every round, so new directions every call);
- ``torch``: what a user writes in five lines: ``theta = randn(s, d)``, normalise
  the rows, ``reference.per_loss(h, theta)`` (two matmuls with autograd's backward).

Each result's ``extra_info`` (docs/design.md, "Benchmark result files") records the CPU
sampler that ran (``sampler``: :func:`per_triton.core.normals.sampler`) and holds the median,
20th and 80th percentile of each provider and ``ratio = per_triton median / torch median``;
pytest-benchmark's own ``stats`` are those of one round of both providers.
Alternating the two in one round keeps the ratio honest on a shared, noisy machine.

Shapes: ``b`` in {1, 8, 32, 128, 700}, ``d`` in {650, 4096, 12288, 49152, 196608,
2**20}, ``s`` in {64, 256}, every pair with ``b*d <= 2**25``, at 1 and 2 torch
threads. Rounds shrink with the work (``s*d`` normals per draw) so the whole sweep
takes minutes, not hours: 15 rounds for small shapes, 5 at the largest; each
benchmark has :data:`WARMUP_ROUNDS` untimed warm-up rounds. ``PER_TRITON_BENCH_QUICK=1``:
a subset of small shapes (a smoke test). ``PER_TRITON_BENCH_BUSY=1``: a CPU-bound process
(``while True: pass``) runs beside the whole suite, to measure a loaded machine.

Run it through ``per-triton bench --suite cpu [--quick] [--busy]``, which writes the
result JSON and a Markdown ratio table under ``bench/results/cpu/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
import torch

import per_triton
from per_triton.bench.common import bench_quick, bench_rounds, percentiles
from per_triton.core import normals, reference

QUICK_MODE = bench_quick()
ENV_BUSY = "PER_TRITON_BENCH_BUSY"
BUSY = os.environ.get(ENV_BUSY, "0") not in ("", "0", "false", "False")

B_VALUES = (1, 8, 32, 128, 700)
D_VALUES = (650, 4096, 12288, 49152, 196608, 2**20)
S_VALUES = (64, 256)
THREADS = (1, 2)
MAX_BD = 2**25
QUICK_SHAPES = ((8, 650, 64), (32, 4096, 256), (8, 49152, 64))
#: Untimed rounds of both providers before the timed ones. The first two or three calls
#: at a new shape take up to 1.5x the steady time (docs/benchmarks.md, "CPU sweep
#: without a compiler"); one warm-up round left them in the median of 15.
WARMUP_ROUNDS = 3


def sweep_shapes(quick: bool = False) -> list[tuple[int, int, int]]:
    """``(b, d, s)`` of the sweep: every pair with ``b*d <= 2**25``; a small subset if quick."""
    if quick:
        return list(QUICK_SHAPES)
    return [(b, d, s) for d in D_VALUES for b in B_VALUES if b * d <= MAX_BD for s in S_VALUES]


def rounds_for(d: int, s: int) -> int:
    """Timed rounds: fewer as one draw of ``s*d`` normals grows (bounded sweep time)."""
    if QUICK_MODE:
        return bench_rounds(3)
    work = s * d
    default = 15 if work <= 2**21 else 11 if work <= 2**24 else 5
    return bench_rounds(default)


def plain_torch(h: torch.Tensor, s: int, gen: torch.Generator) -> None:
    """The five-line PER: materialise ``randn(s, d)``, normalise, project, autograd."""
    theta = torch.randn(s, h.shape[1], generator=gen)
    theta = theta / theta.norm(dim=1, keepdim=True)
    reference.per_loss(h, theta).backward()


@pytest.fixture(scope="session", autouse=True)
def _busy_core():
    """With ``PER_TRITON_BENCH_BUSY=1``, keep one CPU-bound process running meanwhile."""
    if not BUSY:
        yield None
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


SHAPE_PARAMS = [pytest.param(*v, id=f"b{v[0]}-d{v[1]}-s{v[2]}") for v in sweep_shapes(QUICK_MODE)]


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"t{t}")
@pytest.mark.parametrize(("b", "d", "s"), SHAPE_PARAMS)
def test_cpu(benchmark, b: int, d: int, s: int, threads: int) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _run(benchmark, b, d, s, threads)
    finally:
        torch.set_num_threads(previous)


def _run(benchmark, b: int, d: int, s: int, threads: int) -> None:
    h = torch.randn(b, d, generator=torch.Generator().manual_seed(b * 7 + d)).requires_grad_()
    gen = torch.Generator().manual_seed(12345)
    times: dict[str, list[float]] = {"per_triton": [], "torch": []}
    state = {"round": 0}

    def one(provider: str) -> None:
        h.grad = None
        t0 = time.perf_counter()
        if provider == "per_triton":
            per_triton.per_loss(h, s, seed=state["round"]).backward()
        else:
            plain_torch(h, s, gen)
        times[provider].append(time.perf_counter() - t0)

    def pair() -> None:
        order = ("per_triton", "torch") if state["round"] % 2 == 0 else ("torch", "per_triton")
        for provider in order:
            one(provider)
        state["round"] += 1

    for _ in range(WARMUP_ROUNDS):  # first calls at a new shape: allocator, caches
        pair()
    for key in times:
        times[key].clear()
    load_before = _load()
    benchmark.group = f"b{b} d{d} s{s} t{threads}"
    benchmark.pedantic(pair, rounds=rounds_for(d, s), warmup_rounds=0, iterations=1)
    info: dict[str, Any] = {
        "suite": "cpu",
        "b": b,
        "d": d,
        "s": s,
        "threads": threads,
        "busy": BUSY,
        "quick": QUICK_MODE,
        "sampler": normals.sampler(),
        "rounds": len(times["torch"]),
        "load_before": load_before,
        "load_after": _load(),
    }
    for provider, samples in times.items():
        stats = percentiles(samples)
        info.update({f"{provider}_{key}": value for key, value in stats.items()})
    info["median_s"] = info["per_triton_median_s"]
    info["ratio"] = info["per_triton_median_s"] / info["torch_median_s"]
    benchmark.extra_info.update(info)
