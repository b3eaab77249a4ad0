"""Fused PER forward and backward kernels (Eq. 5, Eq. 6, Algorithm 1).

Forward, for activations ``H`` ``(b, d)`` and the Philox directions ``v_k`` of
:mod:`per_triton.kernels.philox_directions`:

1. ``_per_fwd_partial_kernel``: the grid is (slice tiles, splits of ``d``, batch
   tiles). Each program walks its split of ``d`` tile by tile, draws the Gaussian
   tile ``v[k-tile, j-tile]`` in registers, and accumulates the projections
   ``H @ V^T`` and the squared norms ``||v_k||^2`` together. It writes one partial
   per split to a small workspace; the ``s x d`` matrix is never stored.
2. ``_per_fwd_finish_kernel``: sums the partials in split order (fixed, so the
   result is bitwise reproducible), normalises ``p_ik = <h_i, v_k> / ||v_k||``, and
   writes the coefficients ``erf(p_ik/sqrt2) / (s * ||v_k||)`` that Eq. 6 needs and
   one partial of the loss ``sum psi(p_ik) / s`` (Eq. 5) per program, summed in a
   fixed order by the launcher.

Backward (``_per_bwd_kernel``): grid (coordinate tiles, batch tiles); each program
regenerates ``v[:, j-tile]`` slice tile by slice tile and forms
``dL/dh[:, j-tile] = C @ V[:, j-tile]`` (Eq. 6, Algorithm 1) with ``C`` the
coefficients already scaled by the incoming gradient. No cross-program reduction.

Precision (docs/design.md, "Registered ops"): float32 activations use ``tl.dot`` with
``input_precision`` ``"tf32"`` (default) or ``"ieee"``; float16/bfloat16 activations
are projected in their dtype with float32 accumulation; coefficients, norms and the
loss are float32. float64 is not handled here (``per_triton.core.cuda_ops`` runs it on
materialised column chunks).

Kernels first, then the launchers, which take plain tensors, check shapes,
allocate, build the grid and launch (no autograd here).
"""

from __future__ import annotations

import functools
import inspect
import os

import torch
import triton
import triton.language as tl

from . import configs
from .philox_directions import PHILOX_ROUNDS, SFU, gaussian_quad

__all__ = [
    "per_fwd",
    "per_bwd",
    "plan_splits",
    "INTERPRET",
    "WORKSPACE_BYTES",
    "CTAS_PER_SM",
]

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

#: Upper bound on the forward's split workspace (``n_split * b * s`` float32). At the
#: paper shape (b = 128, s = 256, 132 SMs) the plan uses 66 splits: 8.25 MiB.
WORKSPACE_BYTES = 16 * 1024 * 1024
#: Forward programs planned per SM where no device is given (the sm_90a row of
#: :mod:`per_triton.kernels.configs`); on a GPU the device's row decides.
CTAS_PER_SM = configs.row_for(configs.ARCHS["sm_90a"]).ctas_per_sm


# --------------------------------------------------------------------------- kernels


@triton.jit
def _fwd_step(
    h, n0, n1, n2, n3, acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3, PRECISION: tl.constexpr
):
    """One tile of the forward: four chained dots (one per Philox word) and ``v^2`` tiles."""
    acc0 = tl.dot(h, tl.trans(n0), acc0, input_precision=PRECISION)
    acc1 = tl.dot(h, tl.trans(n1), acc1, input_precision=PRECISION)
    acc2 = tl.dot(h, tl.trans(n2), acc2, input_precision=PRECISION)
    acc3 = tl.dot(h, tl.trans(n3), acc3, input_precision=PRECISION)
    return acc0, acc1, acc2, acc3, sq0 + n0 * n0, sq1 + n1 * n1, sq2 + n2 * n2, sq3 + n3 * n3


@triton.jit
def _store_quad(ptr, rows, stride_row, offs_q, S, mask_rows, t0, t1, t2, t3):
    """Store ``t_w[:, a]`` at column ``k = 4 offs_q[a] + w`` of ``rows`` (``k < S``)."""
    k = offs_q.to(tl.int64) * 4
    base = ptr + rows.to(tl.int64)[:, None] * stride_row
    m = mask_rows[:, None]
    tl.store(base + (k + 0)[None, :], t0, mask=m & (k + 0 < S)[None, :])
    tl.store(base + (k + 1)[None, :], t1, mask=m & (k + 1 < S)[None, :])
    tl.store(base + (k + 2)[None, :], t2, mask=m & (k + 2 < S)[None, :])
    tl.store(base + (k + 3)[None, :], t3, mask=m & (k + 3 < S)[None, :])


