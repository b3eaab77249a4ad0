"""Add PER after a model's activations with one call, and take it off again.

The hooks are module-level objects (:class:`PERHook`) holding their own
:class:`~per_triton.PER`, so a regularized model pickles (``torch.save(model)``)
and ``copy.deepcopy`` gives an independent copy: equally regularized, with PER
state of its own (:meth:`PERHandle.of` finds it), untouched by the original
handle's :meth:`~PERHandle.remove`.
"""

from __future__ import annotations

import difflib
import sys
import warnings
from collections import Counter
from collections.abc import Iterable

import torch
from torch import nn

from .module import PER, SeedSource

__all__ = ["regularize", "PERHandle", "PERHook", "PenaltyReset", "DEFAULT_LAYERS"]

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


class PERHook:
    """The forward hook :func:`regularize` puts on a module: PER on its output.

    A module-level object, so a regularized model pickles, and ``copy.deepcopy`` of
    the model copies the hook with its own :class:`~per_triton.PER` (own state,
    own call counter).
    """

    def __init__(self, per: PER, recurrent: bool) -> None:
        self.per = per
        self.recurrent = recurrent

    def __call__(self, module: nn.Module, _args: object, output: object) -> object:
        self.per.train(module.training)
        return _apply_per(self.per, output, self.recurrent)

    def __repr__(self) -> str:
        return f"PERHook({self.per.extra_repr()})"


class PenaltyReset:
    """Forward pre-hook on the regularized model (``mode="loss"``): each forward pass of
    the model starts its layers' penalties afresh, so ``handle.penalty()`` covers the
    latest forward (every call of a layer within it) and a forward whose penalty was
    never taken leaves no stale graph behind."""

    def __init__(self, layers: list[PER]) -> None:
        self.layers = layers

    def __call__(self, module: nn.Module, _args: object) -> None:
        for per in self.layers:
            per._pending = None


def _per_hooks(module: nn.Module) -> list[PERHook]:
    return [h for h in module._forward_hooks.values() if isinstance(h, PERHook)]


def _remove_hook(module: nn.Module, hook: object) -> None:
    """Remove ``hook`` from ``module`` (what ``RemovableHandle.remove`` does, found by identity)."""
    for hooks in (module._forward_hooks, module._forward_pre_hooks):
        for key, value in list(hooks.items()):
            if value is hook:
                del hooks[key]
                for extra in (
                    "_forward_hooks_with_kwargs",
                    "_forward_hooks_always_called",
                    "_forward_pre_hooks_with_kwargs",
                ):
                    getattr(module, extra, {}).pop(key, None)


