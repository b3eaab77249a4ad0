"""The random directions of PER (DESIGN.md section 2).

Directions are ``theta_k = v_k / ||v_k||`` with ``v_k ~ N(0, I_d)``, always drawn in
float32. They are a pure function of ``(seed, k, j)`` and of the device kind.

CPU stream: coordinates are cut into blocks of :data:`STREAM_BLOCK`; block ``c``
gets its own ``torch.Generator`` seeded with ``mix(seed, c)``, which draws an
``(s, STREAM_BLOCK)`` row-major tile; ``v[k, j]`` is entry ``(k, j - c*STREAM_BLOCK)``
of that tile. Any block can be regenerated on its own (the backward pass does),
the working chunk of the CPU path is a whole number of blocks, and since torch
fills a tile row by row, row ``k`` does not depend on ``s``. CUDA uses Philox
kernels (``per_triton.kernels``), a different stream.
"""

from __future__ import annotations

import torch

from ._validation import check_positive_int, seed_tensor

__all__ = ["STREAM_BLOCK", "block_seed", "draw_block", "draw_columns", "sample_directions"]

STREAM_BLOCK = 256
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def block_seed(seed: int, block: int) -> int:
    """Seed of coordinate block ``block``: splitmix64 of ``seed + (block + 1) * golden``."""
    z = (seed + (block + 1) * _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def draw_block(
    seed: int, num_slices: int, block: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Unnormalised Gaussian tile ``(s, STREAM_BLOCK)`` of block ``block`` (float32, CPU)."""
    gen = torch.Generator()
    gen.manual_seed(block_seed(seed, block))
    if out is None:
        return torch.randn(num_slices, STREAM_BLOCK, generator=gen)
    return torch.randn(num_slices, STREAM_BLOCK, generator=gen, out=out)


def draw_columns(
    seed: int, num_slices: int, start: int, stop: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Unnormalised directions ``v[:, start:stop]`` (float32, CPU); ``start`` is block-aligned.

    With ``out`` (float32, at least ``(s, stop - start)``), the columns are written
    there and a view of it is returned: no allocation proportional to the width.
    """
    if start % STREAM_BLOCK:
        raise ValueError(f"start must be a multiple of {STREAM_BLOCK}, got {start}")
    width = stop - start
    if out is None:
        out = torch.empty(num_slices, width)
    tile = torch.empty(num_slices, STREAM_BLOCK)
    for offset in range(0, width, STREAM_BLOCK):
        draw_block(seed, num_slices, (start + offset) // STREAM_BLOCK, out=tile)
        cols = min(STREAM_BLOCK, width - offset)
        out[:, offset : offset + cols].copy_(tile[:, :cols])
    return out[:, :width]


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def sample_directions(
    num_slices: int,
    dim: int,
    seed: int | torch.Tensor,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Materialise the unit directions that :func:`per_triton.per_loss` uses.

    Args:
        num_slices: number of directions ``s >= 1``.
        dim: dimension ``d >= 1`` of each direction.
        seed: int in ``[0, 2**63)`` or a ``(1,)`` int64 tensor on ``device``.
        device: device kind whose stream is used (``"cpu"`` or ``"cuda"``).
        dtype: output dtype; the draw is float32, normalised in float64 for a
            float64 output and in float32 otherwise.

    Returns:
        ``(num_slices, dim)`` tensor with unit rows.

    Raises:
        TypeError / ValueError naming the bad argument.

    Example:
        >>> theta = sample_directions(256, 784, seed=0)
        >>> h = torch.randn(32, 784)
        >>> reference.per_loss(h, theta) == per_loss(h, 256, seed=0)  # up to rounding
    """
    check_positive_int(num_slices, "num_slices")
    check_positive_int(dim, "dim")
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    device = torch.device(device)
    seed_t = seed_tensor(seed, device)
    if device.type == "cuda":
        # CUDA stream: the Philox kernel of the fused family (per_triton.kernels).
        from per_triton.kernels.philox_directions import sample_directions_triton

        return sample_directions_triton(num_slices, dim, seed_t, dtype)
    if device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device}")
    v = draw_columns(int(seed_t.item()), num_slices, 0, dim).to(accumulation_dtype(dtype))
    return (v / torch.linalg.vector_norm(v, dim=1, keepdim=True)).to(dtype)
