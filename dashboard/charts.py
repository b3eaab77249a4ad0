"""Altair chart builders: a table in, a chart out, no Streamlit calls."""

from __future__ import annotations

import altair as alt
import pandas as pd

from per_triton.methods import colour, order_key

from .frames import METHOD_ORDER, PAPER_SERIES, PROVIDER_ORDER

WIDTH = "container"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
PAPER_COLOR = "#9e9e9e"


def _series_scale(df: pd.DataFrame) -> alt.Scale:
    """Our runs in palette colours, the paper's series always grey and last."""
    ours = [s for s in dict.fromkeys(df["series"]) if s != PAPER_SERIES]
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(ours))]
    if (df["series"] == PAPER_SERIES).any():
        return alt.Scale(domain=[*ours, PAPER_SERIES], range=[*colors, PAPER_COLOR])
    return alt.Scale(domain=ours, range=colors)


def method_scale(methods: pd.Series) -> alt.Scale:
    """One fixed, distinct hue per method (:data:`per_triton.methods.COLOURS`)."""
    domain = sorted(dict.fromkeys(methods.dropna()), key=order_key)
    return alt.Scale(domain=domain, range=[colour(m) for m in domain])


def _series_color(df: pd.DataFrame) -> alt.Color:
    """Colour by series, legend below the chart (series names are long)."""
    return alt.Color(
        "series:N",
        scale=_series_scale(df),
        legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=900),
    )


def _tip(*fields: str) -> list[alt.Tooltip]:
    return [alt.Tooltip(f) for f in fields]


def _hline(y: float) -> alt.Chart:
    """A dashed horizontal reference line at ``y``."""
    return alt.Chart(pd.DataFrame({"ref": [y]})).mark_rule(strokeDash=[4, 4]).encode(y="ref:Q")


