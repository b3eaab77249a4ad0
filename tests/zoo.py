"""Imports of the model zoos for the ``zoo`` tests: transformers and timm, offline.

timm imports torchvision, and transformers imports it when it is installed.
``scripts/setup.sh`` installs the torchvision release paired with the installed torch
(no dependencies, so pip never swaps the CPU torch for a CUDA build). Beside the CPU
torch wheel its compiled ops do not load (the PyPI wheel links torch's CUDA
libraries), and ``import torchvision`` then stops at registering fake kernels for
``torchvision::nms`` and ``qnms``, which do not exist. :func:`torchvision_importable`
defines those two op schemas first (only when the compiled ops do not load), which
is all the import needs: the tests build models from Python modules only and never
call a torchvision op. No weights are downloaded (``HF_HUB_OFFLINE=1``; every model
is built from a config with random initialisation).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_LIBS: list[torch.library.Library] = []  # kept alive: the schemas live as long as they do


def torchvision_importable() -> None:
    """Make ``import torchvision`` work beside a torch its compiled ops cannot load into."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or _LIBS or not spec.submodule_search_locations:
        return
    ops = next(Path(spec.submodule_search_locations[0]).glob("_C*.so"), None)
    try:
        if ops is None:
            raise OSError("no compiled ops")
        torch.ops.load_library(str(ops))
        return  # a matching build: nothing to do
    except OSError:
        pass
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBS.append(lib)


def need(package: str) -> ModuleType:
    """Import ``package`` (``"transformers"`` or ``"timm"``) or skip the test, saying why."""
    torchvision_importable()
    try:
        return importlib.import_module(package)
    except ImportError as err:  # the zoo extra is not installed
        pytest.skip(f"{package} not importable ({err}); install per-triton[zoo]")
