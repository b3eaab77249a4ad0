"""Plain PyTorch reference for PER on explicit directions (docs/design.md, "The math").

Readable math, no Triton, any float dtype including float64. Every fast path is
tested against these functions on the same directions, and the benchmarks use
them as the ``eager`` provider.

Notation: ``h`` is ``(b, *)`` and is flattened to ``(b, d)``; ``directions`` is
``(s, d)`` with unit rows ``theta_k``; ``p_ik = <h_i, theta_k>``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["psi", "psi_grad", "per_loss", "per_grad", "project", "loss_and_coefficients"]

_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def psi(p: torch.Tensor) -> torch.Tensor:
    """The per-projection PER term (Eq. 5): ``p*erf(p/sqrt2) + sqrt(2/pi)*exp(-p^2/2)``.

    ``psi(p) = E|Z - p|`` for ``Z ~ N(0, 1)``: the W1 distance between a point mass
    at ``p`` and the standard normal.
    """
    return p * torch.erf(p / _SQRT2) + _SQRT_2_OVER_PI * torch.exp(-0.5 * p * p)


def psi_grad(p: torch.Tensor) -> torch.Tensor:
    """Derivative of :func:`psi` (Eq. 6): ``erf(p/sqrt2)``."""
    return torch.erf(p / _SQRT2)


def project(h: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Projections ``p = H @ Theta^T`` of shape ``(b, s)`` in the wider of the two dtypes."""
    flat = h.reshape(h.shape[0], -1)
    dtype = torch.promote_types(flat.dtype, directions.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return flat.to(dtype) @ directions.to(dtype).T


def _scale(b: int, s: int, reduction: str) -> float:
    if reduction == "mean":
        return 1.0 / (b * s)
    if reduction == "sum":
        return 1.0 / s
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def per_loss(h: torch.Tensor, directions: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """PER loss (Eq. 5) of ``h`` on the given unit ``directions``.

    Args:
        h: activations ``(b, *)``, flattened per sample to ``(b, d)``.
        directions: ``(s, d)`` unit rows.
        reduction: ``"mean"`` (``1/b * sum_i 1/s * sum_k psi(p_ik)``) or ``"sum"``
            (without ``1/b``, as Algorithm 1 prints it).

    Returns:
        0-d tensor in the computation dtype (float32 for half inputs).
    """
    p = project(h, directions)
    return psi(p).sum() * _scale(p.shape[0], p.shape[1], reduction)


def per_grad(h: torch.Tensor, directions: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Closed-form gradient of :func:`per_loss` (Eq. 6), shaped like ``h``.

    ``dL/dh_i = scale * sum_k erf(p_ik/sqrt2) * theta_k`` with ``scale = 1/(b*s)``
    for ``"mean"`` and ``1/s`` for ``"sum"``.
    """
    p = project(h, directions)
    coeff = psi_grad(p) * _scale(p.shape[0], p.shape[1], reduction)
    return (coeff @ directions.to(coeff.dtype)).reshape(h.shape)


def loss_and_coefficients(
    proj: torch.Tensor, norm: torch.Tensor, num_slices: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Finish Eq. 5 from unnormalised projections ``H @ V^T`` ``(b, s)`` and ``||v_k||`` ``(s,)``.

    Returns ``(loss_sum, coeff)``: ``loss_sum = sum_i (1/s) sum_k psi(p_ik)`` (no ``1/b``) and
    ``coeff[i, k] = erf(p_ik/sqrt2) / (s * ||v_k||)``, so that Eq. 6 is ``coeff @ V``.
    The ``b * s`` terms are summed by ``torch.sum`` (cascade summation, accurate in float32
    over millions of terms; a BLAS dot keeps a few running sums, which stagnate).
    """
    p = proj / norm
    erf = torch.erf(p * (1.0 / _SQRT2))  # computed once: psi = p * erf + sqrt(2/pi) exp(-p^2/2)
    psi = p.square().mul_(-0.5).exp_().mul_(_SQRT_2_OVER_PI).addcmul_(p, erf)
    return psi.sum() / num_slices, erf.div_(norm * num_slices)
