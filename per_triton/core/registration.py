"""One helper that registers a ``torch.library`` op with its fallbacks and picks among them.

:func:`register` takes an op's pieces (docs/design.md, "Registering an op"):

* ``cpu``: the CPU implementation; its type hints are the op's schema;
* ``cuda``: the CUDA implementation, which imports its Triton modules through
  :func:`triton_module` when called (:func:`lazy_implementation`), so importing an op
  never imports triton;
* ``fake``: shapes and dtypes only (meta and fake tensors, torch.compile, export);
* ``vmap``: the batching rule, ``vmap(op, info, in_dims, *args)``, with the op it batches;
* ``autograd``: the formula, a :class:`Formula` of ``setup_context``, ``backward``
  and ``jvp`` (``None`` for an op that is never differentiated).

It registers ``torch.library.custom_op(name)`` with all of them and builds the two
fallbacks that the registered op cannot stand in for: an ``autograd.Function`` twin
for ``torch.func`` transforms (which do not see a custom op's registered autograd)
and an eager-CPU twin that calls the CPU implementation without the custom-op
dispatch. The :class:`RegisteredOp` it returns is called like the op and picks one of
the three; its ``op`` is the registered op itself (``opcheck``, ``torch.ops``).

The private torch calls that registering and picking an op need are in this module
only (none in the op modules), each in a small named function that says why.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from per_triton.core.triton_support import require_triton

__all__ = [
    "Formula",
    "RegisteredOp",
    "lazy_implementation",
    "register",
    "triton_module",
    "vmap_per_slice",
]


# -- the private torch calls ---------------------------------------------------------
# Each exists, with this meaning, in torch's sources from before the 2.11 floor through
# 2.13; the tests run them on the installed torch (2.13).


def _functorch_transform_active() -> bool:
    """True inside a ``torch.func`` transform (``grad``, ``vmap``, ``jvp``, ...).

    A custom op's registered autograd is invisible to the transforms, so there the
    op must run through its ``autograd.Function`` twin; torch has no public query
    (``torch._C._are_functorch_transforms_active``).
    """
    return torch._C._are_functorch_transforms_active()


def _dispatch_mode_active() -> bool:
    """True while a Python dispatch mode is active (FakeTensorMode, make_fx's proxy
    mode, any ``TorchDispatchMode``): such a mode must see the op, not its CPU
    implementation (``torch.utils._python_dispatch._get_current_dispatch_mode``)."""
    return _get_current_dispatch_mode() is not None


# -- picking -------------------------------------------------------------------------


def _plain_eager_cpu(args: tuple) -> bool:
    """True when every tensor argument is a plain CPU tensor, outside torch.compile,
    tracing and dispatch modes: the CPU implementation may then be called directly."""
    for arg in args:
        if isinstance(arg, torch.Tensor) and (
            type(arg) is not torch.Tensor or arg.device.type != "cpu"
        ):
            return False
    return not torch.compiler.is_compiling() and not _dispatch_mode_active()


def _needs_autograd(args: tuple) -> bool:
    """True when the call must record its formula for a gradient. (Tangents of dual
    tensors flow through the CPU implementation's own torch ops.)"""
    return torch.is_grad_enabled() and any(
        isinstance(a, torch.Tensor) and a.requires_grad for a in args
    )


@dataclasses.dataclass(frozen=True, eq=False)
class RegisteredOp:
    """A registered op and its fallbacks; calling it runs the op, differentiable by its
    registered formula.

    Under a ``torch.func`` transform: the ``functorch`` twin. Plain eager CPU tensors
    (:func:`_plain_eager_cpu`): the ``cpu`` implementation itself, through the
    ``eager_cpu`` twin when a gradient is recorded. Otherwise
    (torch.compile, export, tracing, CUDA): ``op``. An op without a formula has no
    twins and takes ``op`` whenever a gradient is asked for.
    """

    name: str
    op: Any  # the torch.library CustomOpDef
    cpu: Callable[..., Any]
    functorch: type[torch.autograd.Function] | None
    eager_cpu: type[torch.autograd.Function] | None

    def __call__(self, *args: Any) -> Any:
        if _functorch_transform_active():
            return self.op(*args) if self.functorch is None else self.functorch.apply(*args)
        if _plain_eager_cpu(args):
            if not _needs_autograd(args):
                return self.cpu(*args)
            if self.eager_cpu is not None:
                return self.eager_cpu.apply(*args)
        return self.op(*args)


# -- building ------------------------------------------------------------------------


class Formula(NamedTuple):
    """An op's autograd formula, in the form ``torch.library`` and ``autograd.Function``
    take: ``setup_context(ctx, inputs, output)``, ``backward(ctx, *grads)`` and
    ``jvp(ctx, *tangents)`` (forward-mode AD, from what ``setup_context`` saved with
    ``ctx.save_for_forward``)."""

    setup_context: Callable[..., None]
    backward: Callable[..., Any]
    jvp: Callable[..., Any]


def _functorch_function(name: str, op, setup_context, backward, jvp) -> type:
    """An ``autograd.Function`` running ``op`` with its formula, for ``torch.func``:
    ``vmap`` batches it through the op's own rule (``generate_vmap_rule``)."""

    def forward(*args):
        return op(*args)

    attrs = {
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
        "jvp": staticmethod(jvp),
        "generate_vmap_rule": True,
    }
    return type(f"_{name}_function", (torch.autograd.Function,), attrs)


def _eager_cpu_function(name: str, cpu, setup_context, backward, jvp) -> type:
    """An ``autograd.Function`` calling the CPU implementation with the op's formula:
    the same values and gradients (double backward too, when the formula calls
    :class:`RegisteredOp` s) without the custom-op dispatch and its Python autograd
    wrapper (docs/design.md, "The CPU path").

    Old-style (``forward(ctx, ...)`` calls ``setup_context`` itself), so ``apply``
    binds no signature; such a Function is not functorch-aware and serves only
    outside transforms.
    """

    def forward(ctx, *args):
        output = cpu(*args)
        setup_context(ctx, args, output)
        return output

    attrs = {
        "forward": staticmethod(forward),
        "backward": staticmethod(backward),
        "jvp": staticmethod(jvp),
    }
    return type(f"_{name}_eager_cpu_function", (torch.autograd.Function,), attrs)


def register(
    name: str,
    cpu: Callable[..., Any],
    *,
    cuda: Callable[..., Any],
    fake: Callable[..., Any],
    vmap: Callable[..., Any],
    autograd: Formula | None = None,
    eager_cpu: type[torch.autograd.Function] | None = None,
) -> RegisteredOp:
    """Register ``per_triton::<name>`` with its pieces (module docstring) and its twins.

    Args:
        eager_cpu: an eager-CPU twin to use instead of the generic one (same
            contract: ``forward(ctx, *args)`` runs the CPU implementation and the
            formula's ``setup_context``; the same formula).

    Raises:
        ValueError: ``eager_cpu`` without ``autograd``.
    """
    if eager_cpu is not None and autograd is None:
        raise ValueError(f"{name}: an eager_cpu twin needs the op's autograd formula")
    op = torch.library.custom_op(f"per_triton::{name}", cpu, mutates_args=(), device_types="cpu")
    op.register_kernel("cuda", cuda)
    op.register_fake(fake)
    op.register_vmap(functools.partial(vmap, op))
    functorch = None
    if autograd is not None:
        op.register_autograd(autograd.backward, setup_context=autograd.setup_context)
        functorch = _functorch_function(name, op, *autograd)
        eager_cpu = eager_cpu or _eager_cpu_function(name, cpu, *autograd)
    return RegisteredOp(name, op, cpu, functorch, eager_cpu)


# -- shared pieces -------------------------------------------------------------------


@functools.cache
def triton_module(name: str) -> ModuleType:
    """Import the Triton-backed module ``name`` (for a CUDA implementation, at its call).

    Raises:
        ImportError: Triton is missing or older than the floor, with what to install
            (:func:`per_triton.core.triton_support.require_triton`).
    """
    require_triton()
    return importlib.import_module(name)


def lazy_implementation(module: str, name: str) -> Callable[..., Any]:
    """The function ``name`` of the Triton-backed ``module``, imported at its first call."""

    def implementation(*args: Any, **kwargs: Any) -> Any:
        return getattr(triton_module(module), name)(*args, **kwargs)

    implementation.__name__ = f"{module}.{name}"
    return implementation


def vmap_per_slice(op, info, in_dims, *args):
    """A ``vmap`` rule: ``op`` once per vmapped slice, outputs stacked along dim 0.

    Each slice is an independent call with its own arguments (a batched seed under
    ``randomness="different"`` gives each slice its own directions).
    """
    results = []
    for i in range(info.batch_size):
        sliced = [
            a.select(d, i).contiguous() if d is not None else a
            for a, d in zip(args, in_dims, strict=True)
        ]
        results.append(op(*sliced))
    if isinstance(results[0], tuple):
        return tuple(torch.stack(r) for r in zip(*results, strict=True)), (0,) * len(results[0])
    return torch.stack(results), 0
