"""The CPU direction stream: counter-based Philox4x32-10 normals (docs/design.md, "The CPU stream").

``v[k, j]`` is normal number ``j mod 4`` of Philox4x32-10 (Salmon, Moraes, Dror &
Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011) at counter
``(j // 4, k, 0, 0)`` under a 64-bit key, turned into normals by Box-Muller
(the exact formulas are in ``philox_normals.c``). It is a pure function of
``(key, k, j)``: any rectangle of rows and columns is drawn on its own, straight
into a row-major ``(rows, cols)`` matrix, on any number of threads.

Two implementations give the same bits:

- ``philox_normals.c``, compiled on first use with the system C compiler
  (``$CC``, ``cc``, ``gcc`` or ``clang``) into a cache folder
  (``$PER_TRITON_CACHE_DIR``, else ``$XDG_CACHE_HOME/per_triton`` or
  ``~/.cache/per_triton``; a per-user folder under the temporary directory if that
  cannot be written) and called through ctypes, which releases the GIL: 1.7 ns per
  normal on one core of the 2-core CI machine (AVX-512 build; 2.5 ns built for AVX2),
  against 3.6 ns for ``torch.randn`` (mt19937) on the same core
  (``scripts/sampler_speed.py``);
- the same operations in torch (int64 and float32 tensor arithmetic), about 40 ns
  per normal, used when no compiler works (a warning says so once) or when
  ``PER_TRITON_CPU_SAMPLER=torch``.

The logarithm, sine and cosine are fixed polynomials evaluated one IEEE float32
operation at a time (no fused multiply-add, no libm), so the values do not depend on
the machine, the vector width or the implementation. ``u`` has 24 bits, so
``|v| <= sqrt(-2 ln 2**-24) = 5.77`` (as with ``torch.randn``'s Box-Muller).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["backend", "fill", "normals"]

ENV_SAMPLER = "PER_TRITON_CPU_SAMPLER"
ENV_CACHE = "PER_TRITON_CACHE_DIR"
SOURCE = Path(__file__).with_name("philox_normals.c")
CFLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC"]

_M32 = 0xFFFFFFFF
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False


def cache_dir() -> Path:
    """Where the compiled sampler is kept (created on demand)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "per_triton"


def _compiler() -> list[str] | None:
    """The compiler command: ``$CC`` (split like a shell, e.g. ``ccache gcc``), else the
    first of ``cc``, ``gcc``, ``clang`` on ``PATH``. A ``$CC`` that is not found is an
    error (the caller's warning names it), not silently replaced."""
    if os.environ.get("CC", "").strip():
        words = shlex.split(os.environ["CC"])
        if not shutil.which(words[0]):
            raise RuntimeError(f"CC={os.environ['CC']!r} is not an executable on PATH")
        return [shutil.which(words[0]), *words[1:]]
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return [shutil.which(name)]
    return None


def library_name(cc: list[str]) -> str:
    """File name of the built sampler: one per source, compiler command, flags and platform."""
    tag = hashlib.blake2b(
        SOURCE.read_bytes()
        + " ".join(cc).encode()
        + " ".join(CFLAGS).encode()
        + platform.platform().encode(),
        digest_size=8,
    ).hexdigest()
    return f"philox_normals-{tag}.so"


