"""Kernel benchmark: fused PER vs eager torch vs torch.compile, against a measured floor.

One benchmark per (provider, mode, b, d, s, dtype); the provider and mode are in the
name and in ``extra_info`` (docs/design.md, "Benchmark result files"). The providers
are listed in bench/providers.py (one per estimator of the registry,
:mod:`per_triton.core.estimators`) and defined in bench/kernel_utils.py (``exact``,
``estimator="exact"``, draws no directions, so ``s`` is only its label). Modes:
``forward``, ``backward``, ``full``.

Shapes (full run): the paper's 11-layer CNN layer size ``b=128, d=196608, s=256`` in
every mode, float32 and bf16; a sweep of ``d`` (300 to 2**20) and of ``s`` (64 to
1024) in ``full`` mode. ``compile`` runs at the paper shape and in the float32 ``d``
sweep (each new shape costs a compilation). ``PER_TRITON_BENCH_QUICK=1``: one tiny
shape, no ``compile`` (a CPU smoke test of the code path, not a measurement).

Each ``fused`` result carries ``floor_s`` (draw-only kernel for the normals it draws,
plus its projection FLOPs at the tensor-core rate measured in the same run) and
``over_floor = median_s / floor_s``; each ``exact`` result carries ``floor_s`` = its
memory traffic (``b*d`` elements once per pass over ``h`` or the gradient) at the copy
bandwidth measured in the same run, and ``over_floor``; every result carries
``peak_mem_bytes``.

Run through ``per-triton bench --suite kernel`` (which writes the result file with
GPU name, versions, commit and command), or
``pytest bench/bench_kernels.py --benchmark-json=out.json``. With
``PER_TRITON_BENCH_PARTIAL=<file>`` each result is also appended to a JSON-lines file
as it finishes (pytest-benchmark writes its JSON only at the end of a run).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import torch

from per_triton.bench.common import EventTimer, bench_device, bench_quick, bench_rounds, percentiles
from per_triton.bench.kernel_utils import (
    DTYPES,
    PASSES,
    floor_call,
    floor_info,
    make_case,
    peak_extra_memory,
)
from per_triton.bench.providers import ESTIMATOR_OF, FLOOR, PROVIDERS

QUICK_MODE = bench_quick()
DEVICE = bench_device()
WARMUP = 1 if QUICK_MODE else 3
ROUNDS = bench_rounds(2 if QUICK_MODE else 15)

#: If set, a JSON-lines file that gets each benchmark's extra_info as soon as it ends.
ENV_PARTIAL = "PER_TRITON_BENCH_PARTIAL"

PAPER = (128, 196608, 256)
D_SWEEP = (300, 3072, 32768, 1048576)
S_SWEEP = (64, 128, 512, 1024)


def _shapes() -> list[tuple[str, int, int, int, str, tuple[str, ...]]]:
    """(mode, b, d, s, dtype, providers) for every benchmark of this run."""
    every = PROVIDERS
    no_compile = tuple(p for p in PROVIDERS if p != "compile")
    if QUICK_MODE:
        return [("full", 4, 300, 16, "float32", no_compile)]
    shapes = []
    for dtype in DTYPES:
        for mode in ("forward", "backward", "full"):
            shapes.append((mode, *PAPER, dtype, every))
        for d in D_SWEEP:
            shapes.append(("full", 128, d, 256, dtype, every if dtype == "float32" else no_compile))
    for s in S_SWEEP:
        shapes.append(("full", 128, 196608, s, "float32", no_compile))
    return shapes


def _cases() -> list[Any]:
    cases = []
    for mode, b, d, s, dtype, providers in _shapes():
        for provider in providers:
            case_id = f"{provider}-{mode}-b{b}-d{d}-s{s}-{dtype}"
            cases.append(pytest.param(provider, mode, b, d, s, dtype, id=case_id))
    return cases


@pytest.fixture(autouse=True)
def _free_device_memory():
    yield
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()


def _draws_normals(provider: str) -> bool:
    """The Monte Carlo kernels and their floor draw ``s*d`` normals per pass."""
    return provider == FLOOR or ESTIMATOR_OF.get(provider) == "monte_carlo"


@pytest.mark.parametrize(("provider", "mode", "b", "d", "s", "dtype"), _cases())
def test_kernel(benchmark, provider: str, mode: str, b: int, d: int, s: int, dtype: str) -> None:
    torch_dtype = DTYPES[dtype]
    if provider == FLOOR:
        call = floor_call(mode, b, d, s, DEVICE)
    else:
        call = make_case(provider, mode, b, d, s, torch_dtype, DEVICE)
    for _ in range(WARMUP):  # JIT, autotuning and compilation happen here
        call()
    info: dict[str, Any] = {
        "suite": "kernel",
        "provider": provider,
        "mode": mode,
        "b": b,
        "d": d,
        "s": s,
        "dtype": dtype,
        "device": DEVICE.type,
        "quick": QUICK_MODE,
        "normals_drawn": PASSES[mode] * s * d if _draws_normals(provider) else None,
        "peak_mem_bytes": peak_extra_memory(call, DEVICE),
    }
    info.update(floor_info(provider, mode, b, d, s, torch_dtype, DEVICE))
    timer = EventTimer(call, DEVICE)
    benchmark.group = f"{mode} b{b} d{d} s{s} {dtype}"
    benchmark.extra_info.update(info)
    benchmark.pedantic(timer, rounds=ROUNDS, warmup_rounds=0, iterations=1)
    stats = percentiles(timer.samples())
    benchmark.extra_info.update(stats)
    if provider in ESTIMATOR_OF and "floor_s" in info:
        benchmark.extra_info["over_floor"] = stats["median_s"] / info["floor_s"]
    partial = os.environ.get(ENV_PARTIAL)
    if partial:  # one JSON line per finished benchmark, kept even if the run is cut off
        with open(partial, "a") as f:
            f.write(json.dumps({"name": benchmark.name, **benchmark.extra_info}) + "\n")
