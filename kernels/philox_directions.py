"""Directions on CUDA: the launches and launchers of the direction kernels.

:func:`sample_directions_triton` gives the unit directions ``theta_k = v_k / ||v_k||``
the fused kernels use, :func:`philox_normals` a window of ``v``, :func:`philox_words`
the raw Philox words (tests) and :func:`draw_and_sum` the benchmark floor. Each
kernel's launch for given sizes is public (:func:`normals_launch`,
:func:`words_launch`, :func:`draw_sum_launch`, a
:class:`~per_triton.kernels.launch.Launch`): the launchers run exactly these, and
``bench/sass_report.py`` compiles them. The stream is
:mod:`per_triton.kernels.philox_stream` (docs/design.md, "The CUDA stream"), the
kernel bodies :mod:`per_triton.kernels.philox_kernels`.
"""

from __future__ import annotations

import torch

from per_triton.core.dtypes import accumulation_dtype

from . import configs
from . import philox_kernels as kern
from .launch import Buffer, Launch, cdiv
from .philox_stream import PHILOX_ROUNDS, SFU

__all__ = [
    "DEFAULT_TILE",
    "draw_and_sum",
    "draw_sum_launch",
    "normals_launch",
    "philox_normals",
    "philox_words",
    "sample_directions_triton",
    "words_launch",
]

#: The tile of :func:`philox_normals`. Tiles only set the work split: the values
#: drawn never depend on them (tested in tests/test_philox_stream.py).
DEFAULT_TILE = {"BLOCK_S": 16, "BLOCK_D": 128}

_SEED = Buffer(torch.int64, (1,))
_STREAM = {"N_ROUNDS": PHILOX_ROUNDS, "SFU": SFU}


def _check_seed(seed: torch.Tensor) -> None:
    if not isinstance(seed, torch.Tensor) or seed.dtype != torch.int64 or seed.numel() != 1:
        raise TypeError("seed must be a (1,) int64 tensor")
    configs.check_cuda_launch(seed.device.type)


def _check_tile(block_s: int, block_d: int) -> None:
    if block_s < 4 or block_s & (block_s - 1) or block_d < 1 or block_d & (block_d - 1):
        raise ValueError(
            f"block_s (>= 4) and block_d must be powers of 2, got {block_s}, {block_d}"
        )


def _check_sizes(num_slices: int, dim: int) -> None:
    if num_slices < 1 or dim < 1:
        raise ValueError(f"num_slices and dim must be >= 1, got {num_slices} and {dim}")
    if num_slices >= 2**31 or dim >= 2**31:
        raise ValueError("num_slices and dim must be < 2**31 (one counter word each)")


def normals_launch(
    num_slices: int,
    col_start: int,
    col_stop: int,
    *,
    block_s: int | None = None,
    block_d: int | None = None,
    stride_out: int | None = None,
) -> Launch:
    """The kernel writing ``v[:, col_start:col_stop]``: buffers ``seed_ptr`` ``(1,)``
    int64 and ``out_ptr`` ``(num_slices, cols)`` float32 (row stride ``stride_out``,
    default ``cols``); tile ``block_s`` x ``block_d`` (default :data:`DEFAULT_TILE`).

    Raises ``ValueError`` for a window outside ``0 <= col_start < col_stop < 2**31``,
    sizes out of range or a tile that is not powers of 2 (``block_s >= 4``).
    """
    _check_sizes(num_slices, max(col_stop, 1))
    if not 0 <= col_start < col_stop:
        raise ValueError(f"need 0 <= col_start < col_stop, got {col_start}, {col_stop}")
    bs = block_s or DEFAULT_TILE["BLOCK_S"]
    bd = block_d or DEFAULT_TILE["BLOCK_D"]
    _check_tile(bs, bd)
    cols = col_stop - col_start
    grid = (cdiv(num_slices, bs), cdiv(cols, bd))
    args = {
        "seed_ptr": _SEED,
        "out_ptr": Buffer(torch.float32, (num_slices, cols)),
        "S": num_slices,
        "col_start": col_start,
        "col_stop": col_stop,
        "stride_out_s": cols if stride_out is None else stride_out,
    }
    meta = {"BLOCK_S": bs, "BLOCK_D": bd, **_STREAM}
    return Launch(kern.normals_kernel, args, meta, lambda m: grid)


def words_launch(n: int, block: int = 64) -> Launch:
    """The raw-word kernel for ``n`` counters: buffers ``seed_ptr``, ``q_ptr`` and
    ``j_ptr`` ``(n,)`` int64 in, ``out_ptr`` ``(n, 4)`` int64 out."""
    i64 = torch.int64
    args = {"seed_ptr": _SEED, "q_ptr": Buffer(i64, (n,)), "j_ptr": Buffer(i64, (n,))}
    args |= {"out_ptr": Buffer(i64, (n, 4)), "N": n}
    meta = {"BLOCK": block, "N_ROUNDS": PHILOX_ROUNDS}
    return Launch(kern.words_kernel, args, meta, lambda m: (cdiv(n, block),))


