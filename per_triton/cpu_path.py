"""The CPU implementation of PER: forward and backward in chunks of coordinates.

It never holds the ``s x d`` direction matrix: each working chunk of
``chunk`` coordinates (a whole number of stream blocks) is drawn, used and
dropped, so extra memory is ``O(s * chunk + b * s)`` whatever ``d`` is. The
backward pass regenerates the same chunks from the seed (DESIGN.md section 2).
"""

from __future__ import annotations

import math

import torch

from .directions import STREAM_BLOCK, accumulation_dtype, draw_columns
from .reference import loss_and_coefficients

__all__ = ["forward", "backward", "projections", "default_chunk"]

# Budget for one chunk of directions, in float32 elements (4 MiB).
_CHUNK_ELEMENTS = 1024 * 1024


def default_chunk(num_slices: int) -> int:
    """Coordinates per working chunk: about 4 MiB of directions, whole stream blocks."""
    blocks = max(1, _CHUNK_ELEMENTS // (num_slices * STREAM_BLOCK))
    return blocks * STREAM_BLOCK


def _chunks(dim: int, chunk: int):
    if chunk % STREAM_BLOCK:
        raise ValueError(f"chunk must be a multiple of {STREAM_BLOCK}, got {chunk}")
    for start in range(0, dim, chunk):
        yield start, min(dim, start + chunk)


def projections(
    h: torch.Tensor, seed: int, num_slices: int, chunk: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised projections ``H @ V^T`` ``(b, s)`` and row norms ``||v_k||`` ``(s,)``.

    Both are accumulated together, chunk by chunk, in the accumulation dtype.
    """
    b, dim = h.shape
    acc = accumulation_dtype(h.dtype)
    chunk = chunk or default_chunk(num_slices)
    proj = torch.zeros(b, num_slices, dtype=acc)
    sq_norm = torch.zeros(num_slices, dtype=acc)
    buffer = torch.empty(num_slices, min(chunk, dim))
    for start, stop in _chunks(dim, chunk):
        v = draw_columns(seed, num_slices, start, stop, out=buffer).to(acc)
        proj.addmm_(h[:, start:stop].to(acc), v.T)
        sq_norm.add_(torch.linalg.vector_norm(v, dim=1).square())
    return proj, sq_norm.sqrt()


def forward(
    h: torch.Tensor, seed: int, num_slices: int, chunk: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5 without the ``1/b``: ``sum_i (1/s) sum_k psi(p_ik)``, plus the backward coefficients.

    Returns ``(loss_sum, coeff)`` with ``coeff[i, k] = erf(p_ik/sqrt2) / (s * ||v_k||)``.
    """
    proj, norm = projections(h, seed, num_slices, chunk)
    return loss_and_coefficients(proj, norm, num_slices)


def backward(
    coeff: torch.Tensor,
    seed: int,
    dim: int,
    out_dtype: torch.dtype,
    chunk: int | None = None,
) -> torch.Tensor:
    """Eq. 6 on unnormalised rows: ``grad[i, j] = sum_k coeff[i, k] * v_kj``, ``(b, dim)``."""
    b, num_slices = coeff.shape
    chunk = chunk or default_chunk(num_slices)
    grad = torch.empty(b, dim, dtype=out_dtype)
    buffer = torch.empty(num_slices, min(chunk, dim))
    for start, stop in _chunks(dim, chunk):
        v = draw_columns(seed, num_slices, start, stop, out=buffer).to(coeff.dtype)
        grad[:, start:stop] = coeff @ v
    return grad


def chunk_count(dim: int, num_slices: int) -> int:
    """Number of working chunks for ``dim`` coordinates (used by progress and tests)."""
    return math.ceil(dim / default_chunk(num_slices))
