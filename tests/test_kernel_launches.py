"""Each kernel's published launch (the ``*_launch`` functions of per_triton.kernels) is the
one its launcher runs and the one the static report (bench/sass_builds.py) compiles.

The launchers run for real (under ``TRITON_INTERPRET=1`` on CPU tensors in CI, on the
GPU when one is present) with :meth:`Launch.run` spied on; each launch they run is
compared field by field with what the public function returns for the same sizes and
dtypes, and the tensors it ran on with the launcher's inputs and outputs.
"""

from __future__ import annotations

import pytest
import torch

from per_triton.bench import sass_builds
from per_triton.core import exact
from per_triton.kernels import configs, per_exact, per_fused, per_fused_launch
from per_triton.kernels import philox_directions as pd
from per_triton.kernels.launch import Buffer, Launch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TILE = {"BLOCK_S": 32, "BLOCK_D": 32}


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Launch, dict]]:
    """Every ``(launch, tensors)`` run from here on, in order."""
    runs: list[tuple[Launch, dict]] = []
    real = Launch.run

    def spy(self: Launch, tensors: dict, autotuned=None) -> None:
        runs.append((self, dict(tensors)))
        real(self, tensors, autotuned)

    monkeypatch.setattr(Launch, "run", spy)
    return runs


def assert_same_launch(got: Launch, want: Launch) -> None:
    assert got.kernel is want.kernel
    assert got.args == want.args
    assert got.constexprs == want.constexprs
    assert (got.num_warps, got.num_stages) == (want.num_warps, want.num_stages)
    assert got.grid(got.constexprs) == want.grid(want.constexprs)


def seed_t(seed: int) -> torch.Tensor:
    return torch.tensor([seed], dtype=torch.int64, device=DEVICE)


def test_fused_launchers_run_the_published_launches(launched: list) -> None:
    b, d, s = 3, 100, 9
    h, seed = torch.randn(b, d, device=DEVICE), seed_t(3)
    loss, coeff = per_fused.per_fwd(h, seed, s, "ieee", config=TILE)
    (fwd, fwd_t), (fin, fin_t) = launched
    split_d, n_split = per_fused.plan_splits(b, d, s, h.device, block_s=32, block_d=32)
    want = per_fused_launch.fwd_launch(
        b, d, s, torch.float32, "ieee", TILE, sm_count=0, ctas_per_sm=0, split_d=split_d
    )
    assert_same_launch(fwd, want)
    assert fwd_t["h_ptr"] is h and fwd_t["seed_ptr"] is seed
    assert_same_launch(fin, per_fused_launch.finish_launch(b, s, n_split))
    assert fin_t["part_proj_ptr"] is fwd_t["part_proj_ptr"] and fin_t["coeff_ptr"] is coeff

    grad = per_fused.per_bwd(coeff, seed, d, torch.float32, "ieee", config=TILE)
    bwd, bwd_t = launched[2]
    assert_same_launch(bwd, per_fused_launch.bwd_launch(b, d, s, torch.float32, "ieee", TILE))
    assert bwd_t["coeff_ptr"] is coeff and bwd_t["grad_ptr"] is grad
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_direction_launchers_run_the_published_launches(launched: list) -> None:
    seed = seed_t(11)
    v = pd.philox_normals(7, 3, 70, seed)
    draws = pd.draw_and_sum(5, 100, seed, split_d=64, block_s=16, block_d=64)
    q = torch.arange(5, dtype=torch.int64)
    words = pd.philox_words(seed, q, q + 1)
    (normals, normals_t), (floor, floor_t), (raw, raw_t) = launched
    assert_same_launch(normals, pd.normals_launch(7, 3, 70))
    assert_same_launch(floor, pd.draw_sum_launch(5, 100, 64, block_s=16, block_d=64))
    assert_same_launch(raw, pd.words_launch(5))
    assert normals_t["out_ptr"] is v and floor_t["out_ptr"] is draws and raw_t["out_ptr"] is words


def test_exact_launchers_run_the_published_launches(launched: list) -> None:
    b, d = 5, 300
    h = torch.randn(b, d, device=DEVICE)
    nodes = exact.node_table(h.device)
    loss, scale = per_exact.exact_fwd(h, nodes, exact.SWITCH_K, block=64, block_b=4)
    grad = torch.randn(b, d, device=DEVICE)
    out = per_exact.scale_rows(h, scale, grad, block=64)
    (norms, norms_t), (terms, terms_t), (rows, rows_t) = launched
    assert_same_launch(norms, per_exact.norms_launch(b, d, torch.float32, 64))
    n = nodes.shape[1]
    want = per_exact.terms_launch(b, d, torch.float32, n, exact.SWITCH_K, block=64, block_b=4)
    assert_same_launch(terms, want)
    assert_same_launch(rows, per_exact.scale_launch(b, d, torch.float32, block=64))
    assert terms_t["part_ptr"] is norms_t["part_ptr"] and terms_t["loss_ptr"] is loss
    assert rows_t["grad_ptr"] is grad and rows_t["out_ptr"] is out


def test_a_tensor_of_another_dtype_is_refused() -> None:
    launch = per_fused_launch.bwd_launch(2, 8, 4, torch.bfloat16, "tf32", TILE)
    tensors = launch.bind(torch.device("cpu"))
    tensors["grad_ptr"] = torch.empty(2, 8, dtype=torch.float16)
    with pytest.raises(TypeError, match="grad_ptr: a torch.float16 tensor for a torch.bfloat16"):
        launch.run(tensors)


@pytest.mark.parametrize("arch", list(configs.ARCHS))
def test_report_builds_are_complete_launches_of_the_row(arch: str) -> None:
    """Every build names each kernel argument once (runtime ones in the kernel's
    order); the fixed forward/backward builds carry the row's first config."""
    builds = sass_builds.builds("all", arch)
    assert {b.name for b in builds} >= {"fwd", "bwd", "draw_sum", "normals", "finish"}
    for build in builds:
        launch, names = build.launch, build.launch.kernel.arg_names
        assert list(launch.args) == [n for n in names if n not in launch.constexprs], build
        assert set(launch.constexprs) == set(names) - set(launch.args), build
        assert all(isinstance(v, (Buffer, int)) for v in launch.args.values()), build
    row = configs.row_for(configs.ARCHS[arch])
    for name, entry in (("fwd", row.fwd[0]), ("bwd", row.bwd[0])):
        fixed = [b for b in builds if b.name == name and b.role == "fixed"]
        assert {(b.dtype, b.precision) for b in fixed} == set(sass_builds.FIXED_VARIANTS)
        for b in fixed:
            got = (b.consts["BLOCK_S"], b.consts["BLOCK_D"], b.num_warps, b.num_stages)
            assert got == entry, b.label()
