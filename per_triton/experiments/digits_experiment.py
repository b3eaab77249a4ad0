"""The paper's distribution analysis (section 4.3.2) on real data: one training run.

Trains :class:`per_triton.experiments.models.small_cnn.SmallCNN` on scikit-learn's bundled 8x8
digits (no download) with one method and one seed, while
:class:`per_triton.api.monitor.LayerMonitor` records every conv block's pre-activation
closeness to N(0, I) (records: :mod:`per_triton.api.monitor_schema`). Every method
starts from the same initial weights for a seed and sees the same batches.
``per-triton train`` (:mod:`per_triton.cli.train`) runs it for each method and
seed; :mod:`per_triton.experiments.closeness_figure` draws the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from per_triton.core.seeds import child_seed
from per_triton.experiments.methods import TRAIN_METHODS, check_method

MODEL_NAME = "small_cnn_digits"
# Training images in load_digits()'s fixed split: 1797 minus 359 held out (20% of each
# class); a test checks it. Known without loading the data, so --batch-size is checked
# before anything runs.
TRAIN_SIZE = 1438
#: Each penalty method's default coefficient (``coeff * sum`` of its layers' penalties),
#: for the methods with a coefficient of their own; ``per-triton train`` makes a
#: ``--<method>-coeff`` flag of each.
COEFFS: dict[str, float] = {"per": 0.1, "vcl": 0.1, "l1": 1e-3, "l2": 1e-3}
#: ``per_exact`` (estimator="exact") uses PER's coefficient: the same loss in expectation.
COEFF_OF = {"per_exact": "per"}


@dataclass
class Config:
    """Everything that fixes a run besides the method and the seed."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    width: int = 16
    init_scale: float = 1.0
    #: coefficient per key of :data:`COEFFS`; the keys left out keep their default
    coeffs: dict[str, float] = field(default_factory=COEFFS.copy)
    num_slices: int = 256
    monitor_every: int = 10
    monitor_slices: int = 256
    limit: int | None = None
    device: str = "cpu"
    monitor: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.coeffs) - set(COEFFS))
        if unknown:
            raise ValueError(
                f"coeffs: no coefficient of {', '.join(unknown)}; keys: {', '.join(COEFFS)}"
            )
        self.coeffs = {**COEFFS, **self.coeffs}

    def coeff(self, method: str) -> float:
        """The coefficient of ``method``'s penalty (:data:`COEFF_OF`); 0 without a penalty."""
        return self.coeffs.get(COEFF_OF.get(method, method), 0.0)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` in eval mode."""
    model.eval()
    logits = model(x)
    model.train()
    return (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


def _step_seed(seed: int, step: int) -> int:
    """Seed of PER's directions at one step: reproducible, distinct per run and step."""
    return child_seed(seed, "step", step)


def _monitor(model: nn.Module, taps, cfg: Config, path, run: str, method: str, seed: int):
    """The :class:`~per_triton.api.monitor.LayerMonitor` of one run, writing to ``path``."""
    from per_triton.api.monitor import LayerMonitor

    return LayerMonitor(
        model,
        taps,
        every=cfg.monitor_every,
        num_slices=cfg.monitor_slices,
        path=path,
        run=run,
        model_name=MODEL_NAME,
        method=method,
        seed=seed,
    )


def train_one(
    method: str, seed: int, cfg: Config, data, path: str | None, run: str = "digits", log=print
) -> dict:
    """Train one (method, seed); return its summary entry. Records go to ``path``.

    Every method starts from ``torch.manual_seed(seed)`` and sees the same batches;
    the step is :func:`per_triton.experiments.training.train_step` (task loss plus
    ``coeff * sum`` of the penalties at each pre-activation).
    """
    from per_triton.experiments.models.small_cnn import SmallCNN
    from per_triton.experiments.training import train_step

    check_method(method, TRAIN_METHODS)
    torch.manual_seed(seed)
    model = SmallCNN(cfg.width, method, init_scale=cfg.init_scale, num_slices=cfg.num_slices)
    model.to(cfg.device)
    coeff = cfg.coeff(method)
    taps = model.tap_names
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    monitor = _monitor(model, taps, cfg, path, run, method, seed) if cfg.monitor else None
    gen = torch.Generator().manual_seed(seed)
    n = data.train_x.shape[0]
    step, seconds = 0, 0.0
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen).to(cfg.device)
        losses = []
        start = time.perf_counter()
        for i in range(0, n - cfg.batch_size + 1, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            if monitor is not None:
                monitor.step(step)
            result = train_step(
                model,
                data.train_x[idx],
                data.train_y[idx],
                opt,
                coeff=coeff,
                seed=_step_seed(seed, step),
            )
            losses.append(result.task_loss.item())
            step += 1
        seconds += time.perf_counter() - start
        acc, _ = evaluate(model, data.test_x, data.test_y)
        log(
            f"  {method:8s} seed {seed} epoch {epoch + 1:3d}/{cfg.epochs} "
            f"loss {sum(losses) / max(len(losses), 1):.4f} test acc {acc:.4f}"
        )
    if monitor is not None:
        monitor.close()
    acc, test_loss = evaluate(model, data.test_x, data.test_y)
    train_acc, _ = evaluate(model, data.train_x, data.train_y)
    return {
        "method": method,
        "seed": seed,
        "test_accuracy": acc,
        "final_loss": sum(losses) / max(len(losses), 1),
        "test_loss": test_loss,
        "train_accuracy": train_acc,
        "steps": step,
        "seconds_per_step": seconds / max(step, 1),
    }