@triton.jit
def _per_fwd_partial_kernel(
    # pointers
    h_ptr,
    seed_ptr,
    part_proj_ptr,
    part_sq_ptr,
    # sizes
    B,
    D,
    S,
    split_d,
    # strides
    stride_hb,
    # meta-parameters
    BLOCK_B: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    N_ROUNDS: tl.constexpr,
    SFU: tl.constexpr,
):
    """Partial projections ``sum_{j in split} h_ij v_kj`` and ``sum_{j in split} v_kj^2``.

    Writes ``part_proj[split, i, k]`` (float32) for this program's batch and slice
    tiles, and ``part_sq[split, k]`` from the first batch tile only. The slice tile
    is four ``(BLOCK_S/4, BLOCK_D)`` word tiles (rows ``k = 4q + w``), each with its
    own dot and accumulator; ``v^2`` is summed in 2-D register tiles and reduced
    once after the loop. ``h`` of any dtype is projected in float32 (``PRECISION``)
    on the float32 directions, so bf16/fp16 see the directions the norms use.
    Full ``BLOCK_D`` tiles run unmasked in ``j``; a partial last tile (any
    ``split_d`` works) is masked to the split.
    """
    pid_s = tl.program_id(0)
    pid_split = tl.program_id(1)
    pid_b = tl.program_id(2)
    seed = tl.load(seed_ptr)
    QS: tl.constexpr = BLOCK_S // 4

    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_q = pid_s * QS + tl.arange(0, QS)
    mask_b = offs_b < B
    h_rows = h_ptr + offs_b.to(tl.int64)[:, None] * stride_hb

    acc0 = tl.zeros((BLOCK_B, QS), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_B, QS), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_B, QS), dtype=tl.float32)
    acc3 = tl.zeros((BLOCK_B, QS), dtype=tl.float32)
    sq0 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    sq1 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    sq2 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    sq3 = tl.zeros((QS, BLOCK_D), dtype=tl.float32)
    d_lo = pid_split * split_d
    d_hi = tl.minimum(d_lo + split_d, D)
    d_full = d_lo + (d_hi - d_lo) // BLOCK_D * BLOCK_D
    # h is prefetched one tile ahead into registers: its load latency hides behind
    # a whole tile's draw (num_stages = 1; Triton's cp.async pipeline costs more
    # instructions per normal, bench/sass_report.py)
    offs_d = tl.arange(0, BLOCK_D)
    first = d_lo + offs_d
    h = tl.load(
        h_rows + first[None, :], mask=mask_b[:, None] & (first < d_full)[None, :], other=0.0
    )
    for j0 in range(d_lo, d_full, BLOCK_D):
        offs_j = j0 + offs_d
        nxt = j0 + BLOCK_D + offs_d
        h_next = tl.load(
            h_rows + nxt[None, :], mask=mask_b[:, None] & (nxt < d_full)[None, :], other=0.0
        )
        n0, n1, n2, n3 = gaussian_quad(seed, offs_q, offs_j, N_ROUNDS, SFU)
        acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3 = _fwd_step(
            h.to(tl.float32), n0, n1, n2, n3, acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3, PRECISION
        )
        h = h_next
    if d_full < d_hi:
        offs_j = d_full + tl.arange(0, BLOCK_D)
        mask_j = offs_j < d_hi
        h = tl.load(h_rows + offs_j[None, :], mask=mask_b[:, None] & mask_j[None, :], other=0.0)
        n0, n1, n2, n3 = gaussian_quad(seed, offs_q, offs_j, N_ROUNDS, SFU)
        n0 = tl.where(mask_j[None, :], n0, 0.0)
        n1 = tl.where(mask_j[None, :], n1, 0.0)
        n2 = tl.where(mask_j[None, :], n2, 0.0)
        n3 = tl.where(mask_j[None, :], n3, 0.0)
        acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3 = _fwd_step(
            h.to(tl.float32), n0, n1, n2, n3, acc0, acc1, acc2, acc3, sq0, sq1, sq2, sq3, PRECISION
        )

    proj = part_proj_ptr + pid_split.to(tl.int64) * B * S
    _store_quad(proj, offs_b, S, offs_q, S, mask_b, acc0, acc1, acc2, acc3)
    if pid_b == 0:
        k = offs_q * 4
        sq_ptr = part_sq_ptr + pid_split.to(tl.int64) * S + k
        tl.store(sq_ptr + 0, tl.sum(sq0, axis=1), mask=k + 0 < S)
        tl.store(sq_ptr + 1, tl.sum(sq1, axis=1), mask=k + 1 < S)
        tl.store(sq_ptr + 2, tl.sum(sq2, axis=1), mask=k + 2 < S)
        tl.store(sq_ptr + 3, tl.sum(sq3, axis=1), mask=k + 3 < S)


