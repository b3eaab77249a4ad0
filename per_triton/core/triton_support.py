"""Triton for the CUDA path: present, and at least the supported floor.

Triton is not a base dependency (the CPU path never imports it; CUDA builds of
torch bring it). Every CUDA kernel module is under :mod:`per_triton.kernels`,
whose ``__init__`` calls :func:`require_triton`, so a CUDA call without a usable
Triton stops with one message that says what to install.
"""

from __future__ import annotations

import re

__all__ = ["MIN_TRITON", "require_triton"]

#: The oldest Triton the kernels are tested with (the compile matrix).
MIN_TRITON = (3, 6)

_HINT = "install a CUDA build of torch (it brings Triton) or `pip install 'per-triton[cuda]'`"


def _release(version: str) -> tuple[int, ...]:
    """``"3.6.0+git1"`` -> ``(3, 6, 0)``: the leading numeric release components."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def require_triton(version: str | None = None) -> None:
    """Raise ``ImportError`` unless Triton >= :data:`MIN_TRITON` is installed.

    Args:
        version: the Triton version to check; ``None`` imports triton and reads
            its ``__version__``.

    Raises:
        ImportError: Triton is not installed, or older than :data:`MIN_TRITON`;
            the message names the version found and what to install.
    """
    floor = ".".join(map(str, MIN_TRITON))
    if version is None:
        try:
            import triton
        except ImportError as exc:
            raise ImportError(
                f"per_triton's CUDA kernels need triton >= {floor}, which does not import "
                f"({exc}): {_HINT}. CPU tensors need no Triton."
            ) from exc
        version = str(getattr(triton, "__version__", "0"))
    if _release(version) < MIN_TRITON:
        raise ImportError(
            f"per_triton's CUDA kernels need triton >= {floor}, found triton {version}: {_HINT}."
        )
