"""The CUDA direction stream: Philox4x32-10 Gaussian tiles (docs/design.md, "The CUDA stream").

PER draws ``s`` directions ``theta_k = v_k / ||v_k||`` with ``v_k ~ N(0, I_d)``
(Eq. 5). On CUDA, and under ``TRITON_INTERPRET=1`` on CPU tensors, ``v[k, j]`` is a
pure function of ``(seed, k, j)``:

* slices ``k = 4q .. 4q+3`` at coordinate ``j`` share one Philox4x32-10 call whose
  counter is ``(c0, c1, c2, c3) = (j, q, 0, 0)`` and whose key is
  ``(seed & 0xFFFFFFFF, seed >> 32)``; its words are ``w0 .. w3``;
* word ``w`` of the pair ``(a, b)`` = ``(w0, w1)`` or ``(w2, w3)`` becomes
  ``u = 2 - f(a)`` in ``[2**-23, 1]`` and ``theta = 2 pi f(b) - 3 pi`` in
  ``[-pi, pi)``, where ``f(w) = bitcast<float32>(0x3F800000 | (w & 0x7FFFFF))`` is
  in ``[1, 2)`` (the low 23 bits as a mantissa); ``r = sqrt(max(-2 ln 2 * log2(u), 2**-24))``
  (the floor moves only ``u = 1``, and any ``u`` whose approximate ``log2`` rounds to
  0 or above, to ``r = 2**-12``: no coordinate is exactly 0, so no row of a ``d = 1``
  draw is all zeros);
* ``v[4q, j] = r01 cos(theta01)``, ``v[4q+1, j] = r01 sin(theta01)``,
  ``v[4q+2, j] = r23 cos(theta23)``, ``v[4q+3, j] = r23 sin(theta23)``
  (Box-Muller; ``r`` from the first word of a pair, the angle from the second).

The word-to-coordinate mapping is fixed and needs no layout change in a kernel: a
tile of slices ``[4 q0, 4 q0 + BLOCK_S)`` and coordinates ``[j0, j0 + BLOCK_D)``
is four ``(BLOCK_S / 4, BLOCK_D)`` register tiles, one per word, each a strided set
of rows (``4q + w``), consumed as they are (four chained ``tl.dot``).

On the GPU ``log2``, ``sin`` and ``cos`` run on the special-function unit
(``lg2.approx``, ``sin.approx``, ``cos.approx``, inline PTX) and ``sqrt`` is
``sqrt.approx`` (``tl.sqrt``); the interpreter has no inline PTX and evaluates the
same expressions with numpy's float32 ``log2``/``sin``/``cos``/``sqrt`` instead.
The integer stream, the bit-to-float conversions and the angle reduction are the
same code on both. Error bound against float64 Box-Muller of the same words
(:func:`box_muller_error_bound`): with ``r`` the float64 radius and
``L = log2(u)``,

``|v - v64| <= r (2**-21.41 + 2**-22 + 1e-6) + min(sqrt(dt), dt / r) + 2**-21 r``,
``dt = 2 ln 2 * 2**-22 * max(1, |L|) + 2**-23 r**2``,

from the CUDA Programming Guide's bounds for the intrinsics (``__sinf``/``__cosf``:
absolute ``2**-21.41`` on ``[-pi, pi]``; ``__log2f``: absolute ``2**-22`` on
``[0.5, 2]``, 2 ulp elsewhere; ``sqrt.approx``: taken as relative ``2**-21``) and
float32 rounding (angle, fused or not: ``1e-6``). It is at most ``1.2e-5`` for ``r >= 0.05``
(all but 0.13 % of pairs) and at most ``6e-4`` anywhere. ``u >= 2**-23`` caps
``|v|`` at ``r_max = sqrt(46 ln 2) = 5.65`` (Triton's ``randn`` caps at 5.68):
``P(|z| > 5.65) = 1.6e-8`` for a true normal.

Nothing here depends on block sizes, grids, ``s`` or ``d``: row ``k`` of a
``(s, d)`` draw is a prefix of row ``k`` of any larger draw. ``j`` and ``q`` sit in
separate 32-bit counter words, so no index wraps for ``s < 2**31``, ``d < 2**31``.

This file holds the stream itself: the in-register tile generator
:func:`gaussian_quad` that every kernel inlines (the fused kernels of
:mod:`per_triton.kernels.per_fused_kernels`, the direction kernels of
:mod:`per_triton.kernels.philox_kernels`) and the error bound
:func:`box_muller_error_bound`.
"""