@triton.jit
def _per_fwd_finish_kernel(
    # pointers
    part_proj_ptr,
    part_sq_ptr,
    coeff_ptr,
    loss_part_ptr,
    # sizes
    B,
    S,
    n_split,
    # meta-parameters
    BLOCK_B: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    """Eq. 5 terms and Eq. 6 coefficients from the split partials, summed in split order.

    ``p_ik = proj_ik / ||v_k||``; ``coeff_ik = erf(p_ik/sqrt2) / (S ||v_k||)``;
    ``loss_part[program] = sum_tile psi(p_ik) / S`` with
    ``psi(p) = p erf(p/sqrt2) + sqrt(2/pi) exp(-p^2/2)``.
    """
    pid_b = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_k = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    mask_b = offs_b < B
    mask_k = offs_k < S
    mask = mask_b[:, None] & mask_k[None, :]
    tile = offs_b.to(tl.int64)[:, None] * S + offs_k[None, :]

    proj = tl.zeros((BLOCK_B, BLOCK_S), dtype=tl.float32)
    sq = tl.zeros((BLOCK_S,), dtype=tl.float32)
    for t in range(0, n_split):
        proj += tl.load(part_proj_ptr + t * B * S + tile, mask=mask, other=0.0)
        sq += tl.load(part_sq_ptr + t * S + offs_k, mask=mask_k, other=0.0)

    norm = tl.where(mask_k, tl.sqrt(sq), 1.0)
    p = proj / norm[None, :]
    erf_p = tl.math.erf(p * 0.7071067811865476)  # 1/sqrt(2)
    psi = p * erf_p + 0.7978845608028654 * tl.exp(-0.5 * p * p)  # sqrt(2/pi)
    coeff = erf_p / (S * norm)[None, :]
    tl.store(coeff_ptr + tile, coeff, mask=mask)
    total = tl.sum(tl.sum(tl.where(mask, psi, 0.0), axis=1), axis=0) / S
    tl.store(loss_part_ptr + pid_b * tl.num_programs(1) + pid_s, total)


@triton.jit
def _per_bwd_kernel(
    # pointers
    coeff_ptr,
    seed_ptr,
    grad_ptr,
    # sizes
    B,
    D,
    S,
    # strides
    stride_cb,
    stride_gb,
    # meta-parameters
    BLOCK_B: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    N_ROUNDS: tl.constexpr,
    SFU: tl.constexpr,
):
    """``grad[i, j] = sum_k coeff[i, k] v_kj`` for one coordinate tile (Eq. 6, Algorithm 1).

    ``coeff`` is float32 ``(B, S)``, already ``erf(p/sqrt2) / (S ||v_k||)`` times the
    incoming gradient; ``grad`` takes its pointer's dtype. Each slice tile is four
    word tiles (rows ``k = 4q + w``), four chained dots into one accumulator; rows
    past ``S`` meet zero coefficients, columns past ``D`` are not stored, so the
    directions need no mask.
    """
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1)
    seed = tl.load(seed_ptr)
    QS: tl.constexpr = BLOCK_S // 4

    offs_j = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_j = offs_j < D
    mask_b = offs_b < B
    c_rows = coeff_ptr + offs_b.to(tl.int64)[:, None] * stride_cb

    acc = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
    for q0 in range(0, tl.cdiv(S, 4), QS):
        offs_q = q0 + tl.arange(0, QS)
        n0, n1, n2, n3 = gaussian_quad(seed, offs_q, offs_j, N_ROUNDS, SFU)
        k = offs_q * 4
        c0 = tl.load(
            c_rows + (k + 0)[None, :], mask=mask_b[:, None] & (k + 0 < S)[None, :], other=0.0
        )
        c1 = tl.load(
            c_rows + (k + 1)[None, :], mask=mask_b[:, None] & (k + 1 < S)[None, :], other=0.0
        )
        c2 = tl.load(
            c_rows + (k + 2)[None, :], mask=mask_b[:, None] & (k + 2 < S)[None, :], other=0.0
        )
        c3 = tl.load(
            c_rows + (k + 3)[None, :], mask=mask_b[:, None] & (k + 3 < S)[None, :], other=0.0
        )
        acc = tl.dot(c0, n0, acc, input_precision=PRECISION)
        acc = tl.dot(c1, n1, acc, input_precision=PRECISION)
        acc = tl.dot(c2, n2, acc, input_precision=PRECISION)
        acc = tl.dot(c3, n3, acc, input_precision=PRECISION)

    ptrs = grad_ptr + offs_b.to(tl.int64)[:, None] * stride_gb + offs_j[None, :]
    tl.store(ptrs, acc.to(grad_ptr.dtype.element_ty), mask=mask_b[:, None] & mask_j[None, :])


