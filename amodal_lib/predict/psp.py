"""ResNet-PSP inference: instance records and their images in, visible masks (RLE) out
(``docs/design.md``, "The segmentation-input experiment").

The frame
    Each instance's ground-truth box (``box="amodal"``, the default: KINS's GT boxes are amodal
    and the paper crops "by the ground-truth box"; or ``"visible"``, the visible mask's box, for
    files without amodal labels), grown ``context`` times about its centre (1.2: a tenth of the
    box on each side), cut out of the RGB image with ``roi_align`` at ``crop`` x ``crop``
    (:func:`amodal_lib.data.images.crop_images`; the box's aspect is not kept, as in Mask R-CNN).
The output
    The network's probability, pasted back into the image (``crops.paste_masks``), thresholded
    at :data:`DEFAULT_THRESHOLD` and kept inside the ground-truth box. A mask is never empty:
    where no pixel passes the threshold, the pixels at the crop's largest probability are the
    mask (completion needs something to complete).

:func:`segment_instances` gives the masks; :func:`predict_crops` the crops themselves (figures,
validation); :func:`box_filled` is the baseline the network must beat (the whole box as the mask).
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from ..data import crops as C
from ..data import masks as M
from ..data import rle as R
from ..data.images import crop_images
from ..data.records import AnnotationSet, Instance
from ..errors import ArgumentError
from ..thresholds import FALLBACK

BOXES = ("amodal", "visible")
DEFAULT_BOX = "amodal"
DEFAULT_CONTEXT = 1.2
DEFAULT_THRESHOLD = FALLBACK   # 0.5 (every threshold's home: amodal_lib.thresholds)


def gt_boxes(instances: Sequence[Instance], box: str = DEFAULT_BOX) -> torch.Tensor:
    """(N, 4) xyxy ground-truth boxes: "amodal" (an error naming an instance without one) or
    "visible"."""
    if box not in BOXES:
        raise ValueError(f"box must be one of {', '.join(BOXES)}, got {box!r}")
    if box == "amodal":
        missing = [i.id for i in instances if i.amodal_box is None]
        if missing:
            raise ArgumentError(f"annotation {missing[0]} has no amodal box (modal-only data): crop by the visible "
                                "box instead (box='visible', --crop-box visible)")
    return C.frame_boxes(instances, box)


def crop_boxes(instances: Sequence[Instance], box: str = DEFAULT_BOX, context: float = DEFAULT_CONTEXT) -> torch.Tensor:
    """(N, 4) xyxy crop frames: the ground-truth boxes grown ``context`` times about their centres."""
    return C.scale_boxes(gt_boxes(instances, box), float(context))


def target_crops(instances: Sequence[Instance], frames: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size, size) uint8: each instance's visible mask in its crop frame (the training target)."""
    return (C.crop_masks(instances, "visible", frames, size) >= 0.5).to(torch.uint8)


@torch.no_grad()
def predict_crops(model, ann: AnnotationSet, instances: Sequence[Instance], box: Optional[str] = None,
                  batch_size: int = 256):
    """``(probs (N, S, S), frames (N, 4), images (N, 3, S, S))``: the visible-mask probability of
    each instance in its crop frame, with the crops it was computed from. ``box``: None for the
    model's own (the one it was trained with)."""
    frames = crop_boxes(instances, box or model.box, model.context)
    images = crop_images(ann, instances, frames, model.crop)
    dev = next(model.parameters()).device
    probs = torch.zeros(len(instances), model.crop, model.crop)
    model.eval()
    for a in range(0, len(instances), batch_size):
        probs[a:a + batch_size] = torch.sigmoid(model(images[a:a + batch_size].to(dev)).float())[:, 0].cpu()
    return probs, frames, images


def _box_rles(instances: Sequence[Instance], boxes: torch.Tensor) -> list:
    """Each xyxy box rasterised as an RLE of its instance's image (pixels whose centre it holds),
    encoded from the box alone."""
    out = []
    for inst, b in zip(instances, boxes.tolist()):
        c0, r0 = max(int(np.floor(b[0] + 0.5)), 0), max(int(np.floor(b[1] + 0.5)), 0)
        c1, r1 = min(int(np.ceil(b[2] - 0.5)), inst.width), min(int(np.ceil(b[3] - 0.5)), inst.height)
        window = np.ones((max(r1 - r0, 0), max(c1 - c0, 0)), bool)
        out.append(R.encode_windows([window], [(min(r0, inst.height), min(c0, inst.width))], inst.height,
                                    inst.width)[0])
    return out


