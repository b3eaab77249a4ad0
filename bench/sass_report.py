"""Static performance report of the Triton kernels per GPU architecture, without a GPU.

Every kernel and config that can run (the autotune configs, the fixed configs, the
draw-only floor tiles; float32 TF32, float32 IEEE, bfloat16, float16) is compiled for
``GPUTarget("cuda", cc, 32)`` of each architecture asked for (``--arch``, default
sm_90a, H100/H200; the configs are the row of ``per_triton.kernels.configs`` for that
architecture and the installed Triton) exactly as the runtime would at the paper
shape ``b = 128, d = 196608, s = 256``:

* the arguments are specialised by Triton's own ``native_specialize_impl`` on the
  values the launchers pass at that shape (integers divisible by 16 and 16-byte
  aligned pointers get ``tt.divisibility = 16``, an integer equal to 1 becomes a
  constant), with ``split_d`` from :func:`per_triton.kernels.per_fused.plan_splits`
  on the architecture's reference GPU (:data:`SM_COUNTS`);
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
    resident CTAs per SM, with the architecture's limits (:data:`ARCH_LIMITS`).
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
#: SMs of each architecture's reference GPU (A100, A10, L4, H100, B200, RTX 5090).
SM_COUNTS = {"sm_80": 108, "sm_86": 72, "sm_89": 58, "sm_90a": 132, "sm_100a": 148, "sm_120": 170}
_KIB = 1024
#: Per-SM limits by architecture, from NVIDIA's CUDA C++ Programming Guide, table
#: "Technical Specifications per Compute Capability": 32-bit registers per SM,
#: register allocation unit per warp, maximum shared memory per SM, shared memory
#: reserved per CTA, maximum resident warps and resident blocks per SM.
ARCH_LIMITS = {
    "sm_80": {"regs": 65536, "smem": 164 * _KIB, "warps": 64, "ctas": 32},
    "sm_86": {"regs": 65536, "smem": 100 * _KIB, "warps": 48, "ctas": 16},
    "sm_89": {"regs": 65536, "smem": 100 * _KIB, "warps": 48, "ctas": 24},
    "sm_90a": {"regs": 65536, "smem": 228 * _KIB, "warps": 64, "ctas": 32},
    "sm_100a": {"regs": 65536, "smem": 228 * _KIB, "warps": 64, "ctas": 32},
    "sm_120": {"regs": 65536, "smem": 100 * _KIB, "warps": 48, "ctas": 32},
}
for _lim in ARCH_LIMITS.values():
    _lim.update(reg_unit=256, smem_reserved=_KIB)
#: sm_90 limits (kept for callers of the single-architecture report).
SM90 = ARCH_LIMITS["sm_90a"]
#: The tensor-core instruction each architecture's TF32/bf16/fp16 dots should use.
EXPECTED_MMA = {"sm_90a": "wgmma", "sm_100a": "tcgen05"}
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


def arch_configs(arch: str) -> tuple[dict, list, dict, list, int]:
    """Fixed + autotune forward/backward configs and CTAs per SM of ``arch``'s config row."""
    import triton

    from per_triton.kernels import configs

    row = configs.row_for(configs.ARCHS[arch])

    def one(r: tuple[int, int, int, int]) -> dict:
        return {"BLOCK_S": r[0], "BLOCK_D": r[1], "num_warps": r[2], "num_stages": r[3]}

    def tuned(rows) -> list:
        return [triton.Config({"BLOCK_S": r[0], "BLOCK_D": r[1]}, r[2], r[3]) for r in rows]

    return one(row.fwd[0]), tuned(row.fwd), one(row.bwd[0]), tuned(row.bwd), row.ctas_per_sm


def builds(only: str = "all", arch: str = "sm_90a") -> list[Build]:
    """Every build of the report for ``arch``.

    ``only``: ``all``; ``fixed`` (the fixed configs and the first floor tile, the CI
    subset); ``matrix`` (``fixed`` plus the forward/backward autotune configs in
    float32 TF32: the compile matrix of scripts/compile_matrix.sh).
    """
    from per_triton.bench.kernel_utils import draw_config
    from per_triton.kernels import per_fused as pf
    from per_triton.kernels import philox_directions as pd

    fwd_fixed, fwd_tuned, bwd_fixed, bwd_tuned, ctas = arch_configs(arch)
    sm_count = SM_COUNTS[arch]

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
        if only in ("all", "matrix"):
            for c in tuned:
                row = ("autotune", dict(c.kwargs), c.num_warps, c.num_stages)
                if row[1:] != rows[0][1:]:
                    rows.append(row)
        return rows

    block_b = pf._block_b(b)
    dot_consts = {"BLOCK_B": block_b, "N_ROUNDS": pd.PHILOX_ROUNDS, "SFU": True}
    for role, tiles, warps, stages in cfgs(fwd_fixed, fwd_tuned):
        split_d, _ = pf.plan_splits(
            b, d, s, None, sm_count=sm_count, block_s=tiles["BLOCK_S"],
            block_d=tiles["BLOCK_D"], ctas_per_sm=ctas,
        )  # fmt: skip
        for dt, prec in variants if role == "fixed" or only == "all" else [("fp32", "tf32")]:
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
    for role, tiles, warps, stages in cfgs(bwd_fixed, bwd_tuned):
        for dt, prec in variants if role == "fixed" or only == "all" else [("fp32", "tf32")]:
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

    split_d, _ = pf.plan_splits(b, d, s, None, sm_count=sm_count, ctas_per_sm=ctas)
    floor_cfgs = draw_config(b, d, s, torch.device("cuda"))
    for i, cfg in enumerate(floor_cfgs if only == "all" else floor_cfgs[:1]):
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
            "n_split": pf.plan_splits(b, d, s, None, sm_count=sm_count, ctas_per_sm=ctas)[1],
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

    from per_triton.core import exact
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