# ------------------------------------------------------------------ autotune configs

# One small config under the interpreter (word tiles >= 8 slices, the smallest dot
# K/N the GPU takes); on the GPU the row of kernels/configs.py for the device's
# architecture and the installed Triton (compiles, no spill, the planned CTAs per SM
# in bench/sass_report.py). The module-level lists are the sm_90a row; launches use
# the running device's row. BLOCK_B is chosen by the launcher, not tuned.
# Forward configs share BLOCK_S and BLOCK_D (asserted below), so the split plan
# (grid and workspace) does not depend on what autotuning picks.


def _triton_configs(rows: tuple[tuple[int, int, int, int], ...]) -> list[triton.Config]:
    return [
        triton.Config({"BLOCK_S": bs, "BLOCK_D": bd}, num_warps=w, num_stages=st)
        for bs, bd, w, st in rows
    ]


if INTERPRET:
    _FWD_CONFIGS = [triton.Config({"BLOCK_S": 32, "BLOCK_D": 32}, num_warps=4)]
    _BWD_CONFIGS = [triton.Config({"BLOCK_S": 32, "BLOCK_D": 32}, num_warps=4)]
else:
    _ROW90 = configs.row_for(configs.ARCHS["sm_90a"])
    _FWD_CONFIGS = _triton_configs(_ROW90.fwd)
    _BWD_CONFIGS = _triton_configs(_ROW90.bwd)

#: The tile used when autotuning is off (``PER_TRITON_AUTOTUNE=0``): fixed configs
#: make results bitwise identical across processes without Triton's autotune cache.
_FIXED = {"fwd": _FWD_CONFIGS[0], "bwd": _BWD_CONFIGS[0]}
FIXED_FWD_CONFIG = {**_FIXED["fwd"].kwargs, "num_warps": _FIXED["fwd"].num_warps}
FIXED_BWD_CONFIG = {**_FIXED["bwd"].kwargs, "num_warps": _FIXED["bwd"].num_warps}
if not INTERPRET:
    FIXED_FWD_CONFIG["num_stages"] = _FIXED["fwd"].num_stages
    FIXED_BWD_CONFIG["num_stages"] = _FIXED["bwd"].num_stages
#: The forward tile every config shares (the split plan depends on it).
_FWD_TILE = {k: FIXED_FWD_CONFIG[k] for k in ("BLOCK_S", "BLOCK_D")}
assert all(c.kwargs == _FWD_TILE for c in _FWD_CONFIGS)
assert all((r[0], r[1]) == (64, 32) for row in configs._TABLE.values() for r in row.fwd)


def _autotune(configs: list[triton.Config], key: list[str]):
    kwargs = {}
    # Cache the chosen config on disk where Triton supports it, so that a later
    # process picks the same tiles (and so the same reduction order).
    if "cache_results" in inspect.signature(triton.autotune).parameters:
        kwargs["cache_results"] = True
    return triton.autotune(configs=configs, key=key, **kwargs)


_TUNE_KEY = ["B", "D", "S", "PRECISION"]  # Triton adds the pointer dtypes
_per_fwd_partial_tuned = _autotune(_FWD_CONFIGS, _TUNE_KEY)(_per_fwd_partial_kernel)
_per_bwd_tuned = _autotune(_BWD_CONFIGS, _TUNE_KEY)(_per_bwd_kernel)


