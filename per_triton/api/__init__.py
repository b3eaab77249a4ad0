"""The user API: ``per_loss``, the ``PER`` layer, ``regularize``, the metric and monitor.

Layer 2 of the package (docs/design.md, "Layout"): built on :mod:`per_triton.core`,
used by people's training loops. The public names are re-exported by
:mod:`per_triton` (``pt.per_loss``, ``pt.PER``, ``pt.regularize``, ...).
"""
