"""ResNet-56 / ResNet-110 for CIFAR (He et al., CVPR 2016, section 4.2).

A 3x3 stem conv with 16 channels, three stages of ``n`` basic blocks (two 3x3
convs) with 16, 32 and 64 channels (stride 2 at the start of stages 2 and 3),
global average pooling and a linear classifier: ``6n + 2`` layers (n = 9: 56,
n = 18: 110). Shortcuts are identities; where the shape changes, option A of He
et al.: subsample by 2 and pad the new channels with zeros (no parameters).

``norm``:

- ``"bn"``: BatchNorm after every conv, as He et al.
- ``"fixup"``: no normalisation, Fixup initialisation (Zhang, Dauphin & Ma,
  ICLR 2019, section 3): the first conv of each residual branch is He-initialised
  and scaled by ``L^(-1/2)`` (``L`` blocks, ``m = 2`` layers per branch), the
  second conv and the classifier start at zero, and scalar biases (before each
  conv and activation) and a scalar multiplier are added to each branch.

``method`` (:mod:`per_triton.experiments.baselines`) puts a penalty module on the input of
every ReLU (``6n + 1`` of them: the pre-activations, where BN's output would be).
By default ``method="bn"`` builds the BN network and every other method the Fixup
one, so ``vanilla`` is ResNet without normalisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from per_triton.experiments.baselines import check_method, make_regularizer

__all__ = ["ResNetCIFAR", "resnet", "resnet56", "resnet110"]


def _shortcut(x: Tensor, out_channels: int, stride: int) -> Tensor:
    """Option A: identity, or stride-2 subsampling with zero-padded extra channels."""
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    extra = out_channels - x.shape[1]
    if extra > 0:
        x = F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))
    return x


class _Bias(nn.Module):
    """A learnable scalar added to the input (Fixup)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; BN or Fixup scalars."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, norm: str, method: str, num_slices: int
    ) -> None:
        super().__init__()
        self.c_out, self.stride, self.fixup = c_out, stride, norm == "fixup"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        if self.fixup:
            self.bias1a, self.bias1b, self.bias2a, self.bias2b = (_Bias() for _ in range(4))
            self.scale = nn.Parameter(torch.ones(1))
        else:
            self.bn1, self.bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)
        self.reg1 = make_regularizer(method, c_out, num_slices=num_slices)
        self.reg2 = make_regularizer(method, c_out, num_slices=num_slices)

    def forward(self, x: Tensor) -> Tensor:
        if self.fixup:
            out = F.relu(self.reg1(self.bias1b(self.conv1(self.bias1a(x)))))
            out = self.bias2b(self.conv2(self.bias2a(out)) * self.scale)
        else:
            out = F.relu(self.reg1(self.bn1(self.conv1(x))))
            out = self.bn2(self.conv2(out))
        return F.relu(self.reg2(out + _shortcut(x, self.c_out, self.stride)))


class ResNetCIFAR(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs.

    Args:
        depth: ``6n + 2`` (56, 110; 8 or 14 for tests).
        num_classes: 10 or 100.
        method: one of :data:`per_triton.experiments.baselines.METHODS`.
        norm: ``"bn"`` or ``"fixup"``; default ``"bn"`` for ``method="bn"``, else ``"fixup"``.
        width: base width (16 in the paper; smaller for tests).
        num_slices: directions per PER call.

    Input ``(b, 3, H, W)``, output logits ``(b, num_classes)``.
    """

    def __init__(
        self,
        depth: int = 56,
        num_classes: int = 10,
        method: str = "bn",
        *,
        norm: str | None = None,
        width: int = 16,
        num_slices: int = 256,
    ) -> None:
        super().__init__()
        check_method(method)
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n + 2 with n >= 1, got {depth}")
        norm = norm or ("bn" if method == "bn" else "fixup")
        if norm not in ("bn", "fixup"):
            raise ValueError(f"norm must be 'bn' or 'fixup', got {norm!r}")
        self.depth, self.norm, self.method = depth, norm, method
        n = (depth - 2) // 6
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=norm == "fixup")
        self.stem_bn = nn.BatchNorm2d(width) if norm == "bn" else nn.Identity()
        self.stem_reg = make_regularizer(method, width, num_slices=num_slices)
        blocks: list[nn.Module] = []
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c_in, c_out, stride, norm, method, num_slices))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)
        self._init(n_blocks=3 * n)

    def _init(self, n_blocks: int) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if self.norm != "fixup":
            return
        for block in self.blocks:
            fan = block.conv1.weight[0].numel()
            nn.init.normal_(block.conv1.weight, 0.0, math.sqrt(2.0 / fan) * n_blocks**-0.5)
            nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem_reg(self.stem_bn(self.stem(x))))
        x = self.blocks(x)
        return self.fc(x.mean((2, 3)))


def resnet56(num_classes: int = 10, method: str = "bn", **kw: object) -> ResNetCIFAR:
    """ResNet-56 (n = 9)."""
    return ResNetCIFAR(56, num_classes, method, **kw)


def resnet110(num_classes: int = 10, method: str = "bn", **kw: object) -> ResNetCIFAR:
    """ResNet-110 (n = 18)."""
    return ResNetCIFAR(110, num_classes, method, **kw)


def resnet(depth: int = 56, num_classes: int = 10, method: str = "bn", **kw: object) -> ResNetCIFAR:
    """ResNet of any depth ``6n + 2`` (small ones for tests and smoke benchmarks)."""
    return ResNetCIFAR(depth, num_classes, method, **kw)
