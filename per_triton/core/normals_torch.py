"""The CPU stream in torch operations: the fallback sampler and the tests' oracle.

The same operations as ``philox_normals.c``, in the same order, on int64 tensors
holding 32-bit words and on float32 tensors, so the bits are the C sampler's
(docs/design.md, "The CPU stream"). :func:`normals_block` is what
:func:`per_triton.core.normals.fill` copies when no compiled sampler loads.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["key_words", "normals_block", "philox"]

_M32 = 0xFFFFFFFF
_PHILOX_M0, _PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
_PHILOX_W0, _PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
#: Floor of the squared radius ``-2 ln u`` (float32 ``2**-24``): reached only at ``u = 1``.
_R2_MIN = 5.9604644775390625e-08


def key_words(key: int) -> tuple[int, int]:
    """The Philox key ``(k0, k1)``: low and high 32 bits of a 64-bit key."""
    return key & _M32, (key >> 32) & _M32


def _f32(x: float) -> torch.Tensor:
    return torch.tensor(np.float32(x))


def philox(k0: int, k1: int, c0: torch.Tensor, c1: torch.Tensor):
    """Philox4x32-10 of counters ``(c0, c1, 0, 0)`` (int64 tensors holding 32-bit words).

    Returns the four output words ``(w0, w1, w2, w3)``, int64 tensors of ``c0``'s shape.
    """
    c2 = torch.zeros_like(c0)
    c3 = torch.zeros_like(c0)
    for _ in range(10):
        p0 = c0 * _PHILOX_M0  # < 2**64: int64 wraps, the bits are the product's
        p1 = c2 * _PHILOX_M1
        n0 = ((p1 >> 32) & _M32) ^ c1 ^ k0
        n2 = ((p0 >> 32) & _M32) ^ c3 ^ k1
        c1, c3, c0, c2 = p1 & _M32, p0 & _M32, n0, n2
        k0, k1 = (k0 + _PHILOX_W0) & _M32, (k1 + _PHILOX_W1) & _M32
    return c0, c1, c2, c3


def _radius(w: torch.Tensor) -> torch.Tensor:
    """``sqrt(max(-2 ln u, 2**-24))`` with ``u = ((w >> 8) + 1) * 2**-24`` (float32).

    The floor changes only ``u = 1`` (about one word in 2**24), whose radius would be 0
    and would make an all-zero direction row at ``d <= 2``.
    """
    u = ((w >> 8) + 1).to(torch.float32) * _f32(5.9604644775390625e-08)
    ix = u.view(torch.int32)
    e = ((ix >> 23) & 0xFF) - 127
    m = ((ix & 0x7FFFFF) | 0x3F800000).view(torch.float32)
    big = m > _f32(1.41421354)
    m = torch.where(big, m * _f32(0.5), m)
    e = e + big.to(torch.int32)
    t = (m - _f32(1.0)) / (m + _f32(1.0))
    t2 = t * t
    p = t2 * _f32(0.111111112)
    p = (p + _f32(0.142857149)) * t2
    p = (p + _f32(0.200000003)) * t2
    p = (p + _f32(0.333333343)) * t2
    p = p + _f32(1.0)
    ln_m = (t + t) * p
    fe = e.to(torch.float32)
    ln_u = fe * _f32(0.693145752) + (ln_m + fe * _f32(1.42860677e-06))
    # torch.sqrt on float32 is not correctly rounded (its vector code differs from
    # IEEE sqrt); float64 then rounding to float32 is (p >= 2*24 + 2).
    return torch.sqrt((ln_u * _f32(-2.0)).clamp_min(_R2_MIN).double()).float()


def _box_muller(w0: torch.Tensor, w1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two normals ``(r cos a, r sin a)`` of the words ``(w0, w1)`` (float32)."""
    r = _radius(w0)
    q = w1 >> 30
    x = ((w1 >> 7) & 0x7FFFFF).to(torch.float32) + _f32(0.5)
    x = x * _f32(1.87253681e-07) - _f32(0.785398185)
    x2 = x * x
    s = x2 * _f32(2.75573188e-06)
    s = (s - _f32(1.98412701e-04)) * x2
    s = (s + _f32(8.33333377e-03)) * x2
    s = (s - _f32(0.166666672)) * x2
    s = (s + _f32(1.0)) * x
    c = x2 * _f32(-2.75573188e-07)
    c = (c + _f32(2.48015876e-05)) * x2
    c = (c - _f32(1.38888892e-03)) * x2
    c = (c + _f32(4.16666679e-02)) * x2
    c = (c - _f32(0.5)) * x2
    c = c + _f32(1.0)
    sin_a = (s + c) * _f32(0.707106769)
    cos_a = (c - s) * _f32(0.707106769)
    cq = torch.where(q == 0, cos_a, torch.where(q == 1, -sin_a, torch.where(q == 2, -cos_a, sin_a)))
    sq = torch.where(q == 0, sin_a, torch.where(q == 1, cos_a, torch.where(q == 2, -sin_a, -cos_a)))
    return r * cq, r * sq


def normals_block(k0: int, k1: int, row0: int, rows: int, col0: int, cols: int) -> torch.Tensor:
    """``v[row0 : row0 + rows, col0 : col0 + cols]`` of the key ``(k0, k1)``.

    A new float32 ``(rows, cols)`` CPU tensor (``rows, cols >= 1``), bit for bit the
    C sampler's.
    """
    first, last = col0 // 4, (col0 + cols - 1) // 4
    groups = torch.arange(first, last + 1, dtype=torch.int64).expand(rows, -1)
    row = torch.arange(row0, row0 + rows, dtype=torch.int64)[:, None].expand_as(groups)
    w0, w1, w2, w3 = philox(k0, k1, groups & _M32, row & _M32)
    z0, z1 = _box_muller(w0, w1)
    z2, z3 = _box_muller(w2, w3)
    full = torch.stack((z0, z1, z2, z3), dim=2).reshape(rows, -1)
    return full[:, col0 - 4 * first : col0 - 4 * first + cols]
