"""Ahead-of-time GPU compilation of every kernel, without a GPU.

The interpreter runs the kernels' logic but not the GPU compiler (DESIGN.md section
6: it accepts tiles and dtypes the GPU rejects). Triton compiles to a cubin for a
named target without a device, so CI checks here that each kernel, in float32 (TF32
and IEEE), bfloat16 and float16 and in the autotune configs, compiles for
sm_90 (and the fixed configs for sm_80), fits in shared memory and, on sm_90, spills
no register (when the bundled ``ptxas`` reports usage). It runs in a subprocess without
``TRITON_INTERPRET`` (under the interpreter ``@triton.jit`` yields no compilable
function).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
ARCHS = {80: 163 * 1024, 90: 227 * 1024}  # compute capability -> shared memory per block
# Spill bytes tolerated (ptxas -v): the draw-only floor kernel keeps a 16 x 128 sum.
SPILL_OK = {"draw_sum": 64}


def _signature(fn, ptr_types: dict[str, str], constexprs: dict) -> dict[str, str]:
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = ptr_types.get(name, "*fp32")
        else:
            sig[name] = "i32"
    return sig


def _cases(arch: int) -> list[tuple[str, object, dict[str, str], dict, int]]:
    """(name, kernel, pointer types, constexprs, num_warps) compiled for ``arch``.

    sm_90 (the lent H100/H200): every autotune config in float32/TF32, the fixed
    configs in IEEE, bfloat16 and float16, and the stream kernels. sm_80: the fixed
    configs in float32/TF32 and bfloat16.
    """
    from per_triton.kernels import per_fused as pf
    from per_triton.kernels import philox_directions as pd

    def split(c: dict) -> tuple[dict, int]:
        return {k: v for k, v in c.items() if k != "num_warps"}, c["num_warps"]

    seed = {"seed_ptr": "*i64"}
    fixed_fwd, fixed_bwd = split(pf.FIXED_FWD_CONFIG), split(pf.FIXED_BWD_CONFIG)
    fwd, bwd = [fixed_fwd], [fixed_bwd]
    if arch == 90:
        fwd += [(c.kwargs, c.num_warps) for c in pf._FWD_CONFIGS if c.kwargs != fixed_fwd[0]]
        bwd += [(c.kwargs, c.num_warps) for c in pf._BWD_CONFIGS if c.kwargs != fixed_bwd[0]]
    variants = [("fp32", "tf32"), ("bf16", "tf32")]
    if arch == 90:
        variants += [("fp32", "ieee"), ("fp16", "tf32")]
    cases = []
    for dt, prec in variants:
        meta = {"BLOCK_B": 128, "PRECISION": prec, "N_ROUNDS": 10}
        all_tiles = dt == "fp32" and prec == "tf32"
        for tiles, warps in fwd if all_tiles else fwd[:1]:
            cases.append(
                (f"fwd-{dt}-{prec}", pf._per_fwd_partial_kernel, seed | {"h_ptr": f"*{dt}"},
                 meta | tiles, warps)
            )  # fmt: skip
        for tiles, warps in bwd if all_tiles else bwd[:1]:
            cases.append(
                (f"bwd-{dt}-{prec}", pf._per_bwd_kernel, seed | {"grad_ptr": f"*{dt}"},
                 meta | tiles, warps)
            )  # fmt: skip
    if arch == 90:
        draw = {"BLOCK_S": 16, "BLOCK_D": 128, "N_ROUNDS": 10}
        ints = seed | {"k_ptr": "*i64", "m_ptr": "*i64", "out_ptr": "*i64"}
        cases += [
            ("finish", pf._per_fwd_finish_kernel, {}, {"BLOCK_B": 32, "BLOCK_S": 64}, 4),
            ("normals", pd._normals_kernel, seed, draw, 4),
            ("draw_sum", pd._draw_sum_kernel, seed, draw, 4),
            ("words", pd._words_kernel, ints, {"BLOCK": 64, "N_ROUNDS": 10}, 4),
        ]
    return cases


def _ptxas_usage(ptx: str, arch: int) -> dict[str, int] | None:
    import triton

    bin_dir = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    for name in ("ptxas-blackwell", "ptxas"):
        exe = bin_dir / name
        if not exe.is_file():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            src = pathlib.Path(tmp) / "k.ptx"
            src.write_text(ptx)
            gpu = f"sm_{arch}a" if arch == 90 else f"sm_{arch}"
            cmd = [str(exe), "-v", f"--gpu-name={gpu}", str(src), "-o", str(src) + ".o"]
            out = subprocess.run(cmd, capture_output=True, text=True)
        regs = re.search(r"Used (\d+) registers", out.stderr)
        spills = re.search(r"(\d+) bytes spill stores", out.stderr)
        if out.returncode == 0 and regs and spills:
            return {"regs": int(regs.group(1)), "spill_bytes": int(spills.group(1))}
    return None


def _report() -> None:
    """Subprocess entry: compile every case for every arch, print one JSON line each."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    for arch in ARCHS:
        target = GPUTarget("cuda", arch, 32)
        for name, fn, ptrs, consts, warps in _cases(arch):
            src = ASTSource(fn=fn, signature=_signature(fn, ptrs, consts), constexprs=consts)
            kernel = triton.compile(src, target=target, options={"num_warps": warps})
            row = {"kernel": name, "arch": arch, "consts": consts, "warps": warps}
            row["shared"] = kernel.metadata.shared
            row["has_cubin"] = "cubin" in kernel.asm
            row["usage"] = _ptxas_usage(kernel.asm["ptx"], arch)
            print(json.dumps(row), flush=True)
    print("DONE", sum(len(_cases(arch)) for arch in ARCHS), flush=True)


def test_kernels_compile_for_gpus() -> None:
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(
        [sys.executable, "-c", "from tests.test_kernels_compile import _report; _report()"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    done = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("DONE")]
    assert done == [str(len(rows))], proc.stdout[-2000:]
    assert {row["arch"] for row in rows} == set(ARCHS)
    for row in rows:
        where = f"{row['kernel']} sm_{row['arch']} {row['consts']} warps={row['warps']}"
        assert row["has_cubin"], f"{where}: no cubin"
        assert row["shared"] <= ARCHS[row["arch"]], f"{where}: {row['shared']} B shared memory"
        # Spills are checked for the target GPUs (sm_90); sm_80 only has to compile.
        if row["usage"] is not None and row["arch"] == 90:
            assert row["usage"]["spill_bytes"] <= SPILL_OK.get(row["kernel"], 0), where
