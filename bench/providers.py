"""The kernel benchmark's providers: every name, in the order tables and charts list them.

The one list of the providers. ``bench/bench_kernels.py`` times each one (what each
times: ``bench/kernel_utils.py``), the result files carry the name as
``extra_info.provider`` (docs/design.md, "Benchmark result files"), and the
dashboard's Kernels page orders and colours by it. The providers that run an
estimator come from the estimator registry (:mod:`per_triton.core.estimators`, each
entry's ``provider``): the default estimator's (``fused``) first, the others after
the floor. Imports no torch (the registry loads its ops lazily), so the dashboard
reads it too.
"""

from __future__ import annotations

from per_triton.core.estimators import DEFAULT_ESTIMATOR, ESTIMATORS

__all__ = ["ESTIMATOR_OF", "FLOOR", "PLAIN", "PROVIDERS"]

#: The plain-torch comparisons: as a user would write it, with TF32 dots, compiled.
PLAIN: tuple[str, ...] = ("eager", "eager_tf32", "compile")
#: The draw-and-GEMM floor of the fused kernels' work.
FLOOR = "floor"
#: Provider -> the estimator it runs, for the providers that run one.
ESTIMATOR_OF: dict[str, str] = {e.provider: e.name for e in ESTIMATORS.values()}

_DEFAULT = ESTIMATORS[DEFAULT_ESTIMATOR].provider
#: Every provider, in the order tables and charts list them.
PROVIDERS: tuple[str, ...] = (
    _DEFAULT,
    *PLAIN,
    FLOOR,
    *(p for p in ESTIMATOR_OF if p != _DEFAULT),
)