def _private_folder(folder: Path) -> bool:
    """A folder only this user can write (checked before loading code from it)."""
    info = folder.stat()
    owner = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return stat.S_ISDIR(info.st_mode) and owner and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _build(cc: list[str]) -> Path:
    """Compile the sampler once per source, compiler and platform; atomic against races.

    Built in :func:`cache_dir`, or, when that folder cannot be created or written, in
    a per-user folder under the temporary directory, created with mode 0700 and used
    only if this user owns it and nobody else can write it.
    """
    name = library_name(cc)
    user = os.getuid() if hasattr(os, "getuid") else "user"
    shared = Path(tempfile.gettempdir()) / f"per_triton-{user}"
    for folder in (cache_dir(), shared):
        target = folder / name
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder == shared and not _private_folder(folder):
                raise PermissionError(f"{folder} is not private to this user")
            if target.exists():
                return target
            tmp = tempfile.mkdtemp(dir=folder)
        except OSError as exc:  # not a folder, not writable, not ours: try the next one
            error = exc
            continue
        try:
            out = Path(tmp) / target.name
            subprocess.run(
                [*cc, *CFLAGS, "-o", str(out), str(SOURCE)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            if not out.is_file():
                raise RuntimeError(f"{' '.join(cc)} wrote no {out.name}")
            os.replace(out, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target
    raise RuntimeError(f"no folder to build the sampler in ({error})")


def _known_answer_ok(lib: ctypes.CDLL) -> bool:
    """The loaded sampler draws what the torch implementation draws (a 3 x 9 block)."""
    out = torch.empty(3, 9)
    k0, k1 = key_words(0x0123456789ABCDEF)
    lib.per_triton_normals(k0, k1, 5, 3, 2, 9, out.data_ptr(), 9)
    return torch.equal(out, _torch_normals(k0, k1, 5, 3, 2, 9))


def _load() -> ctypes.CDLL | None:
    """The compiled sampler, or None (torch fallback): built and loaded once per process."""
    global _lib, _tried
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        choice = os.environ.get(ENV_SAMPLER, "").strip().lower() or "auto"
        if choice not in ("auto", "c", "torch"):
            raise ValueError(f"{ENV_SAMPLER} must be auto, c or torch; got {choice!r}")
        lib = None
        if choice != "torch":
            try:
                cc = _compiler()
                if cc is None:
                    raise RuntimeError("no C compiler found ($CC, cc, gcc, clang)")
                path = _build(cc)
                lib = ctypes.CDLL(str(path))
                fn = lib.per_triton_normals
                fn.restype = None
                fn.argtypes = (
                    [ctypes.c_uint32, ctypes.c_uint32]
                    + [ctypes.c_int64] * 4
                    + [
                        ctypes.c_void_p,
                        ctypes.c_int64,
                    ]
                )
                if not _known_answer_ok(lib):
                    raise RuntimeError(f"{path} does not draw the CPU stream (known-answer check)")
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                message = f"{exc} {detail.decode(errors='replace')[:500]}".strip()
                if choice == "c":
                    raise RuntimeError(
                        f"{ENV_SAMPLER}=c but the C sampler failed: {message}"
                    ) from exc
                warnings.warn(
                    f"per_triton: the C sampler of the CPU path is unavailable ({message}); "
                    "the same directions come from torch operations, about 24x slower. "
                    "Install a C compiler (gcc or clang) or set CC to one; set "
                    f"{ENV_SAMPLER}=torch to choose the torch sampler without this warning",
                    RuntimeWarning,
                    stacklevel=3,
                )
                lib = None
        _lib, _tried = lib, True
        return _lib


def backend() -> str:
    """``"c"`` (the compiled sampler) or ``"torch"`` (the fallback) for this process."""
    return "c" if _load() is not None else "torch"


def key_words(key: int) -> tuple[int, int]:
    """The Philox key ``(k0, k1)``: low and high 32 bits of a 64-bit key."""
    return key & _M32, (key >> 32) & _M32


def fill(key: int, row0: int, col0: int, out: torch.Tensor) -> torch.Tensor:
    """Write ``v[row0 + r, col0 + i]`` into ``out[r, i]`` and return ``out``.

    Args:
        key: the 64-bit Philox key (:func:`per_triton.seeds.cpu_stream_key` of a seed).
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
    out.copy_(_torch_normals(k0, k1, row0, rows, col0, cols))
    return out


def normals(key: int, rows: int, cols: int, row0: int = 0, col0: int = 0) -> torch.Tensor:
    """``v[row0 : row0 + rows, col0 : col0 + cols]`` as a new float32 ``(rows, cols)``
    CPU tensor (:func:`fill` into fresh memory)."""
    return fill(key, row0, col0, torch.empty(rows, cols))


# -- the torch implementation (same operations, same order, same bits) ---------------

_PHILOX_M0, _PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
_PHILOX_W0, _PHILOX_W1 = 0x9E3779B9, 0xBB67AE85


def _f32(x: float) -> torch.Tensor:
    return torch.tensor(np.float32(x))


def _philox_torch(k0: int, k1: int, c0: torch.Tensor, c1: torch.Tensor):
    """Philox4x32-10 of counters ``(c0, c1, 0, 0)`` (int64 tensors holding 32-bit words)."""
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


def _radius_torch(w: torch.Tensor) -> torch.Tensor:
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
    # IEEE sqrt in about 1 case in 5); float64 then rounding to float32 is (p >= 2*24 + 2).
    return torch.sqrt((ln_u * _f32(-2.0)).double()).float()


def _box_muller_torch(w0: torch.Tensor, w1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = _radius_torch(w0)
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


def _torch_normals(k0: int, k1: int, row0: int, rows: int, col0: int, cols: int) -> torch.Tensor:
    first, last = col0 // 4, (col0 + cols - 1) // 4
    groups = torch.arange(first, last + 1, dtype=torch.int64).expand(rows, -1)
    row = torch.arange(row0, row0 + rows, dtype=torch.int64)[:, None].expand_as(groups)
    w0, w1, w2, w3 = _philox_torch(k0, k1, groups & _M32, row & _M32)
    z0, z1 = _box_muller_torch(w0, w1)
    z2, z3 = _box_muller_torch(w2, w3)
    full = torch.stack((z0, z1, z2, z3), dim=2).reshape(rows, -1)
    return full[:, col0 - 4 * first : col0 - 4 * first + cols]


if sys.platform == "win32":  # ctypes loads .dll there; the C path is for POSIX builds
    _tried = True
