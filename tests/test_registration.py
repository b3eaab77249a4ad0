"""Every import order registers the CPU and CUDA kernels of the ops.

The ops register their implementations where they are defined (``per_triton.core.ops``,
``per_triton.core.exact_ops``, both through ``per_triton.core.registration``), so no
import order can leave ``per_triton::per_fwd`` without a CUDA kernel. Each order runs
in a fresh interpreter (a registration is process-global), all at once to keep the
test short. The CUDA kernel is checked through the dispatcher, which
needs no GPU. The same runs check that ``per_triton.regularize`` stays the public
function whatever the order, although a submodule has that name too.
"""

from __future__ import annotations

import subprocess
import sys

ORDERS = {
    "loss-module-first": "from per_triton.api.loss import per_loss",
    "ops-first": "import per_triton.core.ops",
    "torch-first": "import torch; import per_triton as pt; pt.PER",
    "from-package": "from per_triton import regularize",
    "regularize-submodule-first": "import per_triton.api.attach",
    "models-first": "from per_triton.experiments.models import build_model",
    "exact-first": "from per_triton.core.exact import exact_loss",
    # the CPU kernel of exact_fwd imports per_triton.core.exact (its quadratures) when called
    "exact-ops-first": "import torch\nfrom per_triton.core.exact_ops import exact_fwd\n"
    "exact_fwd(torch.ones(2, 3))",
}

CHECK = """
import types
import torch
import per_triton as pt
import per_triton.core.exact, per_triton.core.ops  # every op defined (no-op where the order did it)
# per_proj (the adjoint used by double backward) after the original two ops; then the
# exact estimator's ops (per_triton.core.exact_ops)
for op in ("per_fwd", "per_bwd", "per_proj", "exact_fwd", "scale_rows"):
    for key in ("CPU", "CUDA"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"per_triton::{op}", key), (op, key)
assert isinstance(pt.regularize, types.FunctionType), f"pt.regularize is {pt.regularize!r}"
print("ok")
"""


def test_every_import_order_registers_cpu_and_cuda_kernels():
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", f"{stmt}\n{CHECK}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, stmt in ORDERS.items()
    }
    failures = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0 or not out.strip().endswith("ok"):
            failures[name] = out.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    assert not failures, failures
