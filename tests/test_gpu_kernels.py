"""GPU-only checks of the fused kernels (``gpu`` marker: skipped without CUDA).

What the interpreter cannot show (docs/design.md, "Testing") is checked here, on a real
GPU: TF32 and bf16/fp16 dots against a float64 reference on the same directions,
bitwise determinism, the compiled path (``torch.compile(fullgraph=True)`` with no
recompile, ``mode="reduce-overhead"``), CUDA-graph replays drawing new directions,
``torch.library.opcheck`` of the registered ops, indices past ``2**31``, and the
fused path's extra memory. Run by ``bench/gpu.sh`` on a lent GPU.
"""

from __future__ import annotations

import pytest
import torch

import per_triton as pt
from per_triton.core import reference

from .test_philox_stream import assert_within_bound
from .tolerances import (
    GPU_COMPILED_VS_EAGER,
    GPU_F64_REL_NORM,
    GPU_GRAPH_REPLAY,
    GPU_LARGE_INDEX_REL_NORM,
    GPU_REL_NORM,
)

pytestmark = pytest.mark.gpu

# Relative error ||got - want|| / ||want|| against float64 on the same directions,
# by (dtype, precision) and output: tests/tolerances.py, GPU_REL_NORM.
TOLERANCES = GPU_REL_NORM
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

SHAPES = [
    pytest.param(3, 17, 5, id="b3-d17-s5"),
    pytest.param(7, 1023, 64, id="b7-d1023-s64"),
    pytest.param(128, 4099, 256, id="b128-d4099-s256"),
    pytest.param(200, 3001, 300, id="b200-d3001-s300"),
]


