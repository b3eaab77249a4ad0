"""Edge cases of the PER layer found by users: absurd slice counts, in-place ops
downstream of the exact estimator, activation checkpointing, a module used twice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import per_triton as pt


@pytest.mark.parametrize(
    "call",
    [
        lambda n: pt.per_loss(torch.randn(3, 4, requires_grad=True), n),
        lambda n: pt.PER(num_slices=n),
        lambda n: pt.regularize(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), num_slices=n),
        lambda n: pt.sample_directions(n, 3, 1),
        lambda n: pt.sliced_wasserstein_to_normal(torch.randn(3, 4), n),
    ],
    ids=["per_loss", "PER", "regularize", "sample_directions", "sliced_wasserstein"],
)
def test_num_slices_beyond_any_size_is_named(call):
    with pytest.raises(
        ValueError, match=r"num_slices must be <= 2\*\*31 - 1, got 1180591620717411303424"
    ):
        call(2**70)
