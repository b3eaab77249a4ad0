"""PER under DDP: with a seed agreed across ranks, the averaged gradient of two ranks
on half batches equals single-process PER on the concatenated batch.

Both routes are checked: the models' ``train_step(seed=agree_seed())`` and the
one-line API, ``regularize(model, seed=...)`` with an int base seed (no
communication) or a :class:`per_triton.api.distributed.StepSeed` set by ``agree()``.

Two CPU processes on the gloo backend (torch.multiprocessing, forked). The model is
the 11-layer CNN at small width without dropout (and without BN, whose statistics
are per rank). Each rank's default generator is seeded differently, so only the
broadcast of ``agree_seed`` makes the directions agree; a second step with the
local (disagreeing) seeds shows the comparison has teeth.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import per_triton as pt
from per_triton.api.distributed import StepSeed, agree_seed, step_seed
from per_triton.experiments.models import build_model
from per_triton.experiments.training import train_step

from . import tolerances
from .assertions import assert_close

WORLD = 2
TINY = {"num_classes": 10, "width": 1 / 16, "input_size": 8, "dropout": False, "num_slices": 32}
COEFF = 1.0  # large, so that PER's share of the gradient is far above rounding


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cnn11", "per", **TINY)


def _grads(model: torch.nn.Module, x, y, seed: int) -> dict[str, torch.Tensor]:
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    train_step(model, x, y, opt, coeff=COEFF, seed=seed)
    return {n.removeprefix("module."): p.grad.clone() for n, p in model.named_parameters()}


REG_BASE_SEED = 1234


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh(),
                         nn.Linear(12, 10))  # fmt: skip


def _regularized_grads(x, y, mode: str, seed, ddp: bool) -> dict[str, torch.Tensor]:
    """Gradients of a fresh MLP under ``regularize(mode, seed)`` (wrapped in DDP if asked)."""
    net = _mlp()
    handle = pt.regularize(net, coeff=COEFF, num_slices=16, mode=mode, seed=seed)
    model = torch.nn.parallel.DistributedDataParallel(net) if ddp else net
    if isinstance(seed, StepSeed) and ddp:
        seed.agree()
    loss = F.cross_entropy(model(x.flatten(1)), y)
    (loss + handle.penalty() if mode == "loss" else loss).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)  # fmt: skip
    try:
        model = torch.nn.parallel.DistributedDataParallel(_model())
        x, y = _batch()
        shard = slice(rank * 4, rank * 4 + 4)
        torch.manual_seed(1000 + rank)  # the ranks' generators disagree on purpose
        agreed = agree_seed()
        local = int(torch.randint(0, 2**62, (1,)))  # no agreement
        result = {
            "agreed_seed": agreed,
            "agreed": _grads(model, x[shard], y[shard], agreed),
            "local_seed": local,
            "local": _grads(model, x[shard], y[shard], local),
        }
        seeds = StepSeed()
        result["reg_int"] = _regularized_grads(x[shard], y[shard], "inject", REG_BASE_SEED, True)
        result["reg_step"] = _regularized_grads(x[shard], y[shard], "loss", seeds, True)
        result["reg_step_seed"] = seeds()
        result["reg_none"] = _regularized_grads(x[shard], y[shard], "inject", None, True)
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_ddp_per_gradient_equals_concatenated_batch(tmp_path: Path) -> None:
    # fork: the ranks inherit _worker (spawn would unpickle it as tests.test_ddp._worker,
    # which needs the checkout root on sys.path, where kernels/ hides the PyPI kernels)
    mp.start_processes(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True, start_method="fork"
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert ranks[0]["agreed_seed"] == ranks[1]["agreed_seed"]
    assert ranks[0]["local_seed"] != ranks[1]["local_seed"]

    x, y = _batch()
    single = _grads(_model(), x, y, ranks[0]["agreed_seed"])
    for name, g in single.items():
        for r in range(WORLD):
            assert_close(f"rank{r} {name}", ranks[r]["agreed"][name], g, *tolerances.DDP_GRAD)

    # the one-line API: regularize(seed=int) and regularize(seed=StepSeed) agree across ranks
    assert ranks[0]["reg_step_seed"] == ranks[1]["reg_step_seed"]
    full_int = _regularized_grads(x, y, "inject", REG_BASE_SEED, False)
    full_step = _regularized_grads(x, y, "loss", StepSeed(ranks[0]["reg_step_seed"]), False)
    for name in full_int:
        for r in range(WORLD):
            assert_close(f"rank{r} seed=int {name}", ranks[r]["reg_int"][name], full_int[name],
                         1e-6, 1e-4)  # fmt: skip
            assert_close(f"rank{r} StepSeed {name}", ranks[r]["reg_step"][name], full_step[name],
                         1e-6, 1e-4)  # fmt: skip
    err = (ranks[0]["reg_none"]["0.weight"] - full_int["0.weight"]).abs().max()
    assert err > 1e-3 * full_int["0.weight"].abs().max(), "seed=None: ranks disagree"

    # ranks on different directions: DDP still averages, but it is not PER of the batch
    single_local = _grads(_model(), x, y, ranks[0]["local_seed"])
    first = "features.0.weight"
    err = (ranks[0]["local"][first] - single_local[first]).abs().max()
    assert err > 1e-4 * single_local[first].abs().max()


def test_seed_helpers_without_process_group() -> None:
    torch.manual_seed(3)
    a = agree_seed()
    torch.manual_seed(3)
    assert agree_seed() == a and 0 <= a < 2**62
    assert step_seed(7, 3) == step_seed(7, 3) != step_seed(7, 4)
