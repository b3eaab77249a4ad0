"""The CUDA direction stream: Philox4x32-10 Gaussian tiles (docs/design.md, "The CUDA stream").

PER draws ``s`` directions ``theta_k = v_k / ||v_k||`` with ``v_k ~ N(0, I_d)``
(Eq. 5). On CUDA, and under ``TRITON_INTERPRET=1`` on CPU tensors, ``v[k, j]`` is a
pure function of ``(seed, k, j)``:

* slices ``k = 4q .. 4q+3`` at coordinate ``j`` share one Philox4x32-10 call whose
  counter is ``(c0, c1, c2, c3) = (j, q, 0, 0)`` and whose key is
  ``(seed & 0xFFFFFFFF, seed >> 32)``; its words are ``w0 .. w3``;
* word ``w`` of the pair ``(a, b)`` = ``(w0, w1)`` or ``(w2, w3)`` becomes
  ``u = 2 - f(a)`` in ``[2**-23, 1]`` and ``theta = 2 pi f(b) - 3 pi`` in
  ``[-pi, pi)``, where ``f(w) = bitcast<float32>(0x3F800000 | (w & 0x7FFFFF))`` is
  in ``[1, 2)`` (the low 23 bits as a mantissa); ``r = sqrt(-2 ln 2 * log2(u))``;
* ``v[4q, j] = r01 cos(theta01)``, ``v[4q+1, j] = r01 sin(theta01)``,
  ``v[4q+2, j] = r23 cos(theta23)``, ``v[4q+3, j] = r23 sin(theta23)``
  (Box-Muller; ``r`` from the first word of a pair, the angle from the second).

The word-to-coordinate mapping is fixed and needs no layout change in a kernel: a
tile of slices ``[4 q0, 4 q0 + BLOCK_S)`` and coordinates ``[j0, j0 + BLOCK_D)``
is four ``(BLOCK_S / 4, BLOCK_D)`` register tiles, one per word, each a strided set
of rows (``4q + w``), consumed as they are (four chained ``tl.dot``).

On the GPU ``log2``, ``sin`` and ``cos`` run on the special-function unit
(``lg2.approx``, ``sin.approx``, ``cos.approx``, inline PTX) and ``sqrt`` is
``sqrt.approx`` (``tl.sqrt``); the interpreter has no inline PTX and evaluates the
same expressions with numpy's float32 ``log2``/``sin``/``cos``/``sqrt`` instead.
The integer stream, the bit-to-float conversions and the angle reduction are the
same code on both. Error bound against float64 Box-Muller of the same words
(:func:`box_muller_error_bound`): with ``r`` the float64 radius and
``L = log2(u)``,

``|v - v64| <= r (2**-21.41 + 2**-22 + 1e-6) + min(sqrt(dt), dt / r) + 2**-21 r``,
``dt = 2 ln 2 * 2**-22 * max(1, |L|) + 2**-23 r**2``,

from the CUDA Programming Guide's bounds for the intrinsics (``__sinf``/``__cosf``:
absolute ``2**-21.41`` on ``[-pi, pi]``; ``__log2f``: absolute ``2**-22`` on
``[0.5, 2]``, 2 ulp elsewhere; ``sqrt.approx``: taken as relative ``2**-21``) and
float32 rounding (angle, fused or not: ``1e-6``). It is at most ``1.2e-5`` for ``r >= 0.05``
(all but 0.13 % of pairs) and at most ``6e-4`` anywhere. ``u >= 2**-23`` caps
``|v|`` at ``r_max = sqrt(46 ln 2) = 5.65`` (Triton's ``randn`` caps at 5.68):
``P(|z| > 5.65) = 1.6e-8`` for a true normal.

Nothing here depends on block sizes, grids, ``s`` or ``d``: row ``k`` of a
``(s, d)`` draw is a prefix of row ``k`` of any larger draw. ``j`` and ``q`` sit in
separate 32-bit counter words, so no index wraps for ``s < 2**31``, ``d < 2**31``.

This file holds the tile generator :func:`gaussian_quad` (shared with the fused
kernels in :mod:`per_triton.kernels.per_fused`), the kernel that materialises
directions for :func:`per_triton.sample_directions`, a kernel that exposes the raw
Philox words (for tests against an independent Philox), and the draw-only kernel
that sets the benchmark floor. Kernels first, launchers after.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import triton
import triton.language as tl

from per_triton.core.dtypes import accumulation_dtype

from . import configs

__all__ = [
    "PHILOX_ROUNDS",
    "SFU",
    "gaussian_quad",
    "philox_normals",
    "philox_words",
    "draw_and_sum",
    "sample_directions_triton",
    "box_muller_error_bound",
]

#: Philox rounds per call (the published Philox4x32-10).
PHILOX_ROUNDS = 10

#: Whether the kernels evaluate log2/sin/cos with inline PTX on the special-function
#: unit (the GPU) or with ``tl.log2``/``tl.sin``/``tl.cos`` (the interpreter).
SFU = os.environ.get("TRITON_INTERPRET", "0") != "1"

# Tiles used by the launchers below. They only set the work split: the values
# drawn never depend on them (tested in tests/test_philox_stream.py).
_DEFAULT_TILE = {"BLOCK_S": 16, "BLOCK_D": 128}

_PHILOX_A = tl.constexpr(0xD2511F53)
_PHILOX_B = tl.constexpr(0xCD9E8D57)
_KEY_A = tl.constexpr(0x9E3779B9)
_KEY_B = tl.constexpr(0xBB67AE85)
_TWO_PI = tl.constexpr(2.0 * math.pi)
_THREE_PI = tl.constexpr(3.0 * math.pi)
_M2LN2 = tl.constexpr(-2.0 * math.log(2.0))


# --------------------------------------------------------------------------- kernels


@triton.jit
def _mul_wide(a, x):
    """``(hi, lo)`` of the 64-bit product of the constant ``a`` and uint32 ``x``.

    One ``mul.wide.u32`` (``IMAD.WIDE.U32``) instead of ``mul.hi`` plus ``mul.lo``.
    """
    p = x.to(tl.uint64) * a
    return (p >> 32).to(tl.uint32), p.to(tl.uint32)


@triton.jit
def _philox_round(c0, c1, c2, c3, k0, k1):
    """One Philox4x32 round (Salmon et al., SC'11); shapes broadcast."""
    hi_b, lo_b = _mul_wide(_PHILOX_B, c2)
    hi_a, lo_a = _mul_wide(_PHILOX_A, c0)
    return hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a


@triton.jit
def philox_words4(seed, c0, c1, N_ROUNDS: tl.constexpr):
    """Philox4x32 words for counters ``(c0, c1, 0, 0)``, key ``(seed_lo, seed_hi)``.

    ``c0`` and ``c1`` are uint32 blocks that broadcast against each other (a row of
    coordinates and a column of slice groups): the first two rounds then run on
    the smaller shapes, where most of their work depends on one of them only.
    """
    seed = seed.to(tl.uint64)
    k0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    k1 = ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32)
    # round 1 with c2 = c3 = 0: c0' = c1 ^ k0, c1' = 0, c2' = hi(A c0) ^ k1, c3' = lo(A c0)
    r0 = c1 ^ k0
    hi_a, r3 = _mul_wide(_PHILOX_A, c0)
    r2 = hi_a ^ k1
    k0 = tl.add(k0, _KEY_A, sanitize_overflow=False)
    k1 = tl.add(k1, _KEY_B, sanitize_overflow=False)
    # round 2 with c1' = 0
    hi_b, n1 = _mul_wide(_PHILOX_B, r2)
    hi_a, n3 = _mul_wide(_PHILOX_A, r0)
    n0 = hi_b ^ k0
    n2 = hi_a ^ r3 ^ k1
    zero = (c0 ^ c1) & 0  # the broadcast shape, folded away
    x0, x1, x2, x3 = n0 + zero, n1 + zero, n2, n3 + zero
    for _ in tl.static_range(N_ROUNDS - 2):
        k0 = tl.add(k0, _KEY_A, sanitize_overflow=False)
        k1 = tl.add(k1, _KEY_B, sanitize_overflow=False)
        x0, x1, x2, x3 = _philox_round(x0, x1, x2, x3, k0, k1)
    return x0, x1, x2, x3


