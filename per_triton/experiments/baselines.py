"""The baselines PER is compared with, as modules placed on a layer's pre-activation.

Methods (one name each, used by the models, the training step and the benchmark;
the names, their order, labels and colours live in :mod:`per_triton.experiments.methods`):

``vanilla``    no normalisation, no penalty.
``bn``         batch normalisation before each activation (the models insert it;
               recurrent BN for the LSTM, Cooijmans et al. 2017).
``vcl``        variance constancy loss (Littwin & Wolf, "Regularizing by the variance of
               the activations' sample-variances", NeurIPS 2018), :class:`VCLPenalty`.
``l1``, ``l2`` activation penalties, :class:`L1Penalty` and :class:`L2Penalty`.
``per``        PER (Joo, Kang & Kim 2020, Eq. 5) through :func:`per_triton.per_loss`:
               fused Triton kernels on CUDA, the chunked torch path on the CPU.
``per_exact``  PER with ``estimator="exact"``: the expectation of Eq. 5 over all
               directions (:mod:`per_triton.core.exact`), no random numbers.
``per_torch``  PER as a user would write it in plain torch: ``s x d`` Gaussian
               directions materialised with ``torch.randn``, normalised, then
               :func:`per_triton.core.reference.per_loss` (the same Eq. 5).

The models put every penalty module where BN would sit: on the input of each
activation function (Littwin & Wolf apply VCL "before the activation of all
neurons"), and on the output of each LSTM layer. Every penalty module is the
identity in the forward pass; in training mode with
grad enabled it also keeps the differentiable penalty of the activations it saw in
``.penalty``. :func:`collect_penalty` sums (and clears) them, and the training step
adds ``coeff * sum`` to the task loss: one coefficient for every layer, as in the
paper. For PER this gives exactly the gradient of Algorithm 1 (``coeff * dL/dh``
added to the incoming gradient of each layer) with ``reduction="mean"``.

A module built with ``recurrent=True`` takes LSTM outputs ``(T, b, H)``: every
(time step, sample) pair is one sample of dimension ``H``.
"""

from __future__ import annotations

import torch
from torch import nn

from per_triton.api.loss import per_loss
from per_triton.core import reference
from per_triton.core.seeds import child_seed
from per_triton.experiments.methods import METHODS, PENALTY_METHODS, check_method

__all__ = [
    "METHODS",
    "PENALTY_METHODS",
    "ActivationPenalty",
    "L1Penalty",
    "L2Penalty",
    "PERExactPenalty",
    "PERPenalty",
    "PERTorchPenalty",
    "VCLPenalty",
    "collect_penalty",
    "layer_seed",
    "make_regularizer",
    "penalty_modules",
    "set_step_seed",
]


