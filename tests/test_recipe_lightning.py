"""The Lightning recipe (docs/recipes/lightning.md), run as written: its gradient
equals the float64 reference with PER scaled like the task loss, single process and
``strategy="ddp"`` (2 CPU processes, gloo), and it logs the per-layer PER losses."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from . import tolerances
from .assertions import assert_close
from .recipe_support import (
    COEFF,
    ROOT,
    SEED,
    SLICES,
    data,
    load_recipe,
    mlp,
    recipe_code,
    reference_grads,
    reference_per_loss,
    sgd_step_grads,
    windows,
)
from .zoo import torchvision_importable

torchvision_importable()  # lightning imports torchmetrics, which imports torchvision
pytest.importorskip("lightning")
from torch.utils.data import DistributedSampler, TensorDataset  # noqa: E402

K, BATCH, LR = 4, 4, 1.0
GRAD = tolerances.F32_MODEL_GRAD
ARGS = dict(accumulate=K, batch_size=BATCH, lr=LR, coeff=COEFF, num_slices=SLICES, max_steps=1)


def _by_param(grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n.removeprefix("net."): g for n, g in grads.items()}


def test_single_process_gradient_and_logs(tmp_path):
    recipe = load_recipe("lightning")
    x, y = data(K * BATCH)
    net = mlp()
    before = mlp()
    module = recipe["train"](net, TensorDataset(x, y), str(tmp_path), seed=SEED, **ARGS)
    got = sgd_step_grads(before, module.net, LR)
    want = reference_grads(mlp(), [windows(x, y, BATCH)])
    for name in want:
        assert_close(name, got[name], want[name], *GRAD)
    [metrics] = list(tmp_path.glob("lightning_logs/*/metrics.csv"))
    rows = list(csv.DictReader(metrics.open()))
    logged = [float(r["per/net.1"]) for r in rows if r.get("per/net.1")]
    # logged at the optimizer step: the last micro-batch's PER loss (before the step)
    want_loss = reference_per_loss(mlp(), x[-BATCH:], call=K - 1)
    assert logged == [tolerances.F32_PER_MODULE.approx(want_loss)]


RUNNER = """
import torch
from torch.utils.data import TensorDataset
from tests.recipe_support import mlp, data
from tests.zoo import torchvision_importable
torchvision_importable()
from recipe import train
out = {out!r}

x, y = data({n})
module = train(mlp(), TensorDataset(x, y), {out!r}, strategy="ddp", devices=2, **{args!r})
rank = module.global_rank
seed = next(c.seed for c in module.trainer.callbacks if hasattr(c, "seed"))
torch.save(dict(module.net.named_parameters(), seed=seed), f"{out}/rank{{rank}}.pt")
"""


@pytest.mark.slow
def test_ddp_strategy_gradient(tmp_path):
    """``strategy="ddp"``, 2 processes: each rank gets its share of the data from the
    DistributedSampler Lightning puts in (shuffled, seed 0, epoch 0); PER's
    directions agree by the seed broadcast from rank 0."""
    (tmp_path / "recipe.py").write_text(recipe_code("lightning"))
    runner = RUNNER.format(n=2 * K * BATCH, out=str(tmp_path), args=ARGS)
    (tmp_path / "run.py").write_text(textwrap.dedent(runner))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "run.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    seed = saved[0].pop("seed")
    assert isinstance(seed, int) and saved[1].pop("seed") == seed  # broadcast from rank 0
    got = sgd_step_grads(mlp(), _Params(saved[0]), LR)
    x, y = data(2 * K * BATCH)
    ranks = [windows(x[idx], y[idx], BATCH) for idx in _rank_indices(x, y)]
    want = reference_grads(mlp(), ranks, seed=seed)
    for name in want:
        assert_close(name, got[name], want[name], *GRAD)


def _rank_indices(x: torch.Tensor, y: torch.Tensor) -> list[list[int]]:
    dataset = TensorDataset(x, y)
    return [list(DistributedSampler(dataset, num_replicas=2, rank=r, seed=0)) for r in range(2)]


class _Params(torch.nn.Module):
    def __init__(self, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._p = params

    def named_parameters(self, *a, **k):
        return iter(self._p.items())
