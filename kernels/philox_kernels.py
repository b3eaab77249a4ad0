"""The ``@triton.jit`` direction kernels: materialised directions, raw words, the draw floor.

Each inlines the stream of :mod:`per_triton.kernels.philox_stream`
(docs/design.md, "The CUDA stream"): ``normals_kernel`` writes a window of ``v`` (behind
:func:`per_triton.sample_directions` on CUDA), ``words_kernel`` exposes the raw Philox
words (for tests against an independent Philox) and ``draw_sum_kernel`` only draws
and sums, the benchmark floor. Their launches are in
:mod:`per_triton.kernels.philox_directions`.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .philox_stream import gaussian_quad, philox_words4

__all__ = ["draw_sum_kernel", "normals_kernel", "words_kernel"]


@triton.jit
def normals_kernel(
    # pointers
    seed_ptr,
    out_ptr,
    # sizes: slices, first and one-past-last coordinate of the window
    S,
    col_start,
    col_stop,
    # strides
    stride_out_s,
    # meta-parameters
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
    N_ROUNDS: tl.constexpr,
    SFU: tl.constexpr,
):
    """Write ``v[k, j]`` for ``k < S`` and ``col_start <= j < col_stop`` (window-relative)."""
    pid_s = tl.program_id(0)
    pid_d = tl.program_id(1)
    seed = tl.load(seed_ptr)
    QS: tl.constexpr = BLOCK_S // 4
    offs_q = pid_s * QS + tl.arange(0, QS)
    offs_j = col_start + pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    n0, n1, n2, n3 = gaussian_quad(seed, offs_q, offs_j, N_ROUNDS, SFU)
    mask_j = (offs_j < col_stop)[None, :]
    cols = (offs_j - col_start).to(tl.int64)[None, :]
    k = offs_q.to(tl.int64) * 4
    tl.store(
        out_ptr + (k + 0)[:, None] * stride_out_s + cols, n0, mask=(k + 0 < S)[:, None] & mask_j
    )
    tl.store(
        out_ptr + (k + 1)[:, None] * stride_out_s + cols, n1, mask=(k + 1 < S)[:, None] & mask_j
    )
    tl.store(
        out_ptr + (k + 2)[:, None] * stride_out_s + cols, n2, mask=(k + 2 < S)[:, None] & mask_j
    )
    tl.store(
        out_ptr + (k + 3)[:, None] * stride_out_s + cols, n3, mask=(k + 3 < S)[:, None] & mask_j
    )


@triton.jit
def words_kernel(
    # pointers
    seed_ptr,
    q_ptr,
    j_ptr,
    out_ptr,
    # sizes
    N,
    # meta-parameters
    BLOCK: tl.constexpr,
    N_ROUNDS: tl.constexpr,
):
    """The four raw Philox words of counter ``(j, q, 0, 0)`` for ``N`` given pairs."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    seed = tl.load(seed_ptr)
    q = tl.load(q_ptr + offs, mask=mask, other=0)
    j = tl.load(j_ptr + offs, mask=mask, other=0)
    w0, w1, w2, w3 = philox_words4(seed, j.to(tl.uint32), q.to(tl.uint32), N_ROUNDS)
    base = out_ptr + offs.to(tl.int64) * 4
    tl.store(base + 0, w0.to(tl.int64) & 0xFFFFFFFF, mask=mask)
    tl.store(base + 1, w1.to(tl.int64) & 0xFFFFFFFF, mask=mask)
    tl.store(base + 2, w2.to(tl.int64) & 0xFFFFFFFF, mask=mask)
    tl.store(base + 3, w3.to(tl.int64) & 0xFFFFFFFF, mask=mask)


@triton.jit
def draw_sum_kernel(
    # pointers
    seed_ptr,
    out_ptr,
    # sizes
    S,
    D,
    split_d,
    # meta-parameters
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
    N_ROUNDS: tl.constexpr,
    SFU: tl.constexpr,
):
    """Draw-only floor: generate ``v[k, j]`` like the fused kernels and sum it.

    Same grid as the fused forward (slice tiles x splits of ``d``); the full tiles
    of a split run unmasked, a partial last tile masked to the split, as in the
    forward. One
    float32 partial per program, so nothing but the draw is timed.
    """
    pid_s = tl.program_id(0)
    pid_split = tl.program_id(1)
    seed = tl.load(seed_ptr)
    QS: tl.constexpr = BLOCK_S // 4
    offs_q = pid_s * QS + tl.arange(0, QS)
    d_lo = pid_split * split_d
    d_hi = tl.minimum(d_lo + split_d, D)
    d_full = d_lo + (d_hi - d_lo) // BLOCK_D * BLOCK_D
    acc0 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    acc1 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    acc2 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    acc3 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    for j0 in range(d_lo, d_full, BLOCK_D):
        n0, n1, n2, n3 = gaussian_quad(seed, offs_q, j0 + tl.arange(0, BLOCK_D), N_ROUNDS, SFU)
        acc0 += n0
        acc1 += n1
        acc2 += n2
        acc3 += n3
    if d_full < d_hi:
        offs_j = d_full + tl.arange(0, BLOCK_D)
        n0, n1, n2, n3 = gaussian_quad(seed, offs_q, offs_j, N_ROUNDS, SFU)
        mask_j = (offs_j < d_hi)[None, :]
        acc0 += tl.where(mask_j, n0, 0.0)
        acc1 += tl.where(mask_j, n1, 0.0)
        acc2 += tl.where(mask_j, n2, 0.0)
        acc3 += tl.where(mask_j, n3, 0.0)
    # rows k = 4q + w past S are drawn but not summed
    k = offs_q * 4
    total = tl.sum(tl.where(k + 0 < S, tl.sum(acc0, axis=1), 0.0), axis=0)
    total += tl.sum(tl.where(k + 1 < S, tl.sum(acc1, axis=1), 0.0), axis=0)
    total += tl.sum(tl.where(k + 2 < S, tl.sum(acc2, axis=1), 0.0), axis=0)
    total += tl.sum(tl.where(k + 3 < S, tl.sum(acc3, axis=1), 0.0), axis=0)
    tl.store(out_ptr + pid_s * tl.num_programs(1) + pid_split, total)
