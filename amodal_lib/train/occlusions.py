"""Stage 2's simulated occlusions, batched on tensors, and where the simulated boxes lie in the image.

Stage 2 (``docs/design.md``, "Training stages") learns completion from full masks of unoccluded
instances with another instance's mask pasted over them: :func:`simulate_occlusions` places the
occluders (at their real relative scale, a random centre over the target), :func:`partial_inputs`
crops the result as the encoder sees it (visible-box frame, or the full box of the GT-box mode),
and :func:`sim_geometry` / :func:`geometry_of` say where the visible boxes lie in their images (the
transformer's ground-plane cue; :func:`amodal_lib.models.amodal_vae.box_geometry`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from ..data.corruption import corrupt_crops
from ..models.amodal_vae import S, box_geometry, mirror_boxes, warp_to_frame


def geometry_of(boxes: torch.Tensor, hw: torch.Tensor, flipped: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`box_geometry` of xyxy image boxes in images of sizes ``hw`` (N, 2), mirrored where
    ``flipped`` (the crops were flipped horizontally)."""
    if flipped is not None:
        boxes = torch.where(flipped[:, None], mirror_boxes(boxes, hw[:, 1]), boxes)
    return box_geometry(boxes, hw[:, 0], hw[:, 1])


def sim_geometry(sim: dict, full_box: torch.Tensor, hw: torch.Tensor, flipped: Optional[torch.Tensor] = None
                 ) -> torch.Tensor:
    """Geometry of the simulated visible boxes: ``sim["vis_box"]`` (in the full box) placed in the
    image where the (possibly flipped) full box lies."""
    if flipped is not None:
        full_box = torch.where(flipped[:, None], mirror_boxes(full_box, hw[:, 1]), full_box)
    wh = (full_box[:, 2:] - full_box[:, :2]).repeat(1, 2)
    return box_geometry(full_box[:, :2].repeat(1, 2) + sim["vis_box"] * wh, hw[:, 0], hw[:, 1])



def _mask_boxes(m: torch.Tensor, thr: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """xyxy boxes (in units of the frame, [0, 1]) of the pixels > thr of (B, S, S) masks, and
    which masks have any such pixel."""
    on = m > thr
    rows, cols = on.any(2), on.any(1)
    n = m.shape[-1]
    ar = torch.arange(n, device=m.device)
    big = n + 1

    def first_last(v):
        first = torch.where(v, ar, big).amin(1)
        last = torch.where(v, ar, -1).amax(1)
        return first, last

    x0, x1 = first_last(cols)
    y0, y1 = first_last(rows)
    ok = rows.any(1)
    box = torch.stack([x0, y0, x1 + 1, y1 + 1], 1).float() / n
    box = torch.where(ok[:, None], box, torch.tensor([0.0, 0.0, 1.0, 1.0], device=m.device))
    return box, ok


def simulate_occlusions(full: torch.Tensor, full_wh: torch.Tensor, occ: torch.Tensor, occ_wh: torch.Tensor,
                        max_occluded: float = 0.9, unoccluded_prob: float = 0.3, tries: int = 4) -> dict:
    """Occlude full masks with other instances' masks, batched (``docs/design.md``, "Training stages").

    ``full``: (B, S, S) full masks in their own box, ``full_wh`` (B, 2) that box in pixels;
    ``occ``/``occ_wh``: (B, S, S) occluder masks in their own box and its size. Each occluder is
    placed at its true relative scale (jittered, biased larger: occluders are nearer) with a random
    centre over the target's box (``affine_grid``/``grid_sample``). Each sample draws a target
    hidden fraction uniformly in [0, ``max_occluded``] and keeps, of ``tries`` placements (each with
    another occluder), the one closest to it that hides at most ``max_occluded`` and leaves a visible
    part; so the hidden fraction spreads evenly over 0-90 %. A share ``unoccluded_prob`` is left whole.

    Returns ``partial`` (B, S, S) = full * (1 - o), ``vis_box`` (B, 4) the visible box in the
    target frame ([0, 1]^2), ``full_rel`` (B, 4) the full box relative to the visible box (the
    transformer's target), ``occluded`` (B,) the hidden fraction, ``log_aspect`` (B,) of the
    visible box in pixels.
    """
    B, n, dev = len(full), full.shape[-1], full.device
    area = full.flatten(1).sum(1).clamp_min(1e-6)
    partial = full.clone()
    occlude = torch.rand(B, device=dev) >= unoccluded_prob
    want = torch.rand(B, device=dev) * max_occluded
    best = torch.full((B,), float("inf"), device=dev)
    frame = torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=dev).expand(B, 4)
    for t in range(tries):
        if t:
            occ, occ_wh = occ.roll(1, 0), occ_wh.roll(1, 0)  # another occluder
        rel = (occ_wh / full_wh.clamp_min(1.0)) * torch.exp((torch.rand(B, 2, device=dev) - 0.5) * 0.6
                                                           + torch.rand(B, 1, device=dev) * 0.4)
        rel = rel.clamp(0.15, 4.0)
        centre = torch.rand(B, 2, device=dev) * (1 + 0.5 * rel) - 0.25 * rel
        o = warp_to_frame(occ, torch.cat([centre - rel / 2, centre + rel / 2], 1), frame, n)
        cand = full * (1 - o)
        frac = 1 - cand.flatten(1).sum(1) / area
        _, ok = _mask_boxes(cand)
        dist = (frac - want).abs()
        good = occlude & ok & (frac <= max_occluded) & (dist < best)
        partial = torch.where(good[:, None, None], cand, partial)
        best = torch.where(good, dist, best)
    occluded = 1 - partial.flatten(1).sum(1) / area
    return {"partial": partial, "occluded": occluded, **visible_frames(partial, full_wh)}


