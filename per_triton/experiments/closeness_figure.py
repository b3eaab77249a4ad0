"""Figures of a ``per-triton train`` run (matplotlib, imported on use).

``draw_figure(out, figure)`` reads ``<out>/<method>.jsonl`` and ``<out>/summary.json``
and writes two PNGs: SW1 per layer over training with the test accuracy, and the
monitored units' quartiles per layer (the paper's Figure 5, over time). Order,
labels, colours and dash patterns come from :mod:`per_triton.experiments.methods`,
so a method looks the same here as on the dashboard.
"""

from __future__ import annotations

import json
import os

from per_triton.experiments.methods import COLOURS, DASHES, TRAIN_METHODS, label

WIDEST, THINNEST = 2.6, 1.2  # line widths (pt) of the first and the last method drawn
LEGEND_WIDTH = 1.5  # every legend sample's line width (pt): one size for all methods
LEGEND_LENGTH = 3.0  # every legend sample's length (font sizes)


def _by_step(records: list[dict], layer: str, key: str) -> tuple[list[int], list[list[float]]]:
    """Steps and, per step, the values of ``key`` over seeds for one layer."""
    by_step: dict[int, list[float]] = {}
    for r in records:
        if r["layer"] == layer and r[key] is not None:
            by_step.setdefault(r["step"], []).append(r[key])
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def _line_style(methods: list[str]) -> dict[str, dict]:
    """Per method: matplotlib ``color``, ``ls`` (its :data:`DASHES` pattern; solid when
    empty) and ``lw``, widest for the first method, so a line drawn on top of an
    earlier one (``per_exact`` on ``per``) leaves that one's edges showing."""
    n = max(len(methods) - 1, 1)
    return {
        m: {
            "color": COLOURS[m],
            "ls": (0, tuple(DASHES[m])) if DASHES[m] else "-",
            "lw": WIDEST - (WIDEST - THINNEST) * i / n,
        }
        for i, m in enumerate(methods)
    }


def draw_figure(out: str, figure: str) -> None:
    """Two PNGs from ``<out>/<method>.jsonl`` and ``<out>/summary.json`` (needs matplotlib).

    ``figure``: SW1 per layer over training (mean over seeds, min-max band) and test
    accuracy (mean, sample sd, each seed). ``<figure stem>_quantiles.png``: the
    monitored units' median and 25-75% band per layer and method (mean over seeds),
    against N(0, 1)'s quartiles (the paper's Figure 5, over time).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from per_triton.api.monitor import read_records

    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    methods = [m for m in TRAIN_METHODS if any(e["method"] == m for e in summary)]
    records = {m: read_records(os.path.join(out, f"{m}.jsonl")) for m in methods}
    layers = sorted({r["layer"] for recs in records.values() for r in recs})
    fig, axes = plt.subplots(1, len(layers) + 1, figsize=(4 * (len(layers) + 1), 3.4))
    _sw1_panels(axes[:-1], layers, methods, records)
    _accuracy_panel(axes[-1], methods, summary)
    _save(fig, figure)

    _draw_quantiles(records, methods, layers, figure)


def _sw1_panels(axes, layers: list[str], methods: list[str], records: dict) -> None:
    """One panel per layer: each method's SW1 over steps (mean over seeds, min-max band)."""
    import numpy as np

    styles = _line_style(methods)
    for ax, layer in zip(axes, layers, strict=False):
        for m in methods:
            steps, vals = _by_step(records[m], layer, "sw1")
            ax.plot(steps, [np.mean(v) for v in vals], label=label(m), **styles[m])
            lo, hi = [min(v) for v in vals], [max(v) for v in vals]
            ax.fill_between(steps, lo, hi, color=COLOURS[m], alpha=0.15, lw=0)
        ax.set_title(f"{layer}: SW1 to N(0, I)")
        ax.set_xlabel("training step")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    _method_legend(axes[0], methods, styles)


