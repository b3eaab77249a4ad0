"""The penalty-module protocol: one way to record and collect a layer's penalty.

:class:`per_triton.PER` and every baseline of :mod:`per_triton.experiments.baselines`
(VCL, L1, L2, plain-torch PER) are :class:`PenaltyModule` subclasses: the identity in
the forward pass that, in a training call, records a differentiable penalty term of
its input (:meth:`PenaltyModule.record`); :meth:`PenaltyModule.penalty` returns the sum
of the terms recorded since it was last called, and clears it. Each module has a
``seed`` (its seed source; unused by penalties that draw no random numbers) and a
``seed_index`` (its index among the model's penalty modules), from which every seed it
draws is derived (:func:`per_triton.api.layer_seeds.derive_seed`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch._subclasses.fake_tensor import is_fake

from per_triton.core import tracing

__all__ = ["PenaltyModule"]


class PenaltyModule(nn.Module):
    """Base of the penalty modules: records penalty terms, hands out their sum once.

    The terms of every call since the last :meth:`penalty` add up (a module used twice
    in one forward pass counts twice); until taken they keep their autograd graph.
    Copies and pickles start with nothing recorded.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seed_index = 0  # which penalty module of its model (mixed into its seeds)
        self._pending: torch.Tensor | None = None

    def record(self, term: torch.Tensor) -> None:
        """Add the 0-d differentiable ``term`` to what :meth:`penalty` returns next."""
        self._pending = term if self._pending is None else self._pending + term

    def take_penalty(self) -> torch.Tensor | None:
        """The sum recorded since the last call (cleared), or None when nothing was."""
        term, self._pending = self._pending, None
        if term is not None and is_fake(term) and not tracing.exporting():
            term = None  # left by a torch.export trace: no value outside the graph
        return term

    def penalty(self) -> torch.Tensor:
        """:meth:`take_penalty`, with a float32 0-d zero when nothing was recorded."""
        term = self.take_penalty()
        return torch.zeros(()) if term is None else term

    def __getstate__(self) -> dict:
        # A pending penalty is part of one forward's graph: copies and pickles start clean.
        state = self.__dict__.copy()
        state["_pending"] = None
        return state
