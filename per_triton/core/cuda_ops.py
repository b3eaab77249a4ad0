"""CUDA implementations of ``per_triton::per_fwd``, ``per_bwd`` and ``per_proj``.

:mod:`per_triton.core.ops` registers them as the ops' CUDA kernels where the ops are
defined (docs/design.md, "Registered ops"), importing this module on the first CUDA
call, so CUDA tensors take the fused Triton kernels of
:mod:`per_triton.kernels.per_fused` in ``per_loss``, ``PER`` and ``regularize``,
with the autograd, fake implementation and torch.compile support that ``ops.py``
registers. The op stays opaque to the compiler: no graph break, and the seed is a
device tensor read by the kernels, so no recompile per step and CUDA graph replays
read whatever seed the graph's own ``torch.randint`` drew.

float16/bfloat16/float32 run the fused kernels. float64 (an exactness check, not
a fast path) runs on column chunks of the same Philox directions, materialised by
the sampling kernel and projected with float64 torch matmuls.

The ``*_impl`` functions do not look at the device type, so tests call them on CPU
tensors under ``TRITON_INTERPRET=1`` to run the exact CUDA code path.
"""

from __future__ import annotations

import torch

from per_triton.core.dtypes import accumulation_dtype
from per_triton.core.reference import loss_and_coefficients
from per_triton.kernels import per_fused
from per_triton.kernels.philox_directions import philox_normals

__all__ = [
    "per_fwd_impl",
    "per_bwd_impl",
    "per_proj_impl",
    "projections_materialised",
    "FLOAT64_CHUNK_ELEMENTS",
]

#: float64 path: directions are materialised ``s x chunk`` float32 at a time.
FLOAT64_CHUNK_ELEMENTS = 4 * 1024 * 1024


def _float64_chunk(num_slices: int, dim: int) -> int:
    chunk = max(4, (FLOAT64_CHUNK_ELEMENTS // num_slices) // 4 * 4)
    return min(chunk, dim)


def projections_materialised(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, acc: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised ``H @ V^T`` ``(b, s)`` and ``||v_k||`` ``(s,)`` in ``acc``, chunk by chunk.

    The Philox directions are materialised ``s x chunk`` at a time (never ``s x d``);
    used by the exact float64 path and by the sliced-W1 projection of the monitor.
    """
    b, dim = h.shape
    proj = torch.zeros((b, num_slices), dtype=acc, device=h.device)
    sq = torch.zeros((num_slices,), dtype=acc, device=h.device)
    chunk = _float64_chunk(num_slices, dim)
    for start in range(0, dim, chunk):
        stop = min(dim, start + chunk)
        v = philox_normals(num_slices, start, stop, seed).to(acc)
        proj.addmm_(h[:, start:stop].to(acc), v.T)
        sq.add_(v.square().sum(dim=1))
    return proj, sq.sqrt()


def _fwd_float64(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int
) -> tuple[torch.Tensor, torch.Tensor]:
    proj, norm = projections_materialised(h, seed, num_slices, torch.float64)
    return loss_and_coefficients(proj, norm, num_slices)


def _bwd_float64(coeff: torch.Tensor, seed: torch.Tensor, dim: int) -> torch.Tensor:
    b, s = coeff.shape
    grad = torch.empty((b, dim), dtype=torch.float64, device=coeff.device)
    chunk = _float64_chunk(s, dim)
    for start in range(0, dim, chunk):
        stop = min(dim, start + chunk)
        v = philox_normals(s, start, stop, seed).to(torch.float64)
        grad[:, start:stop] = coeff @ v
    return grad


def per_fwd_impl(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_fwd`` on the Philox stream: ``(loss_sum, coeff)`` (Eq. 5 without ``1/b``)."""
    h = h.contiguous()
    seed = seed.reshape(1)
    if h.dtype == torch.float64:
        return _fwd_float64(h, seed, num_slices)
    return per_fused.per_fwd(h, seed, num_slices, precision)


def per_bwd_impl(
    coeff: torch.Tensor, seed: torch.Tensor, dim: int, out_dtype: torch.dtype, precision: str
) -> torch.Tensor:
    """``per_bwd`` on the Philox stream: ``coeff @ V`` in ``out_dtype`` (Eq. 6)."""
    seed = seed.reshape(1)
    if coeff.dtype == torch.float64 or out_dtype == torch.float64:
        return _bwd_float64(coeff.to(torch.float64).contiguous(), seed, dim).to(out_dtype)
    return per_fused.per_bwd(coeff.to(torch.float32).contiguous(), seed, dim, out_dtype, precision)


def per_proj_impl(
    x: torch.Tensor, seed: torch.Tensor, num_slices: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_proj`` on the Philox stream: ``x @ V^T`` ``(b, s)`` and ``||v_k||`` ``(s,)``."""
    return projections_materialised(x, seed.reshape(1), num_slices, accumulation_dtype(x.dtype))
