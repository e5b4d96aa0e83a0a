"""Filling holes in images: the trained partial-convolution inpainters
(:mod:`amodal_lib.train.inpaint`) and the classical baselines they are measured against.

Images are HxWx3 uint8 arrays and holes HxW bool arrays (True = to fill); every function returns
a new image equal to the input outside the hole (the filling ones).

- :func:`inpaint_background`: the background inpainter over the whole image (fully convolutional;
  the image padded to a multiple of ``2**depth``). This is the call scene editing uses for the
  background under removed objects, and that any other caller can use on its own
  (image, hole -> image).
- :func:`inpaint_instances`: the instance inpainter, one object at a time in its square crop (the
  crop of its full mask's box, resized to the net's ``crop``): the hole blanked, the class label
  in the hole; the result pasted back into the hole pixels only.
- :func:`classical`: OpenCV's Telea (fast marching) and Navier-Stokes inpainting (radius 3).
- :func:`background_inputs`, :func:`instance_inputs`, :func:`base_fill`: what each net takes (the
  holed image, its mask, the guides and base fill); training makes its batches with them too.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ..data.crops import paste_region
from ..errors import ArgumentError
from ..models.inpaint import PConvUNet, smooth_fill
from .pcnet import square_from_xyxy

CLASSICAL = {"telea": "OpenCV Telea", "ns": "OpenCV Navier-Stokes"}


def check_image_and_hole(image, hole) -> tuple:
    """``(image uint8 HxWx3, hole bool HxW)``, or an :class:`~amodal_lib.errors.ArgumentError` saying
    what does not fit."""
    img = np.asarray(image)
    h = np.asarray(hole)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ArgumentError(f"the image must be HxWx3 (RGB), got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ArgumentError(f"the image must be uint8, got {img.dtype}")
    if h.shape != img.shape[:2]:
        raise ArgumentError(f"the hole is {h.shape} but the image is {img.shape[:2]}")
    return img, h.astype(bool)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0


def to_image(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> HxWx3 uint8."""
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def run_padded(model: PConvUNet, x: torch.Tensor, mask: torch.Tensor, base=None) -> torch.Tensor:
    """``model(x, mask, base)`` on inputs whose sides need not be multiples of ``2**depth``: padded at
    the right and bottom (replicated values, mask 0 there), then cut back."""
    H, W = x.shape[-2:]
    k = model.multiple
    ph, pw = (-H) % k, (-W) % k
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        mask = F.pad(mask, (0, pw, 0, ph), value=0.0)
        base = None if base is None else F.pad(base, (0, pw, 0, ph), mode="replicate")
    return model(x, mask, base)[..., :H, :W]


# --------------------------------------------------------------------------- what the nets take
def instance_inputs(image: torch.Tensor, hole: torch.Tensor, label: torch.Tensor):
    """The instance inpainter's input ``(x, mask)``: ``image`` (B, 3, S, S) with the hole blanked
    and a fourth channel holding ``label`` (B,) (category id / the largest id) in the hole; the
    mask is per channel: colour known outside the hole, the label channel known everywhere."""
    known = 1.0 - hole
    x = torch.cat([image * known, hole * label.view(-1, 1, 1, 1)], 1)
    mask = torch.cat([known.expand(-1, 3, -1, -1), torch.ones_like(hole)], 1)
    return x, mask


def base_fill(fill: str, image: torch.Tensor, known: torch.Tensor, object_known: Optional[torch.Tensor] = None):
    """What a net with ``fill`` adds its output to (None for "none"): "smooth", the smooth fill
    (:func:`amodal_lib.models.inpaint.smooth_fill`) of the known pixels, or, for the instance
    inpainter (``object_known``: the object's known pixels, (B, 1, S, S)), of the object's own known
    pixels (where a crop has none, of all its known pixels); "telea" and "ns", OpenCV's Telea and
    Navier-Stokes fills of the hole."""
    if fill == "none":
        return None
    if fill in ("telea", "ns"):
        return classical_batch(image, known, fill)
    if object_known is None:
        return smooth_fill(image * known, known)
    has = object_known.flatten(1).sum(1) > 0
    src = torch.where(has.view(-1, 1, 1, 1), object_known, known)
    return smooth_fill(image * src, src)


def background_inputs(image: torch.Tensor, known: torch.Tensor, fill: str = "none", guides=()):
    """The background inpainter's ``(x, mask, base)``: the image with the hole blanked (its mask the
    known pixels), followed by one 3-channel *guide* per name in ``guides`` (a classical fill of the
    hole, :func:`base_fill`, known everywhere; the mask then has a channel per input channel), and the
    base fill the net's output is added to (None for ``fill`` "none"). Each fill is computed once."""
    fills = {}

    def get(name):
        if name not in fills:
            fills[name] = base_fill(name, image, known)
        return fills[name]
    x, mask = image * known, known
    if guides:
        x = torch.cat([x, *[get(g) for g in guides]], 1)
        mask = torch.cat([known.expand(-1, 3, -1, -1), torch.ones_like(x[:, 3:])], 1)
    return x, mask, (get(fill) if fill != "none" else None)


