"""sliced_wasserstein_to_normal against a sort-based estimate with a large Gaussian sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import per_triton as pt
from per_triton.api.sliced_wasserstein import wasserstein_to_normal_1d

from . import tolerances


def _sampled_w(x: np.ndarray, p: int, n: int = 2_000_000, seed: int = 0) -> float:
    """W_p between the empirical x and N(0,1) from a large sorted normal sample."""
    z = np.sort(np.random.default_rng(seed).standard_normal(n))
    xs = np.sort(x)
    idx = (np.arange(n) * len(xs)) // n  # quantile matching: z_j goes with x_(floor(j*b/n))
    return float(np.mean(np.abs(z - xs[idx]) ** p) ** (1 / p))


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("case", ["normal", "shifted", "skewed", "bimodal", "tiny"])
def test_1d_distance_matches_sampled_estimate(case: str, p: int):
    rng = np.random.default_rng(1)
    x = {
        "normal": rng.standard_normal(200),
        "shifted": rng.standard_normal(150) * 0.5 + 2,
        "skewed": rng.exponential(1.0, 120),
        "bimodal": np.concatenate([rng.normal(-3, 0.3, 50), rng.normal(3, 0.3, 70)]),
        "tiny": np.array([0.3]),
    }[case]
    exact = wasserstein_to_normal_1d(torch.tensor(x)[:, None], p).item()
    assert exact == tolerances.W_VS_SAMPLE.approx(_sampled_w(x, p))


def test_point_mass_equals_psi():
    """For one sample, W1(delta_x, N(0, 1)) = E|Z - x| = psi(x) (Eq. 5)."""
    x = torch.tensor([[-2.0, -0.1, 0.0, 1.3, 4.0]], dtype=torch.float64)
    w = wasserstein_to_normal_1d(x, 1)
    torch.testing.assert_close(w, pt.reference.psi(x[0]), **tolerances.F64_CLOSED_FORM.kw)


def test_sliced_uses_the_directions_of_the_seed():
    h = torch.randn(300, 7, dtype=torch.float64)
    theta = pt.sample_directions(32, 7, seed=5, dtype=torch.float64)
    expected = wasserstein_to_normal_1d(h @ theta.T, 1).mean()
    torch.testing.assert_close(pt.sliced_wasserstein_to_normal(h, 32, seed=5), expected)
    expected2 = wasserstein_to_normal_1d(h @ theta.T, 2).square().mean().sqrt()
    torch.testing.assert_close(pt.sliced_wasserstein_to_normal(h, 32, p=2, seed=5), expected2)


def test_sliced_is_small_for_normal_and_large_for_scaled():
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(4000, 20, generator=gen)
    near = pt.sliced_wasserstein_to_normal(h, 64, seed=1).item()
    far = pt.sliced_wasserstein_to_normal(3 * h, 64, seed=1).item()
    assert near < 0.05 < 1.0 < far


def _kernel_device() -> str:
    """The Triton kernels run on CUDA where there is one, else under the interpreter."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def test_chunked_philox_projection_matches_materialised_directions():
    """The CUDA projection of the monitor (chunked Philox draws) on the kernels' directions."""
    from per_triton.core.cuda_ops import projections_materialised
    from per_triton.kernels.philox_directions import sample_directions_triton

    device = _kernel_device()
    h = torch.randn(9, 37, dtype=torch.float64, device=device)
    seed = torch.tensor([21], device=device)
    proj, norm = projections_materialised(h, seed, 5, torch.float64)
    theta = sample_directions_triton(5, 37, seed, torch.float64)
    torch.testing.assert_close(proj / norm, h @ theta.T, **tolerances.F64_CLOSED_FORM.kw)


@pytest.mark.gpu
def test_sliced_wasserstein_on_cuda_uses_the_cuda_directions():
    h = torch.randn(257, 3, 11, device="cuda")
    seed = torch.tensor([4], device="cuda")
    theta = pt.sample_directions(16, 33, seed, device="cuda", dtype=torch.float64)
    expected = wasserstein_to_normal_1d(h.reshape(257, -1).double() @ theta.T, 1).mean()
    got = pt.sliced_wasserstein_to_normal(h, 16, seed=seed)
    torch.testing.assert_close(got, expected, **tolerances.SW1_CUDA.kw)


@pytest.mark.parametrize("p", [1, 2])
def test_sliced_is_a_detached_metric_that_holds_no_graph(p: int):
    """A number to log: no grad_fn even for an input that requires grad, the same value as
    on the detached input, and nothing of the input's autograd graph kept alive."""
    import gc
    import weakref

    leaf = torch.randn(64, 5, dtype=torch.float64, requires_grad=True)
    mid = leaf * 2.0
    h = mid.sin()  # sin's backward saves mid: alive as long as a graph through h is
    saved = weakref.ref(mid)
    got = pt.sliced_wasserstein_to_normal(h, 8, p=p, seed=3)
    assert got.grad_fn is None and not got.requires_grad
    assert got.dtype == torch.float64 and got.shape == ()
    torch.testing.assert_close(got, pt.sliced_wasserstein_to_normal(h.detach(), 8, p=p, seed=3))
    del mid, h
    gc.collect()
    assert saved() is None
