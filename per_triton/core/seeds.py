"""Child seeds: the one place where per-triton derives a seed from another seed.

Every seed the package derives (a layer's seed from a step seed, a step seed from a
run's base seed, the CPU stream's Philox key, the monitor's record and
unit-choice seeds) is ``child_seed(parent, purpose, index)``:

    z = splitmix64(parent XOR tag(purpose))
    child = splitmix64(z + (index + 1) * 0x9E3779B97F4A7C15) >> 1        (in [0, 2**63))

``splitmix64`` is the finaliser of Steele, Lea & Flood's SplitMix64 (OOPSLA 2014), a
bijection of 64-bit words; ``tag(purpose)`` is a fixed 64-bit constant per purpose
(the first 8 bytes of BLAKE2b of its name). So the index sequence of one
``(parent, purpose)`` is SplitMix64's own output sequence started from a hashed
state: distinct purposes or parents start far apart, and no linear relation between
``parent`` and ``index`` can make two children coincide
(docs/design.md, "Child seeds"). Children are valid seeds themselves (any
``[0, 2**63)`` seed API of the package accepts them) and can be derived again.

Purposes in use (:data:`PURPOSES`): ``"layer"`` (index: the penalty module's
position), ``"step"`` (index: the training step), ``"cpu-stream"`` (the CPU
direction stream's key, see :func:`cpu_stream_key`), ``"monitor-record"`` (index: the
record step), ``"monitor-units"`` (index: the layer name). A string index is hashed
to 64 bits with BLAKE2b. New code that needs a seed from a seed adds a purpose here.

Example::

    >>> from per_triton.core.seeds import child_seed
    >>> step = child_seed(1234, "step", 17)          # step 17 of run seed 1234
    >>> layer3 = child_seed(step, "layer", 3)        # the 4th regularized layer's seed
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = [
    "DRAW_LIMIT",
    "PURPOSES",
    "SEED_LIMIT",
    "child_seed",
    "child_seed_tensor",
    "child_seeds",
    "cpu_stream_key",
]

#: Every derived seed lies in ``[0, SEED_LIMIT)``, the range the public seed APIs accept
#: (non-negative int64 values; :func:`per_triton.core._validation.check_seed`).
SEED_LIMIT = 2**63
#: Seeds drawn at random lie in ``[0, DRAW_LIMIT)`` (``torch.randint(0, DRAW_LIMIT, ...)``):
#: ``seed=None`` of the ops, :func:`per_triton.api.distributed.agree_seed` and the
#: Lightning callback's broadcast seed. A power of two below ``SEED_LIMIT``, so the
#: exclusive bound itself fits in int64 (``2**63`` does not).
DRAW_LIMIT = 2**62
PURPOSES = ("layer", "step", "cpu-stream", "monitor-record", "monitor-units")

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


_TAGS = {p: _hash64(f"per_triton.core.seeds/{p}") for p in PURPOSES}


def splitmix64(z: int) -> int:
    """SplitMix64's output function: a bijection of ``[0, 2**64)`` with full avalanche."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def _state(parent: int, purpose: str) -> int:
    if purpose not in _TAGS:
        raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}; got {purpose!r}")
    if isinstance(parent, bool) or not isinstance(parent, int) or not 0 <= parent < 2**64:
        raise ValueError(f"parent must be an int in [0, 2**64), got {parent!r}")
    return splitmix64(parent ^ _TAGS[purpose])


def _index(index: int | str) -> int:
    if isinstance(index, str):
        return _hash64(index)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be a non-negative int or a str, got {index!r}")
    return index


def child_seed(parent: int, purpose: str, index: int | str = 0) -> int:
    """The seed of child ``index`` of ``parent`` for ``purpose``, in ``[0, 2**63)``.

    Args:
        parent: the parent seed, an int in ``[0, 2**64)``.
        purpose: one of :data:`PURPOSES`; children of different purposes are unrelated.
        index: non-negative int (a layer position, a step) or a str (a layer name).

    Returns:
        A pure function of ``(parent, purpose, index)``.

    Raises:
        ValueError naming the bad argument.
    """
    z = (_state(parent, purpose) + (_index(index) + 1) * _GOLDEN) & _MASK64
    return splitmix64(z) >> 1


