"""The closeness figure's method legend: every sample drawn alike (one width, one length,
the same left and right ends, symmetric about its middle), in the method's colour and
dash pattern, while the plotted lines keep their different widths."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_hex, to_rgb  # noqa: E402

from per_triton.experiments import closeness_figure  # noqa: E402
from per_triton.experiments.methods import COLOURS, DASHES, TRAIN_METHODS, label  # noqa: E402

PIXEL = 1  # antialiasing may move an edge by one pixel


def _records(method: int) -> list[dict]:
    return [
        {"layer": layer, "step": step, "sw1": 0.5 + 0.1 * method + 0.01 * seed}
        for layer in ("block1.pre", "block2.pre")
        for step in (0, 10, 20)
        for seed in range(2)
    ]


def _ink_columns(pixels: np.ndarray, sample) -> np.ndarray:
    """Columns of the rendered figure where ``sample``'s colour shows, in its own row."""
    (x0, y0), (x1, y1) = sample.get_window_extent().get_points()
    height = pixels.shape[0]
    rows = pixels[int(height - y1) - 1 : int(height - y0) + 2, int(x0) - 3 : int(x1) + 4, :3]
    close = np.abs(rows / 255.0 - np.array(to_rgb(sample.get_color()))).max(axis=2) < 0.25
    return np.flatnonzero(close.any(axis=0)) + int(x0) - 3


def test_legend_samples_are_uniform_and_in_each_methods_style() -> None:
    methods = list(TRAIN_METHODS)
    records = {m: _records(i) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    try:
        closeness_figure._sw1_panels(axes, ["block1.pre", "block2.pre"], methods, records)
        legend = axes[0].get_legend()
        samples = legend.get_lines()
        assert [t.get_text() for t in legend.get_texts()] == [label(m) for m in methods]
        # the plotted lines differ in width (the first widest) ...
        plotted = {line.get_label(): line.get_linewidth() for line in axes[0].get_lines()}
        assert len(set(plotted.values())) == len(methods)
        # ... the legend's samples do not
        widths = {s.get_linewidth() for s in samples}
        assert len(widths) == 1, sorted(widths)
        for sample, m in zip(samples, methods, strict=True):
            assert to_hex(sample.get_color()) == COLOURS[m].lower()
            assert list(sample._unscaled_dash_pattern[1] or []) == DASHES[m]
        # drawn: one left end, one right end, each sample its own mirror image
        for artist in [*axes[0].get_lines(), *axes[0].collections]:
            artist.set_visible(False)  # only the legend is looked at
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())
        inks = {m: _ink_columns(pixels, s) for m, s in zip(methods, samples, strict=True)}
        lefts, rights = [ink[0] for ink in inks.values()], [ink[-1] for ink in inks.values()]
        assert max(lefts) - min(lefts) <= PIXEL and max(rights) - min(rights) <= PIXEL, inks
        for m, ink in inks.items():
            mirrored = ink[0] + ink[-1] - ink
            assert all(np.abs(ink - x).min() <= PIXEL for x in mirrored), (m, ink)
            if DASHES[m]:  # a dashed sample has gaps; a solid one none
                assert len(ink) < ink[-1] - ink[0] + 1, m
            else:
                assert len(ink) == ink[-1] - ink[0] + 1, m
    finally:
        plt.close(fig)
