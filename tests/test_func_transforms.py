"""PER under torch.func: functional_call, vmap (per-sample gradients) and forward-mode AD."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

import per_triton as pt
from per_triton.api.layer_seeds import derive_seed
from per_triton.core import exact, reference

from . import tolerances
from .assertions import assert_close

S = 16


def _net(estimator: str = "monte_carlo", mode: str = "inject") -> nn.Sequential:
    torch.manual_seed(0)
    per = pt.PER(
        0.7, S if estimator == "monte_carlo" else 256, estimator=estimator, mode=mode, seed=5
    )
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), per, nn.Linear(6, 3)).double()


def _eager_grads(net: nn.Sequential, x: torch.Tensor, call: int) -> dict[str, torch.Tensor]:
    """Gradients of ``net(x).sum()`` with the PER layer at call ``call`` (plain autograd)."""
    net[2].calls = call
    net.zero_grad()
    net(x).sum().backward()
    return {k: p.grad.clone() for k, p in net.named_parameters()}


# ------------------------------------------------------------------ functional_call


def test_grad_of_functional_call_advances_the_directions():
    net = _net()
    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = dict(net.named_buffers())
    x = torch.randn(5, 4, dtype=torch.float64)
    step = grad(lambda p: functional_call(net, (p, buffers), (x,)).sum())
    grads = [step(params) for _ in range(3)]
    assert net[2].calls == 3, "each transformed call must count one call"
    for call, g in enumerate(grads):
        expected = _eager_grads(net, x, call)
        for name in params:
            assert_close(name, g[name], expected[name], *tolerances.F64_TRANSFORM)
    assert not torch.equal(grads[0]["0.weight"], grads[1]["0.weight"]), "directions frozen"


# ------------------------------------------------------------------------------ vmap


def test_vmap_of_per_loss_is_per_slice_reference():
    h = torch.randn(3, 5, 7, dtype=torch.float64)
    got = vmap(lambda x: pt.per_loss(x, S, seed=1))(h)
    theta = pt.sample_directions(S, 7, 1, dtype=torch.float64)
    expected = torch.stack([reference.per_loss(h[i], theta) for i in range(3)])
    assert_close("vmap per_loss", got, expected, *tolerances.F64_TRANSFORM)
    grads = vmap(grad(lambda x: pt.per_loss(x, S, seed=1)))(h)
    expected = torch.stack([reference.per_grad(h[i], theta) for i in range(3)])
    assert_close("vmap grad per_loss", grads, expected, *tolerances.F64_TRANSFORM)


def test_vmap_of_exact_per_loss_is_per_slice_loss():
    h = torch.randn(4, 3, 9, dtype=torch.float64)
    got = vmap(lambda x: pt.per_loss(x, estimator="exact"))(h)
    # independent oracle: large-d closed form is not exact at d = 9, so use the 1-D
    # integral over t (docs/design.md, "The math") per sample
    t = torch.linspace(-1, 1, 200001, dtype=torch.float64)[1:-1]
    density = (1 - t * t) ** 3  # (d - 3) / 2 = 3
    density = density / torch.trapezoid(density, t)
    r = h.norm(dim=2)
    per_sample = torch.trapezoid(reference.psi(r[..., None] * t) * density, t, dim=-1)
    assert_close("vmap exact", got, per_sample.mean(1), *tolerances.F64_TRAPEZOID)


@pytest.mark.parametrize("estimator", ["monte_carlo", "exact"])
def test_per_sample_gradients_match_the_reference_per_sample(estimator: str):
    """Per sample, PER is the loss of that sample as a batch of one; all samples of one
    vmapped call share one direction set (one layer call)."""
    net = _net(estimator)
    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = dict(net.named_buffers())
    x = torch.randn(6, 4, dtype=torch.float64)

    def loss(p, xi):
        return functional_call(net, (p, buffers), (xi.unsqueeze(0),)).sum()

    got = vmap(grad(loss), in_dims=(None, 0))(params, x)
    assert net[2].calls == (estimator == "monte_carlo"), "one vmapped call is one layer call"
    seed = derive_seed(5, 0, 0)
    theta = pt.sample_directions(S, 6, seed, dtype=torch.float64)

    def plain(p, xi):  # the same network in plain torch, PER from the reference
        h = torch.tanh(torch.nn.functional.linear(xi[None], p["0.weight"], p["0.bias"]))
        if estimator == "exact":
            per = exact.exact_terms(h.square().sum(1), 6)[0].mean()
        else:
            per = reference.per_loss(h, theta)
        out = torch.nn.functional.linear(h, p["3.weight"], p["3.bias"])
        return out.sum() + 0.7 * per

    for i in range(6):
        expected = grad(plain)(params, x[i])
        for name in params:
            assert_close(f"{name}[{i}]", got[name][i], expected[name], *tolerances.F64_TRANSFORM)


# ---------------------------------------------------------------------- forward AD


def _fd(f, h: torch.Tensor, v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return (f(h + eps * v) - f(h - eps * v)) / (2 * eps)


@pytest.mark.parametrize("estimator", ["monte_carlo", "exact"])
def test_jvp_of_per_loss_matches_finite_differences(estimator: str):
    torch.manual_seed(1)
    h = torch.randn(5, 8, dtype=torch.float64)
    v = torch.randn_like(h)
    kwargs = {"estimator": estimator} if estimator == "exact" else {"num_slices": S, "seed": 3}

    def f(x):
        return pt.per_loss(x, **kwargs)

    _, tangent = jvp(f, (h,), (v,))
    assert_close("jvp", tangent, _fd(f, h, v), *tolerances.F64_FINITE_DIFF)
    if estimator == "monte_carlo":  # closed form: (1/b) sum erf(p/sqrt2) <v, theta> / s
        theta = pt.sample_directions(S, 8, 3, dtype=torch.float64)
        closed = (torch.erf((h @ theta.T) / 2**0.5) * (v @ theta.T)).sum() / (5 * S)
        assert_close("jvp closed form", tangent, closed, *tolerances.F64_TRANSFORM)
    with fwAD.dual_level():  # dual numbers, on a tensor that requires grad
        dual = fwAD.make_dual(h.clone().requires_grad_(), v)
        assert_close("dual", fwAD.unpack_dual(f(dual)).tangent, tangent, *tolerances.F64_TRANSFORM)


@pytest.mark.parametrize("estimator", ["monte_carlo", "exact"])
@pytest.mark.parametrize("mode", ["inject", "loss"])
def test_dual_numbers_pass_through_a_training_per_layer(estimator: str, mode: str):
    net = _net(estimator, mode)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn_like(x)
    with fwAD.dual_level():
        out = fwAD.unpack_dual(net(fwAD.make_dual(x, v))).tangent
    plain = nn.Sequential(net[0], net[1], net[3])
    _, expected = jvp(plain, (x.detach(),), (v,))
    assert_close("tangent", out, expected, *tolerances.F64_TRANSFORM)
    assert net[2].last_loss is not None, "the layer ran in training mode"


def test_jvp_of_the_second_order_coefficients_matches_finite_differences():
    """The coeff tangent (used by jvp of a gradient: forward-over-reverse)."""
    h = torch.randn(4, 6, dtype=torch.float64)
    v = torch.randn_like(h)

    def g(x):
        return grad(lambda y: pt.per_loss(y, S, seed=2))(x)

    _, tangent = jvp(g, (h,), (v,))
    assert_close("hvp", tangent, _fd(g, h, v), *tolerances.F64_FINITE_DIFF)
