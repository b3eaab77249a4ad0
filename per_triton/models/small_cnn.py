"""A small convolutional network for 8x8 images (scikit-learn's digits).

Three 3x3 convolution blocks and a linear classifier, a reduced-width cousin of the
paper's CIFAR networks. Each block is ``conv -> norm -> pre-activation tap -> act``:
the tap is an identity module of its own type (:class:`PreActivation`) so that
``per_triton.monitor`` and PER can attach to it by name or by type.

PER and the monitor act on the pre-activations, the quantity that batch
normalisation standardises and that can be close to N(0, I) at all (a ReLU output
is non-negative, so its distribution is never near N(0, I)). For ``norm="bn"`` the
tap sits after BatchNorm, the point the BN baseline makes comparable to the others.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}
NORMS = ("none", "bn")


class PreActivation(nn.Identity):
    """Identity marking a pre-activation; the monitor and PER hook onto it."""


class ConvBlock(nn.Module):
    """``conv 3x3 -> norm -> PreActivation -> activation``."""

    def __init__(self, c_in: int, c_out: int, norm: str, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none")
        self.norm = nn.BatchNorm2d(c_out) if norm == "bn" else nn.Identity()
        self.pre = PreActivation()
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pre(self.norm(self.conv(x))))


class SmallCNN(nn.Module):
    """Conv net for ``(b, 1, 8, 8)`` inputs: 8x8 -> 8x8 -> 4x4 -> 2x2 -> classes.

    Args:
        width: channels of the first block (the next two have ``2 * width``).
        norm: ``"none"`` (vanilla, VCL, PER) or ``"bn"`` (BatchNorm2d after each conv).
        activation: one of ``"relu"``, ``"tanh"``, ``"elu"``, ``"gelu"``.
        num_classes: outputs of the classifier.
        in_channels: image channels.
        init_scale: factor on every conv weight after PyTorch's default
            initialisation; values above 1 reproduce a badly scaled start whose
            activations drift (the paper's Figure 4 setting).

    Example:
        >>> net = SmallCNN(width=8)
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        width: int = 16,
        norm: str = "none",
        activation: str = "relu",
        num_classes: int = 10,
        in_channels: int = 1,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.block1 = ConvBlock(in_channels, width, norm, activation)
        self.block2 = ConvBlock(width, 2 * width, norm, activation)
        self.pool2 = nn.MaxPool2d(2)
        self.block3 = ConvBlock(2 * width, 2 * width, norm, activation)
        self.pool3 = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * width * 2 * 2, num_classes)
        if init_scale != 1.0:
            with torch.no_grad():
                for block in (self.block1, self.block2, self.block3):
                    block.conv.weight.mul_(init_scale)

    @property
    def tap_names(self) -> list[str]:
        """Qualified names of the pre-activation taps, input side first."""
        return [n for n, m in self.named_modules() if isinstance(m, PreActivation)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(x)
        x = self.pool2(self.block2(x))
        x = self.pool3(self.block3(x))
        return self.fc(x.flatten(1))
