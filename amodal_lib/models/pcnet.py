"""Deocclusion's PCNet-M (Zhan et al., CVPR 2020): the network.

A UNet (:mod:`.unet`; channels ``w-2w-4w-8w-8w``, ``w = 32`` in the paper profile) with batch
norm and bilinear upsampling. Input, 2 channels at ``crop`` x ``crop``: (0) the erased visible
mask times the category id divided by the largest id, (1) the eraser. Output: 2-class logits
(1 = the object).

How instances are cropped for it and completed is :mod:`amodal_lib.predict.pcnet`; how it is
trained (erasers, loss, the loop on the shared engine) is :mod:`amodal_lib.train.pcnet`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .unet import UNet


class PCNetM(nn.Module):
    """The UNet with what completion needs to know: crop size and category normalisation."""

    def __init__(self, width: int = 32, crop: int = 256, max_category: int = 1):
        super().__init__()
        if crop % 16:
            raise ValueError(f"PCNet-M crop size must be a multiple of 16, got {crop}")
        self.width, self.crop, self.max_category = int(width), int(crop), max(int(max_category), 1)
        self.unet = UNet(in_channels=2, n_classes=2, width=self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, S, S)`` -> ``(B, 2, S, S)`` logits."""
        return self.unet(x.contiguous(memory_format=torch.channels_last))

    def spec(self) -> dict:
        """How to rebuild this model (stored in the checkpoint's ``extra``)."""
        return {"width": self.width, "crop": self.crop, "max_category": self.max_category}

    def category_value(self, category_ids) -> torch.Tensor:
        """The value of input channel 0 for each category id: id / largest id, in [0, 1]."""
        c = torch.as_tensor(np.asarray(category_ids, dtype=np.float32))
        return (c / self.max_category).clamp(0, 1)
