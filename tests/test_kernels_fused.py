"""Fused PER kernels (kernels/per_fused.py) against the plain reference, same directions.

Runs the real Triton kernels: under ``TRITON_INTERPRET=1`` on CPU tensors in CI
(float32; the interpreter ignores ``input_precision`` and cannot check bf16, see
docs/design.md, "Testing"), on the GPU when one is present; comparisons with the reference
use ``precision="ieee"`` so the same tolerances hold on both. Every test poisons every
buffer the launchers allocate (outputs and workspaces) with NaN first, so an
element a kernel forgets to write fails the comparison.

The reference is ``per_triton.core.reference`` in float64 on the directions that
``sample_directions_triton`` materialises from the same seed (Eq. 5, Eq. 6).
"""

from __future__ import annotations

import importlib

import pytest
import torch

from per_triton.core import reference
from per_triton.kernels import per_fused, per_fused_launch
from per_triton.kernels.philox_directions import philox_normals, sample_directions_triton

from .assertions import assert_close
from .tolerances import F64_BOUND_SLACK, FUSED_TILE_CONFIGS, FUSED_VS_REFERENCE

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# b in {1, 3, 7}, d in {1, 17, 1023}, s in {1, 5, 64}: every value of each, odd shapes.
SHAPES = [
    pytest.param(1, 1, 1, id="b1-d1-s1"),
    pytest.param(3, 17, 5, id="b3-d17-s5"),
    pytest.param(7, 1023, 64, id="b7-d1023-s64"),
    pytest.param(1, 1023, 1, id="b1-d1023-s1"),
    pytest.param(7, 17, 64, id="b7-d17-s64"),
    pytest.param(3, 1, 64, id="b3-d1-s64"),
    pytest.param(7, 1, 5, id="b7-d1-s5"),
    pytest.param(3, 1023, 5, id="b3-d1023-s5"),
]

# Word tiles of BLOCK_S / 4 >= 8 slices: the smallest dot the GPU compiles.
TILE_A = {"BLOCK_S": 32, "BLOCK_D": 32}
TILE_B = {"BLOCK_S": 64, "BLOCK_D": 64}


