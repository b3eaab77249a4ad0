"""The CUDA direction stream: Philox4x32-10 Gaussian tiles (DESIGN.md section 2).

PER draws ``s`` directions ``theta_k = v_k / ||v_k||`` with ``v_k ~ N(0, I_d)``
(Eq. 5). On CUDA, and under ``TRITON_INTERPRET=1`` on CPU tensors, ``v[k, j]`` is a
pure function of ``(seed, k, j)``:

* coordinates ``j = 4m .. 4m+3`` of slice ``k`` share one Philox4x32 call whose
  counter is ``(c0, c1, c2, c3) = (m, k, 0, 0)`` and whose key is
  ``(seed & 0xFFFFFFFF, seed >> 32)``; this is ``tl.randn4x(seed, (k << 32) | m)``;
* the call's four 32-bit words ``w0..w3`` become uniforms with Triton's
  ``uint_to_uniform_float`` and normals with its Box-Muller transform:
  ``(w0, w1) -> (v[k, 4m], v[k, 4m+1])`` and ``(w2, w3) -> (v[k, 4m+2], v[k, 4m+3])``;
* 10 Philox rounds (Triton's default), four normals per call, no draw is discarded
  except the padding past ``d`` in the last group of four.

Nothing here depends on block sizes, grids, ``s`` or ``d``: row ``k`` of a
``(s, d)`` draw is a prefix of row ``k`` of any larger draw. ``k`` and ``m`` sit in
separate 32-bit counter words, so no index wraps for ``s < 2**31``, ``d < 2**31``.

This file holds the tile generator :func:`gaussian_tile` (shared with the fused
kernels in :mod:`per_triton.kernels.per_fused`), the kernel that materialises
directions for :func:`per_triton.sample_directions`, a kernel that exposes the raw
Philox words (for tests against an independent Philox), and the draw-only kernel
that sets the benchmark floor. Kernels first, launchers after.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = [
    "PHILOX_ROUNDS",
    "gaussian_tile",
    "philox_normals",
    "philox_words",
    "draw_and_sum",
    "sample_directions_triton",
]

#: Philox rounds per call (Triton's default, the published Philox4x32-10).
PHILOX_ROUNDS = 10

# Tiles used by the launchers below. They only set the work split: the values
# drawn never depend on them (tested in tests/test_philox_stream.py).
_DEFAULT_TILE = {"BLOCK_S": 16, "BLOCK_D": 128}


# --------------------------------------------------------------------------- kernels


@triton.jit
def gaussian_tile(
    seed,
    offs_k,
    j0,
    BLOCK_D: tl.constexpr,
    N_ROUNDS: tl.constexpr,
):
    """Unnormalised Gaussian tile ``v[offs_k, j0 : j0 + BLOCK_D]`` (float32).

    ``seed`` is an int64 scalar, ``offs_k`` a ``(BLOCK_S,)`` block of slice indices,
    ``j0`` the first coordinate (a multiple of 4). One ``tl.randn4x`` call per group
    of four consecutive coordinates: counter ``(k << 32) | m`` with ``m = j // 4``;
    output word ``w`` of that call is coordinate ``4m + w``.
    """
    BLOCK_M: tl.constexpr = BLOCK_D // 4
    offs_m = (j0 // 4) + tl.arange(0, BLOCK_M)
    counter = (offs_k.to(tl.int64)[:, None] << 32) | offs_m.to(tl.int64)[None, :]
    n0, n1, n2, n3 = tl.randn4x(seed, counter, N_ROUNDS)
    # Interleave so that flat index 4m + w holds word w: [m, p, q] -> w = 2p + q.
    v = tl.join(tl.join(n0, n2), tl.join(n1, n3))
    return tl.reshape(v, (offs_k.shape[0], BLOCK_D))


@triton.jit
def _normals_kernel(
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
):
    """Write ``v[k, j]`` for ``k < S`` and ``col_start <= j < col_stop`` (window-relative)."""
    pid_s = tl.program_id(0)
    pid_d = tl.program_id(1)
    seed = tl.load(seed_ptr)
    offs_k = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    j0 = col_start + pid_d * BLOCK_D
    offs_j = j0 + tl.arange(0, BLOCK_D)
    v = gaussian_tile(seed, offs_k, j0, BLOCK_D, N_ROUNDS)
    mask = (offs_k < S)[:, None] & (offs_j < col_stop)[None, :]
    ptrs = (
        out_ptr
        + offs_k.to(tl.int64)[:, None] * stride_out_s
        + (offs_j - col_start).to(tl.int64)[None, :]
    )
    tl.store(ptrs, v, mask=mask)


@triton.jit
def _words_kernel(
    # pointers
    seed_ptr,
    k_ptr,
    m_ptr,
    out_ptr,
    # sizes
    N,
    # meta-parameters
    BLOCK: tl.constexpr,
    N_ROUNDS: tl.constexpr,
):
    """The four raw Philox words of counter ``(k << 32) | m`` for ``N`` given pairs."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    seed = tl.load(seed_ptr)
    k = tl.load(k_ptr + offs, mask=mask, other=0)
    m = tl.load(m_ptr + offs, mask=mask, other=0)
    counter = (k.to(tl.int64) << 32) | m.to(tl.int64)
    w0, w1, w2, w3 = tl.randint4x(seed, counter, N_ROUNDS)
    base = out_ptr + offs.to(tl.int64) * 4
    tl.store(base + 0, w0.to(tl.int64) & 0xFFFFFFFF, mask=mask)
    tl.store(base + 1, w1.to(tl.int64) & 0xFFFFFFFF, mask=mask)
    tl.store(base + 2, w2.to(tl.int64) & 0xFFFFFFFF, mask=mask)
    tl.store(base + 3, w3.to(tl.int64) & 0xFFFFFFFF, mask=mask)