def assert_rel(name: str, got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    """Fail if the relative error norm exceeds ``tol``; report it and the worst element."""
    got64, want64 = got.detach().double(), want.detach().double()
    assert got64.shape == want64.shape, f"{name}: shape {got64.shape} != {want64.shape}"
    assert torch.isfinite(got64).all(), f"{name}: non-finite values"
    err = (got64 - want64).abs()
    rel = float(err.norm() / want64.norm().clamp_min(1e-300))
    if rel > tol:
        idx = int(err.argmax())
        raise AssertionError(
            f"{name}: relative error {rel:.3e} > {tol:.1e}; worst at flat {idx}: "
            f"{got64.flatten()[idx].item()!r} vs {want64.flatten()[idx].item()!r}"
        )


@pytest.fixture
def fixed_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip autotuning (many configs to compile) where the test is about numerics."""
    monkeypatch.setenv("PER_TRITON_AUTOTUNE", "0")


def seed_t(seed: int) -> torch.Tensor:
    return torch.tensor([seed], dtype=torch.int64, device="cuda")


def reference_outputs(h: torch.Tensor, seed: torch.Tensor, s: int):
    """float64 reference loss_sum, coeff, grad (reduction="sum") on the CUDA directions."""
    theta = pt.sample_directions(s, h.shape[1], seed, device=h.device, dtype=torch.float64)
    if h.device.type == "cuda":
        from per_triton.kernels.philox_directions import philox_normals

        raw = philox_normals(s, 0, h.shape[1], seed)
    else:  # lets the test logic run against the CPU path too
        from per_triton.core.directions import draw_columns

        raw = draw_columns(int(seed.item()), s, 0, h.shape[1])
    norms = raw.double().norm(dim=1).to(h.device)
    h64 = h.double()
    p = reference.project(h64, theta)
    loss = reference.per_loss(h64, theta, reduction="sum")
    coeff = reference.psi_grad(p) / (s * norms)
    grad = reference.per_grad(h64, theta, reduction="sum")
    return loss, coeff, grad


def check_against_reference(b: int, d: int, s: int, dtype_name: str, precision: str) -> None:
    torch.manual_seed(b + d + s)
    dtype = DTYPES[dtype_name]
    h = torch.randn(b, d, device="cuda").to(dtype)
    seed = seed_t(b * 7 + d * 3 + s)
    want_loss, want_coeff, want_grad = reference_outputs(h, seed, s)
    tol = TOLERANCES[(dtype_name, precision)]
    loss_sum, coeff = torch.ops.per_triton.per_fwd(h, seed, s, precision)
    assert loss_sum.dtype == torch.float32 and coeff.dtype == torch.float32
    assert_rel("loss_sum", loss_sum, want_loss, tol["loss"])
    assert_rel("coeff", coeff, want_coeff, tol["coeff"])
    x = h.clone().requires_grad_(True)
    loss = pt.per_loss(x, s, seed=seed, reduction="sum", precision=precision)
    loss.backward()
    assert x.grad.dtype == dtype
    assert_rel("per_loss", loss, want_loss, tol["loss"])
    assert_rel("grad", x.grad, want_grad, tol["grad"])


@pytest.mark.parametrize("b, d, s", SHAPES)
@pytest.mark.parametrize(
    "dtype_name, precision", [pytest.param(*k, id="-".join(k)) for k in TOLERANCES]
)
def test_fused_vs_float64_reference(
    fixed_config: None, b: int, d: int, s: int, dtype_name: str, precision: str
) -> None:
    """Eq. 5 loss, Eq. 6 coefficients and gradient vs float64 on the same directions."""
    check_against_reference(b, d, s, dtype_name, precision)


def test_autotuned_path_vs_reference() -> None:
    """The autotuned kernels (the default) on the paper-like shape family."""
    check_against_reference(128, 4099, 256, "float32", "ieee")
    check_against_reference(128, 4099, 256, "bfloat16", "tf32")


def test_float64_path() -> None:
    """float64 activations: the materialised-chunk path, exact to float64 rounding."""
    h = torch.randn(7, 1023, device="cuda", dtype=torch.float64)
    seed = seed_t(3)
    want_loss, want_coeff, want_grad = reference_outputs(h, seed, 64)
    loss_sum, coeff = torch.ops.per_triton.per_fwd(h, seed, 64, "tf32")
    assert loss_sum.dtype == torch.float64
    assert_rel("loss_sum", loss_sum, want_loss, GPU_F64_REL_NORM)
    assert_rel("coeff", coeff, want_coeff, GPU_F64_REL_NORM)
    x = h.clone().requires_grad_(True)
    pt.per_loss(x, 64, seed=seed, reduction="sum").backward()
    assert_rel("grad", x.grad, want_grad, GPU_F64_REL_NORM)


def test_deterministic() -> None:
    """Same inputs and seed: bitwise-identical loss and gradient, run after run."""
    torch.manual_seed(0)
    h = torch.randn(128, 65536, device="cuda")
    seed = seed_t(11)
    runs = []
    for _ in range(3):
        x = h.clone().requires_grad_(True)
        loss = pt.per_loss(x, 256, seed=seed)
        loss.backward()
        runs.append((loss.detach(), x.grad))
    for loss, grad in runs[1:]:
        assert torch.equal(loss, runs[0][0]), "loss differs between identical runs"
        assert torch.equal(grad, runs[0][1]), "grad differs between identical runs"


def test_compile_fullgraph_no_recompile() -> None:
    """20 steps of a compiled step with PER: one graph, no break, new directions each step."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    layer = torch.nn.Linear(96, 160, device="cuda")

    def step(x: torch.Tensor, seed: torch.Tensor | None) -> torch.Tensor:
        h = torch.relu(layer(x))
        return pt.per_loss(h, 64, seed=seed) + h.square().mean()

    # One compiled function per seed kind (None is drawn inside the graph).
    compiled_drawn = torch.compile(lambda x: step(x, None), fullgraph=True)
    compiled_seeded = torch.compile(step, fullgraph=True)
    x = torch.randn(32, 96, device="cuda")
    with torch._dynamo.config.patch(error_on_recompile=True):
        drawn = []
        for _ in range(20):
            loss = compiled_drawn(x)
            loss.backward()
            drawn.append(loss.item())
        fixed = []
        for i in range(20):
            loss = compiled_seeded(x, seed_t(i % 2))
            loss.backward()
            fixed.append(loss.item())
    assert len(set(drawn)) == 20, "seed=None must draw new directions every step"
    assert fixed[0::2] == [fixed[0]] * 10 and fixed[1::2] == [fixed[1]] * 10
    assert fixed[0] != fixed[1]
    assert not counters["graph_break"], dict(counters["graph_break"])
    eager = step(x, seed_t(0)).item()
    assert fixed[0] == GPU_COMPILED_VS_EAGER.approx(eager)


def test_cuda_graph_replays() -> None:
    """Each replay draws new directions; a fixed seed tensor is read, not frozen."""
    torch.manual_seed(0)
    h = torch.randn(16, 300, device="cuda", requires_grad=True)
    seed = seed_t(5)

    def body(seed_arg: torch.Tensor | None):
        loss = pt.per_loss(h, 64, seed=seed_arg)
        (grad,) = torch.autograd.grad(loss, h)
        return loss, grad

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # JIT and autotuning happen here, not under capture
            body(None)
            body(seed)
    torch.cuda.current_stream().wait_stream(side)

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss_drawn, grad_drawn = body(None)
    values = []
    for _ in range(4):
        graph.replay()
        values.append((loss_drawn.item(), grad_drawn.clone()))
    assert len({v for v, _ in values}) == 4, "replays repeated directions"
    assert not torch.equal(values[0][1], values[1][1])

    graph_fixed = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph_fixed):
        loss_fixed, grad_fixed = body(seed)
    for value in (5, 6, 5):
        seed.fill_(value)
        graph_fixed.replay()
        want_loss, want_grad = body(seed_t(value))
        assert torch.equal(loss_fixed, want_loss), f"seed {value}: replay != eager"
        assert torch.equal(grad_fixed, want_grad), f"seed {value}: replay grad != eager"


