"""Page building blocks shared by the pages: messages, filters, chart + table."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import altair as alt
import pandas as pd
import streamlit as st

from per_triton.experiments.methods import METHODS, order_key

from .loaders import Results
from .schema import Problem, Run


def stop_with(message: str) -> NoReturn:
    """End the page with an informative message."""
    st.info(message)
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def show_problems(problems: Iterable[Problem]) -> None:
    """One warning per file that could not be (fully) used, naming the file."""
    for problem in problems:
        st.warning(f"**{problem.file}** (not shown): {problem.message}", icon=":material/warning:")


def frame_or_stop(
    results: Results,
    frame: Callable[[list[Run]], pd.DataFrame],
    empty: str,
    where: Path | None,
) -> pd.DataFrame:
    """Show the results' problems and return ``frame(results.runs)``; stop the page with
    ``empty`` (``{where}`` filled with the results folder) when that frame has no rows."""
    show_problems(results.problems)
    df = frame(results.runs)
    if df.empty:
        stop_with(empty.format(where=where or "bench/results"))
    return df


CPU_GPU = "cpu"  # the ``gpu`` of a result file written without a GPU
GPU_COMMAND = "per-triton bench --suite training"
CPU_SMOKE = (
    "**CPU smoke data, not a cost.** {which} timed on the CPU (`per-triton bench "
    "--device cpu --quick`: tiny models, a few rounds): they show that the suite runs, "
    "not what PER costs in training. **A cost comes from a GPU run:** on a machine "
    "with a CUDA GPU run `{command}`, then `per-triton dashboard --extra <the file it "
    "wrote>` (or upload that file in the sidebar)."
)


def cpu_smoke_notice(gpus: pd.Series) -> None:
    """A warning when the runs shown (their ``gpu`` values) include CPU runs."""
    shown = set(gpus.dropna())
    if CPU_GPU not in shown:
        return
    which = "Every run shown was" if shown == {CPU_GPU} else "The runs marked `cpu` were"
    st.warning(CPU_SMOKE.format(which=which, command=GPU_COMMAND), icon=":material/info:")


def options(values: Iterable[Any]) -> list[Any]:
    """Distinct non-missing values, sorted (methods in the project's order)."""
    distinct = {v for v in values if pd.notna(v)}
    if distinct and all(isinstance(v, str) for v in distinct) and distinct <= set(METHODS):
        return sorted(distinct, key=order_key)
    return sorted(distinct, key=lambda v: (str(type(v)), v))


def select(label: str, values: Iterable[Any], key: str, default: Any = None) -> Any:
    """A selectbox over the distinct values, starting at ``default`` if present."""
    opts = options(values)
    index = opts.index(default) if default in opts else 0
    return st.selectbox(label, opts, index=index, key=key)


def narrow(
    df: pd.DataFrame, column: str, label: str, key: str, default: Any = None
) -> tuple[pd.DataFrame, Any]:
    """A :func:`select` over ``df[column]``; returns the rows with the chosen value, and it."""
    value = select(label, df[column], key, default)
    return df[df[column] == value], value


def narrow_all(
    df: pd.DataFrame,
    column: str,
    label: str,
    key: str,
    noun: str,
    format_func: Callable[[Any], str] = str,
) -> pd.DataFrame:
    """A :func:`multiselect_all` over ``df[column]``; the rows with a chosen value.

    Ends the page with "Pick at least one ``noun``." when nothing is left.
    """
    picked = multiselect_all(label, df[column], key, format_func)
    df = df[df[column].isin(picked)]
    if df.empty:
        stop_with(f"Pick at least one {noun}.")
    return df


def most_common(series: pd.Series) -> Any:
    """The most frequent value (ties: the smallest); None for an empty series."""
    counts = series.dropna().value_counts()
    return None if counts.empty else sorted(counts[counts == counts.max()].index)[0]


def chart_with_table(
    chart: alt.TopLevelMixin,
    table: pd.DataFrame,
    key: str,
    columns: Iterable[str] | None = None,
) -> None:
    """Draw ``chart``; below it, a CSV download of ``table`` and the table itself."""
    st.altair_chart(chart, width="stretch", key=f"chart_{key}")
    table_below(table, key, columns)


def table_below(table: pd.DataFrame, key: str, columns: Iterable[str] | None = None) -> None:
    """A CSV download of ``table`` (every column) and, in a full-width expander, the table.

    ``columns``: the columns shown, in this order (the ones the chart draws first,
    so they are visible without scrolling); the others stay in the download.
    """
    st.download_button(
        "Download table (CSV)",
        table.to_csv(index=False).encode("utf-8"),
        file_name=f"per-triton-{key}.csv",
        mime="text/csv",
        key=f"download_{key}",
        on_click="ignore",
    )
    order = None if columns is None else [c for c in columns if c in table.columns]
    with st.expander("Table behind the chart"):
        st.dataframe(table, hide_index=True, column_order=order, key=f"table_{key}")


def multiselect_all(
    label: str, values: Iterable[Any], key: str, format_func: Callable[[Any], str] = str
) -> list[Any]:
    """A multiselect that starts with every value and adds values that appear later.

    So a file uploaded after the first run shows at once, while values the user
    removed stay removed.
    """
    opts = options(values)
    known_key = f"{key}__known"
    known = st.session_state.get(known_key)
    if known != opts:
        if key in st.session_state and known is not None:
            kept = [v for v in st.session_state[key] if v in opts]
            st.session_state[key] = kept + [v for v in opts if v not in known]
        else:
            st.session_state[key] = opts
        st.session_state[known_key] = opts
    return st.multiselect(label, opts, key=key, format_func=format_func)
