"""Module selectors: module types, module names with wildcards, or both, resolved
against a model's ``named_modules()`` (``layers``, ``names`` and ``exclude`` of
:func:`per_triton.regularize`, ``layers`` of the monitor)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping

from torch import nn

from per_triton.api.hints import _block_suggestions

__all__ = ["select_modules"]


def _as_types(value: object, arg: str) -> tuple[type[nn.Module], ...]:
    """A module type, or an iterable of them, as a tuple (``arg`` names the argument)."""
    items = (value,) if isinstance(value, type) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(
            f"{arg} must be an nn.Module subclass or an iterable of them, got {value!r}"
        )
    items = tuple(items)
    for t in items:
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise TypeError(f"{arg} must hold nn.Module subclasses, got {t!r}")
    return items


def _as_names(value: object, arg: str) -> list[str]:
    """A module name (wildcards allowed), or an iterable of them, as a list."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable):
        raise TypeError(f"{arg} must be a module name or an iterable of names, got {value!r}")
    items = list(items)
    for n in items:
        if not isinstance(n, str):
            raise TypeError(f"{arg} must hold module names (str), got {n!r}")
    return items


def _pattern(name: str) -> re.Pattern[str]:
    """``*`` matches one dotted component (or part of one), ``**`` any run of them."""
    parts = re.split(r"(\*\*|\*)", name)
    regex = "".join(".*" if p == "**" else "[^.]*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(regex)


def _match_names(patterns: list[str], modules: dict[str, nn.Module], arg: str) -> set[str]:
    """Module names matching ``patterns``; ValueError naming the patterns that match nothing."""
    matched: set[str] = set()
    missing = []
    for name in patterns:
        if "*" in name:
            rx = _pattern(name)
            hits = {n for n in modules if n and rx.fullmatch(n)}
        else:
            hits = {name} if name in modules else set()
        if not hits:
            missing.append(name)
        matched |= hits
    if missing:
        keys = [k for k in modules if k]
        close = {n: difflib.get_close_matches(n, keys, 3) for n in missing}
        hints = "; ".join(f"{n!r}: did you mean {c}?" for n, c in close.items() if c)
        blocks = _block_suggestions(modules)
        raise ValueError(
            f"{arg} not found in model: {missing}"
            + (f" ({hints})" if hints else "")
            + (f". Block names in the model: {blocks}" if blocks else "")
            + " ('*' matches one name component, '**' any number)"
        )
    return matched


def select_modules(modules: Mapping[str, nn.Module], value: object, arg: str) -> set[str]:
    """Names of the modules chosen by a mixed selector (the parser of ``exclude`` in
    :func:`per_triton.regularize` and of ``layers`` in
    :class:`per_triton.api.monitor.LayerMonitor`).

    ``value`` is a module type, a module name (wildcards as in :func:`per_triton.regularize`'s
    ``names``), or an iterable mixing both. A type chooses every submodule of that type
    (never the model itself, name ``""``); a name chooses the modules it matches
    (``""`` is the model). Raises TypeError naming ``arg`` for anything else, and
    ValueError naming ``arg`` for a name that matches no module.
    """
    items = [value] if isinstance(value, (str, type)) else value
    if not isinstance(items, Iterable):
        raise TypeError(
            f"{arg} must be a module type, a module name, or an iterable of them, got {value!r}"
        )
    items = list(items)
    types = _as_types([t for t in items if isinstance(t, type)], arg)
    patterns = _as_names([n for n in items if not isinstance(n, type)], arg)
    modules = dict(modules)
    chosen = _match_names(patterns, modules, arg)
    if types:
        chosen |= {n for n, m in modules.items() if n and isinstance(m, types)}
    return chosen


def _resolve_layers(model: nn.Module, layers: object) -> dict[str, nn.Module]:
    """The monitor's ``layers`` (:class:`per_triton.api.monitor.LayerMonitor`): names
    and/or module types mapped to the model's submodules, in model order."""
    named = dict(model.named_modules())
    if isinstance(layers, Iterable) and not isinstance(layers, str):
        layers = list(layers)
        if not layers:
            raise ValueError("layers: give at least one module name or type")
    chosen = select_modules(named, layers, "layers")
    if not chosen:
        raise ValueError(f"layers: the model has no module of type {layers}")
    return {n: m for n, m in named.items() if n in chosen}
