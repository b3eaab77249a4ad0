"""The public PER loss (Eq. 5, gradient Eq. 6), dispatched by estimator, then by device."""

from __future__ import annotations

import torch

from per_triton.core._validation import (
    check_activations,
    check_num_slices,
    check_precision,
    check_reduction,
    check_seed,
)
from per_triton.core.estimators import (
    DEFAULT_ESTIMATOR,
    DEFAULT_NUM_SLICES,
    ESTIMATORS,
    check_estimator,
)

__all__ = ["per_loss"]


def per_loss(
    h: torch.Tensor,
    num_slices: int = DEFAULT_NUM_SLICES,
    *,
    seed: int | torch.Tensor | None = None,
    reduction: str = "mean",
    precision: str = "tf32",
    estimator: str = DEFAULT_ESTIMATOR,
) -> torch.Tensor:
    """PER loss of activations ``h`` toward N(0, I) on ``num_slices`` random directions (Eq. 5).

    Each sample is flattened, ``h_i in R^d``; ``p_ik = <h_i, theta_k>`` and the loss is
    ``(1/b) * sum_i (1/s) * sum_k psi(p_ik)`` (``"sum"`` drops ``1/b``), with
    ``psi(p) = p*erf(p/sqrt2) + sqrt(2/pi)*exp(-p^2/2)``. Differentiable (Eq. 6).
    CUDA tensors run the fused Triton kernels; CPU tensors the chunked torch path.

    Args:
        h: activations ``(b, *)``, float16/bfloat16/float32/float64, any strides.
        num_slices: number of directions ``s >= 1`` (the paper uses 256); any integer
            type (``numpy.int64`` too).
        seed: ``None`` (drawn from torch's default generator: ``torch.manual_seed``
            makes runs reproducible), an int in ``[0, 2**63)``, or a ``(1,)`` int64
            tensor on ``h``'s device (best under torch.compile and CUDA graphs).
        reduction: ``"mean"`` or ``"sum"``.
        precision: ``"tf32"`` (default) or ``"ieee"``: float32 dot precision on CUDA.
        estimator: a name of :data:`per_triton.core.estimators.ESTIMATORS`:
            ``"monte_carlo"`` (default, the paper's Algorithm 1 on ``num_slices``
            random directions) or ``"exact"``: the expectation over all directions,
            ``(1/b) sum_i sqrt(2/pi) M(-1/2, d/2, -||h_i||^2/2)`` (:mod:`per_triton.core.exact`;
            docs/design.md, "The exact expectation"), one pass over ``h``, no random numbers. With
            ``"exact"``, ``seed`` (still type-checked) and ``precision`` are ignored
            and ``num_slices`` must stay at its default.

    Returns:
        0-d tensor: float64 for float64 input, float32 otherwise. NaN or Inf in
        ``h`` propagates to a non-finite loss. With ``"exact"`` the gradient of a
        sample holding NaN or Inf is NaN (its direction is undefined); other samples
        keep finite gradients.

    Raises:
        TypeError / ValueError naming the bad argument.

    Example:
        >>> h = torch.randn(128, 512, requires_grad=True)
        >>> loss = per_loss(h, 256, seed=0)
        >>> loss.backward()
    """
    check_activations(h, "h")
    num_slices = check_num_slices(num_slices)
    check_reduction(reduction)
    check_precision(precision)
    # checked here only, with every estimator (an unseeded one then ignores it); the
    # estimators take it as checked (numpy ints already Python ints)
    seed = check_seed(seed)
    entry = ESTIMATORS[check_estimator(estimator, num_slices)]
    return entry.loss(h, num_slices, seed, reduction, precision)
