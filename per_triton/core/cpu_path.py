"""The CPU implementation of PER: forward and backward in chunks of coordinates.

It never holds the ``s x d`` direction matrix of a large layer: each working chunk
of about :data:`WORK_BYTES` of directions, a row-major ``(s, width)`` matrix of the
CPU stream (:mod:`per_triton.core.normals`), is drawn, used in one matrix product and
dropped, so extra memory is ``O(s * chunk + b * s)`` whatever ``d`` is, plus the
kept directions: the forward pass keeps the leading chunks that fit the budget of
:mod:`per_triton.core.kept_directions`, and the backward pass takes them and
regenerates only the chunks past it from the seed (docs/design.md, "The CPU path").
A layer whose directions fit is drawn once per step instead of twice; the values
never depend on what was kept.
"""

from __future__ import annotations

import math

import torch

from per_triton.core import kept_directions
from per_triton.core.directions import draw_columns, parallel_map
from per_triton.core.dtypes import accumulation_dtype
from per_triton.core.reference import loss_and_coefficients

__all__ = [
    "WORK_BYTES",
    "backward",
    "chunk_count",
    "default_chunk",
    "forward",
    "forward_small",
    "projections",
]

#: Working chunk of directions, in bytes of float32 (4 MiB).
WORK_BYTES = 4 * 2**20
#: Chunk widths are multiples of this many columns (256 bytes of a float32 row).
CHUNK_ALIGN = 64
# Below this many normals per call one thread does the call: handing parts to pool
# threads costs more than it saves (docs/cpu-sampler.md).
# (Not also forced onto one intra-op thread: torch.set_num_threads(1) resets torch's
# process-wide default, which threads started meanwhile would keep.)
_SPLIT_MIN_NORMALS = 1 << 19
# Batches above this many rows split the chunks over threads only past the budget.
_SPLIT_MAX_ROWS = 64


