"""Which modules :func:`per_triton.regularize` chooses by default: activation and
recurrent types (torch's, and the model zoos' when loaded) and the feed-forward taps of
torch's transformer layers, whose activation is a function call."""

from __future__ import annotations

import importlib
import sys

from torch import nn

__all__ = ["TORCH_ACTIVATIONS", "DEFAULT_LAYERS", "TRANSFORMER_LAYERS", "default_layers"]

#: torch's pointwise activation modules (not Softmax-like normalisers, not Identity).
TORCH_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Softsign,
    nn.Tanh,
    nn.Tanhshrink,
    nn.Sigmoid,
    nn.LogSigmoid,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardshrink,
    nn.Softshrink,
    nn.Threshold,
    nn.GLU,
)
#: Module types regularized when neither ``layers`` nor ``names`` is given (torch's
#: activations and recurrent layers); :func:`default_layers` adds transformers' and
#: timm's activation classes when those packages are loaded.
DEFAULT_LAYERS: tuple[type[nn.Module], ...] = (*TORCH_ACTIVATIONS, nn.RNNBase)
# Activation classes of the model zoos, read lazily from these modules; neither
# package is a dependency. Identity-like classes are left out.
_ZOO_ACTIVATIONS = {
    "transformers": ("transformers.activations",),
    "timm": ("timm.layers.activations", "timm.layers.activations_me"),
}
_NOT_ACTIVATIONS = {"LinearActivation", "Identity"}


def default_layers() -> tuple[type[nn.Module], ...]:
    """:data:`DEFAULT_LAYERS` plus transformers' and timm's activation classes.

    Those packages' classes (``NewGELUActivation``, ``GELUActivation``,
    ``SiLUActivation``, timm's ``GELU``, ``Swish``, ``HardSwish``, ...) subclass
    ``nn.Module`` directly, not torch's activations. They are collected from
    ``transformers.activations`` and ``timm.layers.activations(_me)`` only when the
    package is already imported (a model built from it has imported it), so neither
    becomes a dependency nor is imported here for nothing.
    """
    found = list(DEFAULT_LAYERS)
    for package, module_names in _ZOO_ACTIVATIONS.items():
        if package not in sys.modules:
            continue
        for module_name in module_names:
            try:
                module = importlib.import_module(module_name)
            except Exception:  # another version's layout: keep torch's list
                continue
            for obj in vars(module).values():
                if (
                    isinstance(obj, type)
                    and issubclass(obj, nn.Module)
                    and obj.__module__ == module_name
                    and obj.__name__ not in _NOT_ACTIVATIONS
                    and obj not in found
                ):
                    found.append(obj)
    return tuple(found)


#: torch's transformer layers, whose feed-forward activation is a function by default.
TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def _feed_forward_taps(modules: dict[str, nn.Module], skip: set[str]) -> list[str]:
    """``<layer>.dropout`` of every torch transformer layer (not in ``skip``) whose
    activation is a function: the dropout whose input is the activation's output
    (``linear2(dropout(activation(linear1(x))))``). A module activation
    (``activation=nn.GELU()``) is found by type instead."""
    taps = []
    for name, m in modules.items():
        functional = isinstance(m, TRANSFORMER_LAYERS) and not isinstance(m.activation, nn.Module)
        if functional and name not in skip:
            taps.append(f"{name}.dropout" if name else "dropout")
    return taps
