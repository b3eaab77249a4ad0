"""The method vocabulary: every name, its order, label and colour, in one place.

A *method* is what sits on a layer's pre-activation while a model trains
(:mod:`per_triton.experiments.baselines` builds them). The names are the keys of result files
(``extra_info.method`` of the training benchmark, ``method`` of closeness records),
so they never change; labels and colours are for people (figures, the dashboard,
tables). This module imports nothing heavy (no torch), so the dashboard uses it.

``vanilla``    no normalisation, no penalty.
``bn``         batch normalisation before each activation.
``vcl``        variance constancy loss (Littwin & Wolf, NeurIPS 2018).
``l1``, ``l2`` activation penalties.
``per``        PER (Joo, Kang & Kim 2020, Eq. 5) through :func:`per_triton.per_loss`.
``per_exact``  PER with ``estimator="exact"`` (:mod:`per_triton.core.exact`).
``per_torch``  PER as plain torch would write it (materialised directions).
"""

from __future__ import annotations

__all__ = [
    "COLOURS",
    "DASHES",
    "DEFAULT_TRAIN_METHODS",
    "LABELS",
    "MARKERS",
    "METHODS",
    "PENALTY_METHODS",
    "PER_ESTIMATORS",
    "TRAIN_METHODS",
    "check_method",
    "colour",
    "dash",
    "label",
    "marker",
    "order_key",
]

#: Every method, in the order tables and charts list them.
METHODS: tuple[str, ...] = ("vanilla", "bn", "vcl", "l1", "l2", "per", "per_exact", "per_torch")
#: Methods that add a penalty to the loss (``coeff * sum`` of the layers' penalties).
PENALTY_METHODS: tuple[str, ...] = ("vcl", "l1", "l2", "per", "per_exact", "per_torch")
#: The PER methods: the estimator (:mod:`per_triton.core.estimators`) of the
#: :class:`per_triton.PER` layer each one places.
PER_ESTIMATORS: dict[str, str] = {"per": "monte_carlo", "per_exact": "exact"}
#: Methods ``per-triton train`` offers, and the ones it runs by default.
TRAIN_METHODS: tuple[str, ...] = ("vanilla", "bn", "vcl", "l1", "l2", "per", "per_exact")
DEFAULT_TRAIN_METHODS: tuple[str, ...] = ("vanilla", "bn", "vcl", "per", "per_exact")

#: Names for people.
LABELS: dict[str, str] = {
    "vanilla": "vanilla",
    "bn": "BN",
    "vcl": "VCL",
    "l1": "L1",
    "l2": "L2",
    "per": "PER (fused)",
    "per_exact": "PER (exact)",
    "per_torch": "PER (plain torch)",
}

#: One distinct hue per method, from Okabe & Ito's colour-blind-safe set plus brown;
#: the baseline is near-black, PER and its exact variant sit far apart (green, pink),
#: and grey is kept for anything that is not one of our methods (the paper's figures).
COLOURS: dict[str, str] = {
    "vanilla": "#222222",  # near-black
    "bn": "#0072b2",  # blue
    "vcl": "#e69f00",  # orange
    "l1": "#56b4e9",  # sky blue
    "l2": "#8c564b",  # brown
    "per": "#009e73",  # bluish green
    "per_exact": "#cc79a7",  # reddish purple
    "per_torch": "#d55e00",  # vermillion
}
#: A line's dash pattern per method (on, off, ... in px; empty: solid), so lines that
#: lie on top of each other (``per`` under ``per_exact``) both stay visible.
DASHES: dict[str, list[int]] = {
    "vanilla": [],
    "bn": [8, 4],
    "vcl": [2, 3],
    "l1": [8, 3, 2, 3],
    "l2": [4, 4],
    "per": [],
    "per_exact": [6, 3],
    "per_torch": [2, 2, 6, 2],
}
#: A point's shape per method (Vega-Lite shape names).
MARKERS: dict[str, str] = {
    "vanilla": "circle",
    "bn": "square",
    "vcl": "triangle-up",
    "l1": "cross",
    "l2": "triangle-left",
    "per": "diamond",
    "per_exact": "triangle-down",
    "per_torch": "triangle-right",
}
#: Colour, dash and marker of anything not one of our methods.
OTHER_COLOUR = "#9e9e9e"
OTHER_DASH: list[int] = [1, 3]
OTHER_MARKER = "stroke"


def check_method(method: str, allowed: tuple[str, ...] = METHODS) -> str:
    """Return ``method`` if it is one of ``allowed``; else raise ``ValueError`` naming it."""
    if method not in allowed:
        raise ValueError(f"method must be one of {', '.join(allowed)}; got {method!r}")
    return method


def order_key(method: str) -> tuple[int, str]:
    """Sort key: known methods in :data:`METHODS` order, then unknown names alphabetically."""
    return (METHODS.index(method), "") if method in METHODS else (len(METHODS), method)


def label(method: str) -> str:
    """The method's name for people (the name itself when unknown)."""
    return LABELS.get(method, method)


def colour(method: str) -> str:
    """The method's colour (grey when unknown)."""
    return COLOURS.get(method, OTHER_COLOUR)


def dash(method: str) -> list[int]:
    """The method's dash pattern (dotted when unknown); a new list each call."""
    return list(DASHES.get(method, OTHER_DASH))


def marker(method: str) -> str:
    """The method's point shape (``"stroke"`` when unknown)."""
    return MARKERS.get(method, OTHER_MARKER)
