"""PER under torch.export (train mode), meta-device init and QAT module fusion."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import per_triton as pt
from per_triton import PERHandle

from . import tolerances
from .assertions import assert_close


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def _grads(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    module.zero_grad()
    module(x).square().sum().backward()
    return {k: p.grad.clone() for k, p in module.named_parameters()}


@pytest.mark.parametrize("estimator", ["monte_carlo", "exact"])
def test_exported_train_graph_keeps_the_per_gradient(estimator: str):
    net = _model()
    num_slices = 16 if estimator == "monte_carlo" else 256
    handle = pt.regularize(net, 0.5, num_slices, layers=nn.Tanh, seed=5, estimator=estimator)
    per = handle.layers["1"]
    x = torch.randn(6, 4)
    ep = torch.export.export(net, (x,))
    assert per.calls == 0, "exporting must not advance the live call counter"
    assert per.last_loss is None, "no FakeTensor may be kept from tracing"
    exported = ep.module()
    got = [_grads(exported, x) for _ in range(2)]  # calls 0 and 1 of the stream
    per.calls = 0
    expected = [_grads(net, x) for _ in range(2)]
    for call in range(2):
        for name, g in expected[call].items():
            assert_close(f"{name} call {call}", got[call][name], g, *tolerances.F32_PATHS)
    handle.remove()
    plain = _grads(net, x)
    assert not torch.allclose(got[0]["0.weight"], plain["0.weight"]), "PER's share is missing"


def test_exporting_a_per_submodule_leaves_its_counter_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), pt.PER(1.0, 8, seed=3), nn.Linear(8, 2))
    net(torch.randn(2, 4)).sum().backward()
    before = net[2].last_loss
    torch.export.export(net, (torch.randn(2, 4),))
    assert net[2].calls == 1
    assert net[2].last_loss is before


# ------------------------------------------------------------------------------ meta


def test_per_built_on_meta_then_to_empty_starts_its_stream_like_a_real_one():
    with torch.device("meta"):
        lazy = pt.PER(1.0, 8, seed=3)
    lazy.to_empty(device="cpu")
    real = pt.PER(1.0, 8, seed=3)
    assert lazy.calls == 0
    h = torch.randn(5, 6, requires_grad=True)
    lazy(h), real(h)
    assert torch.equal(lazy.last_loss, real.last_loss), "int-seeded ranks must agree"


def test_regularize_under_meta_and_load_state_dict_assign_run():
    reference = _model()
    x = torch.randn(3, 4)
    expected_handle = pt.regularize(reference, 1.0, 8, seed=5)
    expected = _grads(reference, x)
    with torch.device("meta"):
        net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        handle = pt.regularize(net, 1.0, 8, seed=5)
    net.to_empty(device="cpu")
    net.load_state_dict(reference.state_dict())
    got = _grads(net, x)
    for name, g in expected.items():
        assert_close(name, got[name], g, *tolerances.F32_PATHS)
    assert torch.equal(handle.layers["1"].last_loss, expected_handle.layers["1"].last_loss)
    with torch.device("meta"):
        seq = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), pt.PER(1.0, 8, seed=5), nn.Linear(8, 3))
    seq.load_state_dict(
        nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Identity(), nn.Linear(8, 3)).state_dict(),
        assign=True,
    )
    seq(x).sum().backward()
    assert seq[2].calls == 1


# ------------------------------------------------------------------------------- QAT


class _ConvBnRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def test_remove_after_qat_fusion_takes_per_off_the_fused_module():
    quant = pytest.importorskip("torch.ao.quantization")
    model = _ConvBnRelu().train()
    handle = pt.regularize(model, 1.0, 8, layers=nn.ReLU)
    model.qconfig = quant.get_default_qat_qconfig("fbgemm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant.fuse_modules_qat(model, [["conv", "bn", "relu"]], inplace=True)
        quant.prepare_qat(model, inplace=True)
    assert PERHandle.of(model).layers, "fusion moved the hook onto the fused module"
    handle.remove()
    assert PERHandle.of(model).layers == {}


def test_export_in_loss_mode_leaves_no_fake_penalty():
    net = _model()
    handle = pt.regularize(net, 1.0, 8, layers=nn.Tanh, seed=5, mode="loss")
    torch.export.export(net, (torch.randn(2, 4),))
    penalty = handle.penalty()
    assert torch.equal(penalty, torch.zeros(())), "a traced term has no value to add"
    assert all(v is None for v in handle.losses().values())
