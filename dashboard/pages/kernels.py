"""Kernels page: fused vs eager vs eager_tf32 vs compile across d, s and b."""

from __future__ import annotations

import streamlit as st

from per_triton.dashboard import charts, context, frames, widgets

AXES = {"d": "dimension d", "s": "slices s", "b": "batch b"}

st.title("Kernels: fused PER against the torch reference")
results = context.results()
widgets.show_problems(results.problems)
df = frames.kernel_frame(results.runs)
if df.empty:
    where = context.settings().results_dir
    widgets.stop_with(
        f"No kernel results in `{where or 'bench/results'}` yet. The kernel suite of "
        "`per-triton bench` writes them; you can also upload one in the sidebar."
    )

cols = st.columns(4)
with cols[0]:
    gpu = widgets.select("GPU", df["gpu"], "kernels_gpu")
df = df[df["gpu"] == gpu]
with cols[1]:
    series = widgets.select("Run", df["series"], "kernels_run")
df = df[df["series"] == series]
with cols[2]:
    mode = widgets.select("Pass", df["mode"], "kernels_mode", default="full")
df = df[df["mode"] == mode]
with cols[3]:
    dtype = widgets.select("dtype", df["dtype"], "kernels_dtype", default="float32")
df = df[df["dtype"] == dtype]

axis = st.radio("Sweep", list(AXES), format_func=AXES.get, horizontal=True, key="kernels_axis")
fixed = [a for a in AXES if a != axis]
cols = st.columns(len(fixed))
for col, name in zip(cols, fixed, strict=True):
    with col:
        value = widgets.select(
            f"{name} (fixed)", df[name], f"kernels_fixed_{name}", widgets.most_common(df[name])
        )
    df = df[df[name] == value]
df = frames.with_speedup(df.sort_values(axis).reset_index(drop=True))
if df.empty:
    widgets.stop_with("No kernel results for this selection.")

st.subheader("Time (median, whiskers: 20th-80th percentile)")
widgets.chart_with_table(charts.kernel_lines(df, axis, "median_s", "seconds"), df, "kernels_time")

st.subheader("Speed-up of fused (other provider's time / fused time)")
speed = df[(df["provider"] != "fused") & df["speedup"].notna()]
if speed.empty:
    st.info("No fused result at these points to compare with.")
else:
    widgets.chart_with_table(
        charts.kernel_lines(speed, axis, "speedup", "x fused", band=False, ref=1.0),
        speed, "kernels_speedup",
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
        mem, "kernels_memory",
    )  # fmt: skip

st.subheader("Fused time over the measured floor")
floor = df[(df["provider"] == "fused") & df["floor_s"].notna()]
floor = floor.assign(over_floor=floor["median_s"] / floor["floor_s"])
if floor.empty:
    st.info("No floor recorded for these results.")
else:
    widgets.chart_with_table(
        charts.kernel_lines(floor, axis, "over_floor", "fused / floor", band=False, ref=1.0),
        floor, "kernels_floor",
    )  # fmt: skip
st.caption(
    "Floor: drawing 2*d*s normals with a draw-only kernel plus 4*b*d*s FLOPs at the "
    "tensor-core rate measured in the same run (DESIGN.md section 5)."
)
