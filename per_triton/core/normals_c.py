"""Finding, building and loading the compiled CPU-stream sampler (``philox_normals.c``).

:func:`find` returns the first library that loads and passes a known-answer check,
and its origin, in this order (docs/cpu-sampler.md; :func:`per_triton.core.normals.sampler`
names the one in use):

1. ``"c-packaged"``: ``_philox_normals*.so`` inside the package, built with the wheel
   (``setup.py``; an optional build step, so a build without a compiler still installs);
2. ``"c-cached"``: a library built earlier from this source in the cache folder
   (``$PER_TRITON_CACHE_DIR``, else ``$XDG_CACHE_HOME/per_triton`` or
   ``~/.cache/per_triton``) or the private per-user temporary folder; no compiler needed;
3. ``"c-built"``: compiled with ``$CC``, ``cc``, ``gcc`` or ``clang`` into the first
   of those folders that can be written.

When none can be had, :class:`Unavailable` carries the reason (no compiler, no
writable folder, the compiler's error, a library that draws other numbers) and the
advice the caller's warning gives. The library is called through ctypes, which
releases the GIL.
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
from pathlib import Path

import torch

from per_triton.core.normals_torch import key_words, normals_block

__all__ = [
    "CFLAGS",
    "ENV_CACHE",
    "SOURCE",
    "Unavailable",
    "cache_dir",
    "compiler",
    "find",
    "library_name",
]

ENV_CACHE = "PER_TRITON_CACHE_DIR"
SOURCE = Path(__file__).with_name("philox_normals.c")
CFLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC"]


def cache_dir() -> Path:
    """Where the compiled sampler is kept (created on demand)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "per_triton"


def compiler() -> list[str] | None:
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
    return torch.equal(out, normals_block(k0, k1, 5, 3, 2, 9))


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


def find() -> tuple[ctypes.CDLL, str]:
    """The compiled sampler and its origin (packaged, cached, or built by this call).

    Raises:
        Unavailable: none can be had, with the reason (and the rejected libraries).
    """
    problems: list[str] = []
    for origin, paths in (("c-packaged", packaged_libraries()), ("c-cached", cached_libraries())):
        lib = _first_loadable(paths, problems)
        if lib is not None:
            return lib, origin
    try:
        cc = compiler()
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
