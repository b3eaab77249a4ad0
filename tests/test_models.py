"""The paper's networks: output shapes, faithful full-size configurations, training on CPU.

Full-size models are only constructed (parameter counts against the papers); every
forward and training step runs at small width.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from per_triton.api.penalty import PenaltyModule
from per_triton.experiments.baselines import METHODS, ActivationPenalty, VCLPenalty
from per_triton.experiments.models import (
    CNN11,
    LSTMLM,
    build_model,
    cnn11,
    cnn11_64,
    lstm_lm,
    resnet,
)
from per_triton.experiments.models.cnn11 import DROPOUT, STACKS
from per_triton.experiments.training import classification_loss, train_step

TINY_CNN = {"width": 1 / 16, "input_size": 8, "num_slices": 8}


def _images(b: int, size: int) -> torch.Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("activation", ["elu", "relu", "leaky_relu"])
@pytest.mark.parametrize("method", METHODS)
def test_cnn11_shape(method: str, activation: str) -> None:
    net = cnn11(10, activation, method, **TINY_CNN)
    assert net(_images(4, 8)).shape == (4, 10)


def test_cnn11_64_shape_and_width() -> None:
    net = cnn11_64(200, width=2 / 16)  # the 64x64 variant at 1/16 of its (doubled) width
    assert net(_images(2, 64)).shape == (2, 200)
    pools = sum(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert pools == 6  # 64 -> 1


@pytest.mark.parametrize("norm", ["bn", "fixup"])
@pytest.mark.parametrize("method", ["vanilla", "bn", "vcl", "per"])
def test_resnet_shape(method: str, norm: str) -> None:
    net = resnet(8, 10, method, norm=norm, width=4, num_slices=8)
    assert net(_images(4, 8)).shape == (4, 10)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="plain"),
        pytest.param({"tie_weights": True}, id="RE"),
        pytest.param({"variational": True}, id="VD"),
        pytest.param({"tie_weights": True, "variational": True}, id="RE-VD"),
        pytest.param({"method": "bn"}, id="recurrent-bn"),
        pytest.param({"method": "vcl"}, id="vcl"),
        pytest.param({"method": "per"}, id="per"),
    ],
)
def test_lstm_shape(options: dict) -> None:
    net = lstm_lm(50, hidden=16, num_slices=8, max_steps=5, **options)
    tokens = torch.randint(0, 50, (5, 4))
    assert net(tokens).shape == (5, 4, 50)
    assert len(net.final_state) == 2 and net.final_state[0][0].shape == (4, 16)
    if options.get("tie_weights"):
        assert net.decoder.weight is net.embedding.weight


# ----------------------------------------------------------------------------- faithful


def test_cnn11_paper_configuration() -> None:
    net = cnn11()  # ELU, 100 classes, full width
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 11
    widths = [(c.out_channels, c.kernel_size[0]) for c in convs[:-1]]
    assert widths == [layer for stack in STACKS for layer in stack]
    assert convs[-1].out_channels == 100 and convs[-1].kernel_size == (1, 1)
    rates = [m.p for m in net.modules() if isinstance(m, nn.Dropout)]
    assert rates == [r for r in DROPOUT if r > 0]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 5  # 32 -> 1


@pytest.mark.parametrize(
    ("depth", "norm", "params"),
    [
        pytest.param(56, "bn", 853_018, id="resnet56-bn-0.85M"),
        pytest.param(110, "bn", 1_727_962, id="resnet110-bn-1.7M"),
    ],
)
def test_resnet_parameter_count(depth: int, norm: str, params: int) -> None:
    """He et al. (2016), Table 6: ResNet-56 0.85M, ResNet-110 1.7M parameters (option A)."""
    net = build_model(f"resnet{depth}", "bn")
    assert sum(p.numel() for p in net.parameters()) == params


def test_fixup_initialisation() -> None:
    """Fixup: residual branches end in a zero conv and the classifier starts at zero."""
    net = resnet(14, 10, "vanilla", width=4)
    assert net.norm == "fixup"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(float(b.conv2.weight.detach().abs().max()) == 0.0 for b in net.blocks)
    assert float(net(_images(2, 8)).detach().abs().max()) == 0.0


def test_lstm_paper_configuration() -> None:
    net = lstm_lm()
    assert isinstance(net, LSTMLM)
    assert [layer.hidden_size for layer in net.layers] == [650, 650]
    assert net.embedding.weight.shape == (10000, 650) and net.dropout == 0.5
    assert float(net.embedding.weight.detach().abs().max()) <= 0.05 + 1e-7  # U(-.05, .05)


def test_penalties_sit_on_pre_activations() -> None:
    """Where BN sits: each penalty module directly feeds an activation function."""
    layers = list(cnn11(method="l1", **TINY_CNN).features)
    for i, m in enumerate(layers):
        if isinstance(m, ActivationPenalty):
            assert isinstance(layers[i + 1], nn.ELU) and isinstance(layers[i - 1], nn.Conv2d)


def test_penalty_modules_on_every_hidden_activation() -> None:
    assert len([m for m in cnn11(method="vcl").modules() if isinstance(m, VCLPenalty)]) == 10
    res = resnet(8, 10, "l2", width=4)
    assert sum(isinstance(m, ActivationPenalty) for m in res.modules()) == 6 * 1 + 1
    lm = lstm_lm(50, hidden=8, method="per")
    assert sum(isinstance(m, PenaltyModule) for m in lm.modules()) == 2


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="method"):
        CNN11(method="dropout")
    with pytest.raises(ValueError, match="activation"):
        CNN11(activation="tanh")
    with pytest.raises(ValueError, match="depth"):
        resnet(10)
    with pytest.raises(ValueError, match="model"):
        build_model("vgg16")


# ----------------------------------------------------------------------------- training


def _eval_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(classification_loss(model(x), y))


TRAIN_CASES = [
    pytest.param("cnn11", "per", TINY_CNN | {"num_classes": 10}, 8, id="cnn11-elu-per"),
    pytest.param("cnn11", "bn", TINY_CNN | {"num_classes": 10}, 8, id="cnn11-elu-bn"),
    pytest.param(
        "resnet", "per", {"depth": 8, "width": 4, "num_slices": 8}, 8, id="resnet8-fixup-per"
    ),
    pytest.param("resnet", "bn", {"depth": 8, "width": 4}, 8, id="resnet8-bn"),
    pytest.param(
        "lstm", "per", {"vocab_size": 30, "hidden": 16, "num_slices": 8}, 0, id="lstm-per"
    ),
    pytest.param(
        "lstm", "vcl", {"vocab_size": 30, "hidden": 16, "variational": True}, 0, id="lstm-VD-vcl"
    ),
    pytest.param(
        "lstm", "bn", {"vocab_size": 30, "hidden": 16, "tie_weights": True, "max_steps": 6}, 0,
        id="lstm-RE-recurrent-bn",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "config", "image"), TRAIN_CASES)
def test_loss_decreases(name: str, method: str, config: dict, image: int) -> None:
    """A few Adam steps on one fixed batch lower the (eval-mode) task loss."""
    torch.manual_seed(0)
    model = build_model(name, method, **config)
    gen = torch.Generator().manual_seed(1)
    if name == "lstm":
        tokens = torch.randint(0, config["vocab_size"], (7, 4), generator=gen)
        x, y = tokens[:-1], tokens[1:]
    else:
        x, y = _images(8, image), torch.randint(0, 10, (8,), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = _eval_loss(model, x, y)
    for _ in range(6):
        train_step(model, x, y, opt, coeff=1e-2, clip_grad_norm=5.0)
    after = _eval_loss(model, x, y)
    assert after < before, f"{name}/{method}: loss {before:.4f} -> {after:.4f}"
