"""Accuracy of per_triton.core.exact.kummer_pair against mpmath.hyp1f1 at 50 digits.

Grid: d in {1, 2, 3, 7, 650, 196608, 2**26} x r/sqrt(d) in {0, 1e-3, 0.1, 1, 10, 1e3, 1e6},
both dtypes: the squared norm is given in that dtype, the oracle is evaluated at that
exact value, and the results are compared after the cast to that dtype. Prints the
worst relative error of M(-1/2, d/2, -r^2/2) and M(1/2, d/2+1, -r^2/2) per dtype.

    python scripts/exact_accuracy.py            # needs mpmath (the dev extra)
"""

from __future__ import annotations

import mpmath as mp
import torch

from per_triton.core.exact import kummer_pair

DIMS = (1, 2, 3, 7, 650, 196608, 2**26)
RATIOS = (0.0, 1e-3, 0.1, 1.0, 10.0, 1e3, 1e6)


def oracle(sq_norm: float, dim: int) -> tuple[mp.mpf, mp.mpf]:
    """``(M(-1/2, d/2, -x), M(1/2, d/2+1, -x))`` at ``x = sq_norm/2``, 50 digits."""
    with mp.workdps(50):
        x = mp.mpf(sq_norm) / 2
        c = mp.mpf(dim) / 2
        return (
            mp.hyp1f1(-0.5, c, -x, maxterms=10**6),
            mp.hyp1f1(0.5, c + 1, -x, maxterms=10**6),
        )


def worst_errors(dtype: torch.dtype) -> tuple[float, tuple[int, float]]:
    worst, where = 0.0, (0, 0.0)
    for dim in DIMS:
        sq = torch.tensor([q * q * dim for q in RATIOS], dtype=dtype)
        f, g = (v.to(dtype) for v in kummer_pair(sq, dim))  # what a caller of this dtype gets
        for i, q in enumerate(RATIOS):
            ef, eg = oracle(float(sq[i]), dim)
            err = max(abs(float(f[i]) / ef - 1), abs(float(g[i]) / eg - 1))
            if err > worst:
                worst, where = float(err), (dim, q)
    return worst, where


if __name__ == "__main__":
    for dtype in (torch.float64, torch.float32):
        w, (d, q) = worst_errors(dtype)
        print(f"{dtype}: worst relative error {w:.3g} (at d={d}, r/sqrt(d)={q:g})")
