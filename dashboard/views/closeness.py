"""Closeness page: sliced W1 to N(0, I) per layer over training, where recorded."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from per_triton.dashboard import charts, context, frames, widgets
from per_triton.experiments import methods

st.title("Closeness to N(0, I)")
conf = context.settings()
data = context.closeness()
widgets.show_problems(data.problems)
df = frames.closeness_frame(data.records)
if df.empty:
    folder = f"{conf.results_dir}/closeness" if conf.results_dir else "bench/results/closeness"
    widgets.stop_with(
        f"No closeness records in `{folder}`. `per-triton train` with the layer monitor "
        "writes them there as JSON lines (one record per step and layer)."
    )
st.caption("Files: " + ", ".join(f"`{name}`" for name in data.files))

cols = st.columns(2)
with cols[0]:
    df, model = widgets.narrow(df, "model", "Model", "closeness_model")
with cols[1]:
    layers = list(dict.fromkeys(df["layer"]))  # in recorded order
    default = frames.most_distinct_layer(df)
    layer = st.selectbox(
        "Layer",
        layers,
        index=layers.index(default) if default in layers else 0,
        key="closeness_layer",
        help="Starts at the layer where the methods differ most at the last step.",
    )
# a row of its own: every method's chip shows its whole label at 1400 px
df = widgets.narrow_all(df, "method", "Methods", "closeness_methods", "method", methods.label)

st.subheader(f"Sliced W1 over training, layer `{layer}`")
steps = df[df["layer"] == layer].sort_values(["run", "step"])
widgets.chart_with_table(
    charts.closeness_lines(steps), steps, "closeness_steps",
    ["method", "seed", "step", "sw1", "mean", "var", "q25", "q50", "q75", "run", "layer"],
)  # fmt: skip
st.caption(
    "Each method has its own colour, dash pattern and point shape. Line: mean over "
    "seeds; shaded band: lowest to highest seed (every seed is in the table)."
)

st.subheader("Sliced W1 per layer at the last recorded step")
last = df[df["step"] == df.groupby(["run", "method", "seed"])["step"].transform("max")]
per_layer = last.groupby(["method", "layer"], sort=False, as_index=False).agg(
    sw1=("sw1", "mean"), step=("step", "max")
)
widgets.chart_with_table(
    charts.closeness_by_layer(per_layer), per_layer, "closeness_layers",
    ["method", "layer", "sw1", "step"],
)  # fmt: skip

if data.summary:
    st.subheader("Training summary")
    summary = pd.DataFrame(data.summary)
    summary = summary[summary["method"].isin(df["method"])]
    by_method = frames.summary_by_method(summary)
    st.dataframe(
        by_method,
        hide_index=True,
        width="content",
        height="content",
        key="closeness_summary",
    )
    with st.expander("Every seed"):
        st.dataframe(
            summary,
            hide_index=True,
            width="content",
            height="content",
            key="closeness_summary_seeds",
        )
