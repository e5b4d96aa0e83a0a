"""Rendering an instance in a new pose with a trained SPADE renderer, and pasting it back.

Records and images in, images out (``docs/design.md``, "Changing an instance's pose"):

- :func:`instance_crops`: each instance's RGB and mask in its **square crop**, the visible box's
  longer side times ``pad`` about its centre (the object keeps its aspect ratio), at the
  renderer's crop size (:mod:`amodal_lib.data.images`, :mod:`amodal_lib.data.crops`).
- :func:`render_crops`: masks of new poses (in those crops) drawn with each instance's own
  appearance (the encoder's posterior mean of its pixels): RGB in [0, 1] and alpha.
- :func:`composite_into`: a rendering pasted into the scene: the old object's pixels are filled
  first, by ``fill(image, hole)`` when one is given (e.g. a learned inpainter), else by
  :func:`local_fill`; the rendering is blended in through its alpha; the instances that hide
  the object (its ``occluders``) are put back on top, so the object stays behind them.
- :func:`render_instance`: all of it for one instance and one new mask (an image-size mask, or a
  crop-size mask in the instance's square crop): what ``amodal render`` does.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ..data import crops as C
from ..data import masks as M
from ..data.images import crop_images, read_image
from ..data.records import AnnotationSet, Instance

Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]   # (HxWx3 uint8 image, HxW bool hole) -> HxWx3 uint8


# --------------------------------------------------------------------------- crops
def square_boxes(boxes: torch.Tensor, pad: float) -> torch.Tensor:
    """xyxy squares about the boxes' centres, of side ``pad`` times their longer side."""
    b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    c = (b[:, :2] + b[:, 2:]) / 2
    half = (b[:, 2:] - b[:, :2]).max(1).values.clamp_min(1.0)[:, None] * pad / 2
    return torch.cat([c - half, c + half], dim=1)


def instance_crops(ann: AnnotationSet, instances: Sequence[Instance], size: int, pad: float,
                   mask: str = "visible"):
    """``(rgb, masks, boxes)``: (N, 3, S, S) in [0, 1], (N, S, S) in {0, 1} and the (N, 4) xyxy
    square crops (:func:`square_boxes` of the visible boxes)."""
    insts = list(instances)
    if not insts:
        return torch.zeros(0, 3, size, size), torch.zeros(0, size, size), torch.zeros(0, 4)
    boxes = square_boxes(C.frame_boxes(insts, "visible"), pad)
    rgb = crop_images(ann, insts, boxes, size)
    masks = (C.crop_masks(insts, mask, boxes, size) >= 0.5).float()
    return rgb, masks, boxes


def crop_rgb(image: np.ndarray, boxes, size: int) -> torch.Tensor:
    """(N, 3, S, S) crops in [0, 1] of one HxWx3 uint8 image in xyxy ``boxes`` (as
    :func:`amodal_lib.data.images.crop_images`, for an image already in memory)."""
    img = torch.from_numpy(np.array(image, dtype=np.float32, copy=True)).permute(2, 0, 1)[None] / 255.0
    b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return roi_align(img, torch.cat([torch.zeros(len(b), 1), b], dim=1), (size, size), 1.0, 2, aligned=True)


def crop_mask_image(mask: np.ndarray, box, size: int) -> torch.Tensor:
    """An image-size mask (HxW) cropped in an xyxy box at ``size`` x ``size``, binarised at 0.5."""
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    roi = torch.cat([torch.zeros(1, 1), torch.as_tensor(box, dtype=torch.float32).reshape(1, 4)], dim=1)
    return (roi_align(m, roi, (size, size), 1.0, 2, aligned=True)[0, 0] >= 0.5).float()


def mask_box(mask: np.ndarray) -> torch.Tensor:
    """The xyxy box of an image-size mask's pixels (raises ValueError for an empty mask)."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        raise ValueError("the mask is empty")
    return torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)


# --------------------------------------------------------------------------- rendering
@torch.no_grad()
def render_crops(model, masks: torch.Tensor, rgb: torch.Tensor, appearance_masks: torch.Tensor,
                 batch_size: int = 256):
    """``(rgb, alpha)``: each object of ``rgb`` ((N, 3, S, S) in [0, 1], in ``appearance_masks``)
    drawn in ``masks`` ((N, S, S)); RGB (N, 3, S, S) in [0, 1], alpha (N, S, S) in [0, 1]."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    outs, alphas = [], []
    try:
        for s in range(0, len(masks), batch_size):
            sl = slice(s, s + batch_size)
            out, alpha = model.render(masks[sl].to(dev), rgb[sl].to(dev) * 2 - 1, appearance_masks[sl].to(dev))
            outs.append(((out + 1) / 2).clamp(0, 1).cpu())
            alphas.append(alpha.cpu())
    finally:
        model.train(was)
    S = masks.shape[-1]
    if not outs:
        return torch.zeros(0, 3, S, S), torch.zeros(0, S, S)
    return torch.cat(outs), torch.cat(alphas)


