"""The HF Trainer recipe (docs/recipes/hf-trainer.md), run as written: its gradient
equals the float64 reference with PER scaled like the task loss (one accumulation
window, and an epoch whose last window is shorter), and it logs PER losses."""

from __future__ import annotations

import pytest
import torch

from . import tolerances
from .assertions import assert_close
from .recipe_support import (
    COEFF,
    SEED,
    SLICES,
    data,
    load_recipe,
    mlp,
    reference_grads,
    reference_per_loss,
    sgd_step_grads,
    windows,
)
from .zoo import need

need("transformers")
pytestmark = pytest.mark.zoo

K, BATCH, LR = 4, 4, 1.0
GRAD = tolerances.F32_MODEL_GRAD
ARGS = dict(accumulate=K, batch_size=BATCH, lr=LR, coeff=COEFF, num_slices=SLICES, seed=SEED)


def _grads(trainer, before) -> dict[str, torch.Tensor]:
    return sgd_step_grads(before, trainer.model.net, LR)


def test_one_window_gradient_and_logs(tmp_path):
    x, y = data(K * BATCH)
    trainer = load_recipe("hf-trainer")["train"](mlp(), x, y, str(tmp_path), max_steps=1, **ARGS)
    got, want = _grads(trainer, mlp()), reference_grads(mlp(), [windows(x, y, BATCH)])
    for name in want:
        assert_close(name, got[name], want[name], *GRAD)
    [log] = [e for e in trainer.state.log_history if "loss" in e]
    want_loss = reference_per_loss(mlp(), x[-BATCH:], call=K - 1)
    assert log["per/net.1"] == tolerances.F32_PER_MODULE.approx(want_loss)


def test_short_last_window_is_averaged_over_its_own_micro_batches(tmp_path):
    """6 micro-batches with k=4: windows of 4 and 2; the Trainer divides the second
    window's losses by 2, and the callback gives PER the same factor."""
    x, y = data(6 * BATCH)
    trainer = load_recipe("hf-trainer")["train"](mlp(), x, y, str(tmp_path), **ARGS)
    assert trainer.state.global_step == 2
    # two SGD steps: the second gradient is taken at the updated weights
    first = mlp()
    step1 = reference_grads(first, [windows(x[: K * BATCH], y[: K * BATCH], BATCH)])
    with torch.no_grad():
        for n, p in first.named_parameters():
            p -= LR * step1[n].float()
    calls = windows(x, y, BATCH)
    step2 = reference_grads(first, [calls[K:]], first_call=K)
    got = sgd_step_grads(first, trainer.model.net, LR)
    for name in step2:
        assert_close(name, got[name], step2[name], *GRAD)
