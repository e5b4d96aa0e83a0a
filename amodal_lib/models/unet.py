"""The UNet of Deocclusion's PCNet-M (Zhan et al., CVPR 2020): the classic 4-down / 4-up
UNet with batch norm and bilinear upsampling (as in the public ``UNet2`` of that code).

Channels at width ``w``: ``w-2w-4w-8w-8w`` down, then back up to ``w`` (``w = 32`` gives the
paper's 32-64-128-256-256). The input side must be divisible by 16.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Sequential):
    """(3x3 conv, batch norm, ReLU) twice."""

    def __init__(self, cin: int, cout: int, mid: int | None = None):
        mid = mid or cout
        super().__init__(
            nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Down(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.MaxPool2d(2), DoubleConv(cin, cout))


class Up(nn.Module):
    """Bilinear x2 upsampling, concatenation with the skip connection, DoubleConv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = DoubleConv(cin, cout, cin // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """``(B, in_channels, S, S) -> (B, n_classes, S, S)`` logits."""

    def __init__(self, in_channels: int = 2, n_classes: int = 2, width: int = 32):
        super().__init__()
        w = int(width)
        self.in_channels, self.n_classes, self.width = in_channels, n_classes, w
        self.inc = DoubleConv(in_channels, w)
        self.down1, self.down2 = Down(w, 2 * w), Down(2 * w, 4 * w)
        self.down3, self.down4 = Down(4 * w, 8 * w), Down(8 * w, 8 * w)
        self.up1, self.up2 = Up(16 * w, 4 * w), Up(8 * w, 2 * w)
        self.up3, self.up4 = Up(4 * w, w), Up(2 * w, w)
        self.outc = nn.Conv2d(w, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)

    @property
    def channels(self) -> tuple:
        w = self.width
        return (w, 2 * w, 4 * w, 8 * w, 8 * w)
