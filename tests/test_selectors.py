"""regularize(): which modules it picks, how it cuts outputs into samples, PER's seed stream."""

from __future__ import annotations

import collections
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import per_triton as pt
from per_triton.api.layer_seeds import derive_seed
from per_triton.api.monitor import LayerMonitor, layer_statistics, record_seed, select_units
from per_triton.core import reference

from .assertions import assert_close
from .tolerances import F32_PATHS, F64_GRAD_PATHS, PER_LOSS_BY_DTYPE

#: PER's loss (the CPU path) vs the float64 reference on the same directions
F64_LOSS = PER_LOSS_BY_DTYPE[torch.float64][0]

# -- defaults -------------------------------------------------------------------------


def test_defaults_cover_torch_activations_and_are_exported():
    for cls in (nn.Hardswish, nn.Hardsigmoid, nn.RReLU, nn.GLU, nn.Softsign, nn.Mish, nn.GELU):
        assert cls in pt.DEFAULT_LAYERS
    assert nn.Softmax not in pt.DEFAULT_LAYERS and nn.Identity not in pt.DEFAULT_LAYERS
    assert set(pt.DEFAULT_LAYERS) <= set(pt.default_layers())
    net = nn.Sequential(nn.Linear(4, 8), nn.Hardswish(), nn.Linear(8, 8), nn.GLU(), nn.Softsign())
    assert list(pt.regularize(net, num_slices=4).layers) == ["1", "3", "4"]


