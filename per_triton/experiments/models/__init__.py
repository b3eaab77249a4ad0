"""The paper's networks and the baselines they are compared with.

Each model is a plain ``nn.Module`` whose normalisation or regulariser is chosen by
``method`` (:data:`per_triton.experiments.baselines.METHODS`):

- :func:`cnn11` / :func:`cnn11_64`: the 11-layer CNN of Clevert et al. (ELU paper),
  as used by Littwin & Wolf and by the PER paper;
- :func:`resnet56` / :func:`resnet110`: CIFAR ResNets (He et al.), BN or Fixup;
- :func:`lstm_lm`: the 2-layer 650-unit word-level LSTM LM, with RE and VD options;
- :class:`SmallCNN`: a three-block conv net for 8x8 digits (``per-triton train``).

:func:`build_model` builds one by name (the names of the training benchmark).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from per_triton.experiments.models.cnn11 import CNN11, cnn11, cnn11_64
from per_triton.experiments.models.lstm_lm import LSTMLM, LoopLSTM, lstm_lm
from per_triton.experiments.models.resnet import ResNetCIFAR, resnet, resnet56, resnet110
from per_triton.experiments.models.small_cnn import SmallCNN

__all__ = [
    "CNN11",
    "LSTMLM",
    "MODELS",
    "LoopLSTM",
    "ResNetCIFAR",
    "SmallCNN",
    "build_model",
    "cnn11",
    "cnn11_64",
    "lstm_lm",
    "resnet",
    "resnet56",
    "resnet110",
]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn11": cnn11,
    "cnn11_64": cnn11_64,
    "resnet": resnet,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "lstm": lstm_lm,
}


def build_model(name: str, method: str = "vanilla", **config: object) -> nn.Module:
    """Build model ``name`` (a key of :data:`MODELS`) with ``method`` and keyword ``config``.

    Example:
        >>> net = build_model("cnn11", "per", num_classes=10, width=0.25)
        >>> net(torch.randn(4, 3, 32, 32)).shape
        torch.Size([4, 10])
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    return MODELS[name](method=method, **config)
