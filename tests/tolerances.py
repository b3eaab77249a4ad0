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
