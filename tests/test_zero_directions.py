"""No direction row is ever all zeros, so no loss is ever 0/0 at tiny ``d``.

A Box-Muller radius word with ``u = 1`` gives ``r = 0``: at ``d <= 2`` on the CPU stream
(both coordinates of a pair share the radius) that is an all-zero row about once in
2**24 rows, and ``p = <h, v> / ||v||`` was NaN. Both streams floor ``r**2`` at 2**-24
(docs/design.md, "The random stream").

Oracles: float64 ``sqrt(-2 ln u)`` for every one of the 2**24 radius words, the
floor's closed form at ``u = 1``, the torch implementation of the CPU stream against
the C sampler at a counter found to hold ``u = 1``, and the plain reference on the
materialised directions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import per_triton as pt
from per_triton.core import normals, normals_torch, reference, seeds

from .tolerances import F32_RADIUS, F64_GRAD_PATHS, F64_SAME_MATH

KEY = 0x0123456789ABCDEF
R_FLOOR = 2.0**-12  # sqrt(2**-24)


def test_every_cpu_radius_word_is_positive_and_only_u_equal_1_is_floored():
    top = torch.arange(2**24, dtype=torch.int64)
    r = normals_torch._radius(top << 8).double().numpy()
    u = (top.double().numpy() + 1.0) * 2.0**-24
    exact = np.sqrt(-2.0 * np.log(u))
    assert r.min() == R_FLOOR and np.count_nonzero(r == R_FLOOR) == 1
    assert r[-1] == R_FLOOR  # the word with u = 1
    away = u < 1.0
    assert np.abs(r[away] - exact[away]).max() <= F32_RADIUS.rtol * exact.max()


def test_no_cpu_angle_word_gives_an_exact_zero():
    angle = torch.arange(2**23, dtype=torch.int64) << 7
    radius = torch.zeros_like(angle)  # u = 2**-24: the largest radius, any is fine
    for quadrant in range(4):
        z0, z1 = normals_torch._box_muller(radius, angle | (quadrant << 30))
        assert torch.count_nonzero(z0) == angle.numel()
        assert torch.count_nonzero(z1) == angle.numel()


def _counter_with_unit_u(key: int) -> tuple[int, int, int]:
    """``(row, group, word)`` of the first radius word with ``u = 1`` under ``key``."""
    k0, k1 = normals_torch.key_words(key)
    rows = 256
    for first in range(0, 2**26, 2**16):  # 2**24 counters per pass: about one hit each
        groups = torch.arange(first, first + 2**16, dtype=torch.int64).expand(rows, -1)
        row = torch.arange(rows, dtype=torch.int64)[:, None].expand_as(groups)
        w0, _w1, w2, _w3 = normals_torch.philox(k0, k1, groups, row)
        for word, w in ((0, w0), (2, w2)):
            hit = torch.nonzero((w >> 8) == 0xFFFFFF)
            if len(hit):
                r, g = hit[0].tolist()
                return r, first + g, word
    raise AssertionError("no u = 1 word in 2**26 counters")


def test_the_c_sampler_floors_the_radius_at_u_equal_1_like_the_oracle():
    row, group, word = _counter_with_unit_u(KEY)
    col = 4 * group + word
    pair = normals.normals(KEY, 1, 2, row, col)  # the two normals sharing that radius
    oracle = normals_torch.normals_block(*normals_torch.key_words(KEY), row, 1, col, 2)
    assert torch.equal(pair, oracle)
    assert math.isclose(float(pair.double().norm()), R_FLOOR, rel_tol=F32_RADIUS.rtol)


def test_a_two_dimensional_layer_with_a_floored_row_gives_a_finite_loss_and_gradient():
    """Seed 12813 at ``(s, d) = (256, 2)``: row 188 is the floored pair (it was 0/0)."""
    seed = 12813
    v = normals.normals(seeds.cpu_stream_key(seed), 256, 2).double()
    assert math.isclose(float(v[188].norm()), R_FLOOR, rel_tol=F32_RADIUS.rtol)
    h = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h.requires_grad_()
    loss = pt.per_loss(h, 256, seed=seed)
    loss.backward()
    theta = pt.sample_directions(256, 2, seed=seed, dtype=torch.float64)
    assert torch.isfinite(theta).all()
    torch.testing.assert_close(theta.norm(dim=1), torch.ones(256, dtype=torch.float64))
    expected = reference.per_loss(h.detach(), theta)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.detach(), expected, **F64_SAME_MATH.kw)
    torch.testing.assert_close(h.grad, reference.per_grad(h.detach(), theta), **F64_GRAD_PATHS.kw)
