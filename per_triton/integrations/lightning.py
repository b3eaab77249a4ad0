"""PER in Lightning: a callback that regularizes the module, scales the injected
gradient like Lightning scales the loss, and logs the PER losses.

Example::

    trainer = L.Trainer(accumulate_grad_batches=4, callbacks=[PERCallback(coeff=1e-4)])
    trainer.fit(module, loader)            # logs per/<layer> (and sw1/<layer>)
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from per_triton.api.attach import regularize
from per_triton.api.handle import PERHandle
from per_triton.core.seeds import DRAW_LIMIT
from per_triton.integrations import LossFactor, SW1Reader, per_scalars

__all__ = ["PERCallback"]


class PERCallback(pl.Callback):
    """Regularize ``pl_module`` with :func:`per_triton.regularize` when fitting starts.

    In the automatic optimization Lightning backpropagates
    ``scaler.scale(loss / accumulate_grad_batches)``; the injected PER gradient gets
    the same factor at every training batch (:meth:`PERHandle.set_grad_scale`:
    ``1/accumulate_grad_batches`` times the precision plugin's GradScaler scale
    under ``precision="16-mixed"``). Under manual optimization Lightning divides
    nothing: only the GradScaler's scale is applied (divide the loss you pass to
    ``manual_backward`` yourself and the PER gradient is off by that factor;
    ``set_grad_scale`` it, or use :func:`per_triton.regularize` with ``mode="loss"``).

    With more than one process and no ``seed``, rank 0 draws an int seed and
    broadcasts it, so every rank projects on the same directions.

    Logged at every training batch (``pl_module.log``, on step): ``per/<layer>``,
    each regularized layer's last PER loss, and, with ``monitor``, ``sw1/<layer>``
    for each new record of that :class:`per_triton.api.monitor.LayerMonitor`.

    Args:
        monitor: a LayerMonitor on the same module (optional), whose SW1 is logged.
        log_every_n_steps: log every n-th batch (a host sync each time).
        **kwargs: :func:`per_triton.regularize`'s arguments (``coeff``, ``layers``,
            ``names``, ``seed``, ...); ``mode`` must stay ``"inject"``.

    Raises:
        ValueError for ``mode="loss"`` (whose penalty the callback cannot add to the
        loss ``training_step`` returns: call ``regularize`` in the module and add
        ``handle.penalty()`` to that loss instead).
    """

    def __init__(self, *, monitor: Any = None, log_every_n_steps: int = 1, **kwargs: Any) -> None:
        if kwargs.get("mode", "inject") != "inject":
            raise ValueError(
                "PERCallback: mode must be 'inject'; for mode='loss' call regularize() in "
                "the LightningModule and add handle.penalty() to training_step's loss"
            )
        self.kwargs = kwargs
        self.handle: PERHandle | None = None
        self.seed: Any = kwargs.get("seed")  # the seed used (the broadcast one under DDP)
        self.log_every_n_steps = int(log_every_n_steps)
        self._sw1 = SW1Reader(monitor)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.handle is not None:
            return
        kwargs = dict(self.kwargs)
        if kwargs.get("seed") is None and trainer.world_size > 1:
            drawn = int(torch.randint(0, DRAW_LIMIT, (1,)))
            kwargs["seed"] = int(trainer.strategy.broadcast(drawn, src=0))
        self.seed = kwargs.get("seed")
        self.handle = regularize(pl_module, **kwargs)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.handle is not None:
            self.handle.remove()
            self.handle = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, i: int) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        k = trainer.accumulate_grad_batches if pl_module.automatic_optimization else 1
        self.handle.set_grad_scale(LossFactor(k, scaler))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, i: int
    ) -> None:
        if i % self.log_every_n_steps:
            return
        values = {**per_scalars(self.handle), **self._sw1()}
        if values:
            pl_module.log_dict(values, on_step=True, on_epoch=False, batch_size=1)
