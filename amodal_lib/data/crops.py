"""Crop-and-resize of instance masks to small square frames, and the inverse paste-back.

Crops use ``torchvision.ops.roi_align`` (``aligned=True``: pixel ``i`` covers ``[i, i+1)``),
batched over all instances of an image. Paste-back samples the crop at the centres of the
image pixels inside the box with ``grid_sample`` (``align_corners=False``), which is the exact
inverse mapping: a mask cropped in its own box and pasted back loses only what 28x28 cannot
hold (the ``oracle-28`` bound of every 28x28 method; ``docs/design.md``, "Crop frames").

Boxes here are ``xyxy`` float tensors in image pixels; records store ``xywh``.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, roi_align

from . import masks as M
from . import rle as R
from .records import AnnotationSet, Instance, group_by_image


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


def sample_window(box, height: int, width: int, pad: int = 1) -> tuple:
    """(c0, r0, c1, r1): the pixels of an image that bilinear samples inside the xyxy ``box`` read
    (its pixels, plus ``pad`` beyond each edge), within the image (at least one pixel)."""
    x1, y1, x2, y2 = box
    c0 = int(min(max(np.floor(x1) - 1, 0), width - 1))
    r0 = int(min(max(np.floor(y1) - 1, 0), height - 1))
    c1 = int(max(min(np.ceil(x2) + pad, width), c0 + 1))
    r1 = int(max(min(np.ceil(y2) + pad, height), r0 + 1))
    return c0, r0, c1, r1


def crop_masks(instances: Sequence[Instance], mask: str = "visible", boxes="visible", size: int = 28,
               sampling_ratio: int = 2, chunk: int = 256) -> torch.Tensor:
    """(N, size, size) float crops in [0, 1] of each instance's ``mask`` ("visible" or "amodal")
    in ``boxes``: "visible", "amodal", or an (N, 4) xyxy tensor."""
    if not len(instances):
        return torch.zeros(0, size, size)
    b = frame_boxes(instances, boxes) if isinstance(boxes, str) else torch.as_tensor(boxes, dtype=torch.float32)
    # Decode each mask's box (plus a pixel for bilinear sampling) straight from its RLE, then
    # roi_align the windows in batches of similar size: cost follows box area, never image area.
    rles = [getattr(inst, mask) for inst in instances]
    if any(r is None for r in rles):
        raise ValueError(f"an instance of image {instances[rles.index(None)].image_id} has no {mask} mask")
    cuts = [sample_window(box, inst.height, inst.width) for box, inst in zip(b.tolist(), instances)]
    windows = R.decode_windows(rles, [(r0, r1, c0, c1) for c0, r0, c1, r1 in cuts])
    offsets = torch.tensor([[c0, r0, c0, r0] for c0, r0, _, _ in cuts], dtype=torch.float32).reshape(-1, 4)
    order = sorted(range(len(instances)), key=lambda k: windows[k].size)
    out = torch.zeros(len(instances), size, size)
    for s in range(0, len(order), chunk):
        ks = order[s:s + chunk]
        hh = max(windows[k].shape[0] for k in ks)
        ww = max(windows[k].shape[1] for k in ks)
        batch = np.zeros((len(ks), hh, ww), np.uint8)
        for j, k in enumerate(ks):
            win = windows[k]
            wh, wc = win.shape
            batch[j, :wh, :wc] = win
            # roi_align replicates the last row/column of an image for samples just past it:
            # keep that at the image's own border, where the window is cut by the image
            if wc < ww:
                batch[j, :wh, wc] = win[:, -1]
            if wh < hh:
                batch[j, wh, :wc] = win[-1, :]
                if wc < ww:
                    batch[j, wh, wc] = win[-1, -1]
        rois = torch.cat([torch.arange(len(ks), dtype=torch.float32)[:, None], b[ks] - offsets[ks]], dim=1)
        out[ks] = roi_align(torch.from_numpy(batch).float()[:, None], rois, (size, size), 1.0, sampling_ratio,
                            aligned=True)[:, 0]
    return out


def context_windows(ann: AnnotationSet, instances: Sequence[Instance], scale: float = 3.0,
                    by_image: Optional[dict] = None):
    """What is known around each instance, from modal information only, as pixels: yields
    ``(k, roi, own, others)`` per instance ``k``: its visible box grown by ``scale`` (xyxy, relative
    to the window), and the window of the image that bilinear samples in that frame read
    (:func:`sample_window`) of its own visible mask and of the union of every other instance's
    visible mask in the image (pixels an occluder may hide), uint8.

    Each window is decoded from the RLEs of the instance and of the other instances whose boxes
    reach into it, never a whole image: the cost follows the frames' area. ``by_image``:
    ``ann.by_image()``, when the caller has it already.
    """
    by_image = ann.by_image() if by_image is None else by_image
    b = scale_boxes(frame_boxes(instances, "visible"), scale)
    for image_id, idx in group_by_image(instances, positions=True).items():
        members = list(by_image.get(image_id, []))
        pos = {m.id: j for j, m in enumerate(members)}
        for k in idx:
            if instances[k].id not in pos:
                pos[instances[k].id] = len(members)
                members.append(instances[k])
        boxes = np.array([m.visible_box for m in members], dtype=np.float64).reshape(-1, 4)
        parsed = R.runs_many([m.visible["counts"] for m in members])
        for k in idx:
            inst = instances[k]
            x1, y1, x2, y2 = b[k].tolist()
            c0, r0, c1, r1 = sample_window((x1, y1, x2, y2), inst.height, inst.width, pad=2)
            me = pos[inst.id]
            own = R.decode_window(members[me].visible, r0, r1, c0, c1, parsed[me])
            others = np.zeros_like(own)
            for j in np.flatnonzero((boxes[:, 0] < c1) & (boxes[:, 0] + boxes[:, 2] > c0) &
                                    (boxes[:, 1] < r1) & (boxes[:, 1] + boxes[:, 3] > r0)):
                if j != me:
                    others |= R.decode_window(members[j].visible, r0, r1, c0, c1, parsed[j])
            yield k, (x1 - c0, y1 - r0, x2 - c0, y2 - r0), own, others


def context_stack(own: np.ndarray, others: np.ndarray) -> torch.Tensor:
    """(1, 3, h, w) float32: the channels of :func:`context_crops` over one window (its own visible
    mask, the others', and ones: all of a window lies inside the image)."""
    win = torch.empty(1, 3, *own.shape)
    win[0, 0].copy_(torch.from_numpy(own))
    win[0, 1].copy_(torch.from_numpy(others))
    win[0, 2].fill_(1.0)
    return win


def context_crops(ann: AnnotationSet, instances: Sequence[Instance], scale: float = 3.0, size: int = 64
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """What is known around each instance, from modal information only (:func:`context_windows`).

    Returns ``(crops, boxes)``: crops (N, 3, size, size) in the frame of the visible box grown by
    ``scale`` (``boxes``, xyxy): channel 0 the instance's visible mask, channel 1 the union of
    every other instance's visible mask in the image (pixels an occluder may hide), channel 2
    the part of the frame inside the image (outside, nothing is known); the same values as
    aligning whole images, since the rest of an image is never sampled.
    """
    out = torch.zeros(len(instances), 3, size, size)
    for k, roi, own, others in context_windows(ann, instances, scale):
        out[k] = roi_align(context_stack(own, others), torch.tensor([[0.0, *roi]]), (size, size), 1.0, 2,
                           aligned=True)[0]
    return out, scale_boxes(frame_boxes(instances, "visible"), scale)


def paste_region(probs: torch.Tensor, box, height: int, width: int):
    """Crops (k, S, S) pasted into the pixels of one image box, batched over ``k``: each image
    pixel centre inside the box samples the crop bilinearly (the grid of ``roi_align(aligned=True)``).
    Returns ``(rows, cols, values)``: two slices of the image and a float32 array
    (k, len(rows), len(cols)); ``None`` when the box holds no pixel (the paste is then empty)."""
    x1, y1, x2, y2 = [float(v) for v in box]
    c0, c1 = max(int(np.floor(x1)), 0), min(int(np.ceil(x2)), width)
    r0, r1 = max(int(np.floor(y1)), 0), min(int(np.ceil(y2)), height)
    if c1 <= c0 or r1 <= r0 or x2 - x1 <= 0 or y2 - y1 <= 0:
        return None
    gx = (torch.arange(c0, c1, dtype=torch.float32) + 0.5 - x1) / (x2 - x1) * 2 - 1
    gy = (torch.arange(r0, r1, dtype=torch.float32) + 0.5 - y1) / (y2 - y1) * 2 - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
    p = torch.as_tensor(probs).detach().float().cpu()
    vals = F.grid_sample(p[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    return slice(r0, r1), slice(c0, c1), vals.numpy()


def paste_probs(prob: torch.Tensor, box, height: int, width: int) -> np.ndarray:
    """One (S, S) crop pasted into an (height, width) float image (zeros outside the box)."""
    full = np.zeros((height, width), np.float32)
    region = paste_region(torch.as_tensor(prob)[None], box, height, width)
    if region is not None:
        rows, cols, vals = region
        full[rows, cols] = vals[0]
    return full


def _regions(boxes: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Integer pixel ranges (c0, r0, c1, r1) of each box inside the image (possibly empty)."""
    b = boxes.numpy().astype(np.float64)
    c0 = np.clip(np.floor(b[:, 0]), 0, width).astype(int)
    r0 = np.clip(np.floor(b[:, 1]), 0, height).astype(int)
    c1 = np.clip(np.ceil(b[:, 2]), 0, width).astype(int)
    r1 = np.clip(np.ceil(b[:, 3]), 0, height).astype(int)
    return np.stack([c0, r0, np.maximum(c1, c0), np.maximum(r1, r0)], 1)


def iter_paste_regions(probs: torch.Tensor, boxes: torch.Tensor, instances: Sequence[Instance], chunk: int = 8):
    """Crops (N, S, S) pasted into the pixels of their image boxes (N, 4), a few at a time: yields
    ``(ks, origins, values)`` per batch of up to ``chunk`` instances of one image size, ``ks`` their
    indices, ``origins`` the (row, column) of each box's first pixel in its image and ``values`` the
    float32 arrays of the probabilities at the pixels of each box (inside the image).

    The same mapping as :func:`paste_probs`, batched: instances of one image size are sorted by
    box size and pasted ``chunk`` at a time with one ``grid_sample`` over a padded grid; only the
    boxes' pixels are ever held, never a full frame.
    """
    probs = probs.detach().cpu().float()
    boxes = torch.as_tensor(boxes).detach().cpu().float()
    by_size = defaultdict(list)
    for k, inst in enumerate(instances):
        by_size[(inst.height, inst.width)].append(k)
    for (h, w), idx in by_size.items():
        reg = _regions(boxes[idx], h, w)
        order = np.argsort((reg[:, 3] - reg[:, 1]) * (reg[:, 2] - reg[:, 0]), kind="stable")
        for s in range(0, len(idx), chunk):
            sel = order[s:s + chunk]
            ks = [idx[j] for j in sel]
            rg = reg[sel]
            hh = max(int((rg[:, 3] - rg[:, 1]).max()), 1)
            ww = max(int((rg[:, 2] - rg[:, 0]).max()), 1)
            bx = boxes[ks]
            bw = (bx[:, 2] - bx[:, 0]).clamp_min(1e-6)
            bh = (bx[:, 3] - bx[:, 1]).clamp_min(1e-6)
            cols = torch.from_numpy(rg[:, 0]).float()[:, None] + torch.arange(ww, dtype=torch.float32)[None] + 0.5
            rows = torch.from_numpy(rg[:, 1]).float()[:, None] + torch.arange(hh, dtype=torch.float32)[None] + 0.5
            gx = (cols - bx[:, 0:1]) / bw[:, None] * 2 - 1
            gy = (rows - bx[:, 1:2]) / bh[:, None] * 2 - 1
            grid = torch.stack([gx[:, None, :].expand(-1, hh, -1), gy[:, :, None].expand(-1, -1, ww)], dim=-1)
            vals = F.grid_sample(probs[ks][:, None], grid, mode="bilinear", padding_mode="zeros",
                                 align_corners=False)[:, 0].numpy()
            yield ks, [(int(r0), int(c0)) for c0, r0, _, _ in rg], \
                [vals[j, : r1 - r0, : c1 - c0] for j, (c0, r0, c1, r1) in enumerate(rg)]


def paste_masks(probs: torch.Tensor, boxes: torch.Tensor, instances: Sequence[Instance],
                threshold: float = 0.5, chunk: int = 8, union_visible: bool = False) -> list:
    """Crops (N, S, S) pasted back into each instance's image (:func:`iter_paste_regions`) and
    binarised at ``threshold`` (``>=``): one compressed RLE per instance, encoded from its box alone
    (:func:`amodal_lib.data.rle.encode_windows`); with ``union_visible`` joined with the instance's
    visible mask (an amodal mask contains the visible one, so a completion keeps every visible pixel).
    """
    out: list = [None] * len(instances)
    t = np.float32(threshold)
    for ks, origins, values in iter_paste_regions(probs, boxes, instances, chunk):
        h, w = instances[ks[0]].height, instances[ks[0]].width
        for k, rle in zip(ks, R.encode_windows([v >= t for v in values], origins, h, w)):
            out[k] = M.merge([rle, instances[k].visible]) if union_visible else rle
    return out


def oracle_masks(instances: Sequence[Instance], size: int = 28, threshold: float = 0.5) -> list:
    """The amodal mask cropped in its own box at ``size`` and pasted back: the bound of a
    ``size`` x ``size`` method (the ``oracle-28`` row)."""
    crops = crop_masks(instances, mask="amodal", boxes="amodal", size=size)
    return paste_masks(crops, frame_boxes(instances, "amodal"), instances, threshold)
