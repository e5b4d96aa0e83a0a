"""ResNet-PSP (Zhao et al., CVPR 2017): the segmentation network of supplementary Table 1.

A ResNet backbone from ``torchvision.models`` (randomly initialised: nothing is downloaded; a
local weights file of the backbone is accepted, :func:`load_backbone_weights`) with its last
strides replaced by dilation so that the features keep ``output_stride`` (8 in PSPNet), then the
pyramid pooling module: the features average-pooled to 1x1, 2x2, 3x3 and 6x6 (``bins``), each
reduced by a 1x1 convolution, upsampled and concatenated with the features; a 3x3 convolution,
dropout, and a 1x1 convolution to one logit per pixel (the instance's visible mask), upsampled
bilinearly to the input.

Input: (B, 3, S, S) RGB crops in [0, 1] (normalised inside with ImageNet's mean and std, so that
a user's ImageNet weights fit); output: (B, 1, S, S) logits. ``stages`` = 3 drops ``layer4``
(a cheaper net for the laptop profile). How instances are cropped is
:mod:`amodal_lib.predict.psp`; training is :mod:`amodal_lib.train.psp` (``docs/design.md``,
"The segmentation-input experiment").
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ..errors import CheckpointError
from .weights import load_checkpoint

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _dilate(layer: nn.Sequential, dilation: int) -> None:
    """Make a residual stage keep its input's resolution: stride 1 everywhere, its 3x3
    convolutions dilated by ``dilation`` (the first block's by half of it, as in PSPNet)."""
    for b, block in enumerate(layer):
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                if m.stride != (1, 1):
                    m.stride = (1, 1)
                if m.kernel_size == (3, 3):
                    d = max(dilation // 2, 1) if b == 0 else dilation
                    m.dilation, m.padding = (d, d), (d, d)


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: ``bins`` average poolings, each 1x1-reduced and
    upsampled, concatenated with the input."""

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        red = max(in_channels // len(bins), 8)
        self.bins = tuple(int(b) for b in bins)
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_channels, red, 1, bias=False),
                                                  nn.BatchNorm2d(red), nn.ReLU(inplace=True)) for b in self.bins)
        self.out_channels = in_channels + red * len(self.bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return torch.cat([x] + [F.interpolate(s(x), size, mode="bilinear", align_corners=False)
                                for s in self.stages], 1)


class ResNetPSP(nn.Module):
    """ResNet backbone + pyramid pooling head; one logit per pixel.

    ``backbone``: a torchvision ResNet name (:data:`BACKBONES`); ``stages``: residual stages used
    (3 or 4); ``output_stride``: 4, 8, 16 or 32; ``bins``: the pyramid's pooled sizes;
    ``head_channels``: the 3x3 convolution after the pyramid. What inference needs to know is
    stored with the network: ``crop``, the side of the input crops (any size runs); ``box``, the
    ground-truth box they are cut by ("amodal" or "visible"); ``context``, how much that box is
    grown about its centre."""

    def __init__(self, backbone: str = "resnet18", stages: int = 4, output_stride: int = 8,
                 bins: Sequence[int] = (1, 2, 3, 6), head_channels: int = 128, dropout: float = 0.1,
                 crop: int = 64, box: str = "amodal", context: float = 1.2):
        super().__init__()
        if box not in ("amodal", "visible"):
            raise ValueError(f"box must be 'amodal' or 'visible', got {box!r}")
        if not context >= 1.0:
            raise ValueError(f"context must be >= 1, got {context}")
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
        if stages not in (2, 3, 4):
            raise ValueError(f"stages must be 2, 3 or 4, got {stages}")
        if output_stride not in (4, 8, 16, 32):
            raise ValueError(f"output_stride must be 4, 8, 16 or 32, got {output_stride}")
        self.backbone_name, self.stages, self.output_stride = backbone, int(stages), int(output_stride)
        self.bins, self.head_channels, self.dropout, self.crop = tuple(bins), int(head_channels), float(dropout), int(crop)
        self.box, self.context = box, float(context)
        net = torchvision.models.get_model(backbone, weights=None)   # random initialisation: no download
        layers = [net.layer1, net.layer2, net.layer3, net.layer4][:stages]
        stride, dilation = 4, 1                                       # after the stem (conv 2 + max pool 2)
        for layer in layers[1:]:
            if stride >= output_stride:
                dilation *= 2
                _dilate(layer, dilation)
            else:
                stride *= 2
        self.backbone = nn.ModuleDict({"conv1": net.conv1, "bn1": net.bn1, "relu": net.relu, "maxpool": net.maxpool,
                                       **{f"layer{k + 1}": layer for k, layer in enumerate(layers)}})
        feat = [m for m in layers[-1].modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
        self.ppm = PyramidPooling(feat, bins)
        self.head = nn.Sequential(nn.Conv2d(self.ppm.out_channels, head_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
                                  nn.Conv2d(head_channels, 1, 1))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features, (B, C, S / output_stride, S / output_stride)."""
        for m in self.backbone.values():
            x = m(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` RGB in [0, 1] -> ``(B, 1, S, S)`` logits of the instance's visible mask."""
        size = x.shape[-2:]
        f = self.features((x - self.mean) / self.std)
        return F.interpolate(self.head(self.ppm(f)), size, mode="bilinear", align_corners=False)

    def spec(self) -> dict:
        """How to rebuild this model (stored in the checkpoint's ``extra``)."""
        return {"backbone": self.backbone_name, "stages": self.stages, "output_stride": self.output_stride,
                "bins": list(self.bins), "head_channels": self.head_channels, "dropout": self.dropout,
                "crop": self.crop, "box": self.box, "context": self.context}


def load_backbone_weights(model: ResNetPSP, path) -> int:
    """Load a local weights file into ``model``'s backbone: a torchvision ResNet ``state_dict``
    (e.g. ``resnet18-f37072fd.pth``), or a dict holding one under ``state_dict`` or ``model``;
    ``module.`` / ``backbone.`` prefixes are removed, the classifier (``fc``) is ignored. Loaded
    with ``weights_only=True``. Returns how many tensors were loaded; raises
    :class:`~amodal_lib.errors.CheckpointError` naming the file when it holds no tensor of this
    backbone or one of the wrong shape."""
    path = Path(path)
    ck = load_checkpoint(path)   # CheckpointError for a missing, damaged or unsafe file
    state = ck.get("state_dict", ck.get("model", ck))
    if not isinstance(state, dict):
        raise CheckpointError(path, "holds no state_dict of a ResNet")
    own = model.backbone.state_dict()
    found: dict = {}
    for k, v in state.items():
        if not isinstance(k, str) or not torch.is_tensor(v):
            continue
        for prefix in ("module.", "backbone."):
            k = k[len(prefix):] if k.startswith(prefix) else k
        if k in own:
            if own[k].shape != v.shape:
                raise CheckpointError(path, f"tensor {k} has shape {tuple(v.shape)}, but {model.backbone_name} "
                                            f"needs {tuple(own[k].shape)}: weights of another backbone?")
            found[k] = v
    if not found:
        raise CheckpointError(path, f"holds no tensor of a {model.backbone_name} backbone (conv1.weight, layer1...)")
    model.backbone.load_state_dict(found, strict=False)
    return len(found)


def build(spec: dict, weights: Optional[str] = None) -> ResNetPSP:
    """A :class:`ResNetPSP` from its :meth:`~ResNetPSP.spec`, its backbone loaded from ``weights``
    when given."""
    model = ResNetPSP(**spec)
    if weights:
        load_backbone_weights(model, weights)
    return model
