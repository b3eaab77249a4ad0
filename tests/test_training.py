"""The shared training step: loss composition, autocast, clipping, and that every
regulariser actually changes the gradient compared with vanilla."""

from __future__ import annotations

import pytest
import torch

from per_triton.experiments.baselines import PENALTY_METHODS, collect_penalty, set_step_seed
from per_triton.experiments.models import build_model
from per_triton.experiments.training import classification_loss, train_step

from . import tolerances
from .assertions import assert_close

TINY = {"num_classes": 10, "width": 1 / 16, "input_size": 8, "dropout": False, "num_slices": 16}


def _batch(b: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return torch.randn(b, 3, 8, 8, generator=gen), torch.randint(0, 10, (b,), generator=gen)


def _grads(method: str, coeff: float, seed: int | None = 11) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("cnn11", method, **TINY)
    x, y = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # gradients kept, weights unchanged
    train_step(model, x, y, opt, coeff=coeff, seed=seed)
    return {n: p.grad.clone() for n, p in model.named_parameters() if "beta" not in n}


def test_vanilla_has_no_penalty() -> None:
    torch.manual_seed(0)
    model = build_model("cnn11", "vanilla", **TINY)
    x, y = _batch()
    out = train_step(model, x, y, torch.optim.SGD(model.parameters(), lr=0.1))
    assert out.penalty is None
    assert_close("loss", out.loss, out.task_loss, *tolerances.EXACT)


@pytest.mark.parametrize("method", PENALTY_METHODS)
def test_loss_is_task_plus_coeff_times_penalty(method: str) -> None:
    torch.manual_seed(0)
    model = build_model("cnn11", method, **TINY)
    x, y = _batch()
    out = train_step(model, x, y, torch.optim.SGD(model.parameters(), lr=0.0), coeff=0.5, seed=1)
    assert out.penalty is not None and out.penalty > 0
    assert_close("loss", out.loss, out.task_loss + 0.5 * out.penalty, *tolerances.F32_SUM)


@pytest.mark.parametrize("method", PENALTY_METHODS)
def test_regulariser_changes_the_gradient(method: str) -> None:
    """Same weights, same batch: the method's gradient differs from vanilla's, and the
    difference is exactly ``coeff * d(penalty)/dtheta``."""
    vanilla = _grads("vanilla", 0.0)
    regularised = _grads(method, 1.0)
    assert vanilla.keys() == regularised.keys()
    first = "features.0.weight"
    diff = (regularised[first] - vanilla[first]).abs().max()
    assert diff > 1e-6 * vanilla[first].abs().max(), f"{method}: gradient unchanged"

    # the difference is the penalty's own gradient (same directions: same seed)
    torch.manual_seed(0)
    model = build_model("cnn11", method, **TINY)
    set_step_seed(model, 11)
    x, _ = _batch()
    model(x)
    collect_penalty(model).backward()
    for name, p in model.named_parameters():
        if name in vanilla:
            own = torch.zeros_like(p) if p.grad is None else p.grad  # e.g. the classifier
            expected = vanilla[name] + own
            assert_close(
                f"{method} grad {name}", regularised[name], expected, *tolerances.F32_MODEL_GRAD
            )


def test_bn_model_normalises() -> None:
    model = build_model("cnn11", "bn", **TINY)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 10


def test_bf16_autocast_step() -> None:
    torch.manual_seed(0)
    model = build_model("cnn11", "per", **TINY)
    x, y = _batch()
    out = train_step(
        model, x, y, torch.optim.SGD(model.parameters(), lr=0.1), autocast_dtype=torch.bfloat16
    )
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert out.penalty is not None and torch.isfinite(out.penalty)


def test_gradient_clipping() -> None:
    torch.manual_seed(0)
    model = build_model("lstm", "l2", vocab_size=20, hidden=8)
    tokens = torch.randint(0, 20, (6, 3))
    train_step(
        model, tokens[:-1], tokens[1:], torch.optim.SGD(model.parameters(), lr=0.0),
        clip_grad_norm=1e-3,
    )  # fmt: skip
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert float(norm) <= 1e-3 * (1 + 1e-4)


def test_classification_loss_sequence() -> None:
    logits = torch.randn(4, 3, 7)
    target = torch.randint(0, 7, (4, 3))
    expected = torch.nn.functional.cross_entropy(logits.reshape(12, 7), target.reshape(12))
    assert_close("ce", classification_loss(logits, target), expected, *tolerances.F32_SUM)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["per", "per_torch", "vcl"])
def test_cuda_training_step(method: str) -> None:
    """On a GPU: the fused path inside a training step, fp32 and bf16 autocast."""
    torch.manual_seed(0)
    model = build_model("cnn11", method, **TINY).cuda()
    x, y = (t.cuda() for t in _batch())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for dtype in (None, torch.bfloat16):
        out = train_step(model, x, y, opt, autocast_dtype=dtype, seed=4)
        assert torch.isfinite(out.loss) and out.penalty is not None


@pytest.mark.parametrize(("method", "estimator"), [("per", "monte_carlo"), ("per_exact", "exact")])
def test_the_step_trains_the_per_layer_users_import(method: str, estimator: str) -> None:
    """``per`` / ``per_exact`` models carry ``pt.PER`` (coeff 1, ``mode="loss"``), and the
    step's penalty is the sum of those layers' per_loss values on the step's seeds."""
    import per_triton as pt
    from per_triton.core.seeds import child_seed

    torch.manual_seed(0)
    model = build_model("cnn11", method, **TINY)
    layers = [m for m in model.modules() if isinstance(m, pt.PER)]
    assert len(layers) == 10 and all(type(m) is pt.PER for m in layers)
    assert all((m.estimator, m.mode, m.coeff) == (estimator, "loss", 1.0) for m in layers)
    inputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, a, _o: inputs.append(a[0])) for m in layers]
    x, y = _batch()
    out = train_step(model, x, y, torch.optim.SGD(model.parameters(), lr=0.0), seed=8)
    for hook in hooks:
        hook.remove()
    if estimator == "exact":
        want = sum(pt.per_loss(h, estimator="exact") for h in inputs)
    else:
        want = sum(pt.per_loss(h, 16, seed=child_seed(8, "layer", i)) for i, h in enumerate(inputs))
    assert_close("penalty", out.penalty, want, *tolerances.F32_SUM)


@pytest.mark.gpu
def test_cuda_per_penalty_matches_reference_on_its_directions() -> None:
    """The ``per`` module on CUDA (fused kernels, TF32) against the reference on the same
    directions (module 0 of a step seeded 21: ``child_seed(21, "layer", 0)``)."""
    import per_triton as pt
    from per_triton.core.seeds import child_seed
    from per_triton.experiments.baselines import make_regularizer

    h = torch.randn(128, 24, 8, 8, device="cuda", requires_grad=True)
    mod = make_regularizer("per", 24, num_slices=256).train()
    set_step_seed(torch.nn.Sequential(mod), 21)
    mod(h)
    theta = pt.sample_directions(256, h[0].numel(), child_seed(21, "layer", 0), device="cuda")
    expected = pt.reference.per_loss(h.detach().double(), theta.double())
    assert_close("per cuda", collect_penalty(mod), expected, *tolerances.CUDA_VS_CPU)
