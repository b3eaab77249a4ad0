"""The launches of the fused PER kernels, from sizes, dtypes, a tile and the GPU's size.

Pure functions (no device, no tensors): the forward's split of ``d``
(:func:`split_plan`), the batch tile (:func:`block_b`) and each kernel's
:class:`~per_triton.kernels.launch.Launch`: :func:`fwd_launch` (the partial forward),
:func:`finish_launch` (its finishing kernel) and :func:`bwd_launch`. The launchers of
:mod:`per_triton.kernels.per_fused` run exactly these launches on their tensors;
``bench/sass_report.py`` compiles them from the buffers' dtypes for a named GPU.
"""

from __future__ import annotations

import torch

from . import configs
from . import per_fused_kernels as kern
from .launch import Buffer, Launch, cdiv
from .philox_stream import PHILOX_ROUNDS, SFU

__all__ = [
    "FINISH_TILE",
    "WORKSPACE_BYTES",
    "block_b",
    "bwd_launch",
    "finish_launch",
    "fwd_launch",
    "split_plan",
]

#: Upper bound on the forward's split workspace (``n_split * b * s`` float32). At the
#: paper shape (b = 128, s = 256, 132 SMs) the plan uses 66 splits: 8.25 MiB.
WORKSPACE_BYTES = 16 * 1024 * 1024
#: The finishing kernel's tile (batch rows x slices per program).
FINISH_TILE = {"BLOCK_B": 32, "BLOCK_S": 64}

_ACTIVATIONS = (torch.float32, torch.float16, torch.bfloat16)
_F32 = torch.float32
_SEED = Buffer(torch.int64, (1,))


def block_b(b: int) -> int:
    """Batch tile: the whole batch up to 128 rows, so each direction tile is drawn once."""
    return min(128, max(16, 1 << (b - 1).bit_length()))


