"""PER as registered torch.library ops, so torch.compile sees it without a graph break.

``per_triton::per_fwd``, ``per_triton::per_bwd`` and ``per_triton::per_proj`` follow
docs/design.md, "Registered ops":

* ``per_fwd(h (b, d), seed (1,) int64, num_slices, precision) -> (loss_sum, coeff)``
  with ``loss_sum = sum_i (1/s) sum_k psi(p_ik)`` (Eq. 5 without ``1/b``) and
  ``coeff[i, k] = erf(p_ik/sqrt2) / (s * ||v_k||)`` (what Eq. 6 needs).
* ``per_bwd(coeff, seed, dim, out_dtype, precision) -> grad (b, dim)`` with
  ``grad = coeff @ V`` on the regenerated unnormalised directions (Eq. 6).
* ``per_proj(x (b, d), seed, num_slices) -> (x @ V^T (b, s), ||v_k|| (s,))``: the
  adjoint of ``per_bwd``, used by the second derivatives only.

Every op is registered here, where it is defined, by
:func:`per_triton.core.registration.register`, for both device kinds: the CPU path
(:mod:`per_triton.core.cpu_path`) and the fused Triton kernels for CUDA tensors
(:mod:`per_triton.core.cuda_ops`, imported on the first CUDA call, so importing this
module never imports triton and the CUDA kernels are there whatever the import
order). Each op has a fake implementation (shapes and dtypes only) and an autograd
formula; ``per_bwd`` and ``per_proj`` are linear and each other's adjoint, and
``per_fwd``'s formula also takes the gradient of ``coeff``, so double backward
(a gradient penalty through a PER network) and ``torch.func`` work: with
``p = u / ||v||``, ``d coeff_ik / d h_i = sqrt(2/pi) exp(-p_ik^2/2) v_k / (s ||v_k||^2)``
(``d erf(p/sqrt2)/dp = sqrt(2/pi) exp(-p^2/2)``).
"""

from __future__ import annotations

import math

import torch

from per_triton.core import cpu_path
from per_triton.core.dtypes import accumulation_dtype
from per_triton.core.registration import (
    Formula,
    RegisteredOp,
    lazy_implementation,
    register,
    vmap_per_slice,
)

