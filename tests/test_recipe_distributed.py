"""The DDP and FSDP2 recipes (docs/recipes/ddp.md, fsdp2.md), run as written under
``torchrun`` with 2 CPU processes (gloo): the gradient of one accumulated step
equals the float64 reference with PER scaled like the task loss, and the pages'
own ``__main__`` blocks run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from . import tolerances
from .assertions import assert_close
from .ranks import run_torchrun
from .recipe_support import (
    COEFF,
    ROOT,
    SEED,
    SLICES,
    data,
    mlp,
    recipe_code,
    reference_grads,
    sgd_step_grads,
    windows,
)

pytestmark = pytest.mark.slow

K, BATCH, LR = 4, 4, 1.0
GRAD = tolerances.DDP_GRAD
ARGS = dict(accumulate=K, batch_size=BATCH, lr=LR, coeff=COEFF, num_slices=SLICES, seed=SEED)

RUNNER = """
import os, sys, torch, torch.distributed as dist
from tests.recipe_support import mlp, data
from recipe import train

dist.init_process_group("gloo")
x, y = data({n})
model = train(mlp(), x, y, **{args!r})
params = {{n: getattr(p, "full_tensor", lambda: p)().detach() for n, p in model.named_parameters()}}
if dist.get_rank() == 0:
    torch.save(params, "params.pt")
dist.destroy_process_group()
sys.stdout.flush()
os._exit(0)  # no interpreter teardown, where gloo can abort a rank (tests/ranks.py)
"""


def _torchrun(tmp_path, script: str, complete) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", script]
    return run_torchrun(cmd, complete, cwd=tmp_path, env=env, timeout=120)


def _both_ranks_done(done: subprocess.CompletedProcess) -> bool:
    return "rank 0 done" in done.stdout and "rank 1 done" in done.stdout


class _Params(torch.nn.Module):
    def __init__(self, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._p = params

    def named_parameters(self, *a, **k):
        return iter(self._p.items())


@pytest.mark.parametrize("page", ["ddp", "fsdp2"])
def test_recipe_gradient_matches_float64_reference(tmp_path, page):
    (tmp_path / "recipe.py").write_text(recipe_code(page))
    (tmp_path / "run.py").write_text(RUNNER.format(n=2 * K * BATCH, args=ARGS))
    done = _torchrun(tmp_path, "run.py", lambda _done: (tmp_path / "params.pt").exists())
    assert done.returncode == 0, done.stderr[-3000:]
    got = sgd_step_grads(mlp(), _Params(torch.load(tmp_path / "params.pt")), LR)
    x, y = data(2 * K * BATCH)
    want = reference_grads(mlp(), [windows(x[r::2], y[r::2], BATCH) for r in range(2)])
    for name in want:
        assert_close(name, got[name], want[name], *GRAD)


@pytest.mark.parametrize("page", ["ddp", "fsdp2"])
def test_recipe_script_runs(tmp_path, page):
    (tmp_path / "train.py").write_text(recipe_code(page))
    done = _torchrun(tmp_path, "train.py", _both_ranks_done)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _both_ranks_done(done)
