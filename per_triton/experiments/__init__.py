"""The paper's experiments: models, baselines, training loops and the closeness study.

Layer 3 of the package (docs/design.md, "Layout"): what the benchmarks, the
``per-triton train`` command and the dashboard measure. :mod:`.methods` imports no
torch (the dashboard reads it); the rest builds on :mod:`per_triton.api`.
"""
