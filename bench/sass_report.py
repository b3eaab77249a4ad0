"""Static performance report of the Triton kernels per GPU architecture, without a GPU.

Every kernel and config that can run (the autotune configs, the fixed configs, the
draw-only floor tiles; float32 TF32, float32 IEEE, bfloat16, float16) is compiled for
``GPUTarget("cuda", cc, 32)`` of each architecture asked for (``--arch``, default
sm_90a, H100/H200; the configs are the row of ``per_triton.kernels.configs`` for that
architecture and the installed Triton) exactly as the runtime would at the paper
shape ``b = 128, d = 196608, s = 256``:

* each build is the launch the kernels' own launchers run (``*_launch`` in
  ``per_triton.kernels``, :mod:`bench.sass_builds`), with ``split_d`` planned for the
  architecture's reference GPU (``sass_builds.SM_COUNTS``);
* its arguments are specialised by Triton's own ``native_specialize_impl``
  (integers divisible by 16 and 16-byte aligned pointers get ``tt.divisibility =
  16``, an integer equal to 1 becomes a constant), :mod:`bench.sass_compile`;
* ``num_warps`` and ``num_stages`` are the config's, or Triton's defaults where the
  launcher passes none (``num_stages = 3``), as at run time.

The cubin is Triton's own (its ``ptxas``, with ``-v``); ``nvdisasm`` (bundled with
Triton) turns it into SASS. For each build the report gives:

``regs``, ``spill_bytes``
    registers per thread and spill stores + loads in bytes, from the ``ptxas -v`` log.
``shared``
    dynamic shared memory per CTA in bytes (``metadata.shared``).
``ctas_per_sm``
    resident CTAs per SM from registers (65536 per SM, allocated per warp in units
    of 256), shared memory (per SM, 1 KiB reserved per CTA), resident warps and
    resident CTAs per SM, with the architecture's limits (``sass_compile.ARCH_LIMITS``).
``mma``
    ``tcgen05`` if the SASS holds ``UTC*MMA``, ``wgmma`` if ``HGMMA``, ``mma.sync``
    if ``HMMA``, ``FMA`` if the kernel has a ``tl.dot`` and none of them, ``-`` for
    kernels without a dot, ``n/a: nvdisasm lacks sm_X`` where the bundled
    ``nvdisasm`` cannot read the cubin (then the SASS columns are empty).
``instr_per_normal``
    the hot loop's SASS instructions per generated normal. The hot loop is the
    outermost loop of the kernel: of all backward branches ``BRA L`` (target label
    ``L`` before the branch; the branch-to-itself after ``EXIT`` is not a loop),
    the one spanning the most
    instructions; its body is every instruction from ``L`` to the branch, both
    included, ``NOP`` excluded (a static count: code on rarely taken paths inside
    the loop, such as the precise ``sinf``/``cosf`` argument reduction, counts too).
    One iteration draws one ``BLOCK_S x BLOCK_D`` tile on ``32 * num_warps``
    threads, so a thread makes ``BLOCK_S * BLOCK_D / (32 * num_warps)`` normals per
    iteration; ``instr_per_normal`` is the body's count divided by that.
    ``loop_mma`` (the number of ``HGMMA``/``HMMA`` in the body) lets one check that
    the body holds one tile's dot, i.e. that the loop was not unrolled.

Run it (no GPU needed; ``TRITON_INTERPRET`` must be unset)::

    python bench/sass_report.py                       # table of every build
    python bench/sass_report.py --json r.json --dump sass/
    python bench/sass_report.py --only fixed          # the fixed configs only (CI)
    python bench/sass_report.py --arch sm_80 sm_90a   # several architectures (or all)

``tests/test_sass_report.py`` runs it in CI and checks the bounds
(:data:`BOUNDS`): no spill, every TF32/bf16/fp16 dot on wgmma, and the
instructions per normal of the fixed float32 TF32 configs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable
from typing import Any

if not __package__:  # run as a script (python bench/sass_report.py): find per_triton
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from per_triton.bench.sass_builds import builds  # noqa: E402
from per_triton.bench.sass_compile import ARCH_LIMITS, measure  # noqa: E402

#: The tensor-core instruction each architecture's TF32/bf16/fp16 dots should use.
EXPECTED_MMA = {"sm_90a": "wgmma", "sm_100a": "tcgen05"}
#: CI bounds on instructions per normal (float32 TF32, fixed configs).
BOUNDS = {"fwd": 38.0, "bwd": 38.0, "draw_sum": 30.0}


def check(
    records: list[dict[str, Any]],
    bounds: dict[str, float] = BOUNDS,
    planned_ctas: dict[str, int] | None = None,
) -> list[str]:
    """Violations of the CI bounds (an empty list when all hold).

    Per record: no spill; TF32/bf16/fp16 dots on the architecture's tensor-core
    instruction (:data:`EXPECTED_MMA`, ``mma.sync`` elsewhere); the instructions per
    normal of fixed float32 TF32 builds within ``bounds`` where the SASS could be
    read; and, with ``planned_ctas`` (arch -> CTAs per SM the split planner assumes),
    at least that many resident forward CTAs per SM for TF32/bf16/fp16 builds.
    """
    bad = []
    for r in records:
        arch = r.get("arch", "sm_90a")
        where = f"{arch} {r['label']}"
        readable = not r["mma"].startswith("n/a")
        if r["spill_bytes"]:
            bad.append(f"{where}: {r['spill_bytes']} spill bytes")
        tensor_dot = r["mma"] != "-" and not (r["dtype"] == "fp32" and r["precision"] == "ieee")
        want = EXPECTED_MMA.get(arch, "mma.sync")
        if tensor_dot and readable and r["mma"] != want:
            bad.append(f"{where}: dot lowers to {r['mma']}, not {want}")
        bound = bounds.get(r["name"])
        tf32 = r["dtype"] == "fp32" and r["precision"] in ("tf32", "-")
        ipn = r["instr_per_normal"]
        if bound is not None and r["role"] == "fixed" and tf32 and ipn is not None and ipn > bound:
            bad.append(f"{where}: {ipn} instructions per normal > {bound}")
        if r["name"] in ("fwd", "bwd") and readable and r.get("loop_instructions", 1) == 0:
            bad.append(f"{where}: no hot loop in the SASS (a kernel compiled to nothing?)")
        plan = (planned_ctas or {}).get(arch)
        if plan and r["name"] == "fwd" and tensor_dot and r["ctas_per_sm"] < plan:
            bad.append(f"{where}: {r['ctas_per_sm']} CTAs per SM < {plan} planned")
    return bad


COLUMNS = [
    ("arch", 7),
    ("label", 48),
    ("role", 8),
    ("registers", 5),
    ("spill_bytes", 6),
    ("shared_bytes", 7),
    ("ctas_per_sm", 5),
    ("mma", 8),
    ("loop_instructions", 6),
    ("instr_per_normal", 7),
]
HEADERS = {
    "label": "kernel-dtype-precision-tiles-warps-stages",
    "registers": "regs",
    "spill_bytes": "spill",
    "shared_bytes": "shared",
    "ctas_per_sm": "CTA/SM",
    "loop_instructions": "loop",
    "instr_per_normal": "ins/nrm",
}


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        " ".join(
            f"{HEADERS.get(k, k):>{w}}" if k != "label" else f"{HEADERS[k]:<{w}}"
            for k, w in COLUMNS
        )
    ]
    for r in records:
        cells = []
        for k, w in COLUMNS:
            v = r.get(k)
            v = "-" if v is None else v
            cells.append(f"{v:<{w}}" if k == "label" else f"{v!s:>{w}}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def parse_archs(names: list[str], error: Callable[[str], Any]) -> list[str]:
    """``--arch`` values: known architecture names in order, or ``all`` (every one)."""
    if "all" in names:
        return list(ARCH_LIMITS)
    unknown = [n for n in names if n not in ARCH_LIMITS]
    if unknown:
        error(f"--arch: unknown {', '.join(unknown)}; choose from {' '.join(ARCH_LIMITS)} or all")
    return list(dict.fromkeys(names))


def _planned_ctas(arch: str) -> int:
    """Forward CTAs per SM the split planner assumes on ``arch`` (its config row)."""
    from per_triton.kernels import configs

    return configs.row_for(configs.ARCHS[arch]).ctas_per_sm


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=pathlib.Path, help="write one JSON record per build here")
    parser.add_argument(
        "--dump", type=pathlib.Path, help="write each build's SASS into this folder"
    )
    parser.add_argument(
        "--only", choices=("all", "fixed", "matrix"), default="all", help="builds to report"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a CI bound is violated")
    parser.add_argument("-k", default="", help="only builds whose label contains this text")
    parser.add_argument(
        "--arch", nargs="+", default=["sm_90a"], metavar="ARCH",
        help=f"architectures to compile for: {' '.join(ARCH_LIMITS)} or all",
    )  # fmt: skip
    args = parser.parse_args(argv)
    archs = parse_archs(args.arch, parser.error)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        parser.error("unset TRITON_INTERPRET: the report compiles for the GPU")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    records = []
    with tempfile.TemporaryDirectory() as cache:
        # a private cache: every build is compiled, so ptxas writes its -v log
        os.environ["TRITON_CACHE_DIR"] = cache
        for arch in archs:
            for build in builds(args.only, arch):
                if args.k in build.label():
                    records.append(measure(build, args.dump, arch))
    out(table(records))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    bad = check(records, planned_ctas={a: _planned_ctas(a) for a in archs})
    for line in bad:
        out(f"BOUND VIOLATED: {line}")
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
