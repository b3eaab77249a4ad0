"""Closeness to N(0, I): the exact sliced W1, its sampling floor and PER's bound (Eq. 5).

Every margin is derived, not tuned: the sampling floor is computed exactly from the
binomial law of the empirical CDF, and scale/shift cases use the triangle
inequality for W1, so the only randomness is in fixed-seed Gaussian samples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import per_triton as pt
from per_triton.api.sliced_wasserstein import wasserstein_to_normal_1d
from per_triton.core.reference import psi

from . import tolerances
from .assertions import assert_close

scipy_stats = pytest.importorskip("scipy.stats")
scipy_integrate = pytest.importorskip("scipy.integrate")

# Tolerances (float64 unless stated).
GRID_ATOL = tolerances.W1_VS_GRID.atol
SAMPLE_ATOL = tolerances.W1_VS_SCIPY_SAMPLE.atol
FLOOR_RTOL = tolerances.SW1_FLOOR.rtol
BOUND_SLACK = tolerances.SW1_BOUND_F64_SLACK
F32_RTOL = tolerances.SW1_BOUND_F32.rtol
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def _gaussian(b: int, d: int, seed: int) -> torch.Tensor:
    # Offset the data seed so the samples never share a generator with the directions.
    return torch.randn(
        b, d, generator=torch.Generator().manual_seed(10_000 + seed), dtype=torch.float64
    )


def _projections(h: torch.Tensor, num_slices: int, seed: int) -> torch.Tensor:
    theta = pt.sample_directions(num_slices, h.shape[1], seed, dtype=torch.float64)
    return h @ theta.T


def expected_w1_floor(b: int) -> float:
    """E W1(empirical law of b N(0,1) samples, N(0,1)) = int E|F_b(x) - Phi(x)| dx.

    ``b * F_b(x)`` is Binomial(b, Phi(x)), so the integrand is an exact finite sum.
    """
    x = np.linspace(-9.0, 9.0, 6001)
    p = scipy_stats.norm.cdf(x)
    k = np.arange(b + 1)[:, None]
    pmf = scipy_stats.binom.pmf(k, b, p[None, :])
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
    return float(trapezoid((pmf * np.abs(k / b - p[None, :])).sum(0), x))


# --- the exact 1-D distances against sort-based estimates ----------------------------
@pytest.mark.parametrize(
    "kind,b,d",
    [
        pytest.param("exponential", 50, 7, id="exp-b50-d7"),
        pytest.param("gaussian", 31, 13, id="gauss-b31-d13"),
        pytest.param("bimodal", 64, 3, id="bimodal-b64-d3"),
    ],
)
def test_sw1_matches_large_sample_sort_estimate(kind: str, b: int, d: int) -> None:
    gen = torch.Generator().manual_seed(7)
    if kind == "exponential":
        h = torch.empty(b, d, dtype=torch.float64).exponential_(generator=gen)
    elif kind == "gaussian":
        h = 1.5 * torch.randn(b, d, generator=gen, dtype=torch.float64) + 0.3
    else:
        signs = torch.randint(0, 2, (b, d), generator=gen).to(torch.float64) * 4 - 2
        h = signs + 0.3 * torch.randn(b, d, generator=gen, dtype=torch.float64)
    s = 32
    proj = _projections(h, s, seed=3)
    exact = wasserstein_to_normal_1d(proj, p=1)
    # Sort-based estimate on a fine quantile grid of N(0, 1): each sorted projection
    # is matched with M/b consecutive normal quantiles.
    m = 200_000 // b * b
    z = torch.from_numpy(scipy_stats.norm.ppf((np.arange(m) + 0.5) / m))
    x = torch.sort(proj, dim=0).values.repeat_interleave(m // b, dim=0)
    grid_w1 = (x - z[:, None]).abs().mean(0)
    grid_w2 = (x - z[:, None]).pow(2).mean(0).sqrt()
    assert_close(f"W1 vs quantile grid ({kind})", exact, grid_w1, GRID_ATOL, 0)
    assert_close(
        f"W2 vs quantile grid ({kind})",
        wasserstein_to_normal_1d(proj, p=2),
        grid_w2,
        10 * GRID_ATOL,
        0,
    )
    # And against scipy's W1 to a large random normal sample, on a few directions.
    sample = np.random.default_rng(0).standard_normal(100_000)
    for k in range(4):
        ref = scipy_stats.wasserstein_distance(proj[:, k].numpy(), sample)
        assert abs(exact[k].item() - ref) < SAMPLE_ATOL, (kind, k, exact[k].item(), ref)
    # The public scalar is the mean over the same directions (float32 projections).
    sw1 = pt.sliced_wasserstein_to_normal(h.float(), s, seed=3).item()
    assert abs(sw1 - exact.mean().item()) < tolerances.SW1_F32_VS_F64.atol, (
        sw1,
        exact.mean().item(),
    )


def test_sampling_floor_and_its_one_over_sqrt_b_decay() -> None:
    floors = {b: expected_w1_floor(b) for b in (64, 1024)}
    # Theory: the floor shrinks like 1/sqrt(b) (ratio 4 between b = 64 and b = 1024).
    assert floors[64] / floors[1024] == tolerances.FLOOR_RATIO_THEORY.approx(4.0)
    measured = {}
    for b in floors:
        # d = 512 > s = 256: nearly orthogonal directions, nearly independent W1 values.
        vals = [
            pt.sliced_wasserstein_to_normal(_gaussian(b, 512, i).float(), 256, seed=i).item()
            for i in range(8)
        ]
        measured[b] = float(np.mean(vals))
        assert measured[b] == pytest.approx(floors[b], rel=FLOOR_RTOL), (b, vals, floors[b])
    assert measured[64] / measured[1024] == tolerances.FLOOR_RATIO_MEASURED.approx(4.0)


def test_sw1_grows_with_scale_and_shift() -> None:
    b, d, s = 2048, 64, 128
    g = _gaussian(b, d, 0)
    base = wasserstein_to_normal_1d(_projections(g, s, 1)).mean().item()
    assert base < 2 * expected_w1_floor(b)
    # Scale: W1(N(0, sigma^2), N(0, 1)) = |sigma - 1| sqrt(2/pi); by the triangle
    # inequality the batch is within sigma * W1(batch of g, N(0, 1)) of that value.
    prev = {}
    for sigma in (0.25, 0.5, 1.0, 2.0, 4.0):
        sw1 = wasserstein_to_normal_1d(_projections(sigma * g, s, 1)).mean().item()
        theory = abs(sigma - 1) * SQRT_2_OVER_PI
        assert abs(sw1 - theory) <= sigma * base + 1e-12, (sigma, sw1, theory)
        prev[sigma] = sw1
    assert prev[1.0] < prev[0.5] < prev[0.25]
    assert prev[1.0] < prev[2.0] < prev[4.0]
    # Shift along u: direction k sees N(mu <u, theta_k>, 1), whose W1 to N(0, 1) is
    # |mu <u, theta_k>|; the batch is within W1(batch of g, N(0, 1)) of it.
    theta = pt.sample_directions(s, d, 1, dtype=torch.float64)
    u = torch.ones(d, dtype=torch.float64) / math.sqrt(d)
    last = base
    for mu in (0.5, 1.0, 2.0, 4.0):
        sw1 = wasserstein_to_normal_1d((g + mu * u) @ theta.T).mean().item()
        theory = (mu * (theta @ u)).abs().mean().item()
        assert abs(sw1 - theory) <= base + 1e-12, (mu, sw1, theory)
        assert sw1 > last
        last = sw1


# --- the bound behind Eq. 5 -----------------------------------------------------------
def _batch(kind: str, b: int, d: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(11)
    n = lambda: torch.randn(b, d, generator=gen, dtype=torch.float64)
    if kind == "normal":
        return n()
    if kind == "shifted":
        return n() + 2.0
    if kind == "wide":
        return 3.0 * n()
    if kind == "narrow":
        return 0.1 * n()
    if kind == "skewed":
        return torch.empty(b, d, dtype=torch.float64).exponential_(generator=gen)
    if kind == "bimodal":
        return torch.where(torch.rand(b, d, generator=gen) < 0.5, -2.0, 2.0) + 0.3 * n()
    if kind == "heavy":
        return n() / torch.rand(b, d, generator=gen, dtype=torch.float64).clamp_min(1e-3)
    if kind == "uniform":
        return torch.rand(b, d, generator=gen, dtype=torch.float64) * 6 - 3
    if kind == "zeros":
        return torch.zeros(b, d, dtype=torch.float64)
    raise ValueError(kind)


@pytest.mark.parametrize("p", [-3.0, -0.5, 0.0, 0.7, 2.5])
def test_psi_is_expected_distance_to_a_standard_normal(p: float) -> None:
    ref, _ = scipy_integrate.quad(lambda z: abs(z - p) * scipy_stats.norm.pdf(z), -np.inf, np.inf)
    assert psi(torch.tensor(p, dtype=torch.float64)).item() == tolerances.QUADRATURE_ABS.approx(ref)


KINDS = ["normal", "shifted", "wide", "narrow", "skewed", "bimodal", "heavy", "uniform", "zeros"]


@pytest.mark.parametrize(
    "kind,b,d",
    [pytest.param(k, 97, 13, id=f"{k}-b97-d13") for k in KINDS]
    + [pytest.param(k, 33, 1, id=f"{k}-b33-d1") for k in ("normal", "skewed", "bimodal")]
    + [pytest.param("shifted", 1, 5, id="single-sample-b1-d5")],
)
def test_sw1_never_exceeds_per_direction_by_direction(kind: str, b: int, d: int) -> None:
    h = _batch(kind, b, d)
    proj = _projections(h, 64, seed=5)
    w1 = wasserstein_to_normal_1d(proj)  # (s,)
    per_terms = psi(proj).mean(0)  # (s,): Eq. 5 restricted to direction k
    gap = per_terms - w1
    assert gap.min() >= -BOUND_SLACK, f"{kind}: SW1 exceeds PER by {-gap.min():.3g}"
    if kind == "zeros" or b == 1:
        # A single atom (or b equal atoms) is the equality case: W1(delta_p, N) = psi(p).
        assert gap.abs().max() <= 1e-9
    # The public float32 functions on the same seed keep the bound.
    sw1 = pt.sliced_wasserstein_to_normal(h.float(), 64, seed=5).item()
    loss = pt.per_loss(h.float(), 64, seed=5).item()
    assert sw1 <= loss * (1 + F32_RTOL), (kind, sw1, loss)


def test_per_alone_pulls_activations_to_zero() -> None:
    """Without a task loss, PER's minimiser is h = 0 (each psi is minimal at 0), which
    is far from N(0, I): SW1 rises towards psi(0) = sqrt(2/pi)."""
    torch.manual_seed(0)
    h = _gaussian(256, 16, 1).float().requires_grad_(True)
    opt = torch.optim.SGD([h], lr=2.0)  # "sum": per-sample gradient ~ 0.8 h / d near 0
    start_sw1 = pt.sliced_wasserstein_to_normal(h.detach(), 128, seed=0).item()
    variances = [h.detach().var().item()]
    for step in range(150):
        opt.zero_grad()
        pt.per_loss(h, 64, seed=step, reduction="sum").backward()
        opt.step()
        variances.append(h.detach().var().item())
    end_sw1 = pt.sliced_wasserstein_to_normal(h.detach(), 128, seed=0).item()
    assert variances[-1] < 0.1 * variances[0]
    assert all(b <= a * (1 + 1e-3) for a, b in zip(variances, variances[1:], strict=False))
    assert end_sw1 > start_sw1 + 0.3
    assert end_sw1 < SQRT_2_OVER_PI + 1e-3