def default_chunk(num_slices: int, dim: int | None = None, threads: int = 1) -> int:
    """Columns per working chunk: at most :data:`WORK_BYTES` of directions, a multiple
    of :data:`CHUNK_ALIGN`.

    With ``dim`` and ``threads``, the chunk is shrunk (never grown) so that the chunks
    split evenly over the threads.
    """
    cols = max(CHUNK_ALIGN, WORK_BYTES // (4 * num_slices) // CHUNK_ALIGN * CHUNK_ALIGN)
    if dim is not None and threads > 1:
        count = math.ceil(math.ceil(dim / cols) / threads) * threads
        cols = max(CHUNK_ALIGN, math.ceil(dim / count / CHUNK_ALIGN) * CHUNK_ALIGN)
    return cols


def _chunks(dim: int, chunk: int) -> list[tuple[int, int]]:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    return [(start, min(dim, start + chunk)) for start in range(0, dim, chunk)]


def _plan(b: int, dim: int, num_slices: int, chunk: int | None) -> tuple[int, int]:
    """``(chunk, parts)``: the working chunk and how many threads share the chunks.

    One part per torch thread once there are at least two chunks and the draw is
    worth splitting; otherwise the chunks run in order, each drawing its rows on
    the torch threads and taking a product on torch's intra-op threads. A batch of
    more than :data:`_SPLIT_MAX_ROWS` rows whose directions fit the budget (drawn
    once) is not split: the products dominate there and take torch's intra-op
    threads (the measurements behind both thresholds: docs/cpu-sampler.md).
    """
    threads = torch.get_num_threads()
    if num_slices * dim < _SPLIT_MIN_NORMALS or (
        b > _SPLIT_MAX_ROWS and 4 * num_slices * dim <= kept_directions.cache_budget()
    ):
        threads = 1
    chunk = chunk or default_chunk(num_slices, dim, threads)
    return chunk, max(1, min(threads, math.ceil(dim / chunk)))


def _split(items: list, parts: int) -> list[list]:
    """``items`` in ``parts`` contiguous runs of near-equal length."""
    bounds = [len(items) * i // parts for i in range(parts + 1)]
    return [items[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def _draw(seed: int, num_slices: int, start: int, stop: int, out, parts: int) -> torch.Tensor:
    """``v[:, start:stop]`` as a row-major ``(s, stop - start)`` float32 matrix.

    A single part (one chunk for the whole call) draws its rows on the torch threads;
    within a part of a split call, on the part's own thread.
    """
    threads = torch.get_num_threads() if parts == 1 else 1
    return draw_columns(seed, num_slices, start, stop, out, threads)


def _project_chunk(h: torch.Tensor, v: torch.Tensor, start: int, stop: int, proj, sq_norm) -> None:
    """Add the chunk's ``h[:, start:stop] @ V^T`` to ``proj`` and its ``||v_k||^2`` to ``sq_norm``.

    ``v``: the chunk ``(s, stop - start)`` in the accumulation dtype; one matrix
    product and one contiguous row reduction.
    """
    sq_norm.add_(torch.linalg.vector_norm(v, dim=1).square())
    proj.addmm_(h[:, start:stop].to(v.dtype), v.T)


def _combine_chunk(
    coeff: torch.Tensor, v: torch.Tensor, start: int, stop: int, grad: torch.Tensor, direct: bool
) -> None:
    """Write ``coeff @ V`` for the chunk's columns into ``grad[:, start:stop]``.

    ``direct``: ``grad`` has ``coeff``'s dtype, so the product goes straight into its
    columns.
    """
    if direct:
        torch.mm(coeff, v, out=grad[:, start:stop])
    else:
        grad[:, start:stop] = coeff @ v


def _keep_count(chunks: list[tuple[int, int]], num_slices: int, chunk: int, parts: int) -> int:
    """How many leading chunks to keep: they and the parts' working buffers (one chunk
    each) together stay within the budget."""
    room = kept_directions.cache_budget() - parts * 4 * num_slices * chunk
    count = 0
    for start, stop in chunks:
        room -= 4 * num_slices * (stop - start)
        if room < 0:
            break
        count += 1
    return count


def projections(
    h: torch.Tensor, seed: int, num_slices: int, chunk: int | None = None, keep: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised projections ``H @ V^T`` ``(b, s)`` and row norms ``||v_k||`` ``(s,)``.

    Both are accumulated chunk by chunk in the accumulation dtype; the chunks are
    split into contiguous runs, one per torch thread, and the runs' sums added in
    order (so the result depends on the thread count only through rounding). With
    ``keep``, the leading chunks that fit in the budget, less the working buffers of
    the parts (one chunk each), are stored for :func:`backward`.
    """
    b, dim = h.shape
    acc = accumulation_dtype(h.dtype)
    chunk, parts = _plan(b, dim, num_slices, chunk)
    chunks = _chunks(dim, chunk)
    keep_count = _keep_count(chunks, num_slices, chunk, parts) if keep else 0

    def run(run_chunks: list[tuple[int, tuple[int, int]]]):
        proj = torch.zeros(b, num_slices, dtype=acc)
        sq_norm = torch.zeros(num_slices, dtype=acc)
        kept: list[torch.Tensor] = []
        buffer = None
        for index, (start, stop) in run_chunks:
            if index < keep_count:  # a fresh tensor, kept for the backward pass
                v = _draw(seed, num_slices, start, stop, None, parts)
                kept.append(v)
            else:
                if buffer is None:
                    buffer = torch.empty(num_slices * chunk)
                v = _draw(seed, num_slices, start, stop, buffer, parts)
            _project_chunk(h, v.to(acc), start, stop, proj, sq_norm)
        return proj, sq_norm, kept

    results = parallel_map(run, _split(list(enumerate(chunks)), parts), parts)
    proj, sq_norm, kept = results[0]
    for other_proj, other_sq, other_kept in results[1:]:
        proj.add_(other_proj)
        sq_norm.add_(other_sq)
        kept += other_kept
    if kept:
        kept_directions.keep((seed, num_slices, dim, chunk), kept)
    return proj, sq_norm.sqrt()


def forward_small(
    h: torch.Tensor, seed: int, num_slices: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """:func:`forward` for directions drawn as one matrix and kept whole for the backward.

    Taken when the directions fit :func:`~per_triton.core.kept_directions.cache_budget`
    and either are one working chunk (:data:`WORK_BYTES`; small layers, where
    per-call overhead dominates) or the batch has more than :data:`_SPLIT_MAX_ROWS`
    rows (the two products dominate: one product each way, as plain torch does,
    instead of one per chunk; the measurements: docs/cpu-sampler.md).

    ``h``: ``(b, d)`` activations, any float dtype (computed in
    :func:`~per_triton.core.dtypes.accumulation_dtype`). Returns ``(loss_sum, coeff, v)``
    as :func:`forward` does (0-d and ``(b, s)``, Eq. 5 / 6) plus the drawn ``v``
    ``(s, d)`` float32 for the caller to keep for the backward pass
    (``grad = coeff @ v``), or ``None`` otherwise (then use :func:`forward`).
    """
    b, dim = h.shape
    size = 4 * num_slices * dim
    if size > kept_directions.cache_budget() or (size > WORK_BYTES and b <= _SPLIT_MAX_ROWS):
        return None
    v = draw_columns(seed, num_slices, 0, dim)
    acc = accumulation_dtype(h.dtype)
    va = v if acc == torch.float32 else v.to(acc)
    norm = torch.linalg.vector_norm(va, dim=1)
    proj = torch.mm(h.to(acc), va.T)
    loss_sum, coeff = loss_and_coefficients(proj, norm, num_slices)
    return loss_sum, coeff, v


def forward(
    h: torch.Tensor, seed: int, num_slices: int, chunk: int | None = None, keep: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5 without the ``1/b``: ``sum_i (1/s) sum_k psi(p_ik)``, plus the backward coefficients.

    Returns ``(loss_sum, coeff)`` with ``coeff[i, k] = erf(p_ik/sqrt2) / (s * ||v_k||)``.
    With ``keep`` (default), the directions within the budget are kept for :func:`backward`.
    """
    proj, norm = projections(h, seed, num_slices, chunk, keep=keep)
    return loss_and_coefficients(proj, norm, num_slices)


def backward(
    coeff: torch.Tensor,
    seed: int,
    dim: int,
    out_dtype: torch.dtype,
    chunk: int | None = None,
) -> torch.Tensor:
    """Eq. 6 on unnormalised rows: ``grad[i, j] = sum_k coeff[i, k] * v_kj``, ``(b, dim)``.

    Uses the chunks the forward pass kept for ``(seed, s, dim, chunk)`` (taking them
    out of the store) and regenerates the others; each thread fills its own columns.
    """
    b, num_slices = coeff.shape
    chunk, parts = _plan(b, dim, num_slices, chunk)
    kept = kept_directions.take((seed, num_slices, dim, chunk))
    grad = torch.empty(b, dim, dtype=out_dtype)

    same_dtype = out_dtype == coeff.dtype

    def run(run_chunks: list[tuple[int, tuple[int, int]]]) -> None:
        buffer = None
        for index, (start, stop) in run_chunks:
            if index < len(kept):
                v = kept[index]
                kept[index] = None  # type: ignore[call-overload]  # free as we go
            else:
                if buffer is None:
                    buffer = torch.empty(num_slices * chunk)
                v = _draw(seed, num_slices, start, stop, buffer, parts)
            _combine_chunk(coeff, v.to(coeff.dtype), start, stop, grad, same_dtype)

    parallel_map(run, _split(list(enumerate(_chunks(dim, chunk))), parts), parts)
    return grad


def chunk_count(dim: int, num_slices: int) -> int:
    """Number of working chunks for ``dim`` coordinates (used by progress and tests)."""
    return math.ceil(dim / default_chunk(num_slices))
