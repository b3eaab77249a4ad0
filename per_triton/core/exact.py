"""Exact PER: the expectation of Eq. 5 and Eq. 6 over uniform directions (infinite slices).

For ``theta`` uniform on ``S^{d-1}``, ``<h_i, theta>`` has the law of ``r_i t`` with
``r_i = ||h_i||`` and ``t^2 ~ Beta(1/2, (d-1)/2)`` (docs/design.md, "The exact expectation"), so::

    E_theta psi(<h_i, theta>)      = sqrt(2/pi) * M(-1/2, d/2, -r_i^2/2)
    grad_{h_i} E_theta psi(...)    = sqrt(2/pi) * (1/d) * M(1/2, d/2 + 1, -r_i^2/2) * h_i

with ``M`` Kummer's confluent hypergeometric function 1F1. The Monte Carlo loss of
:func:`per_triton.per_loss` is an unbiased estimate of the first line, its gradient
of the second.

Evaluation (:func:`kummer_pair`). With ``x = r^2/2`` and ``c = d/2`` the contiguous
relation ``M(a-1, c, z) = M(a, c, z) - (z/c) M(a, c+1, z)`` at ``a = 1/2`` gives
``M(-1/2, c, -x) = L_c(x) + (x/c) L_{c+1}(x)``, a sum of two positive terms (no
cancellation), with ``L_b(x) = M(1/2, b, -x) = I(x, b - 3/2) / I(0, b - 3/2)`` and::

    I(x, beta) = int_0^1 exp(-x t^2) (1 - t^2)^beta dt

(the Beta-Laplace integral in the variable ``t = sqrt(u)``). ``I`` is evaluated by one
of two fixed quadratures, chosen per sample by ``K = x + beta``:

* ``K < 150``: ``t = sin(phi)``, 64-point Gauss-Legendre on ``phi in [0, pi/2]`` of
  ``exp(-x sin^2 phi) cos^(2 beta + 1) phi``. ``2 beta + 1 = 2b - 2`` is a
  non-negative integer here (``d - 2`` or ``d``), so the integrand is entire and the
  rule converges geometrically; the peak is at least ``1/sqrt(K) > 0.08`` wide.
* ``K >= 150``: ``t = s / sqrt(K)``, so ``I = K^(-1/2) int_0^sqrt(K) exp(-s^2)
  exp(-beta H(s^2/K)) ds`` with ``H(y) = -log(1-y) - y >= 0``: the half-range of the
  64-point Gauss-Hermite rule (32 non-negative nodes, all inside ``s^2 < K``). The
  factor ``exp(-beta H)`` is smooth and bounded by 1 on the nodes; the cut at
  ``sqrt(K)`` costs at most ``exp(-K) < 1e-65``.

``d = 1`` (``L_{1/2}(x) = exp(-x)``) is taken in closed form. The normaliser
``I(0, beta)`` runs through the same rule, so no Gamma-function ratio (which loses
digits for large ``d``) is needed. Everything is computed in float64 (there are only
``b`` values per call) and cast back, so float32 callers get correctly rounded values.

Error: no closed-form bound is claimed for the two rules; the tests hold both values
within 5e-14 relative (float64) of ``mpmath.hyp1f1`` at 50 digits, on the grid
d in {1, 2, 3, 7, 650, 196608, 2**26} x r/sqrt(d) in {0, 1e-3, 0.1, 1, 10, 1e3, 1e6}
and on either side of the switch between the rules (tests/test_exact.py; the
measured errors: docs/benchmarks.md, "The exact estimator").

:func:`kummer_pair` is torch ops on ``(b, 64)`` tensors: no host synchronisation, no
data-dependent control flow. The estimator itself (:func:`exact_loss`,
:func:`exact_layer`) runs on two custom ops of :mod:`per_triton.core.exact_ops`,
opaque to ``torch.compile(fullgraph=True)``: ``per_triton::exact_fwd`` (row norms,
the 1F1 values, loss sum and per-row gradient scales) and ``per_triton::scale_rows``
(the scaled gradient write). On the CPU they are torch ops (:func:`exact_terms`); on
CUDA the Triton kernels of :mod:`per_triton.kernels.per_exact`, which evaluate the
same quadratures in float64 in one launch (tested against :func:`kummer_pair`), so
the forward is two launches and the backward one.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from per_triton.core import exact_ops

__all__ = [
    "kummer_pair",
    "exact_terms",
    "exact_loss",
    "exact_layer",
    "node_table",
]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
#: Switch between the two quadratures at ``K = x + beta`` (see the module docstring).
SWITCH_K = 150.0
_NODES = 64

_gh_x, _gh_w = np.polynomial.hermite.hermgauss(_NODES)
_GH_S2 = (_gh_x[_gh_x > 0] ** 2).tolist()  # squared non-negative Gauss-Hermite nodes
_GH_W = _gh_w[_gh_x > 0].tolist()
_gl_x, _gl_w = np.polynomial.legendre.leggauss(_NODES)
_GL_SIN2 = (np.sin((_gl_x + 1) * math.pi / 4) ** 2).tolist()  # sin^2(phi) on [0, pi/2]
_GL_LOGCOS = np.log(np.cos((_gl_x + 1) * math.pi / 4)).tolist()
_GL_W = (_gl_w * math.pi / 4).tolist()

_node_cache: dict[object, object] = {}


def _nodes(device: torch.device) -> tuple[torch.Tensor, ...]:
    """The quadrature nodes as float64 tensors on ``device``.

    Cached per device in eager mode, so a CUDA call copies nothing from the host
    after the first; under torch.compile they are graph constants.
    """

    def make() -> tuple[torch.Tensor, ...]:
        return tuple(
            torch.tensor(v, dtype=torch.float64, device=device)
            for v in (_GH_S2, _GH_W, _GL_SIN2, _GL_LOGCOS, _GL_W)
        )

    if torch.compiler.is_compiling():
        return make()
    if device not in _node_cache:
        _node_cache[device] = make()
    return _node_cache[device]  # type: ignore[return-value]


def _exp(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(z.clamp(min=-700.0))


def node_table(device: torch.device) -> torch.Tensor:
    """``(5, 64)`` float64 node table for the Triton kernel: Gauss-Hermite ``s^2`` and weights
    (padded with zero weights to 64), ``sin^2 phi``, ``log cos phi``, Gauss-Legendre weights."""
    key = ("table", device)
    if torch.compiler.is_compiling() or key not in _node_cache:
        pad = [0.0] * (_NODES - len(_GH_S2))
        rows = (_GH_S2 + pad, _GH_W + pad, _GL_SIN2, _GL_LOGCOS, _GL_W)
        table = torch.tensor(rows, dtype=torch.float64, device=device)
        if torch.compiler.is_compiling():
            return table
        _node_cache[key] = table
    return _node_cache[key]  # type: ignore[return-value]


def _t_integral(x: torch.Tensor, beta: float) -> torch.Tensor:
    """``I(x, beta) = int_0^1 exp(-x t^2) (1-t^2)^beta dt`` for ``x >= 0``, ``beta >= -1/2``."""
    gh_s2, gh_w, gl_sin2, gl_logcos, gl_w = _nodes(x.device)
    xc = x.unsqueeze(-1)
    k = x + beta
    # K >= SWITCH_K: scaled Gauss-Hermite. Clamp K so the unused branch stays finite.
    kc = k.clamp(min=SWITCH_K).unsqueeze(-1)
    y = (gh_s2 / kc).clamp(max=0.99)  # y <= 110/150 < 1 wherever this branch is used
    # Exponents are clamped at -700 (exp = 1e-304, far below the 1e-16 relative that
    # matters): exp of very negative arguments is slow on CPUs (subnormal results).
    big = (gh_w * _exp(beta * (torch.log1p(-y) + y))).sum(-1) / kc.squeeze(-1).sqrt()
    # K < SWITCH_K: Gauss-Legendre in phi (t = sin phi).
    small = (gl_w * _exp((2.0 * beta + 1.0) * gl_logcos - xc * gl_sin2)).sum(-1)
    return torch.where(k >= SWITCH_K, big, small)


def _laplace_beta(x: torch.Tensor, b: float) -> torch.Tensor:
    """``M(1/2, b, -x) = E[exp(-x u)]``, ``u ~ Beta(1/2, b - 1/2)``; ``b = 1/2`` or ``b >= 1``."""
    if b == 0.5:
        return torch.exp(-x)
    beta = b - 1.5
    both = _t_integral(torch.cat([x, x.new_zeros(1)]), beta)
    return both[:-1] / both[-1]


def kummer_pair(sq_norm: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``M(-1/2, d/2, -r^2/2)`` and ``M(1/2, d/2 + 1, -r^2/2)`` for squared norms ``r^2``.

    Args:
        sq_norm: ``(n,)`` squared norms ``r^2 >= 0``, any float dtype, any device.
        dim: the dimension ``d >= 1`` of each sample.

    Returns:
        Two ``(n,)`` float64 tensors ``(f, g)``. NaN in gives NaN; ``r^2 = inf`` gives
        ``f = inf`` and ``g = 0``. Accuracy: see the module docstring (within 5e-14
        relative of mpmath in float64, tested).
    """
    x = sq_norm.to(torch.float64).reshape(-1) * 0.5
    c = 0.5 * dim
    lc = _laplace_beta(x, c)
    lc1 = _laplace_beta(x, c + 1.0)
    f = lc + (x / c) * lc1
    f = torch.where(torch.isinf(x), x, f)
    g = torch.where(torch.isinf(x), torch.zeros_like(x), lc1)
    return f, g


