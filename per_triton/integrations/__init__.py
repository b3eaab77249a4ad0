"""PER in the training frameworks: the injected gradient scaled like the task loss,
and the per-layer PER losses written to the framework's logger.

``mode="inject"`` adds ``coeff * dL/dh`` in the backward pass, outside the task
loss, so it misses what the loop does to that loss: Lightning divides the loss by
``accumulate_grad_batches``, ``accelerator.backward`` by
``gradient_accumulation_steps``, the HF Trainer by the micro-batches of the window,
and a ``GradScaler`` multiplies it by its scale. The callbacks here give the
injected gradient the same factor (:meth:`per_triton.PERHandle.set_grad_scale`):

- :class:`per_triton.integrations.lightning.PERCallback` (Lightning),
- :class:`per_triton.integrations.hf.PERTrainerCallback` (HF Trainer),
- :func:`accelerate_scale` (accelerate), :func:`grad_scale` (plain PyTorch),
- :func:`per_triton.integrations.tensorboard.log_per` (a ``SummaryWriter``).

The framework modules import their framework; this one imports none.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from per_triton.api.handle import PERHandle
from per_triton.core._validation import check_positive_int

__all__ = ["LossFactor", "SW1Reader", "accelerate_scale", "amp_scale", "grad_scale", "per_scalars"]


def amp_scale(scaler: object) -> float | torch.Tensor:
    """The factor ``scaler.scale(loss)`` multiplies a loss by now (1 when disabled).

    ``scaler`` is a ``torch.amp.GradScaler`` (or ``None``: 1). Returns its scale
    tensor (shape ``(1,)``, on its device, no host sync) once it has scaled a loss,
    its initial scale before that.
    """
    if scaler is None or not scaler.is_enabled():
        return 1.0
    scale = getattr(scaler, "_scale", None)  # the tensor scale() multiplies by
    return float(scaler.get_scale()) if scale is None else scale


class LossFactor:
    """``amp_scale(scaler) / accumulation_steps``, read at every call (picklable)."""

    def __init__(self, accumulation_steps: int = 1, scaler: object = None) -> None:
        self.accumulation_steps = check_positive_int(accumulation_steps, "accumulation_steps")
        self.scaler = scaler

    def __call__(self) -> float | torch.Tensor:
        return amp_scale(self.scaler) / self.accumulation_steps


def grad_scale(accumulation_steps: int = 1, scaler: object = None) -> LossFactor:
    """The factor a loop applies to its task loss, as a callable for ``set_grad_scale``.

    ``amp_scale(scaler) / accumulation_steps``: for a loop that backpropagates
    ``scaler.scale(loss / accumulation_steps)``.

    Raises:
        TypeError / ValueError naming ``accumulation_steps`` unless a positive int.
    """
    return LossFactor(accumulation_steps, scaler)


class _AcceleratorFactor:
    def __init__(self, accelerator: object) -> None:
        self.accelerator = accelerator

    def __call__(self) -> float | torch.Tensor:
        acc = self.accelerator
        return amp_scale(acc.scaler) / acc.gradient_accumulation_steps


def accelerate_scale(accelerator: object) -> Callable[[], float | torch.Tensor]:
    """What ``accelerator.backward(loss)`` does to ``loss``: ``/ gradient_accumulation_steps``
    and the accelerator's GradScaler (fp16), read at every call.

    Raises:
        ValueError for DeepSpeed, whose engine scales the loss itself.
    """
    kind = str(getattr(accelerator, "distributed_type", ""))
    if "DEEPSPEED" in kind.upper():
        raise ValueError(
            "accelerate_scale: DeepSpeed scales the loss inside its engine; use "
            "regularize(..., mode='loss') and add handle.penalty() to the loss"
        )
    return _AcceleratorFactor(accelerator)


def per_scalars(handle: PERHandle, prefix: str = "per") -> dict[str, float]:
    """``{f"{prefix}/{layer}": last PER loss}`` for the layers that ran (a host sync)."""
    return {
        f"{prefix}/{name}": float(loss)
        for name, loss in handle.losses().items()
        if loss is not None
    }


class SW1Reader:
    """The monitor's (:class:`per_triton.api.monitor.LayerMonitor`) records not read yet,
    as ``{f"{prefix}/{layer}": sw1}`` (a flush, so a host sync; ``{}`` without a monitor)."""

    def __init__(self, monitor: object = None, prefix: str = "sw1") -> None:
        self.monitor = monitor
        self.prefix = prefix
        self._read = 0

    def __call__(self) -> dict[str, float]:
        if self.monitor is None:
            return {}
        records = self.monitor.records
        new, self._read = records[self._read :], len(records)
        return {f"{self.prefix}/{r['layer']}": r["sw1"] for r in new if r["sw1"] is not None}
