"""Fused PER forward and backward launchers (Eq. 5, Eq. 6, Algorithm 1).

The ``@triton.jit`` bodies are in :mod:`per_triton.kernels.per_fused_kernels`, their
launches (arguments, grids, tiles) in :mod:`per_triton.kernels.per_fused_launch`. Here:
the tiles for a device (the config row of :mod:`per_triton.kernels.configs` for its
architecture and the installed Triton, autotuned over, or its first, fixed config
with ``PER_TRITON_AUTOTUNE=0``), the device's split of ``d`` (:func:`plan_splits`),
and the launchers :func:`per_fwd` and :func:`per_bwd`, which take plain tensors, check
them, allocate and run those launches (no autograd here).

Precision (docs/design.md, "Registered ops"): float32 activations use ``tl.dot`` with
``input_precision`` ``"tf32"`` (default) or ``"ieee"``; float16/bfloat16 activations
are projected with float32 accumulation; coefficients, norms and the loss are
float32. float64 is not handled here (``per_triton.core.cuda_ops`` runs it on
materialised column chunks).
"""

from __future__ import annotations

import functools
import inspect
import os

import torch
import triton

from . import configs
from . import per_fused_kernels as kern
from .per_fused_launch import bwd_launch, finish_launch, fwd_launch, split_plan

__all__ = ["per_fwd", "per_bwd", "plan_splits", "INTERPRET", "CTAS_PER_SM"]

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

#: Forward programs planned per SM where no device is given (the sm_90a row of
#: :mod:`per_triton.kernels.configs`); on a GPU the device's row decides.
CTAS_PER_SM = configs.row_for(configs.ARCHS["sm_90a"]).ctas_per_sm

# ------------------------------------------------------------------------------ tiles

# One small config under the interpreter (word tiles >= 8 slices, the smallest dot
# K/N the GPU takes); on the GPU the row of kernels/configs.py for the device's
# architecture and the installed Triton (compiles, no spill, the planned CTAs per SM
# in bench/sass_report.py); the sm_90a row where no CUDA device is given. BLOCK_B is
# chosen by the launch, not tuned. A row's forward configs share BLOCK_S and BLOCK_D
# (kernels/configs.py), so the split plan (grid and workspace) does not depend on
# what autotuning picks.
_INTERPRET_ROW = configs.Row(((32, 32, 4, 3),), ((32, 32, 4, 3),), CTAS_PER_SM)
_DEFAULT_ROW = _INTERPRET_ROW if INTERPRET else configs.row_for(configs.ARCHS["sm_90a"])
#: The forward tile every config shares (the split plan depends on it).
_FWD_TILE = _DEFAULT_ROW.fwd[0][:2]


@functools.cache
def _row(device: torch.device | None) -> configs.Row:
    """The config row of a CUDA ``device`` (checks Triton and its backend), else the default."""
    if device is None or device.type != "cuda" or INTERPRET:
        return _DEFAULT_ROW
    configs.check_cuda_launch(device.type)
    major, minor = torch.cuda.get_device_capability(device)
    return configs.row_for(10 * major + minor)


def _autotune(rows: tuple[tuple[int, int, int, int], ...], kernel):
    kwargs = {}
    # Cache the chosen config on disk where Triton supports it, so that a later
    # process picks the same tiles (and so the same reduction order).
    if "cache_results" in inspect.signature(triton.autotune).parameters:
        kwargs["cache_results"] = True
    tiles = [
        triton.Config({"BLOCK_S": bs, "BLOCK_D": bd}, num_warps=w, num_stages=st)
        for bs, bd, w, st in rows
    ]
    # Triton adds the pointer dtypes to the key
    return triton.autotune(configs=tiles, key=["B", "D", "S", "PRECISION"], **kwargs)(kernel)


@functools.cache
def _tuned_for(row: configs.Row):
    """Autotuned forward and backward kernels over ``row``'s configs."""
    return _autotune(row.fwd, kern.per_fwd_partial_kernel), _autotune(row.bwd, kern.per_bwd_kernel)


def _launch_plan(kind: str, device: torch.device, config: dict | None):
    """``(config, autotuned kernel or None)`` of ``kind`` (fwd/bwd) on ``device``.

    An explicit ``config`` runs as given; else the row's autotuner (its fixed, first
    config describes the launch) or, with ``PER_TRITON_AUTOTUNE=0``, that fixed config.
    """
    row = _row(device)  # on CUDA: the Triton floor and backend checks, before any launch
    if config is not None:
        return config, None
    fixed = configs.as_config((row.fwd if kind == "fwd" else row.bwd)[0])
    if os.environ.get("PER_TRITON_AUTOTUNE", "1") == "0":
        return fixed, None
    return fixed, _tuned_for(row)[0 if kind == "fwd" else 1]


# ----------------------------------------------------------------------------- plans

# Every buffer is allocated through this name, so tests can poison all of them.
_empty = torch.empty