@pytest.fixture(autouse=True)
def poison(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every buffer the launchers allocate starts as NaN."""

    def nan_empty(*args, **kwargs):
        out = torch.empty(*args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out.fill_(-1)

    monkeypatch.setattr(per_fused, "_empty", nan_empty)


def seed_t(seed: int) -> torch.Tensor:
    return torch.tensor([seed], dtype=torch.int64, device=DEVICE)


def expected(h: torch.Tensor, seed: torch.Tensor, s: int):
    """Reference loss_sum, coeff and unit-incoming-gradient grad, float64, same directions."""
    theta = sample_directions_triton(s, h.shape[1], seed, torch.float64)
    v = philox_normals(s, 0, h.shape[1], seed).double()
    h64 = h.double()
    p = reference.project(h64, theta)
    loss_sum = reference.per_loss(h64, theta, reduction="sum")
    coeff = reference.psi_grad(p) / (s * v.norm(dim=1))
    grad = reference.per_grad(h64, theta, reduction="sum")
    return loss_sum, coeff, grad, v


@pytest.mark.parametrize("b, d, s", SHAPES)
def test_forward_backward_match_reference(b: int, d: int, s: int) -> None:
    """Eq. 5 loss, Eq. 6 coefficients and the Algorithm 1 gradient on odd shapes."""
    torch.manual_seed(b * 1000 + d + s)
    h = torch.randn(b, d, device=DEVICE)
    seed = seed_t(1000 + b + d + s)
    loss_sum, coeff, grad, _ = expected(h, seed, s)
    tol = FUSED_VS_REFERENCE[torch.float32]
    got_loss, got_coeff = per_fused.per_fwd(h, seed, s, "ieee", config=TILE_A)
    assert got_loss.dtype == torch.float32 and got_loss.shape == ()
    assert_close("loss_sum", got_loss, loss_sum, *tol["loss_sum"])
    assert_close("coeff", got_coeff, coeff, *tol["coeff"])
    got_grad = per_fused.per_bwd(got_coeff, seed, d, torch.float32, "ieee", config=TILE_A)
    assert_close("grad", got_grad, grad, *tol["grad"])


@pytest.mark.parametrize(
    "b, d, s",
    [pytest.param(7, 1023, 5, id="b7-d1023-s5"), pytest.param(3, 17, 64, id="b3-d17-s64")],
)
def test_backward_on_arbitrary_coefficients(b: int, d: int, s: int) -> None:
    """``grad = C @ V`` for any scaled ``C`` (the incoming gradient folded in)."""
    torch.manual_seed(7)
    coeff = torch.randn(b, s, device=DEVICE) * 3.0
    seed = seed_t(31)
    v = philox_normals(s, 0, d, seed).double()
    got = per_fused.per_bwd(coeff, seed, d, torch.float32, "ieee", config=TILE_B)
    # float32 sums of s products: error <= s * eps32 * (|C| @ |V|), elementwise
    scale = coeff.abs().double() @ v.abs()
    err = (got.double() - coeff.double() @ v).abs()
    assert (err <= s * 2.0**-23 * scale + F64_BOUND_SLACK).all(), (
        f"max error / bound {(err / scale).max()}"
    )


def test_tile_configs_and_splits_agree() -> None:
    """Two tile configs and two splits of ``d`` draw the same directions.

    The stream's contract: docs/design.md, "The random stream".
    """
    torch.manual_seed(0)
    b, d, s = 7, 1023, 64
    h = torch.randn(b, d, device=DEVICE)
    seed = seed_t(77)
    loss_a, coeff_a = per_fused.per_fwd(h, seed, s, "ieee", config=TILE_A, split_d=256)
    loss_b, coeff_b = per_fused.per_fwd(h, seed, s, "ieee", config=TILE_B, split_d=512)
    assert_close("loss_sum A vs B", loss_b, loss_a, *FUSED_TILE_CONFIGS)
    assert_close("coeff A vs B", coeff_b, coeff_a, *FUSED_TILE_CONFIGS)
    grad_a = per_fused.per_bwd(coeff_a, seed, d, torch.float32, "ieee", config=TILE_A)
    grad_b = per_fused.per_bwd(coeff_a, seed, d, torch.float32, "ieee", config=TILE_B)
    assert_close("grad A vs B", grad_b, grad_a, *FUSED_TILE_CONFIGS)


def test_deterministic_reruns() -> None:
    """Same inputs and seed: bitwise-identical loss, coefficients and gradient."""
    torch.manual_seed(1)
    h = torch.randn(3, 1023, device=DEVICE)
    seed = seed_t(5)
    runs = []
    for _ in range(2):
        loss, coeff = per_fused.per_fwd(h, seed, 5)
        runs.append((loss, coeff, per_fused.per_bwd(coeff, seed, 1023, torch.float32)))
    for name, x, y in zip(("loss_sum", "coeff", "grad"), *runs, strict=True):
        assert torch.equal(x, y), f"{name} differs between two identical runs"


def test_default_path_autotuned_and_fixed() -> None:
    """The launcher's own choices (autotune, or the fixed config) match the reference."""
    torch.manual_seed(2)
    h = torch.randn(3, 17, device=DEVICE)
    seed = seed_t(8)
    loss_sum, coeff, grad, _ = expected(h, seed, 5)
    tol = FUSED_VS_REFERENCE[torch.float32]
    for env in ("1", "0"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PER_TRITON_AUTOTUNE", env)
            got_loss, got_coeff = per_fused.per_fwd(h, seed, 5, "ieee")
            got_grad = per_fused.per_bwd(got_coeff, seed, 17, torch.float32, "ieee")
        assert_close(f"loss_sum autotune={env}", got_loss, loss_sum, *tol["loss_sum"])
        assert_close(f"coeff autotune={env}", got_coeff, coeff, *tol["coeff"])
        assert_close(f"grad autotune={env}", got_grad, grad, *tol["grad"])


def test_nan_propagates() -> None:
    """NaN in one activation makes the loss non-finite, never a silent finite value."""
    h = torch.randn(3, 17, device=DEVICE)
    h[1, 4] = float("nan")
    loss, coeff = per_fused.per_fwd(h, seed_t(0), 5, config=TILE_A)
    assert not torch.isfinite(loss)
    assert torch.isnan(coeff[1]).all() and torch.isfinite(coeff[[0, 2]]).all()


def test_plan_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Splits cover d, are whole tiles, fill CTAS_PER_SM per SM, keep the workspace bound."""
    monkeypatch.setattr(per_fused, "_sm_count", lambda device: 132)
    for b, d, s in [(128, 196608, 256), (1, 1, 1), (7, 1023, 64), (4096, 300, 1024)]:
        for bs, bd in [(64, 32), (32, 128)]:
            split_d, n = per_fused.plan_splits(
                b, d, s, torch.device("cuda"), block_s=bs, block_d=bd
            )
            assert split_d % bd == 0
            assert (n - 1) * split_d < d <= n * split_d
            assert n == 1 or n * b * s * 4 <= per_fused_launch.WORKSPACE_BYTES
            programs = n * -(-s // bs) * -(-b // per_fused_launch.block_b(b))
            fits = n * b * s * 4 <= per_fused_launch.WORKSPACE_BYTES and n * bd < d
            assert programs >= per_fused.CTAS_PER_SM * 132 or not fits
    # The paper shape: 4 slice tiles x 66 splits = 264 programs (2 per SM), 8.25 MiB.
    split_d, n = per_fused.plan_splits(
        128, 196608, 256, torch.device("cuda"), block_s=64, block_d=32
    )
    assert (split_d, n) == (3008, 66) and n * 128 * 256 * 4 == 8.25 * 2**20


def test_splits_not_multiple_of_block_agree() -> None:
    """A split length that is not a multiple of BLOCK_D (masked tail in every split)."""
    torch.manual_seed(4)
    b, d, s = 3, 1023, 40
    h = torch.randn(b, d, device=DEVICE)
    seed = seed_t(12)
    loss_sum, coeff, _, _ = expected(h, seed, s)
    got_loss, got_coeff = per_fused.per_fwd(h, seed, s, "ieee", config=TILE_A, split_d=100)
    assert_close("loss_sum", got_loss, loss_sum, *FUSED_VS_REFERENCE[torch.float32]["loss_sum"])
    assert_close("coeff", got_coeff, coeff, *FUSED_VS_REFERENCE[torch.float32]["coeff"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_cuda_op_implementation(dtype: torch.dtype) -> None:
    """``per_triton.core.cuda_ops``' implementations (the CUDA code path) on the same directions."""
    cuda_ops = pytest.importorskip("per_triton.core.cuda_ops")
    torch.manual_seed(3)
    b, d, s = 3, 1023, 5
    h = torch.randn(b, d, device=DEVICE, dtype=dtype)
    seed = seed_t(21)
    loss_sum, coeff, grad, _ = expected(h, seed, s)
    tol = FUSED_VS_REFERENCE[dtype]
    got_loss, got_coeff = cuda_ops.per_fwd_impl(h, seed, s, "ieee")
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert got_loss.dtype == acc and got_coeff.dtype == acc
    assert_close("loss_sum", got_loss, loss_sum, *tol["loss_sum"])
    assert_close("coeff", got_coeff, coeff, *tol["coeff"])
    got_grad = cuda_ops.per_bwd_impl(got_coeff, seed, d, dtype, "ieee")
    assert got_grad.dtype == dtype
    assert_close("grad", got_grad, grad, *tol["grad"])


def test_cuda_kernels_registered() -> None:
    """The ops have CUDA kernels once :mod:`per_triton.core.ops` (which registers them) is imported.

    Imports the registering module itself, so the test passes alone in a fresh process,
    not only after another test happened to import it.
    """
    importlib.import_module("per_triton.core.ops")
    for name in ("per_triton::per_fwd", "per_triton::per_bwd", "per_triton::per_proj"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CUDA"), name


@pytest.mark.parametrize(
    "call, error, match",
    [
        pytest.param(
            lambda: per_fused.per_fwd(torch.randn(3, 8, device=DEVICE), torch.tensor([1.0]), 4),
            TypeError,
            "seed",
            id="float-seed",
        ),
        pytest.param(
            lambda: per_fused.per_fwd(torch.randn(8, 3, device=DEVICE).T, seed_t(0), 4),
            ValueError,
            "unit column stride",
            id="strided-h",
        ),
        pytest.param(
            lambda: per_fused.per_fwd(torch.randn(3, 8, device=DEVICE).double(), seed_t(0), 4),
            TypeError,
            "float32",
            id="float64-h",
        ),
        pytest.param(
            lambda: per_fused.per_fwd(torch.randn(3, 8, device=DEVICE), seed_t(0), 4, "fp16"),
            ValueError,
            "precision",
            id="bad-precision",
        ),
        pytest.param(
            lambda: per_fused.per_bwd(
                torch.randn(3, 4, device=DEVICE).double(), seed_t(0), 8, torch.float32
            ),
            ValueError,
            "coeff",
            id="float64-coeff",
        ),
    ],
)
def test_bad_inputs(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_single_column_with_any_stride() -> None:
    """A (b, 1) tensor is contiguous whatever its column stride."""
    h = torch.randn(1, 6, device=DEVICE).T  # shape (6, 1), strides (1, 6)
    assert h.is_contiguous() and h.stride(1) != 1
    seed = seed_t(5)
    loss_sum, coeff, _, _ = expected(h, seed, 3)
    got_loss, got_coeff = per_fused.per_fwd(h, seed, 3, "ieee", config=TILE_A)
    tol = FUSED_VS_REFERENCE[torch.float32]
    assert_close("loss_sum", got_loss, loss_sum, *tol["loss_sum"])
    assert_close("coeff", got_coeff, coeff, *tol["coeff"])


def test_bad_slice_tile() -> None:
    """A config whose BLOCK_S is not whole groups of four slices is refused by name."""
    h = torch.randn(3, 17, device=DEVICE)
    with pytest.raises(ValueError, match="BLOCK_S"):
        per_fused.per_fwd(h, seed_t(0), 5, config={"BLOCK_S": 6, "BLOCK_D": 32})
    with pytest.raises(ValueError, match="BLOCK_S"):
        per_fused.per_bwd(
            torch.zeros(3, 5), seed_t(0), 17, torch.float32, config={"BLOCK_S": 6, "BLOCK_D": 32}
        )
