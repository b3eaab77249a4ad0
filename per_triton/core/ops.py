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

Every op is registered here, where it is defined, for both device kinds: the CPU
path (:mod:`per_triton.core.cpu_path`) and the fused Triton kernels for CUDA tensors
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
from torch.utils._python_dispatch import _get_current_dispatch_mode as _current_dispatch_mode

from per_triton.core import cpu_path
from per_triton.core.dtypes import accumulation_dtype

__all__ = ["per_fwd", "per_bwd", "per_proj", "per_fwd_autograd"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _cuda_ops():
    """The CUDA implementations (imports triton on first use)."""
    from per_triton.core.triton_support import require_triton

    require_triton()  # missing or too old: an ImportError that says what to install
    from per_triton.core import cuda_ops

    return cuda_ops


# -- per_fwd -------------------------------------------------------------------------


@torch.library.custom_op("per_triton::per_fwd", mutates_args=(), device_types="cpu")
def per_fwd(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU forward: chunked projections, loss terms and backward coefficients."""
    return _per_fwd_cpu(h, seed, num_slices, precision)


def _per_fwd_cpu(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    return cpu_path.forward(h, int(seed.item()), num_slices)


@per_fwd.register_kernel("cuda")
def _per_fwd_cuda(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    return _cuda_ops().per_fwd_impl(h, seed, num_slices, precision)


@per_fwd.register_fake
def _per_fwd_fake(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    acc = accumulation_dtype(h.dtype)
    return h.new_empty((), dtype=acc), h.new_empty((h.shape[0], num_slices), dtype=acc)


# -- per_bwd -------------------------------------------------------------------------


@torch.library.custom_op("per_triton::per_bwd", mutates_args=(), device_types="cpu")
def per_bwd(
    coeff: torch.Tensor, seed: torch.Tensor, dim: int, out_dtype: torch.dtype, precision: str
) -> torch.Tensor:
    """CPU backward: regenerate the directions chunk by chunk and form ``coeff @ V``."""
    return _per_bwd_cpu(coeff, seed, dim, out_dtype, precision)


def _per_bwd_cpu(
    coeff: torch.Tensor, seed: torch.Tensor, dim: int, out_dtype: torch.dtype, precision: str
) -> torch.Tensor:
    return cpu_path.backward(coeff, int(seed.item()), dim, out_dtype)


@per_bwd.register_kernel("cuda")
def _per_bwd_cuda(
    coeff: torch.Tensor, seed: torch.Tensor, dim: int, out_dtype: torch.dtype, precision: str
) -> torch.Tensor:
    return _cuda_ops().per_bwd_impl(coeff, seed, dim, out_dtype, precision)


@per_bwd.register_fake
def _per_bwd_fake(
    coeff: torch.Tensor, seed: torch.Tensor, dim: int, out_dtype: torch.dtype, precision: str
) -> torch.Tensor:
    return coeff.new_empty((coeff.shape[0], dim), dtype=out_dtype)


# -- per_proj ------------------------------------------------------------------------


@torch.library.custom_op("per_triton::per_proj", mutates_args=(), device_types="cpu")
def per_proj(
    x: torch.Tensor, seed: torch.Tensor, num_slices: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU: unnormalised projections ``x @ V^T`` ``(b, s)`` and ``||v_k||`` ``(s,)``."""
    return _per_proj_cpu(x, seed, num_slices)


def _per_proj_cpu(
    x: torch.Tensor, seed: torch.Tensor, num_slices: int
) -> tuple[torch.Tensor, torch.Tensor]:
    return cpu_path.projections(x, int(seed.item()), num_slices)


@per_proj.register_kernel("cuda")
def _per_proj_cuda(
    x: torch.Tensor, seed: torch.Tensor, num_slices: int
) -> tuple[torch.Tensor, torch.Tensor]:
    acc = accumulation_dtype(x.dtype)
    return _cuda_ops().projections_materialised(x, seed.reshape(1), num_slices, acc)


@per_proj.register_fake
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
    _, norm = _call(per_proj, coeff.new_zeros((0, dim)), seed, s)  # ||v_k|| only
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
    grad_h = _call(per_bwd, scaled, seed, ctx.dim, ctx.out_dtype, ctx.precision)
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
    grad_coeff, _norm = _call(per_proj, grad.contiguous(), seed, ctx.num_slices)  # G V^T
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
    grad_x = _call(per_bwd, grad_proj.contiguous(), seed, ctx.dim, ctx.x_dtype, "ieee")
    return grad_x, None, None


per_fwd.register_autograd(_fwd_backward, setup_context=_fwd_setup_context)
per_bwd.register_autograd(_bwd_backward, setup_context=_bwd_setup_context)
per_proj.register_autograd(_proj_backward, setup_context=_proj_setup_context)


# -- forward-mode AD (jvp) -----------------------------------------------------------


def _fwd_jvp(ctx, dh: torch.Tensor | None, *_rest):
    """Tangents of ``(loss_sum, coeff)`` along ``dh``, with ``du = dh V^T`` (unnormalised).

    ``d loss_sum = sum_ik erf(p_ik/sqrt2) <dh_i, theta_k> / s = sum_ik coeff_ik du_ik``;
    ``d coeff_ik = sqrt(2/pi) exp(-p_ik^2/2) / (s ||v_k||^2) * du_ik``.
    """
    coeff, seed = ctx.saved_tensors
    du, _norm = _call(per_proj, dh.contiguous(), seed, coeff.shape[1])
    du = du.to(coeff.dtype)
    d_loss = (coeff * du).sum()
    return d_loss, _coeff_derivative(coeff, seed, ctx.dim) * du


def _bwd_jvp(ctx, d_coeff: torch.Tensor | None, *_rest):
    """``per_bwd`` is linear in ``coeff``: its tangent is ``per_bwd`` of the tangent."""
    (seed,) = ctx.saved_tensors
    return _call(per_bwd, d_coeff.contiguous(), seed, ctx.dim, ctx.out_dtype, ctx.precision)


def _proj_jvp(ctx, dx: torch.Tensor | None, *_rest):
    """``per_proj`` is linear in ``x``; the norms do not depend on it (tangent 0)."""
    (seed,) = ctx.saved_tensors
    d_proj, norm = _call(per_proj, dx.contiguous(), seed, ctx.num_slices)
    return d_proj, torch.zeros_like(norm)


# -- vmap ----------------------------------------------------------------------------


def _batched(x: torch.Tensor, dim: int | None, size: int) -> torch.Tensor:
    """``x`` with its vmapped dimension first (expanded when it has none)."""
    return x.movedim(dim, 0) if dim is not None else x.expand(size, *x.shape)


def _vmap_loop(op, info, in_dims, *args):
    """``op`` once per vmapped slice, outputs stacked along dimension 0.

    Each slice is an independent call with its own arguments: a batched seed
    (``randomness="different"``) gives each slice its own directions.
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


def _fwd_vmap(info, in_dims, h, seed, num_slices, precision):
    """One ``per_fwd`` call per slice: each slice is one batch with one direction set
    (the same for every slice unless the seed is batched)."""
    return _vmap_loop(per_fwd, info, in_dims, h, seed, num_slices, precision)


def _rows_vmap(op, info, in_dims, x, seed, *rest):
    """A row-wise op (``per_bwd``, ``per_proj``) on the slices' rows at once, when they
    share one seed; slice by slice otherwise. Unbatched outputs keep no vmapped dim."""
    if in_dims[1] is not None:
        return _vmap_loop(op, info, in_dims, x, seed, *rest)
    xb = _batched(x, in_dims[0], info.batch_size)
    size, rows = xb.shape[:2]
    out = op(xb.reshape(size * rows, xb.shape[2]).contiguous(), seed, *rest)
    if isinstance(out, tuple):  # per_proj: (proj, norm); the norms are shared
        return (out[0].view(size, rows, -1), out[1]), (0, None)
    return out.view(size, rows, -1), 0


def _bwd_vmap(info, in_dims, coeff, seed, dim, out_dtype, precision):
    return _rows_vmap(per_bwd, info, in_dims, coeff, seed, dim, out_dtype, precision)


def _proj_vmap(info, in_dims, x, seed, num_slices):
    return _rows_vmap(per_proj, info, in_dims, x, seed, num_slices)


per_fwd.register_vmap(_fwd_vmap)
per_bwd.register_vmap(_bwd_vmap)
per_proj.register_vmap(_proj_vmap)


def _functorch_function(op, setup_context, backward, jvp) -> type[torch.autograd.Function]:
    """An ``autograd.Function`` running ``op`` with its registered formula.

    A custom op's registered autograd is not seen by ``torch.func`` transforms; an
    ``autograd.Function`` with ``setup_context`` is. Used only while a transform is
    active (:func:`_call`). ``vmap`` runs the forward and backward on the ops' own
    batching rules (``register_vmap`` above); ``jvp`` is forward-mode AD.
    """

    def forward(*args):
        return op(*args)

    attrs = {
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
        "jvp": staticmethod(jvp),
        "generate_vmap_rule": True,
    }
    return type(f"_{op._name}_function", (torch.autograd.Function,), attrs)


def _eager_cpu_function(
    name: str, impl, setup_context, backward, jvp
) -> type[torch.autograd.Function]:
    """An ``autograd.Function`` calling the op's CPU implementation ``impl`` directly,
    with the op's registered formula: eager CPU calls get the same forward and
    gradients (double backward included: the formulas call :func:`_call` again)
    without the custom-op dispatch and its Python autograd wrapper, which cost more
    than the whole computation of a small layer (docs/design.md, "The CPU path").

    Old-style (``forward(ctx, ...)`` calls ``setup_context`` itself): ``apply`` then
    skips binding the arguments to the signature (``inspect``), tens of microseconds
    a call. Such a Function is not functorch-aware, so it serves only outside
    transforms; :func:`_functorch_function` serves under them.
    """

    def forward(ctx, *args):
        output = impl(*args)
        setup_context(ctx, args, output)
        return output

    attrs = {
        "forward": staticmethod(forward),
        "backward": staticmethod(backward),
        "jvp": staticmethod(jvp),
    }
    return type(f"_{name}_eager_cpu_function", (torch.autograd.Function,), attrs)


class _PerFwdEagerCPU(torch.autograd.Function):
    """The eager CPU twin of ``per_fwd`` (see :func:`_eager_cpu_function`), with a fast
    backward for small layers.

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


_FUNCTIONS: dict[str, type[torch.autograd.Function]] = {}
_EAGER_CPU: dict[str, type[torch.autograd.Function]] = {}
_CPU_IMPL = {}


def _plain_eager_cpu(x: torch.Tensor, seed: torch.Tensor) -> bool:
    """True for plain CPU tensors outside torch.compile, tracing and dispatch modes."""
    return (
        type(x) is torch.Tensor
        and type(seed) is torch.Tensor
        and x.device.type == "cpu"
        and seed.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and _current_dispatch_mode() is None
    )


def _call(op, *args):
    """``op(*args)``, differentiable by its registered formula.

    Under ``torch.func`` through its ``autograd.Function`` twin; for plain eager CPU
    tensors (:func:`_plain_eager_cpu`) the CPU implementation is called directly,
    through the eager twin when the first argument (the only differentiable one)
    needs a gradient; otherwise (torch.compile, tracing, CUDA) the op itself.
    """
    if torch._C._are_functorch_transforms_active():
        return _FUNCTIONS[op._name].apply(*args)
    if _plain_eager_cpu(args[0], args[1]):
        if torch.is_grad_enabled() and args[0].requires_grad:
            return _EAGER_CPU[op._name].apply(*args)
        return _CPU_IMPL[op._name](*args)
    return op(*args)


for _op, _impl, _setup, _backward, _jvp in (
    (per_fwd, _per_fwd_cpu, _fwd_setup_context, _fwd_backward, _fwd_jvp),
    (per_bwd, _per_bwd_cpu, _bwd_setup_context, _bwd_backward, _bwd_jvp),
    (per_proj, _per_proj_cpu, _proj_setup_context, _proj_backward, _proj_jvp),
):
    _FUNCTIONS[_op._name] = _functorch_function(_op, _setup, _backward, _jvp)
    _EAGER_CPU[_op._name] = _eager_cpu_function(_op._name, _impl, _setup, _backward, _jvp)
    _CPU_IMPL[_op._name] = _impl
_EAGER_CPU[per_fwd._name] = _PerFwdEagerCPU


def per_fwd_autograd(
    h: torch.Tensor, seed: torch.Tensor, num_slices: int, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_fwd`` that is differentiable under ``torch.func`` transforms too."""
    return _call(per_fwd, h, seed, num_slices, precision)
