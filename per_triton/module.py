"""Algorithm 1 as an ``nn.Module``: identity forward, PER gradient added in backward."""

from __future__ import annotations

import torch
from torch import nn

from . import exact
from ._validation import check_positive_int, check_precision, check_reduction
from .loss import per_loss

__all__ = ["PER"]


class _AddLossGradient(torch.autograd.Function):
    """Returns ``h`` unchanged; in backward sends a gradient of 1 into ``loss``.

    ``loss`` was computed from ``h``, so autograd adds ``d loss / d h`` to the
    gradient flowing into ``h``: exactly Algorithm 1's ``g + coeff * dL/dh``.
    The output is ``h.detach()`` (same storage and version counter, no copy) rather
    than a view, so later in-place ops (``ReLU(inplace=True)``, in-place dropout,
    ``y += x``) are allowed exactly where they would be without PER.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        ctx.loss_dtype = loss.dtype
        ctx.loss_device = loss.device
        return h.detach()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, torch.ones((), dtype=ctx.loss_dtype, device=ctx.loss_device)


class PER(nn.Module):
    """PER regularizer layer (Algorithm 1).

    In training mode, with gradients enabled and ``h.requires_grad``, the forward
    pass computes the PER loss of ``h`` (Eq. 5) and returns ``h`` unchanged; the
    backward pass adds ``coeff * dL/dh`` (Eq. 6) to the incoming gradient. In eval
    mode or under ``torch.no_grad`` it is a plain identity. The last loss value is
    kept, detached, in ``last_loss`` for logging.

    Args:
        coeff: regularization strength (``lambda`` in the paper).
        num_slices: number of random directions ``s`` per call.
        reduction: ``"mean"`` (divide by the batch size) or ``"sum"`` (Algorithm 1
            as printed, without ``1/b``).
        precision: ``"tf32"`` or ``"ieee"`` for float32 dots on CUDA.
        estimator: ``"monte_carlo"`` (default, random directions) or ``"exact"``: the
            expectation over all directions (:mod:`per_triton.exact`); the backward adds
            ``coeff * scale_i * h_i`` to the incoming gradient in one pass. With
            ``"exact"``, ``num_slices`` must stay at its default and is ignored.

    Example:
        >>> net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), PER(1e-4), nn.Linear(256, 10))
        >>> net(torch.randn(32, 784)).sum().backward()
        >>> net[2].last_loss
    """

    def __init__(
        self,
        coeff: float = 1e-4,
        num_slices: int = 256,
        reduction: str = "mean",
        precision: str = "tf32",
        estimator: str = "monte_carlo",
    ) -> None:
        super().__init__()
        if isinstance(coeff, bool) or not isinstance(coeff, (int, float)):
            raise TypeError(f"coeff must be a float, got {type(coeff).__name__}")
        if not coeff >= 0:
            raise ValueError(f"coeff must be >= 0, got {coeff}")
        self.coeff = float(coeff)
        self.num_slices = check_positive_int(num_slices, "num_slices")
        self.reduction = check_reduction(reduction)
        self.precision = check_precision(precision)
        self.estimator = exact.check_estimator(estimator, num_slices)
        self.last_loss: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled() and h.requires_grad):
            return h
        if self.estimator == "exact":
            out, self.last_loss = exact.exact_layer(h, self.coeff, self.reduction)
            return out
        loss = per_loss(h, self.num_slices, reduction=self.reduction, precision=self.precision)
        self.last_loss = loss.detach()
        return _AddLossGradient.apply(h, loss * self.coeff)

    def extra_repr(self) -> str:
        if self.estimator == "exact":
            return f"coeff={self.coeff}, estimator='exact', reduction={self.reduction!r}"
        return f"coeff={self.coeff}, num_slices={self.num_slices}, reduction={self.reduction!r}"
