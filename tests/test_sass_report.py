"""The static sm_90a report (bench/sass_report.py) as a CI gate, without a GPU.

``test_fixed_configs_meet_the_bounds`` compiles, in a subprocess without
``TRITON_INTERPRET`` (under the interpreter ``@triton.jit`` yields nothing to
compile), the configs that run when autotuning is off (``PER_TRITON_AUTOTUNE=0``)
for sm_90a with the paper shape's specialisation: the forward and backward in
float32 TF32, float32 IEEE, bfloat16 and float16, and the draw-only floor. It
fails on any register spill, on a TF32/bf16/fp16 dot that is not wgmma, or on
more SASS instructions per normal in the hot loop than ``BOUNDS`` (forward 38,
backward 38, floor 30; fp32 TF32). The whole report (every autotune config) is
``python bench/sass_report.py``. The other tests check the report's own parts
(hot-loop finder, occupancy, bound checker) on hand-made inputs, and that its builds
are the kernels' own launches.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from per_triton.bench import sass_builds, sass_compile, sass_report

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_fixed_configs_meet_the_bounds(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sass_report.py"), "--only", "fixed",
         "--json", str(out), "--check"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    records = json.loads(out.read_text())
    got = {(r["name"], r["dtype"], r["precision"]) for r in records}
    want = {("fwd", dt, p) for dt, p in sass_builds.FIXED_VARIANTS}
    want |= {("bwd", dt, p) for dt, p in sass_builds.FIXED_VARIANTS}
    want |= {("draw_sum", "fp32", "-")}
    assert got == want, f"builds: {sorted(got)}"
    assert sass_report.check(records) == []
    for r in records:
        assert r["loop_instructions"] > 0, r["label"]
        if r["name"] in ("fwd", "bwd") and r["precision"] == "tf32":
            # the loop found is the one with the tile's dots; two CTAs fit per SM
            assert r["loop_mma"] > 0, f"{r['label']}: no MMA in the hot loop"
            assert r["ctas_per_sm"] >= 2, r["label"]


SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_1:
        /*0010*/                   IMAD.HI.U32 R2, R3, -0x2daee0ad, RZ ;
.L_x_2:
        /*0020*/                   LOP3.LUT R4, R2, R5, R6, 0x96, !PT ;
        /*0030*/                   NOP ;
        /*0040*/               @P0 BRA `(.L_x_2) ;
        /*0050*/                   HGMMA.64x16x8.F32.TF32 R24, gdesc[UR20], R24 ;
        /*0060*/              @!P1 BRA `(.L_x_1) ;
        /*0070*/                   EXIT ;
.L_x_3:
        /*0080*/                   BRA `(.L_x_3);
"""


def test_hot_loop_is_the_outermost_back_edge() -> None:
    """Nested loop inside, NOP excluded, the branch-to-itself after EXIT ignored."""
    loop = sass_compile.hot_loop(sass_compile.parse_sass(SASS))
    assert loop[0].startswith("IMAD.HI.U32") and loop[-1].endswith("BRA `(.L_x_1)")
    assert len(loop) == 5  # IMAD.HI, LOP3, BRA, HGMMA, BRA (the NOP is left out)
    assert sass_compile.hot_loop(sass_compile.parse_sass("/*0000*/ EXIT ;")) == []


def test_ctas_per_sm() -> None:
    """sm_90: registers per warp in units of 256, 228 KiB shared with 1 KiB per CTA."""
    limits = sass_compile.ctas_per_sm(regs=128, shared=65536, num_warps=8)
    assert limits["regs"] == 2 and limits["smem"] == 3 and limits["warps"] == 8
    assert min(sass_compile.ctas_per_sm(129, 0, 8).values()) == 1  # 136 regs/thread
    assert sass_compile.ctas_per_sm(64, 114 * 1024, 4)["smem"] == 1


def test_check_flags_each_violation() -> None:
    base = {
        "label": "x", "name": "fwd", "role": "fixed", "dtype": "fp32", "precision": "tf32",
        "spill_bytes": 0, "mma": "wgmma", "instr_per_normal": 30.0,
    }  # fmt: skip
    assert sass_report.check([base]) == []
    assert "spill" in sass_report.check([base | {"spill_bytes": 8}])[0]
    assert "mma.sync" in sass_report.check([base | {"mma": "mma.sync"}])[0]
    assert "per normal" in sass_report.check([base | {"instr_per_normal": 38.5}])[0]
    # IEEE dots run on FMA by design; autotune configs are reported, not bounded
    assert sass_report.check([base | {"precision": "ieee", "mma": "FMA"}]) == []
    assert sass_report.check([base | {"role": "autotune", "instr_per_normal": 99.0}]) == []