@triton.jit
def _mantissa(w):
    """``bitcast<float32>(0x3F800000 | (w & 0x7FFFFF))``: the low 23 bits as a float in [1, 2)."""
    return ((w & 0x7FFFFF) | 0x3F800000).to(tl.float32, bitcast=True)


@triton.jit
def _sfu(x, ASM: tl.constexpr):
    """One special-function-unit instruction (inline PTX ``ASM``) on float32 ``x``."""
    return tl.inline_asm_elementwise(ASM, "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def box_muller(wa, wb, SFU: tl.constexpr):
    """``(r cos theta, r sin theta)`` from two uint32 words (radius from ``wa``).

    ``SFU``: ``lg2``/``sin``/``cos`` as ``.approx.ftz`` PTX (GPU), else ``tl.log2``/
    ``tl.sin``/``tl.cos`` (the interpreter, which runs no inline PTX).
    """
    u = 2.0 - _mantissa(wa)  # (0, 1]: exact (Sterbenz), >= 2**-23
    theta = _mantissa(wb) * _TWO_PI - _THREE_PI  # [-pi, pi): one FMA
    if SFU:
        lg = _sfu(u, "lg2.approx.ftz.f32 $0, $1;")
        cos = _sfu(theta, "cos.approx.ftz.f32 $0, $1;")
        sin = _sfu(theta, "sin.approx.ftz.f32 $0, $1;")
    else:
        lg = tl.log2(u)
        cos = tl.cos(theta)
        sin = tl.sin(theta)
    r = tl.sqrt(lg * _M2LN2)
    return r * cos, r * sin


@triton.jit
def gaussian_quad(seed, offs_q, offs_j, N_ROUNDS: tl.constexpr, SFU: tl.constexpr):
    """Four float32 tiles ``n_w[a, b] = v[4 offs_q[a] + w, offs_j[b]]``, ``w = 0..3``.

    ``seed`` is an int64 scalar, ``offs_q`` a block of slice groups (``k // 4``),
    ``offs_j`` a block of coordinates: one Philox call per ``(q, j)``, counter
    ``(j, q, 0, 0)``; words (0, 1) give slices ``4q, 4q+1``, words (2, 3) slices
    ``4q+2, 4q+3`` (Box-Muller). Tiles have shape ``(len(offs_q), len(offs_j))``.
    """
    c0 = offs_j.to(tl.uint32)[None, :]
    c1 = offs_q.to(tl.uint32)[:, None]
    w0, w1, w2, w3 = philox_words4(seed, c0, c1, N_ROUNDS)
    n0, n1 = box_muller(w0, w1, SFU)
    n2, n3 = box_muller(w2, w3, SFU)
    return n0, n1, n2, n3


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
def _words_kernel(
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


# ------------------------------------------------------------------------- launchers


def _check_seed(seed: torch.Tensor) -> None:
    if not isinstance(seed, torch.Tensor) or seed.dtype != torch.int64 or seed.numel() != 1:
        raise TypeError("seed must be a (1,) int64 tensor")
    configs.check_cuda_launch(seed.device.type)


def _check_tile(block_s: int, block_d: int) -> None:
    if block_s < 4 or block_s & (block_s - 1) or block_d < 1 or block_d & (block_d - 1):
        raise ValueError(
            f"block_s (>= 4) and block_d must be powers of 2, got {block_s}, {block_d}"
        )


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

    Any window ``0 <= col_start < col_stop < 2**31``. ``out``, if given, is written
    in place (used by tests to poison it first); ``block_s`` (a power of 2, >= 4)
    and ``block_d`` (a power of 2) override the tile (the values do not depend on it).
    """
    _check_seed(seed)
    _check_sizes(num_slices, max(col_stop, 1))
    if not 0 <= col_start < col_stop:
        raise ValueError(f"need 0 <= col_start < col_stop, got {col_start}, {col_stop}")
    cols = col_stop - col_start
    if out is None:
        out = torch.empty((num_slices, cols), dtype=torch.float32, device=seed.device)
    elif out.shape != (num_slices, cols) or out.dtype != torch.float32 or out.stride(1) != 1:
        raise ValueError(f"out must be float32 ({num_slices}, {cols}) with unit column stride")
    bs = block_s or _DEFAULT_TILE["BLOCK_S"]
    bd = block_d or _DEFAULT_TILE["BLOCK_D"]
    _check_tile(bs, bd)
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
        SFU=SFU,
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
    v = v.to(accumulation_dtype(out_dtype))
    return (v / torch.linalg.vector_norm(v, dim=1, keepdim=True)).to(out_dtype)


def philox_words(seed: torch.Tensor, q: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Raw Philox output words ``(n, 4)`` (int64 holding uint32) for counters ``(j, q, 0, 0)``.

    Directions ``v[4q + w, j]`` are made from these words (Box-Muller on words
    ``(0, 1)`` and ``(2, 3)``), by the same ``philox_words4`` the kernels inline.
    For tests against an independent Philox4x32-10. ``q`` and ``j`` are 1-d and
    hold values in ``[0, 2**32)``.
    """
    _check_seed(seed)
    if q.shape != j.shape or q.dim() != 1:
        raise ValueError("q and j must be 1-d tensors of the same length")
    q = q.to(device=seed.device, dtype=torch.int64).contiguous()
    j = j.to(device=seed.device, dtype=torch.int64).contiguous()
    n = q.numel()
    out = torch.empty((n, 4), dtype=torch.int64, device=seed.device)
    block = 64
    _words_kernel[(triton.cdiv(n, block),)](seed, q, j, out, n, BLOCK=block, N_ROUNDS=PHILOX_ROUNDS)
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

    The benchmark floor (docs/design.md, "Measuring performance"): the fused forward
    and backward each draw ``s*d`` normals, so twice this kernel's time is the draw
    part of the floor.
    Returns the per-program partial sums (float32), so the work cannot be elided.
    """
    _check_seed(seed)
    _check_sizes(num_slices, dim)
    _check_tile(block_s, block_d)
    if split_d < 1:
        raise ValueError(f"split_d must be >= 1, got {split_d}")
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
        SFU=SFU,
        num_warps=num_warps,
    )
    return out


def box_muller_error_bound(words: np.ndarray) -> np.ndarray:
    """Bound on ``|v - v64|`` for the four normals of each row of Philox ``words``.

    ``words`` is ``(n, 4)`` (uint32 values); the result is ``(n, 4)`` float64, the
    bound stated in this module's docstring for the special-function-unit
    transform against float64 Box-Muller of the same words (the interpreter's
    numpy float32 transform is far inside it).
    """
    w = np.asarray(words, dtype=np.int64)
    f = 1.0 + (w & 0x7FFFFF) / 2.0**23
    log2u = np.log2(2.0 - f[:, [0, 2]])  # radius words
    r = np.sqrt(-2.0 * math.log(2.0) * log2u)
    dt = 2.0 * math.log(2.0) * 2.0**-22 * np.maximum(1.0, -log2u) + 2.0**-23 * r**2
    with np.errstate(divide="ignore"):
        dr = np.minimum(np.sqrt(dt), dt / r) + 2.0**-21 * r
    per_pair = r * (2.0**-21.41 + 2.0**-22 + 1e-6) + dr
    return np.repeat(per_pair, 2, axis=1)
