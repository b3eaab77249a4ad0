"""Algorithm 1 as an ``nn.Module``: identity forward, PER gradient added in backward.

Two ways to deliver the PER gradient (``mode``):

``"inject"`` (Algorithm 1 as printed): the backward pass adds ``coeff * dL/dh`` to
    the gradient arriving at ``h``. Nothing to change in the training loop, but the
    added term does not see what was done to the task loss: a loss scaled by ``S``
    (``torch.amp.GradScaler``, ``(S * loss).backward()`` then ``/ S``) or divided by
    ``k`` (gradient accumulation) leaves PER's share off by the factor ``S`` or ``k``.
``"loss"``: the layer records the differentiable ``coeff * L`` and
    :meth:`PER.penalty` returns it, for the caller to add to the task loss. The
    gradient is the same as ``"inject"`` for an unscaled loss, and it composes with
    every loss transform because it *is* part of the loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from per_triton.api.injection import inject, plain
from per_triton.api.layer_seeds import SeedStream, checkpoint_phase
from per_triton.api.loss import per_loss
from per_triton.api.penalty import PenaltyModule
from per_triton.core import tracing
from per_triton.core._validation import (
    check_mode,
    check_num_slices,
    check_precision,
    check_reduction,
    check_seed_source,
)
from per_triton.core.dtypes import accumulation_dtype
from per_triton.core.estimators import (
    DEFAULT_ESTIMATOR,
    DEFAULT_NUM_SLICES,
    ESTIMATORS,
    check_estimator,
)

__all__ = ["PER", "GradScale", "SeedSource", "check_grad_scale"]

SeedSource = int | torch.Tensor | Callable[[], "int | torch.Tensor"] | None
#: A factor on the injected gradient: a number, or a callable read at every call
#: (returning a number or a 0-d / one-element tensor, e.g. a GradScaler's scale).
GradScale = float | Callable[[], "float | torch.Tensor"]


def check_grad_scale(scale: object) -> GradScale:
    """``scale`` of :meth:`PER.set_grad_scale`: a positive finite number or a callable."""
    if callable(scale):
        return scale  # type: ignore[return-value]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(
            f"scale must be a positive number or a callable returning one, got {scale!r}"
        )
    if not (0 < scale < float("inf")):
        raise ValueError(f"scale must be positive and finite, got {scale!r}")
    return float(scale)


class PER(SeedStream, PenaltyModule):
    """PER regularizer layer (Algorithm 1).

    In training mode, with gradients enabled and ``h.requires_grad``, the forward
    pass computes the PER loss of ``h`` (Eq. 5) and returns ``h`` unchanged; the PER
    gradient ``coeff * dL/dh`` (Eq. 6) reaches ``h`` in backward, as chosen by
    ``mode``. In eval mode or under ``torch.no_grad`` it is a plain identity, and an
    empty batch (``b = 0``) passes through with a loss of 0. The last loss value is
    kept, detached, in ``last_loss`` for logging.

    Args:
        coeff: regularization strength (``lambda`` in the paper).
        num_slices: number of random directions ``s`` per call.
        reduction: ``"mean"`` (divide by the batch size) or ``"sum"`` (Algorithm 1
            as printed, without ``1/b``).
        precision: ``"tf32"`` or ``"ieee"`` for float32 dots on CUDA.
        estimator: a name of :data:`per_triton.core.estimators.ESTIMATORS`:
            ``"monte_carlo"`` (default, random directions) or ``"exact"``: the
            expectation over all directions (:mod:`per_triton.core.exact`); with
            ``mode="inject"`` the backward adds ``coeff * scale_i * h_i`` to the incoming
            gradient in one pass, with ``mode="loss"`` :meth:`penalty` holds
            ``coeff * exact loss``. With ``"exact"``, ``num_slices`` must stay at its
            default and ``seed`` is ignored (no random numbers are drawn); the exact
            path has no second derivative (double backward raises).
        mode: ``"inject"`` (default): the backward pass adds ``coeff * dL/dh``,
            unaware of any scaling of the task loss (GradScaler, ``loss / k``).
            ``"loss"``: ``coeff * L`` is recorded; add :meth:`penalty` to the task
            loss before any scaling (right under AMP and gradient accumulation).
        seed: directions of each call. ``None``: PER's own stream, separate from
            torch's generator (so enabling PER, even with ``coeff=0``, changes no
            dropout mask or data order): a base read without drawing from the
            generator's state when the layer is built
            (:func:`~per_triton.api.layer_seeds.stream_base`, reproducible under
            ``torch.manual_seed``), then a one-element int64
            tensor on the activations' device incremented at every call (no host
            sync, no recompile under torch.compile). An int: a base seed, new
            directions at every call, the same on every process making the same
            calls (DDP without communication); the calls are counted in the same
            int64 buffer on the device, so no recompile under torch.compile either
            (:attr:`calls` reads it). A one-element int64 tensor: read at
            every call (change it in place between steps; no recompile under
            torch.compile). A callable returning an int or a tensor: called at
            every call (a per-step source such as
            :class:`per_triton.api.distributed.StepSeed`; a lambda works but does not
            pickle with the model). See :func:`per_triton.api.layer_seeds.derive_seed`.

    Raises:
        TypeError / ValueError naming the bad argument.

    Example:
        >>> net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), PER(1e-4), nn.Linear(256, 10))
        >>> net(torch.randn(32, 784)).sum().backward()
        >>> net[2].last_loss
    """

    def __init__(
        self,
        coeff: float = 1e-4,
        num_slices: int = DEFAULT_NUM_SLICES,
        reduction: str = "mean",
        precision: str = "tf32",
        estimator: str = DEFAULT_ESTIMATOR,
        *,
        mode: str = "inject",
        seed: SeedSource = None,
    ) -> None:
        super().__init__()
        if isinstance(coeff, bool) or not isinstance(coeff, (int, float)):
            raise TypeError(f"coeff must be a float, got {type(coeff).__name__}")
        if not coeff >= 0:
            raise ValueError(f"coeff must be >= 0, got {coeff}")
        self.coeff = float(coeff)
        self.num_slices = check_num_slices(num_slices)
        self.reduction = check_reduction(reduction)
        self.precision = check_precision(precision)
        self.estimator = check_estimator(estimator, num_slices)
        self.mode = check_mode(mode)
        self.seed = check_seed_source(seed)
        self.last_loss: torch.Tensor | None = None
        # mode="inject": factor on the injected gradient (see set_grad_scale)
        self.grad_scale: GradScale = 1.0
        self._init_stream()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled() and h.requires_grad):
            return h
        if h.dim() > 0 and h.numel() == 0:  # empty batch: nothing to regularize
            self.last_loss = torch.zeros((), dtype=accumulation_dtype(h.dtype), device=h.device)
            return h
        entry = ESTIMATORS[self.estimator]
        exporting = tracing.exporting()
        scale = self._injection_scale()
        fused = entry.layer is not None and self.mode == "inject"
        if fused and not exporting and not torch.is_tensor(scale):
            out, loss = entry.layer(h, self.coeff * scale, self.reduction)
            self.last_loss = plain(loss)
            return out
        phase = checkpoint_phase()
        # an unseeded estimator draws no directions: no seed, no counter step
        seed = self.next_seed(h.device, phase) if entry.seeded else None
        loss = per_loss(
            h,
            self.num_slices,
            seed=seed,
            reduction=self.reduction,
            precision=self.precision,
            estimator=self.estimator,
        )
        # an exported graph's values never reach Python: keep no FakeTensor
        if not exporting and (phase is None or phase[0] == "forward"):
            self.last_loss = plain(loss.detach())
        term = loss * self.coeff
        if self.mode == "loss":
            if phase is None or phase[0] == "forward":  # a recomputation was counted already
                self.record(term)
            return h
        if torch.is_tensor(scale) or scale != 1.0:
            term = term * (scale.reshape(()) if torch.is_tensor(scale) else scale)
        return inject(h, term)

    def _injection_scale(self) -> float | torch.Tensor:
        """The factor on the injected gradient now (1 in ``mode="loss"``)."""
        if self.mode == "loss":
            return 1.0
        scale = self.grad_scale() if callable(self.grad_scale) else self.grad_scale
        return scale if torch.is_tensor(scale) else float(scale)

    def set_grad_scale(self, scale: GradScale) -> None:
        """Multiply the injected gradient (``mode="inject"``) by ``scale``.

        The injected ``coeff * dL/dh`` does not pass through the task loss, so it
        misses whatever the loop does to that loss. Give it the same factor: ``1/k``
        when the loss is divided by ``k`` for gradient accumulation, a
        ``torch.amp.GradScaler``'s scale (a callable, read at every call) when the
        loss is scaled, or their product (:func:`per_triton.integrations.grad_scale`).
        No effect in ``mode="loss"``, whose penalty is part of the loss.

        Args:
            scale: a positive number, or a callable returning one (a float or a
                one-element tensor) at every training call.

        Raises:
            TypeError / ValueError naming ``scale`` for anything else.
        """
        self.grad_scale = check_grad_scale(scale)

    def penalty(self) -> torch.Tensor:
        """``coeff * L`` summed over the calls since the last ``penalty()`` (``mode="loss"``).

        Returns the sum and clears it, so each forward pass is counted once: call it
        once per step; a second call returns 0. To log it, keep the returned tensor
        (log ``p.detach()`` of ``p = per.penalty()``) rather than calling
        ``penalty()`` again. Differentiable; add it to the task loss before scaling
        or dividing it. Until it is taken, the terms keep their autograd graph alive.

        Returns:
            0-d tensor (float32, or float64 for float64 activations); 0 when no
            training call happened since the last ``penalty()``.

        Raises:
            RuntimeError in ``mode="inject"``, whose gradient goes in by itself.
        """
        if self.mode != "loss":
            raise RuntimeError("penalty() needs mode='loss' (mode='inject' adds the gradient)")
        return super().penalty()

    def extra_repr(self) -> str:
        if self.estimator == DEFAULT_ESTIMATOR:
            text = f"coeff={self.coeff}, num_slices={self.num_slices}, reduction={self.reduction!r}"
        else:
            slices = f", num_slices={self.num_slices}" if ESTIMATORS[self.estimator].sliced else ""
            text = f"coeff={self.coeff}, estimator={self.estimator!r}{slices}"
            text += f", reduction={self.reduction!r}"
        text += f", mode={self.mode!r}" if self.mode != "inject" else ""
        return text + (f", seed={self.seed!r}" if self.seed is not None else "")
