"""The handle :func:`per_triton.regularize` returns: the PER layers it added, their
losses and penalty, their gradient scale, and their removal."""

from __future__ import annotations

import torch
from torch import nn

from per_triton.api.hooks import PenaltyReset, _owned_hooks, _per_hooks, _remove_hook
from per_triton.api.module import PER, GradScale, check_grad_scale

__all__ = ["PERHandle"]


class PERHandle:
    """What :func:`per_triton.regularize` returns: the PER layers by module name, and their removal.

    ``layers``: ``{module name: PER}``. The handle belongs to the model it was made
    for; a deep copy of that model carries its own hooks, found with
    ``PERHandle.of(copy)``.
    """

    def __init__(self) -> None:
        self.layers: dict[str, PER] = {}
        self._entries: list[tuple[nn.Module, object]] = []
        self._model: nn.Module | None = None  # searched again by remove()

    @classmethod
    def of(cls, model: nn.Module) -> PERHandle:
        """The handle of the PER hooks already on ``model`` (e.g. a deep copy or a loaded model)."""
        handle = cls()
        handle._model = model
        for name, module in model.named_modules():
            for hook in _per_hooks(module):
                handle.layers[name or "<model>"] = hook.per
                handle._entries.append((module, hook))
            for pre in module._forward_pre_hooks.values():
                if isinstance(pre, PenaltyReset):
                    handle._entries.append((module, pre))
        return handle

    def losses(self) -> dict[str, torch.Tensor | None]:
        """Last PER loss of each regularized module (detached; ``None`` before the first step)."""
        return {name: per.last_loss for name, per in self.layers.items()}

    def penalty(self) -> torch.Tensor:
        """``sum_l coeff * L_l`` over the regularized modules (``mode="loss"``), to add to the loss.

        Returns the sum and clears it (:meth:`per_triton.PER.penalty`): call it once
        per step, after each forward whose loss is backpropagated; a second call
        returns 0. To log it, keep the returned tensor (``p = handle.penalty()``;
        ``loss = task + p``; log ``p.detach()``) rather than calling ``penalty()``
        again. Differentiable; covers the latest forward pass of the model (every
        call of a layer in it). Add it to the task loss *before* scaling it
        (``scaler.scale(task + handle.penalty())``) or dividing it for gradient
        accumulation: the PER share of the gradient is then right. After
        :meth:`remove` it returns 0 (pending terms are dropped).

        Raises:
            RuntimeError if the model was regularized with ``mode="inject"``.
        """
        terms = [per.penalty() for per in self.layers.values()]
        if not terms:
            return torch.zeros(())
        return torch.stack([t.to(terms[0].device) for t in terms]).sum()

    def set_grad_scale(self, scale: GradScale) -> None:
        """Multiply every layer's injected gradient by ``scale`` (``mode="inject"``).

        What the training loop does to the task loss, done to the injected PER
        gradient too: ``1/k`` for ``loss / k`` accumulation, a GradScaler's scale, or
        both (:func:`per_triton.integrations.grad_scale` builds the callable). See
        :meth:`per_triton.PER.set_grad_scale`; the framework callbacks of
        :mod:`per_triton.integrations` call it themselves.
        """
        scale = check_grad_scale(scale)
        for per in self.layers.values():
            per.set_grad_scale(scale)

    def remove(self) -> None:
        """Take PER off the model: it behaves exactly as before :func:`per_triton.regularize`.

        Penalties pending from forwards before the removal are dropped with their
        autograd graphs: :meth:`penalty` returns 0 afterwards. Hooks that moved to
        another module of the model since (module fusion, ``fuse_modules_qat`` /
        ``prepare_qat`` with ``inplace=True``, which move a fused module's hooks to
        the fused module) are found and removed too. A copy of the model
        (``inplace=False``, the default there) is another model: use
        ``PERHandle.of(copy).remove()``.
        """
        for module, hook in self._entries:
            _remove_hook(module, hook)
            if isinstance(hook, PenaltyReset):
                hook.remove()
        self._entries.clear()
        if self._model is not None:
            for module, hook in _owned_hooks(self._model, list(self.layers.values())):
                _remove_hook(module, hook)
        for per in self.layers.values():
            per._pending = None

    def __enter__(self) -> PERHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"PERHandle({list(self.layers)})"
