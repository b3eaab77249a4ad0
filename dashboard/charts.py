"""Altair chart builders: a table in, a chart out, no Streamlit calls.

Methods look the same on every chart (:mod:`.method_style`); bars are horizontal,
one row per method inside one group per run, so value labels never collide, axis
titles are never rotated (nor clipped), and a run keeps its bar size however many
runs are shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import altair as alt
import pandas as pd

from per_triton.experiments.methods import label

from . import method_style as style
from .frames import PAPER_SERIES, PROVIDER_ORDER

WIDTH = "container"
BAR_STEP = 19  # px per bar of a grouped bar chart
GROUP_LABEL_LIMIT = 420  # px for a run's name on the y axis
SEP = "\u241f"  # joins a run's name and a method's label into one row key


def _tip(*fields: str) -> list[alt.Tooltip]:
    return [alt.Tooltip(f) for f in fields]


def _hline(y: float) -> alt.Chart:
    """A dashed horizontal reference line at ``y``."""
    return alt.Chart(pd.DataFrame({"ref": [y]})).mark_rule(strokeDash=[4, 4]).encode(y="ref:Q")


def _vline(x: float) -> alt.Chart:
    """A dashed vertical reference line at ``x``."""
    return alt.Chart(pd.DataFrame({"ref": [x]})).mark_rule(strokeDash=[4, 4]).encode(x="ref:Q")


def _groups(df: pd.DataFrame, group: str) -> list[str]:
    """The groups in the order they appear, the paper's series last."""
    seen = list(dict.fromkeys(df[group]))
    return [g for g in seen if g != PAPER_SERIES] + [g for g in seen if g == PAPER_SERIES]


def _rows(data: pd.DataFrame, group: str | None) -> tuple[pd.Series, list[str]]:
    """Each row's key on the y axis, and every key in order.

    ``group=None``: the key is the method's label. Otherwise a group's name is a row
    of its own (a heading, no bar), followed by ``<group><SEP><method label>`` for each
    of its methods in the project's order.
    """
    if group is None:
        return data[style.LABEL], style.labels(data["method"])
    keys = data[group] + SEP + data[style.LABEL]
    order = []
    for name in _groups(data, group):
        methods = style.labels(data.loc[data[group] == name, "method"])
        order += [name, *(f"{name}{SEP}{m}" for m in methods)]
    return keys, order


def _row_axis(grouped: bool) -> alt.Axis:
    """Y axis of :func:`_rows`' keys: a method's label, or its group's name in bold."""
    if not grouped:
        return alt.Axis(labelFontSize=12, labelOverlap=False, ticks=False, domain=False)
    heading = f"indexof(datum.value, '{SEP}') < 0"
    return alt.Axis(
        labelExpr=f"{heading} ? datum.value : split(datum.value, '{SEP}')[1]",
        labelFontWeight={"condition": {"test": heading, "value": "bold"}, "value": "normal"},
        labelColor={"condition": {"test": heading, "value": "#31333f"}, "value": "#555555"},
        labelFontSize=12,
        labelLimit=GROUP_LABEL_LIMIT,
        labelOverlap=False,
        ticks=False,
        domain=False,
    )


def method_bars(
    df: pd.DataFrame,
    value: str,
    title: str,
    tooltip: list[str],
    *,
    fmt: str = ".2f",
    whiskers: tuple[str, str] | None = None,
    group: str | None = "series",
    ref: float | None = None,
) -> alt.LayerChart:
    """Horizontal bars of ``value``, one per method, named on the y axis; with ``group``
    (a run), each group's bars under a heading naming it.

    Each bar is in its method's colour and has its value written right of it (right
    of its whisker when ``whiskers`` names the low and high columns). ``ref`` draws a
    dashed vertical line (1.0 for ratios).
    """
    data = style.with_labels(df)
    keys, order = _rows(data, group)
    data = data.assign(row=keys)
    y = alt.Y("row:N", title=None, scale=alt.Scale(domain=order), axis=_row_axis(group is not None))
    base = alt.Chart(data).encode(y=y, tooltip=_tip(*tooltip))
    bars = base.mark_bar().encode(
        x=alt.X(f"{value}:Q", title=title), color=style.color(data["method"], legend=False)
    )
    layers = [bars]
    end = value
    if whiskers is not None:
        low, end = whiskers
        layers.append(base.mark_rule(color="black").encode(x=f"{low}:Q", x2=f"{end}:Q"))
    layers.append(
        base.mark_text(align="left", baseline="middle", dx=4, fontSize=12).encode(
            x=f"{end}:Q", text=alt.Text(f"{value}:Q", format=fmt)
        )
    )
    if ref is not None:
        layers.append(_vline(ref))
    return sized(alt.layer(*layers), BAR_STEP * max(len(order), 1))


