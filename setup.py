"""Optional build step: the CPU sampler compiled into the wheel (docs/cpu-sampler.md).

``per_triton/core/philox_normals.c`` becomes ``per_triton/core/_philox_normals.abi3.so``, a plain
shared library (no Python API; loaded with ctypes by ``per_triton/core/normals_c.py``), so the
wheel is a platform wheel whose CPU path needs no compiler. ``optional=True``: without a
compiler the build warns and goes on, and the sampler is compiled on first use instead.
All metadata is in pyproject.toml.
"""

from setuptools import Extension, setup

SAMPLER = Extension(
    "per_triton.core._philox_normals",
    sources=["per_triton/core/philox_normals.c"],
    # the same flags as per_triton.core.normals_c.CFLAGS: no FMA contraction, no fast-math
    extra_compile_args=["-O3", "-ffp-contract=off", "-fno-math-errno"],
    py_limited_api=True,
    optional=True,
)

setup(ext_modules=[SAMPLER], options={"bdist_wheel": {"py_limited_api": "cp310"}})
