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
and CUDA implementations in :mod:`per_triton.ops` itself, so no import order leaves
a device without its kernel.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = {
    "per_loss": "per_triton.loss",
    "sample_directions": "per_triton.directions",
    "PER": "per_triton.module",
    "regularize": "per_triton.regularize",
    "PERHandle": "per_triton.regularize",
    "DEFAULT_LAYERS": "per_triton.regularize",
    "default_layers": "per_triton.regularize",
    "sliced_wasserstein_to_normal": "per_triton.sliced_wasserstein",
}
_SUBMODULES = ("reference", "monitor", "ops", "models", "distributed")
# Renamed modules: old name -> new name. The old name stays importable (with a
# DeprecationWarning on first attribute use) without a file of its own, so that
# git records the rename as a rename.
_RENAMED = {"per_triton.regularizers": "per_triton.baselines"}

__all__ = [
    "DEFAULT_LAYERS",
    "PER",
    "PERHandle",
    "distributed",
    "models",
    "monitor",
    "default_layers",
    "ops",
    "per_loss",
    "reference",
    "regularize",
    "sample_directions",
    "sliced_wasserstein_to_normal",
]

if TYPE_CHECKING:
    from . import distributed, models, monitor, ops, reference
    from .directions import sample_directions
    from .loss import per_loss
    from .module import PER
    from .regularize import DEFAULT_LAYERS, PERHandle, default_layers, regularize
    from .sliced_wasserstein import sliced_wasserstein_to_normal


class _RenamedModule(types.ModuleType):
    """Stand-in for a renamed module: forwards attributes to the new one, with a warning."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(old, f"Deprecated alias of :mod:`{new}`.")
        self._new = new

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        warnings.warn(
            f"{self.__name__} is renamed {self._new}; the old name will be removed",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(self._new), name)

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self._new))


for _old, _new in _RENAMED.items():
    sys.modules.setdefault(_old, _RenamedModule(_old, _new))


def __getattr__(name: str) -> Any:
    """Load a public name (or submodule) on first use, importing only what it needs."""
    if f"per_triton.{name}" in _RENAMED:
        return sys.modules[f"per_triton.{name}"]
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"per_triton.{name}")
    else:
        raise AttributeError(f"module 'per_triton' has no attribute {name!r}")
    setattr(sys.modules[__name__], name, value)
    return value


class _Package(types.ModuleType):
    """Keeps ``per_triton.regularize`` the function whatever the import order.

    Importing the submodule ``per_triton.regularize`` makes Python bind it as an
    attribute of the package, over the public function of the same name; this binds
    the function instead (the module stays in ``sys.modules``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == _API.get(name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
