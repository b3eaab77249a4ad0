"""per-triton: the PER activation regularizer (Joo, Kang & Kim, ICLR 2020), fused.

Public API (DESIGN.md section 4)::

    import per_triton as pt
    pt.per_loss(h, num_slices=256, *, seed=None, reduction="mean")
    pt.sample_directions(num_slices, dim, seed, device="cpu", dtype=torch.float32)
    pt.reference.per_loss(h, directions), pt.reference.per_grad(h, directions)
    pt.PER(coeff=1e-4, num_slices=256, reduction="mean")
    pt.regularize(model, coeff=1e-4, num_slices=256, ...)
    pt.sliced_wasserstein_to_normal(h, num_slices=256, *, p=1, seed=None)
    pt.monitor

The torch-facing names load on first use, so that ``per_triton.dashboard`` (which
reads result files only) never imports torch or triton. When torch is already
imported they load at once.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = {
    "per_loss": "per_triton.loss",
    "sample_directions": "per_triton.directions",
    "PER": "per_triton.module",
    "regularize": "per_triton.regularize",
    "PERHandle": "per_triton.regularize",
    "sliced_wasserstein_to_normal": "per_triton.sliced_wasserstein",
}
_SUBMODULES = ("reference", "monitor", "ops", "models")

__all__ = [
    "PER",
    "PERHandle",
    "models",
    "monitor",
    "ops",
    "per_loss",
    "reference",
    "regularize",
    "sample_directions",
    "sliced_wasserstein_to_normal",
]

if TYPE_CHECKING:
    from . import models, monitor, ops, reference
    from .directions import sample_directions
    from .loss import per_loss
    from .module import PER
    from .regularize import PERHandle, regularize
    from .sliced_wasserstein import sliced_wasserstein_to_normal


def _register_cuda() -> None:
    """Register the fused Triton kernels for CUDA tensors, where triton is installed."""
    try:
        importlib.import_module("per_triton.cuda_ops")
    except ImportError as exc:  # no triton (e.g. macOS): the CPU path still works
        if "triton" not in str(exc) and "cuda_ops" not in str(exc):
            raise


def _load_api() -> None:
    module = sys.modules[__name__]
    for name, path in _API.items():
        setattr(module, name, getattr(importlib.import_module(path), name))
    for name in ("reference", "ops"):
        setattr(module, name, importlib.import_module(f"per_triton.{name}"))
    _register_cuda()


def __getattr__(name: str) -> Any:
    if name in _API or name in ("reference", "ops"):
        _load_api()
        return getattr(sys.modules[__name__], name)
    if name in _SUBMODULES:
        return importlib.import_module(f"per_triton.{name}")
    raise AttributeError(f"module 'per_triton' has no attribute {name!r}")


if "torch" in sys.modules:
    _load_api()
