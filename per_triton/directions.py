"""The random directions of PER (DESIGN.md section 2).

Directions are ``theta_k = v_k / ||v_k||`` with ``v_k ~ N(0, I_d)``, always drawn in
float32. They are a pure function of ``(seed, k, j)`` and of the device kind.

CPU stream: coordinates are cut into blocks of :data:`STREAM_BLOCK`; block ``c``
gets its own ``torch.Generator`` keyed with :func:`per_triton.seeds.cpu_block_keys`
(32-bit keys, distinct for the blocks of one seed), which draws an
``(s, STREAM_BLOCK)`` row-major tile; ``v[k, j]`` is entry ``(k, j - c*STREAM_BLOCK)``
of that tile. Any block can be regenerated on its own (the backward pass does),
the working chunk of the CPU path is a whole number of blocks, and since torch
fills a tile row by row, row ``k`` does not depend on ``s``. Blocks are independent,
so :func:`draw_columns` draws them on up to ``torch.get_num_threads()`` threads (the
result does not depend on the thread count). CUDA uses Philox kernels
(``per_triton.kernels``), a different stream.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from ._validation import check_device, check_positive_int, seed_tensor
from .seeds import cpu_block_keys

__all__ = ["STREAM_BLOCK", "draw_columns", "draw_tiles", "parallel_map", "sample_directions"]

STREAM_BLOCK = 256
# Below this many normals per call (about half a millisecond of drawing) the draw
# stays on the calling thread: handing blocks to a pool thread costs tens of microseconds.
_PARALLEL_MIN_NORMALS = 1 << 17

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's pool threads: start a new pool there."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _single_threaded(fn, *args):
    """Run ``fn`` on a pool thread whose torch ops use one intra-op thread.

    ``torch.set_num_threads(1)`` on a thread sets that thread's OpenMP and MKL thread
    counts; it also resets torch's process-wide default for threads not yet started,
    which :func:`parallel_map` puts back afterwards.
    """
    if not getattr(_local, "single", False):
        torch.set_num_threads(1)
        _local.single = True
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


def _draw_blocks(keys: list[int], num_slices: int, out, offsets: range, width: int) -> None:
    """Draw the tiles of ``keys`` and copy their first columns into ``out`` (numpy view)."""
    gen = torch.Generator()
    tile = torch.empty(num_slices, STREAM_BLOCK)
    tile_np = tile.numpy()
    for key, offset in zip(keys, offsets, strict=True):
        gen.manual_seed(key)
        torch.randn(num_slices, STREAM_BLOCK, generator=gen, out=tile)
        cols = min(STREAM_BLOCK, width - offset)
        out[:, offset : offset + cols] = tile_np[:, :cols]


def draw_tiles(
    seed: int, num_slices: int, first: int, count: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The tiles of blocks ``first .. first + count - 1``: ``(count, s, STREAM_BLOCK)`` float32.

    Tile ``i`` is ``v[:, (first + i) * STREAM_BLOCK : (first + i + 1) * STREAM_BLOCK]``
    (past ``d`` its columns are drawn but unused), drawn on the calling thread straight
    into ``out`` (contiguous float32 of at least that many elements) if given: no copy.
    """
    size = count * num_slices * STREAM_BLOCK
    tiles = (torch.empty(size) if out is None else out.view(-1)[:size]).view(
        count, num_slices, STREAM_BLOCK
    )
    gen = torch.Generator()
    for key, tile in zip(cpu_block_keys(seed, first, count), tiles, strict=True):
        gen.manual_seed(key)
        torch.randn(num_slices, STREAM_BLOCK, generator=gen, out=tile)
    return tiles


def draw_columns(
    seed: int,
    num_slices: int,
    start: int,
    stop: int,
    out: torch.Tensor | None = None,
    threads: int | None = None,
) -> torch.Tensor:
    """Unnormalised directions ``v[:, start:stop]`` (float32, CPU); ``start`` is block-aligned.

    With ``out`` (float32, contiguous, at least ``(s, stop - start)`` elements), the
    columns are written there and a ``(s, stop - start)`` view of it is returned: no
    allocation proportional to the width. The tiles are drawn on ``threads`` threads
    (default ``torch.get_num_threads()``); the values never depend on it.
    """
    if start % STREAM_BLOCK:
        raise ValueError(f"start must be a multiple of {STREAM_BLOCK}, got {start}")
    width = stop - start
    if out is None:
        out = torch.empty(num_slices, width)
    view = out.view(-1)[: num_slices * width].view(num_slices, width)
    view_np = view.numpy()
    first = start // STREAM_BLOCK
    offsets = range(0, width, STREAM_BLOCK)
    keys = cpu_block_keys(seed, first, len(offsets))
    threads = torch.get_num_threads() if threads is None else threads
    parts = min(threads, len(keys))
    if num_slices * width < _PARALLEL_MIN_NORMALS:
        parts = 1
    bounds = [len(keys) * i // parts for i in range(parts + 1)]

    def draw(part: int) -> None:
        lo, hi = bounds[part], bounds[part + 1]
        _draw_blocks(keys[lo:hi], num_slices, view_np, offsets[lo:hi], width)

    parallel_map(draw, list(range(parts)), parts)
    return view


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


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
    check_positive_int(num_slices, "num_slices")
    check_positive_int(dim, "dim")
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    device = check_device(device)
    seed_t = seed_tensor(seed, device)
    if device.type == "cuda":
        # CUDA stream: the Philox kernel of the fused family (per_triton.kernels).
        from per_triton.kernels.philox_directions import sample_directions_triton

        return sample_directions_triton(num_slices, dim, seed_t, dtype)
    v = draw_columns(int(seed_t.item()), num_slices, 0, dim).to(accumulation_dtype(dtype))
    return (v / torch.linalg.vector_norm(v, dim=1, keepdim=True)).to(dtype)