def visible_frames(partial: torch.Tensor, full_wh: torch.Tensor) -> dict:
    """What the transformer learns from partial masks (B, S, S) in their full box (of ``full_wh``
    pixels): ``vis_box`` (B, 4), the visible box in the full box ([0, 1]^2); ``full_rel`` (B, 4),
    the full box relative to the visible box (its target); ``log_aspect`` (B,), of the visible box
    in pixels."""
    vis_box, _ = _mask_boxes(partial)
    vw, vh = vis_box[:, 2] - vis_box[:, 0], vis_box[:, 3] - vis_box[:, 1]
    full_rel = torch.stack([-vis_box[:, 0] / vw, -vis_box[:, 1] / vh, (1 - vis_box[:, 0]) / vw,
                            (1 - vis_box[:, 1]) / vh], 1)
    log_aspect = torch.log(vw * full_wh[:, 0].clamp_min(1.0)) - torch.log(vh * full_wh[:, 1].clamp_min(1.0))
    return {"vis_box": vis_box, "full_rel": full_rel, "log_aspect": log_aspect}


def corrupt_partial(sim: dict, full_wh: torch.Tensor, strength: torch.Tensor) -> dict:
    """``sim`` with its partial masks corrupted by a segmenter's errors of ``strength`` (B,) image pixels
    (:func:`amodal_lib.data.corruption.corrupt_crops`), their frames recomputed from what is left, and
    ``noise`` (B,): the strength. The target stays the clean full mask."""
    wh = full_wh.float().clamp_min(1.0)
    n = sim["partial"].shape[-1]
    clean = (sim["partial"] > 0.5).float()
    partial = corrupt_crops(sim["partial"], n / wh[:, 0], n / wh[:, 1], strength)
    # a segmenter's mask still shows the object: where the corruption left too little of it (IoU with the
    # clean mask below MIN_NOISY_IOU) or moved its box too far (box IoU below MIN_NOISY_BOX_IOU; a speck
    # far out, or a fragment left), the sample stays clean: such a box target is an outlier no frame fits
    inter = (partial * clean).flatten(1).sum(1)
    union = torch.maximum(partial, clean).flatten(1).sum(1).clamp_min(1.0)
    new_box, _ = _mask_boxes(partial)
    ok = (inter / union >= MIN_NOISY_IOU) & (box_iou(new_box, sim["vis_box"]).diag() >= MIN_NOISY_BOX_IOU)
    partial = torch.where(ok[:, None, None], partial, sim["partial"])
    strength = torch.where(ok, strength, torch.zeros_like(strength))
    return {**sim, "partial": partial, "noise": strength, **visible_frames(partial, full_wh)}


MIN_NOISY_IOU = 0.5
MIN_NOISY_BOX_IOU = 0.7


def partial_inputs(sim: dict, amodal_frame: torch.Tensor) -> torch.Tensor:
    """28x28 encoder inputs of simulated partial masks: cropped in their visible box, or (where
    ``amodal_frame``) in the full box, as the GT-amodal-box mode crops them."""
    p = sim["partial"]
    in_vis = warp_to_frame(p, torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=p.device).expand(len(p), 4),
                           sim["vis_box"], S)
    in_full = F.adaptive_avg_pool2d(p.unsqueeze(1), S)[:, 0]
    return torch.where(amodal_frame[:, None, None], in_full, in_vis)
