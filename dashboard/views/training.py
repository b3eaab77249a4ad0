"""Training page: time per iteration per method, beside the paper's TITAN X figures."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from per_triton.dashboard import charts, context, frames, widgets

st.title("Training: time per iteration")
header = st.container()  # filled once the filters have chosen the runs shown
NO_TRAINING_RESULTS = (
    "No training results yet. `per-triton bench` writes pytest-benchmark JSON "
    "into `{where}`; you can also upload one in the sidebar."
)
df = widgets.frame_or_stop(
    context.results(), frames.training_frame, NO_TRAINING_RESULTS, context.settings().results_dir
)

cols = st.columns(4)
with cols[0]:
    df = widgets.narrow_all(df, "gpu", "GPU", "training_gpu", "GPU")
with cols[1]:
    df, model = widgets.narrow(df, "model", "Model", "training_model")
with cols[2]:
    df, dtype = widgets.narrow(df, "dtype", "dtype", "training_dtype", default="float32")
with cols[3]:
    df, batch = widgets.narrow(
        df, "batch", "Batch", "training_batch", default=widgets.most_common(df["batch"])
    )

with header:
    widgets.cpu_smoke_notice(df["gpu"])

show_paper = st.checkbox(
    "Show the paper's TITAN X figures (their model and GPU: compare ratios, not seconds)",
    value=True,
    key="training_paper",
)
table = pd.concat([df, frames.paper_frame(model, batch, dtype)]) if show_paper else df
table = frames.with_ratio_to_vanilla(table.reset_index(drop=True))
TIME_COLUMNS = ["method", "median_s", "p20_s", "p80_s", "series", "batch", "dtype", "model"]

st.subheader("Time per iteration (median; whiskers: 20th-80th percentile)")
if show_paper:
    ours_col, paper_col = st.columns([3, 1], vertical_alignment="bottom")
    with ours_col:
        st.altair_chart(charts.training_bars(table), width="stretch", key="chart_training_time")
    with paper_col:
        st.altair_chart(charts.paper_bars(table), width="stretch", key="chart_training_paper")
    st.caption(
        "Right: the paper's seconds per iteration on one TITAN X (Joo, Kang & Kim, ICLR "
        "2020; their model and GPU), on their own axis; left: the runs measured here, in ms."
    )
else:
    st.altair_chart(charts.training_bars(table), width="stretch", key="chart_training_time")
widgets.table_below(table, "training_time", TIME_COLUMNS)

st.subheader("Ratio to vanilla")
ratios = table.dropna(subset=["ratio"])
widgets.chart_with_table(
    charts.ratio_bars(ratios), ratios, "training_ratio",
    ["method", "ratio", "median_s", "vanilla_s", "series", "batch", "dtype", "model"],
)  # fmt: skip
st.caption(
    "Paper: Joo, Kang & Kim (ICLR 2020), one TITAN X: 0.071 s vanilla, 0.083 s BN, "
    "0.087 s VCL, 0.093 s PER per iteration."
)
