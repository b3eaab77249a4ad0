"""PER (Algorithm 1) and regularize(): identity forward, exact gradient added in backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import per_triton as pt
from per_triton.api.layer_seeds import derive_seed
from per_triton.core import reference

from . import tolerances
from .assertions import assert_close


def _next_seed(layer: pt.PER) -> int:
    """The seed that a seed=None layer uses at its next call (its own stream)."""
    return int(derive_seed(layer._stream, layer.seed_index, None))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_per_layer_adds_coeff_times_gradient(reduction: str):
    coeff, s = 0.3, 11
    h = torch.randn(6, 4, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn_like(h)
    layer = pt.PER(coeff, s, reduction)
    seed = _next_seed(layer)
    out = layer(h)
    assert torch.equal(out, h), "forward must be the identity"
    out.backward(upstream)
    theta = pt.sample_directions(s, 20, seed, dtype=torch.float64)
    expected = upstream + coeff * reference.per_grad(h.detach(), theta, reduction)
    assert_close("grad", h.grad, expected, *tolerances.F64_GRAD_PATHS)
    assert_close(
        "last_loss", layer.last_loss, reference.per_loss(h.detach(), theta, reduction), 0, 1e-12
    )


def test_per_layer_is_plain_identity_in_eval_and_no_grad():
    layer = pt.PER(1.0, 8)
    h = torch.randn(3, 5, requires_grad=True)
    with torch.no_grad():
        assert layer(h) is h
    layer.eval()
    assert layer(h) is h
    assert layer.last_loss is None
    assert "coeff=1.0" in repr(layer)


def test_regularize_matches_explicit_per_layers_and_removes_cleanly():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ELU(), nn.Linear(7, 7), nn.ReLU(), nn.Linear(7, 2))
    x = torch.randn(9, 5)

    def grads() -> list[torch.Tensor]:
        net.zero_grad()
        net(x).square().sum().backward()
        return [p.grad.clone() for p in net.parameters()]

    plain = grads()
    handle = pt.regularize(net, coeff=0.5, num_slices=16)
    assert sorted(handle.layers) == ["1", "3"]
    streams = [(p._stream.clone(), p.seed_index) for p in handle.layers.values()]
    with_per = grads()
    losses = handle.losses()
    assert set(losses) == {"1", "3"} and all(torch.isfinite(v) for v in losses.values())
    assert any(not torch.allclose(a, b) for a, b in zip(plain, with_per, strict=True))

    # The same gradients from explicit Algorithm-1 layers with the same seed stream.
    explicit = nn.Sequential(
        net[0], net[1], pt.PER(0.5, 16), net[2], net[3], pt.PER(0.5, 16), net[4]
    )
    for layer, (stream, index) in zip((explicit[2], explicit[5]), streams, strict=True):
        layer._stream.copy_(stream)  # the same seed stream as the hooks' layers
        layer.seed_index = index
    handle.remove()
    explicit.zero_grad()
    explicit(x).square().sum().backward()
    for a, p in zip(with_per, net.parameters(), strict=True):
        assert_close("grad", p.grad, a, *tolerances.F32_PATHS)
    assert all(torch.equal(a, b) for a, b in zip(plain, grads(), strict=True)), "remove() restores"


def test_regularize_by_name_and_recurrent_layers():
    lstm = nn.LSTM(4, 6, batch_first=True)
    model = nn.ModuleDict({"rnn": lstm, "head": nn.Linear(6, 1)})
    with pt.regularize(model, coeff=1.0, num_slices=8, names=["rnn"]) as handle:
        out, _ = model["rnn"](torch.randn(3, 5, 4))
        model["head"](out).sum().backward()
        loss = handle.losses()["rnn"]
        # each (time step, sample) pair is one sample of dimension hidden_size
        assert loss is not None and torch.isfinite(loss)
    assert not lstm._forward_hooks


def test_regularize_no_change_to_eval_outputs():
    net = nn.Sequential(nn.Linear(5, 5), nn.Tanh())
    x = torch.randn(4, 5)
    before = net(x)
    handle = pt.regularize(net, coeff=10.0, num_slices=4)
    assert torch.equal(net(x), before)
    handle.remove()


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.fc(x))
        y += x  # in place on the regularized activation
        return y


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda: nn.Sequential(nn.Linear(5, 5), nn.LeakyReLU(0.1), nn.ReLU(inplace=True)),
            id="relu-inplace",
        ),
        pytest.param(
            lambda: nn.Sequential(
                nn.Linear(5, 5), nn.LeakyReLU(0.1), nn.Dropout(0.0, inplace=True)
            ),
            id="dropout-inplace",
        ),
        pytest.param(_Residual, id="residual-iadd"),
    ],
)
def test_in_place_ops_after_regularized_activation(build):
    """In-place ops downstream of PER work, and the gradient is task + coeff * dL/dh."""
    torch.manual_seed(0)
    net = build()
    x = torch.randn(6, 5, requires_grad=True)
    act_module = next(m for m in net.modules() if isinstance(m, nn.LeakyReLU))
    seen: list[torch.Tensor] = []
    probe = act_module.register_forward_hook(lambda _m, _a, out: seen.append(out.detach().clone()))
    handle = pt.regularize(net, coeff=0.5, num_slices=8, layers=(nn.LeakyReLU,))
    seed = _next_seed(next(iter(handle.layers.values())))
    net(x).sum().backward()
    with_per = x.grad.clone()
    handle.remove()
    probe.remove()
    x.grad = None
    out = net(x)
    out.sum().backward()
    plain = x.grad.clone()
    # The extra gradient is the PER gradient w.r.t. the activation, pulled back to x.
    x.grad = None
    act = act_module(net[0](x) if isinstance(net, nn.Sequential) else net.fc(x))
    theta = pt.sample_directions(8, 5, seed)
    act.backward(0.5 * reference.per_grad(seen[0], theta))
    assert_close("grad", with_per, plain + x.grad, *tolerances.F32_PATHS)


class _ConvWithAux(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return y, y.mean()


def test_regularize_tuple_output_of_a_non_recurrent_module_is_flattened_per_sample():
    """(feature_map, aux) outputs: PER sees (b, C*H*W), not rows of the last axis."""
    model = nn.ModuleDict({"block": _ConvWithAux()})
    x = torch.randn(4, 1, 5, 5)
    with pt.regularize(model, coeff=1.0, num_slices=6, names=["block"]) as handle:
        seed = _next_seed(handle.layers["block"])
        y, aux = model["block"](x)
        assert aux.shape == ()
        y.sum().backward()
        got = handle.losses()["block"]
    expected = reference.per_loss(y.detach(), pt.sample_directions(6, 50, seed))
    assert_close("loss", got, expected, *tolerances.F32_PATHS)


def test_int_seed_call_count_travels_with_copies_and_pickles():
    """An int seed's on-device call count: copies continue from it, independently."""
    import copy
    import pickle

    layer = pt.PER(1.0, 4, reduction="sum", seed=9)
    h = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)

    def loss_at(call: int) -> float:
        return pt.per_loss(h.detach(), 4, seed=derive_seed(9, 0, call), reduction="sum").item()

    layer(h), layer(h)
    assert layer.calls == 2
    clone, restored = copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))
    for m in (layer, clone, restored):
        assert m.calls == 2
        m(h)
        assert m.last_loss.item() == loss_at(2)
    clone(h)
    assert (clone.calls, layer.calls) == (4, 3), "a copy counts on its own"
    layer.calls = 0
    layer(h)
    assert layer.last_loss.item() == loss_at(0) != loss_at(1)
    assert pt.PER(seed=None).calls == 0
    with pytest.raises(AttributeError, match="int seed"):
        pt.PER(seed=None).calls = 3
    with pytest.raises(ValueError, match="calls"):
        layer.calls = -1
