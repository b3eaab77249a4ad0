"""PER in the HF ``Trainer``: a ``TrainerCallback`` that regularizes the model, scales
the injected gradient like the Trainer scales the loss, and logs the PER losses.

Example::

    trainer = Trainer(model, args, train_dataset=data, callbacks=[PERTrainerCallback(coeff=1e-4)])
    trainer.train()                       # logs per/<layer> (and sw1/<layer>)
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from per_triton.api.attach import regularize
from per_triton.api.handle import PERHandle
from per_triton.integrations import LossFactor, SW1Reader, per_scalars

__all__ = ["PERTrainerCallback"]


class PERTrainerCallback(TrainerCallback):
    """Regularize the Trainer's model with :func:`per_triton.regularize` when training starts.

    The Trainer divides each micro-batch's loss by the number of micro-batches of
    its accumulation window (``gradient_accumulation_steps``, fewer in an epoch's
    last window), or normalises it by ``num_items_in_batch`` over the window (a
    model accepting loss kwargs); either way the window's task loss is an average
    over its micro-batches. The injected PER gradient gets ``1/len(window)`` at
    every window (:meth:`PERHandle.set_grad_scale`), so PER is averaged the same way.

    With more than one process and no ``seed``, ``args.seed`` (the same on every
    rank) is the int seed, so every rank projects on the same directions.

    Logged with the Trainer's own logs (``on_log``: into the dict every later
    reporting callback gets, and into ``state.log_history``): ``per/<layer>``, the
    last PER loss of each layer, and with ``monitor``, ``sw1/<layer>`` for each new
    record of that :class:`per_triton.api.monitor.LayerMonitor`. Reporting callbacks
    (TensorBoard, W&B) run before user callbacks; to have them report these
    values, add this callback first: ``trainer.callback_handler.callbacks.insert(0, cb)``.

    Args:
        monitor: a LayerMonitor on the same model (optional), whose SW1 is logged.
        **kwargs: :func:`per_triton.regularize`'s arguments; ``mode`` must stay
            ``"inject"``.

    Raises:
        ValueError for ``mode="loss"`` (the callback cannot add a penalty to the
        Trainer's loss: override ``compute_loss`` instead), and at ``train()`` for
        ``fp16=True`` (the Trainer's GradScaler is out of a callback's reach; use
        ``bf16=True``, which scales nothing).
    """

    def __init__(self, *, monitor: Any = None, **kwargs: Any) -> None:
        if kwargs.get("mode", "inject") != "inject":
            raise ValueError(
                "PERTrainerCallback: mode must be 'inject'; for mode='loss' override "
                "Trainer.compute_loss and add handle.penalty() to the loss"
            )
        self.kwargs = kwargs
        self.handle: PERHandle | None = None
        self._sw1 = SW1Reader(monitor)
        self._window = 0
        self._windows: list[int] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if args.fp16:
            raise ValueError(
                "PERTrainerCallback: fp16=True scales the loss by a GradScaler the "
                "injected PER gradient cannot see; use bf16=True"
            )
        k = args.gradient_accumulation_steps
        loader = kw.get("train_dataloader")
        n = len(loader) if loader is not None and hasattr(loader, "__len__") else 0
        self._windows = [k] * (n // k) + ([n % k] if n % k else []) if n else []
        kwargs = dict(self.kwargs)
        if kwargs.get("seed") is None and args.world_size > 1:
            kwargs["seed"] = int(args.seed)
        if self.handle is None:
            self.handle = regularize(kw["model"], **kwargs)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._window = 0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        size = args.gradient_accumulation_steps
        if self._window < len(self._windows):
            size = self._windows[self._window]
        self._window += 1
        self.handle.set_grad_scale(LossFactor(size))

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if logs is None or self.handle is None or "loss" not in logs:
            return
        values = {**per_scalars(self.handle), **self._sw1()}
        logs.update(values)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(values)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
