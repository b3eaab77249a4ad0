"""Benchmark suites (pytest-benchmark) and their helpers, installed as ``per_triton.bench``.

``per-triton bench`` runs ``bench_training.py`` / ``bench_kernels.py`` with pytest;
``common`` holds the timing and result-file helpers; ``results/`` the committed
result files (package data in a wheel). See per_triton/paths.py for the layout.
"""