# --------------------------------------------------------------------------- filling images
@torch.no_grad()
def inpaint_background(model: PConvUNet, image, hole) -> np.ndarray:
    """The image with ``hole`` filled by the background inpainter (pixels outside it unchanged)."""
    img, h = check_image_and_hole(image, hole)
    if not h.any():
        return img.copy()
    dev = next(model.parameters()).device
    x = to_tensor(img).to(dev)
    known = torch.from_numpy(~h)[None, None].float().to(dev)
    inputs = background_inputs(x, known, getattr(model, "fill", "none"), getattr(model, "guides", ()))
    out = to_image(run_padded(model.eval(), *inputs)[0])
    res = img.copy()
    res[h] = out[h]
    return res


def instance_boxes(full_masks: Sequence[np.ndarray]) -> torch.Tensor:
    """(N, 4) xyxy: each mask's PCNet-M square (the instance inpainter's crop) about its box."""
    boxes = []
    for m in full_masks:
        ys, xs = np.nonzero(m)
        if not len(ys):
            boxes.append([0.0, 0.0, 1.0, 1.0])
            continue
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
    return square_from_xyxy(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))


@torch.no_grad()
def inpaint_instances(model: PConvUNet, image, full_masks: Sequence, holes: Sequence, category_ids: Sequence[int]
                      ) -> list:
    """For each object (its full mask, the hole to fill in it, its category id), the image with that
    hole filled by the instance inpainter, as one HxWx3 uint8 per object: the object's square crop
    of ``image`` resized to the net's ``crop``, its hole blanked, the class label in the hole, the
    net's output pasted back into the hole pixels only."""
    img = np.asarray(image)
    out = []
    if not len(full_masks):
        return out
    boxes = instance_boxes(full_masks)
    S = int(model.crop)
    dev = next(model.parameters()).device
    x = to_tensor(img)
    H, W = img.shape[:2]
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes], 1)
    crops = roi_align(x.expand(1, -1, -1, -1), rois, (S, S), 1.0, 2, aligned=True)
    hole_t = torch.from_numpy(np.stack([np.asarray(h, dtype=np.float32) for h in holes]))[:, None]
    own = torch.cat([torch.arange(len(boxes), dtype=torch.float32)[:, None], boxes], 1)   # hole k in box k
    hole_c = (roi_align(hole_t, own, (S, S), 1.0, 2, aligned=True) > 0.0).float()   # any part of a hole pixel
    full_t = torch.from_numpy(np.stack([np.asarray(f, dtype=np.float32) for f in full_masks]))[:, None]
    obj = (roi_align(full_t, own, (S, S), 1.0, 2, aligned=True) >= 0.5).float() * (1.0 - hole_c)
    label = torch.tensor([min(float(c) / max(model.max_category, 1), 1.0) for c in category_ids])
    inp, mask = instance_inputs(crops, hole_c, label)
    base = base_fill(getattr(model, "fill", "none"), crops, 1.0 - hole_c, obj)
    pred = model.eval()(inp.to(dev), mask.to(dev), None if base is None else base.to(dev)).cpu().clamp(0, 1)
    for k in range(len(boxes)):
        res = img.copy()
        h = np.asarray(holes[k], dtype=bool)
        region = paste_region(pred[k], boxes[k], H, W)
        if region is not None and h.any():
            rows, cols, vals = region
            patch = (np.clip(vals, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
            sub = res[rows, cols]
            sel = h[rows, cols]
            sub[sel] = patch[sel]
            res[rows, cols] = sub
        out.append(res)
    return out


def classical_batch(images: torch.Tensor, known: torch.Tensor, method: str = "telea", radius: int = 3) -> torch.Tensor:
    """:func:`classical` over a batch: ``images`` (B, 3, H, W) in [0, 1], ``known`` (B, 1, H, W); the
    filled images as a tensor of the same shape (on ``images``' device)."""
    out = []
    for img, k in zip(images.detach().cpu(), known.detach().cpu()):
        im = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        out.append(torch.from_numpy(classical(im, k[0].numpy() < 0.5, method, radius)).permute(2, 0, 1))
    return torch.stack(out).float().div(255.0).to(images.device)


def classical(image, hole, method: str = "telea", radius: int = 3) -> np.ndarray:
    """OpenCV's inpainting of ``hole``: ``method`` "telea" (Telea 2004, fast marching) or "ns"
    (Bertalmio et al. 2001, Navier-Stokes)."""
    import cv2
    img, h = check_image_and_hole(image, hole)
    if method not in CLASSICAL:
        raise ArgumentError(f"unknown classical inpainting {method!r}: use one of {', '.join(CLASSICAL)}")
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    out = cv2.inpaint(np.ascontiguousarray(img), h.astype(np.uint8), float(radius), flag)
    res = img.copy()
    res[h] = out[h]
    return res
