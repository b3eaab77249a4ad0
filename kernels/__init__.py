"""Fused Triton kernels for PER (installed as ``per_triton.kernels``).

- :mod:`per_triton.kernels.philox_directions`: the CUDA direction stream (Philox4x32-10
  Gaussian tiles drawn in registers), ``sample_directions_triton``, the raw-word and
  draw-only kernels used by tests and the benchmark floor.
- :mod:`per_triton.kernels.per_fused`: the fused forward (Eq. 5 and the coefficients of
  Eq. 6) and backward (Eq. 6, Algorithm 1) kernels and their launchers.

Kernels and plain launchers only: autograd and op registration live in
``per_triton/core/ops.py`` and ``per_triton/core/cuda_ops.py``. Submodules import triton, so
this package imports nothing eagerly. The CUDA entry points
(``per_triton.core.ops``) call :func:`per_triton.core.triton_support.require_triton` first: a
clear error when Triton is missing or older than the floor.
"""
