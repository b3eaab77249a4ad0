"""The exact estimator's registered ops and its PER-layer autograd Function.

docs/design.md, "Exact estimator ops":

* ``per_triton::exact_fwd(h (b, d)) -> (loss_sum, scale)``: a 0-d tensor and ``(b,)``,
  ``loss_sum = sum_i sqrt(2/pi) M(-1/2, d/2, -r_i^2/2)`` (Eq. 5 in expectation,
  without ``1/b``) and ``scale_i = sqrt(2/pi)/d * M(1/2, d/2+1, -r_i^2/2)`` (Eq. 6 in
  expectation is ``scale_i * h_i``), in the accumulation dtype
  (:func:`per_triton.core.dtypes.accumulation_dtype`).
* ``per_triton::scale_rows(h, scale, grad_in) -> grad_in + scale[:, None] * h`` in
  ``h``'s dtype (``grad_in`` may be None); never differentiated.

Both are registered by :func:`per_triton.core.registration.register`: CPU torch ops
(the quadratures of :mod:`per_triton.core.exact`), CUDA Triton kernels
(:mod:`per_triton.kernels.per_exact`, imported on the first CUDA call), fake
implementations and ``vmap`` rules. ``exact_fwd``'s formula is first order only:
a gradient built with ``create_graph=True`` is tied to its inputs by
:class:`_NoSecondDerivative`, which raises when differentiated (the second
derivative needs ``M(1/2, d/2 + 2, .)``, which is not evaluated).
"""

from __future__ import annotations

import torch

from per_triton.core.dtypes import accumulation_dtype
from per_triton.core.registration import (
    Formula,
    lazy_implementation,
    register,
    triton_module,
    vmap_per_slice,
)
from per_triton.core.tracing import pick, with_jvp

__all__ = ["EXACT_FWD", "SCALE_ROWS", "exact_fwd", "exact_layer_pass", "scale_rows"]

_KERNELS = "per_triton.kernels.per_exact"


# -- exact_fwd -----------------------------------------------------------------------


def _exact_fwd_cpu(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU: row norms in the accumulation dtype, the 1F1 values in float64, cast back."""
    # the quadratures; per_triton.core.exact imports this module for its entry points
    from per_triton.core.exact import exact_terms

    acc = accumulation_dtype(h.dtype)
    sq = torch.linalg.vector_norm(h, dim=1, dtype=acc).square()
    terms, scale = exact_terms(sq, h.shape[1])
    return terms.sum().to(acc), scale.to(acc)


def _exact_fwd_cuda(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from per_triton.core.exact import SWITCH_K, node_table  # as in _exact_fwd_cpu

    return triton_module(_KERNELS).exact_fwd(h, node_table(h.device), SWITCH_K)


def _exact_fwd_fake(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    acc = accumulation_dtype(h.dtype)
    return h.new_empty((), dtype=acc), h.new_empty((h.shape[0],), dtype=acc)


def _exact_fwd_setup_context(ctx, inputs, output) -> None:
    (h,) = inputs
    _loss_sum, scale = output
    ctx.save_for_backward(h, scale)
    ctx.save_for_forward(h, scale)
    ctx.mark_non_differentiable(scale)


def _exact_fwd_backward(ctx, grad_loss: torch.Tensor, _grad_scale: torch.Tensor | None):
    """``grad_loss * scale_i * h_i`` (first order: see :class:`_NoSecondDerivative`)."""
    h, scale = ctx.saved_tensors
    with torch.no_grad():
        out = SCALE_ROWS(h, scale * grad_loss.to(scale.dtype), None)
    return _first_derivative(out, h, grad_loss)


def _exact_fwd_jvp(ctx, d_h: torch.Tensor, *_rest):
    """``d loss_sum = sum_i scale_i <h_i, dh_i>`` (the gradient is ``scale_i h_i``)."""
    h, scale = ctx.saved_tensors
    dots = (h.to(scale.dtype) * d_h.to(scale.dtype)).sum(1)
    return (scale * dots).sum(), None


# -- scale_rows ----------------------------------------------------------------------


def _scale_rows_cpu(
    h: torch.Tensor, scale: torch.Tensor, grad_in: torch.Tensor | None
) -> torch.Tensor:
    """``grad_in + scale[:, None] * h`` (``grad_in`` may be None), in ``h``'s dtype, ``(b, d)``."""
    prod = h * scale.to(accumulation_dtype(h.dtype))[:, None]
    out = prod if grad_in is None else prod.add_(grad_in)
    return out.to(h.dtype)


def _scale_rows_fake(
    h: torch.Tensor, scale: torch.Tensor, grad_in: torch.Tensor | None
) -> torch.Tensor:
    return torch.empty_like(h, memory_format=torch.contiguous_format)


def _batched_first(x: torch.Tensor, dim: int | None, size: int) -> torch.Tensor:
    return x.movedim(dim, 0) if dim is not None else x.expand(size, *x.shape)


def _scale_rows_vmap(op, info, in_dims, h, scale, grad_in):
    """Row-wise: the slices' rows at once."""
    size = info.batch_size
    hb = _batched_first(h, in_dims[0], size)
    rows, width = hb.shape[1], hb.shape[2]
    flat_scale = _batched_first(scale, in_dims[1], size).reshape(size * rows)
    flat_in = None
    if grad_in is not None:
        flat_in = _batched_first(grad_in, in_dims[2], size).reshape(size * rows, width)
    out = op(
        hb.reshape(size * rows, width).contiguous(),
        flat_scale.contiguous(),
        None if flat_in is None else flat_in.contiguous(),
    )
    return out.view(size, rows, width), 0


# -- first order only ----------------------------------------------------------------


class _NoSecondDerivative(torch.autograd.Function):
    """Identity on a first derivative of the exact estimator; differentiating it raises."""

    generate_vmap_rule = True

    @staticmethod
    def forward(out: torch.Tensor, *_deps: torch.Tensor) -> torch.Tensor:
        return out.view_as(out)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, *_grads):
        raise RuntimeError(
            "estimator='exact' has no second derivative (double backward, create_graph=True "
            "through a gradient of the exact PER loss); use estimator='monte_carlo' there"
        )


