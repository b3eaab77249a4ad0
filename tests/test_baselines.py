"""Baseline regularizers against hand-computed values; the PER methods are ``pt.PER``.

Hand values: L1 / L2 are mean |h| / mean h^2. VCL (Littwin & Wolf, NeurIPS 2018) with
beta = 1: half A with biased variance 1 and half B with variance 4 give
``(1 - (1 + 1) / (4 + 1))^2 = 0.36``; variances 0 and 1 give ``(1 - 1/2)^2 = 0.25``.
Seeds: module ``i`` of a step seeded ``s`` draws with ``child_seed(s, "layer", i)``
(docs/design.md, "Child seeds").
"""

from __future__ import annotations

import copy

import pytest
import torch

import per_triton as pt
from per_triton.api.penalty import PenaltyModule
from per_triton.core.seeds import child_seed
from per_triton.experiments.baselines import (
    METHODS,
    L1Penalty,
    L2Penalty,
    PERTorchPenalty,
    TimeStepsAsSamples,
    VCLPenalty,
    collect_penalty,
    make_regularizer,
    penalty_modules,
    set_step_seed,
)
from per_triton.experiments.methods import PER_ESTIMATORS

from . import tolerances
from .assertions import assert_close

# name -> (atol, rtol): hand values are exact in float32 up to rounding
TOL = {"hand": tolerances.F32_HAND, "per": tolerances.F32_PER_MODULE}


def _penalty(module: torch.nn.Module, h: torch.Tensor) -> torch.Tensor | None:
    module.train()
    out = module(h)
    assert out is h  # identity in the forward pass
    return collect_penalty(module)


H = torch.tensor([[1.0, -2.0], [3.0, 0.0]])


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        pytest.param(L1Penalty(), (1 + 2 + 3 + 0) / 4, id="l1"),
        pytest.param(L2Penalty(), (1 + 4 + 9 + 0) / 4, id="l2"),
    ],
)
def test_l1_l2_hand_values(module: torch.nn.Module, expected: float) -> None:
    assert_close("penalty", _penalty(module, H), torch.tensor(expected), *TOL["hand"])


def test_l1_l2_gradients() -> None:
    h = H.clone().requires_grad_()
    _penalty(L1Penalty(), h).backward()
    assert_close("dL1/dh", h.grad, torch.sign(H) / 4, *TOL["hand"])
    h.grad = None
    _penalty(L2Penalty(), h).backward()
    assert_close("dL2/dh", h.grad, 2 * H / 4, *TOL["hand"])


@pytest.mark.parametrize(
    ("h", "recurrent", "expected"),
    [
        # (n, F): unit 0 halves [1, 3] / [0, 4] -> 0.36; unit 1 [2, 2] / [1, 3] -> 0.25
        pytest.param(
            torch.tensor([[1.0, 2.0], [3.0, 2.0], [0.0, 1.0], [4.0, 3.0]]),
            False, (0.36 + 0.25) / 2, id="dense-2units",
        ),
        # odd batch: the fifth sample is left out
        pytest.param(
            torch.tensor([[1.0], [3.0], [0.0], [4.0], [100.0]]), False, 0.36, id="dense-odd-b5"
        ),
        # (n, C=1, 1, 2): a unit is a channel, spatial positions pooled: {1,3,1,3} / {0,4,4,0}
        pytest.param(
            torch.tensor([[1.0, 3.0], [1.0, 3.0], [0.0, 4.0], [4.0, 0.0]]).reshape(4, 1, 1, 2),
            False, 0.36, id="conv-c1",
        ),
        # (T=2, b=4, H=1): split along b, pooled over time
        pytest.param(
            torch.tensor([[1.0, 3.0, 0.0, 4.0], [3.0, 1.0, 4.0, 0.0]]).reshape(2, 4, 1),
            True, 0.36, id="recurrent-T2-b4",
        ),
    ],
)  # fmt: skip
def test_vcl_hand_values(h: torch.Tensor, recurrent: bool, expected: float) -> None:
    units = h.shape[-1] if recurrent else h.shape[1]
    vcl = VCLPenalty(units, recurrent=recurrent)
    assert_close("vcl", _penalty(vcl, h), torch.tensor(expected), *TOL["hand"])


def test_vcl_beta_is_learnable() -> None:
    """d/dbeta of (1 - r)^2, r = (a + beta)/(b + beta), at a=1, b=4, beta=1: -2(1-r)(b-a)/25."""
    vcl = VCLPenalty(1)
    _penalty(vcl, torch.tensor([[1.0], [3.0], [0.0], [4.0]])).backward()
    expected = -2 * (1 - 0.4) * (4 - 1) / (4 + 1) ** 2  # = -0.144
    assert_close("dVCL/dbeta", vcl.beta.grad, torch.tensor([expected]), *TOL["hand"])
    assert [n for n, _ in vcl.named_parameters()] == ["beta"]


def test_vcl_needs_four_samples() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        _penalty(VCLPenalty(2), torch.randn(3, 2))


