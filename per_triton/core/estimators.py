"""The estimator registry: every way to evaluate the PER loss, and what computes it.

An estimator evaluates Eq. 5 (and, through autograd, Eq. 6) for activations ``h (b, *)``.
Each entry of :data:`ESTIMATORS` (an :class:`Estimator`) gives its name (the value of
``estimator=`` in :func:`per_triton.per_loss`, :class:`per_triton.PER` and
:func:`per_triton.regularize`), its label for people, whether it takes ``seed`` and
``num_slices``, the name the kernel benchmark files it under, and the callables those
entry points dispatch to. Device dispatch stays inside the ops, which register their
CPU and CUDA implementations themselves (:mod:`per_triton.core.ops`,
:mod:`per_triton.core.exact`).

``monte_carlo`` (the default): Algorithm 1 on ``num_slices`` random directions
(docs/design.md, "The random stream"), the fused ops ``per_triton::per_fwd`` /
``per_bwd``. ``exact``: the expectation over all directions (docs/design.md, "The exact
expectation"), no random numbers.

This module imports no torch: the callables import their ops on first call, so the
dashboard and the benchmark's provider list read names and labels without loading
torch. Adding an estimator: docs/contributing.md, "Adding an estimator".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_ESTIMATOR",
    "DEFAULT_NUM_SLICES",
    "ESTIMATORS",
    "Estimator",
    "check_estimator",
]

#: The paper's number of directions; estimators without slices refuse any other value.
DEFAULT_NUM_SLICES = 256

#: ``loss(h, num_slices, seed, reduction, precision)``: the differentiable 0-d loss of
#: ``h (b, *)`` (arguments already checked, ``seed`` by ``check_seed``: a Python int, a
#: one-element int64 tensor, whose device a seeded estimator still compares with ``h``'s,
#: or None).
LossFn = Callable[["torch.Tensor", int, "int | torch.Tensor | None", str, str], "torch.Tensor"]
#: ``layer(h, coeff, reduction)``: Algorithm 1 in one autograd node, ``(h', loss)`` with
#: ``h'`` equal to ``h``, ``coeff * dL/dh`` added to its gradient in backward, ``loss``
#: detached.
LayerFn = Callable[["torch.Tensor", float, str], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass(frozen=True)
class Estimator:
    """One estimator of the PER loss.

    Attributes:
        name: the value of ``estimator=`` (also a key of result files).
        label: its name for people (tables, error messages).
        seeded: draws random directions from ``seed``; when False the seed is checked,
            then ignored, and :class:`per_triton.PER` advances no call counter.
        sliced: ``num_slices`` means something; when False any value other than
            :data:`DEFAULT_NUM_SLICES` is refused (:func:`check_estimator`).
        provider: its provider name in the kernel benchmark (``bench/providers.py``).
        loss: the loss, see :data:`LossFn`; :func:`per_triton.per_loss` returns it.
        layer: a fused forward-with-gradient-injection for :class:`per_triton.PER` in
            ``mode="inject"`` (see :data:`LayerFn`), or None: the layer then injects the
            gradient of ``loss`` itself.
    """

    name: str
    label: str
    seeded: bool
    sliced: bool
    provider: str
    loss: LossFn
    layer: LayerFn | None = None


def _monte_carlo_loss(h, num_slices, seed, reduction, precision):
    """Eq. 5 through ``ops.per_fwd_autograd`` (fused kernels on CUDA, chunked torch on CPU)."""
    from per_triton.core import ops
    from per_triton.core._validation import checked_seed_tensor

    b = h.shape[0]
    flat = h.reshape(b, -1).contiguous()
    seed_t = checked_seed_tensor(seed, h.device)  # per_loss checked it (check_seed)
    loss_sum, _coeff = ops.per_fwd_autograd(flat, seed_t, num_slices, precision)
    return loss_sum / b if reduction == "mean" else loss_sum


def _exact_loss(h, num_slices, seed, reduction, precision):
    """:func:`per_triton.core.exact.exact_loss` (no directions: seed and slices unused)."""
    from per_triton.core import exact

    return exact.exact_loss(h, reduction)


def _exact_layer(h, coeff, reduction):
    """:func:`per_triton.core.exact.exact_layer`: the backward adds ``coeff * scale_i * h_i``."""
    from per_triton.core import exact

    return exact.exact_layer(h, coeff, reduction)


#: Every estimator by name, the default first.
ESTIMATORS: dict[str, Estimator] = {
    e.name: e
    for e in (
        Estimator("monte_carlo", "Monte Carlo", True, True, "fused", _monte_carlo_loss),
        Estimator("exact", "exact expectation", False, False, "exact", _exact_loss, _exact_layer),
    )
}
DEFAULT_ESTIMATOR = "monte_carlo"


def check_estimator(estimator: object, num_slices: object = DEFAULT_NUM_SLICES) -> str:
    """``estimator`` if it names an entry of :data:`ESTIMATORS`, else ``ValueError``.

    An estimator without slices (``sliced=False``) also refuses a ``num_slices`` other
    than :data:`DEFAULT_NUM_SLICES` with a ``ValueError`` naming both.
    """
    entry = ESTIMATORS.get(estimator) if isinstance(estimator, str) else None
    if entry is None:
        names = ", ".join(f"{e.name!r} ({e.label})" for e in ESTIMATORS.values())
        raise ValueError(f"estimator must be one of {names}; got {estimator!r}")
    if not entry.sliced and num_slices != DEFAULT_NUM_SLICES:
        raise ValueError(
            f"num_slices={num_slices!r} has no meaning with estimator={entry.name!r} "
            f"({entry.label}, which takes no slices); leave num_slices at its default"
        )
    return entry.name
