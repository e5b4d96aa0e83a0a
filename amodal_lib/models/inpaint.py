"""Partial convolutions (Liu, Reda, Shih, Wang, Tao, Catanzaro, ECCV 2018): the layer, a U-Net of
them, and the inpainting loss. The two inpainters of scene editing (supplementary 3.3) are such
networks; how they are trained is :mod:`amodal_lib.train.inpaint`, how they fill an image
:mod:`amodal_lib.predict.inpaint`.

The layer
    For a window whose mask ``M`` (1 = known) holds at least one known value,
    ``x' = W^T (X * M) * sum(1) / sum(M) + b``, else ``x' = 0``; the output mask is 1 where the
    window held a known value (the *mask update*): holes shrink layer by layer. ``sum(1)`` counts
    every entry of the window (channels x kernel area). The mask is one channel shared by all
    input channels, or one per input channel (``mask_channels=in_channels``: the instance
    inpainter's class-label channel is known inside the hole, its colour channels are not).
The network (:class:`PConvUNet`)
    Liu et al.'s U-Net at a configurable depth: encoder layers of stride 2 with kernels 7, 5, 5,
    3, 3, ... and channels ``width * (1, 2, 4, 8, 8, ...)``, ReLU, batch norm after all but the
    first; decoder layers upsample features and masks (nearest, x2), join the encoder's features
    and masks of that scale (a mask per channel), apply a 3x3 partial convolution, batch norm and LeakyReLU(0.2); the
    last one joins the input image and mask and gives the image (no norm, no activation).
    The paper's 512x512 net has depth 8 and width 64; the profiles set both.
The loss (:class:`InpaintingLoss`)
    Liu et al.'s ``L = 1 L_valid + 6 L_hole + 0.05 L_perceptual + 120 (L_style_out + L_style_comp)
    + 0.1 L_tv``. ``L_valid`` and ``L_hole`` (L1 on the known pixels and in the hole, divided by
    the number of values) and ``L_tv`` (total variation of the composite on the hole dilated by
    one pixel) need no pretrained network. ``L_perceptual`` and ``L_style`` compare features of
    the output and of the composite with the target's: Liu et al. take VGG-16's pool1-pool3 with
    ImageNet weights. Those weights cannot be downloaded here (nothing is, at run time), so by
    default the features are **fixed, hand-made ones** (:class:`FixedFeatures`): the image and its
    horizontal and vertical differences at three scales (1, 1/2, 1/4). The perceptual term is
    then a multi-scale L1 on colour and edges, the style term matches the Gram matrices (the
    colour / edge co-variation) of those features. A user who has the weights passes a local
    file (torchvision's ``vgg16`` state dict, e.g. ``vgg16-397923af.pth``; the ``features.*``
    entries suffice) as ``vgg_weights``, and the paper's loss is used (:func:`load_vgg16_features`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, MissingCheckpointError
from .weights import load_checkpoint

FILLS = ("none", "smooth", "telea", "ns")   # what the net's output is added to (module doc)
KERNELS = (7, 5, 5, 3)      # encoder kernel sizes; deeper layers use 3
LOSS_WEIGHTS = {"valid": 1.0, "hole": 6.0, "perceptual": 0.05, "style": 120.0, "tv": 0.1}   # Liu et al.


# --------------------------------------------------------------------------- the layer
class PartialConv2d(nn.Conv2d):
    """A convolution over the known values only, renormalised by how many a window holds, with
    the mask update (module doc). ``forward(x, mask) -> (y, new_mask)``; ``mask`` is (B, 1, H, W)
    or (B, mask_channels, H, W) in {0, 1}; ``new_mask`` is (B, 1, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, mask_channels: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        if mask_channels not in (1, in_channels):
            raise ValueError(f"mask_channels must be 1 or in_channels ({in_channels}), got {mask_channels}")
        self.mask_channels = int(mask_channels)
        k = self.kernel_size
        self.window = float(self.mask_channels * k[0] * k[1])   # sum(1): entries of a window

    def mask_sums(self, mask: torch.Tensor) -> torch.Tensor:
        """sum(M) over each window: (B, 1, H', W')."""
        m = mask.sum(1, keepdim=True) if mask.shape[1] > 1 else mask
        k = self.kernel_size
        return F.avg_pool2d(m, k, self.stride, self.padding, count_include_pad=True) * (k[0] * k[1])

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        if mask.shape[1] not in (1, self.mask_channels):
            raise ValueError(f"mask has {mask.shape[1]} channels; this layer takes 1 or {self.mask_channels}")
        with torch.no_grad():
            m = mask.to(x.dtype)
            if self.mask_channels > 1 and m.shape[1] == 1:
                m = m.expand(-1, self.mask_channels, -1, -1)
            sums = self.mask_sums(m)
            update = (sums > 0.5).to(x.dtype)
            ratio = self.window / sums.clamp(min=1.0) * update
        raw = F.conv2d(x * m, self.weight, None, self.stride, self.padding)
        out = raw * ratio
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1) * update
        return out, update


