"""Static performance report of the Triton kernels for sm_90a, without a GPU.

Every kernel and config that can run (the autotune configs, the fixed configs, the
draw-only floor tiles; float32 TF32, float32 IEEE, bfloat16, float16) is compiled for
``GPUTarget("cuda", 90, 32)`` (sm_90a, H100/H200) exactly as the runtime would at
the paper shape ``b = 128, d = 196608, s = 256``:

* the arguments are specialised by Triton's own ``native_specialize_impl`` on the
  values the launchers pass at that shape (integers divisible by 16 and 16-byte
  aligned pointers get ``tt.divisibility = 16``, an integer equal to 1 becomes a
  constant), with ``split_d`` from :func:`per_triton.kernels.per_fused.plan_splits`
  on a 132-SM GPU;
* ``num_warps`` and ``num_stages`` are the config's, or Triton's defaults where the
  launcher passes none (``num_stages = 3``), as at run time.

The cubin is Triton's own (its ``ptxas``, with ``-v``); ``nvdisasm`` (bundled with
Triton) turns it into SASS. For each build the report gives:

``regs``, ``spill_bytes``
    registers per thread and spill stores + loads in bytes, from the ``ptxas -v`` log.
``shared``
    dynamic shared memory per CTA in bytes (``metadata.shared``).
``ctas_per_sm``
    resident CTAs per SM on sm_90 from registers (65536 per SM, allocated per warp
    in units of 256), shared memory (228 KiB per SM, 1 KiB reserved per CTA),
    warps (64 per SM) and the 32-CTA limit.
``mma``
    ``wgmma`` if the SASS holds ``HGMMA``, ``mma.sync`` if ``HMMA``, ``FMA`` if the
    kernel has a ``tl.dot`` and neither, ``-`` for kernels without a dot.
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

``tests/test_sass_report.py`` runs it in CI and checks the bounds
(:data:`BOUNDS`): no spill, every TF32/bf16/fp16 dot on wgmma, and the
instructions per normal of the fixed float32 TF32 configs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

#: The paper shape (Joo et al., ResNet activations): batch, features, slices.
PAPER_SHAPE = {"b": 128, "d": 196608, "s": 256}
#: SMs of the H100 SXM / H200 the shape is planned for.
SM_COUNT = 132
#: sm_90 limits used for CTAs per SM.
SM90 = {
    "regs": 65536,
    "reg_unit": 256,
    "smem": 228 * 1024,
    "smem_reserved": 1024,
    "warps": 64,
    "ctas": 32,
}
#: (activation dtype, precision) of every forward/backward build: float32 in both
#: precisions, half activations at the default precision (TF32 projections).
FIXED_VARIANTS = [("fp32", "tf32"), ("fp32", "ieee"), ("bf16", "tf32"), ("fp16", "tf32")]
#: CI bounds on instructions per normal (float32 TF32, fixed configs).
BOUNDS = {"fwd": 38.0, "bwd": 38.0, "draw_sum": 30.0}

_BIN = None


def _bin(tool: str) -> str:
    global _BIN
    if _BIN is None:
        import triton

        _BIN = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return str(_BIN / tool)


@dataclasses.dataclass
class Build:
    """One kernel + config + dtype to compile."""

    name: str  # kernel family: fwd, bwd, draw_sum, normals, finish, exact_*
    fn: Any
    args: dict[str, Any]  # runtime arguments by name (tensors on the meta device)
    consts: dict[str, Any]  # constexpr meta-parameters
    num_warps: int
    num_stages: int
    dtype: str = "fp32"
    precision: str = "-"
    role: str = "-"  # fixed | autotune | floor | stream
    has_dot: bool = False

    @property
    def normals_per_iter(self) -> int:
        if self.name in ("fwd", "bwd", "draw_sum"):
            return self.consts["BLOCK_S"] * self.consts["BLOCK_D"]
        return 0

    def label(self) -> str:
        c = self.consts
        tiles = "-".join(
            f"{k[6:].lower()}{c[k]}" for k in ("BLOCK_B", "BLOCK_S", "BLOCK_D") if k in c
        )
        run = f"w{self.num_warps}-st{self.num_stages}"
        return f"{self.name}-{self.dtype}-{self.precision}-{tiles}-{run}"


def _meta(dtype: str, *shape: int):
    import torch

    dt = {
        "fp32": torch.float32,
        "f64": torch.float64,
        "bf16": torch.bfloat16,
        "fp16": torch.float16,
        "i64": torch.int64,
    }
    return torch.empty(shape, dtype=dt[dtype], device="meta")


def builds(only: str = "all") -> list[Build]:
    """Every build of the report (``only``: ``all`` or ``fixed``, the CI subset)."""
    from per_triton.bench.kernel_utils import draw_config
    from per_triton.kernels import per_fused as pf
    from per_triton.kernels import philox_directions as pd

    b, d, s = PAPER_SHAPE["b"], PAPER_SHAPE["d"], PAPER_SHAPE["s"]
    default_stages = 3  # Triton's CUDA default when the launcher passes none
    out: list[Build] = []
    variants = FIXED_VARIANTS

    def cfgs(fixed: dict, tuned: list) -> list[tuple[str, dict, int, int]]:
        rows = [
            (
                "fixed",
                {k: v for k, v in fixed.items() if k not in ("num_warps", "num_stages")},
                fixed["num_warps"],
                fixed.get("num_stages", default_stages),
            )
        ]
        if only == "all":
            for c in tuned:
                row = ("autotune", dict(c.kwargs), c.num_warps, c.num_stages)
                if row[1:] != rows[0][1:]:
                    rows.append(row)
        return rows

    block_b = pf._block_b(b)
    dot_consts = {"BLOCK_B": block_b, "N_ROUNDS": pd.PHILOX_ROUNDS, "SFU": True}
    for role, tiles, warps, stages in cfgs(pf.FIXED_FWD_CONFIG, pf._FWD_CONFIGS):
        split_d, _ = pf.plan_splits(
            b, d, s, None, sm_count=SM_COUNT, block_s=tiles["BLOCK_S"], block_d=tiles["BLOCK_D"]
        )
        for dt, prec in variants:
            args = {
                "h_ptr": _meta(dt, b, d),
                "seed_ptr": _meta("i64", 1),
                "part_proj_ptr": _meta("fp32", 1),
                "part_sq_ptr": _meta("fp32", 1),
                "B": b,
                "D": d,
                "S": s,
                "split_d": split_d,
                "stride_hb": d,
            }
            consts = dot_consts | {"PRECISION": prec} | tiles
            out.append(
                Build(
                    "fwd",
                    pf._per_fwd_partial_kernel,
                    args,
                    consts,
                    warps,
                    stages,
                    dt,
                    prec,
                    role,
                    True,
                )
            )
    for role, tiles, warps, stages in cfgs(pf.FIXED_BWD_CONFIG, pf._BWD_CONFIGS):
        for dt, prec in variants:
            args = {
                "coeff_ptr": _meta("fp32", b, s),
                "seed_ptr": _meta("i64", 1),
                "grad_ptr": _meta(dt, b, d),
                "B": b,
                "D": d,
                "S": s,
                "stride_cb": s,
                "stride_gb": d,
            }
            consts = dot_consts | {"PRECISION": prec} | tiles
            out.append(
                Build("bwd", pf._per_bwd_kernel, args, consts, warps, stages, dt, prec, role, True)
            )
    # the draw-only floor: the tiles the kernel benchmark tries
    import torch

    split_d, _ = pf.plan_splits(b, d, s, None, sm_count=SM_COUNT)
    floor_cfgs = draw_config(b, d, s, torch.device("cuda"))
    for i, cfg in enumerate(floor_cfgs[:1] if only == "fixed" else floor_cfgs):
        args = {
            "seed_ptr": _meta("i64", 1),
            "out_ptr": _meta("fp32", 1),
            "S": s,
            "D": d,
            "split_d": split_d,
        }
        consts = {
            "BLOCK_S": cfg["block_s"],
            "BLOCK_D": cfg["block_d"],
            "N_ROUNDS": pd.PHILOX_ROUNDS,
            "SFU": True,
        }
        role = "fixed" if i == 0 else "floor"
        out.append(
            Build(
                "draw_sum",
                pd._draw_sum_kernel,
                args,
                consts,
                cfg["num_warps"],
                default_stages,
                role=role,
            )
        )
    if only == "all":
        tile = pd._DEFAULT_TILE
        args = {
            "seed_ptr": _meta("i64", 1),
            "out_ptr": _meta("fp32", s, d),
            "S": s,
            "col_start": 0,
            "col_stop": d,
            "stride_out_s": d,
        }
        consts = {
            "BLOCK_S": tile["BLOCK_S"],
            "BLOCK_D": tile["BLOCK_D"],
            "N_ROUNDS": pd.PHILOX_ROUNDS,
            "SFU": True,
        }
        out.append(
            Build("normals", pd._normals_kernel, args, consts, 4, default_stages, role="stream")
        )
        fb, fs = pf._FINISH_TILE["BLOCK_B"], pf._FINISH_TILE["BLOCK_S"]
        args = {
            "part_proj_ptr": _meta("fp32", 1),
            "part_sq_ptr": _meta("fp32", 1),
            "coeff_ptr": _meta("fp32", b, s),
            "loss_part_ptr": _meta("fp32", 1),
            "B": b,
            "S": s,
            "n_split": pf.plan_splits(b, d, s, None, sm_count=SM_COUNT)[1],
        }
        out.append(
            Build(
                "finish",
                pf._per_fwd_finish_kernel,
                args,
                {"BLOCK_B": fb, "BLOCK_S": fs},
                4,
                default_stages,
            )
        )
    if only == "all":
        out += _exact_builds(b, d)
    return out


def _exact_builds(b: int, d: int) -> list[Build]:
    """The exact estimator's kernels (kernels/per_exact.py) at the paper's ``b`` and ``d``.

    Memory-bound passes over ``h`` (no random draw): registers, spills and occupancy
    only. Their launch arguments mirror ``per_exact``'s launchers.
    """
    import torch

    from per_triton import exact
    from per_triton.kernels import per_exact as pe

    split_d, n_split = pe.plan_norm_splits(b, d)
    nodes = exact.node_table(torch.device("cpu"))
    builds = []
    for dt in ("fp32", "bf16"):
        args = {"h_ptr": _meta(dt, b, d), "part_ptr": _meta("fp32", b, n_split), "D": d,
                "split_d": split_d, "n_split": n_split}  # fmt: skip
        builds.append(
            Build("exact_norms", pe._row_sq_norms_kernel, args, {"BLOCK": pe.BLOCK}, 4, 3, dt)
        )
        args = {"h_ptr": _meta(dt, b, d), "scale_ptr": _meta("fp32", b),
                "grad_ptr": _meta(dt, b, d), "out_ptr": _meta(dt, b, d), "D": d}  # fmt: skip
        consts = {"HAS_GRAD": True, "BLOCK": pe.BLOCK}
        builds.append(Build("exact_scale", pe._scale_rows_kernel, args, consts, 4, 3, dt))
    args = {"part_ptr": _meta("fp32", b, n_split), "nodes_ptr": _meta("f64", *nodes.shape),
            "scale_ptr": _meta("fp32", b), "loss_ptr": _meta("fp32", 1), "B": b, "D": d,
            "n_split": n_split}  # fmt: skip
    consts = {"N": nodes.shape[1], "BLOCK_B": 32, "IS_D1": False, "SWITCH": exact.SWITCH_K}
    builds.append(Build("exact_terms", pe._exact_terms_kernel, args, consts, 4, 3))
    return builds


def _specialise(build: Build) -> tuple[dict, dict, dict]:
    """Signature, constexprs and attributes as Triton's launcher makes them."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.nvidia.compiler import CUDABackend

    fn = build.fn
    sig, consts, attrs = {}, {}, {}
    unknown = set(build.args) | set(build.consts)
    for i, name in enumerate(fn.arg_names):
        unknown.discard(name)
        if name in build.consts:
            sig[name], consts[name] = "constexpr", build.consts[name]
            continue
        if name not in build.args:
            raise KeyError(f"{build.name}: no value for argument {name!r}")
        param = fn.params[i]  # honours the kernel's do_not_specialize lists, as the launcher does
        ty, attr = native_specialize_impl(
            CUDABackend,
            build.args[name],
            False,
            not param.do_not_specialize,
            not param.do_not_specialize_on_alignment,
        )
        sig[name] = ty
        if ty == "constexpr":
            consts[name] = attr
        elif isinstance(attr, str):  # None where the kernel opts out of specialisation
            attrs[(i,)] = CUDABackend.parse_attr(attr)
    if unknown:
        raise KeyError(f"{build.name}: values for unknown arguments {sorted(unknown)}")
    return sig, consts, attrs