def _seeded(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``module`` as the only penalty module of a model, given step seed ``seed``."""
    set_step_seed(torch.nn.Sequential(module), seed)
    return module


@pytest.mark.parametrize("method", sorted(PER_ESTIMATORS))
def test_per_methods_are_the_per_layer_users_import(method: str) -> None:
    mod = make_regularizer(method, 3, num_slices=16)
    assert type(mod) is pt.PER and mod.estimator == PER_ESTIMATORS[method]
    assert (mod.coeff, mod.mode, mod.reduction) == (1.0, "loss", "mean")
    assert mod.num_slices == (16 if method == "per" else 256)
    assert isinstance(make_regularizer(method, 3, recurrent=True).inner, pt.PER)


@pytest.mark.parametrize("shape", [(6, 3, 5), (4, 7)], ids=["b6-c3-l5", "b4-d7"])
def test_per_penalty_is_per_loss(shape: tuple[int, ...]) -> None:
    h = torch.randn(shape, generator=torch.Generator().manual_seed(0)).requires_grad_()
    per = _seeded(make_regularizer("per", 0, num_slices=16), 123)
    expected = pt.per_loss(h, 16, seed=child_seed(123, "layer", 0))
    assert_close("per", _penalty(per, h), expected, *TOL["per"])
    exact = make_regularizer("per_exact", 0)
    expected = pt.per_loss(h, estimator="exact")
    assert_close("per_exact", _penalty(exact, h), expected, *TOL["per"])


def test_per_penalty_recurrent_reads_time_steps_as_samples() -> None:
    h = torch.randn(5, 3, 8, generator=torch.Generator().manual_seed(0)).requires_grad_()
    per = _seeded(make_regularizer("per", 8, num_slices=16, recurrent=True), 7)
    assert isinstance(per, TimeStepsAsSamples)
    expected = pt.per_loss(h.reshape(15, 8), 16, seed=child_seed(7, "layer", 0))
    assert_close("per recurrent", _penalty(per, h), expected, *TOL["per"])


def test_per_torch_is_the_plain_reference() -> None:
    """per_torch: torch.randn directions from a generator seeded with the layer seed."""
    h = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(0))
    mod = _seeded(PERTorchPenalty(32), 99)
    v = torch.randn(32, 6, generator=torch.Generator().manual_seed(child_seed(99, "layer", 0)))
    expected = pt.reference.per_loss(h, v / v.norm(dim=1, keepdim=True))
    assert_close("per_torch", _penalty(mod, h), expected, *TOL["per"])
    set_step_seed(torch.nn.Sequential(mod), None)  # no step seed: torch's generator
    torch.manual_seed(5)
    v = torch.randn(32, 6)
    torch.manual_seed(5)
    expected = pt.reference.per_loss(h, v / v.norm(dim=1, keepdim=True))
    assert_close("per_torch unseeded", _penalty(mod, h), expected, *TOL["per"])


@pytest.mark.parametrize("method", ["vcl", "l1", "l2", "per", "per_exact", "per_torch"])
def test_penalty_only_in_training_with_grad(method: str) -> None:
    mod = make_regularizer(method, 3, num_slices=4)
    h = torch.randn(4, 3, requires_grad=True)
    assert _penalty(mod, h) is not None
    mod.eval()
    mod(h)
    assert collect_penalty(mod) is None
    mod.train()
    with torch.no_grad():
        mod(h)
    assert collect_penalty(mod) is None


def test_registry() -> None:
    assert METHODS == ("vanilla", "bn", "vcl", "l1", "l2", "per", "per_exact", "per_torch")
    assert isinstance(make_regularizer("vanilla", 3), torch.nn.Identity)
    assert isinstance(make_regularizer("bn", 3), torch.nn.Identity)
    with pytest.raises(ValueError, match="method must be one of"):
        make_regularizer("l3", 3)


def test_step_seed_and_collect() -> None:
    """Module ``i`` of a model draws with the step's ``layer`` child ``i``, PER and the
    plain-torch baseline alike; :func:`collect_penalty` sums the terms in module order."""
    per = [make_regularizer("per", 6, num_slices=4) for _ in range(2)]
    model = torch.nn.Sequential(per[0], L2Penalty(), PERTorchPenalty(4), per[1])
    set_step_seed(model, 5)
    assert [m.seed_index for m in penalty_modules(model)] == [0, 1, 2, 3]
    model.train()
    h = torch.randn(4, 6, requires_grad=True)
    model(h)
    parts = [m.penalty() for m in penalty_modules(model)]
    v = torch.randn(4, 6, generator=torch.Generator().manual_seed(child_seed(5, "layer", 2)))
    want = [
        pt.per_loss(h, 4, seed=child_seed(5, "layer", 0)),
        h.square().mean(),
        pt.reference.per_loss(h, v / v.norm(dim=1, keepdim=True)),
        pt.per_loss(h, 4, seed=child_seed(5, "layer", 3)),
    ]
    for i, (got, expected) in enumerate(zip(parts, want, strict=True)):
        assert_close(f"module {i}", got, expected, *TOL["per"])
    model(h)
    total = collect_penalty(model)
    assert_close("sum", total, sum(want), *TOL["per"])
    assert collect_penalty(model) is None  # cleared
    set_step_seed(model, None)
    assert all(m.seed is None for m in penalty_modules(model))


def test_one_protocol_for_per_and_the_baselines() -> None:
    """Every method's module is a PenaltyModule: penalty() hands out the recorded sum
    once (0 after), two calls add up, and a copy starts with nothing recorded."""
    h = torch.randn(4, 3, requires_grad=True)
    for method in ("vcl", "l1", "l2", "per", "per_exact", "per_torch"):
        mod = _seeded(make_regularizer(method, 3, num_slices=4), 2).train()
        assert isinstance(mod, PenaltyModule)
        mod(h)
        one = collect_penalty(copy.deepcopy(mod)), mod.penalty()
        assert one[0] is None and float(mod.penalty()) == 0.0, method
        mod(h)
        mod(h)
        assert_close(method, mod.penalty(), 2 * one[1], *TOL["per"])
