"""The op core: the estimators, their CPU and CUDA paths, and their registration.

Layer 1 of the package (docs/design.md, "Layout"). Nothing here knows about
``nn.Module`` hooks, models or result files: these modules compute PER's loss and
gradient for one activation matrix ``h (b, d)``.

- :mod:`~per_triton.core.estimators`: the estimator registry (each estimator's ops,
  arguments and label);
- :mod:`~per_triton.core.registration`: registers an op with its fallbacks (the op
  modules' private torch calls are there);
- :mod:`~per_triton.core.ops`: the Monte Carlo ``torch.library`` ops with their CPU and
  CUDA implementations; :mod:`~per_triton.core.cpu_path`, :mod:`~per_triton.core.cuda_ops`;
- :mod:`~per_triton.core.exact`: the exact (infinite-slice) estimator, its ops in
  :mod:`~per_triton.core.exact_ops`;
- :mod:`~per_triton.core.dtypes`: the accumulation dtype;
- :mod:`~per_triton.core.normals` (with :mod:`~per_triton.core.normals_c` and
  :mod:`~per_triton.core.normals_torch`), :mod:`~per_triton.core.seeds`,
  :mod:`~per_triton.core.directions`: the random streams;
- :mod:`~per_triton.core.reference`: the plain reference (Eq. 5 and Eq. 6).
"""
