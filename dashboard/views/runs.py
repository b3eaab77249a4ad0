"""Runs page: every result file found (training, kernel and cpu suites; committed, the
user's own, --extra and uploaded), and two runs compared benchmark by benchmark."""

from __future__ import annotations

import streamlit as st

from per_triton.dashboard import charts, context, frames, widgets

st.title("Runs: the result files")
conf = context.settings()
results = context.results()
widgets.show_problems(results.problems)
if not results.runs:
    widgets.stop_with(
        f"No result files found in `{conf.results_dir or 'bench/results'}` "
        "(and none given with --extra or uploaded)."
    )

st.caption(
    f"Result files in the results folder `{conf.results_dir}` (the project's runs, and "
    "yours in its `local/` folder, where `per-triton bench` writes in a checkout), given "
    "with `--extra`, or uploaded: the column *from* says which."
)
table = frames.runs_frame(results.runs)
# a table that fits at 1400 px, every row shown: the date to the minute; every column
# stays in the CSV, and the (long) commands, with the versions, are listed in full below
versions = [frames.versions(r) for r in results.runs]  # listed with the commands below
shown = table.assign(
    date=[r.datetime[:16].replace("T", " ") for r in results.runs],
)
SHOWN = ["file", "from", "suite", "device", "sampler", "commit", "date", "benchmarks"]
st.dataframe(
    shown, hide_index=True, column_order=SHOWN, width="stretch", height="content", key="runs_table"
)
with st.expander("The command that produced each file, and its versions", expanded=True):
    st.markdown(
        "\n".join(
            f"- `{r.name}`: `{r.command or '(not recorded)'}` ({v})"
            for r, v in zip(results.runs, versions, strict=True)
        )
    )
st.download_button(
    "Download table (CSV)",
    table.to_csv(index=False).encode("utf-8"),
    file_name="per-triton-runs.csv",
    mime="text/csv",
    key="download_runs",
    on_click="ignore",
)

st.subheader("Compare two runs")
# times per iteration or per kernel call: the cpu suite's ratios are for the docs' tables
timed = [run for run in results.runs if run.training or run.kernel]
by_label = {run.label: run for run in timed}
labels = list(by_label)
if len(labels) < 2:
    widgets.stop_with(
        "Fewer than two training or kernel result files: add one (--extra or upload) to "
        "compare two runs."
    )
first, second = frames.comparable_pair(timed)
# one row each: a run's name (gpu | file) is shown whole at 1000 px
a = st.selectbox("Run A", labels, index=first, key="runs_a")
b = st.selectbox("Run B", labels, index=second, key="runs_b")
if a == b:
    widgets.stop_with("Pick two different runs to compare.")
diff = frames.compare_runs(by_label[a], by_label[b])
if diff.empty:
    widgets.stop_with("These two runs have no benchmark with the same parameters.")
diff["label"] = charts.compare_labels(diff)
widgets.chart_with_table(
    charts.compare_bars(diff), diff, "runs_compare",
    ["method", "ratio_b_over_a", "median_s_a", "median_s_b", "case", "suite"],
)  # fmt: skip
st.caption("Below 1: run B is faster. Benchmarks match on every parameter (model, batch, ...).")
