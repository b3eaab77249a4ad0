"""The kernel benchmark's providers: every name, in the order tables and charts list them.

The one list of the providers. ``bench/bench_kernels.py`` times each one (what each
times: ``bench/kernel_utils.py``), the result files carry the name as
``extra_info.provider`` (docs/design.md, "Benchmark result files"), and the
dashboard's Kernels page orders and colours by it. Imports nothing (no torch), so
the dashboard reads it too.
"""

from __future__ import annotations

__all__ = ["PROVIDERS"]

#: Every provider, in the order tables and charts list them.
PROVIDERS: tuple[str, ...] = ("fused", "eager", "eager_tf32", "compile", "floor", "exact")