# --------------------------------------------------------------------------- the network
class _Encode(nn.Module):
    def __init__(self, cin, cout, k, bn: bool, mask_channels: int = 1):
        super().__init__()
        self.conv = PartialConv2d(cin, cout, k, stride=2, padding=k // 2, bias=not bn, mask_channels=mask_channels)
        self.bn = nn.BatchNorm2d(cout) if bn else nn.Identity()

    def forward(self, x, m):
        y, m = self.conv(x, m)
        return F.relu(self.bn(y)), m


class _Decode(nn.Module):
    def __init__(self, cin, cout, last: bool, mask_channels: int = 1):
        super().__init__()
        self.conv = PartialConv2d(cin, cout, 3, padding=1, bias=last, mask_channels=mask_channels)
        self.bn = nn.Identity() if last else nn.BatchNorm2d(cout)
        self.last = last

    def forward(self, x, m):
        y, m = self.conv(x, m)
        return (y if self.last else F.leaky_relu(self.bn(y), 0.2)), m


class PConvUNet(nn.Module):
    """Liu et al.'s partial-convolution U-Net (module doc).

    ``in_channels``: image channels (3) plus any conditioning channels (the instance inpainter's
    class label; the background inpainter's ``guides``, classical fills of the hole that the caller
    appends, :func:`amodal_lib.train.inpaint.background_inputs`); ``out_channels``: 3; ``mask_channels``: 1 (one mask for every input channel) or
    ``in_channels`` (a mask per channel). ``forward(x, mask) -> image`` in [0, 1] space (not
    clamped: the loss sees the raw output); the input's sides must be multiples of ``2**depth``
    (:meth:`multiple`; :func:`amodal_lib.predict.inpaint.run_padded` pads)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 64, depth: int = 8,
                 mask_channels: int = 1, fill: str = "none", guides: Sequence[str] = ()):
        super().__init__()
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
        bad = [g for g in guides if g not in FILLS[1:]]
        if bad:
            raise ValueError(f"guides must be among {FILLS[1:]}, got {bad}")
        self.fill, self.guides = fill, tuple(guides)
        if depth < 2:
            raise ValueError(f"depth must be at least 2, got {depth}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.width, self.depth, self.mask_channels = int(width), int(depth), int(mask_channels)
        ch = [self.width * min(2 ** i, 8) for i in range(depth)]
        ks = [KERNELS[i] if i < len(KERNELS) else 3 for i in range(depth)]
        self.enc = nn.ModuleList()
        for i in range(depth):
            cin = in_channels if i == 0 else ch[i - 1]
            self.enc.append(_Encode(cin, ch[i], ks[i], bn=i > 0, mask_channels=mask_channels if i == 0 else 1))
        self.dec = nn.ModuleList()
        for i in reversed(range(depth)):
            skip = in_channels if i == 0 else ch[i - 1]
            cout = out_channels if i == 0 else ch[i - 1]
            self.dec.append(_Decode(ch[i] + skip, cout, last=i == 0, mask_channels=ch[i] + skip))
        if self.fill != "none":   # starts as the fill it adds to
            nn.init.zeros_(self.dec[-1].conv.weight)
            nn.init.zeros_(self.dec[-1].conv.bias)

    @property
    def multiple(self) -> int:
        return 2 ** self.depth

    def forward(self, x: torch.Tensor, mask: torch.Tensor, base: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The output image; with ``fill`` other than "none", added to ``base`` (the fill of the hole it
        refines; default for "smooth": :func:`smooth_fill` of the known pixels)."""
        feats, masks = [x], [mask]
        h, m = x, mask
        for layer in self.enc:
            h, m = layer(h, m)
            feats.append(h)
            masks.append(m)
        for j, layer in enumerate(self.dec):
            skip_f, skip_m = feats[-2 - j], masks[-2 - j]
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            m = F.interpolate(m, scale_factor=2, mode="nearest")
            # features and masks joined channel by channel (a mask per channel: the decoder's own,
            # the skip's, or the input's per-channel mask at the last layer)
            m = torch.cat([m.expand(-1, h.shape[1], -1, -1), skip_m.expand(-1, skip_f.shape[1], -1, -1)], 1)
            h = torch.cat([h, skip_f], 1)
            h, m = layer(h, m)
        if self.fill != "none":
            if base is None:
                if self.fill != "smooth":
                    raise ValueError(f"a net with fill={self.fill!r} needs the base fill it refines")
                base = smooth_fill(x[:, : self.out_channels], mask if mask.shape[1] == 1 else mask[:, :1])
            h = h + base
        return h

    def spec(self) -> dict:
        """How to rebuild this network (stored in its checkpoint)."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "width": self.width,
                "depth": self.depth, "mask_channels": self.mask_channels, "fill": self.fill, "guides": list(self.guides)}


@torch.no_grad()
def pyramid_fill(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """A smooth fill of the unknown pixels from the known ones (push-pull: known-weighted means down
    an image pyramid, then each level's holes filled from the coarser level, bilinearly). Known
    pixels keep their values. ``x`` (B, C, H, W), ``known`` (B, 1, H, W) in {0, 1}."""
    levels = [(x * known, known)]
    while min(levels[-1][0].shape[-2:]) > 1 and bool((levels[-1][1] < 1).any()):
        v, m = levels[-1]
        s = F.avg_pool2d(v, 2, ceil_mode=True)
        w = F.avg_pool2d(m, 2, ceil_mode=True)
        levels.append((s / w.clamp(min=1e-6) * (w > 0), (w > 0).to(x.dtype)))
    v, m = levels[-1]
    fill = v
    for v, m in reversed(levels[:-1]):
        up = F.interpolate(fill, size=v.shape[-2:], mode="bilinear", align_corners=False)
        fill = m * v + (1 - m) * up
    return fill


@torch.no_grad()
def smooth_fill(x: torch.Tensor, known: torch.Tensor, iterations: int = 20) -> torch.Tensor:
    """:func:`pyramid_fill` relaxed towards the harmonic (membrane) interpolant of the known pixels by
    ``iterations`` Jacobi sweeps of the 4-neighbour mean over the unknown ones."""
    f = pyramid_fill(x, known)
    c = x.shape[1]
    k = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], dtype=x.dtype, device=x.device)
    k = k.view(1, 1, 3, 3).repeat(c, 1, 1, 1)
    for _ in range(iterations):
        f = known * f + (1 - known) * F.conv2d(F.pad(f, (1, 1, 1, 1), mode="replicate"), k, groups=c)
    return f


# --------------------------------------------------------------------------- features for the loss
class FixedFeatures(nn.Module):
    """What replaces VGG-16 when no weights file is given: the image and its horizontal and
    vertical differences, at scales 1, 1/2 and 1/4 (three feature maps of 9 channels). No
    parameter is learned or downloaded."""

    def forward(self, x: torch.Tensor) -> list:
        out = []
        for s in range(3):
            if s:
                x = F.avg_pool2d(x, 2)
            dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
            dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
            out.append(torch.cat([x, dx, dy], 1))
        return out


class VGG16Features(nn.Module):
    """VGG-16's pool1, pool2 and pool3 (Liu et al.'s perceptual and style features), frozen,
    on ImageNet-normalised input."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.blocks = nn.ModuleList([features[:5], features[5:10], features[10:17]])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list:
        h = (x - self.mean) / self.std
        out = []
        for b in self.blocks:
            h = b(h)
            out.append(h)
        return out


def load_vgg16_features(path) -> VGG16Features:
    """VGG-16's feature layers from a local weights file (torchvision's ``vgg16`` state dict, or
    just its ``features.*`` entries), loaded with ``weights_only=True``. A missing file or one that
    is not such a state dict raises :class:`~amodal_lib.errors.CheckpointError` naming it."""
    from torchvision.models import vgg16
    p = Path(path)
    if not p.is_file():
        raise MissingCheckpointError(p, "no such VGG-16 weights file")
    state = load_checkpoint(p)   # one CheckpointError naming a file that is not a checkpoint (or a dict)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    feats = {k[len("features."):]: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
    net = vgg16(weights=None).features
    try:
        net.load_state_dict(feats, strict=True)
    except RuntimeError as e:
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise CheckpointError(p, f"not VGG-16 weights (torchvision's layout): {first}") from None
    return VGG16Features(net).eval()


def gram(f: torch.Tensor) -> torch.Tensor:
    """(B, C, C) Gram matrix of features (B, C, H, W), divided by C*H*W (Liu et al.'s K_p)."""
    b, c, h, w = f.shape
    f = f.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def total_variation(comp: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Liu et al.'s L_tv: L1 between neighbouring pixels of the composite where both lie in the hole
    dilated by one pixel; divided by the number of values."""
    region = F.max_pool2d(hole, 3, 1, 1)
    h = region[..., :, 1:] * region[..., :, :-1]
    v = region[..., 1:, :] * region[..., :-1, :]
    n = comp.numel()
    return ((comp[..., :, 1:] - comp[..., :, :-1]).abs() * h).sum() / n + \
        ((comp[..., 1:, :] - comp[..., :-1, :]).abs() * v).sum() / n


class InpaintingLoss(nn.Module):
    """Liu et al.'s loss (module doc). ``forward(out, target, known) -> dict`` of scalar terms with
    the weighted sum under ``"loss"``; ``known`` is (B, 1, H, W), 1 on the known pixels.
    ``features``: :class:`FixedFeatures` (default) or :class:`VGG16Features`."""

    def __init__(self, features: Optional[nn.Module] = None, weights: Optional[dict] = None):
        super().__init__()
        self.features = features if features is not None else FixedFeatures()
        self.weights = {**LOSS_WEIGHTS, **(weights or {})}

    def forward(self, out: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> dict:
        hole = 1.0 - known
        comp = known * target + hole * out
        n = out.numel()
        valid = (known * (out - target)).abs().sum() / n
        hole_l1 = (hole * (out - target)).abs().sum() / n
        f_out, f_comp, f_gt = self.features(out), self.features(comp), self.features(target)
        f_gt = [f.detach() for f in f_gt]
        perceptual = sum(F.l1_loss(a, g) + F.l1_loss(c, g) for a, c, g in zip(f_out, f_comp, f_gt))
        style = sum(F.l1_loss(gram(a), gram(g)) + F.l1_loss(gram(c), gram(g)) for a, c, g in zip(f_out, f_comp, f_gt))
        tv = total_variation(comp, hole)
        w = self.weights
        loss = (w["valid"] * valid + w["hole"] * hole_l1 + w["perceptual"] * perceptual + w["style"] * style
                + w["tv"] * tv)
        return {"loss": loss, "valid": valid, "hole": hole_l1, "perceptual": perceptual, "style": style, "tv": tv}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__: Sequence[str] = ("count_parameters", "smooth_fill", "pyramid_fill", "FILLS", "PartialConv2d", "PConvUNet", "FixedFeatures", "VGG16Features", "load_vgg16_features",
                          "InpaintingLoss", "gram", "total_variation", "LOSS_WEIGHTS")