__all__ = ["per_fwd", "per_bwd", "per_proj", "per_fwd_autograd"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


#: the CUDA implementations, imported (with triton) on the first CUDA call
_CUDA_OPS = "per_triton.core.cuda_ops"


# -- per_fwd -------------------------------------------------------------------------


def _per_fwd_cpu(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU forward: chunked projections, loss terms and backward coefficients."""
    return cpu_path.forward(h, int(seed.item()), num_slices)


def _per_fwd_fake(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    acc = accumulation_dtype(h.dtype)
    return h.new_empty((), dtype=acc), h.new_empty((h.shape[0], num_slices), dtype=acc)


# -- per_bwd -------------------------------------------------------------------------


def _per_bwd_cpu(
    coeff: torch.Tensor, seed: torch.Tensor, dim: int, out_dtype: torch.dtype, precision: str
) -> torch.Tensor:
    """CPU backward: regenerate the directions chunk by chunk and form ``coeff @ V``."""
    return cpu_path.backward(coeff, int(seed.item()), dim, out_dtype)


def _per_bwd_fake(
    coeff: torch.Tensor, seed: torch.Tensor, dim: int, out_dtype: torch.dtype, precision: str
) -> torch.Tensor:
    return coeff.new_empty((coeff.shape[0], dim), dtype=out_dtype)


# -- per_proj ------------------------------------------------------------------------


def _per_proj_cpu(
    x: torch.Tensor, seed: torch.Tensor, num_slices: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU: unnormalised projections ``x @ V^T`` ``(b, s)`` and ``||v_k||`` ``(s,)``."""
    return cpu_path.projections(x, int(seed.item()), num_slices)


def _per_proj_fake(
    x: torch.Tensor, seed: torch.Tensor, num_slices: int
) -> tuple[torch.Tensor, torch.Tensor]:
    acc = accumulation_dtype(x.dtype)
    return x.new_empty((x.shape[0], num_slices), dtype=acc), x.new_empty((num_slices,), dtype=acc)


# -- autograd ------------------------------------------------------------------------


def _fwd_setup_context(ctx, inputs, output) -> None:
    h, seed, _num_slices, precision = inputs
    _loss_sum, coeff = output
    ctx.save_for_backward(coeff, seed)
    ctx.save_for_forward(coeff, seed)
    ctx.dim = h.shape[1]
    ctx.out_dtype = h.dtype
    ctx.precision = precision
    ctx.set_materialize_grads(False)  # grad_coeff is None unless coeff is differentiated


def _coeff_derivative(coeff: torch.Tensor, seed: torch.Tensor, dim: int) -> torch.Tensor:
    """``d coeff_ik / d u_ik = sqrt(2/pi) exp(-p_ik^2/2) / (s ||v_k||^2)`` for ``u = h V^T``.

    ``p`` is recovered from ``coeff`` itself, ``erf(p/sqrt2) = s ||v_k|| coeff_ik``
    (``coeff`` is saved anyway; ``h`` may have been modified in place since).
    Where float rounding saturates ``erf`` the derivative is 0, its limit.
    """
    s = coeff.shape[1]
    _, norm = _PROJ(coeff.new_zeros((0, dim)), seed, s)  # ||v_k|| only
    norm = norm.to(coeff.dtype)
    erf_p = (coeff.detach() * (s * norm)).clamp(-1.0, 1.0)
    return _SQRT_2_OVER_PI * torch.exp(-torch.erfinv(erf_p).square()) / (s * norm.square())


def _fwd_backward(ctx, grad_loss_sum: torch.Tensor | None, grad_coeff: torch.Tensor | None):
    coeff, seed = ctx.saved_tensors
    scaled = None
    if grad_loss_sum is not None:
        scaled = coeff * grad_loss_sum.to(coeff.dtype)
    if grad_coeff is not None:  # only when coeff itself is differentiated (double backward)
        extra = grad_coeff.to(coeff.dtype) * _coeff_derivative(coeff, seed, ctx.dim)
        scaled = extra if scaled is None else scaled + extra
    if scaled is None:
        return None, None, None, None
    grad_h = _BWD(scaled, seed, ctx.dim, ctx.out_dtype, ctx.precision)
    return grad_h, None, None, None


def _bwd_setup_context(ctx, inputs, output) -> None:
    coeff, seed, dim, out_dtype, precision = inputs
    ctx.save_for_backward(seed)
    ctx.save_for_forward(seed)
    ctx.dim, ctx.out_dtype, ctx.precision = dim, out_dtype, precision
    ctx.num_slices = coeff.shape[1]
    ctx.coeff_dtype = coeff.dtype


def _bwd_backward(ctx, grad: torch.Tensor):
    (seed,) = ctx.saved_tensors
    grad_coeff, _norm = _PROJ(grad.contiguous(), seed, ctx.num_slices)  # G V^T
    return grad_coeff.to(ctx.coeff_dtype), None, None, None, None


def _proj_setup_context(ctx, inputs, output) -> None:
    x, seed, num_slices = inputs
    ctx.save_for_backward(seed)
    ctx.save_for_forward(seed)
    ctx.num_slices = num_slices
    ctx.dim = x.shape[1]
    ctx.x_dtype = x.dtype
    ctx.set_materialize_grads(False)


def _proj_backward(ctx, grad_proj: torch.Tensor | None, _grad_norm: torch.Tensor | None):
    if grad_proj is None:  # the norms do not depend on x
        return None, None, None
    (seed,) = ctx.saved_tensors
    grad_x = _BWD(grad_proj.contiguous(), seed, ctx.dim, ctx.x_dtype, "ieee")
    return grad_x, None, None


# -- forward-mode AD (jvp) -----------------------------------------------------------


def _fwd_jvp(ctx, dh: torch.Tensor | None, *_rest):
    """Tangents of ``(loss_sum, coeff)`` along ``dh``, with ``du = dh V^T`` (unnormalised).

    ``d loss_sum = sum_ik erf(p_ik/sqrt2) <dh_i, theta_k> / s = sum_ik coeff_ik du_ik``;
    ``d coeff_ik = sqrt(2/pi) exp(-p_ik^2/2) / (s ||v_k||^2) * du_ik``.
    """
    coeff, seed = ctx.saved_tensors
    du, _norm = _PROJ(dh.contiguous(), seed, coeff.shape[1])
    du = du.to(coeff.dtype)
    d_loss = (coeff * du).sum()
    return d_loss, _coeff_derivative(coeff, seed, ctx.dim) * du


def _bwd_jvp(ctx, d_coeff: torch.Tensor | None, *_rest):
    """``per_bwd`` is linear in ``coeff``: its tangent is ``per_bwd`` of the tangent."""
    (seed,) = ctx.saved_tensors
    return _BWD(d_coeff.contiguous(), seed, ctx.dim, ctx.out_dtype, ctx.precision)


def _proj_jvp(ctx, dx: torch.Tensor | None, *_rest):
    """``per_proj`` is linear in ``x``; the norms do not depend on it (tangent 0)."""
    (seed,) = ctx.saved_tensors
    d_proj, norm = _PROJ(dx.contiguous(), seed, ctx.num_slices)
    return d_proj, torch.zeros_like(norm)


# -- vmap ----------------------------------------------------------------------------


def _rows_vmap(op, info, in_dims, x, seed, *rest):
    """``vmap`` of a row-wise op (``per_bwd``, ``per_proj``): the slices' rows at once
    when they share one seed, slice by slice otherwise. Unbatched outputs keep no
    vmapped dim."""
    if in_dims[1] is not None:
        return vmap_per_slice(op, info, in_dims, x, seed, *rest)
    xb = x.movedim(in_dims[0], 0) if in_dims[0] is not None else x.expand(info.batch_size, *x.shape)
    size, rows = xb.shape[:2]
    out = op(xb.reshape(size * rows, xb.shape[2]).contiguous(), seed, *rest)
    if isinstance(out, tuple):  # per_proj: (proj, norm); the norms are shared
        return (out[0].view(size, rows, -1), out[1]), (0, None)
    return out.view(size, rows, -1), 0


class _PerFwdEagerCPU(torch.autograd.Function):
    """The eager CPU twin of ``per_fwd`` (the generic one is built by
    :func:`~per_triton.core.registration.register`), with a fast backward for small layers.

    A layer whose directions are drawn as one matrix (:func:`cpu_path.forward_small`:
    one working chunk, or a batch above 64 rows, within the budget) keeps ``v`` on
    the autograd graph, like a saved activation, and a first-order backward is one
    product ``(g * coeff) @ v``.
    Anything else (larger layers, a gradient of ``coeff``, ``create_graph=True``) takes
    the registered formula, :func:`_fwd_backward`, on the regenerated directions.
    """

    @staticmethod
    def forward(ctx, h, seed, num_slices, precision):
        small = cpu_path.forward_small(h, int(seed.item()), num_slices)
        if small is None:
            output = _per_fwd_cpu(h, seed, num_slices, precision)
            ctx.directions = None
        else:
            output, ctx.directions = small[:2], small[2]
        _fwd_setup_context(ctx, (h, seed, num_slices, precision), output)
        return output

    @staticmethod
    def backward(ctx, grad_loss_sum, grad_coeff):
        v = ctx.directions
        if v is None or grad_coeff is not None or grad_loss_sum is None or torch.is_grad_enabled():
            return _fwd_backward(ctx, grad_loss_sum, grad_coeff)
        coeff, _seed = ctx.saved_tensors
        scaled = coeff * grad_loss_sum.to(coeff.dtype)
        grad = torch.mm(scaled, v if v.dtype == coeff.dtype else v.to(coeff.dtype))
        return grad.to(ctx.out_dtype), None, None, None

    jvp = staticmethod(_fwd_jvp)


def _mc_op(name, cpu, fake, vmap, autograd, eager_cpu=None) -> RegisteredOp:
    """Register ``per_triton::<name>``; its CUDA implementation is ``cuda_ops.<name>_impl``."""
    cuda = lazy_implementation(_CUDA_OPS, f"{name}_impl")
    return register(
        name, cpu, cuda=cuda, fake=fake, vmap=vmap, autograd=autograd, eager_cpu=eager_cpu
    )


_FWD_FORMULA = Formula(_fwd_setup_context, _fwd_backward, _fwd_jvp)
_BWD_FORMULA = Formula(_bwd_setup_context, _bwd_backward, _bwd_jvp)
_PROJ_FORMULA = Formula(_proj_setup_context, _proj_backward, _proj_jvp)
_FWD = _mc_op("per_fwd", _per_fwd_cpu, _per_fwd_fake, vmap_per_slice, _FWD_FORMULA, _PerFwdEagerCPU)
_BWD = _mc_op("per_bwd", _per_bwd_cpu, _per_bwd_fake, _rows_vmap, _BWD_FORMULA)
_PROJ = _mc_op("per_proj", _per_proj_cpu, _per_proj_fake, _rows_vmap, _PROJ_FORMULA)
per_fwd, per_bwd, per_proj = _FWD.op, _BWD.op, _PROJ.op


def per_fwd_autograd(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_fwd`` differentiable by its formula, under ``torch.func`` transforms too
    (:class:`~per_triton.core.registration.RegisteredOp`)."""
    return _FWD(h, seed, num_slices, precision)