class SqueezeExcite(nn.Module):
    """timm's naming: (b, C, 1, 1) descriptor, ReLU, sigmoid gate."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.reduce, self.act1 = nn.Conv2d(c, 2, 1), nn.ReLU()
        self.expand, self.gate = nn.Conv2d(2, c, 1), nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.expand(self.act1(self.reduce(x.mean((2, 3), keepdim=True)))))
        return x * s


class _SEBlock(nn.Module):
    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv, self.act, self.se = nn.Conv2d(c, c, 3, padding=1), nn.Hardswish(), None
        self.se = SqueezeExcite(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.act(self.conv(x)))


class SqueezeNet(nn.Sequential):
    """A backbone whose name says squeeze but which is no squeeze-excite block."""


def test_squeeze_excite_activations_are_skipped_by_type_and_taken_by_name():
    net = nn.Sequential(_SEBlock(), _SEBlock())
    assert list(pt.regularize(net, num_slices=4).layers) == ["0.act", "1.act"]
    wrapped = nn.ModuleDict({"backbone": SqueezeNet(nn.Conv2d(4, 4, 1), nn.ReLU())})
    assert list(pt.regularize(wrapped, num_slices=4).layers) == ["backbone.1"]
    pt.PERHandle.of(net).remove()
    # layers= given explicitly: the same rule; names= picks the gate explicitly.
    assert list(pt.regularize(net, num_slices=4, layers=nn.Sigmoid, names="0.se.gate").layers) == [
        "0.se.gate"
    ]


def test_exclude_by_type_and_by_wildcard_name():
    net = nn.Sequential(_SEBlock(), _SEBlock(), nn.Flatten(), nn.Linear(64, 8), nn.Tanh())
    got = pt.regularize(net, num_slices=4, exclude=["1.*", nn.Tanh])
    assert list(got.layers) == ["0.act"]
    got.remove()
    with pytest.raises(ValueError, match=r"exclude not found in model: \['9\.\*'\]"):
        pt.regularize(net, exclude="9.*")
    with pytest.raises(TypeError, match="exclude must hold"):
        pt.regularize(net, exclude=[3])


# -- selectors ------------------------------------------------------------------------


class _Block(nn.Module):
    """A transformer-like block whose activation is a functional call."""

    def __init__(self, h: int = 8) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(h, 2 * h), nn.Linear(2 * h, h))
        self.attn = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp[1](F.gelu(self.mlp[0](x)))


class _Net(nn.Module):
    def __init__(self, n: int = 3, h: int = 8) -> None:
        super().__init__()
        self.h = nn.ModuleList(_Block(h) for _ in range(n))
        self.pooler = nn.Sequential(nn.Linear(h, h), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.h:
            x = block(x)
        return self.pooler(x[:, 0])


def test_string_names_wildcards_and_a_single_type():
    net = _Net()
    got = pt.regularize(net, num_slices=4, names="h.1.mlp")  # one name, not characters
    assert list(got.layers) == ["h.1.mlp"]
    got.remove()
    got = pt.regularize(net, num_slices=4, names=["h.*.mlp"])
    assert list(got.layers) == ["h.0.mlp", "h.1.mlp", "h.2.mlp"]
    got.remove()
    got = pt.regularize(net, num_slices=4, names="h.*")  # '*' is one component
    assert list(got.layers) == ["h.0", "h.1", "h.2"]
    got.remove()
    got = pt.regularize(net, num_slices=4, names="**.1")  # '**' any number
    assert list(got.layers) == ["h.0.mlp.1", "h.1", "h.1.mlp.1", "h.2.mlp.1", "pooler.1"]
    got.remove()
    got = pt.regularize(net, num_slices=4, layers=_Block)  # a type, not a list
    assert list(got.layers) == ["h.0", "h.1", "h.2"]
    got.remove()
    with pytest.raises(ValueError, match=r"names not found.*Block names in the model: \['h\.\*'"):
        pt.regularize(net, names=["transformer.h.*.mlp"])
    with pytest.raises(TypeError, match="names must hold module names"):
        pt.regularize(net, names=[_Block])
    with pytest.raises(TypeError, match="layers must be an nn.Module subclass or an iterable"):
        pt.regularize(net, layers="Tanh")


def test_partial_default_match_warns_with_the_block_wildcard():
    net = _Net()
    with pytest.warns(UserWarning, match=r"matched only \['pooler\.1'\].*names=\['h\.\*\.mlp'\]"):
        pt.regularize(net, num_slices=4)
    pt.PERHandle.of(net).remove()
    with warnings.catch_warnings():
        # explicit choices and full matches are quiet
        warnings.filterwarnings("error", message="regularize: the default layers matched only")
        pt.regularize(net, num_slices=4, names="pooler.1").remove()
        pt.regularize(nn.Sequential(_SEBlock(), _SEBlock()), num_slices=4)


class MyAct(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def test_no_match_error_lists_activation_like_modules_and_block_names():
    net = nn.ModuleDict({"h": nn.ModuleList(_Block() for _ in range(2))})
    with pytest.raises(ValueError, match=r"F\.relu.*names=\['h\.\*\.mlp'\]") as err:
        pt.regularize(net)
    assert "_Block" in str(err.value) and "h.*" in str(err.value)
    custom = nn.Sequential(nn.Linear(3, 3), MyAct())
    with pytest.raises(ValueError, match=r"Activation-like modules in the model: MyAct x1: "):
        pt.regularize(custom)
    assert list(pt.regularize(custom, layers=MyAct, num_slices=4).layers) == ["1"]


# -- outputs and samples --------------------------------------------------------------


class _DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        y = self.lin(x)
        return {"attentions": None, "last_hidden_state": y, "pooled": y[:, 0]}


Pair = collections.namedtuple("Pair", ["hidden", "aux"])


class _TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> Pair:
        y = self.lin(x)
        return Pair(y, y.sum())


@pytest.mark.parametrize("module", [_DictOut, _TupleOut])
@pytest.mark.parametrize("samples", ["auto", "token", "flatten"])
def test_per_token_and_flattened_samples_match_the_reference(module, samples):
    """(b, T, H) hidden states in a dict or a named tuple: the loss and the gradient are
    the reference's on the same directions, b*T samples of H ("auto", "token") or b
    samples of T*H ("flatten")."""
    torch.manual_seed(0)
    net = nn.ModuleDict({"m": module()})
    b, t, h, s, coeff = 3, 5, 6, 7, 0.7
    x = torch.randn(b, t, h, dtype=torch.float64)
    net.double()
    handle = pt.regularize(net, coeff, s, names="m", samples=samples, seed=11)
    out = net["m"](x)
    hidden = out["last_hidden_state"] if isinstance(out, dict) else out.hidden
    assert isinstance(out, (dict, Pair)), "the output keeps its type"
    hidden.retain_grad()
    up = torch.randn_like(hidden)
    (hidden * up).sum().backward()
    plain = net["m"].lin(x).detach()
    rows = plain.reshape(b, -1) if samples == "flatten" else plain.reshape(-1, h)
    theta = pt.sample_directions(s, rows.shape[1], derive_seed(11, 0, 0), dtype=torch.float64)
    assert_close("loss", handle.losses()["m"], reference.per_loss(rows, theta), *F64_LOSS)
    # the parameters' gradient includes the PER term pulled back through the linear layer
    grad_h = up + coeff * reference.per_grad(rows, theta).reshape(b, t, h)
    expected = torch.einsum("bti,btj->ij", grad_h, x)
    assert_close("weight grad", net["m"].lin.weight.grad, expected, *F64_GRAD_PATHS)


def test_samples_is_validated():
    with pytest.raises(ValueError, match="samples must be one of"):
        pt.regularize(nn.Sequential(nn.ReLU()), samples="tokens")
    with pytest.raises(ValueError, match="samples must be one of"):
        LayerMonitor(nn.Sequential(nn.ReLU()), ["0"], samples="tokens")


def test_output_without_a_tensor_is_a_named_error():
    class Bad(nn.Module):
        def forward(self, x):
            return {"n": 3}

    net = nn.ModuleDict({"bad": Bad()})
    pt.regularize(net, names="bad")
    with pytest.raises(TypeError, match="cannot apply PER to a module output of type dict"):
        net["bad"](torch.randn(2, requires_grad=True))


def test_monitor_follows_the_per_token_convention():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 6), nn.GELU())
    x = torch.randn(4, 5, 6)
    seen = []
    net[1].register_forward_hook(lambda _m, _a, out: seen.append(out.detach()))
    for samples, rows in (("auto", lambda h: h.reshape(-1, 6)), ("flatten", lambda h: h)):
        seen.clear()
        with LayerMonitor(net, ["1"], every=1, num_slices=8, samples=samples) as mon:
            net(x)
            rec = mon.records[0]
        h = rows(seen[0])
        units = select_units(h[0].numel(), 64, 0, "1")
        stats = layer_statistics(h.reshape(h.shape[0], -1), units, 8, record_seed(0, 0))
        assert rec["sw1"] == F32_PATHS.approx(float(stats[0]))
        assert rec["var"] == F32_PATHS.approx(float(stats[2]))


# -- PER's own seed stream ------------------------------------------------------------


def _train(per: float | None, steps: int = 3) -> tuple[list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))
    if per is not None:
        pt.regularize(net, coeff=per, num_slices=8)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    order = torch.randperm(12)  # data order drawn after the model is built
    outs = []
    for step in range(steps):
        x = torch.randn(4, 6)
        out = net(x)  # dropout masks from torch's generator
        outs.append(out.detach())
        out.square().mean().backward()
        opt.step()
        opt.zero_grad()
        del step
    return outs, torch.cat([order, torch.randint(0, 99, (4,))])


def test_enabling_per_changes_no_dropout_mask_or_data_order():
    plain_outs, plain_draws = _train(None, steps=1)
    zero_outs, zero_draws = _train(0.0, steps=1)
    assert torch.equal(plain_draws, zero_draws)
    assert torch.equal(plain_outs[0], zero_outs[0])
    # coeff > 0 changes the weights from step 2 on, but never torch's generator
    _outs, draws = _train(1.0)
    assert torch.equal(_train(None)[1], draws)


def test_seed_none_is_reproducible_under_manual_seed_and_changes_with_it():
    a, _ = _train(1.0)
    b, _ = _train(1.0)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    torch.manual_seed(1)
    layer_1 = pt.PER(1.0, 8)
    torch.manual_seed(2)
    layer_2 = pt.PER(1.0, 8)
    assert int(layer_1._stream) != int(layer_2._stream)
    torch.manual_seed(1)
    assert int(pt.PER(1.0, 8)._stream) == int(layer_1._stream)
    # call k uses the seed base + k (mixed with the layer index): new directions each call
    h = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    base = int(layer_2._stream)
    for k in range(2):
        layer_2(h)
        theta = pt.sample_directions(8, 9, derive_seed(base + k, 0, None), dtype=torch.float64)
        assert_close("loss", layer_2.last_loss, reference.per_loss(h.detach(), theta), *F64_LOSS)


def test_layers_of_one_regularize_call_get_distinct_streams():
    net = nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 5), nn.ReLU())
    handle = pt.regularize(net, coeff=1.0, num_slices=4)
    seeds = {int(derive_seed(p._stream, p.seed_index, None)) for p in handle.layers.values()}
    assert len(seeds) == 2


# -- the project's own models -----------------------------------------------------------


def test_own_models_default_is_their_activation_modules():
    from per_triton.experiments.models import LSTMLM, SmallCNN, cnn11

    torch.manual_seed(0)
    cnn = cnn11(10, width=0.05, input_size=8)
    elus = [n for n, m in cnn.named_modules() if isinstance(m, nn.ELU)]
    assert list(pt.regularize(cnn, num_slices=4).layers) == elus and len(elus) == 10
    small = SmallCNN(width=4)
    assert list(pt.regularize(small, num_slices=4).layers) == [f"block{i}.act" for i in (1, 2, 3)]
    lm = LSTMLM(vocab_size=20, hidden=8, num_layers=2)
    assert list(pt.regularize(lm, num_slices=4).layers) == ["layers.0", "layers.1"]


def test_loop_lstm_one_line_is_per_time_step_like_nn_lstm():
    """The step-by-step LSTM (variational dropout) is no nn.RNNBase: layers=LoopLSTM, and
    its (T, b, H) output is read per (time step, sample) as nn.LSTM's is."""
    from per_triton.experiments.models import LSTMLM, LoopLSTM

    torch.manual_seed(0)
    lm = LSTMLM(vocab_size=20, hidden=8, num_layers=2, variational=True).double()
    with pytest.raises(ValueError, match=r"layers=\(LoopLSTM,\)"):
        pt.regularize(lm)
    seen = {}
    lm.layers[1].register_forward_hook(lambda _m, _a, out: seen.update(h=out[0].detach()))
    handle = pt.regularize(lm, num_slices=5, layers=LoopLSTM, seed=3)
    lm(torch.randint(0, 20, (6, 2)))
    rows = seen["h"].reshape(-1, 8)  # 6 steps x 2 sequences
    theta = pt.sample_directions(5, 8, derive_seed(3, 1, 0), dtype=torch.float64)
    assert_close("loss", handle.losses()["layers.1"], reference.per_loss(rows, theta), *F64_LOSS)


