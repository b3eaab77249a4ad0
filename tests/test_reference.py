"""The plain reference against independent oracles: numpy float64 and closed forms.

The math: docs/design.md, "The math".
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from per_triton.core import reference
from per_triton.core.directions import sample_directions

from . import tolerances
from .assertions import assert_close

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def numpy_per(h: np.ndarray, theta: np.ndarray, reduction: str):
    """Eq. 5 and Eq. 6 written independently in numpy float64."""
    b, s = h.shape[0], theta.shape[0]
    p = h @ theta.T
    psi = p * special.erf(p / np.sqrt(2)) + np.sqrt(2 / np.pi) * np.exp(-(p**2) / 2)
    scale = 1 / (b * s) if reduction == "mean" else 1 / s
    return psi.sum() * scale, scale * special.erf(p / np.sqrt(2)) @ theta


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "b,d,s", [(1, 1, 1), (3, 7, 5), (7, 1023, 64), (13, 3, 257)], ids=lambda v: str(v)
)
def test_reference_matches_numpy(b: int, d: int, s: int, reduction: str):
    gen = torch.Generator().manual_seed(b * 1000 + d)
    h = torch.randn(b, d, generator=gen, dtype=torch.float64) * 1.7
    theta = sample_directions(s, d, seed=11, dtype=torch.float64)
    loss_np, grad_np = numpy_per(h.numpy(), theta.numpy(), reduction)
    assert_close(
        "loss",
        reference.per_loss(h, theta, reduction),
        torch.tensor(loss_np),
        *tolerances.F64_LOSS_VS_NUMPY,
    )
    assert_close(
        "grad",
        reference.per_grad(h, theta, reduction),
        torch.tensor(grad_np),
        *tolerances.F64_GRAD_VS_NUMPY,
    )


def test_reference_grad_is_autograd_of_loss():
    h = torch.randn(5, 4, 3, dtype=torch.float64, requires_grad=True)
    theta = sample_directions(9, 12, seed=2, dtype=torch.float64)
    reference.per_loss(h, theta).backward()
    assert_close("grad", reference.per_grad(h.detach(), theta), h.grad, *tolerances.F64_SAME_MATH)


def test_psi_at_zero():
    assert reference.psi(torch.zeros((), dtype=torch.float64)).item() == tolerances.F64_ULP.approx(
        SQRT_2_OVER_PI
    )


def test_psi_is_expected_distance_to_standard_normal():
    """psi(p) = E|Z - p| for Z ~ N(0, 1), by quadrature."""
    for p in (-3.0, -0.4, 0.0, 0.9, 2.5):
        expected, _ = integrate.quad(
            lambda z, p=p: abs(z - p) * np.exp(-z * z / 2), -40, 40, points=[p]
        )
        expected /= math.sqrt(2 * math.pi)
        got = reference.psi(torch.tensor(p, dtype=torch.float64)).item()
        assert got == tolerances.QUADRATURE_REL.approx(expected), p


def test_psi_has_pseudo_huber_shape():
    """Quadratic near 0 (curvature sqrt(2/pi)), linear with slope +-1 far out, convex."""
    p = torch.tensor([1e-3, -2e-3, 5e-3], dtype=torch.float64)
    quad = (reference.psi(p) - SQRT_2_OVER_PI) / p**2
    assert_close(
        "near-zero curvature",
        quad,
        torch.full_like(p, SQRT_2_OVER_PI / 2),
        *tolerances.PSI_CURVATURE,
    )
    far = torch.tensor([-12.0, 9.0, 15.0], dtype=torch.float64)
    assert_close("far field", reference.psi(far), far.abs(), *tolerances.PSI_FAR_FIELD)
    assert_close("far slope", reference.psi_grad(far), far.sign(), *tolerances.PSI_FAR_FIELD)
    grid = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    second = reference.psi(grid[2:]) - 2 * reference.psi(grid[1:-1]) + reference.psi(grid[:-2])
    assert (second > 0).all(), "psi must be strictly convex"
    assert_close("symmetry", reference.psi(grid), reference.psi(-grid), *tolerances.F64_ULP)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_reference_accepts_low_precision(dtype: torch.dtype):
    h = torch.randn(6, 40)
    theta = sample_directions(16, 40, seed=4)
    low = reference.per_loss(h.to(dtype), theta.to(dtype))
    exact = reference.per_loss(h.double(), theta.double())
    assert low.dtype == torch.float32
    assert_close("loss", low, exact, *tolerances.LOW_PRECISION_INPUTS)
