"""The seed of each call of a penalty layer: one derivation, a call counter, checkpoint replay.

:func:`derive_seed` is the one derivation of a layer's seed from a seed source's value
(docs/design.md, "Seeds and reproducibility"): :class:`per_triton.PER` and the
baselines of :mod:`per_triton.experiments.baselines` use it, through
:mod:`per_triton.core.seeds` only. :class:`SeedStream` is the part of
:class:`per_triton.PER` that turns its ``seed`` argument into one seed per call: the
on-device call counter, and the replay of a call's seed when non-reentrant activation
checkpointing recomputes it in backward.
"""

from __future__ import annotations

import hashlib
import weakref

import torch

from per_triton.api.injection import plain
from per_triton.core import tracing
from per_triton.core._validation import check_seed_source
from per_triton.core.seeds import child_seed, child_seed_tensor

__all__ = ["SeedStream", "checkpoint_phase", "derive_seed", "stream_base"]

_MASK63 = 2**63 - 1
#: Forward seeds kept per layer for checkpointed regions not yet recomputed.
_REPLAY_REGIONS = 256


def derive_seed(
    value: int | torch.Tensor, index: int, call: int | torch.Tensor | None
) -> int | torch.Tensor:
    """The seed of penalty layer ``index`` (0 for a lone layer) from a seed source's value.

    An int is a base seed: call ``call`` of the layer uses
    ``child_seed(child_seed(value, "step", call), "layer", index)``
    (:mod:`per_triton.core.seeds`; the same as
    ``derive_seed(distributed.step_seed(value, call), index, None)``), so every
    call gets new directions, the same on every process that makes the same calls.
    ``call`` may be a ``(1,)`` int64 tensor (the layer's call counter): the same
    value, computed in int64 arithmetic on its device. With ``call=None`` (the value
    of a per-step source) only the layer is mixed in: ``child_seed(value, "layer",
    index)``. A tensor value is mixed with the layer by the same formula in int64
    arithmetic on its device. Tensor results need no host sync and no recompile under
    torch.compile, and suit CUDA graphs.
    """
    if isinstance(value, torch.Tensor):
        return child_seed_tensor(torch.bitwise_and(value.reshape(1), _MASK63), "layer", index)
    if isinstance(call, torch.Tensor):
        return child_seed_tensor(child_seed_tensor(int(value), "step", call), "layer", index)
    step = int(value) if call is None else child_seed(int(value), "step", int(call))
    return child_seed(step, "layer", index)


def stream_base() -> int:
    """A base seed for PER's own stream, read from torch's default generator without drawing.

    A hash of the CPU generator's state (which holds ``torch.manual_seed``'s seed and
    its position), so ``torch.manual_seed`` makes it reproducible, while every later
    draw (dropout masks, data order, initialisations) is exactly what it would be
    without PER. Layers built with no draw between them get the same base; they are
    told apart by their layer index (:func:`derive_seed`).
    """
    state = torch.default_generator.get_state().numpy().tobytes()
    return int.from_bytes(hashlib.blake2b(state, digest_size=8).digest(), "little") & _MASK63


def checkpoint_phase() -> tuple[str, int] | None:
    """``("forward", region)`` inside a non-reentrant ``torch.utils.checkpoint`` region,
    ``("recompute", region)`` in its recomputation during backward, else ``None``;
    ``region`` identifies the checkpoint call (its frame)."""
    if torch.compiler.is_compiling():  # compiled code: not looked at (no graph break)
        return None
    hooks = torch._C._autograd._top_saved_tensors_default_hooks(False)
    pack = hooks[0] if hooks else None
    name = getattr(pack, "__qualname__", "")
    if "_checkpoint_hook" not in name and "_recomputation_hook" not in name:
        return None
    inner = [pack, getattr(pack, "__wrapped__", None)]  # torch._dynamo.disable wraps it
    inner += [c.cell_contents for c in pack.__closure__ or () if callable(c.cell_contents)]
    cells = [c for f in inner for c in getattr(f, "__closure__", None) or ()]
    for cell in cells:
        value = cell.cell_contents
        if "_recomputation_hook" in name and isinstance(value, weakref.ref):
            return ("recompute", id(value()))  # a weak reference to the frame
        if "_checkpoint_hook" in name and type(value).__name__ == "_CheckpointFrame":
            return ("forward", id(value))
    return None


