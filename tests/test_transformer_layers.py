"""regularize(model) covers torch's nn.TransformerEncoderLayer / TransformerDecoderLayer
by default: PER acts on the feed-forward activation's output (the input of the
layer's ``dropout``, before ``linear2``). The oracle is hand-written in float64:
the layer's own forward with a hook keeping ``linear1``'s output, PER taken of
``activation(linear1 output)`` per token with the directions of the int seed."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import per_triton as pt
from per_triton.api.hooks import _per_hooks
from per_triton.api.layer_seeds import derive_seed

from . import tolerances
from .assertions import assert_close

D, HEADS, FF, B, T = 8, 2, 12, 3, 5
COEFF, SLICES, SEED = 0.5, 8, 4321
#: the float64 layer through PER's CPU path vs the float64 hand-written reference
GRAD = tolerances.F64_GRAD_PATHS


def _layer(kind: str, activation: str) -> nn.Module:
    torch.manual_seed(0)
    cls = nn.TransformerEncoderLayer if kind == "encoder" else nn.TransformerDecoderLayer
    return cls(D, HEADS, FF, dropout=0.0, activation=activation, batch_first=True).double()


def _inputs(kind: str) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    memory = torch.randn(B, T + 1, D, generator=gen, dtype=torch.float64)
    return (x,) if kind == "encoder" else (x, memory)


def _reference(layer: nn.Module, inputs, activation: str) -> dict[str, torch.Tensor]:
    ref = copy.deepcopy(layer).double()
    kept = []
    ref.linear1.register_forward_hook(lambda m, a, out: kept.append(out))
    out = ref(*inputs)
    act = F.relu if activation == "relu" else F.gelu
    h = act(kept[0]).reshape(-1, FF)  # one sample per token
    dirs = pt.sample_directions(SLICES, FF, derive_seed(SEED, 0, 0), dtype=torch.float64)
    (out.square().sum() + COEFF * pt.reference.per_loss(h, dirs)).backward()
    return {n: p.grad for n, p in ref.named_parameters()}


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_default_regularize_covers_the_feed_forward_activation(kind, activation):
    layer = _layer(kind, activation)
    want = _reference(layer, _inputs(kind), activation)
    handle = pt.regularize(layer, coeff=COEFF, num_slices=SLICES, seed=SEED)
    assert list(handle.layers) == ["dropout"]
    layer(*_inputs(kind)).square().sum().backward()
    for name, p in layer.named_parameters():
        assert_close(name, p.grad, want[name], *GRAD)


def test_stacked_encoder_gets_one_layer_per_block_and_no_partial_match_warning(recwarn):
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(_layer("encoder", "relu"), num_layers=2, enable_nested_tensor=False)
    handle = pt.regularize(enc, coeff=COEFF, num_slices=SLICES, seed=SEED)
    assert list(handle.layers) == ["layers.0.dropout", "layers.1.dropout"]
    assert not [w for w in recwarn if "regularize" in str(w.message)]
    enc(_inputs("encoder")[0]).sum().backward()
    assert all(v is not None for v in handle.losses().values())
    handle.remove()
    assert not any(_per_hooks(m) for m in enc.modules())


def test_module_activation_is_found_by_type_not_twice():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D, HEADS, FF, activation=nn.GELU(), batch_first=True)
    handle = pt.regularize(layer, coeff=COEFF, num_slices=SLICES, seed=SEED)
    assert list(handle.layers) == ["activation"]


def test_exclude_by_name_and_by_layer_type():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(_layer("encoder", "relu"), num_layers=2, enable_nested_tensor=False)
    kept = pt.regularize(enc, coeff=COEFF, exclude="layers.0.dropout")
    assert list(kept.layers) == ["layers.1.dropout"]
    kept.remove()
    with pytest.raises(ValueError, match="no module to regularize"):
        pt.regularize(enc, coeff=COEFF, exclude=nn.TransformerEncoderLayer)


def test_handle_of_a_deep_copy_finds_the_pre_hooks():
    layer = _layer("encoder", "relu")
    pt.regularize(layer, coeff=COEFF, num_slices=SLICES, seed=SEED)
    clone = copy.deepcopy(layer)
    assert list(pt.PERHandle.of(clone).layers) == ["dropout"]
    clone(_inputs("encoder")[0]).sum().backward()
    assert pt.PERHandle.of(clone).losses()["dropout"] is not None
