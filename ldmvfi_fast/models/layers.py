"""Small building blocks shared by the autoencoder and the U-Net.

Parameter names follow the official checkpoint (``norm1``, ``conv1``, ``nin_shortcut``,
``in_layers.0`` ...), so a state dict loads by its own key names. Containers indexed by
number in the checkpoint are ``nn.ModuleDict`` with string digits as keys: the forward
code stays explicit while the names match.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import precision


class GroupNorm32(nn.GroupNorm):
    """GroupNorm; under float16/bfloat16 computed in float32 and cast back (precision island
    ``groupnorm``)."""

    def forward(self, x: Tensor) -> Tensor:
        xc, w, b = precision.upcast("groupnorm", x, self.weight, self.bias)
        return F.group_norm(xc, self.num_groups, w, b, self.eps).to(x.dtype)


def ae_norm(channels: int) -> GroupNorm32:
    """The autoencoder's normalisation: GroupNorm(32 groups, eps 1e-6)."""
    return GroupNorm32(32, channels, eps=1e-6)


def unet_norm(channels: int) -> GroupNorm32:
    """The U-Net's normalisation: GroupNorm(32 groups, eps 1e-5), computed in float32."""
    return GroupNorm32(32, channels, eps=1e-5)


def swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


class AEResnetBlock(nn.Module):
    """Autoencoder ResNet block (no time embedding): norm-swish-conv twice, 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = ae_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ae_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AEDownsample(nn.Module):
    """Stride-2 3x3 convolution after zero padding of one row/column at bottom/right."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
