"""Millions of slices: the Monte Carlo loss does not drift from float32 summation.

Oracle: at ``d = 1`` every unit direction is ``+1`` or ``-1`` and ``psi`` is even, so
``per_loss(h) = (1/b) sum_i psi(h_i)`` exactly, for any ``num_slices`` and seed. The
loss sums ``b * s`` float32 terms; one BLAS dot over ``2**23`` of them lost about
1e-4 of the total at ``2**22`` terms (a few running sums, each stagnating as it grows).
"""

from __future__ import annotations

import math

import pytest
import torch

import per_triton as pt
from per_triton.core import reference

from .tolerances import F32_MANY_TERMS


@pytest.mark.parametrize("num_slices", [2**20 + 3, 2**23])
def test_the_loss_over_millions_of_slices_is_the_closed_form_at_d_1(num_slices: int):
    h = torch.tensor([[1.5], [-0.25], [3.0], [0.0]])
    want = reference.psi(h.double()).mean().item()
    got = pt.per_loss(h, num_slices, seed=7).item()
    assert math.isclose(got, want, rel_tol=F32_MANY_TERMS.rtol)
