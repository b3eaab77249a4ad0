"""per_loss on CPU against the reference, closed forms, quadrature and gradcheck."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import integrate, special

import per_triton as pt
from per_triton.core import reference

from . import tolerances
from .assertions import assert_close

# Tolerances of the CPU path against the float64 reference on the same directions.
TOLERANCES = {  # dtype: (loss atol, loss rtol, grad atol, grad rtol)
    dtype: (*loss, *grad) for dtype, (loss, grad) in tolerances.PER_LOSS_BY_DTYPE.items()
}

SHAPES = [
    pytest.param((1, 1), 1, id="b1-d1-s1"),
    pytest.param((3, 17), 5, id="b3-d17-s5"),
    pytest.param((7, 1023), 64, id="b7-d1023-s64"),
    pytest.param((2, 3, 5, 7), 13, id="b2-d105-s13"),
    pytest.param((5, 2053), 3, id="b5-d2053-s3"),
]


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("shape,s", SHAPES)
def test_cpu_path_matches_reference(shape, s, reduction, dtype):
    gen = torch.Generator().manual_seed(sum(shape) + s)
    h = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    d = math.prod(shape[1:])
    theta = pt.sample_directions(s, d, seed=99, dtype=torch.float64)
    loss = pt.per_loss(h, s, seed=99, reduction=reduction)
    loss.backward()
    exact = h.detach().double()
    atol, rtol, gatol, grtol = TOLERANCES[dtype]
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert h.grad.dtype == dtype and h.grad.shape == h.shape
    assert_close("loss", loss, reference.per_loss(exact, theta, reduction), atol, rtol)
    assert_close("grad", h.grad, reference.per_grad(exact, theta, reduction), gatol, grtol)


def test_gradcheck_float64():
    h = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    seed = torch.tensor([7])
    assert torch.autograd.gradcheck(lambda x: pt.per_loss(x, 6, seed=seed), (h,))
    assert torch.autograd.gradcheck(lambda x: pt.per_loss(x, 3, seed=seed, reduction="sum"), (h,))


def test_non_contiguous_input_equals_contiguous():
    base = torch.randn(9, 40, dtype=torch.float64)
    view = base.T[:, ::2]  # (40, 5) with strides (1, 80)
    assert not view.is_contiguous()
    a = view.clone().requires_grad_()
    b = view.contiguous().requires_grad_()
    pt.per_loss(a, 8, seed=1).backward()
    pt.per_loss(b, 8, seed=1).backward()
    assert torch.equal(a.grad, b.grad)


def test_gaussian_activations_give_two_over_sqrt_pi():
    """For h ~ N(0, I) every projection is N(0, 1): E psi(Z) = E|Z - Z'| = 2/sqrt(pi)."""
    h = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = pt.per_loss(h, 256, seed=3).item()
    assert loss == tolerances.GAUSSIAN_PER_MC.approx(2 / math.sqrt(math.pi))


def _t_density(d: int):
    """Density of t = <theta, u> for theta uniform on S^{d-1}, u a fixed unit vector."""
    norm, _ = integrate.quad(lambda t: (1 - t * t) ** ((d - 3) / 2), -1, 1)
    return lambda t: (1 - t * t) ** ((d - 3) / 2) / norm


@pytest.mark.parametrize("d,r", [(4, 0.5), (5, 1.5), (12, 4.0)], ids=lambda v: str(v))
def test_loss_and_gradient_match_quadrature_for_a_row_of_given_norm(d: int, r: float):
    """E over directions of the loss and the gradient, by a 1-D integral.

    The density of ``t``: docs/design.md, "The math".
    """
    density = _t_density(d)
    psi = lambda p: p * special.erf(p / np.sqrt(2)) + np.sqrt(2 / np.pi) * np.exp(-p * p / 2)
    exp_loss, _ = integrate.quad(lambda t: psi(r * t) * density(t), -1, 1)
    exp_grad, _ = integrate.quad(lambda t: special.erf(r * t / np.sqrt(2)) * t * density(t), -1, 1)
    sd_loss, _ = integrate.quad(lambda t: (psi(r * t) - exp_loss) ** 2 * density(t), -1, 1)
    s = 20000
    u = torch.randn(d, dtype=torch.float64, generator=torch.Generator().manual_seed(d))
    h = (r * u / u.norm()).reshape(1, d).requires_grad_()
    loss = pt.per_loss(h, s, seed=17)
    loss.backward()
    assert abs(loss.item() - exp_loss) < tolerances.SIGMAS * math.sqrt(sd_loss / s)
    # The gradient's component along h has mean exp_grad; orthogonal parts average out.
    along = (h.grad @ h.detach().T / r).item()
    assert along == pytest.approx(exp_grad, abs=tolerances.SIGMAS / math.sqrt(s))
    ortho = h.grad - along * h.detach() / r
    assert ortho.norm().item() < 5 * math.sqrt(d / s) / math.sqrt(d)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_activations_give_non_finite_loss(bad: float):
    """As documented: the loss is never finite; NaN reaches the gradient, Inf does not."""
    h = torch.randn(4, 10)
    h[2, 3] = bad
    h.requires_grad_()
    loss = pt.per_loss(h, 8, seed=0)
    assert not torch.isfinite(loss), "a non-finite activation must not give a finite loss"
    loss.backward()
    if math.isnan(bad):
        assert h.grad[2].isnan().all()
    else:  # psi'(+-inf) = erf(+-inf) = +-1: the Eq. 6 coefficients stay finite
        assert torch.isfinite(h.grad).all()


MEMORY_SCRIPT = """
import json, resource, sys, torch, per_triton as pt
torch.set_num_threads(int(sys.argv[1]))
b, d, s = 4, 2**20, 256
h = torch.randn(b, d, requires_grad=True)
pt.per_loss(torch.randn(b, 4096, requires_grad=True), s, seed=0).backward()  # warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
loss = pt.per_loss(h, s, seed=1)
loss.backward()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_growth_bytes": (after - before) * 1024, "loss": loss.item()}))
"""

# Stated bound: under 40 MiB plus the gradient (b*d*4 = 16 MiB), against
# 4*s*d = 1 GiB for the materialised direction matrix. The directions in memory at
# once, kept chunks and the threads' working chunks together, stay within
# per_triton.core.kept_directions.cache_budget() (32 MiB by default).
MEMORY_BOUND = 40 * 2**20 + 4 * 2**20 * 4


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_path_memory_is_bounded_by_the_chunk(threads: int):
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert math.isfinite(result["loss"])
    assert result["peak_growth_bytes"] < MEMORY_BOUND, result
