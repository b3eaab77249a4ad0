"""Compile matrix: the static report for every architecture on several Tritons, as a CI gate.

Runs ``bench/sass_report.py --only matrix --arch all`` once per Triton (the installed
one, and each ``--triton-path`` folder put first on ``PYTHONPATH`` so that its Triton
shadows the installed one), in parallel processes, then checks every record
(:func:`sass_report.check`): no spill, the architecture's MMA kind, the forward CTAs
per SM its config row plans, and at most :data:`sass_report.BOUNDS` instructions per
normal for the fixed float32 TF32 builds, except the measured gaps in
:data:`KNOWN_GAPS` (bounded there at their measured value, so they cannot grow).

Writes the records as JSON and the markdown table (``--markdown`` to a file, ``--docs``
into the marked block of docs/compatibility.md, its one committed copy); exits 1 on a
violation.
Run by scripts/compile_matrix.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
if not __package__:  # run as a script (python bench/compile_matrix.py): find per_triton
    sys.path.insert(0, str(REPO))

from per_triton.bench import sass_compile, sass_report  # noqa: E402

#: ``(Triton band, arch, kernel) -> instructions-per-normal bound`` where the fixed
#: float32 TF32 build exceeds :data:`sass_report.BOUNDS` (bands: ``configs.BANDS``).
#: The bound is the measured count rounded up, so a regression still fails.
KNOWN_GAPS = {
    (">=3.8", "sm_100a", "fwd"): 105.0,
    (">=3.8", "sm_100a", "bwd"): 43.0,
    ("<3.8", "sm_80", "bwd"): 47.0,
    ("<3.8", "sm_86", "bwd"): 47.0,
    ("<3.8", "sm_89", "bwd"): 47.0,
    ("<3.8", "sm_100a", "fwd"): 123.0,
    ("<3.8", "sm_100a", "bwd"): 45.5,
    ("<3.8", "sm_120", "bwd"): 39.5,
}
START, END = "<!-- compile-matrix:start -->", "<!-- compile-matrix:end -->"


def bounds_for(version: str, arch: str) -> dict[str, float]:
    """The instruction bounds of ``arch`` on Triton ``version`` (known gaps applied)."""
    from per_triton.kernels import configs

    b = configs.band(version)
    return {k: KNOWN_GAPS.get((b, arch, k), v) for k, v in sass_report.BOUNDS.items()}


def violations(records: list[dict[str, Any]]) -> list[str]:
    """Every bound violated, per (Triton, arch) group."""
    from per_triton.kernels import configs

    bad = []
    groups = sorted({(r["triton"], r["arch"]) for r in records})
    for version, arch in groups:
        group = [r for r in records if (r["triton"], r["arch"]) == (version, arch)]
        planned = {arch: configs.row_for(configs.ARCHS[arch], version).ctas_per_sm}
        bad += [
            f"triton {version} {line}"
            for line in sass_report.check(group, bounds_for(version, arch), planned)
        ]
    return bad


def markdown(records: list[dict[str, Any]]) -> str:
    """One row per (Triton, arch, build): regs, spills, CTAs/SM, MMA, instructions/normal."""
    head = (
        "| Triton | arch | kernel | role | dtype | precision | tiles (b-s-d) | warps-stages "
        "| regs | spill B | CTAs/SM | MMA | instr/normal |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in records:
        tiles = "-".join(str(r.get(k, "")) for k in ("BLOCK_B", "BLOCK_S", "BLOCK_D"))
        ipn = "-" if r["instr_per_normal"] is None else f"{r['instr_per_normal']:.2f}"
        lines.append(
            f"| {r['triton']} | {r['arch']} | {r['name']} | {r['role']} | {r['dtype']} "
            f"| {r['precision']} | {tiles} | {r['num_warps']}-{r['num_stages']} "
            f"| {r['registers']} | {r['spill_bytes']} | {r['ctas_per_sm']} | {r['mma']} "
            f"| {ipn} |"
        )
    return "\n".join(lines) + "\n"


def run_reports(triton_paths: list[str], archs: list[str]) -> list[dict[str, Any]]:
    """The report's records on the installed Triton and each shadowing folder, in parallel."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate([None, *triton_paths]):
            out = pathlib.Path(tmp) / f"{i}.json"
            shadow = [path] if path else []
            penv = env | {"PYTHONPATH": os.pathsep.join([*shadow, str(REPO)])}
            cmd = [sys.executable, str(REPO / "bench" / "sass_report.py"), "--only", "matrix",
                   "--json", str(out), "--arch", *archs]  # fmt: skip
            pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
            proc = subprocess.Popen(cmd, env=penv, cwd=REPO, text=True, **pipe)
            procs.append((proc, out))
        records = []
        for proc, out in procs:
            log, _ = proc.communicate()
            if proc.returncode != 0 or not out.exists():
                raise RuntimeError(f"sass_report failed ({proc.args}):\n{log[-4000:]}")
            records += json.loads(out.read_text())
    return sorted(
        records, key=lambda r: (r["triton"], list(sass_compile.ARCH_LIMITS).index(r["arch"]))
    )


def write_docs(path: pathlib.Path, table: str) -> None:
    """Replace the marked block of ``path`` with ``table``."""
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path}: no {START} ... {END} block")
    head, rest = text.split(START, 1)
    path.write_text(head + START + "\n" + table + END + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--triton-path", action="append", default=[],
        help="a folder holding another Triton (pip --target); repeatable",
    )  # fmt: skip
    parser.add_argument("--arch", nargs="+", default=["all"], help="architectures (or all)")
    parser.add_argument("--json", type=pathlib.Path, required=True, help="matrix records")
    parser.add_argument("--markdown", type=pathlib.Path, help="write the markdown table here")
    parser.add_argument("--docs", type=pathlib.Path, help="also write the table into this page")
    args = parser.parse_args(argv)
    archs = sass_report.parse_archs(args.arch, parser.error)
    records = run_reports(args.triton_path, archs)
    table = markdown(records)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(records, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    if args.docs:
        write_docs(args.docs, table)
    print(table)
    bad = violations(records)
    for line in bad:
        print(f"BOUND VIOLATED: {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