@functools.cache
def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def plan_splits(
    b: int,
    d: int,
    s: int,
    device: torch.device | None,
    *,
    sm_count: int | None = None,
    block_s: int | None = None,
    block_d: int | None = None,
    ctas_per_sm: int | None = None,
) -> tuple[int, int]:
    """``(split_d, n_split)``: how the forward cuts ``d`` on ``device`` (shapes and GPU only).

    :func:`~per_triton.kernels.per_fused_launch.split_plan` with the defaults of
    ``device``: the forward tile (``block_s``, ``block_d``) all forward configs share,
    ``ctas_per_sm`` of the device's config row (:data:`CTAS_PER_SM` without a CUDA
    device) and ``sm_count`` of the device. Not tuned by timing, so the reduction
    order is fixed for given shapes and GPU.
    """
    return split_plan(
        b, d, s, sm_count=sm_count if sm_count is not None else _sm_count(device),
        ctas_per_sm=ctas_per_sm or _row(device).ctas_per_sm,
        block_s=block_s or _FWD_TILE[0], block_d=block_d or _FWD_TILE[1],
    )  # fmt: skip


# ------------------------------------------------------------------------- launchers


def _check_seed(seed: torch.Tensor, device: torch.device) -> None:
    if not isinstance(seed, torch.Tensor) or seed.dtype != torch.int64 or seed.numel() != 1:
        raise TypeError("seed must be a (1,) int64 tensor")
    if seed.device != device:
        raise ValueError(f"seed is on {seed.device}, expected {device}")


def per_fwd(
    h: torch.Tensor,
    seed: torch.Tensor,
    num_slices: int,
    precision: str = "tf32",
    *,
    config: dict | None = None,
    split_d: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused forward: ``(loss_sum, coeff)`` as ``per_fwd`` in docs/design.md, "Registered ops".

    Args:
        h: ``(b, d)`` float32/float16/bfloat16 with unit column stride.
        seed: ``(1,)`` int64 tensor on ``h``'s device.
        num_slices: ``s >= 1``.
        precision: ``"tf32"`` or ``"ieee"`` for float32 ``h`` (ignored otherwise).
        config: explicit tile ``{"BLOCK_S", "BLOCK_D"[, "num_warps"]}`` instead of
            autotuning (tests, and ``PER_TRITON_AUTOTUNE=0``).
        split_d: override of :func:`plan_splits` (any positive length; a multiple
            of ``BLOCK_D`` keeps the masked tail tile to the last split).

    Returns:
        ``loss_sum`` (0-d float32) ``= sum_i (1/s) sum_k psi(p_ik)`` (Eq. 5 without
        ``1/b``) and ``coeff`` ``(b, s)`` float32 ``= erf(p_ik/sqrt2) / (s ||v_k||)``.
    """
    _check_seed(seed, h.device)
    # A (b, 1) tensor can be "contiguous" with any column stride; only j = 0 is read then.
    if h.dim() != 2 or (h.shape[1] > 1 and h.stride(1) != 1):
        raise ValueError(f"h must be 2-d (b, d) with unit column stride, got {tuple(h.shape)}")
    (b, d), dev = h.shape, h.device
    config, autotuned = _launch_plan("fwd", dev, config)
    launch = fwd_launch(
        b, d, int(num_slices), h.dtype, precision, config, sm_count=_sm_count(dev),
        ctas_per_sm=_row(dev).ctas_per_sm, split_d=split_d, stride_hb=h.stride(0),
    )  # fmt: skip
    part = launch.bind(dev, _empty, h_ptr=h, seed_ptr=seed)
    launch.run(part, autotuned)
    finish = finish_launch(b, launch.args["S"], part["part_sq_ptr"].shape[0])
    out = finish.bind(dev, _empty, **{k: v for k, v in part.items() if k.startswith("part_")})
    finish.run(out)
    # A fixed-size, fixed-order sum: deterministic on a given GPU.
    return out["loss_part_ptr"].sum(), out["coeff_ptr"]


def per_bwd(
    coeff: torch.Tensor,
    seed: torch.Tensor,
    dim: int,
    out_dtype: torch.dtype,
    precision: str = "tf32",
    *,
    config: dict | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fused backward: ``grad = coeff @ V`` ``(b, dim)`` in ``out_dtype`` (Eq. 6, Algorithm 1).

    Args:
        coeff: ``(b, s)`` float32 coefficients, already scaled by the incoming gradient.
        seed: the forward's ``(1,)`` int64 seed tensor.
        dim: ``d``.
        out_dtype: float32, float16 or bfloat16.
        precision: ``"tf32"`` or ``"ieee"`` (the dot runs on float32 operands).
        config: explicit tile instead of autotuning.
        out: optional preallocated ``(b, dim)`` output with unit column stride.
    """
    _check_seed(seed, coeff.device)
    if coeff.dim() != 2 or coeff.dtype != torch.float32:
        raise ValueError(f"coeff must be float32 (b, s), got {coeff.dtype} {tuple(coeff.shape)}")
    coeff, d = coeff.contiguous(), int(dim)
    (b, s), dev = coeff.shape, coeff.device
    if out is not None and (out.shape != (b, d) or out.dtype != out_dtype or out.stride(1) != 1):
        raise ValueError(f"out must be ({b}, {d}) {out_dtype} with unit column stride")
    config, autotuned = _launch_plan("bwd", dev, config)
    strides = {"stride_cb": coeff.stride(0), "stride_gb": None if out is None else out.stride(0)}
    launch = bwd_launch(b, d, s, out_dtype, precision, config, **strides)
    bufs = launch.bind(dev, _empty, coeff_ptr=coeff, seed_ptr=seed, grad_ptr=out)
    launch.run(bufs, autotuned)
    return bufs["grad_ptr"]