@triton.jit
def _draw_sum_kernel(
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
):
    """Draw-only floor: generate ``v[k, j]`` like the fused kernels and sum it.

    Same grid as the fused forward (slice tiles x splits of ``d``); one float32
    partial per program, so nothing but the draw is timed.
    """
    pid_s = tl.program_id(0)
    pid_split = tl.program_id(1)
    seed = tl.load(seed_ptr)
    offs_k = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    d_lo = pid_split * split_d
    d_hi = tl.minimum(d_lo + split_d, D)
    acc = tl.zeros((BLOCK_S, BLOCK_D), dtype=tl.float32)
    for j0 in range(d_lo, d_hi, BLOCK_D):
        offs_j = j0 + tl.arange(0, BLOCK_D)
        v = gaussian_tile(seed, offs_k, j0, BLOCK_D, N_ROUNDS)
        acc += tl.where((offs_k < S)[:, None] & (offs_j < D)[None, :], v, 0.0)
    total = tl.sum(tl.sum(acc, axis=1), axis=0)
    tl.store(out_ptr + pid_s * tl.num_programs(1) + pid_split, total)


# ------------------------------------------------------------------------- launchers


def _check_seed(seed: torch.Tensor) -> None:
    if not isinstance(seed, torch.Tensor) or seed.dtype != torch.int64 or seed.numel() != 1:
        raise TypeError("seed must be a (1,) int64 tensor")


def _check_sizes(num_slices: int, dim: int) -> None:
    if num_slices < 1 or dim < 1:
        raise ValueError(f"num_slices and dim must be >= 1, got {num_slices} and {dim}")
    if num_slices >= 2**31 or dim >= 2**31:
        raise ValueError("num_slices and dim must be < 2**31 (one counter word each)")