def compile_build(build: Build, arch: str = "sm_90a") -> tuple[Any, str]:
    """Compile for ``arch``; returns Triton's compiled kernel and the ``ptxas -v`` log."""
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
                target=GPUTarget("cuda", _capability(arch), 32),
                options={"num_warps": build.num_warps, "num_stages": build.num_stages},
            )
    finally:
        triton.knobs.nvidia.dump_ptxas_log = old
    return kernel, log.getvalue()


_INSTR = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_LABEL = re.compile(r"^(\.L_x_\d+):")
_BRA = re.compile(r"\bBRA\b.*`\((\.L_x_\d+)\)")


def _capability(arch: str) -> int:
    from per_triton.kernels import configs

    return configs.ARCHS[arch]


def disassemble(cubin: bytes) -> str | None:
    """SASS of ``cubin``, or None where the bundled ``nvdisasm`` cannot read its arch."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        proc = subprocess.run([_bin("nvdisasm"), "-c", str(path)], capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else None


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


def ctas_per_sm(regs: int, shared: int, num_warps: int, arch: str = "sm_90a") -> dict[str, int]:
    """Resident CTAs per SM on ``arch`` by each limit (registers, shared, warps, CTAs)."""
    lim = ARCH_LIMITS[arch]
    unit = lim["reg_unit"]
    per_warp = -(-max(regs, 1) * 32 // unit) * unit
    by = {
        "regs": (lim["regs"] // per_warp) // num_warps,
        "smem": lim["smem"] // (shared + lim["smem_reserved"]),
        "warps": lim["warps"] // num_warps,
        "ctas": lim["ctas"],
    }
    return by


_MMA_OPS = re.compile(r"\b(UTC\w*MMA|HGMMA|HMMA)")


def _mma_kind(sass: str | None, has_dot: bool, arch: str = "sm_90a") -> str:
    if sass is None:
        return f"n/a: nvdisasm lacks {arch}"
    if re.search(r"\bUTC\w*MMA", sass):
        return "tcgen05"
    if "HGMMA" in sass:
        return "wgmma"
    if "HMMA" in sass:
        return "mma.sync"
    return "FMA" if has_dot else "-"


def measure(build: Build, dump: pathlib.Path | None = None, arch: str = "sm_90a") -> dict[str, Any]:
    """Compile one build for ``arch`` and return its report record."""
    import triton

    kernel, log = compile_build(build, arch)
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if not regs or not spills:
        raise RuntimeError(f"{build.label()}: no ptxas -v usage in the log:\n{log}")
    sass = disassemble(kernel.asm["cubin"])
    loop = hot_loop(parse_sass(sass)) if sass is not None else []
    shared = int(kernel.metadata.shared)
    n_regs = int(regs.group(1))
    limits = ctas_per_sm(n_regs, shared, build.num_warps, arch)
    per_thread = build.normals_per_iter / (32 * build.num_warps)
    sass_path = None
    if dump is not None and sass is not None:
        dump.mkdir(parents=True, exist_ok=True)
        path = dump / f"{arch}-{build.label()}.sass"
        path.write_text(sass)
        sass_path = str(path)
    rec = {
        "arch": arch,
        "triton": triton.__version__,
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
        "mma": _mma_kind(sass, build.has_dot, arch),
        "loop_instructions": len(loop),
        "loop_mma": sum(1 for ins in loop if _MMA_OPS.search(ins)),
        "normals_per_thread_iter": per_thread,
        "instr_per_normal": round(len(loop) / per_thread, 2) if per_thread and loop else None,
        "sass_path": sass_path,
    }
    return rec


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
    bad = check(records, planned_ctas={a: arch_configs(a)[4] for a in archs})
    for line in bad:
        out(f"BOUND VIOLATED: {line}")
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
