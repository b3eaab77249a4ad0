"""Kernels page: fused vs eager vs eager_tf32 vs compile across d, s and b."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from per_triton.dashboard import charts, context, frames, loaders, widgets

AXES = {"d": "dimension d", "s": "slices s", "b": "batch b"}
NO_KERNEL_RESULTS = (
    "No kernel results in `{where}` yet. **The kernel benchmark needs a CUDA GPU**: "
    "it times the fused Triton kernels against eager torch and `torch.compile` on the "
    "device. On a machine with a GPU run\n\n"
    "```\nper-triton bench --suite kernel\n```\n\n"
    "(or `bash bench/gpu.sh` for every GPU stage), then `per-triton dashboard --extra "
    "<the file it wrote>`, or upload that file in the sidebar. Without a GPU, "
    "`per-triton bench --suite kernel --quick --device cpu` only checks that the suite "
    "runs: its timings come from the Triton interpreter and are not costs."
)

STATIC_LABEL = "Static counts from the compiler, not timings"
STATIC_HEADERS = {
    "name": "kernel", "num_warps": "warps", "num_stages": "stages", "registers": "regs",
    "spill_bytes": "spill bytes", "ctas_per_sm": "CTAs/SM", "mma": "MMA",
    "instr_per_normal": "instr/normal",
}  # fmt: skip


def static_report(records: list[dict]) -> None:
    """The compile matrix per architecture: one row per (arch, kernel config)."""
    st.subheader("Static report per GPU architecture")
    st.info(
        f"**{STATIC_LABEL}.** Registers, spills, resident CTAs per SM, the MMA "
        "instruction in the SASS and SASS instructions per generated normal of every "
        "kernel config, compiled for each architecture without a GPU "
        "(`bash scripts/compile_matrix.sh`; docs/compatibility.md).",
        icon=":material/memory:",
    )
    static = pd.DataFrame(records)
    version = widgets.select("Triton", static["triton"], "kernels_static_triton")
    shown = static[static["triton"] == version].drop(columns="triton")
    st.dataframe(shown.rename(columns=STATIC_HEADERS), hide_index=True, key="kernels_static")


st.title("Kernels: fused PER against the torch reference")
results = context.results()
if frames.kernel_frame(results.runs).empty:
    # no timings (no GPU run yet): the static report is what there is to show
    matrix, problem = loaders.load_sass_matrix(context.settings().results_dir)
    if problem is not None:
        widgets.show_problems([problem])
    if matrix:
        static_report(matrix)
df = widgets.frame_or_stop(
    results, frames.kernel_frame, NO_KERNEL_RESULTS, context.settings().results_dir
)

notice = st.container()
cols = st.columns([2, 1, 1])  # GPU names are long
run_row = st.container()  # a row of its own: a run's name is shown whole at 1000 px
with cols[0]:
    df, gpu = widgets.narrow(df, "gpu", "GPU", "kernels_gpu")
if gpu == "cpu":
    notice.warning(
        "CPU results: a smoke run of the suite (Triton interpreter), not a cost "
        "measurement. Kernel costs come from a GPU run: `per-triton bench --suite kernel`.",
        icon=":material/info:",
    )
with run_row:
    df, _ = widgets.narrow(df, "series", "Run", "kernels_run")
with cols[1]:
    df, mode = widgets.narrow(df, "mode", "Pass", "kernels_mode", default="full")
with cols[2]:
    df, dtype = widgets.narrow(df, "dtype", "dtype", "kernels_dtype", default="float32")

axis = st.radio("Sweep", list(AXES), format_func=AXES.get, horizontal=True, key="kernels_axis")
fixed = [a for a in AXES if a != axis]
cols = st.columns(len(fixed))
for col, name in zip(cols, fixed, strict=True):
    with col:
        df, _ = widgets.narrow(
            df, name, f"{name} (fixed)", f"kernels_fixed_{name}", widgets.most_common(df[name])
        )
df = frames.with_speedup(df.sort_values(axis).reset_index(drop=True))
if df.empty:
    widgets.stop_with("No kernel results for this selection.")

st.subheader("Time (median, whiskers: 20th-80th percentile)")
SHOWN = ["provider", "median_s", "p20_s", "p80_s", "speedup", "b", "d", "s", "mode", "dtype"]
widgets.chart_with_table(
    charts.kernel_lines(df, axis, "median_s", "seconds"), df, "kernels_time", SHOWN
)

st.subheader("Speed-up of fused (other provider's time / fused time)")
speed = df[(df["provider"] != "fused") & df["speedup"].notna()]
if speed.empty:
    st.info("No fused result at these points to compare with.")
else:
    widgets.chart_with_table(
        charts.kernel_lines(speed, axis, "speedup", "x fused", band=False, ref=1.0),
        speed, "kernels_speedup", SHOWN,
    )  # fmt: skip

st.subheader("Peak extra memory")
mem = df.dropna(subset=["peak_mem_bytes"]).assign(
    peak_mem_mib=lambda t: t["peak_mem_bytes"] / 2**20
)
if mem.empty:
    st.info("These results record no peak memory (CPU runs do not).")
else:
    widgets.chart_with_table(
        charts.kernel_lines(mem, axis, "peak_mem_mib", "MiB", band=False, log_y=False),
        mem, "kernels_memory", ["provider", "peak_mem_mib", *SHOWN[1:]],
    )  # fmt: skip

st.subheader("Fused time over the measured floor")
floor = df[(df["provider"] == "fused") & df["floor_s"].notna()]
floor = floor.assign(over_floor=floor["median_s"] / floor["floor_s"])
if floor.empty:
    st.info("No floor recorded for these results.")
else:
    widgets.chart_with_table(
        charts.kernel_lines(floor, axis, "over_floor", "fused / floor", band=False, ref=1.0),
        floor, "kernels_floor", ["provider", "over_floor", "floor_s", *SHOWN[1:]],
    )  # fmt: skip
st.caption(
    "Floor: drawing `2*d*s` normals with a draw-only kernel plus `4*b*d*s` FLOPs at the "
    'tensor-core rate measured in the same run (docs/design.md, "Measuring performance").'
)
