"""A small convolutional network for 8x8 images (scikit-learn's digits).

Three 3x3 convolution blocks and a linear classifier, a reduced-width cousin of the
paper's CIFAR networks. Each block is ``conv -> norm -> tap -> regulariser -> act``:
the tap is an identity module of its own type (:class:`PreActivation`) that
``per_triton.monitor`` (and :func:`per_triton.regularize`) attach to by name or
type; the regulariser is :func:`per_triton.experiments.baselines.make_regularizer` for the
``method`` (identity for vanilla and BN; VCL, L1, L2 or PER penalty otherwise),
collected by :func:`per_triton.experiments.training.train_step`.

Like the paper-scale models in this package, this network regularises (and here
monitors) the pre-activations: the quantity BN standardises, and one that can be
close to N(0, I) at all (a ReLU output is non-negative, so its law is never near
N(0, I)). For ``method="bn"`` the
tap sits after BatchNorm, the point that makes BN comparable with the others.
"""

from __future__ import annotations

import torch
from torch import nn

from per_triton.experiments.baselines import check_method, make_regularizer

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}


class PreActivation(nn.Identity):
    """Identity marking a pre-activation; the monitor and PER hook onto it."""


class ConvBlock(nn.Module):
    """``conv 3x3 -> norm -> PreActivation -> regulariser -> activation``."""

    def __init__(
        self, c_in: int, c_out: int, method: str, activation: str, num_slices: int
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=method != "bn")
        self.norm = nn.BatchNorm2d(c_out) if method == "bn" else nn.Identity()
        self.pre = PreActivation()
        self.reg = make_regularizer(method, c_out, num_slices=num_slices)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.reg(self.pre(self.norm(self.conv(x)))))


class SmallCNN(nn.Module):
    """Conv net for ``(b, 1, 8, 8)`` inputs: 8x8 -> 8x8 -> 4x4 -> 2x2 -> classes.

    Args:
        width: channels of the first block (the next two have ``2 * width``).
        method: one of :data:`per_triton.experiments.baselines.METHODS`; ``"bn"`` puts
            BatchNorm2d after each conv, the penalty methods a penalty module at
            each pre-activation.
        activation: one of ``"relu"``, ``"tanh"``, ``"elu"``, ``"gelu"``.
        num_classes: outputs of the classifier.
        in_channels: image channels.
        init_scale: factor on every conv weight after PyTorch's default
            initialisation; values above 1 reproduce a badly scaled start whose
            activations drift (the paper's Figure 4 setting).
        num_slices: directions per PER call.

    Example:
        >>> net = SmallCNN(width=8, method="per")
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        width: int = 16,
        method: str = "vanilla",
        activation: str = "relu",
        num_classes: int = 10,
        in_channels: int = 1,
        init_scale: float = 1.0,
        num_slices: int = 256,
    ) -> None:
        super().__init__()
        self.method = check_method(method)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        args = (method, activation, num_slices)
        self.block1 = ConvBlock(in_channels, width, *args)
        self.block2 = ConvBlock(width, 2 * width, *args)
        self.pool2 = nn.MaxPool2d(2)
        self.block3 = ConvBlock(2 * width, 2 * width, *args)
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
