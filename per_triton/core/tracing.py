"""Two registered ops that keep PER's state and gradient right under ``torch.export``.

``torch.export`` inlines an ``autograd.Function``'s forward and drops its backward
(Algorithm 1's added gradient would become a ``detach``), and it runs in-place ops
on tensors outside the module tree (a :func:`~per_triton.regularize` layer's call
counter) on the live tensor while tracing. Registered ops stay opaque in the
exported graph and keep their autograd formula there:

* ``per_triton::add_loss_gradient(h, loss) -> out``: ``out = h`` (a copy: a
  registered op may not return an alias of its input); backward sends the incoming
  gradient to ``h`` and a gradient of 1 into ``loss``, so ``d loss / d h`` is added
  to ``h``'s gradient (Algorithm 1).
* ``per_triton::advance_counter(counter)``: ``counter += 1`` in place, declared as a
  mutation: export records it in the graph without running it on the live tensor.

Eager code and ``torch.compile`` do not use them (:func:`exporting` is False there).
"""

from __future__ import annotations

import torch

__all__ = ["add_loss_gradient", "advance_counter", "exporting", "with_jvp"]


def exporting() -> bool:
    """True while ``torch.export`` traces (strict or not)."""
    return torch.compiler.is_exporting()


def with_jvp(function: type[torch.autograd.Function], jvp) -> type[torch.autograd.Function]:
    """``function`` with forward-mode AD (``jvp``) as a subclass, for eager code.

    Dynamo refuses an ``autograd.Function`` that defines ``jvp`` (seen with torch
    2.13), so compiled code keeps using ``function`` itself: call :func:`pick`.
    """
    return type(function.__name__, (function,), {"jvp": staticmethod(jvp)})


def pick(
    function: type[torch.autograd.Function], eager: type[torch.autograd.Function]
) -> type[torch.autograd.Function]:
    """``function`` under torch.compile, its forward-mode twin ``eager`` otherwise."""
    return function if torch.compiler.is_compiling() else eager


@torch.library.custom_op("per_triton::add_loss_gradient", mutates_args=())
def add_loss_gradient(h: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """A copy of ``h``; in backward ``loss`` receives a gradient of 1 (any shape of ``h``)."""
    return h.clone()


@add_loss_gradient.register_fake
def _add_loss_gradient_fake(h: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(h)


def _setup(ctx, inputs, output) -> None:
    _h, loss = inputs
    ctx.loss_dtype = loss.dtype
    ctx.loss_device = loss.device


def _backward(ctx, grad: torch.Tensor):
    return grad, torch.ones((), dtype=ctx.loss_dtype, device=ctx.loss_device)


add_loss_gradient.register_autograd(_backward, setup_context=_setup)


@torch.library.custom_op("per_triton::advance_counter", mutates_args=("counter",))
def advance_counter(counter: torch.Tensor) -> None:
    """``counter += 1`` in place (an int64 tensor)."""
    counter.add_(1)


@advance_counter.register_fake
def _advance_counter_fake(counter: torch.Tensor) -> None:
    return None