class PERHandle:
    """What :func:`regularize` returns: the PER layers by module name, and their removal.

    ``layers``: ``{module name: PER}``. The handle belongs to the model it was made
    for; a deep copy of that model carries its own hooks, found with
    ``PERHandle.of(copy)``.
    """

    def __init__(self) -> None:
        self.layers: dict[str, PER] = {}
        self._entries: list[tuple[nn.Module, object]] = []

    @classmethod
    def of(cls, model: nn.Module) -> PERHandle:
        """The handle of the PER hooks already on ``model`` (e.g. a deep copy or a loaded model)."""
        handle = cls()
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

        Differentiable; covers the latest forward pass of the model (every call of
        a layer in it), then clears it (:meth:`per_triton.PER.penalty`): take it
        after each forward whose loss is backpropagated. Add it to the task loss *before*
        scaling it (``scaler.scale(task + handle.penalty())``) or dividing it for
        gradient accumulation: the PER share of the gradient is then right.

        Raises:
            RuntimeError if the model was regularized with ``mode="inject"``.
        """
        terms = [per.penalty() for per in self.layers.values()]
        if not terms:
            return torch.zeros(())
        return torch.stack([t.to(terms[0].device) for t in terms]).sum()

    def remove(self) -> None:
        """Take PER off the model; the model behaves exactly as before :func:`regularize`."""
        for module, hook in self._entries:
            _remove_hook(module, hook)
        self._entries.clear()

    def __enter__(self) -> PERHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"PERHandle({list(self.layers)})"


def _compiled_and_run(model: nn.Module) -> bool:
    """Whether torch.compile has already compiled ``model``'s forward (best effort).

    Looks for TorchDynamo cache entries on the code of the model's ``forward`` (or of
    the wrapper Dynamo uses for ``torch.nn`` containers); without Dynamo imported
    nothing can have been compiled.
    """
    if "torch._dynamo" not in sys.modules:
        return False
    try:
        from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list
        from torch._dynamo.external_utils import wrap_inline
    except ImportError:  # private API moved: say nothing rather than guess
        return False
    root = getattr(model, "_orig_mod", model)
    codes = [getattr(type(root).forward, "__code__", None)]
    if type(root).__module__.startswith("torch.nn"):
        codes.append(wrap_inline(lambda: None).__code__)
    return any(code is not None and _debug_get_cache_entry_list(code) for code in codes)


def _no_match_message(model: nn.Module, types: tuple, names: set[str]) -> str:
    """Why nothing matched, with the model's candidate modules (functional activations)."""
    modules = [(n, m) for n, m in model.named_modules() if n]
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    blocks = [(n, m) for n, m in modules if next(m.children(), None) is not None]
    blocks = [(n, m) for n, m in blocks if not isinstance(m, containers)]
    counts = Counter(type(m).__name__ for _, m in modules)
    text = (
        f"regularize found no module to regularize in {type(model).__name__} "
        f"(layers={tuple(t.__name__ for t in types)}, names={sorted(names)}). "
        "If its activations are functional calls (F.relu), regularize the outputs of "
        "modules instead, by type or by name"
    )
    if blocks:
        block_type = type(blocks[0][1])
        same = [n for n, m in blocks if type(m) is block_type]
        text += (
            f", e.g. layers=({block_type.__name__},) ({len(same)} modules: "
            f"{', '.join(same[:4])}{', ...' if len(same) > 4 else ''})"
        )
    types_text = ", ".join(f"{k} x{v}" for k, v in counts.most_common(12))
    return text + f". Module types in the model: {types_text or 'none'}."


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
    mode: str = "inject",
    seed: SeedSource = None,
) -> PERHandle:
    """Add PER (Algorithm 1) after the chosen modules of ``model`` with forward hooks.

    Modules are chosen by type (``layers``, default :data:`DEFAULT_LAYERS`: the usual
    activation modules and recurrent layers) or by name (``names``, as in
    ``model.named_modules()``); with both, a module is chosen if it matches either.
    Models whose activations are functional calls (``F.relu``) have no activation
    module: choose their blocks, e.g. ``layers=(BasicBlock,)``; the error raised when
    nothing matches lists the candidates.

    ``mode="inject"`` (default): the training loop needs no change, the PER gradient
    is added in the backward pass of the task loss, but it ignores any scaling of
    that loss (GradScaler, ``loss / k`` accumulation). ``mode="loss"``: add
    ``handle.penalty()`` to the task loss; right under every loss transform.

    Args:
        model: the network to regularize (not copied). Call before ``torch.compile``:
            hooks added to a model that was already compiled and run are not seen by
            the compiled code (a warning says so).
        coeff, num_slices, reduction, precision, estimator, mode: as in :class:`PER`
            (``estimator="exact"``: no random directions, ``num_slices`` and ``seed``
            ignored).
        layers: module types whose outputs get PER.
        names: module names whose outputs get PER.
        seed: as in :class:`PER`; each layer mixes its index in, so layers get
            different directions from one seed (:func:`per_triton.module.derive_seed`).

    Returns:
        A :class:`PERHandle`: ``losses()`` for logging, ``penalty()`` in
        ``mode="loss"``, ``remove()``; also a context manager.

    Raises:
        TypeError for a non-module model or bad ``layers``; ValueError if a name is
        not in the model or nothing matches; RuntimeError if a chosen module is
        already regularized (remove the earlier handle first).

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
        close = {n: difflib.get_close_matches(n, [k for k in modules if k], 3) for n in missing}
        hints = "; ".join(f"{n!r}: did you mean {c}?" for n, c in close.items() if c)
        raise ValueError(f"names not found in model: {missing}" + (f" ({hints})" if hints else ""))
    chosen = [
        n for n, m in modules.items() if n in wanted_names or (types and isinstance(m, types))
    ]
    if not chosen:
        raise ValueError(_no_match_message(model, types, wanted_names))
    again = [n or "<model>" for n in chosen if _per_hooks(modules[n])]
    if again:
        raise RuntimeError(
            f"regularize: {again} already carry PER from an earlier regularize() call; "
            "remove it first (handle.remove(), or PERHandle.of(model).remove())"
        )
    if _compiled_and_run(model):
        warnings.warn(
            "regularize: this model was already compiled (torch.compile) and run; its "
            "compiled code does not see hooks added now, so PER would be skipped until "
            "it recompiles. Call regularize() before torch.compile, or "
            "torch.compiler.reset() after it.",
            stacklevel=2,
        )
    handle = PERHandle()
    for index, name in enumerate(chosen):
        per = PER(
            coeff, num_slices, reduction, precision, estimator=estimator, mode=mode, seed=seed
        )
        per.seed_index = index
        per.train(model.training)
        hook = PERHook(per, isinstance(modules[name], nn.RNNBase))
        modules[name].register_forward_hook(hook)
        handle.layers[name or "<model>"] = per
        handle._entries.append((modules[name], hook))
    if mode == "loss":
        reset = PenaltyReset(list(handle.layers.values()))
        model.register_forward_pre_hook(reset)
        handle._entries.append((model, reset))
    return handle
