"""The random directions of PER (docs/design.md, "The random stream").

Directions are ``theta_k = v_k / ||v_k||`` with ``v_k ~ N(0, I_d)``, always drawn in
float32. They are a pure function of ``(seed, k, j)`` and of the device kind.

CPU stream (:mod:`per_triton.core.normals`): ``v[k, j]`` is normal ``j mod 4`` of
Philox4x32-10 at counter ``(j // 4, k, 0, 0)`` under the key
``child_seed(seed, "cpu-stream")`` (:func:`per_triton.core.seeds.cpu_stream_key`),
through Box-Muller. Any rectangle of rows and columns is drawn on its own, straight
into a row-major matrix: the CPU path draws a working chunk of columns as one
``(s, width)`` matrix, the backward pass regenerates any chunk, row ``k`` does not
depend on ``s`` and column ``j`` not on ``d``. :func:`draw_columns` splits the rows
over up to ``torch.get_num_threads()`` threads (the values never depend on it).
CUDA uses Philox kernels (``per_triton.kernels``), a different stream.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from per_triton.core import normals
from per_triton.core._validation import (
    check_device,
    check_num_slices,
    check_positive_int,
    seed_tensor,
)
from per_triton.core.dtypes import accumulation_dtype
from per_triton.core.seeds import cpu_stream_key

__all__ = ["draw_columns", "parallel_map", "sample_directions"]

# Below this many normals per call the draw stays on the calling thread: a hand-off to
# a pool thread can wait a scheduler time slice when another process keeps a core
# busy, which costs more than a small draw saves. Measured:
# docs/benchmarks.md, "The CPU path against plain torch".
_PARALLEL_MIN_NORMALS = 1 << 20

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's pool threads: start a new pool there."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _single_threaded(fn, *args):
    """Run ``fn`` on a pool thread whose torch ops use one intra-op thread, without autograd.

    ``torch.set_num_threads(1)`` on a thread sets that thread's OpenMP and MKL thread
    counts; it also resets torch's process-wide default (and MKL's global count),
    which :func:`parallel_map` puts back afterwards, so it is set again on every call:
    a count cached per thread would be undone by that reset, leaving the pool's
    products two-threaded side by side (its cost: docs/cpu-path.md).
    """
    torch.set_num_threads(1)
    # Grad mode is per thread and on by default: work handed here is always an op's
    # implementation (the caller runs without autograd), so it must not record a graph
    # (a float64 chunk kept alive by one, or ``mm(out=...)`` refused in double backward).
    with torch.no_grad():
        return fn(*args)


def parallel_map(fn, items: list, threads: int) -> list:
    """``[fn(x) for x in items]``, one item per pool thread when ``threads > 1``.

    Each item runs on its own single-threaded worker, so the work is split once per
    call (no per-operation thread barrier: on a machine where another process is busy
    a barrier can wait a whole scheduler time slice). Results come back in order.
    """
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    global _pool
    main_threads = torch.get_num_threads()
    with _pool_lock:
        if _pool is None or _pool._max_workers < len(items):
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(len(items), thread_name_prefix="per_triton_cpu")
        pool = _pool
    try:
        futures = [pool.submit(_single_threaded, fn, x) for x in items]
        return [f.result() for f in futures]
    finally:
        torch.set_num_threads(main_threads)  # the process-wide default, see above


def draw_columns(
    seed: int,
    num_slices: int,
    start: int,
    stop: int,
    out: torch.Tensor | None = None,
    threads: int | None = None,
) -> torch.Tensor:
    """Unnormalised directions ``v[:, start:stop]`` ``(s, stop - start)``, float32, CPU.

    With ``out`` (float32, contiguous, at least ``s * (stop - start)`` elements), the
    columns are written there and a view of it is returned: no allocation. The rows are
    split over ``threads`` threads (default ``torch.get_num_threads()``) when the draw
    is large enough to pay for it; the values never depend on the split.
    """
    width = stop - start
    if out is None:
        out = torch.empty(num_slices, width)
    view = out.view(-1)[: num_slices * width].view(num_slices, width)
    key = cpu_stream_key(seed)
    threads = torch.get_num_threads() if threads is None else threads
    parts = min(threads, num_slices)
    if num_slices * width < _PARALLEL_MIN_NORMALS:
        parts = 1
    if parts <= 1:
        return normals.fill(key, 0, start, view)
    bounds = [num_slices * i // parts for i in range(parts + 1)]

    def draw(part: int) -> None:
        lo, hi = bounds[part], bounds[part + 1]
        normals.fill(key, lo, start, view[lo:hi])

    parallel_map(draw, list(range(parts)), parts)
    return view


def sample_directions(
    num_slices: int,
    dim: int,
    seed: int | torch.Tensor,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Materialise the unit directions that :func:`per_triton.per_loss` uses.

    Args:
        num_slices: number of directions ``s >= 1``.
        dim: dimension ``d >= 1`` of each direction.
        seed: int in ``[0, 2**63)`` or a ``(1,)`` int64 tensor on ``device``.
        device: device kind whose stream is used (``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``); CUDA must be available for the latter.
        dtype: output dtype; the draw is float32, normalised in float64 for a
            float64 output and in float32 otherwise.

    Returns:
        ``(num_slices, dim)`` tensor with unit rows.

    Raises:
        TypeError / ValueError naming the bad argument (ValueError for
        ``device="cuda"`` without CUDA, or a device other than cpu / cuda).

    Example:
        >>> theta = sample_directions(256, 784, seed=0)
        >>> h = torch.randn(32, 784)
        >>> reference.per_loss(h, theta) == per_loss(h, 256, seed=0)  # up to rounding
    """
    check_num_slices(num_slices)
    check_positive_int(dim, "dim")
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    device = check_device(device)
    if seed is None:  # a fresh random seed would give directions no call can reproduce
        raise TypeError("seed must be an int or a (1,) int64 tensor, got None")
    seed_t = seed_tensor(seed, device)
    if device.type == "cuda":
        # CUDA stream: the Philox kernel of the fused family (per_triton.kernels).
        from per_triton.core.triton_support import require_triton

        require_triton()
        from per_triton.kernels.philox_directions import sample_directions_triton

        return sample_directions_triton(num_slices, dim, seed_t, dtype)
    v = draw_columns(int(seed_t.item()), num_slices, 0, dim).to(accumulation_dtype(dtype))
    return (v / torch.linalg.vector_norm(v, dim=1, keepdim=True)).to(dtype)
