"""Steps 5 to 7 of Amodal-VAE's completion (:mod:`amodal_lib.predict.amodal_vae`): the 28x28 crops
pasted into their image boxes, each combined with the visible evidence inside the instance's region,
and RLE-encoded from that region alone, never as a full frame.

    paste (``crops.iter_paste_regions``) -> the instance's region (:func:`instance_region`) ->
    combined with the visible evidence: the hard rule (:func:`combine_evidence`) or, for a segmenter's
    masks where the frame was fitted, soft evidence (:mod:`amodal_lib.predict.evidence`) ->
    RLE (``rle.encode_windows``)

:func:`paste_thresholds` cuts one paste at several thresholds: the masks' regions are decoded and the
evidence fused once, then each threshold is one comparison and one RLE encoding (the completion's
depth order reads its claims at a threshold of its own; the threshold search for a segmenter's masks
scores a dozen). :func:`paste_instances` is the one-threshold case.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..data import crops as C
from ..data import rle as R
from . import evidence as EV


def instance_region(inst, origin: tuple, shape: tuple, union_visible: bool = True, grow: int = 0) -> tuple:
    """Step 6a, where an instance's completion can be: ``(r0, r1, c0, c1)``, the pixels of its
    pasted box (``origin``, ``shape``) and, when it is joined with its visible mask, of the visible
    mask's box; ``grow`` pixels more on every side (within the image) where soft evidence is blurred
    in from around it. Outside it the completion is empty."""
    r0, c0 = origin
    r1, c1 = r0 + shape[0], c0 + shape[1]
    if union_visible and inst.visible_area:
        x, y, w, h = (int(v) for v in inst.visible_box)
        r0, c0, r1, c1 = min(r0, y), min(c0, x), max(r1, y + h), max(c1, x + w)
    if grow:
        r0, c0, r1, c1 = max(r0 - grow, 0), max(c0 - grow, 0), min(r1 + grow, inst.height), min(c1 + grow, inst.width)
    return r0, r1, c0, c1


def combine_evidence(probs: np.ndarray, threshold: float, visible: Optional[np.ndarray] = None,
                     allowed: Optional[np.ndarray] = None) -> np.ndarray:
    """Step 6b, for one instance, over its region (all arrays of the region's shape): its pasted
    probabilities ``probs`` combined with the visible evidence: binarised at ``threshold``
    (``>=``), joined with its visible mask ``visible`` (an amodal mask contains the visible one, so
    no visible pixel is lost to the 28x28 decoder; None: not joined) and kept inside ``allowed``
    (what may hide it; None: anywhere). Returns the bool mask of the region."""
    mask = probs >= np.float32(threshold)
    if visible is not None:
        mask |= visible.astype(bool)
    if allowed is not None:
        mask &= allowed.astype(bool)
    return mask


def _union(rles: list, window: tuple) -> np.ndarray:   # the union of RLEs over (r0, r1, c0, c1)
    out = np.zeros((window[1] - window[0], window[3] - window[2]), bool)
    for m in R.decode_windows(rles, [window] * len(rles)) if rles else []:
        out |= m.astype(bool)
    return out


def paste_instances(probs: torch.Tensor, boxes: torch.Tensor, instances: Sequence, threshold: float = 0.5,
                    union_visible: bool = True, allowed: Optional[list] = None, noise: float = 0.0,
                    neighbours: Optional[list] = None, beside: Optional[list] = None) -> dict:
    """Steps 5 to 7: {annotation id: RLE} of crops ``probs`` (N, 28, 28) pasted into their image
    boxes (``crops.iter_paste_regions``), each combined with its visible evidence inside its region
    (:func:`instance_region`, :func:`combine_evidence`: the visible mask and ``allowed[k]``, an RLE
    or None, decoded there only) and RLE-encoded from that region alone. With ``noise`` > 0 (pixels)
    the evidence is soft where the frame was fitted (``allowed[k]`` not None, the background known:
    :func:`amodal_lib.predict.evidence.fuse_window` over the region grown by the blur's reach, with
    ``neighbours[k]``, the image's other visible masks that may hide it, and ``beside[k]``, all of
    them, default ``neighbours[k]``); elsewhere the hard rule stays."""
    return paste_thresholds(probs, boxes, instances, (threshold,), union_visible, allowed, noise, neighbours,
                            beside)[0]


def paste_thresholds(probs: torch.Tensor, boxes: torch.Tensor, instances: Sequence, thresholds: Sequence[float],
                     union_visible: bool = True, allowed: Optional[list] = None, noise: float = 0.0,
                     neighbours: Optional[list] = None, beside: Optional[list] = None) -> list:
    """:func:`paste_instances` at each of ``thresholds``, one {annotation id: RLE} per threshold, in
    their order: one paste, one decoding of the evidence and one fusion, cut at each threshold (the
    same masks as a paste per threshold)."""
    thresholds = [float(t) for t in thresholds]
    joined = union_visible or noise > 0   # soft evidence always reads the instance's visible mask
    out = [[None] * len(instances) for _ in thresholds]
    for ks, origins, values in C.iter_paste_regions(probs, boxes, instances):
        insts = [instances[k] for k in ks]
        fences = [None if allowed is None else allowed[k] for k in ks]
        soft = [noise > 0 and f is not None for f in fences]
        regions = [instance_region(i, o, v.shape, joined, EV.margin(noise) if s else 0)
                   for i, o, v, s in zip(insts, origins, values, soft)]
        visible = R.decode_windows([i.visible for i in insts], regions) if joined else [None] * len(ks)
        clip = [(r, f) for r, f, s in zip(regions, fences, soft) if f is not None and not s]   # the hard rule's clip
        decoded = iter(R.decode_windows([f for _, f in clip], [r for r, _ in clip]))
        masks: list = [[] for _ in thresholds]
        for k, (r0, r1, c0, c1), (o0, o1), v, vis, fence, s in zip(ks, regions, origins, values, visible, fences, soft):
            p = np.zeros((r1 - r0, c1 - c0), np.float32)   # the probabilities over the region (0 off the box)
            p[o0 - r0:o0 - r0 + v.shape[0], o1 - c0:o1 - c0 + v.shape[1]] = v
            if s:   # the image's other visible masks there, the background trusted (a fitted frame)
                near = neighbours[k] if neighbours is not None else []
                every = near if beside is None else beside[k]   # all of them, those behind it too
                around = None if every == near else _union(every, (r0, r1, c0, c1))   # the same masks: decoded once
                scores = EV.fused_scores(p, vis, _union(near, (r0, r1, c0, c1)), noise, around)
                for m, t in zip(masks, thresholds):
                    m.append(EV.cut(scores, t))
            else:
                fenced = None if fence is None else next(decoded)
                for m, t in zip(masks, thresholds):
                    m.append(combine_evidence(p, t, vis if union_visible else None, fenced))
        h, w = insts[0].height, insts[0].width
        for o, m in zip(out, masks):
            for k, rle in zip(ks, R.encode_windows(m, [(r[0], r[2]) for r in regions], h, w)):
                o[k] = rle
    return [{inst.id: r for inst, r in zip(instances, o)} for o in out]
