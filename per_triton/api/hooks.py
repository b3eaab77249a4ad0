"""The hooks :func:`per_triton.regularize` puts on a model, and finding them again.

The hooks are module-level objects (:class:`PERHook`) holding their own
:class:`~per_triton.PER`, so a regularized model pickles (``torch.save(model)``)
and ``copy.deepcopy`` gives an independent copy: equally regularized, with PER
state of its own (:meth:`per_triton.PERHandle.of` finds it), untouched by the original
handle's :meth:`~per_triton.PERHandle.remove`.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from per_triton.api.module import PER
from per_triton.api.outputs import _apply_per

__all__ = ["PERHook", "PERPreHook", "PenaltyReset"]


class PERHook:
    """The forward hook :func:`per_triton.regularize` puts on a module: PER on its output.

    A module-level object, so a regularized model pickles, and ``copy.deepcopy`` of
    the model copies the hook with its own :class:`~per_triton.PER` (own state,
    own call counter).
    """

    def __init__(self, per: PER, recurrent: bool, samples: str = "auto") -> None:
        self.per = per
        self.recurrent = recurrent
        self.samples = samples

    def __setstate__(self, state: dict) -> None:  # hooks pickled before ``samples`` existed
        self.__dict__.update({"samples": "auto", **state})

    def __call__(self, module: nn.Module, _args: object, output: object) -> object:
        self.per.train(module.training)
        return _apply_per(self.per, output, self.samples, self.recurrent)

    def __repr__(self) -> str:
        return f"PERHook({self.per.extra_repr()})"


class PERPreHook(PERHook):
    """The forward pre-hook :func:`per_triton.regularize` puts on the dropout after a torch
    transformer layer's feed-forward activation: PER on the dropout's input, the
    activation's output (the activation itself is a function call, ``F.relu``)."""

    def __call__(self, module: nn.Module, args: tuple) -> tuple:  # type: ignore[override]
        self.per.train(module.training)
        return (_apply_per(self.per, args[0], self.samples, self.recurrent), *args[1:])

    def __repr__(self) -> str:
        return f"PERPreHook({self.per.extra_repr()})"


class PenaltyReset:
    """Forward pre-hook on the regularized model (``mode="loss"``): each forward pass of
    the model starts its layers' penalties afresh, so ``handle.penalty()`` covers the
    latest forward (every call of a layer within it) and a forward whose penalty was
    never taken leaves no stale graph behind.

    A model called several times inside one forward of an enclosing module keeps the
    terms of every call: they belong to one forward pass. The enclosing module gets a
    pre-hook of its own (removed with the handle) that marks its next forward.
    """

    def __init__(self, layers: list[PER]) -> None:
        self.layers = layers
        self._generation = 0  # forwards of enclosing modules seen
        self._last: int | None = None  # generation of the previous call
        self._enclosing: dict[int, RemovableHandle] = {}

    def __call__(self, module: nn.Module, _args: object) -> None:
        if not torch.compiler.is_compiling() and self._same_enclosing_forward():
            return
        for per in self.layers:
            per._pending = None

    def _bump(self, _module: nn.Module, _args: object) -> None:
        self._generation += 1

    def _same_enclosing_forward(self) -> bool:
        caller = sys._getframe(2)
        while caller is not None and caller.f_code.co_filename in _HOOK_FILES:
            caller = caller.f_back
        enclosing = None if caller is None else _module_of(caller)
        previous, self._last = self._last, None
        if enclosing is None:
            return False  # called from a loop, not from a module's forward
        if id(enclosing) not in self._enclosing:  # first seen: mark its next forwards
            self._enclosing[id(enclosing)] = enclosing.register_forward_pre_hook(self._bump)
            self._generation += 1
        self._last = self._generation
        return previous == self._last

    def remove(self) -> None:
        """Take the enclosing modules' pre-hooks off."""
        for hook in self._enclosing.values():
            hook.remove()
        self._enclosing.clear()


_HOOK_FILES = {__file__, nn.Module.__call__.__code__.co_filename}


def _module_of(frame: object) -> nn.Module | None:
    code = frame.f_code
    if code.co_argcount == 0:
        return None
    owner = frame.f_locals.get(code.co_varnames[0])
    return owner if isinstance(owner, nn.Module) else None


def _per_hooks(module: nn.Module) -> list[PERHook]:
    hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
    return [h for h in hooks if isinstance(h, PERHook)]


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


def _owned_hooks(model: nn.Module, layers: list[PER]) -> list[tuple[nn.Module, object]]:
    """The ``(module, hook)`` pairs of ``model`` whose hook runs one of ``layers``."""
    found = []
    for module in model.modules():
        for hook in (*module._forward_hooks.values(), *module._forward_pre_hooks.values()):
            runs = [hook.per] if isinstance(hook, PERHook) else getattr(hook, "layers", [])
            if isinstance(hook, (PERHook, PenaltyReset)) and any(
                a is b for a in runs for b in layers
            ):
                found.append((module, hook))
    return found