class SeedStream:
    """Mixin of :class:`per_triton.PER`: its ``seed`` source turned into one seed per call.

    Expects ``self.seed`` (a checked seed source) and ``self.seed_index`` (the layer's
    index, mixed into every seed) and calls :meth:`_init_stream` once. One int64
    counter on the device (not in the state dict; moves with ``.to()``): with
    ``seed=None`` PER's own stream (base + calls), with an int seed the calls made.
    Built on the meta device (``with torch.device("meta")``), the buffer has no value:
    the first call on a real device, or ``to_empty()``, starts it at ``_stream_start``
    (:meth:`_apply`, :meth:`_counter`).
    """

    def _init_stream(self) -> None:
        self._stream_start = stream_base() if self.seed is None else 0
        start = torch.tensor([self._stream_start], dtype=torch.int64)
        self.register_buffer("_stream", start, persistent=False)

    @property
    def calls(self) -> int:
        """Training calls made with an int ``seed`` (mixed into its seed); 0 for other seeds.

        Read from the on-device counter (a host sync); assigning sets the counter.
        """
        if not isinstance(self.seed, int):
            return 0
        return self._stream_start if self._stream.is_meta else int(self._stream[0])

    @calls.setter
    def calls(self, value: int) -> None:
        if not isinstance(self.seed, int):
            raise AttributeError("calls counts the calls of an int seed only")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"calls must be a non-negative int, got {value!r}")
        with torch.no_grad():
            self._stream.fill_(int(value))

    def _apply(self, fn, recurse: bool = True):
        was_meta = self._stream.is_meta
        out = super()._apply(fn, recurse)
        if was_meta and not self._stream.is_meta:  # to_empty(): the new buffer is uninitialised
            with torch.no_grad():
                self._stream.fill_(self._stream_start)
        return out

    def _counter(self, device: torch.device) -> torch.Tensor:
        """The call counter on ``device`` (started afresh if it was left on the meta device)."""
        if self._stream.is_meta:  # load_state_dict(assign=True) or regularize() under meta
            self._stream = torch.full((1,), self._stream_start, dtype=torch.int64, device=device)
        elif self._stream.device != device:
            self._stream = self._stream.to(device)
        return self._stream

    def _advance(self, counter: torch.Tensor) -> None:
        """``counter += 1`` in place: on the tensor itself under ``torch.func`` transforms
        (``functional_call`` swaps buffers in and out: a new tensor would be dropped) and
        as a declared mutation under ``torch.export`` (:mod:`per_triton.core.tracing`)."""
        if tracing.exporting():
            tracing.advance_counter(counter)
        elif torch._C._are_functorch_transforms_active():  # state, not part of the function
            with torch._C._DisableFuncTorch(), torch.no_grad():
                plain(counter).add_(1)
        else:
            counter.add_(1)

    def _call_seed(self, device: torch.device) -> int | torch.Tensor | None:
        if callable(self.seed):  # a per-step source: only the layer is mixed in
            return derive_seed(check_seed_source(self.seed()), self.seed_index, None)
        if isinstance(self.seed, torch.Tensor):
            return derive_seed(self.seed, self.seed_index, None)
        # seed=None: call k of layer i uses base + k, mixed with i; an int seed: call k
        # uses step k of the int, mixed with i. Both advance the counter on the device.
        counter = self._counter(device)
        if self.seed is None:
            seed = derive_seed(counter, self.seed_index, None)
        else:
            seed = derive_seed(self.seed, self.seed_index, counter)
        self._advance(counter)
        return seed

    def next_seed(
        self, device: torch.device, phase: tuple[str, int] | None
    ) -> int | torch.Tensor | None:
        """The call's seed; under non-reentrant activation checkpointing
        (:func:`checkpoint_phase`), the recomputation in backward reuses the seed of the
        forward call it repeats (in call order within one checkpointed region) and
        advances no counter."""
        replay = self.__dict__.setdefault("_replay", {})
        if phase is not None and phase[0] == "recompute" and replay.get(phase[1]):
            seeds = replay[phase[1]]
            seed = seeds.pop(0)
            if not seeds:
                del replay[phase[1]]
            return seed
        seed = self._call_seed(device)
        if phase is not None and phase[0] == "forward":
            replay.setdefault(phase[1], []).append(seed)
            while len(replay) > _REPLAY_REGIONS:  # regions never backpropagated
                del replay[next(iter(replay))]
        return seed

    def __getstate__(self) -> dict:
        # replayed seeds belong to one backward pass: copies and pickles start clean
        state = super().__getstate__()
        state.pop("_replay", None)
        return state
