"""Exact sliced Wasserstein distance between a batch of activations and N(0, I).

For each direction the projections of the batch form an empirical distribution
with ``b`` atoms; its ``W_p`` distance to N(0, 1) is computed exactly from the
sorted projections and the normal CDF: the ``i``-th order statistic is matched
with the normal mass between quantiles ``i/b`` and ``(i+1)/b``. No Gaussian
sample is drawn. This is the quantity that PER's loss bounds from above (for
``p = 1``, direction by direction, since ``psi(p) = E|Z - p|``, Eq. 5).
"""

from __future__ import annotations

import math

import torch

from per_triton.core import cpu_path
from per_triton.core._validation import check_activations, check_num_slices, seed_tensor
from per_triton.core.dtypes import accumulation_dtype

__all__ = ["sliced_wasserstein_to_normal", "wasserstein_to_normal_1d", "project_on_directions"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _pdf(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z * z) * _INV_SQRT_2PI


def _z_pdf(z: torch.Tensor) -> torch.Tensor:
    """``z * pdf(z)``, with the limit 0 at ``z = +-inf``."""
    out = z * _pdf(z)
    return torch.where(torch.isinf(z), torch.zeros_like(out), out)


def wasserstein_to_normal_1d(projections: torch.Tensor, p: int = 1) -> torch.Tensor:
    """Exact ``W_p`` between each column's empirical distribution and N(0, 1).

    Args:
        projections: ``(b, s)``: ``b`` samples of ``s`` one-dimensional distributions.
        p: 1 or 2.

    Returns:
        ``(s,)`` float64 distances ``W_p`` (not raised to the power ``p``).
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    x = torch.sort(projections.to(torch.float64), dim=0).values
    b = x.shape[0]
    u = torch.arange(b + 1, dtype=torch.float64, device=x.device) / b
    z = torch.special.ndtri(u)  # z[0] = -inf, z[b] = +inf
    lo, hi = z[:-1, None], z[1:, None]
    cdf_lo, cdf_hi = torch.special.ndtr(lo), torch.special.ndtr(hi)
    if p == 1:
        # Antiderivative of (x - z) * pdf(z) in z is G(z) = x*cdf(z) + pdf(z); the cell's
        # integral of |x - z| pdf(z) is 2*G(m) - G(lo) - G(hi) with m = clamp(x, lo, hi).
        m = torch.minimum(torch.maximum(x, lo), hi)
        g_m = x * torch.special.ndtr(m) + _pdf(m)
        g_lo = x * cdf_lo + _pdf(lo)
        g_hi = x * cdf_hi + _pdf(hi)
        return (2 * g_m - g_lo - g_hi).sum(dim=0)

    # Antiderivative of (x - z)^2 pdf(z): (x^2 + 1)*cdf(z) + 2x*pdf(z) - z*pdf(z).
    def antiderivative(zz: torch.Tensor, cdf: torch.Tensor) -> torch.Tensor:
        return (x * x + 1) * cdf + 2 * x * _pdf(zz) - _z_pdf(zz)

    w2_sq = (antiderivative(hi, cdf_hi) - antiderivative(lo, cdf_lo)).sum(dim=0)
    return w2_sq.clamp_min(0).sqrt()


def project_on_directions(h: torch.Tensor, num_slices: int, seed: torch.Tensor) -> torch.Tensor:
    """Projections ``<h_i, theta_k>`` ``(b, s)`` on the directions of ``seed``.

    Chunked on both devices, never holding ``s x d``: the CPU stream on the CPU, the
    Philox kernel of the fused family on CUDA (float32 projections, float64 input in
    float64).
    """
    flat = h.reshape(h.shape[0], -1)
    if flat.device.type == "cpu":
        proj, norm = cpu_path.projections(flat, int(seed.item()), num_slices)
        return proj / norm
    if flat.device.type != "cuda":
        raise ValueError(f"h must be on a CPU or CUDA device, got {flat.device}")
    from per_triton.core.cuda_ops import projections_materialised

    acc = accumulation_dtype(flat.dtype)
    proj, norm = projections_materialised(flat, seed.reshape(1), num_slices, acc)
    return proj / norm


def sliced_wasserstein_to_normal(
    h: torch.Tensor,
    num_slices: int = 256,
    *,
    p: int = 1,
    seed: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Sliced ``W_p`` between the batch ``h`` and N(0, I): how close a layer is to N(0, I).

    ``SW_p = (mean_k W_p(P_k, N(0, 1))^p)^(1/p)`` where ``P_k`` is the empirical
    distribution of ``<h_i, theta_k>`` over the batch, on the same directions that
    :func:`per_triton.per_loss` uses for this seed. Each ``W_p`` is exact.

    A metric, a number to log, not a loss: it is computed under ``torch.no_grad()`` and
    returned detached (``requires_grad=False``, no ``grad_fn``) even when ``h``
    requires grad, so keeping its values holds no autograd graph. To train toward
    N(0, I) use :func:`per_triton.per_loss`, which bounds it from above (``p = 1``).

    Args:
        h: activations ``(b, *)``, any float dtype.
        num_slices: number of directions ``s >= 1``.
        p: 1 (default) or 2.
        seed: as in :func:`per_triton.per_loss`.

    Returns:
        0-d float64 tensor, detached.

    Example:
        >>> sliced_wasserstein_to_normal(torch.randn(4096, 64), seed=0)  # ~ sampling floor
        >>> sliced_wasserstein_to_normal(3 * torch.randn(4096, 64), seed=0)  # larger
    """
    check_activations(h, "h")
    check_num_slices(num_slices)
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    seed_t = seed_tensor(seed, h.device)
    with torch.no_grad():
        w = wasserstein_to_normal_1d(project_on_directions(h, num_slices, seed_t), p)
        return w.pow(p).mean().pow(1.0 / p)
