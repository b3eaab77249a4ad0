"""The estimator registry (per_triton/core/estimators.py): its entries, its checks, and
that per_loss, PER, regularize and the kernel benchmark dispatch through it alone.

The dispatch tests register a made-up estimator (the mean squared norm, ``L = (1/b)
sum_i ||h_i||^2``, gradient ``2 h_i / b``) for the duration of one test and reach it
through every entry point, with no other change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import per_triton as pt
from per_triton.core import estimators
from per_triton.core.estimators import ESTIMATORS, Estimator, check_estimator
from per_triton.core.seeds import child_seed

from . import tolerances
from .assertions import assert_close

ROOT = Path(__file__).resolve().parents[1]


def test_entries_are_named_by_their_keys_and_distinct() -> None:
    assert list(ESTIMATORS)[0] == estimators.DEFAULT_ESTIMATOR == "monte_carlo"
    assert all(key == entry.name for key, entry in ESTIMATORS.items())
    for field in ("label", "provider"):
        values = [getattr(e, field) for e in ESTIMATORS.values()]
        assert len(set(values)) == len(values), field
    mc, exact = ESTIMATORS["monte_carlo"], ESTIMATORS["exact"]
    assert (mc.seeded, mc.sliced, mc.provider, mc.layer) == (True, True, "fused", None)
    assert (exact.seeded, exact.sliced, exact.provider) == (False, False, "exact")
    assert exact.layer is not None


def test_check_estimator_names_every_entry() -> None:
    for bad in ("mc", None, ["exact"]):
        with pytest.raises(ValueError, match="estimator must be one of") as err:
            check_estimator(bad)
        assert all(
            e.name in str(err.value) and e.label in str(err.value) for e in ESTIMATORS.values()
        )
    assert check_estimator("monte_carlo", 7) == "monte_carlo"
    with pytest.raises(ValueError, match="num_slices=7 .*estimator='exact'"):
        check_estimator("exact", 7)


def _square_loss(h, num_slices, seed, reduction, precision):
    total = h.reshape(h.shape[0], -1).square().sum()
    return total / h.shape[0] if reduction == "mean" else total


@pytest.fixture
def square(monkeypatch: pytest.MonkeyPatch) -> Estimator:
    entry = Estimator("square", "mean squared norm", False, False, "square", _square_loss)
    monkeypatch.setitem(ESTIMATORS, "square", entry)
    return entry


def test_a_registered_estimator_is_per_loss(square: Estimator) -> None:
    h = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    loss = pt.per_loss(h, estimator="square")
    assert_close("loss", loss, h.detach().square().sum() / 4, *tolerances.F64_TRANSFORM)
    (grad,) = torch.autograd.grad(loss, h)
    assert_close("grad", grad, h.detach() / 2, *tolerances.F64_TRANSFORM)
    with pytest.raises(ValueError, match="estimator='square'"):
        pt.per_loss(h, 8, estimator="square")  # sliced=False


@pytest.mark.parametrize("mode", ["inject", "loss"])
def test_a_registered_estimator_drives_the_per_layer(square: Estimator, mode: str) -> None:
    """Algorithm 1 with the made-up loss: ``g + coeff * 2 h / b`` in backward."""
    h = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    layer = pt.PER(0.5, estimator="square", mode=mode)
    out = layer(h)
    loss = out.sum() + (layer.penalty() if mode == "loss" else 0.0)
    loss.backward()
    assert_close("grad", h.grad, 1 + 0.5 * h.detach() / 2, *tolerances.F64_TRANSFORM)
    assert "estimator='square'" in repr(layer) and "num_slices" not in repr(layer)
    assert layer.calls == 0  # unseeded: no counter step


def test_a_registered_fused_layer_is_used_in_inject_mode(monkeypatch, square) -> None:
    calls = []

    def layer(h, coeff, reduction):
        calls.append((coeff, reduction))
        return h.clone(), torch.zeros(())

    monkeypatch.setitem(ESTIMATORS, "square", Estimator(**{**vars(square), "layer": layer}))
    h = torch.randn(4, 3, requires_grad=True)
    pt.PER(0.25, estimator="square", reduction="sum")(h)
    assert calls == [(0.25, "sum")]
    pt.PER(0.25, estimator="square", mode="loss")(h)  # mode="loss" takes the loss instead
    assert len(calls) == 1


def test_a_seeded_estimator_gets_the_layer_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def loss(h, num_slices, seed, reduction, precision):
        seen.append((num_slices, int(seed)))
        return h.sum()

    entry = Estimator("seen", "seen", True, True, "seen", loss)
    monkeypatch.setitem(ESTIMATORS, "seen", entry)
    layer = pt.PER(1.0, 12, estimator="seen", seed=4)
    h = torch.randn(2, 3, requires_grad=True)
    layer(h)
    layer(h)
    step = [child_seed(child_seed(4, "step", k), "layer", 0) for k in (0, 1)]
    assert seen == [(12, step[0]), (12, step[1])] and layer.calls == 2


def test_regularize_validates_against_the_registry(square: Estimator) -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    handle = pt.regularize(net, 1.0, estimator="square")
    assert handle.layers["1"].estimator == "square"
    handle.remove()
    with pytest.raises(ValueError, match="estimator must be one of"):
        pt.regularize(net, estimator="cube")
    assert not net[1]._forward_hooks  # refused before any hook went on


def test_benchmark_providers_follow_the_registry() -> None:
    from per_triton.bench import kernel_utils, providers
    from per_triton.dashboard import frames

    assert providers.PROVIDERS[0] == ESTIMATORS[estimators.DEFAULT_ESTIMATOR].provider
    assert {providers.ESTIMATOR_OF[e.provider] for e in ESTIMATORS.values()} == set(ESTIMATORS)
    assert set(providers.ESTIMATOR_OF) <= set(providers.PROVIDERS)
    assert list(providers.PROVIDERS) == frames.PROVIDER_ORDER
    h = torch.randn(3, 5)
    for provider, name in providers.ESTIMATOR_OF.items():
        torch.manual_seed(0)  # the seed a seeded estimator draws
        got = kernel_utils.loss_fn(provider)(h, 8)
        torch.manual_seed(0)
        want = pt.per_loss(h, 8 if ESTIMATORS[name].sliced else 256, estimator=name)
        assert_close(provider, got, want, *tolerances.EXACT)


def test_registry_and_provider_list_import_no_torch() -> None:
    script = (
        "import sys, per_triton.core.estimators, per_triton.bench.providers\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
