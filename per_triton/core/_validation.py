"""Argument checks shared by the public functions.

Every error names the argument it is about, and nothing is modified in place.
"""

from __future__ import annotations

import operator

import torch

from per_triton.core.seeds import DRAW_LIMIT, SEED_LIMIT

# One home for the dot precisions: the kernels' own check, with the API's other checks.
from per_triton.kernels.configs import check_precision as check_precision

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
REDUCTIONS = ("mean", "sum")
MODES = ("inject", "loss")


def check_activations(h: object, name: str = "h") -> torch.Tensor:
    """Check that ``h`` is a floating tensor of shape ``(b, *)`` with ``b >= 1`` and ``d >= 1``."""
    if not isinstance(h, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(h).__name__}")
    if h.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a float16, bfloat16, float32 or float64 tensor, got {h.dtype}"
        )
    if h.dim() == 0:
        raise ValueError(f"{name} must have a batch dimension: shape (b, *), got a 0-d tensor")
    if h.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch: shape {tuple(h.shape)}")
    if h.numel() == 0:
        raise ValueError(f"{name} has no features per sample: shape {tuple(h.shape)}")
    return h


def as_int(value: object, name: str) -> int:
    """An integer as a Python int: ``int`` or an integer scalar type with ``__index__``
    (``numpy.int64``); bools, floats and tensors are rejected."""
    if isinstance(value, (bool, float, torch.Tensor)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


def check_positive_int(value: object, name: str) -> int:
    """An integer >= 1 (numpy integers accepted), returned as a Python int; bool rejected."""
    value = as_int(value, name)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


#: The most directions one call may draw (a torch size and the kernels' slice index
#: are bounded by it long before memory is).
MAX_SLICES = 2**31 - 1


def check_num_slices(value: object, name: str = "num_slices") -> int:
    """:func:`check_positive_int`, and at most :data:`MAX_SLICES`."""
    value = check_positive_int(value, name)
    if value > MAX_SLICES:
        raise ValueError(f"{name} must be <= 2**31 - 1, got {value}")
    return value


def check_device(device: object, name: str = "device") -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (str or :class:`torch.device`) as a
    :class:`torch.device`, with CUDA present (and device ``N`` existing) for the latter."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a str or torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{name} must be 'cpu' or 'cuda', got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={str(device)!r} but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}={str(device)!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return dev


def check_reduction(reduction: object) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return reduction  # type: ignore[return-value]


def check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be 'inject' or 'loss', got {mode!r}")
    return mode  # type: ignore[return-value]


def check_seed(
    seed: object,
    kinds: str = "None, an int or an int64 tensor",
    name: str = "seed",
    *,
    int_only: bool = False,
) -> object:
    """``None``, an int in ``[0, 2**63)`` (as a Python int) or a one-element int64 tensor.

    ``name`` is the argument named in errors; ``int_only`` rejects ``None`` and tensors
    (for seeds that must be plain ints, e.g. :class:`per_triton.api.monitor.LayerMonitor`'s).
    """
    if int_only and (seed is None or isinstance(seed, torch.Tensor)):
        raise TypeError(f"{name} must be {kinds}, got {type(seed).__name__}")
    if seed is None:
        return seed
    if isinstance(seed, torch.Tensor):
        if seed.dtype != torch.int64 or seed.numel() != 1:
            raise TypeError(
                f"{name} tensor must hold one int64 value, got dtype {seed.dtype} "
                f"and shape {tuple(seed.shape)}"
            )
        return seed
    try:
        value = as_int(seed, name)
    except TypeError:
        raise TypeError(f"{name} must be {kinds}, got {type(seed).__name__}") from None
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name} must be in [0, 2**63), got {value}")
    return value


def check_seed_source(seed: object) -> object:
    """A seed for :class:`per_triton.PER`: what :func:`check_seed` takes, or a callable
    returning one of those at each call."""
    if callable(seed):
        return seed
    return check_seed(seed, "None, an int, an int64 tensor or a callable")


def seed_tensor(seed: object, device: torch.device) -> torch.Tensor:
    """The seed, checked (:func:`check_seed`), as a ``(1,)`` int64 tensor on ``device``.

    Contract: docs/design.md, "Seeds and reproducibility".

    ``None`` draws a seed from torch's default generator for that device, so
    ``torch.manual_seed`` makes a run reproducible; on CUDA the draw happens on the
    device (CUDA-graph safe, no host sync).
    """
    return checked_seed_tensor(check_seed(seed), device)


def checked_seed_tensor(seed: object, device: torch.device) -> torch.Tensor:
    """:func:`seed_tensor` for a seed that :func:`check_seed` already passed (``None``, a
    Python int in range or a one-element int64 tensor), not checked again; a tensor on
    another device than ``device`` still raises ``ValueError``."""
    if seed is None:
        return torch.randint(0, DRAW_LIMIT, (1,), dtype=torch.int64, device=device)
    if isinstance(seed, torch.Tensor):
        same_index = device.index is None or seed.device.index in (None, device.index)
        if seed.device.type != device.type or not same_index:
            raise ValueError(
                f"seed tensor is on {seed.device}, but the activations are on {device}"
            )
        return seed.reshape(1)
    return torch.full((1,), seed, dtype=torch.int64, device=device)  # cheaper than tensor([seed])
