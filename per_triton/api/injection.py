"""Algorithm 1's gradient injection for :class:`per_triton.PER` in ``mode="inject"``.

:func:`inject` returns ``h`` unchanged and, in backward, sends a gradient of 1 into a
loss computed from ``h``, so autograd adds ``d loss / d h`` to the gradient flowing
into ``h``: exactly Algorithm 1's ``g + coeff * dL/dh`` for ``loss = coeff * L``. An
estimator with a fused layer (:attr:`per_triton.core.estimators.Estimator.layer`)
does the same in one autograd node of its own instead.
"""

from __future__ import annotations

import torch

from per_triton.core import tracing

__all__ = ["inject", "plain"]


def plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` without torch.func wrappers, so a logged value outlives the transform."""
    if torch._C._are_functorch_transforms_active():
        while torch._C._functorch.is_functorch_wrapped_tensor(t):
            t = torch._C._functorch.get_unwrapped(t)
    return t


class _AddLossGradient(torch.autograd.Function):
    """Returns ``h`` unchanged; in backward sends a gradient of 1 into ``loss``.

    The output is ``h.detach()`` (same storage and version counter, no copy) rather
    than a view, so later in-place ops (``ReLU(inplace=True)``, in-place dropout,
    ``y += x``) are allowed exactly where they would be without PER. The separate
    ``setup_context`` makes it usable under ``torch.func`` transforms.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(h: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        return h.detach()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _h, loss = inputs
        ctx.loss_dtype = loss.dtype
        ctx.loss_device = loss.device

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, torch.ones((), dtype=ctx.loss_dtype, device=ctx.loss_device)


def _identity_jvp(ctx, d_h: torch.Tensor, *_rest) -> torch.Tensor:
    """The identity in the forward pass: the tangent of ``h`` passes through."""
    return d_h


_AddLossGradientJvp = tracing.with_jvp(_AddLossGradient, _identity_jvp)


def inject(h: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """``h`` (any shape), with ``d loss / d h`` added to its gradient in backward.

    ``loss`` is a 0-d tensor computed from ``h``. Under ``torch.export`` the registered
    op ``per_triton::add_loss_gradient`` (:mod:`per_triton.core.tracing`) stands in, as
    an ``autograd.Function``'s backward would be dropped from the exported graph.
    """
    if tracing.exporting():
        return tracing.add_loss_gradient(h, loss)
    return tracing.pick(_AddLossGradient, _AddLossGradientJvp).apply(h, loss)
