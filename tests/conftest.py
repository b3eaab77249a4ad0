"""Shared test setup.

Without CUDA the Triton kernels run under the interpreter: TRITON_INTERPRET
must be set before triton is first imported, so it is set here, at collection.
Tests marked ``gpu`` are skipped without a CUDA device.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
# an editable install builds the sampler into the checkout; the tests of the other
# load paths (cached, built, torch) must not see it (tests/test_normals.py)
os.environ.setdefault("PER_TRITON_PACKAGED_SAMPLER", "0")

# Keep the two xdist workers from oversubscribing CI's two cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _drop_compiled_code():
    """Drop torch.compile's cache after each test that imported Dynamo.

    Dynamo's cache is per class and ignores module hooks, so compiled code left by
    one test would be reused (skipping PER hooks) by another test's model of the
    same class, and regularize() would rightly warn there.
    """
    yield
    if "torch._dynamo" in sys.modules:
        torch.compiler.reset()