@functools.cache
def _device_row(device: torch.device) -> configs.Row | None:
    """The config row of a CUDA ``device`` (checks Triton and its backend); None elsewhere."""
    if device.type != "cuda" or INTERPRET:
        return None
    configs.check_cuda_launch(device.type)
    major, minor = torch.cuda.get_device_capability(device)
    return configs.row_for(10 * major + minor)


@functools.cache
def _tuned_for(row: configs.Row):
    """Autotuned forward and backward kernels over ``row``'s configs."""
    fwd = _autotune(_triton_configs(row.fwd), _TUNE_KEY)(_per_fwd_partial_kernel)
    return fwd, _autotune(_triton_configs(row.bwd), _TUNE_KEY)(_per_bwd_kernel)


def _launch_plan(kind: str, device: torch.device):
    """``(autotuned kernel, fixed config)`` of ``kind`` (fwd/bwd) for ``device``."""
    row = _device_row(device)
    if row is None:
        tuned = _per_fwd_partial_tuned if kind == "fwd" else _per_bwd_tuned
        return tuned, FIXED_FWD_CONFIG if kind == "fwd" else FIXED_BWD_CONFIG
    bs, bd, warps, stages = (row.fwd if kind == "fwd" else row.bwd)[0]
    fixed = {"BLOCK_S": bs, "BLOCK_D": bd, "num_warps": warps, "num_stages": stages}
    return _tuned_for(row)[0 if kind == "fwd" else 1], fixed


_FINISH_TILE = {"BLOCK_B": 32, "BLOCK_S": 64}


def _autotune_enabled() -> bool:
    return os.environ.get("PER_TRITON_AUTOTUNE", "1") != "0"


# ------------------------------------------------------------------------- launchers

# Every buffer is allocated through this name, so tests can poison all of them.
_empty = torch.empty


