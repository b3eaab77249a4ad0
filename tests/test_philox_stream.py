"""The CUDA direction stream (kernels/philox_stream.py, kernels/philox_directions.py) against an
independent Philox.

Runs the real Triton kernels: under ``TRITON_INTERPRET=1`` on CPU tensors in CI, on
the GPU when one is present. Checked here:

* the raw Philox4x32-10 words for the project's counter mapping ``(q, j) -> (j, q, 0, 0)``
  and key ``(seed_lo, seed_hi)`` equal a numpy Philox written from the algorithm,
  bit for bit (the kernels' own ``philox_words4``, on both);
* the normals against float64 Box-Muller of those words (``u = 2 - f(w0)``,
  ``theta = 2 pi f(w1) - 3 pi``), slice ``4q + w`` from word ``w``, within the
  stated bound of the special-function-unit transform. On the GPU this checks the
  ``lg2``/``sin``/``cos``/``sqrt`` approximations themselves; under the interpreter
  (numpy float32 functions instead of inline PTX) it checks the mapping and the
  bit-to-float conversions, and a float32 numpy replica of the same expressions
  is matched to a few ulp as well;
* the values depend on ``(seed, k, j)`` only: not on tiles, windows, ``s`` or ``d``;
* their distribution (Kolmogorov-Smirnov, moments, correlation inside one call);
* unit rows from ``sample_directions_triton``; poisoned outputs are fully written.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from per_triton.core import reference
from per_triton.kernels import philox_directions as pd
from per_triton.kernels.philox_stream import box_muller_error_bound

from .assertions import assert_close
from .tolerances import (
    F32_PATHS,
    F32_RADIUS,
    F64_BOUND_SLACK,
    KS_MIN_PVALUE,
    PHILOX_F32_REPLICA,
    PHILOX_SPLIT_SUM,
    PHILOX_UNIT_ROWS,
    SIGMAS,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
INTERPRET = DEVICE == "cpu"

_M32 = np.uint64(0xFFFFFFFF)


# ----------------------------------------------------- independent numpy Philox4x32-10


def numpy_philox4x32(counter: list[np.ndarray], key: tuple[int, int], rounds: int = 10):
    """Philox4x32 (Salmon et al., SC'11): ``rounds`` rounds on 4 x uint32 counters.

    Round: ``(c0, c1, c2, c3) -> (hi(B*c2) ^ c1 ^ k0, lo(B*c2), hi(A*c0) ^ c3 ^ k1,
    lo(A*c0))`` with ``A = 0xD2511F53``, ``B = 0xCD9E8D57``; the key is bumped by the
    Weyl constants ``(0x9E3779B9, 0xBB67AE85)`` after every round.
    """
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & _M32 for c in counter)
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for _ in range(rounds):
        prod_a = np.uint64(0xD2511F53) * c0  # < 2**64: exact in uint64
        prod_b = np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = (
            (prod_b >> np.uint64(32)) ^ c1 ^ k0,
            prod_b & _M32,
            (prod_a >> np.uint64(32)) ^ c3 ^ k1,
            prod_a & _M32,
        )
        k0 = (k0 + np.uint64(0x9E3779B9)) & _M32
        k1 = (k1 + np.uint64(0xBB67AE85)) & _M32
    return c0, c1, c2, c3


def numpy_words(seed: int, q: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Words ``(n, 4)`` of the project's mapping: counter ``(j, q, 0, 0)``, key from ``seed``."""
    zero = np.zeros_like(np.asarray(q, dtype=np.uint64))
    key = (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    return np.stack(numpy_philox4x32([j, q, zero, zero], key), axis=1).astype(np.int64)


def _pairs(r: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``(n, 2)`` radii and angles of the two pairs -> ``(n, 4)`` normals in word order."""
    out = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=2)  # (n, pair, cos/sin)
    return out.reshape(len(r), 4)


def numpy_box_muller64(words: np.ndarray) -> np.ndarray:
    """float64 Box-Muller of ``(n, 4)`` words: ``(r01 cos, r01 sin, r23 cos, r23 sin)``."""
    f = 1.0 + (np.asarray(words, dtype=np.int64) & 0x7FFFFF) / 2.0**23  # [1, 2), exact
    r = np.sqrt(-2.0 * np.log(2.0 - f[:, [0, 2]]))
    theta = 2.0 * np.pi * (f[:, [1, 3]] - 1.5)
    return _pairs(r, theta)


def numpy_box_muller32(words: np.ndarray) -> np.ndarray:
    """The kernel's expressions in numpy float32 (what the interpreter evaluates)."""
    w = np.asarray(words, dtype=np.int64)
    f = ((w & 0x7FFFFF) | 0x3F800000).astype(np.uint32).view(np.float32)
    u = np.float32(2.0) - f[:, [0, 2]]
    theta = f[:, [1, 3]] * np.float32(2 * np.pi) - np.float32(3 * np.pi)
    r2 = np.maximum(np.log2(u) * np.float32(-2.0 * np.log(2.0)), np.float32(2.0**-24))
    return _pairs(np.sqrt(r2), theta)


def _grid_words(seed: int, num_slices: int, col_start: int, col_stop: int) -> np.ndarray:
    """Words of every call covering ``v[:num_slices, col_start:col_stop]``: ``(Q, cols, 4)``."""
    groups = np.arange((num_slices + 3) // 4, dtype=np.int64)
    cols = np.arange(col_start, col_stop, dtype=np.int64)
    qq, jj = np.meshgrid(groups, cols, indexing="ij")
    return numpy_words(seed, qq.ravel(), jj.ravel()).reshape(len(groups), len(cols), 4)


def _to_rows(per_call: np.ndarray, num_slices: int) -> np.ndarray:
    """``(Q, cols, 4)`` per-call values -> ``(num_slices, cols)`` rows ``k = 4q + w``."""
    q, cols, _ = per_call.shape
    return per_call.transpose(0, 2, 1).reshape(4 * q, cols)[:num_slices]


def numpy_normals(seed: int, num_slices: int, col_start: int, col_stop: int) -> np.ndarray:
    """float64 ``v[:num_slices, col_start:col_stop]`` from the numpy Philox and Box-Muller."""
    w = _grid_words(seed, num_slices, col_start, col_stop)
    return _to_rows(numpy_box_muller64(w.reshape(-1, 4)).reshape(w.shape), num_slices)


def numpy_normals_bound(seed: int, num_slices: int, col_start: int, col_stop: int) -> np.ndarray:
    """The stated error bound of each element of :func:`numpy_normals`."""
    w = _grid_words(seed, num_slices, col_start, col_stop)
    return _to_rows(box_muller_error_bound(w.reshape(-1, 4)).reshape(w.shape), num_slices)


def assert_within_bound(name: str, got: torch.Tensor, seed: int, s: int, start: int, stop: int):
    """``|got - v64| <= bound`` elementwise (float64 Box-Muller of the same words)."""
    want = numpy_normals(seed, s, start, stop)
    bound = numpy_normals_bound(seed, s, start, stop)
    err = np.abs(got.cpu().double().numpy() - want)
    bad = np.argwhere(err > bound)
    assert bad.size == 0, (
        f"{name}: {len(bad)} elements outside the bound; first {bad[0].tolist()}: "
        f"err {err[tuple(bad[0])]:.3e} > {bound[tuple(bad[0])]:.3e}"
    )


def seed_t(seed: int) -> torch.Tensor:
    return torch.tensor([seed], dtype=torch.int64, device=DEVICE)


# ------------------------------------------------------------------------------ tests

SEEDS = [
    pytest.param(0, id="seed0"),
    pytest.param(12345, id="seed12345"),
    pytest.param(2**32 + 7, id="seed-hi-word"),
    pytest.param(2**62 + 987654321, id="seed-2p62"),
]


def test_numpy_philox_known_answer() -> None:
    """The numpy Philox against the Random123 known-answer vectors for Philox4x32-10."""
    zero = [np.array([0], dtype=np.uint64)] * 4
    out = [int(x[0]) for x in numpy_philox4x32(zero, (0, 0))]
    assert out == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    ones = [np.array([0xFFFFFFFF], dtype=np.uint64)] * 4
    out = [int(x[0]) for x in numpy_philox4x32(ones, (0xFFFFFFFF, 0xFFFFFFFF))]
    assert out == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


@pytest.mark.parametrize("seed", SEEDS)
def test_words_match_numpy_philox(seed: int) -> None:
    """Kernel words for counters with large slice-group and coordinate indices (no wrap)."""
    q = np.array([0, 0, 1, 4, 63, 2**20 + 3, 2**29 - 1, 2**31 - 1], dtype=np.int64)
    j = np.array([0, 1, 0, 255, 2**31 - 1, 17, 2**32 - 1, 0], dtype=np.int64)
    got = pd.philox_words(seed_t(seed), torch.from_numpy(q), torch.from_numpy(j)).cpu().numpy()
    want = numpy_words(seed, q, j)
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"words differ at (call, word) {bad[:4].tolist()}: {got[bad[0][0]]}"


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_normals_match_numpy_box_muller(seed: int) -> None:
    """``v[4q + w, j]`` is Box-Muller of word pairs (0, 1), (2, 3) of call ``(q, j)``."""
    got = pd.philox_normals(7, 0, 37, seed_t(seed))
    assert_within_bound("normals", got, seed, 7, 0, 37)
    if INTERPRET:
        w = _grid_words(seed, 7, 0, 37)
        replica = _to_rows(numpy_box_muller32(w.reshape(-1, 4)).reshape(w.shape), 7)
        assert_close(
            "normals vs float32 replica", got, torch.from_numpy(replica), *PHILOX_F32_REPLICA
        )


def test_high_coordinates_match_numpy() -> None:
    """A window far out in ``d`` and ``s`` (counter words near their limits)."""
    seed = 777
    start = 2**31 - 4099  # j close to the 2**31 limit on d, not a multiple of 4
    got = pd.philox_normals(6, start, start + 37, seed_t(seed))
    assert_within_bound("normals far in d", got, seed, 6, start, start + 37)


def test_error_bound_summary() -> None:
    """The bound's summary in the module docstring: <= 1.2e-5 for r >= 0.05, <= 6e-4 always.

    Evaluated on every radius word (the bound depends on the radius word only) at a
    2**-12 spacing of the mantissa plus the 64 words nearest ``u = 1``.
    """
    m = np.concatenate([np.arange(0, 2**23, 2**11), np.arange(64)])
    words = np.zeros((m.size, 4), dtype=np.int64)
    words[:, 0] = m
    bound = box_muller_error_bound(words)[:, 0]
    r = np.sqrt(-2.0 * np.log(2.0 - (1.0 + m / 2.0**23)))
    assert bound[r >= 0.05].max() <= 1.2e-5
    assert bound.max() <= 6e-4
    assert r.max() <= math.sqrt(46 * math.log(2)) + F64_BOUND_SLACK


@pytest.mark.parametrize(
    "tile",
    [
        pytest.param((4, 16), id="S4-D16"),
        pytest.param((32, 64), id="S32-D64"),
        pytest.param((64, 256), id="S64-D256"),
    ],
)
def test_tile_independence(tile: tuple[int, int]) -> None:
    """Same values, bit for bit, whatever the tile of the sampling kernel."""
    seed = seed_t(42)
    base = pd.philox_normals(7, 0, 1023, seed)
    other = pd.philox_normals(7, 0, 1023, seed, block_s=tile[0], block_d=tile[1])
    assert torch.equal(base, other)


def test_prefix_and_window_independence() -> None:
    """Row ``k`` does not depend on ``s`` or ``d``; a column window is a slice of the whole."""
    seed = seed_t(3)
    big = pd.philox_normals(64, 0, 1023, seed)
    assert torch.equal(pd.philox_normals(5, 0, 17, seed), big[:5, :17])
    assert torch.equal(pd.philox_normals(1, 0, 1, seed), big[:1, :1])
    assert torch.equal(pd.philox_normals(64, 500, 1023, seed), big[:, 500:])
    assert torch.equal(pd.philox_normals(6, 3, 70, seed), big[:6, 3:70])


def test_seed_repeatability_and_key_words() -> None:
    """Same seed, same values; seeds differing in either 32-bit key word differ."""
    a = pd.philox_normals(5, 0, 64, seed_t(2**33 + 1))
    assert torch.equal(a, pd.philox_normals(5, 0, 64, seed_t(2**33 + 1)))
    for other in (2**33 + 2, 2**34 + 1, 1):
        b = pd.philox_normals(5, 0, 64, seed_t(other))
        assert not torch.isclose(a, b).any(), f"seed {other} repeats values of seed 2**33+1"


def test_distribution() -> None:
    """64 x 1023 normals: KS against N(0, 1), moments, and no correlation inside a call."""
    stats = pytest.importorskip("scipy.stats")
    v = pd.philox_normals(64, 0, 1024, seed_t(2024)).cpu().double()
    x = v.flatten().numpy()
    n = x.size
    assert stats.kstest(x, "norm").pvalue > KS_MIN_PVALUE
    # Moments within SIGMAS standard errors of N(0, 1)'s.
    assert abs(x.mean()) < SIGMAS / math.sqrt(n)
    assert abs(x.var() - 1) < SIGMAS * math.sqrt(2 / n)
    assert abs(stats.skew(x)) < SIGMAS * math.sqrt(6 / n)
    assert abs(stats.kurtosis(x)) < SIGMAS * math.sqrt(24 / n)
    # Each output word position (cos and sin branches of Box-Muller) on its own:
    # word w of call (q, j) is v[4q + w, j].
    lanes = v.reshape(16, 4, 1024).permute(0, 2, 1).reshape(-1, 4).numpy()
    for w in range(4):
        assert stats.kstest(lanes[:, w], "norm").pvalue > KS_MIN_PVALUE, f"word {w}"
    corr = np.corrcoef(lanes.T)
    off = corr[~np.eye(4, dtype=bool)]
    assert np.abs(off).max() < SIGMAS / math.sqrt(lanes.shape[0]), f"within-call correlation {off}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_sample_directions_unit_rows(dtype: torch.dtype) -> None:
    """``theta_k = v_k / ||v_k||``, normalised in float64 for float64, float32 otherwise."""
    seed = seed_t(11)
    theta = pd.sample_directions_triton(5, 1023, seed, dtype)
    assert theta.shape == (5, 1023) and theta.dtype == dtype
    norms = torch.linalg.vector_norm(theta.double(), dim=1)
    assert_close("row norms", norms, torch.ones(5, dtype=torch.float64), *PHILOX_UNIT_ROWS[dtype])
    v = pd.philox_normals(5, 0, 1023, seed).double()
    assert_close("directions", theta, v / v.norm(dim=1, keepdim=True), *PHILOX_UNIT_ROWS[dtype])


def test_poisoned_output_fully_written() -> None:
    out = torch.full((7, 1023), float("nan"), device=DEVICE)
    pd.philox_normals(7, 0, 1023, seed_t(5), out=out, block_s=16, block_d=64)
    assert torch.isfinite(out).all()
    assert torch.equal(out, pd.philox_normals(7, 0, 1023, seed_t(5)))


def test_draw_and_sum_draws_the_same_stream() -> None:
    """The benchmark floor kernel sums exactly the normals the fused kernels use."""
    seed = seed_t(9)
    parts = pd.draw_and_sum(5, 1023, seed, split_d=256, block_s=16, block_d=64)
    total = pd.philox_normals(5, 0, 1023, seed).double().sum()
    assert_close("sum of normals", parts.double().sum(), total, *PHILOX_SPLIT_SUM)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        pytest.param({"col_start": -1, "col_stop": 9}, ValueError, id="negative-start"),
        pytest.param({"col_start": 8, "col_stop": 8}, ValueError, id="empty-window"),
    ],
)
def test_bad_windows(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        pd.philox_normals(3, seed=seed_t(0), **kwargs)


def test_bad_seed() -> None:
    with pytest.raises(TypeError, match="seed"):
        pd.philox_normals(3, 0, 8, torch.tensor([1], dtype=torch.int32))
    with pytest.raises(TypeError, match="seed"):
        pd.sample_directions_triton(3, 8, torch.tensor([1, 2]))


@pytest.mark.parametrize("block_s", [2, 12], ids=["under-4", "not-power-of-2"])
def test_bad_tiles(block_s: int) -> None:
    """Slice tiles are whole groups of four (one Philox call per group and coordinate)."""
    with pytest.raises(ValueError, match="block_s"):
        pd.philox_normals(3, 0, 8, seed_t(0), block_s=block_s)
    with pytest.raises(ValueError, match="block_s"):
        pd.draw_and_sum(3, 8, seed_t(0), split_d=8, block_s=block_s)


def test_the_radius_floor_moves_only_u_equal_1() -> None:
    """Every radius word (2**23 mantissas): ``r >= 2**-12``, equal to it only at ``u = 1``."""
    words = np.zeros((2**23, 4), dtype=np.int64)
    words[:, 0] = np.arange(2**23)
    pair = numpy_box_muller32(words)[:, :2].astype(np.float64)
    r = np.hypot(pair[:, 0], pair[:, 1])
    floor = 2.0**-12
    assert r.min() >= floor * (1 - F32_RADIUS.rtol)
    assert np.flatnonzero(r < floor * (1 + F32_RADIUS.rtol)).tolist() == [0]  # u = 1


def test_finish_kernel_counts_an_all_zero_row_as_p_equal_0() -> None:
    """``||v_k|| = 0`` (a ``d = 1`` row whose sine rounds to 0): coefficient 0, ``psi(0)``."""
    from per_triton.kernels.per_fused_launch import finish_launch

    b, s = 3, 8
    proj = torch.randn(1, b, s)
    sq = torch.rand(1, s) + 0.5
    proj[:, :, 5] = 0.0
    sq[:, 5] = 0.0
    launch = finish_launch(b, s, 1)
    out = launch.bind(torch.device("cpu"), part_proj_ptr=proj, part_sq_ptr=sq)
    launch.run(out)
    p = proj[0] / sq[0].sqrt().where(sq[0] > 0, torch.ones(s))
    want_coeff = torch.erf(p / math.sqrt(2)) / (s * sq[0].sqrt().where(sq[0] > 0, torch.ones(s)))
    torch.testing.assert_close(out["coeff_ptr"], want_coeff)
    assert (out["coeff_ptr"][:, 5] == 0).all()
    want_loss = reference.psi(p.double()).sum() / s
    torch.testing.assert_close(out["loss_part_ptr"].double().sum(), want_loss, **F32_PATHS.kw)