def training_bars(df: pd.DataFrame) -> alt.LayerChart:
    """Median milliseconds per iteration per method, one bar per series, 20-80 % whiskers.

    The value of each bar is written above its whisker. The paper's series is left
    out (its TITAN X seconds would dwarf the measured bars): :func:`paper_bars`
    draws it on its own axis.
    """
    ours = df[df["series"] != PAPER_SERIES]
    base = (
        alt.Chart(ours)
        .transform_calculate(
            ms="datum.median_s * 1000", p20_ms="datum.p20_s * 1000", p80_ms="datum.p80_s * 1000"
        )
        .encode(
            x=alt.X("method:N", sort=METHOD_ORDER, title="method", axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("series:N"),
            color=_series_color(ours),
            tooltip=_tip(
                "series:N",
                "model:N",
                "method:N",
                "batch:Q",
                "dtype:N",
                "median_s:Q",
                "p20_s:Q",
                "p80_s:Q",
            ),  # fmt: skip
        )
    )
    bars = base.mark_bar().encode(y=alt.Y("ms:Q", title="ms per iteration (median)"))
    whiskers = base.mark_rule(color="black").encode(y="p20_ms:Q", y2="p80_ms:Q")
    values = base.mark_text(dy=-7, fontSize=11).encode(
        y="p80_ms:Q", text=alt.Text("ms:Q", format=".2f")
    )
    return (bars + whiskers + values).properties(width=WIDTH, height=320)


def paper_bars(df: pd.DataFrame) -> alt.LayerChart:
    """The paper's TITAN X seconds per iteration (Joo, Kang & Kim 2020), on their own axis."""
    paper = df[df["series"] == PAPER_SERIES]
    base = alt.Chart(paper).encode(
        x=alt.X("method:N", sort=METHOD_ORDER, title="method", axis=alt.Axis(labelAngle=0)),
        tooltip=_tip("series:N", "method:N", "median_s:Q"),
    )
    bars = base.mark_bar(color=PAPER_COLOR).encode(
        y=alt.Y("median_s:Q", title="s per iteration (paper)")
    )
    values = base.mark_text(dy=-7, fontSize=11).encode(
        y="median_s:Q", text=alt.Text("median_s:Q", format=".3f")
    )
    return (bars + values).properties(width=WIDTH, height=320, title="paper, TITAN X")


def ratio_bars(df: pd.DataFrame) -> alt.LayerChart:
    """Time per iteration over vanilla's, per method and series, with a legend and values."""
    base = alt.Chart(df).encode(
        x=alt.X("method:N", sort=METHOD_ORDER, title="method", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("series:N"),
        color=_series_color(df),
        tooltip=_tip("series:N", "method:N", "ratio:Q", "median_s:Q", "vanilla_s:Q"),
    )
    bars = base.mark_bar().encode(y=alt.Y("ratio:Q", title="time / vanilla time"))
    values = base.mark_text(dy=-7, fontSize=11).encode(
        y="ratio:Q", text=alt.Text("ratio:Q", format=".2f")
    )
    return (bars + values + _hline(1.0)).properties(width=WIDTH, height=300)


def kernel_lines(
    df: pd.DataFrame,
    axis: str,
    y: str,
    title: str,
    *,
    band: bool = True,
    log_y: bool = True,
    ref: float | None = None,
) -> alt.LayerChart:
    """One line per provider against ``axis`` (log x), optional 20-80 % whiskers.

    ``ref`` draws a dashed horizontal line (1.0 for ratios).
    """
    scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    base = alt.Chart(df).encode(
        x=alt.X(f"{axis}:Q", scale=alt.Scale(type="log", base=2), title=axis),
        color=alt.Color("provider:N", scale=alt.Scale(domain=PROVIDER_ORDER)),
        tooltip=_tip(
            "series:N",
            "provider:N",
            "mode:N",
            "b:Q",
            "d:Q",
            "s:Q",
            "dtype:N",
            f"{y}:Q",
        ),  # fmt: skip
    )
    chart = base.mark_line(point=True).encode(y=alt.Y(f"{y}:Q", scale=scale, title=title))
    if band:
        chart = chart + base.mark_rule().encode(y="p20_s:Q", y2="p80_s:Q")
    if ref is not None:
        chart = chart + _hline(ref)
    return chart.properties(width=WIDTH, height=300)


def compare_bars(df: pd.DataFrame) -> alt.LayerChart:
    """Run B's median over run A's, one bar per matched benchmark."""
    bars = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=None, sort=None, axis=alt.Axis(labelLimit=320)),
            x=alt.X("ratio_b_over_a:Q", title="B / A (median time)"),
            color=alt.Color("method:N", title="method / provider"),
            tooltip=_tip(
                "suite:N",
                "method:N",
                "case:N",
                "median_s_a:Q",
                "median_s_b:Q",
                "ratio_b_over_a:Q",
            ),  # fmt: skip
        )
    )
    one = alt.Chart(pd.DataFrame({"x": [1.0]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
    return (bars + one).properties(width=WIDTH, height=alt.Step(22))


def closeness_lines(df: pd.DataFrame) -> alt.Chart:
    """Sliced W1 to N(0, I) over training steps, one line per (run, method, seed).

    ``per-triton train`` gives every record the same ``run``, so lines are split by
    run and seed as well as coloured by method: otherwise one line per method would
    zig-zag through all of its seeds. Each method has its own hue; the seeds of a
    method differ in dash pattern and point shape.
    """
    return (
        alt.Chart(df)
        .mark_line(point=True, strokeWidth=1.6)
        .encode(
            x=alt.X("step:Q", title="training step"),
            y=alt.Y("sw1:Q", title="sliced W1 to N(0, I)"),
            color=alt.Color("method:N", scale=method_scale(df["method"])),
            strokeDash=alt.StrokeDash("seed:N", title="seed"),
            shape=alt.Shape("seed:N", title="seed"),
            detail=[alt.Detail("run:N"), alt.Detail("seed:N")],
            tooltip=_tip(
                "run:N", "method:N", "seed:Q", "layer:N", "step:Q", "sw1:Q", "mean:Q", "var:Q"
            ),  # fmt: skip
        )
        .properties(width=WIDTH, height=300)
    )


def closeness_by_layer(df: pd.DataFrame) -> alt.LayerChart:
    """Last recorded sliced W1 per layer and method (mean over seeds), values on bars."""
    base = alt.Chart(df).encode(
        x=alt.X("layer:N", sort=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("method:N", sort=sorted(set(df["method"]), key=order_key)),
        color=alt.Color("method:N", scale=method_scale(df["method"])),
        tooltip=_tip("layer:N", "method:N", "sw1:Q", "step:Q"),
    )
    bars = base.mark_bar().encode(y=alt.Y("sw1:Q", title="sliced W1 at the last step"))
    values = base.mark_text(dy=-7, fontSize=11).encode(
        y="sw1:Q", text=alt.Text("sw1:Q", format=".2f")
    )
    return (bars + values).properties(width=WIDTH, height=260)
