"""Crop-and-resize of instance masks to small square frames, and the inverse paste-back.

Crops use ``torchvision.ops.roi_align`` (``aligned=True``: pixel ``i`` covers ``[i, i+1)``),
batched over all instances of an image. Paste-back samples the crop at the centres of the
image pixels inside the box with ``grid_sample`` (``align_corners=False``), which is the exact
inverse mapping: a mask cropped in its own box and pasted back loses only what 28x28 cannot
hold (the ``oracle-28`` bound of every 28x28 method).

Boxes here are ``xyxy`` float tensors in image pixels; records store ``xywh``.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, roi_align

from . import masks as M
from .records import AnnotationSet, Instance


def xywh_to_xyxy(boxes) -> torch.Tensor:
    return box_convert(torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4), "xywh", "xyxy")


def frame_boxes(instances: Sequence[Instance], frame: str = "visible") -> torch.Tensor:
    """(N, 4) xyxy boxes of the instances' visible or amodal masks."""
    if frame == "visible":
        return xywh_to_xyxy([i.visible_box for i in instances])
    if frame == "amodal":
        missing = [i.id for i in instances if i.amodal_box is None]
        if missing:
            raise ValueError(f"instance {missing[0]} has no amodal box (modal-only data): use frame='visible'")
        return xywh_to_xyxy([i.amodal_box for i in instances])
    raise ValueError(f"frame must be 'visible' or 'amodal', got {frame!r}")


def scale_boxes(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    """Boxes grown (or shrunk) by ``factor`` about their centres."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    return torch.cat([c - half, c + half], dim=1)


def _groups(instances: Sequence[Instance]) -> dict:
    g = defaultdict(list)
    for k, inst in enumerate(instances):
        g[inst.image_id].append(k)
    return g


def crop_masks(instances: Sequence[Instance], mask: str = "visible", boxes="visible", size: int = 28,
               sampling_ratio: int = 2) -> torch.Tensor:
    """(N, size, size) float crops in [0, 1] of each instance's ``mask`` ("visible" or "amodal")
    in ``boxes``: "visible", "amodal", or an (N, 4) xyxy tensor."""
    if not len(instances):
        return torch.zeros(0, size, size)
    b = frame_boxes(instances, boxes) if isinstance(boxes, str) else torch.as_tensor(boxes, dtype=torch.float32)
    out = torch.zeros(len(instances), size, size)
    for idx in _groups(instances).values():
        rles = [getattr(instances[k], mask) for k in idx]
        if any(r is None for r in rles):
            raise ValueError(f"an instance of image {instances[idx[0]].image_id} has no {mask} mask")
        stack = torch.from_numpy(M.decode_many(rles)).float().unsqueeze(1)
        rois = torch.cat([torch.arange(len(idx), dtype=torch.float32)[:, None], b[idx]], dim=1)
        out[idx] = roi_align(stack, rois, (size, size), 1.0, sampling_ratio, aligned=True)[:, 0]
    return out


def context_crops(ann: AnnotationSet, instances: Sequence[Instance], scale: float = 3.0, size: int = 64
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """What is known around each instance, from modal information only.

    Returns ``(crops, boxes)``: crops (N, 3, size, size) in the frame of the visible box grown by
    ``scale`` (``boxes``, xyxy): channel 0 the instance's visible mask, channel 1 the union of
    every other instance's visible mask in the image (pixels an occluder may hide), channel 2
    the part of the frame inside the image (outside, nothing is known).
    """
    by_image = ann.by_image()
    b = scale_boxes(frame_boxes(instances, "visible"), scale)
    out = torch.zeros(len(instances), 3, size, size)
    for image_id, idx in _groups(instances).items():
        members = by_image.get(image_id, [instances[k] for k in idx])
        vis = torch.from_numpy(M.decode_many([m.visible for m in members])).float()
        pos = {m.id: j for j, m in enumerate(members)}
        total = vis.sum(0)
        inside = torch.ones_like(total)
        chans = []
        for k in idx:
            own = vis[pos[instances[k].id]] if instances[k].id in pos else torch.from_numpy(
                M.decode(instances[k].visible)).float()
            chans.append(torch.stack([own, (total - own).clamp(0, 1), inside]))
        stack = torch.stack(chans)
        rois = torch.cat([torch.arange(len(idx), dtype=torch.float32)[:, None], b[idx]], dim=1)
        out[idx] = roi_align(stack, rois, (size, size), 1.0, 2, aligned=True)
    return out, b


def paste_probs(prob: torch.Tensor, box, height: int, width: int) -> np.ndarray:
    """One (S, S) crop pasted into an (height, width) float image (zeros outside the box)."""
    full = np.zeros((height, width), np.float32)
    x1, y1, x2, y2 = [float(v) for v in box]
    c0, c1 = max(int(np.floor(x1)), 0), min(int(np.ceil(x2)), width)
    r0, r1 = max(int(np.floor(y1)), 0), min(int(np.ceil(y2)), height)
    if c1 <= c0 or r1 <= r0 or x2 - x1 <= 0 or y2 - y1 <= 0:
        return full
    gx = (torch.arange(c0, c1, dtype=torch.float32) + 0.5 - x1) / (x2 - x1) * 2 - 1
    gy = (torch.arange(r0, r1, dtype=torch.float32) + 0.5 - y1) / (y2 - y1) * 2 - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
    vals = F.grid_sample(prob.float()[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    full[r0:r1, c0:c1] = vals[0, 0].numpy()
    return full


def paste_masks(probs: torch.Tensor, boxes: torch.Tensor, instances: Sequence[Instance],
                threshold: float = 0.5) -> list:
    """Crops (N, S, S) pasted back into each instance's image and binarised at ``threshold``:
    one compressed RLE per instance."""
    probs = probs.detach().cpu()
    boxes = torch.as_tensor(boxes).detach().cpu()
    return [M.encode(paste_probs(probs[k], boxes[k], inst.height, inst.width) >= threshold)
            for k, inst in enumerate(instances)]


def oracle_masks(instances: Sequence[Instance], size: int = 28, threshold: float = 0.5) -> list:
    """The amodal mask cropped in its own box at ``size`` and pasted back: the bound of a
    ``size`` x ``size`` method (the ``oracle-28`` row)."""
    crops = crop_masks(instances, mask="amodal", boxes="amodal", size=size)
    return paste_masks(crops, frame_boxes(instances, "amodal"), instances, threshold)
