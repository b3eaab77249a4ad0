"""The ``@triton.jit`` bodies of the fused PER kernels (Eq. 5, Eq. 6, Algorithm 1).

Forward, for activations ``H`` ``(b, d)`` and the Philox directions ``v_k`` of
:mod:`per_triton.kernels.philox_stream`:

1. ``per_fwd_partial_kernel``: the grid is (slice tiles, splits of ``d``, batch
   tiles). Each program walks its split of ``d`` tile by tile, draws the Gaussian
   tile ``v[k-tile, j-tile]`` in registers, and accumulates the projections
   ``H @ V^T`` and the squared norms ``||v_k||^2`` together. It writes one partial
   per split to a small workspace; the ``s x d`` matrix is never stored.
2. ``per_fwd_finish_kernel``: sums the partials in split order (fixed, so the
   result is bitwise reproducible), normalises ``p_ik = <h_i, v_k> / ||v_k||``, and
   writes the coefficients ``erf(p_ik/sqrt2) / (s * ||v_k||)`` that Eq. 6 needs and
   one partial of the loss ``sum psi(p_ik) / s`` (Eq. 5) per program, summed in a
   fixed order by the launcher.

Backward (``per_bwd_kernel``): grid (coordinate tiles, batch tiles); each program
regenerates ``v[:, j-tile]`` slice tile by slice tile and forms
``dL/dh[:, j-tile] = C @ V[:, j-tile]`` (Eq. 6, Algorithm 1) with ``C`` the
coefficients already scaled by the incoming gradient. No cross-program reduction.

Precision (docs/design.md, "Registered ops"): float32 activations use ``tl.dot`` with
``input_precision`` ``"tf32"`` or ``"ieee"``; float16/bfloat16 activations are
projected in float32 on the float32 directions; coefficients, norms and the loss are
float32. The launches (arguments, grids, tiles) are built in
:mod:`per_triton.kernels.per_fused`.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .philox_stream import gaussian_quad

__all__ = ["per_fwd_partial_kernel", "per_fwd_finish_kernel", "per_bwd_kernel"]


@triton.jit
def _fwd_step(
    h, n0, n1, n2, n3, acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3, PRECISION: tl.constexpr
):
    """One tile of the forward: four chained dots (one per Philox word) and ``v^2`` tiles."""
    acc0 = tl.dot(h, tl.trans(n0), acc0, input_precision=PRECISION)
    acc1 = tl.dot(h, tl.trans(n1), acc1, input_precision=PRECISION)
    acc2 = tl.dot(h, tl.trans(n2), acc2, input_precision=PRECISION)
    acc3 = tl.dot(h, tl.trans(n3), acc3, input_precision=PRECISION)
    return acc0, acc1, acc2, acc3, sq0 + n0 * n0, sq1 + n1 * n1, sq2 + n2 * n2, sq3 + n3 * n3


@triton.jit
def _store_quad(ptr, rows, stride_row, offs_q, S, mask_rows, t0, t1, t2, t3):
    """Store ``t_w[:, a]`` at column ``k = 4 offs_q[a] + w`` of ``rows`` (``k < S``)."""
    k = offs_q.to(tl.int64) * 4
    base = ptr + rows.to(tl.int64)[:, None] * stride_row
    m = mask_rows[:, None]
    tl.store(base + (k + 0)[None, :], t0, mask=m & (k + 0 < S)[None, :])
    tl.store(base + (k + 1)[None, :], t1, mask=m & (k + 1 < S)[None, :])
    tl.store(base + (k + 2)[None, :], t2, mask=m & (k + 2 < S)[None, :])
    tl.store(base + (k + 3)[None, :], t3, mask=m & (k + 3 < S)[None, :])


@triton.jit
def _batch_rows(ptr, stride_row, B, pid_b, BLOCK_B: tl.constexpr):
    """Rows ``offs_b`` of batch tile ``pid_b``, their mask (``< B``) and row pointers."""
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    return offs_b, offs_b < B, ptr + offs_b.to(tl.int64)[:, None] * stride_row


@triton.jit
def _load_h(h_rows, mask_b, offs_j, j_stop):
    """The ``h`` tile of columns ``offs_j`` (zero at ``j >= j_stop`` and masked rows)."""
    return tl.load(
        h_rows + offs_j[None, :], mask=mask_b[:, None] & (offs_j < j_stop)[None, :], other=0.0
    )


@triton.jit
def _fwd_zeros(BLOCK_B: tl.constexpr, QS: tl.constexpr, BLOCK_D: tl.constexpr):
    """Four ``(BLOCK_B, QS)`` projection accumulators and four ``(QS, BLOCK_D)`` ``v^2`` tiles."""
    acc0 = tl.zeros((BLOCK_B, QS), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_B, QS), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_B, QS), dtype=tl.float32)
    acc3 = tl.zeros((BLOCK_B, QS), dtype=tl.float32)
    sq0 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    sq1 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    sq2 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    sq3 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    return acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3


@triton.jit
def _fwd_tail(
    h_rows, mask_b, seed, offs_q, d_full, d_hi, acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3,
    BLOCK_D: tl.constexpr, PRECISION: tl.constexpr, N_ROUNDS: tl.constexpr, SFU: tl.constexpr,
):  # fmt: skip
    """The partial last tile ``[d_full, d_hi)`` of a split, masked in ``j``."""
    offs_j = d_full + tl.arange(0, BLOCK_D)
    mask_j = offs_j < d_hi
    h = _load_h(h_rows, mask_b, offs_j, d_hi)
    n0, n1, n2, n3 = gaussian_quad(seed, offs_q, offs_j, N_ROUNDS, SFU)
    n0 = tl.where(mask_j[None, :], n0, 0.0)
    n1 = tl.where(mask_j[None, :], n1, 0.0)
    n2 = tl.where(mask_j[None, :], n2, 0.0)
    n3 = tl.where(mask_j[None, :], n3, 0.0)
    return _fwd_step(
        h.to(tl.float32), n0, n1, n2, n3, acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3, PRECISION
    )


@triton.jit
def _store_sq(sq_ptr, offs_q, S, sq0, sq1, sq2, sq3):
    """Store the row sums of the ``v^2`` tiles at ``k = 4 offs_q + w`` (``k < S``)."""
    k = offs_q * 4
    tl.store(sq_ptr + k + 0, tl.sum(sq0, axis=1), mask=k + 0 < S)
    tl.store(sq_ptr + k + 1, tl.sum(sq1, axis=1), mask=k + 1 < S)
    tl.store(sq_ptr + k + 2, tl.sum(sq2, axis=1), mask=k + 2 < S)
    tl.store(sq_ptr + k + 3, tl.sum(sq3, axis=1), mask=k + 3 < S)


@triton.jit
def per_fwd_partial_kernel(
    h_ptr, seed_ptr, part_proj_ptr, part_sq_ptr,  # pointers
    B, D, S, split_d, stride_hb,  # sizes, h's row stride
    # meta-parameters: the tile, the dot precision, the Philox stream
    BLOCK_B: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr, N_ROUNDS: tl.constexpr, SFU: tl.constexpr,
):  # fmt: skip
    """Partial projections ``sum_{j in split} h_ij v_kj`` and ``sum_{j in split} v_kj^2``.

    Writes ``part_proj[split, i, k]`` (float32) for this program's batch and slice
    tiles, and ``part_sq[split, k]`` from the first batch tile only. The slice tile
    is four ``(BLOCK_S/4, BLOCK_D)`` word tiles (rows ``k = 4q + w``), each with its
    own dot and accumulator; ``v^2`` is summed in 2-D register tiles and reduced
    once after the loop. ``h`` of any dtype is projected in float32 (``PRECISION``)
    on the float32 directions, so bf16/fp16 see the directions the norms use.
    Full ``BLOCK_D`` tiles run unmasked in ``j``; a partial last tile (any
    ``split_d`` works) is masked to the split.
    """
    pid_s = tl.program_id(0)
    pid_split = tl.program_id(1)
    pid_b = tl.program_id(2)
    seed = tl.load(seed_ptr)
    QS: tl.constexpr = BLOCK_S // 4

    offs_b, mask_b, h_rows = _batch_rows(h_ptr, stride_hb, B, pid_b, BLOCK_B)
    offs_q = pid_s * QS + tl.arange(0, QS)

    acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3 = _fwd_zeros(BLOCK_B, QS, BLOCK_D)
    d_lo = pid_split * split_d
    d_hi = tl.minimum(d_lo + split_d, D)
    d_full = d_lo + (d_hi - d_lo) // BLOCK_D * BLOCK_D
    # h is prefetched one tile ahead into registers: its load latency hides behind
    # a whole tile's draw (num_stages = 1; Triton's cp.async pipeline costs more
    # instructions per normal, bench/sass_report.py)
    offs_d = tl.arange(0, BLOCK_D)
    h = _load_h(h_rows, mask_b, d_lo + offs_d, d_full)
    for j0 in range(d_lo, d_full, BLOCK_D):
        offs_j = j0 + offs_d
        h_next = _load_h(h_rows, mask_b, j0 + BLOCK_D + offs_d, d_full)
        n0, n1, n2, n3 = gaussian_quad(seed, offs_q, offs_j, N_ROUNDS, SFU)
        acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3 = _fwd_step(
            h.to(tl.float32), n0, n1, n2, n3, acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3, PRECISION
        )
        h = h_next
    if d_full < d_hi:
        acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3 = _fwd_tail(
            h_rows, mask_b, seed, offs_q, d_full, d_hi, acc0, acc1, acc2, acc3,
            sq0, sq1, sq2, sq3, BLOCK_D, PRECISION, N_ROUNDS, SFU,
        )  # fmt: skip

    proj = part_proj_ptr + pid_split.to(tl.int64) * B * S
    _store_quad(proj, offs_b, S, offs_q, S, mask_b, acc0, acc1, acc2, acc3)
    if pid_b == 0:
        _store_sq(part_sq_ptr + pid_split.to(tl.int64) * S, offs_q, S, sq0, sq1, sq2, sq3)


@triton.jit
def per_fwd_finish_kernel(
    # pointers
    part_proj_ptr,
    part_sq_ptr,
    coeff_ptr,
    loss_part_ptr,
    # sizes
    B,
    S,
    n_split,
    # meta-parameters
    BLOCK_B: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    """Eq. 5 terms and Eq. 6 coefficients from the split partials, summed in split order.

    ``p_ik = proj_ik / ||v_k||``; ``coeff_ik = erf(p_ik/sqrt2) / (S ||v_k||)``, both 0 for
    a row with ``||v_k|| = 0``;
    ``loss_part[program] = sum_tile psi(p_ik) / S`` with
    ``psi(p) = p erf(p/sqrt2) + sqrt(2/pi) exp(-p^2/2)``.
    """
    pid_b = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_k = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    mask_b = offs_b < B
    mask_k = offs_k < S
    mask = mask_b[:, None] & mask_k[None, :]
    tile = offs_b.to(tl.int64)[:, None] * S + offs_k[None, :]

    proj = tl.zeros((BLOCK_B, BLOCK_S), dtype=tl.float32)
    sq = tl.zeros((BLOCK_S,), dtype=tl.float32)
    for t in range(0, n_split):
        proj += tl.load(part_proj_ptr + t * B * S + tile, mask=mask, other=0.0)
        sq += tl.load(part_sq_ptr + t * S + offs_k, mask=mask_k, other=0.0)

    # An all-zero row (possible only at d = 1 on this stream, about one row in 2**23: a
    # sine or cosine that rounds to 0) counts as p = 0, coefficient 0: finite, not 0/0.
    norm = tl.where(mask_k & (sq > 0.0), tl.sqrt(sq), 1.0)
    p = proj / norm[None, :]
    erf_p = tl.math.erf(p * 0.7071067811865476)  # 1/sqrt(2)
    psi = p * erf_p + 0.7978845608028654 * tl.exp(-0.5 * p * p)  # sqrt(2/pi)
    coeff = erf_p / (S * norm)[None, :]
    tl.store(coeff_ptr + tile, coeff, mask=mask)
    total = tl.sum(tl.sum(tl.where(mask, psi, 0.0), axis=1), axis=0) / S
    tl.store(loss_part_ptr + pid_b * tl.num_programs(1) + pid_s, total)


@triton.jit
def per_bwd_kernel(
    coeff_ptr, seed_ptr, grad_ptr,  # pointers
    B, D, S, stride_cb, stride_gb,  # sizes, the row strides of coeff and grad
    # meta-parameters: the tile, the dot precision, the Philox stream
    BLOCK_B: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr, N_ROUNDS: tl.constexpr, SFU: tl.constexpr,
):  # fmt: skip
    """``grad[i, j] = sum_k coeff[i, k] v_kj`` for one coordinate tile (Eq. 6, Algorithm 1).

    ``coeff`` is float32 ``(B, S)``, already ``erf(p/sqrt2) / (S ||v_k||)`` times the
    incoming gradient; ``grad`` takes its pointer's dtype. Each slice tile is four
    word tiles (rows ``k = 4q + w``), four chained dots into one accumulator; rows
    past ``S`` meet zero coefficients, columns past ``D`` are not stored, so the
    directions need no mask.
    """
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1)
    seed = tl.load(seed_ptr)
    QS: tl.constexpr = BLOCK_S // 4

    offs_j = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_j = offs_j < D
    mask_b = offs_b < B
    c_rows = coeff_ptr + offs_b.to(tl.int64)[:, None] * stride_cb

    acc = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
    for q0 in range(0, tl.cdiv(S, 4), QS):
        offs_q = q0 + tl.arange(0, QS)
        n0, n1, n2, n3 = gaussian_quad(seed, offs_q, offs_j, N_ROUNDS, SFU)
        k = offs_q * 4
        c0 = tl.load(
            c_rows + (k + 0)[None, :], mask=mask_b[:, None] & (k + 0 < S)[None, :], other=0.0
        )
        c1 = tl.load(
            c_rows + (k + 1)[None, :], mask=mask_b[:, None] & (k + 1 < S)[None, :], other=0.0
        )
        c2 = tl.load(
            c_rows + (k + 2)[None, :], mask=mask_b[:, None] & (k + 2 < S)[None, :], other=0.0
        )
        c3 = tl.load(
            c_rows + (k + 3)[None, :], mask=mask_b[:, None] & (k + 3 < S)[None, :], other=0.0
        )
        acc = tl.dot(c0, n0, acc, input_precision=PRECISION)
        acc = tl.dot(c1, n1, acc, input_precision=PRECISION)
        acc = tl.dot(c2, n2, acc, input_precision=PRECISION)
        acc = tl.dot(c3, n3, acc, input_precision=PRECISION)

    ptrs = grad_ptr + offs_b.to(tl.int64)[:, None] * stride_gb + offs_j[None, :]
    tl.store(ptrs, acc.to(grad_ptr.dtype.element_ty), mask=mask_b[:, None] & mask_j[None, :])