def draw_sum_launch(
    num_slices: int,
    dim: int,
    split_d: int,
    *,
    block_s: int = 16,
    block_d: int = 128,
    num_warps: int = 4,
) -> Launch:
    """The draw-only floor over ``(num_slices, dim)`` in splits of ``split_d``: buffers
    ``seed_ptr`` ``(1,)`` int64 and ``out_ptr`` (one float32 partial per program).

    Raises ``ValueError`` for sizes out of range, ``split_d < 1`` or a tile that is
    not powers of 2 (``block_s >= 4``).
    """
    _check_sizes(num_slices, dim)
    _check_tile(block_s, block_d)
    if split_d < 1:
        raise ValueError(f"split_d must be >= 1, got {split_d}")
    grid = (cdiv(num_slices, block_s), cdiv(dim, split_d))
    args = {"seed_ptr": _SEED, "out_ptr": Buffer(torch.float32, (grid[0] * grid[1],))}
    args |= {"S": num_slices, "D": dim, "split_d": split_d}
    meta = {"BLOCK_S": block_s, "BLOCK_D": block_d, **_STREAM}
    return Launch(kern.draw_sum_kernel, args, meta, lambda m: grid, num_warps)


def philox_normals(
    num_slices: int,
    col_start: int,
    col_stop: int,
    seed: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    block_s: int | None = None,
    block_d: int | None = None,
) -> torch.Tensor:
    """Unnormalised directions ``v[:, col_start:col_stop]`` as float32 ``(s, cols)``.

    Any window ``0 <= col_start < col_stop < 2**31``. ``out``, if given, is written
    in place (used by tests to poison it first); ``block_s`` (a power of 2, >= 4)
    and ``block_d`` (a power of 2) override the tile (the values do not depend on it).
    """
    _check_seed(seed)
    cols = col_stop - col_start
    if out is not None and (
        out.shape != (num_slices, cols) or out.dtype != torch.float32 or out.stride(1) != 1
    ):
        raise ValueError(f"out must be float32 ({num_slices}, {cols}) with unit column stride")
    stride = None if out is None else out.stride(0)
    launch = normals_launch(
        num_slices, col_start, col_stop, block_s=block_s, block_d=block_d, stride_out=stride
    )
    bufs = launch.bind(seed.device, seed_ptr=seed, out_ptr=out)
    launch.run(bufs)
    return bufs["out_ptr"]


def sample_directions_triton(
    num_slices: int, dim: int, seed: torch.Tensor, out_dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The unit directions ``theta_k = v_k / ||v_k||`` that the fused kernels use.

    Args:
        num_slices: ``s >= 1``.
        dim: ``d >= 1``.
        seed: ``(1,)`` int64 tensor; its device is the output device (a CPU
            tensor runs the same kernel under ``TRITON_INTERPRET=1``).
        out_dtype: output dtype; the draw is float32 and is normalised in float64
            for a float64 output, in float32 otherwise (as the CPU stream does).

    Returns:
        ``(num_slices, dim)`` tensor of unit rows (a row drawn all zeros, possible only at
        ``dim = 1``, about one row in 2**23, stays zero: the fused kernels give it
        ``p = 0``).
    """
    _check_seed(seed)
    _check_sizes(num_slices, dim)
    v = philox_normals(num_slices, 0, dim, seed)
    v = v.to(accumulation_dtype(out_dtype))
    norm = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    # an all-zero row (d = 1 only, about one row in 2**23) stays zero, as the fused kernels
    # count it (p = 0), instead of 0/0
    return (v / torch.where(norm > 0, norm, 1.0)).to(out_dtype)


def philox_words(seed: torch.Tensor, q: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Raw Philox output words ``(n, 4)`` (int64 holding uint32) for counters ``(j, q, 0, 0)``.

    Directions ``v[4q + w, j]`` are made from these words (Box-Muller on words
    ``(0, 1)`` and ``(2, 3)``), by the same ``philox_words4`` the kernels inline.
    For tests against an independent Philox4x32-10. ``q`` and ``j`` are 1-d and
    hold values in ``[0, 2**32)``.
    """
    _check_seed(seed)
    if q.shape != j.shape or q.dim() != 1:
        raise ValueError("q and j must be 1-d tensors of the same length")
    q = q.to(device=seed.device, dtype=torch.int64).contiguous()
    j = j.to(device=seed.device, dtype=torch.int64).contiguous()
    launch = words_launch(q.numel())
    bufs = launch.bind(seed.device, seed_ptr=seed, q_ptr=q, j_ptr=j)
    launch.run(bufs)
    return bufs["out_ptr"]


def draw_and_sum(
    num_slices: int,
    dim: int,
    seed: torch.Tensor,
    *,
    split_d: int,
    block_s: int = 16,
    block_d: int = 128,
    num_warps: int = 4,
) -> torch.Tensor:
    """Draw all ``s x d`` normals the way the fused forward does and sum them.

    The benchmark floor (docs/design.md, "Measuring performance"): the fused forward
    and backward each draw ``s*d`` normals, so twice this kernel's time is the draw
    part of the floor.
    Returns the per-program partial sums (float32), so the work cannot be elided.
    """
    _check_seed(seed)
    tile = {"block_s": block_s, "block_d": block_d, "num_warps": num_warps}
    launch = draw_sum_launch(num_slices, dim, split_d, **tile)
    bufs = launch.bind(seed.device, seed_ptr=seed)
    launch.run(bufs)
    return bufs["out_ptr"]
