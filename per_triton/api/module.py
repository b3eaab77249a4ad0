"""Algorithm 1 as an ``nn.Module``: identity forward, PER gradient added in backward.

Two ways to deliver the PER gradient (``mode``):

``"inject"`` (Algorithm 1 as printed): the backward pass adds ``coeff * dL/dh`` to
    the gradient arriving at ``h``. Nothing to change in the training loop, but the
    added term does not see what was done to the task loss: a loss scaled by ``S``
    (``torch.amp.GradScaler``, ``(S * loss).backward()`` then ``/ S``) or divided by
    ``k`` (gradient accumulation) leaves PER's share off by the factor ``S`` or ``k``.
``"loss"``: the layer records the differentiable ``coeff * L`` and
    :meth:`PER.penalty` returns it, for the caller to add to the task loss. The
    gradient is the same as ``"inject"`` for an unscaled loss, and it composes with
    every loss transform because it *is* part of the loss.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch._subclasses.fake_tensor import is_fake

from per_triton.api.loss import per_loss
from per_triton.core import tracing
from per_triton.core._validation import (
    check_mode,
    check_num_slices,
    check_precision,
    check_reduction,
    check_seed_source,
)
from per_triton.core.dtypes import accumulation_dtype
from per_triton.core.estimators import (
    DEFAULT_ESTIMATOR,
    DEFAULT_NUM_SLICES,
    ESTIMATORS,
    check_estimator,
)
from per_triton.core.seeds import child_seed, child_seed_tensor

__all__ = ["PER", "derive_seed", "stream_base"]

SeedSource = int | torch.Tensor | Callable[[], "int | torch.Tensor"] | None
#: A factor on the injected gradient: a number, or a callable read at every call
#: (returning a number or a 0-d / one-element tensor, e.g. a GradScaler's scale).
GradScale = float | Callable[[], "float | torch.Tensor"]

_MASK63 = 2**63 - 1


def derive_seed(
    value: int | torch.Tensor, index: int, call: int | torch.Tensor | None
) -> int | torch.Tensor:
    """The seed of PER layer ``index`` (0 for a lone layer) from a seed source's value.

    An int is a base seed: call ``call`` of the layer uses
    ``child_seed(child_seed(value, "step", call), "layer", index)``
    (:mod:`per_triton.core.seeds`; the same as
    ``baselines.layer_seed(distributed.step_seed(value, call), index)``), so every
    call gets new directions, the same on every process that makes the same calls.
    ``call`` may be a ``(1,)`` int64 tensor (the layer's call counter): the same
    value, computed in int64 arithmetic on its device. With ``call=None`` (the value
    of a per-step callable) only the layer is mixed in. A tensor value is mixed with
    the layer by the same formula in int64 arithmetic on its device. Tensor results
    need no host sync and no recompile under torch.compile, and suit CUDA graphs.
    """
    if isinstance(value, torch.Tensor):
        return child_seed_tensor(torch.bitwise_and(value.reshape(1), _MASK63), "layer", index)
    if isinstance(call, torch.Tensor):
        return child_seed_tensor(child_seed_tensor(int(value), "step", call), "layer", index)
    step = int(value) if call is None else child_seed(int(value), "step", int(call))
    return child_seed(step, "layer", index)


def check_grad_scale(scale: object) -> GradScale:
    """``scale`` of :meth:`PER.set_grad_scale`: a positive finite number or a callable."""
    if callable(scale):
        return scale  # type: ignore[return-value]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(
            f"scale must be a positive number or a callable returning one, got {scale!r}"
        )
    if not (0 < scale < float("inf")):
        raise ValueError(f"scale must be positive and finite, got {scale!r}")
    return float(scale)


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


def _plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` without torch.func wrappers, so a logged value outlives the transform."""
    if torch._C._are_functorch_transforms_active():
        while torch._C._functorch.is_functorch_wrapped_tensor(t):
            t = torch._C._functorch.get_unwrapped(t)
    return t


_REPLAY_REGIONS = 256


def _checkpoint_phase() -> tuple[str, int] | None:
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


class _AddLossGradient(torch.autograd.Function):
    """Returns ``h`` unchanged; in backward sends a gradient of 1 into ``loss``.

    ``loss`` was computed from ``h``, so autograd adds ``d loss / d h`` to the
    gradient flowing into ``h``: exactly Algorithm 1's ``g + coeff * dL/dh``.
    The output is ``h.detach()`` (same storage and version counter, no copy) rather
    than a view, so later in-place ops (``ReLU(inplace=True)``, in-place dropout,
    ``y += x``) are allowed exactly where they would be without PER. The separate
    ``setup_context`` makes it usable under ``torch.func`` transforms.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(h: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        return h.detach()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _h, loss = inputs
        ctx.loss_dtype = loss.dtype
        ctx.loss_device = loss.device

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, torch.ones((), dtype=ctx.loss_dtype, device=ctx.loss_device)


def _identity_jvp(ctx, d_h: torch.Tensor, *_rest) -> torch.Tensor:
    """The identity in the forward pass: the tangent of ``h`` passes through."""
    return d_h


_AddLossGradientJvp = tracing.with_jvp(_AddLossGradient, _identity_jvp)


class PER(nn.Module):
    """PER regularizer layer (Algorithm 1).

    In training mode, with gradients enabled and ``h.requires_grad``, the forward
    pass computes the PER loss of ``h`` (Eq. 5) and returns ``h`` unchanged; the PER
    gradient ``coeff * dL/dh`` (Eq. 6) reaches ``h`` in backward, as chosen by
    ``mode``. In eval mode or under ``torch.no_grad`` it is a plain identity, and an
    empty batch (``b = 0``) passes through with a loss of 0. The last loss value is
    kept, detached, in ``last_loss`` for logging.

    Args:
        coeff: regularization strength (``lambda`` in the paper).
        num_slices: number of random directions ``s`` per call.
        reduction: ``"mean"`` (divide by the batch size) or ``"sum"`` (Algorithm 1
            as printed, without ``1/b``).
        precision: ``"tf32"`` or ``"ieee"`` for float32 dots on CUDA.
        estimator: a name of :data:`per_triton.core.estimators.ESTIMATORS`:
            ``"monte_carlo"`` (default, random directions) or ``"exact"``: the
            expectation over all directions (:mod:`per_triton.core.exact`); with
            ``mode="inject"`` the backward adds ``coeff * scale_i * h_i`` to the incoming
            gradient in one pass, with ``mode="loss"`` :meth:`penalty` holds
            ``coeff * exact loss``. With ``"exact"``, ``num_slices`` must stay at its
            default and ``seed`` is ignored (no random numbers are drawn); the exact
            path has no second derivative (double backward raises).
        mode: ``"inject"`` (default): the backward pass adds ``coeff * dL/dh``,
            unaware of any scaling of the task loss (GradScaler, ``loss / k``).
            ``"loss"``: ``coeff * L`` is recorded; add :meth:`penalty` to the task
            loss before any scaling (right under AMP and gradient accumulation).
        seed: directions of each call. ``None``: PER's own stream, separate from
            torch's generator (so enabling PER, even with ``coeff=0``, changes no
            dropout mask or data order): a base read without drawing from the
            generator's state when the layer is built (:func:`stream_base`,
            reproducible under ``torch.manual_seed``), then a one-element int64
            tensor on the activations' device incremented at every call (no host
            sync, no recompile under torch.compile). An int: a base seed, new
            directions at every call, the same on every process making the same
            calls (DDP without communication); the calls are counted in the same
            int64 buffer on the device, so no recompile under torch.compile either
            (:attr:`calls` reads it). A one-element int64 tensor: read at
            every call (change it in place between steps; no recompile under
            torch.compile). A callable returning an int or a tensor: called at
            every call (a per-step source such as
            :class:`per_triton.api.distributed.StepSeed`; a lambda works but does not
            pickle with the model). See :func:`derive_seed`.

    Raises:
        TypeError / ValueError naming the bad argument.

    Example:
        >>> net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), PER(1e-4), nn.Linear(256, 10))
        >>> net(torch.randn(32, 784)).sum().backward()
        >>> net[2].last_loss
    """

    def __init__(
        self,
        coeff: float = 1e-4,
        num_slices: int = DEFAULT_NUM_SLICES,
        reduction: str = "mean",
        precision: str = "tf32",
        estimator: str = DEFAULT_ESTIMATOR,
        *,
        mode: str = "inject",
        seed: SeedSource = None,
    ) -> None:
        super().__init__()
        if isinstance(coeff, bool) or not isinstance(coeff, (int, float)):
            raise TypeError(f"coeff must be a float, got {type(coeff).__name__}")
        if not coeff >= 0:
            raise ValueError(f"coeff must be >= 0, got {coeff}")
        self.coeff = float(coeff)
        self.num_slices = check_num_slices(num_slices)
        self.reduction = check_reduction(reduction)
        self.precision = check_precision(precision)
        self.estimator = check_estimator(estimator, num_slices)
        self.mode = check_mode(mode)
        self.seed = check_seed_source(seed)
        self.seed_index = 0  # which layer of a regularize() call (mixed into the seed)
        self.last_loss: torch.Tensor | None = None
        # mode="inject": factor on the injected gradient (see set_grad_scale)
        self.grad_scale: GradScale = 1.0
        self._pending: torch.Tensor | None = None
        # One int64 counter on the device (not in the state dict; moves with .to()):
        # seed=None, PER's own stream (base + calls); an int seed, the calls made.
        # Built on the meta device (``with torch.device("meta")``), the buffer has no
        # value: the first call on a real device, or ``to_empty()``, starts it at
        # ``_stream_start`` (:meth:`_apply`, :meth:`_counter`).
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
                _plain(counter).add_(1)
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

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled() and h.requires_grad):
            return h
        if h.dim() > 0 and h.numel() == 0:  # empty batch: nothing to regularize
            self.last_loss = torch.zeros((), dtype=accumulation_dtype(h.dtype), device=h.device)
            return h
        entry = ESTIMATORS[self.estimator]
        exporting = tracing.exporting()
        scale = self._injection_scale()
        fused = entry.layer is not None and self.mode == "inject"
        if fused and not exporting and not torch.is_tensor(scale):
            out, loss = entry.layer(h, self.coeff * scale, self.reduction)
            self.last_loss = _plain(loss)
            return out
        phase = _checkpoint_phase()
        # an unseeded estimator draws no directions: no seed, no counter step
        seed = self._checkpoint_seed(h.device, phase) if entry.seeded else None
        loss = per_loss(
            h,
            self.num_slices,
            seed=seed,
            reduction=self.reduction,
            precision=self.precision,
            estimator=self.estimator,
        )
        # an exported graph's values never reach Python: keep no FakeTensor
        if not exporting and (phase is None or phase[0] == "forward"):
            self.last_loss = _plain(loss.detach())
        term = loss * self.coeff
        if self.mode == "loss":
            if phase is not None and phase[0] == "recompute":  # counted at the forward
                return h
            self._pending = term if self._pending is None else self._pending + term
            return h
        if torch.is_tensor(scale) or scale != 1.0:
            term = term * (scale.reshape(()) if torch.is_tensor(scale) else scale)
        if exporting:  # an autograd.Function's backward would be dropped from the graph
            return tracing.add_loss_gradient(h, term)
        return tracing.pick(_AddLossGradient, _AddLossGradientJvp).apply(h, term)

    def _checkpoint_seed(
        self, device: torch.device, phase: tuple[str, int] | None
    ) -> int | torch.Tensor | None:
        """The call's seed; under non-reentrant activation checkpointing, the
        recomputation in backward reuses the seed of the forward call it repeats (in
        call order within one checkpointed region) and advances no counter."""
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

    def _injection_scale(self) -> float | torch.Tensor:
        """The factor on the injected gradient now (1 in ``mode="loss"``)."""
        if self.mode == "loss":
            return 1.0
        scale = self.grad_scale() if callable(self.grad_scale) else self.grad_scale
        return scale if torch.is_tensor(scale) else float(scale)

    def set_grad_scale(self, scale: GradScale) -> None:
        """Multiply the injected gradient (``mode="inject"``) by ``scale``.

        The injected ``coeff * dL/dh`` does not pass through the task loss, so it
        misses whatever the loop does to that loss. Give it the same factor: ``1/k``
        when the loss is divided by ``k`` for gradient accumulation, a
        ``torch.amp.GradScaler``'s scale (a callable, read at every call) when the
        loss is scaled, or their product (:func:`per_triton.integrations.grad_scale`).
        No effect in ``mode="loss"``, whose penalty is part of the loss.

        Args:
            scale: a positive number, or a callable returning one (a float or a
                one-element tensor) at every training call.

        Raises:
            TypeError / ValueError naming ``scale`` for anything else.
        """
        self.grad_scale = check_grad_scale(scale)

    def penalty(self) -> torch.Tensor:
        """``coeff * L`` summed over the calls since the last ``penalty()`` (``mode="loss"``).

        Returns the sum and clears it, so each forward pass is counted once: call it
        once per step; a second call returns 0. To log it, keep the returned tensor
        (log ``p.detach()`` of ``p = per.penalty()``) rather than calling
        ``penalty()`` again. Differentiable; add it to the task loss before scaling
        or dividing it. Until it is taken, the terms keep their autograd graph alive.

        Returns:
            0-d tensor (float32, or float64 for float64 activations); 0 when no
            training call happened since the last ``penalty()``.

        Raises:
            RuntimeError in ``mode="inject"``, whose gradient goes in by itself.
        """
        if self.mode != "loss":
            raise RuntimeError("penalty() needs mode='loss' (mode='inject' adds the gradient)")
        term, self._pending = self._pending, None
        if term is not None and is_fake(term) and not tracing.exporting():
            term = None  # left by a torch.export trace: no value outside the graph
        return torch.zeros(()) if term is None else term

    def __getstate__(self) -> dict:
        # A pending penalty is part of one forward's graph: copies and pickles start clean.
        state = self.__dict__.copy()
        state["_pending"] = None
        state.pop("_replay", None)
        return state

    def extra_repr(self) -> str:
        if self.estimator == DEFAULT_ESTIMATOR:
            text = f"coeff={self.coeff}, num_slices={self.num_slices}, reduction={self.reduction!r}"
        else:
            slices = f", num_slices={self.num_slices}" if ESTIMATORS[self.estimator].sliced else ""
            text = f"coeff={self.coeff}, estimator={self.estimator!r}{slices}"
            text += f", reduction={self.reduction!r}"
        text += f", mode={self.mode!r}" if self.mode != "inject" else ""
        return text + (f", seed={self.seed!r}" if self.seed is not None else "")
