"""The compile-matrix gate (bench/compile_matrix.py) on hand-made records and the committed one."""

from __future__ import annotations

import json
import pathlib

import pytest

from per_triton.bench import compile_matrix

REPO = pathlib.Path(__file__).resolve().parents[1]


def _rec(triton: str, arch: str, name: str, ipn: float, **kw) -> dict:
    return {
        "triton": triton, "arch": arch, "name": name, "label": f"{name}-x", "role": "fixed",
        "dtype": "fp32", "precision": "tf32", "spill_bytes": 0, "ctas_per_sm": 2,
        "mma": compile_matrix.sass_report.EXPECTED_MMA.get(arch, "mma.sync"),
        "instr_per_normal": ipn, "loop_instructions": 500, "num_warps": 8, "num_stages": 1,
        "registers": 100, "BLOCK_B": 128, "BLOCK_S": 64, "BLOCK_D": 32,
    } | kw  # fmt: skip


def test_known_gaps_bound_at_the_measured_value_per_triton_band() -> None:
    assert compile_matrix.bounds_for("3.9.0", "sm_90a")["bwd"] == 38.0
    assert compile_matrix.bounds_for("3.6.0", "sm_80")["bwd"] == 47.0
    assert compile_matrix.bounds_for("3.9.0", "sm_80")["bwd"] == 38.0  # gap is 3.6-only
    ok = [_rec("3.6.0", "sm_80", "bwd", 46.25, ctas_per_sm=1), _rec("3.9.0", "sm_90a", "fwd", 31.0)]
    assert compile_matrix.violations(ok) == []
    bad = compile_matrix.violations([_rec("3.9.0", "sm_80", "bwd", 46.25)])
    assert len(bad) == 1 and "triton 3.9.0 sm_80" in bad[0] and "> 38.0" in bad[0]


def test_planned_ctas_come_from_the_config_row() -> None:
    """sm_90a plans two forward CTAs per SM, sm_86 one."""
    bad = compile_matrix.violations([_rec("3.9.0", "sm_90a", "fwd", 31.0, ctas_per_sm=1)])
    assert "< 2 planned" in bad[0]
    assert compile_matrix.violations([_rec("3.9.0", "sm_86", "fwd", 31.0, ctas_per_sm=1)]) == []


def test_markdown_and_docs_block(tmp_path: pathlib.Path) -> None:
    table = compile_matrix.markdown([_rec("3.6.0", "sm_120", "fwd", 30.0)])
    assert "| 3.6.0 | sm_120 | fwd | fixed | fp32 | tf32 | 128-64-32 | 8-1 | 100 | 0 | 2 |" in table
    page = tmp_path / "c.md"
    page.write_text(f"head\n{compile_matrix.START}\nold\n{compile_matrix.END}\ntail\n")
    compile_matrix.write_docs(page, table)
    text = page.read_text()
    assert "old" not in text and table in text and text.startswith("head") and "tail" in text
    page.write_text("no markers")
    with pytest.raises(ValueError, match="compile-matrix:start"):
        compile_matrix.write_docs(page, table)


def test_committed_matrix_meets_the_gate_and_matches_the_docs() -> None:
    """The committed matrix (both Tritons, every arch) passes the gate; the docs show it."""
    records = json.loads((REPO / "bench" / "results" / "sass" / "matrix.json").read_text())
    assert {r["triton"] for r in records} >= {"3.6.0"} and len({r["triton"] for r in records}) == 2
    assert {r["arch"] for r in records} == set(compile_matrix.sass_compile.ARCH_LIMITS)
    assert compile_matrix.violations(records) == []
    assert compile_matrix.markdown(records) in (REPO / "docs" / "compatibility.md").read_text()
