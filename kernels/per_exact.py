"""Triton kernels of exact PER (``estimator="exact"``, per_triton/exact.py).

Exact PER touches ``h`` ``(b, d)`` twice, once per pass, and nothing else of size ``b*d``:

1. ``_row_sq_norms_kernel``: grid (row, split of ``d``). Each program sums the squares
   of its split of one row in float32 (float16/bfloat16/float32 inputs) and writes one
   partial; the launcher adds the ``(b, n_split)`` partials in split order (fixed, so the
   norms are bitwise reproducible). The 1F1 values of the ``b`` norms are torch ops
   (per_triton/exact.py), ``b * 64`` float64 values.
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

__all__ = ["row_sq_norms", "scale_rows", "plan_norm_splits", "BLOCK"]

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
    want = max(1, min(triton.cdiv(d, block), triton.cdiv(TARGET_PROGRAMS, b)))
    split_d = triton.cdiv(triton.cdiv(d, want), block) * block
    return split_d, triton.cdiv(d, split_d)


def row_sq_norms(h: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """``(b,)`` squared row norms of ``h`` ``(b, d)``; float32 (float64 for float64 input)."""
    if h.dim() != 2:
        raise ValueError(f"h must be 2-D (b, d), got shape {tuple(h.shape)}")
    h = h.contiguous()
    b, d = h.shape
    acc = torch.float64 if h.dtype == torch.float64 else torch.float32
    split_d, n_split = plan_norm_splits(b, d, block)
    part = torch.empty((b, n_split), dtype=acc, device=h.device)
    _row_sq_norms_kernel[(b, n_split)](h, part, d, split_d, n_split, BLOCK=block)
    return part.sum(dim=1) if n_split > 1 else part.reshape(b)


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
    b, d = h.shape
    out = torch.empty_like(h)
    grad = grad_in.contiguous() if grad_in is not None else h  # unread when HAS_GRAD is False
    _scale_rows_kernel[(triton.cdiv(d, block), b)](
        h, scale.contiguous(), grad, out, d, HAS_GRAD=grad_in is not None, BLOCK=block
    )
    return out
