"""Exact PER (``estimator="exact"``, per_triton/core/exact.py) against independent oracles.

Oracles: ``mpmath.hyp1f1`` at 50 digits for the two 1F1 values; ``psi`` itself at d = 1;
at d = 3 (``t`` uniform on [-1, 1]) the closed-form average of ``psi`` over ``[-r, r]``;
the large-d limit ``sqrt(2/pi) sqrt(1 + r^2/d)``; the Monte Carlo estimator with many
slices (a statistical bound stated in the test); ``gradcheck``. The Triton kernels of
kernels/per_exact.py run under ``TRITON_INTERPRET=1`` against the torch ops.
"""

from __future__ import annotations

import math

import pytest
import torch

import per_triton as pt
from per_triton.core import exact, exact_ops, reference
from per_triton.kernels import per_exact

from . import tolerances
from .assertions import assert_close

mp = pytest.importorskip("mpmath")

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
DIMS = (1, 2, 3, 7, 650, 196608, 2**26)
RATIOS = (0.0, 1e-3, 0.1, 1.0, 10.0, 1e3, 1e6)
# Worst relative error allowed against mpmath, per dtype of the squared norms and results.


def _oracle(sq_norm: float, dim: int) -> tuple[float, float]:
    with mp.workdps(50):
        x, c = mp.mpf(sq_norm) / 2, mp.mpf(dim) / 2
        return (
            float(mp.hyp1f1(-0.5, c, -x, maxterms=10**6)),
            float(mp.hyp1f1(0.5, c + 1, -x, maxterms=10**6)),
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dim", DIMS)
def test_kummer_pair_matches_mpmath(dim: int, dtype: torch.dtype):
    sq = torch.tensor([q * q * dim for q in RATIOS], dtype=dtype)
    f, g = exact.kummer_pair(sq, dim)
    want = torch.tensor([_oracle(float(v), dim) for v in sq], dtype=torch.float64)
    tol = tolerances.EXACT_VS_MPMATH[dtype]
    assert_close(f"M(-1/2,{dim}/2,.)", f.to(dtype), want[:, 0], *tol)
    assert_close(f"M(1/2,{dim}/2+1,.)", g.to(dtype), want[:, 1], *tol)


@pytest.mark.parametrize("dim", [2, 3, 40, 290])
def test_kummer_pair_continuous_at_the_quadrature_switch(dim: int):
    """Both rules agree with mpmath on either side of ``K = x + beta = 150``."""
    for beta in ((dim - 3) / 2, (dim - 1) / 2):
        for eps in (-1e-9, 1e-9):
            x = exact.SWITCH_K - beta + eps
            if x <= 0:
                continue
            f, g = exact.kummer_pair(torch.tensor([2 * x], dtype=torch.float64), dim)
            of, og = _oracle(2 * x, dim)
            assert f.item() == tolerances.EXACT_VS_MPMATH[torch.float64].approx(of)
            assert g.item() == tolerances.EXACT_VS_MPMATH[torch.float64].approx(og)


def test_d1_is_psi():
    h = torch.linspace(-30, 30, 61, dtype=torch.float64).reshape(61, 1)
    loss = pt.per_loss(h, estimator="exact", reduction="sum")
    assert loss.item() == tolerances.EXACT_D1_IS_PSI.approx(reference.psi(h).sum().item())


def _psi_average_d3(r: torch.Tensor) -> torch.Tensor:
    """``(1/(2r)) int_{-r}^{r} psi(p) dp`` with the antiderivative of psi (``t ~ U[-1, 1]``)."""
    anti = (r * r / 2 + 0.5) * torch.erf(r / math.sqrt(2)) + 0.5 * SQRT_2_OVER_PI * r * torch.exp(
        -r * r / 2
    )
    return anti / r


def test_d3_is_the_average_of_psi_over_an_interval():
    gen = torch.Generator().manual_seed(3)
    h = (
        torch.randn(9, 3, dtype=torch.float64, generator=gen)
        * torch.logspace(-2, 2, 9).reshape(9, 1).double()
    )
    h.requires_grad_()
    loss = pt.per_loss(h, estimator="exact", reduction="sum")
    loss.backward()
    r = h.detach().norm(dim=1).requires_grad_()
    want = _psi_average_d3(r)
    assert loss.item() == tolerances.EXACT_D3_LOSS.approx(want.sum().item())
    # the gradient is d/dr of the closed form along h/r (the closed form cancels to
    # about 1e-11 relative in its r-derivative at r = 0.01, hence rtol)
    (dr,) = torch.autograd.grad(want.sum(), r)
    assert_close(
        "grad d=3",
        h.grad,
        dr[:, None] * h.detach() / r.detach()[:, None],
        *tolerances.EXACT_D3_GRAD,
    )


def test_large_d_limit():
    d = 2**26
    r2 = torch.tensor([0.0, 1.0, d / 4, float(d), 100.0 * d, 1e6 * d], dtype=torch.float64)
    f, g = exact.kummer_pair(r2, d)
    # corrections are O(1/d) relative
    assert_close("f", f, torch.sqrt(1 + r2 / d), *tolerances.EXACT_LARGE_D)
    assert_close("g", g, 1 / torch.sqrt(1 + r2 / d), *tolerances.EXACT_LARGE_D)


def test_gaussian_activations_give_2_over_sqrt_pi():
    h = torch.randn(64, 4096, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert pt.per_loss(h, estimator="exact").item() == tolerances.EXACT_GAUSSIAN.approx(
        2 / math.sqrt(math.pi)
    )


@pytest.mark.parametrize("dim,scale", [(1, 3.0), (2, 1.0), (3, 20.0), (7, 0.3), (33, 9.0)])
def test_gradcheck(dim: int, scale: float):
    """float64 gradcheck, both quadrature regimes (scale 9-20 puts ``K`` above 150)."""
    gen = torch.Generator().manual_seed(dim)
    h = (scale * torch.randn(3, dim, dtype=torch.float64, generator=gen)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: pt.per_loss(x, estimator="exact"), (h,))
    assert torch.autograd.gradcheck(
        lambda x: pt.per_loss(x, estimator="exact", reduction="sum"), (h,)
    )


def test_monte_carlo_converges_to_exact():
    """MC with s = 65536 slices on the same h, loss and gradient, within stated bounds.

    Loss: the slice average is of ``f(theta) = (1/b) sum_i psi(<h_i, theta>)``, Lipschitz
    with constant ``mean_i r_i``, so ``Var f <= (mean r)^2 / (d - 1)`` (Poincare on the
    sphere): tolerance 6 standard errors. Gradient: each slice term of sample ``i`` has
    norm <= 1/b, so ``E ||g_MC - g||_F^2 <= 1 / (b s)``: tolerance 6x its square root
    (Markov: probability < 1/36 to fail for a random seed; the seed is fixed).
    """
    b, d, s = 4, 16, 65536
    gen = torch.Generator().manual_seed(1)
    h = (torch.randn(b, d, dtype=torch.float64, generator=gen) * 2).requires_grad_()
    mc = pt.per_loss(h, s, seed=5)
    (g_mc,) = torch.autograd.grad(mc, h)
    ex = pt.per_loss(h, estimator="exact")
    (g_ex,) = torch.autograd.grad(ex, h)
    r = h.detach().norm(dim=1)
    assert abs(mc.item() - ex.item()) < 6 * r.mean().item() / math.sqrt((d - 1) * s)
    err = (g_mc - g_ex).norm().item()
    assert err < 6 / math.sqrt(b * s)
    assert err < 0.2 * g_ex.norm().item()  # the bound is tight enough to mean something


def test_low_precision_norms_accumulate_in_float32():
    h = torch.randn(5, 3000, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    h.requires_grad_()
    loss = pt.per_loss(h, estimator="exact")
    loss.backward()
    assert loss.dtype == torch.float32 and h.grad.dtype == torch.bfloat16
    h32 = h.detach().float().requires_grad_()
    want = pt.per_loss(h32, estimator="exact")
    want.backward()
    assert loss.item() == tolerances.EXACT_BF16_LOSS.approx(want.item())
    assert_close("bf16 grad", h.grad, h32.grad, *tolerances.EXACT_BF16_GRAD)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_activations(bad: float):
    """As documented: non-finite loss; NaN gradient for that sample only."""
    h = torch.randn(4, 10)
    h[2, 3] = bad
    h.requires_grad_()
    loss = pt.per_loss(h, estimator="exact")
    assert not torch.isfinite(loss)
    if not math.isnan(bad):
        assert loss.item() == math.inf
    loss.backward()
    assert h.grad[2].isnan().any()
    assert torch.isfinite(h.grad[[0, 1, 3]]).all()


def test_bad_arguments_are_named():
    h = torch.randn(2, 3)
    with pytest.raises(ValueError, match="estimator"):
        pt.per_loss(h, estimator="mc")
    with pytest.raises(ValueError, match="num_slices.*estimator='exact'"):
        pt.per_loss(h, 64, estimator="exact")
    with pytest.raises(ValueError, match="num_slices.*estimator='exact'"):
        pt.PER(1e-3, num_slices=64, estimator="exact")
    with pytest.raises(ValueError, match="estimator"):
        pt.PER(1e-3, estimator="Exact")
    with pytest.raises(ValueError, match="num_slices.*estimator='exact'"):
        pt.regularize(torch.nn.Sequential(torch.nn.ReLU()), num_slices=8, estimator="exact")
    with pytest.raises(ValueError, match="reduction"):
        pt.per_loss(h, estimator="exact", reduction="none")
    with pytest.raises(TypeError, match="h must"):
        pt.per_loss(torch.ones(2, 3, dtype=torch.int32), estimator="exact")
    # seed is ignored: no random numbers are drawn
    state = torch.get_rng_state()
    a = pt.per_loss(h, estimator="exact", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.item() == pt.per_loss(h, estimator="exact", seed=None).item()


def test_per_layer_adds_exact_gradient_to_incoming():
    """Algorithm 1: backward gives ``g + coeff * dL_exact/dh`` (one fused pass)."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(6, 2, 5, dtype=torch.float64, generator=gen).requires_grad_()
    up = torch.randn(6, 2, 5, dtype=torch.float64, generator=gen)
    layer = pt.PER(0.3, estimator="exact", reduction="sum")
    out = layer(x)
    assert torch.equal(out, x.detach())
    (out * up).sum().backward()
    h = x.detach().requires_grad_()
    (g_loss,) = torch.autograd.grad(pt.per_loss(h, estimator="exact", reduction="sum"), h)
    assert_close("PER grad", x.grad, up + 0.3 * g_loss, *tolerances.EXACT_PER_LAYER_GRAD)
    assert layer.last_loss.item() == tolerances.EXACT_PER_LAYER_LOSS.approx(
        pt.per_loss(h.detach(), estimator="exact", reduction="sum").item()
    )
    assert "estimator='exact'" in repr(layer)


def test_regularize_with_exact_estimator():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    x = torch.randn(5, 4)
    with pt.regularize(net, coeff=0.5, estimator="exact") as handle:
        net(x).sum().backward()
        got = net[0].weight.grad.clone()
        assert handle.layers["1"].estimator == "exact"
    net.zero_grad()
    hidden = torch.relu(net[0](x))
    (net[2](hidden).sum() + 0.5 * pt.per_loss(hidden, estimator="exact")).backward()
    assert_close("weight grad", got, net[0].weight.grad, *tolerances.F32_PATHS)


def test_compile_fullgraph_matches_eager():
    h = torch.randn(3, 50, generator=torch.Generator().manual_seed(6)) * 4
    fn = torch.compile(lambda x: pt.per_loss(x, estimator="exact"), fullgraph=True)
    a = h.clone().requires_grad_()
    la = fn(a)
    la.backward()
    b = h.clone().requires_grad_()
    lb = pt.per_loss(b, estimator="exact")
    lb.backward()
    assert la.item() == tolerances.EXACT_COMPILED_LOSS.approx(lb.item())
    assert_close("compiled grad", a.grad, b.grad, *tolerances.EXACT_COMPILED_GRAD)


# The Triton kernels (kernels/per_exact.py) against the torch ops: TRITON_INTERPRET=1 in
# CI (conftest.py), the GPU when present. Odd shapes, a small block so splits are exercised.
KERNEL_SHAPES = [(1, 1), (3, 17), (5, 1000), (2, 4099)]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("b,d", KERNEL_SHAPES)
@pytest.mark.parametrize("block", [64, 1024])
def test_kernels_match_torch(b: int, d: int, block: int):
    gen = torch.Generator().manual_seed(b * d)
    h = torch.randn(b, d, generator=gen).to(DEVICE)
    scale = torch.randn(b, generator=gen).to(DEVICE)
    grad = torch.randn(b, d, generator=gen).to(DEVICE)
    h64 = h.double()
    norms = per_exact.row_sq_norms(h, block=block)  # the first kernel of exact_fwd
    assert norms.dtype == torch.float32
    assert_close("row_sq_norms", norms, h64.square().sum(1), *tolerances.EXACT_KERNEL_NORMS_F32)
    want = grad.double() + scale.double()[:, None] * h64
    assert_close("scale_rows", per_exact.scale_rows(h, scale, grad, block=block), want,
                 *tolerances.EXACT_KERNEL_SCALE_F32)  # fmt: skip
    assert_close(
        "scale_rows no grad_in",
        per_exact.scale_rows(h, scale, None, block=block),
        scale.double()[:, None] * h64,
        *tolerances.EXACT_KERNEL_SCALE_F32,
    )
    assert_close("row_sq_norms f64", per_exact.row_sq_norms(h64, block=block), h64.square().sum(1),
                 *tolerances.EXACT_KERNEL_F64)  # fmt: skip


@pytest.mark.parametrize(
    "dim,dtype",
    [
        (1, torch.float64),
        (2, torch.float64),
        (3, torch.float32),
        (7, torch.float64),
        (650, torch.float64),
        (4099, torch.float32),
    ],
)
def test_exact_fwd_kernel_matches_torch(dim: int, dtype: torch.dtype):
    """The Triton 1F1 kernel (float64 quadratures) against the torch ops, across regimes.

    Rows are scaled so that ``r/sqrt(d)`` spans 0 to 1e6: both quadratures, the switch
    and the asymptotic regime. Some rows are NaN / Inf. Also checks ``block_b`` smaller
    than ``b`` (several row blocks) and split norms (``block`` 64).
    """
    gen = torch.Generator().manual_seed(dim)
    ratios = torch.tensor([0.0, 1e-3, 0.1, 1.0, 3.0, 10.0, 17.0, 1e3, 1e6], dtype=torch.float64)
    u = torch.randn(len(ratios), dim, dtype=torch.float64, generator=gen)
    u = u / u.norm(dim=1, keepdim=True)
    h = (u * (ratios * math.sqrt(dim))[:, None]).to(dtype)
    h = torch.cat([h, torch.full((1, dim), float("nan"), dtype=dtype)])
    h[-1, 1:] = 0.5
    h = torch.cat([h, torch.full((1, dim), float("inf"), dtype=dtype)]).to(DEVICE)
    table = exact.node_table(h.device)
    loss, scale = per_exact.exact_fwd(h[:-2], table, exact.SWITCH_K, block=64, block_b=4)
    want_loss, want_scale = exact_ops.exact_fwd(h[:-2].cpu())
    tol = tolerances.EXACT_KERNEL_FWD[dtype]
    assert loss.dtype == want_loss.dtype and scale.dtype == want_scale.dtype
    assert loss.item() == tol.approx(want_loss.item())
    assert_close("scale", scale, want_scale, *tol)
    # non-finite rows: NaN stays NaN; Inf gives an infinite loss and a zero scale
    loss_nan, scale_nan = per_exact.exact_fwd(h, table, exact.SWITCH_K, block=64, block_b=4)
    assert math.isnan(loss_nan.item()) and scale_nan[-2].isnan()
    assert scale_nan[-1].item() == 0.0 and torch.isfinite(scale_nan[:-2]).all()
    _, scale_inf = per_exact.exact_fwd(h[[0, -1]], table, exact.SWITCH_K)
    assert per_exact.exact_fwd(h[[0, -1]], table, exact.SWITCH_K)[0].item() == math.inf
    assert scale_inf[1].item() == 0.0


def test_norm_splits_cover_the_row():
    for b, d in [(1, 1), (32, 196608), (1, 2**20 + 3), (4096, 10)]:
        split_d, n_split = per_exact.plan_norm_splits(b, d)
        assert split_d % per_exact.BLOCK == 0
        assert (n_split - 1) * split_d < d <= n_split * split_d


def test_custom_ops_pass_opcheck():
    gen = torch.Generator().manual_seed(8)
    h = torch.randn(3, 37, generator=gen)
    scale = torch.randn(3, generator=gen)
    torch.library.opcheck(exact_ops.exact_fwd, (h,))
    torch.library.opcheck(exact_ops.scale_rows, (h, scale, None))
    torch.library.opcheck(exact_ops.scale_rows, (h, scale, torch.randn(3, 37, generator=gen)))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_cuda_matches_cpu_float64(dtype: torch.dtype):
    """The CUDA path (Triton norm and scale kernels) against the CPU float64 path."""
    gen = torch.Generator().manual_seed(9)
    h = (3 * torch.randn(17, 3, 31, 29, generator=gen)).to(dtype)
    hc = h.cuda().requires_grad_()
    loss = pt.per_loss(hc, estimator="exact")
    loss.backward()
    h64 = h.double().requires_grad_()
    want = pt.per_loss(h64, estimator="exact")
    want.backward()
    loss_tol, grad_tol, layer_tol = tolerances.EXACT_CUDA[dtype]
    assert loss.item() == loss_tol.approx(want.item())
    assert_close("cuda grad", hc.grad.double(), h64.grad, *grad_tol)
    # PER layer: one fused pass adds coeff * grad to the incoming gradient
    x = h.cuda().requires_grad_()
    up = torch.randn(x.shape, device="cuda", dtype=dtype)
    (pt.PER(0.5, estimator="exact")(x) * up).sum().backward()
    assert_close("PER cuda", x.grad.double(), up.double() + 0.5 * h64.grad, *layer_tol)
    # compiled, fullgraph, no recompile for new values
    fn = torch.compile(lambda t: pt.per_loss(t, estimator="exact"), fullgraph=True)
    assert fn(h.cuda()).item() == loss_tol.approx(want.item())
