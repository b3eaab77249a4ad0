"""Helpers of the kernel benchmark (bench/bench_kernels.py): providers, memory, floor.

Providers (their list: ``bench/providers.py``; docs/design.md, "Benchmark result files"):

- one per estimator of :mod:`per_triton.core.estimators`, named by its ``provider``:
  ``per_triton.per_loss(h, s, estimator=...)`` on the device (``s`` only for an
  estimator with slices);
- ``fused``: the ``monte_carlo`` estimator (the fused Triton kernels on CUDA, TF32
  dots for float32 by default);
- ``eager``: the plain torch a user would write: ``torch.randn`` directions,
  materialised ``s x d``, normalised, ``h @ theta.T``, ``psi``; default matmul
  precision (full float32 on CUDA unless the user enables TF32);
- ``eager_tf32``: the same with ``torch.backends.cuda.matmul.allow_tf32 = True``;
- ``compile``: ``torch.compile`` of the ``eager`` function;
- ``exact``: the ``exact`` estimator (no directions: one read of ``h`` for the row
  norms, one read of ``h`` and one write of the gradient); its floor is that memory
  traffic at the copy bandwidth measured in the same run (:func:`exact_floor_seconds`);
- ``floor``: the draw-only kernel for the normals the fused kernels draw (``s*d``
  per pass) plus the projection GEMM FLOPs (``2*b*d*s`` per pass) at the tensor-core
  rate measured on this GPU in this run (docs/design.md, "Measuring performance"):
  TF32 for float32, the activation dtype for the bf16 forward, TF32 for every backward
  (float32 coefficients).

An estimator's provider gets a floor where :func:`floor_info` has a model of its
kernels' work (``fused``, ``exact``); others are timed without one.

Modes: ``forward`` (loss only), ``backward`` (gradient of a retained graph),
``full`` (loss and gradient). Peak extra memory: the peak allocated during one call
minus what was allocated before it, minus the call's outputs (loss and gradient).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch

import per_triton as pt
from per_triton.bench.providers import ESTIMATOR_OF, FLOOR
from per_triton.core import reference
from per_triton.core.estimators import ESTIMATORS

MODES = ("forward", "backward", "full")
DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}
PASSES = {"forward": 1, "backward": 1, "full": 2}


def eager_per_loss(h: torch.Tensor, num_slices: int) -> torch.Tensor:
    """PER loss (Eq. 5, mean) as plain torch: fresh directions, materialised."""
    v = torch.randn(num_slices, h.shape[1], device=h.device, dtype=torch.float32)
    theta = (v / torch.linalg.vector_norm(v, dim=1, keepdim=True)).to(h.dtype)
    p = (h @ theta.T).float()
    return reference.psi(p).mean()


@functools.cache
def compiled_per_loss() -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``torch.compile`` of :func:`eager_per_loss` (one compiled function for all shapes)."""
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(eager_per_loss)


@contextmanager
def matmul_tf32(enabled: bool):
    """Temporarily set ``torch.backends.cuda.matmul.allow_tf32``."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def loss_fn(provider: str) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``(h, s) -> loss`` of ``provider`` (an estimator's, or a plain-torch one)."""
    if provider in ESTIMATOR_OF:
        entry = ESTIMATORS[ESTIMATOR_OF[provider]]
        if entry.sliced:
            return lambda h, s: pt.per_loss(h, s, estimator=entry.name)
        return lambda h, s: pt.per_loss(h, estimator=entry.name)
    if provider in ("eager", "eager_tf32"):
        return eager_per_loss
    if provider == "compile":
        return compiled_per_loss()
    raise ValueError(f"no loss function for provider {provider!r}")


def make_case(
    provider: str, mode: str, b: int, d: int, s: int, dtype: torch.dtype, device: torch.device
) -> Callable[[], Any]:
    """The call to time for ``provider`` in ``mode``; set-up work happens here, not in it."""
    torch.manual_seed(0)
    h = torch.randn(b, d, device=device, dtype=dtype)
    fn = loss_fn(provider)
    tf32 = provider == "eager_tf32"

    if mode == "forward":

        def call() -> Any:
            with matmul_tf32(tf32) if tf32 else _null():
                return fn(h, s)

        return call
    h.requires_grad_(True)
    if mode == "full":

        def call() -> Any:
            with matmul_tf32(tf32) if tf32 else _null():
                loss = fn(h, s)
                return loss, torch.autograd.grad(loss, h)[0]

        return call
    if mode == "backward":
        with matmul_tf32(tf32) if tf32 else _null():
            loss = fn(h, s)

        def call() -> Any:
            with matmul_tf32(tf32) if tf32 else _null():
                return torch.autograd.grad(loss, h, retain_graph=True)[0]

        return call
    raise ValueError(f"unknown mode {mode!r}")


@contextmanager
def _null():
    yield


def _bytes(out: Any) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, (tuple, list)):
        return sum(_bytes(x) for x in out)
    return 0


