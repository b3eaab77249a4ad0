"""Compile, disassemble and measure one build of the static report (``bench/sass_report.py``).

A build's launch is specialised as Triton's launcher specialises it (Triton's own
``native_specialize_impl`` on the launch's values), compiled with ``triton.compile``
for ``GPUTarget("cuda", cc, 32)`` (Triton's ``ptxas``, with ``-v``) and its cubin
disassembled with the bundled ``nvdisasm``; :func:`measure` turns that into one
record (registers, spills, shared memory, CTAs per SM, MMA kind, hot-loop
instructions per normal; the report's docstring defines each).
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import subprocess
import tempfile
from typing import Any

from per_triton.bench.sass_builds import Build

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

_BIN = None


def _bin(tool: str) -> str:
    global _BIN
    if _BIN is None:
        import triton

        _BIN = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return str(_BIN / tool)


def _specialise(build: Build) -> tuple[dict, dict, dict]:
    """Signature, constexprs and attributes as Triton's launcher makes them.

    Each buffer of the launch is a tensor on the meta device (its dtype; a meta
    tensor's address, 0, is 16-byte aligned as a CUDA allocation is).
    """
    import torch
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.nvidia.compiler import CUDABackend

    from per_triton.kernels.launch import Buffer

    launch = build.launch
    sig, consts, attrs = {}, {}, {}
    for i, name in enumerate(launch.kernel.arg_names):
        if name in launch.constexprs:
            sig[name], consts[name] = "constexpr", launch.constexprs[name]
            continue
        value = launch.args[name]
        if isinstance(value, Buffer):
            value = torch.empty(value.shape, dtype=value.dtype, device="meta")
        param = launch.kernel.params[i]  # its do_not_specialize lists, as the launcher honours
        ty, attr = native_specialize_impl(
            CUDABackend,
            value,
            False,
            not param.do_not_specialize,
            not param.do_not_specialize_on_alignment,
        )
        sig[name] = ty
        if ty == "constexpr":
            consts[name] = attr
        elif isinstance(attr, str):  # None where the kernel opts out of specialisation
            attrs[(i,)] = CUDABackend.parse_attr(attr)
    return sig, consts, attrs


def compile_build(build: Build, arch: str = "sm_90a") -> tuple[Any, str]:
    """Compile for ``arch``; returns Triton's compiled kernel and the ``ptxas -v`` log."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from per_triton.kernels import configs

    sig, consts, attrs = _specialise(build)
    src = ASTSource(build.launch.kernel, sig, consts, attrs)
    log = io.StringIO()
    old = triton.knobs.nvidia.dump_ptxas_log
    triton.knobs.nvidia.dump_ptxas_log = True
    try:
        with contextlib.redirect_stdout(log):
            kernel = triton.compile(
                src,
                target=GPUTarget("cuda", configs.ARCHS[arch], 32),
                options={"num_warps": build.num_warps, "num_stages": build.num_stages},
            )
    finally:
        triton.knobs.nvidia.dump_ptxas_log = old
    return kernel, log.getvalue()


_INSTR = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_LABEL = re.compile(r"^(\.L_x_\d+):")
_BRA = re.compile(r"\bBRA\b.*`\((\.L_x_\d+)\)")


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
    """Instructions of the outermost loop (``instr_per_normal`` in the report's docstring),
    NOPs excluded."""
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


def mma_kind(sass: str | None, has_dot: bool, arch: str = "sm_90a") -> str:
    """The tensor-core instruction kind of ``sass`` (see ``mma`` in the report's docstring)."""
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
        "mma": mma_kind(sass, build.has_dot, arch),
        "loop_instructions": len(loop),
        "loop_mma": sum(1 for ins in loop if _MMA_OPS.search(ins)),
        "normals_per_thread_iter": per_thread,
        "instr_per_normal": round(len(loop) / per_thread, 2) if per_thread and loop else None,
        "sass_path": sass_path,
    }
    return rec
