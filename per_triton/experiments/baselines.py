"""The baselines PER is compared with, as penalty modules placed on a layer's pre-activation.

Methods (one name each, used by the models, the training step and the benchmark;
the names, their order, labels and colours live in :mod:`per_triton.experiments.methods`):

``vanilla``    no normalisation, no penalty.
``bn``         batch normalisation before each activation (the models insert it;
               recurrent BN for the LSTM, Cooijmans et al. 2017).
``vcl``        variance constancy loss (Littwin & Wolf, "Regularizing by the variance of
               the activations' sample-variances", NeurIPS 2018), :class:`VCLPenalty`.
``l1``, ``l2`` activation penalties, :class:`L1Penalty` and :class:`L2Penalty`.
``per``        PER (Joo, Kang & Kim 2020, Eq. 5): :class:`per_triton.PER` itself, fused
               Triton kernels on CUDA, the chunked torch path on the CPU.
``per_exact``  :class:`per_triton.PER` with ``estimator="exact"``: the expectation of
               Eq. 5 over all directions (:mod:`per_triton.core.exact`), no random numbers.
``per_torch``  PER as a user would write it in plain torch: ``s x d`` Gaussian
               directions materialised with ``torch.randn``, normalised, then
               :func:`per_triton.core.reference.per_loss` (the same Eq. 5),
               :class:`PERTorchPenalty`.

Every module is a :class:`per_triton.api.penalty.PenaltyModule` (the PER layers with
``coeff=1`` and ``mode="loss"``), placed where BN would sit: on the input of each
activation function (Littwin & Wolf apply VCL "before the activation of all
neurons"), and on the output of each LSTM layer. Each is the identity in the forward
pass and records the differentiable penalty of the activations it saw in a training
call; :func:`collect_penalty` takes (and clears) the sum over a model's modules, and
the training step adds ``coeff * sum`` to the task loss: one coefficient for every
layer, as in the paper. For PER this gives exactly the gradient of Algorithm 1
(``coeff * dL/dh`` added to the incoming gradient of each layer) with
``reduction="mean"``. :func:`set_step_seed` gives every module the step's seed, from
which each derives its own (:func:`per_triton.api.layer_seeds.derive_seed`).

A module built with ``recurrent=True`` takes LSTM outputs ``(T, b, H)``: every
(time step, sample) pair is one sample of dimension ``H``.

Adding a baseline: docs/contributing.md, "Adding a baseline".
"""

from __future__ import annotations

import torch
from torch import nn

from per_triton.api.distributed import StepSeed
from per_triton.api.layer_seeds import derive_seed
from per_triton.api.module import PER
from per_triton.api.penalty import PenaltyModule
from per_triton.core import reference
from per_triton.core.estimators import ESTIMATORS
from per_triton.experiments.methods import METHODS, PENALTY_METHODS, PER_ESTIMATORS, check_method

__all__ = [
    "METHODS",
    "PENALTY_METHODS",
    "ActivationPenalty",
    "L1Penalty",
    "L2Penalty",
    "PERTorchPenalty",
    "TimeStepsAsSamples",
    "VCLPenalty",
    "collect_penalty",
    "make_regularizer",
    "penalty_modules",
    "set_step_seed",
]