def test_reduce_overhead_mode() -> None:
    """``torch.compile(mode="reduce-overhead")`` (CUDA graphs): new draws per call."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    h = torch.randn(16, 300, device="cuda")
    drawn = torch.compile(lambda x: pt.per_loss(x, 64), mode="reduce-overhead", fullgraph=True)
    fixed = torch.compile(
        lambda x, sd: pt.per_loss(x, 64, seed=sd), mode="reduce-overhead", fullgraph=True
    )
    values = [drawn(h).item() for _ in range(6)]
    assert len(set(values)) == 6, f"repeated draws under CUDA graphs: {values}"
    seed = seed_t(9)
    got = [fixed(h, seed).item() for _ in range(4)]
    want = pt.per_loss(h, 64, seed=seed_t(9)).item()
    assert got == GPU_GRAPH_REPLAY.approx([want] * 4), (got, want)


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_opcheck(dtype_name: str) -> None:
    """``torch.library.opcheck`` on both registered ops with CUDA tensors."""
    dtype = DTYPES[dtype_name]
    h = torch.randn(7, 300, device="cuda", dtype=dtype, requires_grad=True)
    seed = seed_t(4)
    torch.library.opcheck(torch.ops.per_triton.per_fwd.default, (h, seed, 64, "tf32"))
    coeff = torch.randn(7, 64, device="cuda")
    torch.library.opcheck(torch.ops.per_triton.per_bwd.default, (coeff, seed, 300, dtype, "tf32"))


def test_indices_past_2_31(fixed_config: None) -> None:
    """``s * d > 2**31``: fused results vs the float64 chunk path, and stores past 2**31."""
    from per_triton.core import cuda_ops
    from per_triton.kernels import per_fused
    from per_triton.kernels.philox_directions import philox_normals

    s, d = 256, 2**23 + 12
    assert s * d > 2**31
    seed = seed_t(123)
    torch.manual_seed(0)
    h = torch.randn(2, d, device="cuda")
    loss, coeff = per_fused.per_fwd(h, seed, s, "ieee")
    loss64, coeff64 = cuda_ops.per_fwd_impl(h.double(), seed, s, "ieee")
    assert_rel("loss_sum", loss, loss64, GPU_LARGE_INDEX_REL_NORM)
    assert_rel("coeff", coeff, coeff64, GPU_LARGE_INDEX_REL_NORM)
    grad = per_fused.per_bwd(coeff, seed, d, torch.float32, "ieee")
    grad64 = cuda_ops.per_bwd_impl(coeff.double(), seed, d, torch.float64, "ieee")
    assert_rel("grad", grad, grad64, GPU_LARGE_INDEX_REL_NORM)
    del h, grad, grad64
    # The materialising kernel: (s, d) float32 is 8.6 GB, element offsets past 2**31.
    full = philox_normals(s, 0, d, seed)
    start = (d - 100) // 4 * 4
    window = philox_normals(s, start, d, seed)
    assert torch.equal(full[:, start:], window)
    got = full[:, start:].cpu()
    del full
    assert_within_bound("normals past 2**31", got, 123, s, start, d)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_forward_projects_on_float32_directions(
    dtype: torch.dtype, fixed_config: None
) -> None:
    """bf16/fp16 forward == float32 forward of the same (exactly widened) activations.

    Both project in TF32 on the same float32 directions, so they agree bit for bit;
    a forward that projected half-rounded directions would fail.
    """
    from per_triton.kernels import per_fused

    torch.manual_seed(3)
    h = torch.randn(128, 4099, device="cuda").to(dtype)
    seed = seed_t(17)
    loss_h, coeff_h = per_fused.per_fwd(h, seed, 256)
    loss_f, coeff_f = per_fused.per_fwd(h.float(), seed, 256)
    assert torch.equal(coeff_h, coeff_f) and torch.equal(loss_h, loss_f)


def test_extra_memory_is_small() -> None:
    """Paper shape, fwd+bwd: extra memory beyond inputs and outputs stays under 10 MiB.

    The split workspace is 8.25 MiB here (66 splits for two CTAs per SM on 132 SMs;
    at most ``WORKSPACE_BYTES``, 16 MiB) plus the ``b x s`` coefficients; eager torch
    holds two ``s x d`` float32 matrices (about 400 MB), so this is under 2.5% of it.
    """
    torch.manual_seed(0)
    b, d, s = 128, 196608, 256
    h = torch.randn(b, d, device="cuda", requires_grad=True)
    seed = seed_t(1)
    pt.per_loss(h, s, seed=seed).backward()  # JIT and autotune outside the measurement
    h.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss = pt.per_loss(h, s, seed=seed)
    loss.backward()
    torch.cuda.synchronize()
    outputs = h.grad.numel() * h.grad.element_size() + loss.numel() * loss.element_size()
    extra = torch.cuda.max_memory_allocated() - base - outputs
    assert extra < 10 * 1024 * 1024, f"extra memory {extra / 2**20:.2f} MiB"
