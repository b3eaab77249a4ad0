"""regularize() on the model zoos' models: transformers (GPT-2, BERT, ViT, Llama) and timm
(resnet18, vit_tiny, convnext_atto, efficientnet_b0, mobilenetv3_small), from small
configs with random initialisation, on the CPU, no weights downloaded.

One line per model regularizes the main-path activations and nothing else. The
expected names come from the zoos' attribute naming (``...mlp.act``,
``...intermediate_act_fn``, timm's ``act``/``act1``/``act2`` outside ``.se.``), not
from the classes regularize() matches, and the counts from an audit of each model's modules.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch

import per_triton as pt
from per_triton.api.layer_seeds import derive_seed
from per_triton.core import reference

from .assertions import assert_close
from .tolerances import F64_GRAD_PATHS, PER_LOSS_BY_DTYPE
from .zoo import need

#: PER's loss (the CPU path) vs the float64 reference on the same directions
F64_LOSS = PER_LOSS_BY_DTYPE[torch.float64][0]

pytestmark = pytest.mark.zoo

_HF_ACT = re.compile(r"\.(act|act_fn|activation|activation_fn|intermediate_act_fn)$")
_TIMM_ACT = re.compile(r"(^|\.)(act|act\d)$")


def _hf_model(name: str):
    tf = need("transformers")
    tf.logging.set_verbosity_error()
    small = {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 16}
    if name == "gpt2":
        cfg = tf.GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=50, n_positions=16)
        return tf.GPT2LMHeadModel(cfg), {"input_ids": torch.randint(0, 50, (2, 6))}
    if name == "bert":
        cfg = tf.BertConfig(**small, intermediate_size=32, vocab_size=50)
        model = tf.BertForSequenceClassification(cfg)
        return model, {"input_ids": torch.randint(0, 50, (2, 6))}
    if name == "vit":
        cfg = tf.ViTConfig(**small, intermediate_size=32, image_size=8, patch_size=4)
        return tf.ViTForImageClassification(cfg), {"pixel_values": torch.randn(2, 3, 8, 8)}
    cfg = tf.LlamaConfig(**small, intermediate_size=32, num_key_value_heads=2, vocab_size=50)
    return tf.LlamaForCausalLM(cfg), {"input_ids": torch.randint(0, 50, (2, 6))}


def _grads(model, loss) -> list[torch.Tensor]:
    model.zero_grad()
    torch.manual_seed(1)  # the same dropout masks in every run
    loss().backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _check_trains_and_removes(model, loss, handle) -> None:
    """PER changes the gradients, logs a finite loss per layer; remove() restores them."""
    with_per = _grads(model, loss)
    assert all(v is not None and torch.isfinite(v) for v in handle.losses().values())
    handle.remove()
    plain = _grads(model, loss)
    assert any(not torch.equal(a, b) for a, b in zip(with_per, plain, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(plain, _grads(model, loss), strict=True))


@pytest.mark.parametrize(("name", "count"), [("gpt2", 2), ("bert", 3), ("vit", 2), ("llama", 2)])
def test_transformers_default_is_the_mlp_activations(name, count):
    torch.manual_seed(0)
    model, inputs = _hf_model(name)
    model.train()
    expected = [n for n, _ in model.named_modules() if _HF_ACT.search(n)]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="regularize: the default layers matched")
        handle = pt.regularize(model, coeff=1.0, num_slices=8)  # the one line
    assert list(handle.layers) == expected and len(expected) == count
    if name == "bert":  # the two MLP activations and the classifier head's pooler
        assert sum(".intermediate." in n for n in expected) == 2
    _check_trains_and_removes(model, lambda: model(**inputs).logits.square().mean(), handle)


def test_gpt2_per_token_loss_and_gradient_match_the_reference():
    """(b, T, 4H) MLP activations: b*T samples of 4H, on the directions of (seed, layer, call)."""
    tf = need("transformers")
    torch.manual_seed(0)
    cfg = tf.GPT2Config(n_layer=2, n_head=2, n_embd=8, vocab_size=30, n_positions=8)
    cfg.resid_pdrop = cfg.embd_pdrop = cfg.attn_pdrop = 0.0
    model = tf.GPT2LMHeadModel(cfg).double()
    ids = torch.randint(0, 30, (3, 5))
    seen = {}
    for i in range(2):
        act = model.transformer.h[i].mlp.act
        act.register_forward_hook(lambda _m, _a, out, i=i: seen.update({i: out}))
    handle = pt.regularize(model, coeff=0.5, num_slices=6, mode="loss", seed=9)
    out = model(input_ids=ids)
    penalty = handle.penalty()
    total = 0.0
    for i, name in enumerate(handle.layers):
        rows = seen[i].detach().reshape(-1, 32)  # 15 tokens of 4 * 8
        theta = pt.sample_directions(6, 32, derive_seed(9, i, 0), dtype=torch.float64)
        expected = reference.per_loss(rows, theta)
        assert_close(f"loss {name}", handle.losses()[name], expected, *F64_LOSS)
        total = total + 0.5 * expected
    assert_close("penalty", penalty, total, *F64_LOSS)
    # the gradient reaching the last activation (no penalized layer after it) is the
    # reference's per-token gradient
    (grad,) = torch.autograd.grad(penalty, [seen[1]])
    theta1 = pt.sample_directions(6, 32, derive_seed(9, 1, 0), dtype=torch.float64)
    expected1 = 0.5 * reference.per_grad(seen[1].detach().reshape(-1, 32), theta1)
    assert_close("grad", grad, expected1.reshape(3, 5, 32), *F64_GRAD_PATHS)
    del out


def test_bert_encoder_model_output_is_regularized_on_its_hidden_state():
    tf = need("transformers")
    torch.manual_seed(0)
    model, inputs = _hf_model("bert")
    model.double().eval()
    model.bert.encoder.train()
    seen = {}
    model.bert.encoder.register_forward_hook(lambda _m, _a, out: seen.update(h=out))
    handle = pt.regularize(model, num_slices=5, names="bert.encoder", seed=4)
    out = model(**inputs)
    assert isinstance(seen["h"], tf.utils.ModelOutput)
    h = seen["h"].last_hidden_state.detach()
    theta = pt.sample_directions(5, 16, derive_seed(4, 0, 0), dtype=torch.float64)
    expected = reference.per_loss(h.reshape(-1, 16), theta)  # one sample per token
    assert_close("loss", handle.losses()["bert.encoder"], expected, *F64_LOSS)
    assert out.logits.shape == (2, 2)


_TIMM = [
    ("resnet18", 17, {}),
    ("vit_tiny_patch16_224", 12, {"img_size": 32}),
    ("convnext_atto", 12, {}),
    ("efficientnet_b0", 33, {}),
    ("mobilenetv3_small_100", 24, {}),
]


@pytest.mark.parametrize(("name", "count", "kw"), _TIMM, ids=[t[0] for t in _TIMM])
def test_timm_default_is_the_main_path_activations(name, count, kw):
    timm = need("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=5, **kw)
    expected = [
        n
        for n, m in model.named_modules()
        if _TIMM_ACT.search(n) and ".se." not in n and not isinstance(m, torch.nn.Identity)
    ]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="regularize: the default layers matched")
        handle = pt.regularize(model, coeff=1.0, num_slices=4)  # the one line
    assert list(handle.layers) == expected and len(expected) == count
    x = torch.randn(2, 3, 32, 32)
    _check_trains_and_removes(model, lambda: model(x).square().mean(), handle)