def philox_normals(
    num_slices: int,
    col_start: int,
    col_stop: int,
    seed: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    block_s: int | None = None,
    block_d: int | None = None,
) -> torch.Tensor:
    """Unnormalised directions ``v[:, col_start:col_stop]`` as float32 ``(s, cols)``.

    ``col_start`` must be a multiple of 4 (a Philox group boundary). ``out``, if
    given, is written in place (used by tests to poison it first); ``block_s`` and
    ``block_d`` override the tile (the values do not depend on it).
    """
    _check_seed(seed)
    _check_sizes(num_slices, max(col_stop, 1))
    if col_start % 4 or not 0 <= col_start < col_stop:
        raise ValueError(
            f"need 0 <= col_start < col_stop with col_start % 4 == 0, got {col_start}, {col_stop}"
        )
    cols = col_stop - col_start
    if out is None:
        out = torch.empty((num_slices, cols), dtype=torch.float32, device=seed.device)
    elif out.shape != (num_slices, cols) or out.dtype != torch.float32 or out.stride(1) != 1:
        raise ValueError(f"out must be float32 ({num_slices}, {cols}) with unit column stride")
    bs = block_s or _DEFAULT_TILE["BLOCK_S"]
    bd = block_d or _DEFAULT_TILE["BLOCK_D"]
    if bd % 4:
        raise ValueError(f"block_d must be a multiple of 4, got {bd}")
    grid = (triton.cdiv(num_slices, bs), triton.cdiv(cols, bd))
    _normals_kernel[grid](
        seed,
        out,
        num_slices,
        col_start,
        col_stop,
        out.stride(0),
        BLOCK_S=bs,
        BLOCK_D=bd,
        N_ROUNDS=PHILOX_ROUNDS,
    )
    return out


def sample_directions_triton(
    num_slices: int, dim: int, seed: torch.Tensor, out_dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The unit directions ``theta_k = v_k / ||v_k||`` that the fused kernels use.

    Args:
        num_slices: ``s >= 1``.
        dim: ``d >= 1``.
        seed: ``(1,)`` int64 tensor; its device is the output device (a CPU
            tensor runs the same kernel under ``TRITON_INTERPRET=1``).
        out_dtype: output dtype; the draw is float32 and is normalised in float64
            for a float64 output, in float32 otherwise (as the CPU stream does).

    Returns:
        ``(num_slices, dim)`` tensor of unit rows.
    """
    _check_seed(seed)
    _check_sizes(num_slices, dim)
    v = philox_normals(num_slices, 0, dim, seed)
    acc = torch.float64 if out_dtype == torch.float64 else torch.float32
    v = v.to(acc)
    return (v / torch.linalg.vector_norm(v, dim=1, keepdim=True)).to(out_dtype)


def philox_words(seed: torch.Tensor, k: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Raw Philox output words ``(n, 4)`` (int64 holding uint32) for counters ``(k, m)``.

    Direction ``v[k, 4m + w]`` is made from word ``w`` (Box-Muller on words
    ``(0, 1)`` and ``(2, 3)``). For tests against an independent Philox4x32-10.
    """
    _check_seed(seed)
    if k.shape != m.shape or k.dim() != 1:
        raise ValueError("k and m must be 1-d tensors of the same length")
    k = k.to(device=seed.device, dtype=torch.int64).contiguous()
    m = m.to(device=seed.device, dtype=torch.int64).contiguous()
    n = k.numel()
    out = torch.empty((n, 4), dtype=torch.int64, device=seed.device)
    block = 64
    _words_kernel[(triton.cdiv(n, block),)](seed, k, m, out, n, BLOCK=block, N_ROUNDS=PHILOX_ROUNDS)
    return out


def draw_and_sum(
    num_slices: int,
    dim: int,
    seed: torch.Tensor,
    *,
    split_d: int,
    block_s: int = 16,
    block_d: int = 128,
    num_warps: int = 4,
) -> torch.Tensor:
    """Draw all ``s x d`` normals the way the fused forward does and sum them.

    The benchmark floor (DESIGN.md section 5): the fused forward and backward each
    draw ``s*d`` normals, so twice this kernel's time is the draw part of the floor.
    Returns the per-program partial sums (float32), so the work cannot be elided.
    """
    _check_seed(seed)
    _check_sizes(num_slices, dim)
    if split_d % block_d:
        raise ValueError(f"split_d must be a multiple of block_d, got {split_d}, {block_d}")
    grid = (triton.cdiv(num_slices, block_s), triton.cdiv(dim, split_d))
    out = torch.empty(grid[0] * grid[1], dtype=torch.float32, device=seed.device)
    _draw_sum_kernel[grid](
        seed,
        out,
        num_slices,
        dim,
        split_d,
        BLOCK_S=block_s,
        BLOCK_D=block_d,
        N_ROUNDS=PHILOX_ROUNDS,
        num_warps=num_warps,
    )
    return out
