"""One training step shared by the benchmark and by training runs.

``train_step`` = forward (optionally under autocast), task loss, plus
``coeff * sum of the penalties`` the model's penalty modules recorded (VCL, L1, L2,
per_torch and the :class:`per_triton.PER` layers of per and per_exact, collected by
:func:`per_triton.experiments.baselines.collect_penalty`), backward, optional gradient
clipping, optimizer step. For PER this is Algorithm 1 of Joo, Kang & Kim (2020)
with ``reduction="mean"``: the gradient of every regularised layer gets
``coeff * dL_PER/dh`` (Eq. 6) added to the task gradient.

No ``.item()`` and no host synchronisation happens inside the step, so timing it
measures the device work only when the caller synchronises (bench/common.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from per_triton.experiments.baselines import collect_penalty, set_step_seed

__all__ = ["StepResult", "classification_loss", "train_step"]


@dataclass
class StepResult:
    """Detached values of one step: ``loss = task_loss + coeff * penalty``."""

    loss: Tensor
    task_loss: Tensor
    penalty: Tensor | None


def classification_loss(output: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy over the last axis of ``output`` (logits ``(b, C)`` or ``(T, b, V)``).

    Computed in float32 whatever the autocast dtype.
    """
    return F.cross_entropy(output.reshape(-1, output.shape[-1]).float(), target.reshape(-1))


def train_step(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    coeff: float = 1e-4,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = classification_loss,
    seed: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    clip_grad_norm: float | None = None,
) -> StepResult:
    """Run one optimisation step of ``model`` on ``(inputs, target)``.

    Args:
        model: a model from :mod:`per_triton.experiments.models` (or any module, possibly wrapped
            in DDP, with :class:`per_triton.api.penalty.PenaltyModule` submodules).
        inputs: the batch, on the model's device.
        target: class indices for ``loss_fn``.
        optimizer: stepped once; gradients are reset (to None) first.
        coeff: weight of the summed penalties (one coefficient for every layer).
        loss_fn: task loss of ``(model output, target)``.
        seed: step seed for the random directions of ``per`` / ``per_torch``
            (:func:`~per_triton.experiments.baselines.set_step_seed`); the same value on
            every DDP rank makes the ranks share directions
            (:func:`per_triton.api.distributed.agree_seed`). None: the PER layers' own
            stream, torch's generator for ``per_torch``.
        autocast_dtype: e.g. ``torch.bfloat16`` to run the forward under autocast.
        clip_grad_norm: clip the global gradient norm (5.0 for the LSTM LM of Zaremba et al.).

    Returns:
        :class:`StepResult` with detached tensors (no host synchronisation).
    """
    model.train()
    set_step_seed(model, seed)
    optimizer.zero_grad(set_to_none=True)
    autocast = (
        contextlib.nullcontext()
        if autocast_dtype is None
        else torch.autocast(inputs.device.type, dtype=autocast_dtype)
    )
    with autocast:
        output = model(inputs)
        task = loss_fn(output, target)
        penalty = collect_penalty(model)
    loss = task if penalty is None else task + coeff * penalty
    loss.backward()
    if clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    optimizer.step()
    return StepResult(loss.detach(), task.detach(), None if penalty is None else penalty.detach())
