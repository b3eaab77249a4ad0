"""The CPU direction stream (docs/design.md, "The CPU stream"): unit rows, purity, distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import per_triton as pt
from per_triton.core import cpu_path
from per_triton.core.directions import draw_columns

from . import tolerances
from .assertions import assert_close

W = 256  # a column width for the tests (the stream itself has no blocks)


@pytest.mark.parametrize("s,d", [(1, 1), (5, 17), (64, 1023), (3, 2 * W + 5)])
def test_rows_are_unit_vectors(s: int, d: int):
    theta = pt.sample_directions(s, d, seed=3)
    assert theta.shape == (s, d) and theta.dtype == torch.float32
    assert_close("row norms", theta.double().norm(dim=1), torch.ones(s), *tolerances.F32_UNIT_NORM)


def test_same_seed_same_directions_other_seed_other_directions():
    a = pt.sample_directions(8, 3000, seed=123)
    assert torch.equal(a, pt.sample_directions(8, 3000, seed=123))
    assert torch.equal(a, pt.sample_directions(8, 3000, seed=torch.tensor([123])))
    assert not torch.allclose(a, pt.sample_directions(8, 3000, seed=124))


def test_direction_is_a_pure_function_of_seed_slice_and_coordinate():
    """Unnormalised v[k, j] does not depend on s or d (prefix rows, prefix columns)."""
    big = draw_columns(9, 40, 0, 3 * W)
    assert torch.equal(draw_columns(9, 7, 0, 2 * W + 3), big[:7, : 2 * W + 3])
    # Any column range regenerates on its own, aligned to a Philox group of 4 or not.
    assert torch.equal(draw_columns(9, 40, W, 3 * W), big[:, W:])
    assert torch.equal(draw_columns(9, 40, 5, 3 * W - 2), big[:, 5:-2])


def test_dtypes_see_the_same_directions():
    base = pt.sample_directions(6, 500, seed=5, dtype=torch.float64)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        low = pt.sample_directions(6, 500, seed=5, dtype=dtype)
        assert_close(str(dtype), low, base, 0, 1e-2 if dtype != torch.float32 else 1e-6)


@pytest.mark.parametrize("chunk", [W, 3 * W + 1, 64 * W])
def test_chunk_size_does_not_change_loss_or_gradient(chunk: int):
    h = torch.randn(5, 5 * W + 77, dtype=torch.float64)
    loss_ref, coeff_ref = cpu_path.forward(h, 42, 33, chunk=2 * W)
    loss, coeff = cpu_path.forward(h, 42, 33, chunk=chunk)
    assert_close("loss", loss, loss_ref, *tolerances.F64_SUM_ORDER)
    assert_close("coeff", coeff, coeff_ref, *tolerances.F64_SAME_MATH)
    grad_ref = cpu_path.backward(coeff_ref, 42, h.shape[1], torch.float64, chunk=2 * W)
    grad = cpu_path.backward(coeff_ref, 42, h.shape[1], torch.float64, chunk=chunk)
    assert_close("grad", grad, grad_ref, *tolerances.F64_SAME_MATH)


def test_uniform_on_the_sphere_ks_on_d3_coordinates():
    """For d = 3 each coordinate of a uniform unit vector is uniform on [-1, 1] (Archimedes)."""
    theta = pt.sample_directions(20000, 3, seed=2024).double().numpy()
    for j in range(3):
        result = stats.kstest(theta[:, j], stats.uniform(loc=-1, scale=2).cdf)
        assert result.pvalue > 1e-3, f"coordinate {j}: KS p = {result.pvalue:.2e}"
    # Different coordinates are uncorrelated, mean zero.
    assert np.abs(np.corrcoef(theta.T) - np.eye(3)).max() < 0.04
    assert np.abs(theta.mean(axis=0)).max() < 0.03


def test_raw_normals_have_standard_moments():
    v = draw_columns(77, 256, 0, 16 * W).double().flatten().numpy()
    assert abs(v.mean()) < 0.01 and abs(v.var() - 1) < 0.01
    assert abs(stats.skew(v)) < 0.02 and abs(stats.kurtosis(v)) < 0.04
    assert stats.kstest(v[:200000], "norm").pvalue > 1e-3


def test_seed_none_follows_torch_manual_seed():
    torch.manual_seed(0)
    a = pt.per_loss(torch.ones(2, 9), 4)
    torch.manual_seed(0)
    b = pt.per_loss(torch.ones(2, 9), 4)
    c = pt.per_loss(torch.ones(2, 9), 4)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_sample_directions_needs_a_seed_and_seeds_are_named():
    with pytest.raises(TypeError, match="seed"):
        pt.sample_directions(3, 5, None)
    with pytest.raises(ValueError, match="seed must be in"):
        pt.per_loss(torch.randn(2, 5), 4, seed=torch.tensor([-3]))