def peak_extra_memory(call: Callable[[], Any], device: torch.device) -> int | None:
    """Peak bytes allocated during ``call()`` beyond what existed before and its outputs."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    out = call()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return max(0, peak - before - _bytes(out))


def median_time(call: Callable[[], Any], device: torch.device, reps: int = 10) -> float:
    """Median seconds of ``reps`` synchronised calls after two warm-up calls."""
    from per_triton.bench.common import time_call

    for _ in range(2):
        call()
    times = sorted(time_call(call, device) for _ in range(reps))
    return times[len(times) // 2]


@functools.cache
def gemm_rate(dtype: torch.dtype, device: torch.device) -> float:
    """Measured dense GEMM rate (FLOP/s) on the tensor cores: TF32 for float32, else bf16."""
    n = 8192 if device.type == "cuda" else 256
    a = torch.randn(n, n, device=device, dtype=dtype)
    bm = torch.randn(n, n, device=device, dtype=dtype)
    with matmul_tf32(True):
        t = median_time(lambda: a @ bm, device)
    return 2.0 * n**3 / t


def draw_config(b: int, d: int, s: int, device: torch.device) -> list[dict[str, int]]:
    """Tiles tried for the draw-only kernel (the fastest one sets the floor)."""
    if device.type != "cuda":
        return [{"block_s": 16, "block_d": 64, "num_warps": 4}]
    return [
        {"block_s": 16, "block_d": 128, "num_warps": 4},
        {"block_s": 32, "block_d": 128, "num_warps": 8},
        {"block_s": 16, "block_d": 256, "num_warps": 8},
        {"block_s": 64, "block_d": 64, "num_warps": 8},
    ]


@functools.cache
def best_draw(b: int, d: int, s: int, device: torch.device) -> tuple[float, dict[str, int]]:
    """Seconds to draw (and sum) the ``s*d`` normals of one pass, and the fastest tile."""
    from per_triton.kernels.per_fused import plan_splits
    from per_triton.kernels.philox_directions import draw_and_sum

    seed = torch.tensor([1], dtype=torch.int64, device=device)
    split_d, _ = plan_splits(b, d, s, device)
    best: tuple[float, dict[str, int]] = (math.inf, {})
    for cfg in draw_config(b, d, s, device):
        t = median_time(lambda cfg=cfg: draw_and_sum(s, d, seed, split_d=split_d, **cfg), device)
        best = min(best, (t, cfg), key=lambda x: x[0])
    return best


def floor_seconds(
    mode: str, b: int, d: int, s: int, dtype: torch.dtype, device: torch.device
) -> dict[str, float]:
    """The floor for ``mode``: draw time plus GEMM FLOPs at rate
    (docs/design.md, "Measuring performance").

    Each pass draws ``s*d`` normals and does ``2*b*d*s`` FLOPs: the forward's dot runs
    in the activation dtype (TF32 for float32), the backward's on float32 operands
    (TF32), so each pass's FLOPs are charged at the rate measured for that kind.
    """
    passes = PASSES[mode]
    draw = passes * best_draw(b, d, s, device)[0]
    flops = 2.0 * b * d * s
    tf32 = gemm_rate(torch.float32, device)
    fwd_rate = tf32 if dtype == torch.float32 else gemm_rate(dtype, device)
    gemm = {"forward": flops / fwd_rate, "backward": flops / tf32}
    gemm["full"] = gemm["forward"] + gemm["backward"]
    return {
        "floor_s": draw + gemm[mode],
        "draw_s": draw,
        "gemm_s": gemm[mode],
        "gemm_rate_flops": fwd_rate,
        "gemm_rate_tf32_flops": tf32,
    }


def floor_call(mode: str, b: int, d: int, s: int, device: torch.device) -> Callable[[], Any]:
    """The draw-only work of ``mode`` as one call (timed as the ``floor`` provider)."""
    from per_triton.kernels.per_fused import plan_splits
    from per_triton.kernels.philox_directions import draw_and_sum

    seed = torch.tensor([1], dtype=torch.int64, device=device)
    split_d, _ = plan_splits(b, d, s, device)
    cfg = best_draw(b, d, s, device)[1]

    def call() -> Any:
        return [draw_and_sum(s, d, seed, split_d=split_d, **cfg) for _ in range(PASSES[mode])]

    return call


#: Passes over ``b*d`` elements of the exact estimator: the forward reads ``h``; the
#: backward reads ``h`` and writes the gradient.
EXACT_TRAFFIC = {"forward": 1, "backward": 2, "full": 3}


@functools.cache
def copy_bandwidth(numel: int, dtype: torch.dtype, device: torch.device) -> float:
    """Measured bytes/s of ``dst.copy_(src)`` on ``numel`` elements (read + write)."""
    src = torch.randn(numel, device=device).to(dtype)
    dst = torch.empty_like(src)
    t = median_time(lambda: dst.copy_(src), device)
    return 2.0 * numel * src.element_size() / t


def exact_floor_seconds(
    mode: str, b: int, d: int, dtype: torch.dtype, device: torch.device
) -> dict[str, float]:
    """Memory floor of the exact estimator: its ``b*d`` traffic at the measured copy rate."""
    elem = torch.empty((), dtype=dtype).element_size()
    traffic = EXACT_TRAFFIC[mode] * b * d * elem
    bw = copy_bandwidth(b * d, dtype, device)
    return {"floor_s": traffic / bw, "traffic_bytes": traffic, "copy_bandwidth_bytes_s": bw}


def floor_info(
    provider: str, mode: str, b: int, d: int, s: int, dtype: torch.dtype, device: torch.device
) -> dict[str, float]:
    """``provider``'s floor (``floor_s`` and its parts), or ``{}`` without a model of its work.

    The ``monte_carlo`` kernels and the ``floor`` provider: :func:`floor_seconds`; the
    ``exact`` kernels: :func:`exact_floor_seconds`.
    """
    estimator = ESTIMATOR_OF.get(provider)
    if estimator == "monte_carlo" or provider == FLOOR:
        return floor_seconds(mode, b, d, s, dtype, device)
    if estimator == "exact":
        return exact_floor_seconds(mode, b, d, dtype, device)
    return {}
