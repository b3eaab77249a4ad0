"""The accumulation dtype: what every loss, coefficient, norm and projection is computed in.

float64 activations are computed in float64; float16, bfloat16 and float32 activations
in float32 (docs/design.md, "Registered ops": the acc dtype). Imports only torch, so
the kernels' launchers use it too.
"""

from __future__ import annotations

import torch

__all__ = ["accumulation_dtype"]


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """``torch.float64`` for ``torch.float64``, ``torch.float32`` for every other dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32