# --------------------------------------------------------------------------- paste-back
def local_fill(image: np.ndarray, hole: np.ndarray, margin: int = 6, smooth: int = 8) -> np.ndarray:
    """``image`` with the ``hole`` pixels filled from around them: onion-peel (each ring of the
    hole takes the mean of its known 3x3 neighbours), then ``smooth`` rounds of 3x3 averaging
    inside the hole. Works in the hole's box grown by ``margin`` pixels (grey where nothing
    around is known)."""
    hole = np.asarray(hole, bool)
    out = np.array(image, copy=True)
    if not hole.any():
        return out
    H, W = hole.shape
    ys, xs = np.nonzero(hole)
    r0, r1 = max(ys.min() - margin, 0), min(ys.max() + 1 + margin, H)
    c0, c1 = max(xs.min() - margin, 0), min(xs.max() + 1 + margin, W)
    x = torch.from_numpy(out[r0:r1, c0:c1].astype(np.float32)).permute(2, 0, 1)[None]
    h = torch.from_numpy(hole[r0:r1, c0:c1])[None, None]
    known = (~h).float()
    if known.sum() == 0:
        out[r0:r1, c0:c1][hole[r0:r1, c0:c1]] = 128
        return out
    x = x * known

    def mean3(t):
        return F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=False)
    while known.min() == 0:
        s, c = mean3(x * known), mean3(known)
        new = (c > 0) & (known == 0)
        x = torch.where(new, s / c.clamp_min(1e-6), x)
        known = known + new.float()
    for _ in range(smooth):
        x = torch.where(h, mean3(x), x)
    filled = x[0].permute(1, 2, 0).round().clamp(0, 255).numpy().astype(np.uint8)
    win = out[r0:r1, c0:c1]
    win[hole[r0:r1, c0:c1]] = filled[hole[r0:r1, c0:c1]]
    return out


def composite_into(image: np.ndarray, box, rgb: torch.Tensor, alpha: torch.Tensor, hole: np.ndarray,
                   keep: Optional[np.ndarray] = None, fill: Optional[Fill] = None) -> np.ndarray:
    """The scene with the ``hole`` (the old object) filled (``fill(image, hole)``, else
    :func:`local_fill`), a rendering ((3, S, S) RGB and (S, S) alpha, in [0, 1]) blended in through
    its alpha in the xyxy ``box``, and the ``keep`` pixels (what hides the object) restored on top."""
    H, W = image.shape[:2]
    hole = np.asarray(hole, bool)
    bg = (fill or local_fill)(image, hole)
    if bg.shape != image.shape:
        raise ValueError(f"the background fill returned a {bg.shape} image for a {image.shape} one")
    out = bg.astype(np.float32)
    region = C.paste_region(torch.cat([rgb.float(), alpha.float()[None]]), box, H, W)
    if region is not None:
        rows, cols, vals = region
        a = vals[3][..., None]
        out[rows, cols] = 255.0 * np.moveaxis(vals[:3], 0, -1) * a + out[rows, cols] * (1 - a)
    out = out.round().clip(0, 255).astype(np.uint8)
    if keep is not None:
        keep = np.asarray(keep, bool)
        out[keep] = image[keep]
    return out


def occluder_pixels(ann: AnnotationSet, inst: Instance) -> Optional[np.ndarray]:
    """The union of the visible masks of what hides ``inst`` (its ``occluders``; for modal-only
    data, what touches it), or None."""
    by_id = ann.by_id()
    rles = [by_id[o].visible for o in inst.occluders if o in by_id]
    return M.decode(M.merge(rles)).astype(bool) if rles else None


def render_instance(model, ann: AnnotationSet, inst: Instance, new_mask, box=None, image: Optional[np.ndarray] = None,
                    fill: Optional[Fill] = None) -> dict:
    """One instance drawn in a new pose and pasted back into its scene.

    ``new_mask``: an image-size (HxW) mask of the new pose (its crop is the square about its box),
    or a crop-size (S, S) mask in the xyxy square ``box`` (e.g. the instance's own crop).
    Returns {"image": the composited scene (HxWx3 uint8), "rgb", "alpha": the rendering,
    "mask": the new mask in the crop, "box": the crop}."""
    S, pad = model.crop, float(model.config.get("pad", 1.25))
    image = read_image(ann, inst.image_id) if image is None else image
    own_box = square_boxes(C.frame_boxes([inst], "visible"), pad)
    rgb = crop_rgb(image, own_box, S)
    app_mask = (C.crop_masks([inst], "visible", own_box, S) >= 0.5).float()
    if box is None:
        nm = np.asarray(new_mask)
        box = square_boxes(mask_box(nm), pad)[0]
        crop = crop_mask_image(nm, box, S)
    else:
        crop = torch.as_tensor(new_mask, dtype=torch.float32).reshape(S, S)
        box = torch.as_tensor(box, dtype=torch.float32).reshape(4)
    out, alpha = render_crops(model, crop[None], rgb, app_mask)
    hole = M.decode(inst.visible).astype(bool)
    hole = F.max_pool2d(torch.from_numpy(hole)[None, None].float(), 3, 1, 1)[0, 0].numpy() > 0  # and its edge
    scene = composite_into(image, box, out[0], alpha[0], hole, occluder_pixels(ann, inst), fill)
    return {"image": scene, "rgb": out[0], "alpha": alpha[0], "mask": crop, "box": box}