@functools.cache
def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def _block_b(b: int) -> int:
    """Batch tile: the whole batch up to 128 rows, so each direction tile is drawn once."""
    return min(128, max(16, triton.next_power_of_2(b)))


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
    """``(split_d, n_split)``: how the forward cuts ``d`` (a pure function of shapes and GPU).

    Planned from the forward tile (``block_s``, ``block_d``; default the tile all
    forward configs share): enough splits for ``ctas_per_sm`` programs per SM
    (default the device's config row, :data:`CTAS_PER_SM` without a CUDA device;
    ``sm_count``, default the device's), with the workspace ``n_split * b * s * 4``
    bytes under :data:`WORKSPACE_BYTES`; every split is a multiple of ``block_d``.
    Not tuned by timing, so the reduction order is fixed for given shapes and GPU.
    """
    block_s = block_s or _FWD_TILE["BLOCK_S"]
    block_d = block_d or _FWD_TILE["BLOCK_D"]
    b_tiles = triton.cdiv(b, _block_b(b))
    s_tiles = triton.cdiv(s, block_s)
    sms = sm_count if sm_count is not None else _sm_count(device)
    row = _device_row(device) if device is not None else None
    ctas = ctas_per_sm or (row.ctas_per_sm if row is not None else CTAS_PER_SM)
    want = triton.cdiv(ctas * sms, s_tiles * b_tiles)
    by_memory = max(1, WORKSPACE_BYTES // (4 * b * s))
    n = max(1, min(want, by_memory, triton.cdiv(d, block_d)))
    split_d = triton.cdiv(triton.cdiv(d, n), block_d) * block_d
    return split_d, triton.cdiv(d, split_d)


def _check_common(seed: torch.Tensor, device: torch.device, precision: str) -> None:
    if not isinstance(seed, torch.Tensor) or seed.dtype != torch.int64 or seed.numel() != 1:
        raise TypeError("seed must be a (1,) int64 tensor")
    if seed.device != device:
        raise ValueError(f"seed is on {seed.device}, expected {device}")
    configs.check_precision(precision)


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
    _check_common(seed, h.device, precision)
    # A (b, 1) tensor can be "contiguous" with any column stride; only j = 0 is read then.
    if h.dim() != 2 or (h.shape[1] > 1 and h.stride(1) != 1):
        raise ValueError(f"h must be 2-d (b, d) with unit column stride, got {tuple(h.shape)}")
    if h.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"h must be float32, float16 or bfloat16, got {h.dtype}")
    b, d = h.shape
    s = int(num_slices)
    if b < 1 or d < 1 or s < 1:
        raise ValueError(f"need b, d, num_slices >= 1, got {b}, {d}, {s}")
    if d >= 2**31 or s >= 2**31:
        raise ValueError("d and num_slices must be < 2**31")

    tuned, fixed = _launch_plan("fwd", h.device)
    if config is None and not _autotune_enabled():
        config = fixed
    tile = config or _FWD_TILE
    if tile["BLOCK_S"] < 4 or tile["BLOCK_S"] % 4:
        raise ValueError(f"config BLOCK_S must be a multiple of 4, got {tile['BLOCK_S']}")
    if split_d is None:
        split_d, n_split = plan_splits(
            b, d, s, h.device, block_s=tile["BLOCK_S"], block_d=tile["BLOCK_D"]
        )
    else:
        if split_d < 1:
            raise ValueError(f"split_d must be >= 1, got {split_d}")
        n_split = triton.cdiv(d, split_d)
    block_b = _block_b(b)
    part_proj = _empty((n_split, b, s), dtype=torch.float32, device=h.device)
    part_sq = _empty((n_split, s), dtype=torch.float32, device=h.device)
    args = (h, seed, part_proj, part_sq, b, d, s, split_d, h.stride(0))
    meta = {"BLOCK_B": block_b, "PRECISION": precision, "N_ROUNDS": PHILOX_ROUNDS, "SFU": SFU}
    if config is None:
        grid = lambda m: (triton.cdiv(s, m["BLOCK_S"]), n_split, triton.cdiv(b, block_b))
        tuned[grid](*args, **meta)
    else:
        grid = (triton.cdiv(s, config["BLOCK_S"]), n_split, triton.cdiv(b, block_b))
        _per_fwd_partial_kernel[grid](*args, **meta, **config)

    fb, fs = _FINISH_TILE["BLOCK_B"], _FINISH_TILE["BLOCK_S"]
    fgrid = (triton.cdiv(b, fb), triton.cdiv(s, fs))
    coeff = _empty((b, s), dtype=torch.float32, device=h.device)
    loss_part = _empty((fgrid[0] * fgrid[1],), dtype=torch.float32, device=h.device)
    _per_fwd_finish_kernel[fgrid](
        part_proj, part_sq, coeff, loss_part, b, s, n_split, BLOCK_B=fb, BLOCK_S=fs
    )
    # A fixed-size, fixed-order sum: deterministic on a given GPU.
    return loss_part.sum(), coeff


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
    _check_common(seed, coeff.device, precision)
    if coeff.dim() != 2 or coeff.dtype != torch.float32:
        raise ValueError(f"coeff must be float32 (b, s), got {coeff.dtype} {tuple(coeff.shape)}")
    if out_dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"out_dtype must be float32, float16 or bfloat16, got {out_dtype}")
    b, s = coeff.shape
    d = int(dim)
    if b < 1 or s < 1 or d < 1:
        raise ValueError(f"need b, s, dim >= 1, got {b}, {s}, {d}")
    if d >= 2**31 or s >= 2**31:
        raise ValueError("dim and s must be < 2**31")
    coeff = coeff.contiguous()
    if out is None:
        out = _empty((b, d), dtype=out_dtype, device=coeff.device)
    elif out.shape != (b, d) or out.dtype != out_dtype or out.stride(1) != 1:
        raise ValueError(f"out must be ({b}, {d}) {out_dtype} with unit column stride")
    block_b = _block_b(b)
    args = (coeff, seed, out, b, d, s, coeff.stride(0), out.stride(0))
    meta = {"BLOCK_B": block_b, "PRECISION": precision, "N_ROUNDS": PHILOX_ROUNDS, "SFU": SFU}
    tuned, fixed = _launch_plan("bwd", coeff.device)
    if config is None and not _autotune_enabled():
        config = fixed
    if config is not None and (config["BLOCK_S"] < 4 or config["BLOCK_S"] % 4):
        raise ValueError(f"config BLOCK_S must be a multiple of 4, got {config['BLOCK_S']}")
    if config is None:
        grid = lambda m: (triton.cdiv(d, m["BLOCK_D"]), triton.cdiv(b, block_b))
        tuned[grid](*args, **meta)
    else:
        grid = (triton.cdiv(d, config["BLOCK_D"]), triton.cdiv(b, block_b))
        _per_bwd_kernel[grid](*args, **meta, **config)
    return out
