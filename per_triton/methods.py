"""The method vocabulary: every name, its order, label and colour, in one place.

A *method* is what sits on a layer's pre-activation while a model trains
(:mod:`per_triton.baselines` builds them). The names are the keys of result files
(``extra_info.method`` of the training benchmark, ``method`` of closeness records),
so they never change; labels and colours are for people (figures, the dashboard,
tables). This module imports nothing heavy (no torch), so the dashboard uses it.

``vanilla``    no normalisation, no penalty.
``bn``         batch normalisation before each activation.
``vcl``        variance constancy loss (Littwin & Wolf, NeurIPS 2018).
``l1``, ``l2`` activation penalties.
``per``        PER (Joo, Kang & Kim 2020, Eq. 5) through :func:`per_triton.per_loss`.
``per_exact``  PER with ``estimator="exact"`` (:mod:`per_triton.exact`).
``per_torch``  PER as plain torch would write it (materialised directions).
"""

from __future__ import annotations

__all__ = [
    "COLOURS",
    "DEFAULT_TRAIN_METHODS",
    "LABELS",
    "METHODS",
    "PENALTY_METHODS",
    "TRAIN_METHODS",
    "check_method",
    "colour",
    "label",
    "order_key",
]

#: Every method, in the order tables and charts list them.
METHODS: tuple[str, ...] = ("vanilla", "bn", "vcl", "l1", "l2", "per", "per_exact", "per_torch")
#: Methods that add a penalty to the loss (``coeff * sum`` of the layers' penalties).
PENALTY_METHODS: tuple[str, ...] = ("vcl", "l1", "l2", "per", "per_exact", "per_torch")
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

#: One distinct hue per method (Tableau 10; grey is kept for the paper's series).
COLOURS: dict[str, str] = {
    "vanilla": "#d62728",  # red
    "bn": "#1f77b4",  # blue
    "vcl": "#ff7f0e",  # orange
    "l1": "#9467bd",  # purple
    "l2": "#8c564b",  # brown
    "per": "#2ca02c",  # green
    "per_exact": "#17becf",  # cyan
    "per_torch": "#e377c2",  # pink
}
#: Colour of anything not one of our methods (the paper's figures).
OTHER_COLOUR = "#9e9e9e"


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
