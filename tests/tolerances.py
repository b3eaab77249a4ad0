"""Every numerical tolerance of the tests, in one format and one place.

A :class:`Tol` is ``(atol, rtol)``: a value passes when
``|actual - expected| <= atol + rtol * |expected|`` (``tests.assertions.assert_close``,
``torch.testing.assert_close`` and ``pytest.approx`` all use this rule). Use it as
``assert_close(name, a, b, *TOL)``, ``torch.testing.assert_close(a, b, **TOL.kw)`` or
``x == TOL.approx(expected)``. Each constant says what is compared and why the bound
is what it is; tests name the constant, never a bare number.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
import torch


class Tol(NamedTuple):
    """Absolute and relative tolerance: pass if ``|a - e| <= atol + rtol * |e|``."""

    atol: float
    rtol: float

    @property
    def kw(self) -> dict[str, float]:
        """Keyword form for ``torch.testing.assert_close``."""
        return {"atol": self.atol, "rtol": self.rtol}

    def approx(self, expected: Any) -> Any:
        """``pytest.approx(expected)`` with these bounds."""
        return pytest.approx(expected, abs=self.atol, rel=self.rtol)


#: bit-for-bit: the same computation, or a value that must not change at all
EXACT = Tol(0.0, 0.0)

# --- float64: the same mathematics computed two ways (rounding only) ------------------
#: a float64 loss summed in a different chunk order
F64_SUM_ORDER = Tol(0.0, 1e-13)
#: analytic gradient vs autograd, or a fused path vs the plain formula, in float64
F64_SAME_MATH = Tol(1e-15, 1e-12)
#: loss vs a numpy transcription of Eq. 5 (sums of many terms: a few ulps more)
F64_LOSS_VS_NUMPY = Tol(1e-13, 1e-12)
#: gradient vs a numpy transcription of Eq. 6
F64_GRAD_VS_NUMPY = Tol(1e-15, 1e-11)
#: the module / hook gradient vs the functional one, float64
F64_GRAD_PATHS = Tol(1e-14, 1e-10)
#: a closed form evaluated two ways (psi, W1 of a point mass), float64
F64_CLOSED_FORM = Tol(1e-12, 1e-12)

# --- float32 and lower ------------------------------------------------------------------
#: the reference on float16 / bfloat16 / float32 inputs (float32 accumulation) vs float64
LOW_PRECISION_INPUTS = Tol(0.0, 2e-2)
#: float32 sums of a handful of terms computed in two orders
F32_SUM = Tol(1e-6, 1e-6)
#: float32 gradients / losses through two code paths (penalty module vs API, hooks)
F32_PATHS = Tol(1e-6, 1e-5)
#: float32 gradients of a whole model step, regularised vs task + coeff * penalty
F32_MODEL_GRAD = Tol(1e-6, 1e-4)
#: float32 penalties vs hand-computed values
F32_HAND = Tol(1e-6, 1e-6)
#: float32 PER modules vs per_triton.per_loss on the same seed
F32_PER_MODULE = Tol(1e-6, 1e-5)
#: a float32 Box-Muller radius (or the norm of one floored pair) vs its float64 value
F32_RADIUS = Tol(0.0, 1e-6)
#: a float32 loss summed over millions of terms (cascade summation) vs its closed form
F32_MANY_TERMS = Tol(0.0, 2e-6)
#: CUDA (TF32 matmuls allowed) vs the CPU path
CUDA_VS_CPU = Tol(1e-4, 2e-3)

# --- per_triton.per_loss's CPU path vs the float64 reference, by dtype ------------------
#: dtype -> (loss tolerance, gradient tolerance)
PER_LOSS_BY_DTYPE: dict[torch.dtype, tuple[Tol, Tol]] = {
    torch.float64: (Tol(1e-12, 1e-12), Tol(1e-15, 1e-10)),
    torch.float32: (Tol(1e-5, 1e-5), Tol(1e-7, 1e-4)),
    torch.float16: (Tol(5e-3, 5e-3), Tol(1e-4, 2e-2)),
    torch.bfloat16: (Tol(3e-2, 3e-2), Tol(1e-3, 6e-2)),
}

# --- statistical and discretisation bounds ---------------------------------------------
#: exact 1-D W_p vs W_p to a 2M-point quantile-matched sample of N(0, 1)
W_VS_SAMPLE = Tol(2e-3, 5e-3)
#: exact W1 vs a 200k-point normal quantile grid (error O(log M / M)), float64
W1_VS_GRID = Tol(2e-4, 0.0)
#: exact W1 vs scipy's W1 to a 100k normal sample (~1/sqrt(n))
W1_VS_SCIPY_SAMPLE = Tol(1e-2, 0.0)
#: mean SW1 of N(0, I) batches vs the exact floor (8 batches x 256 directions)
SW1_FLOOR = Tol(0.0, 0.05)
#: SW1 <= PER direction by direction: slack in float64, and relative in float32
SW1_BOUND_F64_SLACK = 1e-9
SW1_BOUND_F32 = Tol(0.0, 1e-5)
#: sliced W1 on CUDA (chunked Philox projections) vs float64 on the same directions
SW1_CUDA = Tol(1e-6, 1e-5)
#: gradients of the ranks of a DDP step vs one process on the whole batch, float32
DDP_GRAD = Tol(1e-6, 1e-4)
#: the monitor's statistics vs the float64 reference, per statistic (absolute)
MONITOR_STAT_ATOL = {"sw1": 1e-5, "mean": 1e-6, "var": 1e-5, "q25": 1e-6, "q50": 1e-6, "q75": 1e-6}

# --- closed forms, quadrature, Monte Carlo ---------------------------------------------
#: a float64 value that must equal its closed form to the last bits
F64_ULP = Tol(0.0, 1e-15)
#: psi(p) = E|Z - p| vs scipy / numpy quadrature
QUADRATURE_ABS = Tol(1e-8, 0.0)
QUADRATURE_REL = Tol(0.0, 1e-9)
#: psi's curvature at |p| <= 5e-3 vs sqrt(2/pi)/2 (Taylor remainder O(p^2))
PSI_CURVATURE = Tol(0.0, 1e-4)
#: psi(p) = |p| and psi'(p) = sign(p) for |p| >= 9 (the Gaussian tail is < 1e-18)
PSI_FAR_FIELD = Tol(1e-12, 0.0)
#: float32 directions: unit rows
F32_UNIT_NORM = Tol(1e-6, 0.0)
#: public float32 SW1 vs the float64 mean over the same directions
SW1_F32_VS_F64 = Tol(1e-4, 0.0)
#: the 1/sqrt(b) decay of the sampling floor: theory (3 %) and measured (10 %)
FLOOR_RATIO_THEORY = Tol(0.0, 0.03)
FLOOR_RATIO_MEASURED = Tol(0.0, 0.1)
#: E psi(Z) = 2/sqrt(pi) for Gaussian activations, 256 directions x 4096 samples
GAUSSIAN_PER_MC = Tol(6e-3, 0.0)
#: statistical tests accept within this many standard errors
SIGMAS = 5

# --- the fused Triton kernels (kernels/per_fused.py), same directions -------------------
#: fused kernels vs the float64 reference, dtype -> output -> Tol; float32 kernels, and
#: float64 = per_triton.core.cuda_ops' materialised chunks. Values: coeff ~ 1/(s sqrt d),
#: grad ~ 1/sqrt(d)
FUSED_VS_REFERENCE: dict[torch.dtype, dict[str, Tol]] = {
    torch.float32: {
        "loss_sum": Tol(1e-5, 1e-5),
        "coeff": Tol(1e-7, 1e-4),
        "grad": Tol(1e-7, 1e-4),
    },
    torch.float64: {
        "loss_sum": Tol(1e-12, 1e-12),
        "coeff": Tol(1e-14, 1e-10),
        "grad": Tol(1e-14, 1e-10),
    },
}
#: two tile configs (or two splits of d) on the same data: summation order only
FUSED_TILE_CONFIGS = Tol(1e-7, 1e-5)
#: absolute slack added to a float64 rounding bound (e.g. s * eps32 * (|C| @ |V|))
F64_BOUND_SLACK = 1e-12
#: GPU (gpu-marked tests): relative error norm ||got - want|| / ||want|| vs float64 on
#: the same directions, by (dtype, precision) and output. TF32 rounds operands to 10
#: mantissa bits; bf16/fp16 project in float32 (TF32), so loss and coefficients are as
#: close as float32's; bf16 rounds the gradient on output to 8 bits, fp16 to 11.
GPU_REL_NORM: dict[tuple[str, str], dict[str, float]] = {
    ("float32", "ieee"): {"loss": 1e-5, "coeff": 1e-5, "grad": 1e-5},
    ("float32", "tf32"): {"loss": 2e-3, "coeff": 5e-3, "grad": 5e-3},
    ("bfloat16", "tf32"): {"loss": 2e-3, "coeff": 5e-3, "grad": 2e-2},
    ("float16", "tf32"): {"loss": 2e-3, "coeff": 5e-3, "grad": 5e-3},
}
#: GPU: the float64 path of per_triton.core.cuda_ops vs the reference (relative error norm)
GPU_F64_REL_NORM = 1e-12
#: GPU: fused float32 (ieee) vs the float64 chunk path at s * d > 2**31 (relative error norm)
GPU_LARGE_INDEX_REL_NORM = 1e-5
#: GPU: a compiled step vs eager on the same seed (relative, scalar loss)
GPU_COMPILED_VS_EAGER = Tol(0.0, 1e-5)
#: GPU: CUDA-graph replays on a fixed seed vs one eager call (relative, scalar loss)
GPU_GRAPH_REPLAY = Tol(0.0, 1e-6)

# --- the Philox direction stream (kernels/philox_directions.py) -------------------------
#: interpreter only: kernel normals vs a float32 numpy replica of the same expressions
#: (numpy's float32 log2/sin/cos/sqrt; FMA or not in the angle)
PHILOX_F32_REPLICA = Tol(2e-6, 2e-6)
#: unit rows of the materialised directions, by dtype (absolute)
PHILOX_UNIT_ROWS: dict[torch.dtype, Tol] = {
    torch.float32: Tol(1e-5, 0.0),
    torch.float64: Tol(1e-12, 0.0),
}
#: the benchmark floor kernel's per-split float32 sums vs the sum of the same normals
PHILOX_SPLIT_SUM = Tol(1e-3, 1e-5)
#: Kolmogorov-Smirnov tests against N(0, 1) pass above this p-value
KS_MIN_PVALUE = 1e-3

# --- the exact estimator (per_triton/core/exact.py, kernels/per_exact.py) ---------------------
#: Kummer's M(-1/2, d/2, .) and M(1/2, d/2 + 1, .) vs mpmath, relative, by dtype
EXACT_VS_MPMATH: dict[torch.dtype, Tol] = {
    torch.float64: Tol(0.0, 5e-14),
    torch.float32: Tol(0.0, 1.2e-7),
}
#: d = 1: the exact loss is psi summed (float64, relative)
EXACT_D1_IS_PSI = Tol(0.0, 1e-14)
#: d = 3: the loss vs the average of psi over an interval (closed form, float64)
EXACT_D3_LOSS = Tol(0.0, 1e-13)
#: d = 3: the gradient vs the r-derivative of the closed form, which cancels to about
#: 1e-11 relative at r = 0.01 (hence rtol)
EXACT_D3_GRAD = Tol(1e-14, 1e-10)
#: d = 2**26: the large-d limit sqrt(1 + r^2/d); corrections are O(1/d) relative
EXACT_LARGE_D = Tol(0.0, 1e-6)
#: E over Gaussian activations = 2/sqrt(pi) at d = 4096 (relative, Monte Carlo)
EXACT_GAUSSIAN = Tol(0.0, 2e-3)
#: bfloat16 inputs (float32 norms) vs float32 inputs: loss, and the bf16-rounded gradient
EXACT_BF16_LOSS = Tol(0.0, 1e-6)
EXACT_BF16_GRAD = Tol(0.0, 1e-2)
#: the PER layer's fused gradient / last_loss vs per_loss's, float64
EXACT_PER_LAYER_GRAD = Tol(1e-15, 1e-13)
EXACT_PER_LAYER_LOSS = Tol(0.0, 1e-14)
#: Inductor-compiled PER penalty vs an eager copy on the same directions (float32
#: scalar of order 1; Inductor may reorder the float32 reductions)
INDUCTOR_PENALTY_VS_EAGER = Tol(0.0, 1e-5)
#: compiled (fullgraph) vs eager, float32: loss and gradient
EXACT_COMPILED_LOSS = Tol(0.0, 1e-6)
EXACT_COMPILED_GRAD = Tol(1e-8, 1e-5)
#: Triton row norms / row scaling vs float64 torch, float32 kernels and float64 kernels
EXACT_KERNEL_NORMS_F32 = Tol(1e-6, 1e-5)
EXACT_KERNEL_SCALE_F32 = Tol(1e-6, 1e-6)
EXACT_KERNEL_F64 = Tol(1e-12, 1e-12)
#: the Triton forward (loss, scale) vs the torch forward, relative, by dtype
EXACT_KERNEL_FWD: dict[torch.dtype, Tol] = {
    torch.float64: Tol(0.0, 1e-13),
    torch.float32: Tol(0.0, 1e-6),
}
#: GPU: the CUDA path vs the CPU float64 path, by dtype: (loss, gradient, PER layer)
EXACT_CUDA: dict[torch.dtype, tuple[Tol, Tol, Tol]] = {
    dtype: (Tol(0.0, loss), Tol(1e-9, grad), Tol(1e-6, 10 * grad))
    for dtype, loss, grad in (
        (torch.float64, 1e-12, 1e-12),
        (torch.float32, 1e-5, 1e-5),
        (torch.bfloat16, 1e-5, 1e-2),
    )
}

# --- training loops (tests/test_training_loops.py) --------------------------------------
#: a model's gradients through two training-loop forms, by dtype
LOOP_GRAD: dict[torch.dtype, Tol] = {
    torch.float32: Tol(1e-6, 1e-5),
    torch.float64: Tol(1e-12, 1e-9),
}
#: GradScaler-scaled and loss/4 steps vs the plain step (float32 gradients)
LOOP_GRAD_SCALER = Tol(0.0, 1e-6)
LOOP_LOSS_DIV_4 = Tol(1e-7, 1e-6)
#: the inject mode vs the loss mode, float32 model gradients
LOOP_INJECT_VS_LOSS = Tol(1e-6, 1e-4)
#: the two modes differ from the plain step by at least this much (not a tolerance:
#: a lower bound that shows the penalty reached the gradient)
LOOP_PENALTY_VISIBLE = 1e-3
#: last_loss over steps vs the float64 oracle on derived seeds (relative)
LOOP_SEED_ORACLE = Tol(0.0, 1e-12)
#: float64 gradients of a gradient-norm penalty (double backward) vs the reference loss
LOOP_DOUBLE_BACKWARD = Tol(1e-11, 1e-8)
#: GPU: per_proj's projections / norms vs h @ theta.T on sampled directions
GPU_PROJ_VS_DIRECTIONS = Tol(1e-6, 1e-5)
#: penalty == coeff * exact loss, float64 (relative)
LOOP_EXACT_PENALTY = Tol(0.0, 1e-14)

# --- torch.func transforms and forward-mode AD (float64) ----------------------------------
#: a transformed call (vmap, grad of functional_call, jvp) vs the plain one / the reference
F64_TRANSFORM = Tol(1e-12, 1e-9)
#: the exact loss vs a 1-D trapezoid integral over t (2e5 points)
F64_TRAPEZOID = Tol(0.0, 1e-8)
#: a derivative vs a central finite difference with step 1e-6 in float64
F64_FINITE_DIFF = Tol(1e-8, 1e-6)

# --- float16 autocast (CPU) against the float64 reference ------------------------------
#: a training step under fp16 autocast: matmuls round to 11 mantissa bits
FP16_AUTOCAST_GRAD = Tol(1e-3, 2e-2)
