"""The CPU direction stream: counter-based Philox4x32-10 normals (docs/design.md, "The CPU stream").

``v[k, j]`` is normal number ``j mod 4`` of Philox4x32-10 (Salmon, Moraes, Dror &
Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011) at counter
``(j // 4, k, 0, 0)`` under a 64-bit key, turned into normals by Box-Muller
(the exact formulas are in ``philox_normals.c``). It is a pure function of
``(key, k, j)``: any rectangle of rows and columns is drawn on its own, straight
into a row-major ``(rows, cols)`` matrix, on any number of threads.

Two implementations give the same bits: ``philox_normals.c``, called through ctypes
(which releases the GIL), and the same operations in torch (int64 and float32 tensor
arithmetic), the fallback. The compiled sampler is looked for in this order (the first
that loads and passes a known-answer check is used; :func:`sampler` names it):

1. ``"c-packaged"``: ``_philox_normals*.so`` inside the package, built with the wheel
   (``setup.py``; an optional build step, so a build without a compiler still installs);
2. ``"c-cached"``: a library built earlier from this source in the cache folder
   (``$PER_TRITON_CACHE_DIR``, else ``$XDG_CACHE_HOME/per_triton`` or
   ``~/.cache/per_triton``) or the private per-user temporary folder; no compiler needed;
3. ``"c-built"``: compiled now with ``$CC``, ``cc``, ``gcc`` or ``clang`` into the first
   of those folders that can be written;
4. ``"torch"``: the fallback, with one warning giving the reason (no compiler, no
   writable folder, the compiler's error, a library that draws other numbers), or
   chosen with ``PER_TRITON_CPU_SAMPLER=torch``. Costs: docs/cpu-sampler.md.

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

__all__ = ["backend", "fill", "normals", "sampler"]

ENV_SAMPLER = "PER_TRITON_CPU_SAMPLER"
ENV_CACHE = "PER_TRITON_CACHE_DIR"
SOURCE = Path(__file__).with_name("philox_normals.c")
CFLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC"]

_M32 = 0xFFFFFFFF
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_origin = "torch"


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


class Unavailable(RuntimeError):
    """Why a compiled sampler could not be had, with what would fix it."""

    def __init__(self, reason: str, advice: str) -> None:
        super().__init__(reason)
        self.advice = advice


def source_tag() -> str:
    """Hash of the source, flags and platform: builds with this tag draw this stream."""
    text = SOURCE.read_bytes() + " ".join(CFLAGS).encode()
    text += f"{sys.platform}-{platform.machine()}".encode()
    return hashlib.blake2b(text, digest_size=6).hexdigest()


def library_name(cc: list[str]) -> str:
    """File name of the built sampler: one per source, flags, platform and compiler."""
    tag = hashlib.blake2b(" ".join(cc).encode(), digest_size=4).hexdigest()
    return f"philox_normals-{source_tag()}-{tag}.so"


def _folders() -> list[Path]:
    """The cache folder, then the per-user folder under the temporary directory."""
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return [cache_dir(), Path(tempfile.gettempdir()) / f"per_triton-{user}"]


def _private_folder(folder: Path) -> bool:
    """A folder only this user can write (checked before loading code from it)."""
    info = folder.stat()
    owner = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return stat.S_ISDIR(info.st_mode) and owner and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _trusted(folder: Path) -> bool:
    """The cache folder if it exists; the shared temporary one only if private."""
    try:
        return folder.is_dir() and (folder == cache_dir() or _private_folder(folder))
    except OSError:
        return False


def packaged_libraries() -> list[Path]:
    """Samplers shipped inside the package (built with the wheel by ``setup.py``).

    ``PER_TRITON_PACKAGED_SAMPLER=0`` ignores them (the tests of the other load paths
    set it: an editable install builds the library into the checkout).
    """
    if os.environ.get("PER_TRITON_PACKAGED_SAMPLER", "1") == "0":
        return []
    return sorted(SOURCE.parent.glob("_philox_normals*.so"))


def cached_libraries() -> list[Path]:
    """Samplers built earlier from this very source, in the trusted folders."""
    pattern = f"philox_normals-{source_tag()}-*.so"
    folders = [folder for folder in _folders() if _trusted(folder)]
    return [lib for folder in folders for lib in sorted(folder.glob(pattern))]


def _compile(cc: list[str], folder: Path, target: Path) -> None:
    """Compile into ``folder`` then rename to ``target`` (atomic against races)."""
    tmp = tempfile.mkdtemp(dir=folder)
    try:
        out = Path(tmp) / target.name
        try:
            subprocess.run(
                [*cc, *CFLAGS, "-o", str(out), str(SOURCE)],
                check=True,
                capture_output=True,
                timeout=120,
            )
        except subprocess.CalledProcessError as exc:
            text = (exc.stderr or b"").decode(errors="replace").strip()[:500]
            raise Unavailable(
                f"building the C sampler with {' '.join(cc)} failed (exit {exc.returncode}): "
                f"{text}",
                "fix the compiler or set CC to a working one",
            ) from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise Unavailable(
                f"running the C compiler {' '.join(cc)} failed: {exc}",
                "fix the compiler or set CC to a working one",
            ) from exc
        if not out.is_file():
            raise Unavailable(f"{' '.join(cc)} wrote no {out.name}", "set CC to a working compiler")
        os.replace(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(cc: list[str]) -> Path:
    """Compile the sampler once per source, compiler and platform.

    Built in :func:`cache_dir`, or, when that folder cannot be created or written, in
    a per-user folder under the temporary directory, created with mode 0700 and used
    only if this user owns it and nobody else can write it.

    Raises:
        Unavailable: no folder can be written (naming each and why), or the build failed
            (with the compiler's message).
    """
    problems = []
    for folder in _folders():
        target = folder / library_name(cc)
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder != cache_dir() and not _private_folder(folder):
                raise PermissionError(f"{folder} is not private to this user")
            if target.exists():
                return target
            _compile(cc, folder, target)
            return target
        except OSError as exc:  # not a folder, not writable, not ours: try the next one
            problems.append(f"{folder}: {exc}")
    raise Unavailable(
        f"a C compiler is installed ({' '.join(cc)}) but no folder to build the sampler in "
        f"can be written ({'; '.join(problems)})",
        f"set {ENV_CACHE} to a writable folder",
    )


def _known_answer_ok(lib: ctypes.CDLL) -> bool:
    """The loaded sampler draws what the torch implementation draws (a 3 x 9 block)."""
    out = torch.empty(3, 9)
    k0, k1 = key_words(0x0123456789ABCDEF)
    lib.per_triton_normals(k0, k1, 5, 3, 2, 9, out.data_ptr(), 9)
    return torch.equal(out, _torch_normals(k0, k1, 5, 3, 2, 9))


def _open(path: Path) -> ctypes.CDLL:
    """Load ``path`` and check it draws the stream.

    Raises:
        OSError: it does not load. Unavailable: it draws other numbers.
    """
    lib = ctypes.CDLL(str(path))
    fn = lib.per_triton_normals
    fn.restype = None
    fn.argtypes = [ctypes.c_uint32, ctypes.c_uint32, *[ctypes.c_int64] * 4, ctypes.c_void_p]
    fn.argtypes += [ctypes.c_int64]
    if not _known_answer_ok(lib):
        raise Unavailable(
            f"{path} does not draw the CPU stream (known-answer check)",
            "delete it so that it is built again",
        )
    return lib


def _first_loadable(paths: list[Path], problems: list[str]) -> ctypes.CDLL | None:
    for path in paths:
        try:
            return _open(path)
        except (OSError, Unavailable) as exc:
            problems.append(str(exc))
    return None


def _find() -> tuple[ctypes.CDLL, str]:
    """The compiled sampler and its origin (packaged, cached, built now).

    Raises:
        Unavailable: none can be had, with the reason (and the rejected libraries).
    """
    problems: list[str] = []
    for origin, paths in (("c-packaged", packaged_libraries()), ("c-cached", cached_libraries())):
        lib = _first_loadable(paths, problems)
        if lib is not None:
            return lib, origin
    try:
        cc = _compiler()
    except RuntimeError as exc:
        raise Unavailable(f"{exc}", "set CC to an installed compiler or unset it") from exc
    if cc is None:
        if problems:  # a library was there but refused: that is the news
            raise Unavailable("; ".join(problems), "delete it so that it is built again")
        raise Unavailable(
            "no C compiler found ($CC unset; none of cc, gcc, clang on PATH) and no prebuilt "
            "or cached sampler",
            "install a C compiler (gcc or clang) or set CC to one, or install the platform "
            "wheel of per-triton, which carries the sampler",
        )
    path = _build(cc)
    try:
        return _open(path), "c-built"
    except OSError as exc:
        raise Unavailable(f"{path} built but does not load: {exc}", "report a bug") from exc


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
                lib, origin = _find()
            except Unavailable as exc:
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


def key_words(key: int) -> tuple[int, int]:
    """The Philox key ``(k0, k1)``: low and high 32 bits of a 64-bit key."""
    return key & _M32, (key >> 32) & _M32


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
