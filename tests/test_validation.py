"""Bad input gets a clear error naming the argument, and nothing is modified."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import per_triton as pt

GOOD = torch.randn(4, 6)


@pytest.mark.parametrize(
    "h,error,match",
    [
        pytest.param(torch.ones(4, 6, dtype=torch.int64), TypeError, "h must be a float", id="int"),
        pytest.param(torch.ones(4, 6, dtype=torch.bool), TypeError, "h must be a float", id="bool"),
        pytest.param(torch.ones(4, 6, dtype=torch.complex64), TypeError, "h must be", id="complex"),
        pytest.param(torch.tensor(1.0), ValueError, "h must have a batch dimension", id="0-d"),
        pytest.param(torch.ones(0, 6), ValueError, "h has an empty batch", id="empty-batch"),
        pytest.param(torch.ones(3, 0), ValueError, "h has no features", id="empty-features"),
        pytest.param([[1.0, 2.0]], TypeError, "h must be a torch.Tensor", id="list"),
    ],
)
def test_bad_activations(h, error, match):
    for fn in (pt.per_loss, pt.sliced_wasserstein_to_normal):
        with pytest.raises(error, match=match):
            fn(h)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"num_slices": 0}, ValueError, "num_slices must be >= 1"),
        ({"num_slices": -3}, ValueError, "num_slices must be >= 1"),
        ({"num_slices": 2.0}, TypeError, "num_slices must be an int"),
        ({"num_slices": True}, TypeError, "num_slices must be an int"),
        ({"reduction": "none"}, ValueError, "reduction must be 'mean' or 'sum'"),
        ({"precision": "fp8"}, ValueError, "precision must be 'tf32' or 'ieee'"),
        ({"seed": 1.5}, TypeError, "seed must be None, an int or an int64 tensor"),
        ({"seed": "7"}, TypeError, "seed must be None, an int or an int64 tensor"),
        ({"seed": True}, TypeError, "seed must be None"),
        ({"seed": -1}, ValueError, r"seed must be in \[0, 2\*\*63\)"),
        ({"seed": 2**63}, ValueError, r"seed must be in \[0, 2\*\*63\)"),
        ({"seed": torch.tensor([1.0])}, TypeError, "seed tensor must hold one int64 value"),
        ({"seed": torch.tensor([1, 2])}, TypeError, "seed tensor must hold one int64 value"),
        ({"seed": torch.tensor([1], dtype=torch.int32)}, TypeError, "seed tensor must hold"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, dict) else ",".join(f"{k}" for k in v),
)
def test_bad_arguments(kwargs, error, match):
    h = GOOD.clone()
    with pytest.raises(error, match=match):
        pt.per_loss(h, **kwargs)
    assert torch.equal(h, GOOD), "input must not be modified"


def test_seed_on_another_device_is_rejected():
    meta_seed = torch.tensor([1], device="meta")
    with pytest.raises(ValueError, match="seed tensor is on meta"):
        pt.per_loss(GOOD, seed=meta_seed)


@pytest.mark.parametrize("estimator", ["monte_carlo", "exact"])
@pytest.mark.parametrize("seed", [None, 7, "numpy", "tensor"])
def test_per_loss_checks_its_seed_once_per_call(monkeypatch, seed, estimator):
    """One check_seed per call (per_loss's), none again inside the estimator, and the
    loss is the one of the same seed given as a plain int."""
    import numpy as np

    from per_triton.api import loss as loss_module
    from per_triton.core import _validation

    seed = {"numpy": np.int64(7), "tensor": torch.tensor([7])}.get(seed, seed)
    calls = []
    real = _validation.check_seed

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(_validation, "check_seed", counting)
    monkeypatch.setattr(loss_module, "check_seed", counting)
    slices = 16 if estimator == "monte_carlo" else 256  # exact: the default only
    got = pt.per_loss(GOOD, slices, seed=seed, estimator=estimator)
    assert len(calls) == 1
    if seed is not None:
        monkeypatch.undo()
        assert torch.equal(got, pt.per_loss(GOOD, slices, seed=7, estimator=estimator))


def test_sample_directions_arguments():
    with pytest.raises(ValueError, match="num_slices must be >= 1"):
        pt.sample_directions(0, 5, seed=1)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        pt.sample_directions(3, 0, seed=1)
    with pytest.raises(TypeError, match="dtype must be a floating dtype"):
        pt.sample_directions(3, 5, seed=1, dtype=torch.int32)
    with pytest.raises(TypeError, match="seed must be None"):
        pt.sample_directions(3, 5, seed="x")


def test_sample_directions_names_a_device_it_cannot_use(monkeypatch):
    """device='cuda' without CUDA used to raise a bare AssertionError from torch."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", torch.device("cuda:0")):
        with pytest.raises(ValueError, match=r"device='cuda(:0)?' but CUDA is not available"):
            pt.sample_directions(4, 3, 0, device=device)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"device='cuda:1' but only 1 CUDA device"):
        pt.sample_directions(4, 3, 0, device="cuda:1")
    for device in ("meta", "gpu"):
        with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
            pt.sample_directions(4, 3, 0, device=device)
    with pytest.raises(TypeError, match="device must be a str or torch.device"):
        pt.sample_directions(4, 3, 0, device=0)


def test_sliced_wasserstein_arguments():
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        pt.sliced_wasserstein_to_normal(GOOD, p=3)
    with pytest.raises(ValueError, match="num_slices must be >= 1"):
        pt.sliced_wasserstein_to_normal(GOOD, 0)


def test_module_and_regularize_arguments():
    with pytest.raises(ValueError, match="coeff must be >= 0"):
        pt.PER(coeff=-1.0)
    with pytest.raises(TypeError, match="coeff must be a float"):
        pt.PER(coeff="big")
    with pytest.raises(ValueError, match="reduction must be"):
        pt.PER(reduction="avg")
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with pytest.raises(ValueError, match=r"names not found in model: \['fc9'\]"):
        pt.regularize(net, names=["fc9"])
    with pytest.raises(ValueError, match="found no module to regularize"):
        pt.regularize(net, layers=(nn.Conv2d,))
    with pytest.raises(TypeError, match="layers must hold nn.Module subclasses"):
        pt.regularize(net, layers=("relu",))
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        pt.regularize(lambda x: x)
