"""The accelerate recipe (docs/recipes/accelerate.md), run as written: its gradient
equals the float64 reference with PER scaled like the task loss."""

from __future__ import annotations

import pytest

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
    sgd_step_grads,
    windows,
)

pytest.importorskip("accelerate")

K, BATCH, LR = 4, 4, 1.0
GRAD = tolerances.F32_MODEL_GRAD


def test_accumulated_gradient_matches_float64_reference():
    x, y = data(K * BATCH)
    net, handle = load_recipe("accelerate")["train"](
        mlp(),
        x,
        y,
        batch_size=BATCH,
        accumulate=K,
        lr=LR,
        coeff=COEFF,
        num_slices=SLICES,
        seed=SEED,
    )
    got, want = sgd_step_grads(mlp(), net, LR), reference_grads(mlp(), [windows(x, y, BATCH)])
    for name in want:
        assert_close(name, got[name], want[name], *GRAD)
    assert set(handle.losses()) == {"1"}


def test_deepspeed_is_refused():
    from per_triton.integrations import accelerate_scale

    class DeepSpeedAccelerator:
        distributed_type = "DistributedType.DEEPSPEED"

    with pytest.raises(ValueError, match="mode='loss'"):
        accelerate_scale(DeepSpeedAccelerator())