def test_ctas_per_sm_per_arch() -> None:
    """Per-architecture limits: shared memory, resident warps and CTAs per SM differ."""
    # 64 KiB + 1 KiB reserved per CTA: 164 KiB on sm_80 holds 2, 100 KiB on sm_86 one
    assert sass_compile.ctas_per_sm(64, 65536, 4, "sm_80")["smem"] == 2
    assert sass_compile.ctas_per_sm(64, 65536, 4, "sm_86")["smem"] == 1
    assert sass_compile.ctas_per_sm(64, 65536, 4, "sm_120")["smem"] == 1
    assert sass_compile.ctas_per_sm(64, 65536, 4, "sm_100a")["smem"] == 3
    # 8-warp CTAs: 48 resident warps (sm_86/89/120) hold 6, 64 (sm_80/90/100) hold 8
    assert sass_compile.ctas_per_sm(32, 0, 8, "sm_89")["warps"] == 6
    assert sass_compile.ctas_per_sm(32, 0, 8, "sm_80")["warps"] == 8
    # 1-warp CTAs hit the resident-CTA limit: 16 on sm_86, 24 on sm_89, 32 on sm_120
    ctas = [sass_compile.ctas_per_sm(16, 0, 1, a)["ctas"] for a in ("sm_86", "sm_89", "sm_120")]
    assert ctas == [16, 24, 32]
    # 134 registers -> 4352 per warp: 15 warps of 8-warp CTAs fit, so one CTA
    assert sass_compile.ctas_per_sm(134, 24576, 8, "sm_120")["regs"] == 1


def test_parse_archs() -> None:
    errors: list[str] = []
    assert sass_report.parse_archs(["sm_80", "sm_90a", "sm_80"], errors.append) == [
        "sm_80",
        "sm_90a",
    ]
    assert sass_report.parse_archs(["all"], errors.append) == list(sass_compile.ARCH_LIMITS)
    assert errors == []
    sass_report.parse_archs(["sm_75"], errors.append)
    assert "sm_75" in errors[0]
    with pytest.raises(SystemExit):
        sass_report.main(["--arch", "sm_99"])


def test_mma_kind_per_arch() -> None:
    """tcgen05 (UTC*MMA) before wgmma before mma.sync; unreadable SASS is reported, not raised."""
    assert sass_compile.mma_kind("UTCHMMA gdesc ;", True, "sm_100a") == "tcgen05"
    assert sass_compile.mma_kind("HGMMA.64x16x8 ;", True) == "wgmma"
    assert sass_compile.mma_kind("HMMA.1688.F32.TF32 ;", True, "sm_80") == "mma.sync"
    assert sass_compile.mma_kind("FFMA ;", True) == "FMA"
    assert sass_compile.mma_kind(None, True, "sm_120") == "n/a: nvdisasm lacks sm_120"
    rec = {
        "arch": "sm_100a", "label": "x", "name": "fwd", "role": "fixed", "dtype": "fp32",
        "precision": "tf32", "spill_bytes": 0, "mma": "mma.sync", "instr_per_normal": 30.0,
        "ctas_per_sm": 1,
    }  # fmt: skip
    bad = sass_report.check([rec], planned_ctas={"sm_100a": 2})
    assert any("not tcgen05" in b for b in bad) and any("< 2 planned" in b for b in bad)
    assert sass_report.check([rec | {"arch": "sm_86"}], planned_ctas={"sm_86": 1}) == []


def test_check_flags_a_dot_kernel_without_a_hot_loop() -> None:
    """A forward/backward whose SASS has no loop (compiled to nothing) is a violation."""
    rec = {
        "arch": "sm_100a", "label": "x", "name": "bwd", "role": "autotune", "dtype": "fp32",
        "precision": "tf32", "spill_bytes": 0, "mma": "tcgen05", "instr_per_normal": None,
        "loop_instructions": 0, "ctas_per_sm": 6,
    }  # fmt: skip
    assert "no hot loop" in sass_report.check([rec])[0]
    assert sass_report.check([rec | {"loop_instructions": 700, "instr_per_normal": 30.0}]) == []
