"""The CPU direction stream: counter-based Philox4x32-10 normals (docs/design.md, "The CPU stream").

``v[k, j]`` is normal number ``j mod 4`` of Philox4x32-10 (Salmon, Moraes, Dror &
Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011) at counter
``(j // 4, k, 0, 0)`` under a 64-bit key, turned into normals by Box-Muller
(the exact formulas are in ``philox_normals.c``). It is a pure function of
``(key, k, j)``: any rectangle of rows and columns is drawn on its own, straight
into a row-major ``(rows, cols)`` matrix, on any number of threads.

Two implementations give the same bits: ``philox_normals.c``, called through ctypes
(which releases the GIL; found, built and loaded by :mod:`per_triton.core.normals_c`),
and the same operations in torch (:mod:`per_triton.core.normals_torch`), the
fallback. :func:`sampler` names the one in use: ``"c-packaged"``, ``"c-cached"``,
``"c-built"`` (the order they are looked for in) or ``"torch"``, taken with one
warning giving the reason when no compiled sampler can be had, or chosen with
``PER_TRITON_CPU_SAMPLER=torch`` (``=c`` makes a missing C sampler an error).
Load order, warnings and costs: docs/cpu-sampler.md.

The logarithm, sine and cosine are fixed polynomials evaluated one IEEE float32
operation at a time (no fused multiply-add, no libm), so the values do not depend on
the machine, the vector width or the implementation. ``u`` has 24 bits, so
``|v| <= sqrt(-2 ln 2**-24) = 5.77`` (as with ``torch.randn``'s Box-Muller).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import warnings

import torch

from per_triton.core import normals_c
from per_triton.core.normals_torch import key_words, normals_block

__all__ = ["backend", "fill", "normals", "sampler"]

ENV_SAMPLER = "PER_TRITON_CPU_SAMPLER"

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_origin = "torch"


def _load() -> ctypes.CDLL | None:
    """The compiled sampler, or None (torch fallback): found and loaded once per process."""
    global _lib, _tried, _origin
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        choice = os.environ.get(ENV_SAMPLER, "").strip().lower() or "auto"
        if choice not in ("auto", "c", "torch"):
            raise ValueError(f"{ENV_SAMPLER} must be auto, c or torch; got {choice!r}")
        lib, origin = None, "torch"
        if choice != "torch":
            try:
                lib, origin = normals_c.find()
            except normals_c.Unavailable as exc:
                if choice == "c":
                    raise RuntimeError(f"{ENV_SAMPLER}=c but the C sampler failed: {exc}") from exc
                warnings.warn(
                    f"per_triton: the C sampler of the CPU path is unavailable: {exc}. The "
                    "same directions come from torch operations, about 10-20x slower "
                    f"(docs/cpu-sampler.md). To fix: {exc.advice}; or set {ENV_SAMPLER}=torch "
                    "to choose the torch sampler without this warning",
                    RuntimeWarning,
                    stacklevel=3,
                )
        _lib, _origin, _tried = lib, origin, True
        return _lib


def backend() -> str:
    """``"c"`` (a compiled sampler) or ``"torch"`` (the fallback) for this process."""
    return "c" if _load() is not None else "torch"


def sampler() -> str:
    """Which sampler draws this process's CPU stream: ``"c-packaged"``, ``"c-cached"``,
    ``"c-built"`` or ``"torch"`` (recorded in the benchmark result files)."""
    _load()
    return _origin


def fill(key: int, row0: int, col0: int, out: torch.Tensor) -> torch.Tensor:
    """Write ``v[row0 + r, col0 + i]`` into ``out[r, i]`` and return ``out``.

    Args:
        key: the 64-bit Philox key (:func:`per_triton.core.seeds.cpu_stream_key` of a seed).
        row0, col0: the first direction ``k`` and coordinate ``j`` (non-negative ints).
        out: float32 CPU ``(rows, cols)`` with unit column stride (row stride free, so
            a column range of a wider matrix can be filled in place).

    Returns:
        ``out``, holding standard normals (float32; the CPU stream of
        docs/design.md, "The CPU stream").

    Raises:
        ValueError: ``out`` is not a 2-d float32 CPU tensor with unit column stride.
    """
    if out.dtype != torch.float32 or out.device.type != "cpu" or out.dim() != 2:
        raise ValueError("out must be a 2-d float32 CPU tensor")
    rows, cols = out.shape
    if rows == 0 or cols == 0:
        return out
    if out.stride(1) != 1:
        raise ValueError("out must have unit column stride")
    k0, k1 = key_words(key)
    lib = _load()
    if lib is not None:
        lib.per_triton_normals(k0, k1, row0, rows, col0, cols, out.data_ptr(), out.stride(0))
        return out
    out.copy_(normals_block(k0, k1, row0, rows, col0, cols))
    return out


def normals(key: int, rows: int, cols: int, row0: int = 0, col0: int = 0) -> torch.Tensor:
    """``v[row0 : row0 + rows, col0 : col0 + cols]`` as a new float32 ``(rows, cols)``
    CPU tensor (:func:`fill` into fresh memory)."""
    return fill(key, row0, col0, torch.empty(rows, cols))


if sys.platform == "win32":  # ctypes loads .dll there; the C path is for POSIX builds
    _tried = True
