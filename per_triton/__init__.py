"""per-triton: the PER activation regularizer (Joo, Kang & Kim, ICLR 2020), fused.

Public API (docs/design.md, "Public API")::

    import per_triton as pt
    pt.per_loss(h, num_slices=256, *, seed=None, reduction="mean")
    pt.sample_directions(num_slices, dim, seed, device="cpu", dtype=torch.float32)
    pt.reference.per_loss(h, directions), pt.reference.per_grad(h, directions)
    pt.PER(coeff=1e-4, num_slices=256, reduction="mean")
    pt.regularize(model, coeff=1e-4, num_slices=256, ...)   # pt.DEFAULT_LAYERS, pt.default_layers()
    pt.sliced_wasserstein_to_normal(h, num_slices=256, *, p=1, seed=None)
    pt.monitor

The torch-facing names load on first use, so that ``per_triton.dashboard`` (which
reads result files only) never imports torch or triton. The ops register their CPU
and CUDA implementations in :mod:`per_triton.core.ops` itself, so no import order leaves
a device without its kernel.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it (loaded on first use)
_API = {
    "per_loss": "per_triton.api.loss",
    "sample_directions": "per_triton.core.directions",
    "PER": "per_triton.api.module",
    "regularize": "per_triton.api.attach",
    "PERHandle": "per_triton.api.handle",
    "DEFAULT_LAYERS": "per_triton.api.layers",
    "default_layers": "per_triton.api.layers",
    "sliced_wasserstein_to_normal": "per_triton.api.sliced_wasserstein",
}
#: public submodule name -> where it lives (``pt.reference``, ``pt.monitor``, ...)
_SUBMODULES = {
    "reference": "per_triton.core.reference",
    "ops": "per_triton.core.ops",
    "monitor": "per_triton.api.monitor",
    "distributed": "per_triton.api.distributed",
    "models": "per_triton.experiments.models",
}

__all__ = [
    "DEFAULT_LAYERS",
    "PER",
    "PERHandle",
    "default_layers",
    "distributed",
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
    from per_triton.api import distributed, monitor
    from per_triton.api.attach import regularize
    from per_triton.api.handle import PERHandle
    from per_triton.api.layers import DEFAULT_LAYERS, default_layers
    from per_triton.api.loss import per_loss
    from per_triton.api.module import PER
    from per_triton.api.sliced_wasserstein import sliced_wasserstein_to_normal
    from per_triton.core import ops, reference
    from per_triton.core.directions import sample_directions
    from per_triton.experiments import models


def __getattr__(name: str) -> Any:
    """Load a public name (or submodule) on first use, importing only what it needs."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(_SUBMODULES[name])
    else:
        raise AttributeError(f"module 'per_triton' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
