"""Heuristics on a model's structure: squeeze-excite / attention-gate blocks,
repeated blocks, and the messages saying why :func:`per_triton.regularize` chose
nothing, or less than the model's blocks."""

from __future__ import annotations

import re
from collections import Counter

from torch import nn

# Squeeze-excite / attention-gate blocks: activations inside them act on pooled
# (b, C, 1, 1) descriptors or are multiplicative gates, not the main path.
_GATE_BLOCK = re.compile(
    r"squeeze_?excit|excitation|gatherexcite|cbam|^(effective)?se(module|layer|block)?$"
    r"|^c?eca(module)?$",
    re.IGNORECASE,
)


def _in_gate_block(name: str, modules: dict[str, nn.Module]) -> bool:
    """Whether module ``name`` sits inside a squeeze-excite / attention-gate block."""
    parts = name.split(".")
    return any(
        _GATE_BLOCK.search(type(modules[".".join(parts[:i])]).__name__)
        for i in range(1, len(parts))
    )


def _repeated_blocks(modules: dict[str, nn.Module]) -> list[tuple[str, nn.Module]]:
    """Containers (ModuleList / Sequential) of >= 2 blocks of one type, largest first."""
    found = []
    for name, m in modules.items():
        if not isinstance(m, (nn.ModuleList, nn.Sequential)):
            continue
        kids = list(m.children())
        nested = all(next(k.children(), None) is not None for k in kids)
        if len(kids) >= 2 and nested and len({type(k) for k in kids}) == 1:
            found.append((name, m))
    return sorted(found, key=lambda nm: -len(nm[1]))


_MLP_NAMES = ("mlp", "ffn", "feed_forward", "intermediate", "fc", "mlp_block")


def _block_suggestions(modules: dict[str, nn.Module]) -> list[str]:
    """Wildcard names of the model's repeated blocks (and their MLP part, if named so)."""
    out = []
    for name, container in _repeated_blocks(modules)[:2]:
        if not name:
            continue
        out.append(f"{name}.*")
        child = next(container.children())
        for sub, _ in child.named_children():
            if sub in _MLP_NAMES:
                out.append(f"{name}.*.{sub}")
    return out


_ACTIVATION_LIKE = re.compile(
    r"act|relu|gelu|silu|swish|mish|tanh|sigmoid|elu$|softplus|glu", re.IGNORECASE
)


def _no_match_message(model: nn.Module, types: tuple, names: list[str]) -> str:
    """Why nothing matched, with the model's candidate modules (functional activations)."""
    modules = dict(model.named_modules())
    named = [(n, m) for n, m in modules.items() if n]
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    shown = tuple(t.__name__ for t in types)
    text = (
        f"regularize found no module to regularize in {type(model).__name__} "
        f"(layers={shown if len(shown) <= 6 else f'pt.default_layers(), {len(shown)} types'}, "
        f"names={names})."
    )
    act_like = Counter(
        type(m).__name__
        for _, m in named
        if next(m.children(), None) is None and _ACTIVATION_LIKE.search(type(m).__name__)
    )
    if act_like:
        first = next(iter(act_like))
        text += (
            f" Activation-like modules in the model: "
            f"{', '.join(f'{k} x{v}' for k, v in act_like.most_common(6))}: pass "
            f"layers=({first}, ...)."
        )
    text += (
        " If its activations are functional calls (F.relu, F.gelu), regularize the "
        "outputs of modules instead, by type or by name"
    )
    suggestions = _block_suggestions(modules)
    if suggestions:
        text += f", e.g. names={suggestions[-1:]!r}"
        text += f" (wildcards: {suggestions})" if len(suggestions) > 1 else ""
    blocks = [(n, m) for n, m in named if next(m.children(), None) is not None]
    blocks = [(n, m) for n, m in blocks if not isinstance(m, containers)]
    if blocks:
        block_type = type(blocks[0][1])
        same = [n for n, m in blocks if type(m) is block_type]
        text += (
            f"{' or' if suggestions else ', e.g.'} layers=({block_type.__name__},) "
            f"({len(same)} modules: {', '.join(same[:4])}{', ...' if len(same) > 4 else ''})"
        )
    counts = Counter(type(m).__name__ for _, m in named)
    types_text = ", ".join(f"{k} x{v}" for k, v in counts.most_common(12))
    return text + f". Module types in the model: {types_text or 'none'}."


def _partial_match_warning(chosen: list[str], modules: dict[str, nn.Module]) -> str | None:
    """A warning when the default choice misses the model's repeated blocks entirely."""
    blocks = [(n, c) for n, c in _repeated_blocks(modules) if n]
    if not chosen or not blocks:
        return None
    name, container = blocks[0]
    if any(c == name or c.startswith(name + ".") for c in chosen):
        return None
    suggestions = _block_suggestions(modules)
    return (
        f"regularize: the default layers matched only {chosen[:4]}"
        f"{' ...' if len(chosen) > 4 else ''}, outside the model's {len(container)} "
        f"repeated blocks ({name}.0 ... {name}.{len(container) - 1}): their activations "
        "are probably functional calls (F.gelu) and get no PER. Regularize the blocks' "
        f"outputs by name, e.g. names={suggestions[-1:]!r}, or pass layers=/names= to "
        "silence this warning."
    )