def sized(chart: alt.TopLevelMixin, height: int) -> alt.TopLevelMixin:
    """``chart`` as wide as its container, its plot ``height`` px tall: only the width
    is fitted (Streamlit's default fits legends and axes into the height too, which
    squeezed the plot and clipped the y axis title)."""
    return chart.properties(
        width=WIDTH,
        height=height,
        autosize=alt.AutoSizeParams(type="fit-x", contains="padding"),
    )


def training_bars(df: pd.DataFrame) -> alt.LayerChart:
    """Median milliseconds per iteration per method and run, 20-80 % whiskers.

    The paper's series is left out (its TITAN X seconds would dwarf the measured
    bars): :func:`paper_bars` draws it on its own axis.
    """
    ours = df[df["series"] != PAPER_SERIES].assign(
        ms=lambda t: t["median_s"] * 1000,
        p20_ms=lambda t: t["p20_s"] * 1000,
        p80_ms=lambda t: t["p80_s"] * 1000,
    )
    tips = ["series:N", "model:N", "method:N", "batch:Q", "dtype:N", "median_s:Q", "p20_s:Q",
            "p80_s:Q"]  # fmt: skip
    return method_bars(ours, "ms", "ms per iteration (median)", tips, whiskers=("p20_ms", "p80_ms"))


def paper_bars(df: pd.DataFrame) -> alt.LayerChart:
    """The paper's TITAN X seconds per iteration (Joo, Kang & Kim 2020), on their own axis."""
    paper = df[df["series"] == PAPER_SERIES]
    chart = method_bars(
        paper,
        "median_s",
        ["s per iteration", "(paper)"],  # two lines: one sticks out of a narrow column
        ["series:N", "method:N", "median_s:Q"],
        fmt=".3f",
        group=None,
    )
    return chart  # the page's caption names it: a title would stick out of the column


def ratio_bars(df: pd.DataFrame) -> alt.LayerChart:
    """Time per iteration over vanilla's, per method and run (the paper's too)."""
    tips = ["series:N", "method:N", "ratio:Q", "median_s:Q", "vanilla_s:Q"]
    return method_bars(df, "ratio", "time / vanilla time", tips, ref=1.0)


