"""Triton kernels of exact PER (``estimator="exact"``, per_triton/core/exact.py).

Exact PER touches ``h`` ``(b, d)`` twice, once per pass, and nothing else of size ``b*d``:

1. ``_row_sq_norms_kernel``: grid (row, split of ``d``). Each program sums the squares
   of its split of one row in float32 (float16/bfloat16/float32 inputs) and writes one
   partial.
   ``_exact_terms_kernel``: one program adds the ``(b, n_split)`` partials of each row
   in split order (fixed, so the result is bitwise reproducible), evaluates the two 1F1
   values of every row in float64 by the quadratures of per_triton/core/exact.py (same
   nodes, same switch; the torch version there is the reference it is tested against),
   and writes the loss sum ``sum_i sqrt(2/pi) M(-1/2, d/2, -r_i^2/2)`` and the gradient
   scales ``sqrt(2/pi)/d * M(1/2, d/2+1, -r_i^2/2)``. Two launches for the forward.
2. ``_scale_rows_kernel``: grid (column tile, row): ``out = grad_in + scale_i * h_i``
   computed in float32, stored in ``h``'s dtype: the exact Eq. 6 gradient added to the
   incoming gradient (Algorithm 1) in the one pass that writes the gradient.

Memory traffic, the floor the benchmark compares with: ``b*d`` elements read in the
forward; ``b*d`` read (``h``) plus ``b*d`` written, plus ``b*d`` read for ``grad_in``
in Algorithm 1, in the backward. float64 runs in float64 throughout (a check, not a fast
path). Launchers take contiguous 2-D tensors; no autograd here.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from per_triton.core.dtypes import accumulation_dtype

from .launch import Buffer, Launch, cdiv

__all__ = [
    "BLOCK",
    "exact_fwd",
    "norms_launch",
    "plan_norm_splits",
    "row_sq_norms",
    "scale_launch",
    "scale_rows",
    "terms_launch",
]

#: Elements per program step (both kernels).
BLOCK = 1024
#: The norm pass aims for at least this many programs, to fill a large GPU.
TARGET_PROGRAMS = 1024


@triton.jit
def _row_sq_norms_kernel(h_ptr, part_ptr, D, split_d, n_split, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    split = tl.program_id(1)
    start = split * split_d
    acc_dtype = tl.float64 if h_ptr.dtype.element_ty == tl.float64 else tl.float32
    acc = tl.zeros((BLOCK,), dtype=acc_dtype)
    base = h_ptr + row.to(tl.int64) * D
    for off in range(0, split_d, BLOCK):
        cols = start + off + tl.arange(0, BLOCK)
        x = tl.load(base + cols, mask=(cols < D) & (off + tl.arange(0, BLOCK) < split_d), other=0)
        x = x.to(acc_dtype)
        acc += x * x
    tl.store(part_ptr + row * n_split + split, tl.sum(acc, axis=0))


@triton.jit
def _log1p_neg(y):
    """``log(1 - y)`` to a few ulps for ``0 <= y < 1`` (Kahan's trick, plain ``log`` only)."""
    u = 1.0 - y
    safe = tl.where(u == 1.0, 0.5, u)
    return tl.where(u == 1.0, -y, tl.log(safe) * (-y) / (safe - 1.0))


@triton.jit
def _t_integral(x, beta, s2, wh, sin2, logcos, wl, SWITCH: tl.constexpr):
    """``int_0^1 exp(-x t^2) (1-t^2)^beta dt`` for a ``(BLOCK_B,)`` float64 ``x``."""
    k = x + beta
    kc = tl.maximum(k, SWITCH)
    y = tl.minimum(s2[None, :] / kc[:, None], 0.99)
    big_e = tl.maximum(beta * (_log1p_neg(y) + y), -700.0)
    big = tl.sum(wh[None, :] * tl.exp(big_e), axis=1) / tl.sqrt(kc)
    small_e = tl.maximum((2.0 * beta + 1.0) * logcos[None, :] - x[:, None] * sin2[None, :], -700.0)
    small = tl.sum(wl[None, :] * tl.exp(small_e), axis=1)
    return tl.where(k >= SWITCH, big, small)


@triton.jit(do_not_specialize=["B", "D", "n_split"])
def _exact_terms_kernel(
    part_ptr,
    nodes_ptr,
    scale_ptr,
    loss_ptr,
    B,
    D,
    n_split,
    N: tl.constexpr,
    BLOCK_B: tl.constexpr,
    IS_D1: tl.constexpr,
    SWITCH: tl.constexpr,
):
    j = tl.arange(0, N)
    s2 = tl.load(nodes_ptr + j)
    wh = tl.load(nodes_ptr + N + j)
    sin2 = tl.load(nodes_ptr + 2 * N + j)
    logcos = tl.load(nodes_ptr + 3 * N + j)
    wl = tl.load(nodes_ptr + 4 * N + j)
    c = D.to(tl.float64) * 0.5
    zero = tl.zeros((BLOCK_B,), dtype=tl.float64)
    norm_c = _t_integral(zero, c - 1.5, s2, wh, sin2, logcos, wl, SWITCH)
    norm_c1 = _t_integral(zero, c - 0.5, s2, wh, sin2, logcos, wl, SWITCH)
    # a bare float literal would be rounded to float32 first
    sqrt_2_over_pi = tl.full((), 0.7978845608028654, tl.float64)
    total = tl.zeros((BLOCK_B,), dtype=tl.float64)
    for start in range(0, B, BLOCK_B):
        rows = start + tl.arange(0, BLOCK_B)
        mask = rows < B
        sq = tl.zeros((BLOCK_B,), dtype=tl.float64)
        for k in range(0, n_split):  # split order: reproducible
            sq += tl.load(part_ptr + rows * n_split + k, mask=mask, other=0).to(tl.float64)
        x = 0.5 * sq
        if IS_D1:
            lc = tl.exp(-x)
        else:
            lc = _t_integral(x, c - 1.5, s2, wh, sin2, logcos, wl, SWITCH) / norm_c
        lc1 = _t_integral(x, c - 0.5, s2, wh, sin2, logcos, wl, SWITCH) / norm_c1
        # tl.maximum drops NaN (the clamps above): carry NaN and Inf through explicitly
        special = (x != x) | (x == float("inf"))
        f = tl.where(special, x, lc + (x / c) * lc1)
        g = tl.where(x != x, x, tl.where(special, 0.0, lc1))
        total += tl.where(mask, sqrt_2_over_pi * f, 0.0)
        scale = (sqrt_2_over_pi / (2.0 * c)) * g
        tl.store(scale_ptr + rows, scale.to(scale_ptr.dtype.element_ty), mask=mask)
    tl.store(loss_ptr, tl.sum(total, axis=0).to(loss_ptr.dtype.element_ty))


@triton.jit
def _scale_rows_kernel(
    h_ptr, scale_ptr, grad_ptr, out_ptr, D, HAS_GRAD: tl.constexpr, BLOCK: tl.constexpr
):
    tile = tl.program_id(0)
    row = tl.program_id(1)
    cols = tile * BLOCK + tl.arange(0, BLOCK)
    mask = cols < D
    offs = row.to(tl.int64) * D + cols
    acc_dtype = tl.float64 if h_ptr.dtype.element_ty == tl.float64 else tl.float32
    scale = tl.load(scale_ptr + row).to(acc_dtype)
    y = tl.load(h_ptr + offs, mask=mask, other=0).to(acc_dtype) * scale
    if HAS_GRAD:
        y += tl.load(grad_ptr + offs, mask=mask, other=0).to(acc_dtype)
    tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def plan_norm_splits(b: int, d: int, block: int = BLOCK) -> tuple[int, int]:
    """``(split_d, n_split)``: each row cut into ``n_split`` splits of ``split_d`` (a multiple
    of ``block``), enough for about :data:`TARGET_PROGRAMS` programs in all."""
    want = max(1, min(cdiv(d, block), cdiv(TARGET_PROGRAMS, b)))
    split_d = cdiv(cdiv(d, want), block) * block
    return split_d, cdiv(d, split_d)


def norms_launch(b: int, d: int, dtype: torch.dtype, block: int = BLOCK) -> Launch:
    """The norm pass over ``h`` ``(b, d)`` of ``dtype``: buffers ``h_ptr`` in and
    ``part_ptr`` ``(b, n_split)`` out (float32, float64 for float64), splits of
    :func:`plan_norm_splits`."""
    split_d, n_split = plan_norm_splits(b, d, block)
    args = {
        "h_ptr": Buffer(dtype, (b, d)),
        "part_ptr": Buffer(accumulation_dtype(dtype), (b, n_split)),
    }
    args |= {"D": d, "split_d": split_d, "n_split": n_split}
    return Launch(_row_sq_norms_kernel, args, {"BLOCK": block}, lambda m: (b, n_split))


def terms_launch(
    b: int, d: int, dtype: torch.dtype, n_nodes: int, switch: float, *, block: int = BLOCK,
    block_b: int = 32,
) -> Launch:  # fmt: skip
    """The 1F1 terms after :func:`norms_launch` (same ``b``, ``d``, ``dtype``, ``block``):
    buffers ``part_ptr`` and the ``(5, n_nodes)`` float64 node table ``nodes_ptr`` in,
    ``scale_ptr`` ``(b,)`` and the 0-d ``loss_ptr`` out (the accumulation dtype)."""
    acc, n_split = accumulation_dtype(dtype), plan_norm_splits(b, d, block)[1]
    args = {"part_ptr": Buffer(acc, (b, n_split)), "nodes_ptr": Buffer(torch.float64, (5, n_nodes))}
    args |= {"scale_ptr": Buffer(acc, (b,)), "loss_ptr": Buffer(acc, ()), "B": b, "D": d}
    args |= {"n_split": n_split}
    meta = {"N": n_nodes, "BLOCK_B": block_b, "IS_D1": d == 1, "SWITCH": switch}
    return Launch(_exact_terms_kernel, args, meta, lambda m: (1,), num_warps=4)


def scale_launch(
    b: int, d: int, dtype: torch.dtype, *, scale_dtype: torch.dtype | None = None,
    grad_dtype: torch.dtype | None = None, has_grad: bool = True, block: int = BLOCK,
) -> Launch:  # fmt: skip
    """The gradient pass ``out = grad + scale[:, None] * h`` over ``(b, d)``: buffers
    ``h_ptr`` (``dtype``), ``scale_ptr`` ``(b,)`` (default the accumulation dtype),
    ``grad_ptr`` (default ``dtype``; unread without ``has_grad``) in, ``out_ptr`` out."""
    args = {
        "h_ptr": Buffer(dtype, (b, d)),
        "scale_ptr": Buffer(scale_dtype or accumulation_dtype(dtype), (b,)),
        "grad_ptr": Buffer(grad_dtype or dtype, (b, d)),
        "out_ptr": Buffer(dtype, (b, d)),
        "D": d,
    }
    meta = {"HAS_GRAD": has_grad, "BLOCK": block}
    return Launch(_scale_rows_kernel, args, meta, lambda m: (cdiv(d, block), b))


def _norm_partials(h: torch.Tensor, block: int) -> torch.Tensor:
    """``(b, n_split)`` partial sums of squares (the first pass), in the acc dtype."""
    if h.dim() != 2:
        raise ValueError(f"h must be 2-D (b, d), got shape {tuple(h.shape)}")
    h = h.contiguous()
    launch = norms_launch(*h.shape, h.dtype, block)
    bufs = launch.bind(h.device, h_ptr=h)
    launch.run(bufs)
    return bufs["part_ptr"]


def row_sq_norms(h: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """``(b,)`` squared row norms of ``h`` ``(b, d)``; float32 (float64 for float64 input)."""
    return _norm_partials(h, block).sum(dim=1)


def exact_fwd(
    h: torch.Tensor, nodes: torch.Tensor, switch: float, block: int = BLOCK, block_b: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss_sum, scale)`` of exact PER for ``h`` ``(b, d)``: a 0-d tensor and ``(b,)``.

    ``loss_sum = sum_i sqrt(2/pi) M(-1/2, d/2, -r_i^2/2)``, ``scale_i = sqrt(2/pi)/d *
    M(1/2, d/2+1, -r_i^2/2)``, both float32 (float64 for float64 input). ``nodes`` is the
    ``(5, N)`` float64 node table of per_triton/core/exact.py on ``h``'s device.
    """
    part = _norm_partials(h, block)
    (b, d), n_nodes = h.shape, nodes.shape[1]
    launch = terms_launch(b, d, h.dtype, n_nodes, switch, block=block, block_b=block_b)
    bufs = launch.bind(h.device, part_ptr=part, nodes_ptr=nodes)
    launch.run(bufs)
    return bufs["loss_ptr"], bufs["scale_ptr"]


def scale_rows(
    h: torch.Tensor, scale: torch.Tensor, grad_in: torch.Tensor | None, block: int = BLOCK
) -> torch.Tensor:
    """``grad_in + scale[:, None] * h`` (``grad_in`` optional) in ``h``'s dtype, ``(b, d)``."""
    if h.dim() != 2 or scale.shape != (h.shape[0],):
        raise ValueError(
            f"need h (b, d) and scale (b,), got {tuple(h.shape)} and {tuple(scale.shape)}"
        )
    if grad_in is not None and grad_in.shape != h.shape:
        raise ValueError(f"grad_in shape {tuple(grad_in.shape)} != h shape {tuple(h.shape)}")
    h = h.contiguous()
    grad = grad_in.contiguous() if grad_in is not None else h  # unread when HAS_GRAD is False
    launch = scale_launch(
        *h.shape, h.dtype, scale_dtype=scale.dtype, grad_dtype=grad.dtype,
        has_grad=grad_in is not None, block=block,
    )  # fmt: skip
    bufs = launch.bind(h.device, torch.empty, h_ptr=h, scale_ptr=scale.contiguous(), grad_ptr=grad)
    launch.run(bufs)
    return bufs["out_ptr"]
