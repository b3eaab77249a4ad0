"""The 11-layer CNN of Clevert, Unterthiner & Hochreiter (ELU, ICLR 2016, CIFAR-100 net).

Used by Littwin & Wolf (VCL, NeurIPS 2018) and by Joo, Kang & Kim (PER, ICLR 2020,
section 4.1) with ELU, ReLU and LeakyReLU. Stacks, as ``channels x filter size``::

    [192x5] [192x1, 240x3] [240x1, 260x2] [260x1, 280x2] [280x1, 300x2] [300x1] [classes x1]

with 2x2 max-pooling (stride 2) after each stack while the map is at least 2x2
(five times for 32x32 inputs, six for 64x64), and dropout after the last layer of
each stack rising ``0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.0``. Convolutions keep the map
size (zero padding, on the right and bottom for the 2x2 filters). The last 1x1 convolution
gives the logits (no activation); a map larger than 1x1 is averaged.

``method`` picks the normalisation or regulariser (:mod:`per_triton.experiments.baselines`):
``bn`` puts BatchNorm between each hidden convolution and its activation; the
penalty methods put a penalty module at the same place, on the pre-activation of
each of the 10 hidden layers (where Littwin & Wolf apply VCL).
The Tiny ImageNet variant of the PER paper doubles every width for 64x64 inputs
(:func:`cnn11_64`).
"""

from __future__ import annotations

from torch import Tensor, nn

from per_triton.experiments.baselines import check_method, make_regularizer

__all__ = ["CNN11", "cnn11", "cnn11_64", "STACKS", "DROPOUT"]

# (channels, filter size) of each hidden layer, grouped by stack; the output stack
# [classes x1] is added by the model.
STACKS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((192, 5),),
    ((192, 1), (240, 3)),
    ((240, 1), (260, 2)),
    ((260, 1), (280, 2)),
    ((280, 1), (300, 2)),
    ((300, 1),),
)
DROPOUT = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.0)
ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}


class CNN11(nn.Module):
    """11-layer CNN (10 hidden conv layers + 1x1 output conv).

    Args:
        num_classes: 10 or 100 for CIFAR (200 for Tiny ImageNet).
        activation: ``"elu"``, ``"relu"`` or ``"leaky_relu"``.
        method: one of :data:`per_triton.experiments.baselines.METHODS`.
        width: multiplier of every hidden width (1.0 paper; 2.0 for 64x64 inputs;
            small values for tests).
        in_channels: input channels (3).
        input_size: input height = width, used to place the poolings (32 or 64).
        dropout: use the rising dropout rates (False: none, e.g. for exact tests).
        num_slices: directions per PER call (``s = 256`` in the paper).

    Input ``(b, in_channels, input_size, input_size)``, output logits ``(b, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 100,
        activation: str = "elu",
        method: str = "vanilla",
        *,
        width: float = 1.0,
        in_channels: int = 3,
        input_size: int = 32,
        dropout: bool = True,
        num_slices: int = 256,
    ) -> None:
        super().__init__()
        check_method(method)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.method, self.activation = method, activation
        layers: list[nn.Module] = []
        c_in, size = in_channels, input_size
        for stack, rate in zip(STACKS, DROPOUT, strict=False):
            for channels, k in stack:
                c_out = max(1, round(channels * width))
                if k % 2 == 0:  # "same" size for even filters: pad right and bottom
                    layers.append(nn.ZeroPad2d((0, k - 1, 0, k - 1)))
                pad = k // 2 if k % 2 else 0
                layers.append(nn.Conv2d(c_in, c_out, k, padding=pad, bias=method != "bn"))
                if method == "bn":
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(make_regularizer(method, c_out, num_slices=num_slices))
                layers.append(ACTIVATIONS[activation]())
                c_in = c_out
            if size >= 2:
                layers.append(nn.MaxPool2d(2, 2))
                size //= 2
            if dropout and rate > 0:
                layers.append(nn.Dropout(rate))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(c_in, num_classes, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.classifier(self.features(x))).flatten(1)


def cnn11(
    num_classes: int = 100, activation: str = "elu", method: str = "vanilla", **kw: object
) -> CNN11:
    """The paper's CIFAR network (32x32 inputs)."""
    return CNN11(num_classes, activation, method, **kw)


def cnn11_64(
    num_classes: int = 200, activation: str = "elu", method: str = "vanilla", **kw: object
) -> CNN11:
    """The doubled-width variant for 64x64 inputs (Tiny ImageNet in the PER paper)."""
    kw.setdefault("width", 2.0)
    kw.setdefault("input_size", 64)
    return CNN11(num_classes, activation, method, **kw)