def compile_build(build: Build) -> tuple[Any, str]:
    """Compile for sm_90a; returns Triton's compiled kernel and the ``ptxas -v`` log."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig, consts, attrs = _specialise(build)
    src = ASTSource(build.fn, sig, consts, attrs)
    log = io.StringIO()
    old = triton.knobs.nvidia.dump_ptxas_log
    triton.knobs.nvidia.dump_ptxas_log = True
    try:
        with contextlib.redirect_stdout(log):
            kernel = triton.compile(
                src,
                target=GPUTarget("cuda", 90, 32),
                options={"num_warps": build.num_warps, "num_stages": build.num_stages},
            )
    finally:
        triton.knobs.nvidia.dump_ptxas_log = old
    return kernel, log.getvalue()


_INSTR = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_LABEL = re.compile(r"^(\.L_x_\d+):")
_BRA = re.compile(r"\bBRA\b.*`\((\.L_x_\d+)\)")


def disassemble(cubin: bytes) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        return subprocess.run(
            [_bin("nvdisasm"), "-c", str(path)], check=True, capture_output=True, text=True
        ).stdout


def parse_sass(sass: str) -> list[tuple[int, str, str | None]]:
    """``(address, instruction, label defined just before it or None)`` per instruction."""
    rows: list[tuple[int, str, str | None]] = []
    pending: str | None = None
    for line in sass.splitlines():
        m = _LABEL.match(line.strip())
        if m:
            pending = m.group(1)
            continue
        m = _INSTR.match(line)
        if m:
            rows.append((int(m.group(1), 16), m.group(2), pending))
            pending = None
    return rows


def hot_loop(rows: list[tuple[int, str, str | None]]) -> list[str]:
    """Instructions of the outermost loop (see the module docstring), NOPs excluded."""
    where = {label: i for i, (_, _, label) in enumerate(rows) if label}
    best: tuple[int, int] | None = None
    for i, (_, ins, _) in enumerate(rows):
        m = _BRA.search(ins)
        if m and m.group(1) in where and where[m.group(1)] < i:
            lo = where[m.group(1)]
            if best is None or i - lo > best[1] - best[0]:
                best = (lo, i)
    if best is None:
        return []
    body = [ins for _, ins, _ in rows[best[0] : best[1] + 1]]
    return [ins for ins in body if not re.match(r"^(@\S+\s+)?NOP\b", ins)]


def ctas_per_sm(regs: int, shared: int, num_warps: int) -> dict[str, int]:
    """Resident CTAs per SM on sm_90 and which limit binds."""
    unit = SM90["reg_unit"]
    per_warp = -(-max(regs, 1) * 32 // unit) * unit
    by = {
        "regs": (SM90["regs"] // per_warp) // num_warps,
        "smem": SM90["smem"] // (shared + SM90["smem_reserved"]),
        "warps": SM90["warps"] // num_warps,
        "ctas": SM90["ctas"],
    }
    return by


def _mma_kind(sass: str, has_dot: bool) -> str:
    if "HGMMA" in sass:
        return "wgmma"
    if "HMMA" in sass:
        return "mma.sync"
    return "FMA" if has_dot else "-"


def measure(build: Build, dump: pathlib.Path | None = None) -> dict[str, Any]:
    """Compile one build and return its report record."""
    kernel, log = compile_build(build)
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if not regs or not spills:
        raise RuntimeError(f"{build.label()}: no ptxas -v usage in the log:\n{log}")
    sass = disassemble(kernel.asm["cubin"])
    loop = hot_loop(parse_sass(sass))
    shared = int(kernel.metadata.shared)
    n_regs = int(regs.group(1))
    limits = ctas_per_sm(n_regs, shared, build.num_warps)
    per_thread = build.normals_per_iter / (32 * build.num_warps)
    sass_path = None
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        path = dump / f"{build.label()}.sass"
        path.write_text(sass)
        sass_path = str(path)
    rec = {
        "name": build.name,
        "label": build.label(),
        "role": build.role,
        "dtype": build.dtype,
        "precision": build.precision,
        **{k: v for k, v in build.consts.items() if k.startswith("BLOCK_")},
        "num_warps": build.num_warps,
        "num_stages": build.num_stages,
        "registers": n_regs,
        "spill_bytes": int(spills.group(1)) + int(spills.group(2)),
        "shared_bytes": shared,
        "ctas_per_sm": min(limits.values()),
        "cta_limit": min(limits, key=limits.get),
        "mma": _mma_kind(sass, build.has_dot),
        "loop_instructions": len(loop),
        "loop_mma": sum(1 for ins in loop if "GMMA" in ins or "HMMA" in ins),
        "normals_per_thread_iter": per_thread,
        "instr_per_normal": round(len(loop) / per_thread, 2) if per_thread else None,
        "sass_path": sass_path,
    }
    return rec


def check(records: list[dict[str, Any]], bounds: dict[str, float] = BOUNDS) -> list[str]:
    """Violations of the CI bounds (an empty list when all hold)."""
    bad = []
    for r in records:
        if r["spill_bytes"]:
            bad.append(f"{r['label']}: {r['spill_bytes']} spill bytes")
        tensor_dot = r["mma"] != "-" and not (r["dtype"] == "fp32" and r["precision"] == "ieee")
        if tensor_dot and r["mma"] != "wgmma":
            bad.append(f"{r['label']}: dot lowers to {r['mma']}, not wgmma")
        bound = bounds.get(r["name"])
        tf32 = r["dtype"] == "fp32" and r["precision"] in ("tf32", "-")
        if bound is not None and r["role"] == "fixed" and tf32 and r["instr_per_normal"] > bound:
            bad.append(f"{r['label']}: {r['instr_per_normal']} instructions per normal > {bound}")
    return bad


COLUMNS = [
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
            v = r[k]
            v = "-" if v is None else v
            cells.append(f"{v:<{w}}" if k == "label" else f"{v!s:>{w}}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=pathlib.Path, help="write one JSON record per build here")
    parser.add_argument(
        "--dump", type=pathlib.Path, help="write each build's SASS into this folder"
    )
    parser.add_argument("--only", choices=("all", "fixed"), default="all", help="builds to report")
    parser.add_argument("--check", action="store_true", help="exit 1 if a CI bound is violated")
    parser.add_argument("-k", default="", help="only builds whose label contains this text")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        parser.error("unset TRITON_INTERPRET: the report compiles for the GPU")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    records = []
    with tempfile.TemporaryDirectory() as cache:
        # a private cache: every build is compiled, so ptxas writes its -v log
        os.environ["TRITON_CACHE_DIR"] = cache
        for build in builds(args.only):
            if args.k in build.label():
                records.append(measure(build, args.dump))
    out(table(records))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    bad = check(records)
    for line in bad:
        out(f"BOUND VIOLATED: {line}")
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