def exact_terms(sq_norm: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample expected loss ``E psi(<h_i, theta>)`` and gradient scale, float64.

    ``grad_{h_i} = scale_i * h_i`` with ``scale_i = sqrt(2/pi)/d * M(1/2, d/2+1, -r_i^2/2)``.
    """
    f, g = kummer_pair(sq_norm, dim)
    return _SQRT_2_OVER_PI * f, (_SQRT_2_OVER_PI / dim) * g


def exact_loss(h: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Exact PER loss of ``h`` ``(b, *)`` (checked by the caller), differentiable.

    The backward reads the activations, so they are kept as a copy: an in-place op
    on ``h`` after this call (``h += x``) leaves the gradient right.

    Float64 for float64 input, float32 otherwise (float16/bfloat16 norms accumulate in
    float32).
    """
    b = h.shape[0]
    # a contiguous copy in every case: the backward reads it, in-place ops on h must not
    flat = h.reshape(b, -1).clone(memory_format=torch.contiguous_format)
    inv_b = 1.0 / b if reduction == "mean" else 1.0
    return exact_ops.EXACT_FWD(flat)[0] * inv_b


def exact_layer(
    h: torch.Tensor, coeff: float, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1 with the exact gradient: ``(h unchanged, detached loss)``.

    In backward, ``coeff * dL/dh`` is added to the incoming gradient in one pass.
    The returned ``h`` is a copy (the backward reads the original), so in-place ops
    on it downstream are allowed, as with the Monte Carlo estimator.
    """
    inv_b = 1.0 / h.shape[0] if reduction == "mean" else 1.0
    return exact_ops.exact_layer_pass(h, float(coeff), inv_b)
