"""The one look of a method on every chart: its colour, dash, marker and label.

Every chart that tells methods apart encodes them through these functions, which
read :mod:`per_triton.experiments.methods` (the single source of names, labels and styles), so
``per`` has the same green, solid line, diamond marker and "PER (fused)" legend
entry on the Training, Runs and Closeness pages. Charts encode the ``method_label``
column :func:`with_labels` adds, so legends show the labels; tooltips and tables
keep the method names, which are the keys of the result files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import altair as alt
import pandas as pd

from per_triton.experiments.methods import colour, dash, label, marker, order_key

LABEL = "method_label"
TITLE = "method"
ONE_ROW = 5  # legend entries in one row above the chart; more take two rows, so the
# legend stays inside a chart 500 px wide (the main column of a 1000 px window)


def with_labels(df: pd.DataFrame, field: str = "method") -> pd.DataFrame:
    """``df`` with a ``method_label`` column: the label of each row's ``field``."""
    return df.assign(**{LABEL: df[field].map(label)})


def ordered(methods: Iterable[str]) -> list[str]:
    """The distinct methods in the project's order (unknown names last, sorted)."""
    return sorted(dict.fromkeys(m for m in methods if pd.notna(m)), key=order_key)


def labels(methods: Iterable[str]) -> list[str]:
    """The labels of the distinct ``methods``, in the project's order."""
    return [label(m) for m in ordered(methods)]


def _scale(methods: Iterable[str], style) -> alt.Scale:
    domain = ordered(methods)
    return alt.Scale(domain=[label(m) for m in domain], range=[style(m) for m in domain])


def _legend(legend: bool, methods: Iterable[str]) -> alt.Legend | None:
    """A legend above the chart, in one row for up to :data:`ONE_ROW` methods, else two."""
    if not legend:
        return None
    n = len(ordered(methods))
    return alt.Legend(
        title=TITLE,
        orient="top",
        columns=n if n <= ONE_ROW else math.ceil(n / 2),
        columnPadding=18,
        labelLimit=300,
        labelFontSize=12,
        symbolStrokeWidth=2,
        symbolSize=120,
        symbolOpacity=1,  # a chart's shaded band would otherwise fade its symbols
    )


def color(methods: Iterable[str], *, legend: bool = True) -> alt.Color:
    """Colour by method label, with the method's own colour."""
    methods = ordered(methods)
    return alt.Color(f"{LABEL}:N", scale=_scale(methods, colour), legend=_legend(legend, methods))


def stroke_dash(methods: Iterable[str], *, legend: bool = True) -> alt.StrokeDash:
    """Dash pattern by method label (shares the colour legend: same field, same title)."""
    methods = ordered(methods)
    return alt.StrokeDash(
        f"{LABEL}:N", scale=_scale(methods, dash), legend=_legend(legend, methods)
    )


def shape(methods: Iterable[str], *, legend: bool = True) -> alt.Shape:
    """Point shape by method label (shares the colour legend)."""
    methods = ordered(methods)
    return alt.Shape(f"{LABEL}:N", scale=_scale(methods, marker), legend=_legend(legend, methods))


WIDEST, THINNEST = 3.4, 1.6  # px: the first method's line and the last one's


def in_order(df: pd.DataFrame) -> pd.DataFrame:
    """``df``'s rows with the methods in the project's order (stable), so Vega draws
    the lines in that order: the first at the bottom."""
    return df.sort_values("method", key=lambda m: m.map(order_key), kind="stable")


def stroke_width(methods: Iterable[str]) -> alt.StrokeWidth:
    """Line width by method, widest for the first drawn (no legend): a line lying on
    another one drawn before it (``per_exact`` on ``per``) leaves that one's edges
    showing, so coinciding lines both stay visible."""
    domain = ordered(methods)
    n = max(len(domain) - 1, 1)
    widths = [WIDEST - (WIDEST - THINNEST) * i / n for i in range(len(domain))]
    return alt.StrokeWidth(
        f"{LABEL}:N", scale=alt.Scale(domain=[label(m) for m in domain], range=widths), legend=None
    )
