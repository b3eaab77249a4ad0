"""PER's injected gradient under gradient accumulation and GradScaler loss scaling.

The oracle is :func:`tests.recipe_support.reference_grads` (float64, PER scaled
like the task loss). ``mode="inject"`` adds its gradient outside the task loss, so
a loop backpropagating ``scaler.scale(loss / k)`` must give it the same factor
(``handle.set_grad_scale``); without it PER's share is ``k`` times too large.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import per_triton as pt
from per_triton.integrations import grad_scale

from . import tolerances
from .assertions import assert_close
from .recipe_support import COEFF, SEED, SLICES, data, mlp, reference_grads, relative_error, windows

K = 4
BATCH = 5
#: float32 model and directions vs the float64 reference (rounding only)
GRAD = tolerances.F32_MODEL_GRAD


def _accumulate(scale: bool, scaler: torch.amp.GradScaler | None = None, mode: str = "inject"):
    net = mlp()
    handle = pt.regularize(net, coeff=COEFF, num_slices=SLICES, seed=SEED, mode=mode)
    if scale:
        handle.set_grad_scale(grad_scale(K, scaler))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for x, y in windows(*data(K * BATCH), BATCH):
        loss = F.cross_entropy(net(x), y)
        if mode == "loss":
            loss = loss + handle.penalty()
        loss = loss / K
        (loss if scaler is None else scaler.scale(loss)).backward()
    if scaler is not None:
        scaler.unscale_(opt)
    return {n: p.grad for n, p in net.named_parameters()}


def _want():
    return reference_grads(mlp(), [windows(*data(K * BATCH), BATCH)])


def test_unscaled_injection_counts_per_k_times():
    """The defect, measured: with ``loss / k`` and no ``set_grad_scale``, PER's share
    of the gradient (the gradient minus the task-only one) is ``k`` times the
    reference's, and the total is far off."""
    got, want = _accumulate(scale=False), _want()
    task = reference_grads(mlp(), [windows(*data(K * BATCH), BATCH)], coeff=0.0)
    for name in ("0.weight", "0.bias"):
        assert_close(name, got[name] - task[name], K * (want[name] - task[name]), *GRAD)
    assert relative_error(got, want) > 0.1


@pytest.mark.parametrize("amp", [False, True], ids=["accumulate", "accumulate+gradscaler"])
def test_scaled_injection_matches_float64_reference(amp: bool):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10) if amp else None
    got, want = _accumulate(scale=True, scaler=scaler), _want()
    for name in want:
        assert_close(name, got[name], want[name], *GRAD)


def test_loss_mode_matches_float64_reference_under_gradscaler():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    got, want = _accumulate(scale=False, scaler=scaler, mode="loss"), _want()
    for name in want:
        assert_close(name, got[name], want[name], *GRAD)


def test_exact_estimator_takes_the_scale():
    """The exact estimator's fused injection gets the same factor."""
    x, y = data(BATCH)
    grads = []
    for scale in (1.0, 0.25):
        net = mlp()
        handle = pt.regularize(net, coeff=COEFF, estimator="exact")
        handle.set_grad_scale(scale)
        F.cross_entropy(net(x), y).mul(scale).backward()
        grads.append(net[0].weight.grad)
    assert_close("exact, scale 1/4", grads[1], grads[0] * 0.25, *GRAD)


@pytest.mark.parametrize(
    ("scale", "error"),
    [(0.0, ValueError), (-1.0, ValueError), (float("inf"), ValueError), ("2", TypeError)],
    ids=["zero", "negative", "inf", "str"],
)
def test_set_grad_scale_rejects_bad_scales(scale, error):
    handle = pt.regularize(mlp(), coeff=COEFF)
    with pytest.raises(error, match="scale"):
        handle.set_grad_scale(scale)