def child_seeds(parent: int, purpose: str, indices: np.ndarray) -> np.ndarray:
    """:func:`child_seed` for an array of non-negative int indices at once (``int64``)."""
    idx = np.asarray(indices)
    if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0):
        raise ValueError("indices must be non-negative integers")
    with np.errstate(over="ignore"):
        z = np.uint64(_state(parent, purpose)) + (idx.astype(np.uint64) + np.uint64(1)) * np.uint64(
            _GOLDEN
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(1)).astype(np.int64)


def _s64(x: int) -> int:
    """A 64-bit word as the int64 with the same bits."""
    x &= _MASK64
    return x - 2**64 if x >= 2**63 else x


def _srl(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 words (torch's ``>>`` is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _splitmix64_tensor(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _srl(z, 30)) * _s64(_M1)  # int64 products wrap: the low 64 bits
    z = (z ^ _srl(z, 27)) * _s64(_M2)
    return z ^ _srl(z, 31)


def child_seed_tensor(
    parent: int | torch.Tensor, purpose: str, index: int | torch.Tensor
) -> torch.Tensor:
    """:func:`child_seed` elementwise on int64 tensors: of parents, of indices, or both.

    ``parent``: an int64 tensor of parents in ``[0, 2**63)`` or an int in
    ``[0, 2**64)``; ``index``: an int (or str) or an int64 tensor of non-negative
    indices (a call counter); at least one of them a tensor, and two tensors
    broadcast. Int64 tensor operations on the tensors' device: no host sync, no guard
    on the tensors' values under torch.compile, and CUDA-graph safe. Equal to
    ``child_seed(int(p), purpose, int(i))`` elementwise.

    The arithmetic runs inside the registered op ``per_triton::child_seed``, opaque
    to the compiler: Inductor's integer range analysis assumes no overflow and, seen
    with torch 2.13, folded this wrapping hash to one constant for every input.

    Raises:
        ValueError naming the bad argument (a tensor that is not int64, neither
        argument a tensor, or what :func:`child_seed` rejects).
    """
    _check_purpose(purpose)
    for name, value in (("parent", parent), ("index", index)):
        if isinstance(value, torch.Tensor) and value.dtype != torch.int64:
            raise ValueError(f"{name} must be an int64 tensor, got {value.dtype}")
    if not isinstance(parent, torch.Tensor) and not isinstance(index, torch.Tensor):
        raise ValueError("parent or index must be an int64 tensor (else use child_seed)")
    parent_t = parent if isinstance(parent, torch.Tensor) else None
    state = 0 if parent_t is not None else _s64(_state(parent, purpose))
    index_t = index if isinstance(index, torch.Tensor) else None
    offset = 0 if index_t is not None else _s64((_index(index) + 1) * _GOLDEN)
    return _child_seed_op(parent_t, state, _s64(_TAGS[purpose]), index_t, offset)


@torch.library.custom_op("per_triton::child_seed", mutates_args=())
def _child_seed_op(
    parent: torch.Tensor | None, state: int, tag: int, index: torch.Tensor | None, offset: int
) -> torch.Tensor:
    """``child_seed`` in int64 arithmetic (wrapping mod 2**64).

    ``parent`` (or, when it is None, the int64 ``state`` of an int parent) and
    ``index`` (or, when None, the int64 ``(index + 1) * golden`` as ``offset``).
    """
    z0 = _splitmix64_tensor(parent ^ tag) if parent is not None else state
    z = z0 + (index + 1) * _s64(_GOLDEN) if index is not None else z0 + offset
    return _srl(_splitmix64_tensor(z), 1)


@_child_seed_op.register_fake
def _(parent, state, tag, index, offset):
    tensors = [t for t in (parent, index) if t is not None]
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    return tensors[0].new_empty(shape)


def _check_purpose(purpose: str) -> str:
    if purpose not in _TAGS:
        raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}; got {purpose!r}")
    return purpose


def cpu_stream_key(seed: int) -> int:
    """The 64-bit Philox key of the CPU direction stream of ``seed`` (:mod:`.normals`).

    ``child_seed(seed, "cpu-stream")``: one key per direction set; rows and columns are
    Philox counters, so no two entries of one set, and no two sets whose keys differ,
    share a counter-key pair. ``seed`` is an int in ``[0, 2**63)``.
    """
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return child_seed(seed, "cpu-stream")