def _method_legend(ax, methods: list[str], styles: dict[str, dict]) -> None:
    """The methods' legend, every sample drawn alike: one line width and length (the
    plotted widths differ, and matplotlib scales dashes with the width), each method's
    colour and dash pattern, placed by :func:`_centred_dashes`."""
    from matplotlib import rcParams
    from matplotlib.font_manager import FontProperties
    from matplotlib.lines import Line2D

    size = FontProperties(size=rcParams["legend.fontsize"]).get_size_in_points()
    half = LEGEND_LENGTH * size / (2 * LEGEND_WIDTH)  # half a sample, in dash units
    handles = [
        Line2D([], [], color=styles[m]["color"], lw=LEGEND_WIDTH, ls=_centred_dashes(m, half))
        for m in methods
    ]
    ax.legend(handles, [label(m) for m in methods], frameon=False, handlelength=LEGEND_LENGTH)


def _centred_dashes(method: str, half: float) -> str | tuple[float, tuple[int, ...]]:
    """A legend sample's line style: solid, or the method's :data:`DASHES` with the
    offset that puts the middle of one of its segments at the sample's middle, so the
    sample is symmetric and its two ends look alike; of those, the one whose ends show
    the largest share of a dash (``half``: half the sample's length in dash units)."""
    pattern = tuple(DASHES[method])
    if not pattern:
        return "-"
    starts = [sum(pattern[:i]) for i in range(len(pattern))]

    def end_share(centre: float) -> float:
        x = (centre + half) % sum(pattern) or sum(pattern)  # phase at the end, in (0, P]
        i = max(j for j, start in enumerate(starts) if start < x)
        return (x - starts[i]) / pattern[i] if i % 2 == 0 else 0.0

    centres = [start + seg / 2 for start, seg in zip(starts, pattern, strict=True)]
    centre = max(centres, key=end_share)
    return ((centre - half) % sum(pattern), pattern)


def _accuracy_panel(ax, methods: list[str], summary: list[dict]) -> None:
    """Test accuracy per method: mean with sample-sd error bar, and each seed's dot."""
    import numpy as np

    for i, m in enumerate(methods):
        accs = [100 * e["test_accuracy"] for e in summary if e["method"] == m]
        sd = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
        ax.errorbar(i, np.mean(accs), yerr=sd, fmt="o", color=COLOURS[m], capsize=4)
        ax.scatter([i + 0.15] * len(accs), accs, s=10, color=COLOURS[m], alpha=0.6)
    ax.set_xticks(range(len(methods)), [label(m) for m in methods], fontsize=8)
    ax.set_title(f"test accuracy (%), mean and sd of {len(summary) // len(methods)} seeds")
    ax.grid(alpha=0.3, axis="y")


def _draw_quantiles(
    records: dict[str, list[dict]], methods: list[str], layers: list[str], figure: str
) -> None:
    """``<figure stem>_quantiles.png``: per method, each layer's median and 25-75% band
    of the monitored units over training (mean over seeds), against N(0, 1)'s quartiles."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    shades = plt.get_cmap("viridis")(np.linspace(0.0, 0.8, len(layers)))
    for ax, m in zip(axes, methods, strict=False):
        for layer, color in zip(layers, shades, strict=False):
            steps, med = _by_step(records[m], layer, "q50")
            _, lo = _by_step(records[m], layer, "q25")
            _, hi = _by_step(records[m], layer, "q75")
            ax.plot(steps, [np.mean(v) for v in med], color=color, lw=1.4, label=layer)
            band = [np.mean(v) for v in lo], [np.mean(v) for v in hi]
            ax.fill_between(steps, *band, color=color, alpha=0.2, lw=0)
        for q in (-0.6745, 0.0, 0.6745):  # quartiles of N(0, 1)
            ax.axhline(q, color="black", lw=0.8, ls=":")
        ax.set_title(f"{label(m)}: median and 25-75% of units")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False, fontsize=8)
    root, ext = os.path.splitext(figure)
    _save(fig, f"{root}_quantiles{ext}")


def _save(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