from __future__ import annotations

import math
import os

import numpy as np
import triton
import triton.language as tl

__all__ = [
    "PHILOX_ROUNDS",
    "SFU",
    "box_muller",
    "box_muller_error_bound",
    "gaussian_quad",
    "philox_words4",
]

#: Philox rounds per call (the published Philox4x32-10).
PHILOX_ROUNDS = 10

#: Whether the kernels evaluate log2/sin/cos with inline PTX on the special-function
#: unit (the GPU) or with ``tl.log2``/``tl.sin``/``tl.cos`` (the interpreter).
SFU = os.environ.get("TRITON_INTERPRET", "0") != "1"

_PHILOX_A = tl.constexpr(0xD2511F53)
_PHILOX_B = tl.constexpr(0xCD9E8D57)
_KEY_A = tl.constexpr(0x9E3779B9)
_KEY_B = tl.constexpr(0xBB67AE85)
_TWO_PI = tl.constexpr(2.0 * math.pi)
_THREE_PI = tl.constexpr(3.0 * math.pi)
_M2LN2 = tl.constexpr(-2.0 * math.log(2.0))
#: Floor of ``r**2`` (``2**-24``): ``u = 1`` would give ``r = 0``, and ``lg2.approx`` may
#: round ``log2(u)`` to 0 or above it for ``u`` just below 1 (an all-zero row at ``d = 1``).
_R2_MIN = tl.constexpr(2.0**-24)


# --------------------------------------------------------------------------- kernels


@triton.jit
def _mul_wide(a, x):
    """``(hi, lo)`` of the 64-bit product of the constant ``a`` and uint32 ``x``.

    One ``mul.wide.u32`` (``IMAD.WIDE.U32``) instead of ``mul.hi`` plus ``mul.lo``.
    """
    p = x.to(tl.uint64) * a
    return (p >> 32).to(tl.uint32), p.to(tl.uint32)


@triton.jit
def _philox_round(c0, c1, c2, c3, k0, k1):
    """One Philox4x32 round (Salmon et al., SC'11); shapes broadcast."""
    hi_b, lo_b = _mul_wide(_PHILOX_B, c2)
    hi_a, lo_a = _mul_wide(_PHILOX_A, c0)
    return hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a


@triton.jit
def philox_words4(seed, c0, c1, N_ROUNDS: tl.constexpr):
    """Philox4x32 words for counters ``(c0, c1, 0, 0)``, key ``(seed_lo, seed_hi)``.

    ``c0`` and ``c1`` are uint32 blocks that broadcast against each other (a row of
    coordinates and a column of slice groups): the first two rounds then run on
    the smaller shapes, where most of their work depends on one of them only.
    """
    seed = seed.to(tl.uint64)
    k0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    k1 = ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32)
    # round 1 with c2 = c3 = 0: c0' = c1 ^ k0, c1' = 0, c2' = hi(A c0) ^ k1, c3' = lo(A c0)
    r0 = c1 ^ k0
    hi_a, r3 = _mul_wide(_PHILOX_A, c0)
    r2 = hi_a ^ k1
    k0 = tl.add(k0, _KEY_A, sanitize_overflow=False)
    k1 = tl.add(k1, _KEY_B, sanitize_overflow=False)
    # round 2 with c1' = 0
    hi_b, n1 = _mul_wide(_PHILOX_B, r2)
    hi_a, n3 = _mul_wide(_PHILOX_A, r0)
    n0 = hi_b ^ k0
    n2 = hi_a ^ r3 ^ k1
    zero = (c0 ^ c1) & 0  # the broadcast shape, folded away
    x0, x1, x2, x3 = n0 + zero, n1 + zero, n2, n3 + zero
    for _ in tl.static_range(N_ROUNDS - 2):
        k0 = tl.add(k0, _KEY_A, sanitize_overflow=False)
        k1 = tl.add(k1, _KEY_B, sanitize_overflow=False)
        x0, x1, x2, x3 = _philox_round(x0, x1, x2, x3, k0, k1)
    return x0, x1, x2, x3