def _pass_through_jvp(ctx, d_first: torch.Tensor | None, *_rest):
    """Identity forward (:class:`_NoSecondDerivative`): the tangent passes through."""
    return d_first


# Forward-mode twin for eager code (Dynamo refuses a Function with ``jvp``).
_NoSecondDerivativeJvp = with_jvp(_NoSecondDerivative, _pass_through_jvp)


def _first_derivative(out: torch.Tensor, *deps: torch.Tensor) -> torch.Tensor:
    """``out``, tied to ``deps`` by :class:`_NoSecondDerivative` when a graph is being built."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in deps):
        return pick(_NoSecondDerivative, _NoSecondDerivativeJvp).apply(out, *deps)
    return out


# -- the PER layer -------------------------------------------------------------------


class _ExactLayer(torch.autograd.Function):
    """Algorithm 1 with the exact gradient: identity forward, ``g + coeff * dL/dh`` backward.

    ``apply(h, coeff, inv_b) -> (h copy, loss, scale)``. The backward is one fused
    pass: ``g + (coeff/b) * scale_i * h_i`` (first order only: differentiating it
    raises). Usable under ``torch.func`` transforms (separate ``setup_context``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(h: torch.Tensor, coeff: float, inv_b: float):
        flat = h.detach().reshape(h.shape[0], -1)
        loss_sum, scale = exact_fwd(flat.contiguous())
        # a copy, not h.detach(): backward reads h, so an in-place op on the output
        # (h += x) must not reach it
        return h.clone(), loss_sum * inv_b, scale * (coeff * inv_b)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        h, _coeff, _inv_b = inputs
        _out, loss, scale = output
        ctx.save_for_backward(h, scale)
        ctx.mark_non_differentiable(loss, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_loss, _grad_scale):
        h, scale = ctx.saved_tensors
        b = h.shape[0]
        with torch.no_grad():
            flat = h.reshape(b, -1).contiguous()
            out = SCALE_ROWS(flat, scale, grad.reshape(b, -1).contiguous()).view(h.shape)
        return _first_derivative(out, h, grad), None, None


def _layer_jvp(ctx, d_h: torch.Tensor, _d_coeff, _d_inv_b):
    """The layer is the identity in the forward pass: the tangent passes through."""
    return d_h, None, None


_ExactLayerJvp = with_jvp(_ExactLayer, _layer_jvp)


def exact_layer_pass(
    h: torch.Tensor, coeff: float, inv_b: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(copy of h, loss * inv_b)`` through :class:`_ExactLayer` (its forward-mode twin
    in eager code), whose backward adds ``coeff * inv_b * scale_i * h_i``."""
    out, loss, _scale = pick(_ExactLayer, _ExactLayerJvp).apply(h, coeff, inv_b)
    return out, loss


# -- registration --------------------------------------------------------------------

EXACT_FWD = register(
    "exact_fwd",
    _exact_fwd_cpu,
    cuda=_exact_fwd_cuda,
    fake=_exact_fwd_fake,
    vmap=vmap_per_slice,
    autograd=Formula(_exact_fwd_setup_context, _exact_fwd_backward, _exact_fwd_jvp),
)
SCALE_ROWS = register(
    "scale_rows",
    _scale_rows_cpu,
    cuda=lazy_implementation(_KERNELS, "scale_rows"),
    fake=_scale_rows_fake,
    vmap=_scale_rows_vmap,
)
exact_fwd, scale_rows = EXACT_FWD.op, SCALE_ROWS.op
