"""Fused Triton kernels for PER (installed as ``per_triton.kernels``).

- :mod:`per_triton.kernels.philox_stream`: the CUDA direction stream (Philox4x32-10
  Gaussian tiles drawn in registers, ``gaussian_quad``) every kernel inlines;
- :mod:`per_triton.kernels.philox_kernels` and
  :mod:`per_triton.kernels.philox_directions`: the kernels that materialise
  directions (``sample_directions_triton``), expose the raw words (tests) and only
  draw (the benchmark floor), and their launches and launchers;
- :mod:`per_triton.kernels.per_fused_kernels`, :mod:`per_triton.kernels.per_fused_launch`,
  :mod:`per_triton.kernels.per_fused`: the fused forward (Eq. 5 and the coefficients
  of Eq. 6) and backward (Eq. 6, Algorithm 1) kernels, their launches, their launchers;
- :mod:`per_triton.kernels.per_exact`: the exact estimator's kernels;
- :mod:`per_triton.kernels.configs`: tile configs per architecture and Triton band;
  :mod:`per_triton.kernels.launch`: a kernel launch as data.

Kernels and plain launchers only: autograd and op registration live in
``per_triton/core/ops.py`` and ``per_triton/core/cuda_ops.py``. Submodules import triton, so
this package imports nothing eagerly. The CUDA entry points
(``per_triton.core.ops``) call :func:`per_triton.core.triton_support.require_triton` first: a
clear error when Triton is missing or older than the floor.
"""