class ActivationPenalty(PenaltyModule):
    """A baseline's penalty module: records :meth:`compute` of its input in training.

    Subclasses implement :meth:`compute` on ``h`` of shape ``(b, *)`` (or ``(T, b, H)``
    when ``recurrent``). ``seed`` (set per step by :func:`set_step_seed`) is ``None``
    (penalties that draw random numbers draw them from torch's generator) or the
    step's seed, an int or a callable returning one; :meth:`call_seed` derives the
    module's own seed from it.
    """

    def __init__(self, *, recurrent: bool = False) -> None:
        super().__init__()
        self.recurrent = recurrent
        self.seed: int | StepSeed | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.record(self.compute(h))
        return h

    def compute(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def call_seed(self) -> int | None:
        """``derive_seed(step seed, seed_index, None)``, or None without a step seed."""
        if self.seed is None:
            return None
        value = self.seed() if callable(self.seed) else self.seed
        return int(derive_seed(int(value), self.seed_index, None))

    def samples(self, h: torch.Tensor) -> torch.Tensor:
        """``(n, *)`` samples: ``(T, b, H)`` becomes ``(T*b, H)`` when ``recurrent``."""
        return h.reshape(-1, h.shape[-1]) if self.recurrent else h

    def extra_repr(self) -> str:
        return "recurrent=True" if self.recurrent else ""


class L1Penalty(ActivationPenalty):
    """L1 activation penalty ``(1/(n*d)) * sum_ij |h_ij|`` (mean absolute activation)."""

    def compute(self, h: torch.Tensor) -> torch.Tensor:
        return h.float().abs().mean()


class L2Penalty(ActivationPenalty):
    """L2 activation penalty ``(1/(n*d)) * sum_ij h_ij^2`` (mean squared activation)."""

    def compute(self, h: torch.Tensor) -> torch.Tensor:
        return h.float().square().mean()


class VCLPenalty(ActivationPenalty):
    """Variance constancy loss of Littwin & Wolf (NeurIPS 2018).

    The batch is split into two disjoint halves A (first ``n//2`` samples) and B (the
    next ``n//2``; an odd last sample is left out). For each unit ``u`` with biased
    variances ``v_A(u)``, ``v_B(u)`` over the samples of a half (and over the spatial
    positions of a conv map, so a unit is a channel)::

        VCL = mean_u (1 - (v_A(u) + beta_u) / (v_B(u) + beta_u))^2

    with a learnable per-unit ``beta`` (initialised to 1) that keeps the ratio finite.
    Recurrent input ``(T, b, H)`` is split along the sample axis ``b``.

    Args:
        num_units: channels of a conv map ``(n, C, H, W)`` / features of ``(n, F)``.
        recurrent: input is ``(T, b, H)``.
    """

    def __init__(self, num_units: int, *, recurrent: bool = False, beta_init: float = 1.0):
        super().__init__(recurrent=recurrent)
        self.num_units = num_units
        self.beta = nn.Parameter(torch.full((num_units,), float(beta_init)))

    def compute(self, h: torch.Tensor) -> torch.Tensor:
        h = h.float()
        if self.recurrent:  # (T, b, H) -> (b, T, H): samples first, time acts like space
            h = h.transpose(0, 1)
        half = h.shape[0] // 2
        if half < 2:
            raise ValueError(f"VCL needs a batch of at least 4 samples, got {h.shape[0]}")
        # (n, C, *) -> variance per unit over the samples and the remaining axes
        units = h.shape[-1] if self.recurrent else h.shape[1]
        if self.recurrent:
            a = h[:half].reshape(-1, units)
            b = h[half : 2 * half].reshape(-1, units)
            var_a, var_b = a.var(0, unbiased=False), b.var(0, unbiased=False)
        else:
            a = h[:half].transpose(0, 1).reshape(units, -1)
            b = h[half : 2 * half].transpose(0, 1).reshape(units, -1)
            var_a, var_b = a.var(1, unbiased=False), b.var(1, unbiased=False)
        ratio = (var_a + self.beta) / (var_b + self.beta)
        return (1.0 - ratio).square().mean()

    def extra_repr(self) -> str:
        return f"num_units={self.num_units}" + (", recurrent=True" if self.recurrent else "")


class PERTorchPenalty(ActivationPenalty):
    """PER in plain torch, as a user would write it (the ``per_torch`` baseline).

    Draws ``v ~ N(0, I)`` of shape ``(s, d)`` with ``torch.randn`` on ``h``'s device
    (from a generator seeded with :meth:`call_seed` when a step seed is set, else from
    torch's generator), normalises the rows and evaluates
    :func:`per_triton.core.reference.per_loss`; autograd stores the directions for the
    backward pass. Its directions are not those of ``per``.
    """

    def __init__(self, num_slices: int = 256, *, recurrent: bool = False) -> None:
        super().__init__(recurrent=recurrent)
        self.num_slices = num_slices

    def compute(self, h: torch.Tensor) -> torch.Tensor:
        x = self.samples(h)
        d = x[0].numel()
        seed = self.call_seed()
        gen = None if seed is None else torch.Generator(device=h.device).manual_seed(seed)
        v = torch.randn(self.num_slices, d, device=h.device, generator=gen)
        theta = v / v.norm(dim=1, keepdim=True)
        return reference.per_loss(x, theta)

    def extra_repr(self) -> str:
        return f"num_slices={self.num_slices}" + (", recurrent=True" if self.recurrent else "")


class TimeStepsAsSamples(nn.Module):
    """Hands LSTM outputs ``(T, b, H)`` to ``inner`` as ``T*b`` samples ``(T*b, H)``.

    Returns its input unchanged (``inner`` is a penalty module, the identity).
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        self.inner(h.reshape(-1, h.shape[-1]))
        return h


def make_regularizer(
    method: str, num_units: int, *, num_slices: int = 256, recurrent: bool = False
) -> nn.Module:
    """The module a model places before an activation, on ``num_units`` channels.

    ``nn.Identity`` for ``vanilla`` and ``bn`` (BN is part of the architecture);
    ``per`` and ``per_exact``: ``per_triton.PER(1.0, mode="loss")`` with their
    estimator (:data:`~per_triton.experiments.methods.PER_ESTIMATORS`; ``recurrent``:
    inside :class:`TimeStepsAsSamples`); the matching
    :class:`ActivationPenalty` otherwise.
    """
    check_method(method)
    if method in PER_ESTIMATORS:
        estimator = PER_ESTIMATORS[method]
        slices = {"num_slices": num_slices} if ESTIMATORS[estimator].sliced else {}
        per = PER(1.0, estimator=estimator, mode="loss", **slices)
        return TimeStepsAsSamples(per) if recurrent else per
    if method == "vcl":
        return VCLPenalty(num_units, recurrent=recurrent)
    if method == "l1":
        return L1Penalty(recurrent=recurrent)
    if method == "l2":
        return L2Penalty(recurrent=recurrent)
    if method == "per_torch":
        return PERTorchPenalty(num_slices, recurrent=recurrent)
    return nn.Identity()


def penalty_modules(model: nn.Module) -> list[PenaltyModule]:
    """The penalty modules of ``model`` in registration order (identical on every rank)."""
    return [m for m in model.modules() if isinstance(m, PenaltyModule)]


def set_step_seed(model: nn.Module, seed: int | None) -> None:
    """Give every penalty module of ``model`` this step's seed and its index.

    Module ``i`` draws with ``derive_seed(seed, i, None)``
    (:func:`per_triton.api.layer_seeds.derive_seed`; the PER layers through a
    :class:`per_triton.api.distributed.StepSeed` source). With ``seed=None`` the PER
    layers use their own stream (``per_triton.PER(seed=None)``) and ``per_torch``
    draws from torch's default generator. Under DDP, call it on every rank with the
    same ``seed`` (:func:`per_triton.api.distributed.agree_seed`) so that the ranks
    use the same directions in a step.
    """
    source = None if seed is None else StepSeed(int(seed))
    for i, m in enumerate(penalty_modules(model)):
        m.seed_index = i
        m.seed = source


def collect_penalty(model: nn.Module) -> torch.Tensor | None:
    """Sum of the penalties ``model``'s modules recorded since the last call (cleared),
    in module order, or None when none recorded any."""
    total: torch.Tensor | None = None
    for m in penalty_modules(model):
        term = m.take_penalty()
        if term is not None:
            total = term if total is None else total + term
    return total