def test_vanilla_resnet_functional_relu_one_line_on_the_pre_activations():
    """ResNet with F.relu: the identity taps before every ReLU (where BN would be) by
    wildcard names; each loss is the reference's on that tap's output."""
    from per_triton.experiments.models.resnet import resnet

    torch.manual_seed(0)
    model = resnet(8, 10, "vanilla", width=4).double()
    taps = ["stem_reg"] + [f"blocks.{i}.reg{j}" for i in range(3) for j in (1, 2)]
    seen = {}
    for name in taps:
        model.get_submodule(name).register_forward_hook(
            lambda _m, _a, out, name=name: seen.update({name: out.detach()})
        )
    handle = pt.regularize(model, num_slices=6, names=["stem_reg", "blocks.*.reg*"], seed=2)
    assert list(handle.layers) == taps  # 6n + 1 = 7: the inputs of every F.relu
    model(torch.randn(3, 3, 8, 8, dtype=torch.float64)).sum().backward()
    for index, name in enumerate(taps):
        h = seen[name].reshape(3, -1)  # a conv map: one flattened sample per image
        theta = pt.sample_directions(6, h.shape[1], derive_seed(2, index, 0), dtype=torch.float64)
        assert_close(name, handle.losses()[name], reference.per_loss(h, theta), *F64_LOSS)


def test_zoo_activation_classes_are_found_without_importing_the_zoos():
    """regularize() never imports transformers or timm itself (neither is a dependency)."""
    import subprocess
    import sys

    code = (
        "import sys, torch, per_triton as pt\n"
        "pt.regularize(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))\n"
        "assert len(pt.default_layers()) == len(pt.DEFAULT_LAYERS)\n"
        "print(sorted(m for m in ('transformers', 'timm', 'torchvision') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
