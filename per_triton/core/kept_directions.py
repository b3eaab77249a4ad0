"""The CPU path's kept directions: a process-wide store of drawn chunks and its budget.

The forward pass of :mod:`per_triton.core.cpu_path` keeps the leading chunks it drew,
while they fit in :func:`cache_budget` bytes (default 32 MiB, ``PER_TRITON_CPU_CACHE_MB``
or :func:`set_cache_budget`); the backward pass takes its entry out and regenerates
only the chunks past the budget from the seed (docs/design.md, "The CPU path"). The
store is a memo of a pure function, keyed by ``(seed, s, d, chunk)``: it never changes
a result, only what is drawn again. The least recently stored entries are dropped
first when the budget is full, so a forward with no backward (e.g. under
``torch.no_grad``) leaves at most the budget behind. Thread-safe.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict

import torch

from per_triton.core._validation import as_int

__all__ = [
    "ENV_BUDGET",
    "cache_budget",
    "clear_kept",
    "keep",
    "set_cache_budget",
    "stored_bytes",
    "take",
]

ENV_BUDGET = "PER_TRITON_CPU_CACHE_MB"
#: ``(seed, num_slices, dim, chunk)``: the leading chunks of a forward pass, in order
Key = tuple[int, int, int, int]

_lock = threading.Lock()
_store: OrderedDict[Key, list[torch.Tensor]] = OrderedDict()


def _budget_from_env() -> int:
    """``$PER_TRITON_CPU_CACHE_MB`` (MiB, a non-negative number; default 32) in bytes.

    Raises:
        ValueError: the variable is not a non-negative finite number.
    """
    text = os.environ.get(ENV_BUDGET, "").strip() or "32"
    try:
        mib = float(text)
    except ValueError:
        mib = float("nan")
    if not math.isfinite(mib) or mib < 0:
        raise ValueError(f"{ENV_BUDGET} must be a non-negative number of MiB, got {text!r}")
    return int(mib * 2**20)


_budget = _budget_from_env()


def cache_budget() -> int:
    """Bytes of directions the forward pass may keep for the backward pass."""
    return _budget


def set_cache_budget(num_bytes: int) -> int:
    """Set the kept-directions budget in bytes (``0`` turns keeping off); returns the old one.

    Entries beyond the new budget are dropped, oldest first.

    Raises:
        ValueError: ``num_bytes`` is not a non-negative int.
    """
    global _budget
    try:
        num_bytes = as_int(num_bytes, "num_bytes")
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if num_bytes < 0:
        raise ValueError(f"num_bytes must be a non-negative int, got {num_bytes!r}")
    with _lock:
        old, _budget = _budget, num_bytes
        _evict(0)
    return old


def clear_kept() -> int:
    """Drop every kept direction chunk (e.g. after forward passes with no backward,
    such as evaluation under ``torch.no_grad``); returns the bytes freed. Values never
    change: a backward whose chunks were dropped draws them again."""
    with _lock:
        freed = _stored_bytes()
        _store.clear()
    return freed


def stored_bytes() -> int:
    """Bytes of directions held in the store."""
    with _lock:
        return _stored_bytes()


def keep(key: Key, chunks: list[torch.Tensor]) -> None:
    """Store ``chunks`` under ``key``, first dropping the oldest entries to make room.

    The caller sizes ``chunks`` to fit :func:`cache_budget`.
    """
    with _lock:
        _evict(sum(t.numel() * t.element_size() for t in chunks))
        _store[key] = chunks


def take(key: Key) -> list[torch.Tensor]:
    """The chunks kept under ``key``, removed from the store (``[]`` when none are)."""
    with _lock:
        return _store.pop(key, [])


def _stored_bytes() -> int:
    return sum(t.numel() * t.element_size() for chunks in _store.values() for t in chunks)


def _evict(room: int) -> None:
    """Drop the oldest entries until ``room`` more bytes fit in the budget (lock held)."""
    used = _stored_bytes()
    while _store and used + room > _budget:
        _key, chunks = _store.popitem(last=False)
        used -= sum(t.numel() * t.element_size() for t in chunks)
