"""PER as registered torch.library ops, so torch.compile sees it without a graph break.

``per_triton::per_fwd`` and ``per_triton::per_bwd`` follow docs/CONTRACTS.md:

* ``per_fwd(h (b, d), seed (1,) int64, num_slices, precision) -> (loss_sum, coeff)``
  with ``loss_sum = sum_i (1/s) sum_k psi(p_ik)`` (Eq. 5 without ``1/b``) and
  ``coeff[i, k] = erf(p_ik/sqrt2) / (s * ||v_k||)`` (what Eq. 6 needs).
* ``per_bwd(coeff, seed, dim, out_dtype, precision) -> grad (b, dim)`` with
  ``grad = coeff @ V`` on the regenerated unnormalised directions (Eq. 6).

The implementations registered here are the CPU path; ``per_triton.cuda_ops``
registers the fused Triton kernels for CUDA tensors. Each op has a fake
implementation (shapes and dtypes only) and ``per_fwd`` has its autograd formula.
"""

from __future__ import annotations

import torch

from . import cpu_path
from .directions import accumulation_dtype

__all__ = ["per_fwd", "per_bwd"]


@torch.library.custom_op("per_triton::per_fwd", mutates_args=(), device_types="cpu")
def per_fwd(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU forward: chunked projections, loss terms and backward coefficients."""
    return cpu_path.forward(h, int(seed.item()), num_slices)


@per_fwd.register_fake
def _per_fwd_fake(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    acc = accumulation_dtype(h.dtype)
    return h.new_empty((), dtype=acc), h.new_empty((h.shape[0], num_slices), dtype=acc)


@torch.library.custom_op("per_triton::per_bwd", mutates_args=(), device_types="cpu")
def per_bwd(
    coeff: torch.Tensor, seed: torch.Tensor, dim: int, out_dtype: torch.dtype, precision: str
) -> torch.Tensor:
    """CPU backward: regenerate the directions chunk by chunk and form ``coeff @ V``."""
    return cpu_path.backward(coeff, int(seed.item()), dim, out_dtype)


@per_bwd.register_fake
def _per_bwd_fake(
    coeff: torch.Tensor, seed: torch.Tensor, dim: int, out_dtype: torch.dtype, precision: str
) -> torch.Tensor:
    return coeff.new_empty((coeff.shape[0], dim), dtype=out_dtype)


def _setup_context(ctx, inputs, output) -> None:
    h, seed, _num_slices, precision = inputs
    _loss_sum, coeff = output
    ctx.save_for_backward(coeff, seed)
    ctx.dim = h.shape[1]
    ctx.out_dtype = h.dtype
    ctx.precision = precision


def _backward(ctx, grad_loss_sum: torch.Tensor, _grad_coeff: torch.Tensor):
    coeff, seed = ctx.saved_tensors
    scaled = coeff * grad_loss_sum.to(coeff.dtype)
    grad_h = per_bwd(scaled, seed, ctx.dim, ctx.out_dtype, ctx.precision)
    return grad_h, None, None, None


per_fwd.register_autograd(_backward, setup_context=_setup_context)