class ActivationPenalty(nn.Module):
    """Identity module that records a differentiable penalty of its input in training.

    The penalties of every call since the last :func:`collect_penalty` add up (a
    module used twice in one forward pass counts twice); collect once per forward.

    Subclasses implement :meth:`compute` on ``h`` of shape ``(b, *)`` (or ``(T, b, H)``
    when ``recurrent``). ``seed`` is set per step by :func:`set_step_seed` for the
    penalties that draw random directions; ``None`` draws from torch's generator.
    """

    def __init__(self, *, recurrent: bool = False) -> None:
        super().__init__()
        self.recurrent = recurrent
        self.seed: int | None = None
        self.penalty: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            term = self.compute(h)
            # a module called twice in one forward pass counts both calls
            self.penalty = term if self.penalty is None else self.penalty + term
        else:
            self.penalty = None
        return h

    def compute(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

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


class PERPenalty(ActivationPenalty):
    """PER loss (Eq. 5, ``reduction="mean"``) through :func:`per_triton.per_loss`.

    Fused Triton kernels for CUDA tensors, the chunked torch path for CPU tensors;
    new directions every call (``seed=None``) unless a step seed was set.
    """

    def __init__(self, num_slices: int = 256, *, recurrent: bool = False) -> None:
        super().__init__(recurrent=recurrent)
        self.num_slices = num_slices

    def compute(self, h: torch.Tensor) -> torch.Tensor:
        return per_loss(self.samples(h), self.num_slices, seed=self.seed)

    def extra_repr(self) -> str:
        return f"num_slices={self.num_slices}" + (", recurrent=True" if self.recurrent else "")


class PERExactPenalty(ActivationPenalty):
    """Exact PER loss (``reduction="mean"``): ``per_loss(h, estimator="exact")``.

    The expectation of Eq. 5 over all directions; no seed, no random numbers.
    """

    def compute(self, h: torch.Tensor) -> torch.Tensor:
        return per_loss(self.samples(h), estimator="exact")


class PERTorchPenalty(PERPenalty):
    """PER in plain torch, as a user would write it (the ``per_torch`` baseline).

    Draws ``v ~ N(0, I)`` of shape ``(s, d)`` with ``torch.randn`` on ``h``'s device
    (from a generator seeded with the step seed when one is set), normalises the rows
    and evaluates :func:`per_triton.core.reference.per_loss`; autograd stores the
    directions for the backward pass. Its directions are not those of ``per``.
    """

    def compute(self, h: torch.Tensor) -> torch.Tensor:
        x = self.samples(h)
        d = x[0].numel()
        gen = None
        if self.seed is not None:
            gen = torch.Generator(device=h.device).manual_seed(self.seed)
        v = torch.randn(self.num_slices, d, device=h.device, generator=gen)
        theta = v / v.norm(dim=1, keepdim=True)
        return reference.per_loss(x, theta)


def make_regularizer(
    method: str, num_units: int, *, num_slices: int = 256, recurrent: bool = False
) -> nn.Module:
    """The module a model places before an activation, on ``num_units`` channels.

    ``nn.Identity`` for ``vanilla`` and ``bn`` (BN is part of the architecture), the
    matching :class:`ActivationPenalty` otherwise.
    """
    check_method(method)
    if method == "vcl":
        return VCLPenalty(num_units, recurrent=recurrent)
    if method == "l1":
        return L1Penalty(recurrent=recurrent)
    if method == "l2":
        return L2Penalty(recurrent=recurrent)
    if method == "per":
        return PERPenalty(num_slices, recurrent=recurrent)
    if method == "per_exact":
        return PERExactPenalty(recurrent=recurrent)
    if method == "per_torch":
        return PERTorchPenalty(num_slices, recurrent=recurrent)
    return nn.Identity()


def penalty_modules(model: nn.Module) -> list[ActivationPenalty]:
    """The penalty modules of ``model`` in registration order (identical on every rank)."""
    return [m for m in model.modules() if isinstance(m, ActivationPenalty)]


def layer_seed(step_seed: int, index: int) -> int:
    """Seed of the ``index``-th penalty module for one step: distinct per layer.

    ``per_triton.core.seeds.child_seed(step_seed, "layer", index)``.
    """
    return child_seed(int(step_seed), "layer", index)


def set_step_seed(model: nn.Module, seed: int | None) -> None:
    """Give every penalty module of ``model`` its own seed derived from ``seed``.

    With ``seed=None`` each module draws from torch's default generator instead.
    Under DDP, call it on every rank with the same ``seed``
    (:func:`per_triton.api.distributed.agree_seed`) so that the ranks use the same
    directions in a step.
    """
    for i, m in enumerate(penalty_modules(model)):
        m.seed = None if seed is None else layer_seed(seed, i)


def collect_penalty(model: nn.Module) -> torch.Tensor | None:
    """Sum of the penalties recorded in the last forward pass (cleared), or None."""
    total: torch.Tensor | None = None
    for m in penalty_modules(model):
        if m.penalty is not None:
            total = m.penalty if total is None else total + m.penalty
            m.penalty = None
    return total