@triton.jit
def _mantissa(w):
    """``bitcast<float32>(0x3F800000 | (w & 0x7FFFFF))``: the low 23 bits as a float in [1, 2)."""
    return ((w & 0x7FFFFF) | 0x3F800000).to(tl.float32, bitcast=True)


@triton.jit
def _sfu(x, ASM: tl.constexpr):
    """One special-function-unit instruction (inline PTX ``ASM``) on float32 ``x``."""
    return tl.inline_asm_elementwise(ASM, "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def box_muller(wa, wb, SFU: tl.constexpr):
    """``(r cos theta, r sin theta)`` from two uint32 words (radius from ``wa``).

    ``SFU``: ``lg2``/``sin``/``cos`` as ``.approx.ftz`` PTX (GPU), else ``tl.log2``/
    ``tl.sin``/``tl.cos`` (the interpreter, which runs no inline PTX).
    """
    u = 2.0 - _mantissa(wa)  # (0, 1]: exact (Sterbenz), >= 2**-23
    theta = _mantissa(wb) * _TWO_PI - _THREE_PI  # [-pi, pi): one FMA
    if SFU:
        lg = _sfu(u, "lg2.approx.ftz.f32 $0, $1;")
        cos = _sfu(theta, "cos.approx.ftz.f32 $0, $1;")
        sin = _sfu(theta, "sin.approx.ftz.f32 $0, $1;")
    else:
        lg = tl.log2(u)
        cos = tl.cos(theta)
        sin = tl.sin(theta)
    r = tl.sqrt(tl.maximum(lg * _M2LN2, _R2_MIN))  # floor: u = 1 (or lg2.approx >= 0 near it)
    return r * cos, r * sin


@triton.jit
def gaussian_quad(seed, offs_q, offs_j, N_ROUNDS: tl.constexpr, SFU: tl.constexpr):
    """Four float32 tiles ``n_w[a, b] = v[4 offs_q[a] + w, offs_j[b]]``, ``w = 0..3``.

    ``seed`` is an int64 scalar, ``offs_q`` a block of slice groups (``k // 4``),
    ``offs_j`` a block of coordinates: one Philox call per ``(q, j)``, counter
    ``(j, q, 0, 0)``; words (0, 1) give slices ``4q, 4q+1``, words (2, 3) slices
    ``4q+2, 4q+3`` (Box-Muller). Tiles have shape ``(len(offs_q), len(offs_j))``.
    """
    c0 = offs_j.to(tl.uint32)[None, :]
    c1 = offs_q.to(tl.uint32)[:, None]
    w0, w1, w2, w3 = philox_words4(seed, c0, c1, N_ROUNDS)
    n0, n1 = box_muller(w0, w1, SFU)
    n2, n3 = box_muller(w2, w3, SFU)
    return n0, n1, n2, n3


def box_muller_error_bound(words: np.ndarray) -> np.ndarray:
    """Bound on ``|v - v64|`` for the four normals of each row of Philox ``words``.

    ``words`` is ``(n, 4)`` (uint32 values); the result is ``(n, 4)`` float64, the
    bound stated in this module's docstring for the special-function-unit
    transform against float64 Box-Muller of the same words (the interpreter's
    numpy float32 transform is far inside it).
    """
    w = np.asarray(words, dtype=np.int64)
    f = 1.0 + (w & 0x7FFFFF) / 2.0**23
    log2u = np.log2(2.0 - f[:, [0, 2]])  # radius words
    r = np.sqrt(-2.0 * math.log(2.0) * log2u)
    dt = 2.0 * math.log(2.0) * 2.0**-22 * np.maximum(1.0, -log2u) + 2.0**-23 * r**2
    with np.errstate(divide="ignore"):
        dr = np.minimum(np.sqrt(dt), dt / r) + 2.0**-21 * r
    per_pair = r * (2.0**-21.41 + 2.0**-22 + 1e-6) + dr
    return np.repeat(per_pair, 2, axis=1)
