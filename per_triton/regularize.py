"""Add PER after a model's activations with one call, and take it off again."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .module import PER

__all__ = ["regularize", "PERHandle", "DEFAULT_LAYERS"]

#: Module types whose outputs are regularized when neither ``layers`` nor ``names`` is given.
DEFAULT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.RNNBase,
)


def _apply_per(per: PER, output, recurrent: bool):
    """PER on a module's output (its first element for a tuple output).

    Outputs of recurrent layers (``nn.RNNBase``) are regularized per (time step,
    sample): ``(T, b, H)`` is read as ``T*b`` samples of dimension ``H``. Any other
    output ``(b, *)`` is flattened per sample (Eq. 1).
    """
    first = output[0] if isinstance(output, tuple) and output else output
    if isinstance(first, nn.utils.rnn.PackedSequence):
        out = first._replace(data=per(first.data))
    elif isinstance(first, torch.Tensor) and recurrent:
        out = per(first.reshape(-1, first.shape[-1])).view_as(first)
    elif isinstance(first, torch.Tensor):
        out = per(first)
    else:
        raise TypeError(f"regularize: cannot apply PER to a module output of type {type(output)}")
    return (out, *output[1:]) if isinstance(output, tuple) else out


class PERHandle:
    """What :func:`regularize` returns: the PER layers by module name, and their removal."""

    def __init__(self) -> None:
        self.layers: dict[str, PER] = {}
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    def losses(self) -> dict[str, torch.Tensor | None]:
        """Last PER loss of each regularized module (detached; ``None`` before the first step)."""
        return {name: per.last_loss for name, per in self.layers.items()}

    def remove(self) -> None:
        """Take PER off the model; the model behaves exactly as before :func:`regularize`."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def __enter__(self) -> PERHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"PERHandle({list(self.layers)})"


def regularize(
    model: nn.Module,
    coeff: float = 1e-4,
    num_slices: int = 256,
    *,
    layers: Iterable[type[nn.Module]] | None = None,
    names: Iterable[str] | None = None,
    reduction: str = "mean",
    precision: str = "tf32",
    estimator: str = "monte_carlo",
) -> PERHandle:
    """Add PER (Algorithm 1) after the chosen modules of ``model`` with forward hooks.

    The training loop needs no change: the PER gradient is added in the backward
    pass of the task loss. Modules are chosen by type (``layers``, default
    :data:`DEFAULT_LAYERS`: the usual activation modules and recurrent layers) or by
    name (``names``, as in ``model.named_modules()``); with both, a module is chosen
    if it matches either.

    Args:
        model: the network to regularize (not copied).
        coeff, num_slices, reduction, precision, estimator: as in :class:`PER`
            (``estimator="exact"``: no random directions, ``num_slices`` ignored).
        layers: module types whose outputs get PER.
        names: module names whose outputs get PER.

    Returns:
        A :class:`PERHandle`: ``handle.losses()`` for logging, ``handle.remove()``.

    Raises:
        ValueError if a name is not in the model or nothing matches.

    Example:
        >>> handle = regularize(model, coeff=1e-4)
        >>> loss_fn(model(x), y).backward()   # PER gradients included
        >>> handle.losses(); handle.remove()
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    wanted_names = set(names) if names is not None else set()
    types = tuple(layers) if layers is not None else (() if names is not None else DEFAULT_LAYERS)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise TypeError(f"layers must hold nn.Module subclasses, got {t!r}")
    modules = dict(model.named_modules())
    missing = sorted(wanted_names - modules.keys())
    if missing:
        raise ValueError(f"names not found in model: {missing}")
    chosen = [
        n for n, m in modules.items() if n in wanted_names or (types and isinstance(m, types))
    ]
    if not chosen:
        raise ValueError(
            "regularize found no module to regularize "
            f"(layers={types}, names={sorted(wanted_names)})"
        )
    handle = PERHandle()
    for name in chosen:
        per = PER(coeff, num_slices, reduction, precision, estimator=estimator)
        per.train(model.training)
        handle.layers[name or "<model>"] = per

        def hook(module, _args, output, _per=per):
            _per.train(module.training)
            return _apply_per(_per, output, isinstance(module, nn.RNNBase))

        handle._hooks.append(modules[name].register_forward_hook(hook))
    return handle