def log_ticks(values: Iterable[float]) -> list[float]:
    """Ticks of a log axis from the power of ten at or below the least positive finite
    value to the one at or above the largest (at least one decade): 1, 2 and 5 times
    each power (only the powers past 4 decades). Empty when no value is positive."""
    shown = [v for v in values if math.isfinite(v) and v > 0]
    if not shown:
        return []
    low = math.floor(math.log10(min(shown)))
    high = max(math.ceil(math.log10(max(shown))), low + 1)
    steps = (1, 2, 5) if high - low <= 4 else (1,)
    return [float(f"{m}e{k}") for k in range(low, high) for m in steps] + [float(f"1e{high}")]


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

    ``ref`` draws a dashed horizontal line (1.0 for ratios). A log y axis spans whole
    decades with :func:`log_ticks`' labels.
    """
    y_axis, scale = alt.Axis(), alt.Scale(zero=False)
    values = df[[y, "p20_s", "p80_s"] if band else [y]].to_numpy(float).ravel()
    ticks = log_ticks([*values, *([] if ref is None else [ref])]) if log_y else []
    if ticks:
        y_axis = alt.Axis(values=ticks, format="~g", labelOverlap=False)
        scale = alt.Scale(type="log", domain=[ticks[0], ticks[-1]], nice=False)
    elif log_y:  # no positive value to span
        scale = alt.Scale(type="log")
    base = alt.Chart(df).encode(
        x=alt.X(f"{axis}:Q", scale=alt.Scale(type="log", base=2), title=axis),
        color=alt.Color("provider:N", scale=alt.Scale(domain=PROVIDER_ORDER)),
        tooltip=_tip("series:N", "provider:N", "mode:N", "b:Q", "d:Q", "s:Q", "dtype:N", f"{y}:Q"),
    )
    chart = base.mark_line(point=True).encode(
        y=alt.Y(f"{y}:Q", scale=scale, axis=y_axis, title=title)
    )
    if band:
        chart = chart + base.mark_rule().encode(y="p20_s:Q", y2="p80_s:Q")
    if ref is not None:
        chart = chart + _hline(ref)
    return sized(chart, 300)


def compare_bars(df: pd.DataFrame) -> alt.LayerChart:
    """Run B's median over run A's, one bar per matched benchmark, in method colours."""
    data = style.with_labels(df)
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=None, sort=None, axis=alt.Axis(labelLimit=360)),
            x=alt.X("ratio_b_over_a:Q", title="B / A (median time)"),
            color=style.color(data["method"]),
            tooltip=_tip(
                "suite:N", "method:N", "case:N", "median_s_a:Q", "median_s_b:Q", "ratio_b_over_a:Q"
            ),  # fmt: skip
        )
    )
    return sized(bars + _vline(1.0), 22 * len(data))


def compare_labels(df: pd.DataFrame) -> pd.Series:
    """Each compared benchmark's row name: its method's label and its case."""
    return df["method"].map(label) + " | " + df["case"]


def seed_spread(df: pd.DataFrame) -> pd.DataFrame:
    """Per (run, method, step): sliced W1's mean, min and max over seeds, and the seeds."""
    return df.groupby(["run", "method", "step"], as_index=False, sort=False).agg(
        sw1=("sw1", "mean"), sw1_min=("sw1", "min"), sw1_max=("sw1", "max"),
        seeds=("seed", "nunique"),
    )  # fmt: skip


def closeness_lines(df: pd.DataFrame) -> alt.LayerChart:
    """Sliced W1 to N(0, I) over training steps: per method the mean over seeds, with a
    band from the lowest to the highest seed.

    Colour, dash pattern, hollow point shape and line width (the first method's line
    widest, at the bottom) all follow the method, so two methods whose lines coincide
    (``per`` and ``per_exact``) both stay visible. ``per-triton train`` gives every
    record the same ``run``; other runs get lines of their own.
    """
    data = style.with_labels(style.in_order(seed_spread(df)))
    methods = data["method"]
    base = alt.Chart(data).encode(
        x=alt.X("step:Q", title="training step"),
        detail=alt.Detail("run:N"),
        tooltip=_tip("run:N", "method:N", "step:Q", "sw1:Q", "sw1_min:Q", "sw1_max:Q", "seeds:Q"),
    )
    band = base.mark_area(opacity=0.12).encode(
        y="sw1_min:Q", y2="sw1_max:Q", color=style.color(methods)
    )
    y = alt.Y("sw1:Q", title="sliced W1 to N(0, I), mean over seeds")
    lines = base.mark_line().encode(
        y=y,
        color=style.color(methods),
        strokeDash=style.stroke_dash(methods),
        strokeWidth=style.stroke_width(methods),
    )
    points = base.mark_point(size=42, filled=False, strokeWidth=1.4, opacity=1).encode(
        y=y, color=style.color(methods), shape=style.shape(methods)
    )
    return sized(alt.layer(band, lines, points), 340)


def closeness_by_layer(df: pd.DataFrame) -> alt.LayerChart:
    """Last recorded sliced W1 per layer and method (mean over seeds), black values on bars."""
    data = style.with_labels(df)
    base = alt.Chart(data).encode(
        x=alt.X("layer:N", sort=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset(f"{style.LABEL}:N", sort=style.labels(data["method"])),
        tooltip=_tip("layer:N", "method:N", "sw1:Q", "step:Q"),
    )
    bars = base.mark_bar().encode(
        y=alt.Y("sw1:Q", title="sliced W1 at the last step"), color=style.color(data["method"])
    )
    values = base.mark_text(dy=-7, fontSize=11, color="black").encode(
        y="sw1:Q", text=alt.Text("sw1:Q", format=".2f")
    )
    return sized(bars + values, 280)