def _never_empty(prob: torch.Tensor, frame: torch.Tensor, inst: Instance, box_rle) -> dict:
    """The pixels of the box at the crop's largest pasted probability (or the box's centre pixel)."""
    full = C.paste_probs(prob, frame.tolist(), inst.height, inst.width) * M.decode(box_rle)
    if full.max() > 0:
        return M.encode(full >= full.max())
    ys, xs = np.nonzero(M.decode(box_rle))
    m = np.zeros((inst.height, inst.width), np.uint8)
    if len(xs):
        m[int(np.median(ys)), int(np.median(xs))] = 1
    else:
        bx, by, bw, bh = M.to_bbox(inst.visible).tolist() if M.area(inst.visible) else (0, 0, 1, 1)
        m[min(int(by + bh / 2), inst.height - 1), min(int(bx + bw / 2), inst.width - 1)] = 1
    return M.encode(m)


def iter_segments(model, ann: AnnotationSet, instances: Optional[Sequence[Instance]] = None,
                  threshold: float = DEFAULT_THRESHOLD, box: Optional[str] = None, batch_size: int = 256,
                  chunk: int = 2048) -> Iterator[dict]:
    """:func:`segment_instances` ``chunk`` instances at a time, in order: yields {annotation id: RLE}
    per chunk (what a caller writes out as it goes)."""
    instances = list(ann.instances if instances is None else instances)
    for a in range(0, len(instances), chunk):
        part = instances[a:a + chunk]
        probs, frames, _ = predict_crops(model, ann, part, box, batch_size)
        inside = _box_rles(part, gt_boxes(part, box or model.box))
        pasted = C.paste_masks(probs, frames, part, threshold)
        out = {}
        for k, (inst, rle, b) in enumerate(zip(part, pasted, inside)):
            m = M.merge([rle, b], intersect=True)
            out[inst.id] = m if M.area(m) else _never_empty(probs[k], frames[k], inst, b)
        yield out


def segment_instances(model, ann: AnnotationSet, instances: Optional[Sequence[Instance]] = None,
                      threshold: float = DEFAULT_THRESHOLD, box: Optional[str] = None, batch_size: int = 256,
                      chunk: int = 2048, progress: bool = False) -> dict:
    """{annotation id: RLE}: each instance's predicted visible mask (module doc). ``ann`` gives
    the images (``ann.images_dir``); ``instances`` the ones to segment (default: all)."""
    from tqdm.auto import tqdm
    instances = list(ann.instances if instances is None else instances)
    out: dict = {}
    with tqdm(total=len(instances), desc="ResNet-PSP", unit="mask", disable=not progress, leave=False) as bar:
        for part in iter_segments(model, ann, instances, threshold, box, batch_size, chunk):
            out.update(part)
            bar.update(len(part))
    return out


def box_filled(instances: Sequence[Instance], box: str = DEFAULT_BOX) -> dict:
    """{annotation id: RLE}: the whole ground-truth box as the visible mask (the baseline)."""
    instances = list(instances)
    return {i.id: r for i, r in zip(instances, _box_rles(instances, gt_boxes(instances, box)))}


def visible_overlaps(by_id: dict, masks: dict) -> tuple:
    """(intersections, unions) float64 arrays of ``masks`` ({id: RLE}) with the visible masks of the
    instances ``by_id`` ({id: Instance}) they name."""
    inst = [by_id[k] for k in masks if k in by_id]
    pred = [masks[i.id] for i in inst]
    inter = np.array([M.area(M.merge([p, i.visible], intersect=True)) for p, i in zip(pred, inst)], np.float64)
    union = np.array([M.area(p) + i.visible_area for p, i in zip(pred, inst)], np.float64) - inter
    return inter, union


def overlap_iou(inter: np.ndarray, union: np.ndarray) -> dict:
    """{"n", "A" (pooled IoU, %), "B" (mean per-instance IoU, %)} of intersections and unions."""
    if not len(inter):
        return {"n": 0, "A": None, "B": None}
    return {"n": len(inter), "A": float(100 * inter.sum() / max(union.sum(), 1.0)),
            "B": float(100 * np.mean(inter / np.maximum(union, 1.0)))}


def visible_iou(ann: AnnotationSet, masks: dict) -> dict:
    """How well ``masks`` ({id: RLE}) match the ground-truth visible masks of ``ann``'s instances:
    {"n", "A" (pooled IoU, %), "B" (mean per-instance IoU, %)}."""
    wanted = {i.id for i in ann.instances}
    return overlap_iou(*visible_overlaps(ann.by_id(), {k: v for k, v in masks.items() if k in wanted}))