def split_plan(
    b: int, d: int, s: int, *, sm_count: int, ctas_per_sm: int, block_s: int, block_d: int
) -> tuple[int, int]:
    """``(split_d, n_split)``: the forward's cut of ``d`` into ``n_split`` splits.

    Enough splits for ``ctas_per_sm`` programs on each of ``sm_count`` SMs with the
    ``block_s`` slice tile, the workspace ``n_split * b * s * 4`` bytes under
    :data:`WORKSPACE_BYTES`, every split a multiple of ``block_d``.
    """
    b_tiles = cdiv(b, block_b(b))
    s_tiles = cdiv(s, block_s)
    want = cdiv(ctas_per_sm * sm_count, s_tiles * b_tiles)
    by_memory = max(1, WORKSPACE_BYTES // (4 * b * s))
    n = max(1, min(want, by_memory, cdiv(d, block_d)))
    split_d = cdiv(cdiv(d, n), block_d) * block_d
    return split_d, cdiv(d, split_d)


def _tile(config: dict) -> tuple[int, int]:
    """``(BLOCK_S, BLOCK_D)`` of a config; ``BLOCK_S`` whole groups of four slices."""
    if config["BLOCK_S"] < 4 or config["BLOCK_S"] % 4:
        raise ValueError(f"config BLOCK_S must be a multiple of 4, got {config['BLOCK_S']}")
    return config["BLOCK_S"], config["BLOCK_D"]


def _check_sizes(b: int, d: int, s: int, dtype: torch.dtype, what: str) -> None:
    if dtype not in _ACTIVATIONS:
        raise TypeError(f"{what} must be float32, float16 or bfloat16, got {dtype}")
    if b < 1 or d < 1 or s < 1:
        raise ValueError(f"need b, d, s >= 1, got b={b}, d={d}, s={s}")
    if d >= 2**31 or s >= 2**31:
        raise ValueError(f"d and s must be < 2**31, got d={d}, s={s}")


def _dot_launch(kernel, args: dict, config: dict, precision: str, grid) -> Launch:
    """A forward/backward launch: the tile, the precision and the Philox stream's constexprs."""
    configs.check_precision(precision)
    bs, bd = _tile(config)
    meta = {"BLOCK_B": block_b(args["B"]), "BLOCK_S": bs, "BLOCK_D": bd}
    meta |= {"PRECISION": precision, "N_ROUNDS": PHILOX_ROUNDS, "SFU": SFU}
    return Launch(kernel, args, meta, grid, config.get("num_warps"), config.get("num_stages"))


def fwd_launch(
    b: int, d: int, s: int, dtype: torch.dtype, precision: str, config: dict, *,
    sm_count: int, ctas_per_sm: int, split_d: int | None = None, stride_hb: int | None = None,
) -> Launch:  # fmt: skip
    """The partial forward for ``h`` ``(b, d)`` of ``dtype`` and ``s`` slices.

    ``config``: the tile ``{"BLOCK_S", "BLOCK_D"[, "num_warps", "num_stages"]}``;
    ``split_d``: default :func:`split_plan` for ``sm_count`` SMs and ``ctas_per_sm``,
    else any positive length; ``stride_hb``: ``h``'s row stride (default ``d``).
    Buffers: ``h_ptr``, ``seed_ptr`` ``(1,)`` int64 and the float32 workspaces
    ``part_proj_ptr`` ``(n_split, b, s)``, ``part_sq_ptr`` ``(n_split, s)``. Raises
    ``TypeError`` for a dtype other than float32/float16/bfloat16, ``ValueError`` for
    sizes, precision or tile out of range.
    """
    _check_sizes(b, d, s, dtype, "h")
    if split_d is None:
        bs, bd = _tile(config)
        plan = {"sm_count": sm_count, "ctas_per_sm": ctas_per_sm, "block_s": bs, "block_d": bd}
        split_d = split_plan(b, d, s, **plan)[0]
    elif split_d < 1:
        raise ValueError(f"split_d must be >= 1, got {split_d}")
    n_split, tiles_b = cdiv(d, split_d), cdiv(b, block_b(b))
    args = {"h_ptr": Buffer(dtype, (b, d)), "seed_ptr": _SEED}
    args |= {
        "part_proj_ptr": Buffer(_F32, (n_split, b, s)),
        "part_sq_ptr": Buffer(_F32, (n_split, s)),
    }
    args |= {"B": b, "D": d, "S": s, "split_d": split_d}
    args["stride_hb"] = d if stride_hb is None else stride_hb
    grid = lambda m: (cdiv(s, m["BLOCK_S"]), n_split, tiles_b)  # noqa: E731
    return _dot_launch(kern.per_fwd_partial_kernel, args, config, precision, grid)


def finish_launch(b: int, s: int, n_split: int) -> Launch:
    """The forward's finishing kernel over ``n_split`` partials of a ``(b, s)`` projection.

    Buffers (float32): ``part_proj_ptr`` ``(n_split, b, s)`` and ``part_sq_ptr``
    ``(n_split, s)`` in; ``coeff_ptr`` ``(b, s)`` and ``loss_part_ptr`` (one loss
    partial per program, for the caller to sum) out.
    """
    grid = (cdiv(b, FINISH_TILE["BLOCK_B"]), cdiv(s, FINISH_TILE["BLOCK_S"]))
    args = {
        "part_proj_ptr": Buffer(_F32, (n_split, b, s)),
        "part_sq_ptr": Buffer(_F32, (n_split, s)),
        "coeff_ptr": Buffer(_F32, (b, s)),
        "loss_part_ptr": Buffer(_F32, (grid[0] * grid[1],)),
        "B": b,
        "S": s,
        "n_split": n_split,
    }
    return Launch(kern.per_fwd_finish_kernel, args, dict(FINISH_TILE), lambda m: grid)


def bwd_launch(
    b: int, d: int, s: int, dtype: torch.dtype, precision: str, config: dict, *,
    stride_cb: int | None = None, stride_gb: int | None = None,
) -> Launch:  # fmt: skip
    """The backward: ``grad`` ``(b, d)`` of ``dtype`` from ``(b, s)`` coefficients.

    ``config`` as in :func:`fwd_launch`; ``stride_cb``/``stride_gb``: the row strides
    of the coefficients and of the gradient (default contiguous). Buffers:
    ``coeff_ptr`` ``(b, s)`` float32, ``seed_ptr`` ``(1,)`` int64, ``grad_ptr``.
    Raises ``TypeError`` for a dtype other than float32/float16/bfloat16,
    ``ValueError`` for sizes, precision or tile out of range.
    """
    _check_sizes(b, d, s, dtype, "out_dtype")
    args = {"coeff_ptr": Buffer(_F32, (b, s)), "seed_ptr": _SEED, "grad_ptr": Buffer(dtype, (b, d))}
    args |= {"B": b, "D": d, "S": s, "stride_cb": s if stride_cb is None else stride_cb}
    args["stride_gb"] = d if stride_gb is None else stride_gb
    tiles_b = cdiv(b, block_b(b))
    grid = lambda m: (cdiv(d, m["BLOCK_D"]), tiles_b)  # noqa: E731
    return _dot_launch(kern.per_bwd_kernel, args, config, precision, grid)
