"""Filling holes in images: the trained partial-convolution inpainters
(:mod:`amodal_lib.train.inpaint`) and the classical baselines they are measured against.

Images are HxWx3 uint8 arrays and holes HxW bool arrays (True = to fill); every function returns
a new image equal to the input outside the hole (the filling ones).

- :func:`inpaint_background`: the background inpainter over the whole image (fully convolutional;
  the image padded to a multiple of ``2**depth``). This is the call scene editing uses for the
  background under removed objects, and that any other caller can use on its own
  (image, hole -> image).
- :func:`inpaint_instances`: the instance inpainter, one object at a time in its square crop (the
  crop of its mask's box, resized to the net's ``crop``): the unknown pixels blanked, the class
  label in the hole, the object's mask, and fills of the crop from the object's own known pixels,
  made at the image's resolution (:func:`object_fill`); what the net adds to its fill is pasted
  back into the hole pixels only.
- :func:`classical`: OpenCV's Telea (fast marching) and Navier-Stokes inpainting (radius 3).
- :func:`background_inputs`, :func:`instance_inputs`, :func:`base_fill`, :func:`instance_forward`:
  what each net takes (the holed image, its mask, the guides and base fill); training makes its
  batches with them too.
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
def instance_inputs(image: torch.Tensor, hole: torch.Tensor, label: torch.Tensor, unknown: Optional[torch.Tensor] = None,
                    object_mask: Optional[torch.Tensor] = None, guides=()):
    """The instance inpainter's input ``(x, mask)``: ``image`` (B, 3, S, S) with the ``unknown``
    pixels (B, 1, S, S; default the hole) blanked, a channel holding ``label`` (B,) (category id /
    the largest id) in the hole, one holding ``object_mask`` (the object's pixels, known and hidden;
    default the hole), then each guide (B, 3, S, S). The mask is per channel: colour known outside
    the unknown pixels, every other channel known everywhere."""
    known = 1.0 - (hole if unknown is None else torch.maximum(unknown, hole))
    obj = hole if object_mask is None else torch.maximum(object_mask, hole)
    x = torch.cat([image * known, hole * label.view(-1, 1, 1, 1), obj, *guides], 1)
    mask = torch.cat([known.expand(-1, 3, -1, -1), torch.ones_like(x[:, 3:])], 1)
    return x, mask


def instance_channels(guides=()) -> int:
    """The instance inpainter's input channels (:func:`instance_inputs`)."""
    return 5 + 3 * len(guides)


def base_fill(fill: str, image: torch.Tensor, known: torch.Tensor, object_known: Optional[torch.Tensor] = None):
    """What a net with ``fill`` adds its output to, or a guide (None for "none"): "smooth", the
    smooth fill (:func:`amodal_lib.models.inpaint.smooth_fill`), "telea" and "ns", OpenCV's
    Telea and Navier-Stokes fills, of every pixel but the known ones (B, 1, S, S); for the instance
    inpainter (``object_known``: the object's known pixels), of every pixel but the object's own
    known ones, from those alone (where a crop has none, from all its known pixels)."""
    if fill == "none":
        return None
    src = known
    if object_known is not None:
        has = object_known.flatten(1).sum(1) > 0
        src = torch.where(has.view(-1, 1, 1, 1), object_known, known)
    if fill in ("telea", "ns"):
        return classical_batch(image, src, fill)
    return smooth_fill(image * src, src)


def _fills(image: torch.Tensor, known: torch.Tensor, object_known: Optional[torch.Tensor] = None):
    """``get(name)``: :func:`base_fill` ``name`` of these pixels, each computed once."""
    fills = {}

    def get(name):
        if name not in fills:
            fills[name] = base_fill(name, image, known, object_known)
        return fills[name]
    return get


def background_inputs(image: torch.Tensor, known: torch.Tensor, fill: str = "none", guides=()):
    """The background inpainter's ``(x, mask, base)``: the image with the hole blanked (its mask the
    known pixels), followed by one 3-channel *guide* per name in ``guides`` (a classical fill of the
    hole, :func:`base_fill`, known everywhere; the mask then has a channel per input channel), and the
    base fill the net's output is added to (None for ``fill`` "none"). Each fill is computed once."""
    get = _fills(image, known)
    x, mask = image * known, known
    if guides:
        x = torch.cat([x, *[get(g) for g in guides]], 1)
        mask = torch.cat([known.expand(-1, 3, -1, -1), torch.ones_like(x[:, 3:])], 1)
    return x, mask, (get(fill) if fill != "none" else None)


def instance_forward(model, image: torch.Tensor, obj: torch.Tensor, hole: torch.Tensor, unknown: torch.Tensor,
                     label: torch.Tensor, fill: str = "none", guides=()) -> torch.Tensor:
    """The instance inpainter's output on crops (B, 3, S, S): ``obj`` the object's mask (B, 1, S, S),
    ``hole`` its part to fill, ``unknown`` every pixel it may not read (the hole included); the
    ``guides`` and the ``fill`` its output is added to come from the object's own known pixels
    (:func:`base_fill`), each computed once."""
    unknown = torch.maximum(unknown, hole)
    known = 1.0 - unknown
    get = _fills(image, known, obj * known)
    x, mask = instance_inputs(image, hole, label, unknown, obj, [get(g) for g in guides])
    return model(x, mask, get(fill) if fill != "none" else None)


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


def object_fill(image: np.ndarray, object_known: np.ndarray, box, method: str = "ns") -> np.ndarray:
    """``image`` with every pixel of ``box`` (xyxy, clipped to the image) but the object's own known
    pixels filled from those alone: OpenCV's "telea" or "ns" fill, or "smooth"
    (:func:`amodal_lib.models.inpaint.smooth_fill`). With no known pixel of the object in the
    box, the image is returned as it is."""
    H, W = image.shape[:2]
    x1, y1, x2, y2 = [float(v) for v in box]
    c0, c1 = max(int(np.floor(x1)), 0), min(int(np.ceil(x2)), W)
    r0, r1 = max(int(np.floor(y1)), 0), min(int(np.ceil(y2)), H)
    out = image.copy()
    known = object_known[r0:r1, c0:c1]
    if not known.any() or known.all():
        return out
    sub = image[r0:r1, c0:c1]
    if method == "smooth":
        k = torch.from_numpy(known)[None, None].float()
        out[r0:r1, c0:c1] = to_image(smooth_fill(to_tensor(sub) * k, k)[0])
    else:
        out[r0:r1, c0:c1] = classical(sub, ~known, method)
    return out


@torch.no_grad()
def inpaint_instances(model: PConvUNet, image, objects: Sequence, holes: Sequence, category_ids: Sequence[int],
                      unknown=None) -> list:
    """For each object (its mask: its known pixels and its hole; the hole to fill; its category id),
    the image with that hole filled by the instance inpainter, as one HxWx3 uint8 per object.
    ``unknown`` (HxW bool): every pixel no fill may read (default: the union of the holes), as the
    whole removed region is in an edit.

    Each object is cut out in its square crop (the PCNet-M square about its mask's box) resized to
    the net's ``crop``: the unknown pixels blanked (a crop pixel is unknown if any part of it is),
    the class label in the hole, the object's mask, and the guides; the guides and the fill the net
    adds to are computed at the image's own resolution from the object's own known pixels
    (:func:`object_fill`) and cropped. The net's output (for a net with a base fill, what it adds to
    it) is pasted back bilinearly into the hole pixels only."""
    img = np.asarray(image)
    out = []
    if not len(objects):
        return out
    H, W = img.shape[:2]
    objs = [np.asarray(o, dtype=bool) for o in objects]
    hs = [np.asarray(h, dtype=bool) for h in holes]
    unk = np.any(hs, 0) if unknown is None else (np.asarray(unknown, dtype=bool) | np.any(hs, 0))
    boxes = instance_boxes([o | h for o, h in zip(objs, hs)])
    S, n = int(model.crop), len(objs)
    dev = next(model.parameters()).device
    names = list(dict.fromkeys([*model.guides, *([model.fill] if model.fill != "none" else [])]))
    fills = {m: [object_fill(img, o & ~unk, boxes[k], m) for k, o in enumerate(objs)] for m in names}
    own = torch.cat([torch.arange(n, dtype=torch.float32)[:, None], boxes], 1)      # object k in box k

    def crop(arrays, threshold=None):
        t = torch.from_numpy(np.stack(arrays).astype(np.float32))
        t = t.permute(0, 3, 1, 2) / 255.0 if t.ndim == 4 else t[:, None]
        c = roi_align(t, own, (S, S), 1.0, 2, aligned=True)
        return c if threshold is None else (c > 0.0 if threshold == "any" else c >= threshold).float()
    rgb = crop([img] * n)
    unknown_c = crop([unk] * n, "any")
    hole_c = crop(hs, "any")
    obj_c = crop(objs, 0.5)
    label = torch.tensor([min(float(c) / max(model.max_category, 1), 1.0) for c in category_ids])
    fill_c = {m: crop(fills[m]) for m in names}
    base = None if model.fill == "none" else torch.zeros(n, 3, S, S)   # the net's addition alone (below)
    x, mask = instance_inputs(rgb, hole_c, label, unknown_c, obj_c, [fill_c[g] for g in model.guides])
    pred = model.eval()(x.to(dev), mask.to(dev), None if base is None else base.to(dev)).cpu()
    for k in range(n):
        res = img.copy() if model.fill == "none" else fills[model.fill][k].copy()
        h = hs[k]
        region = paste_region(pred[k], boxes[k], H, W)
        if region is not None and h.any():
            rows, cols, vals = region
            sub = res[rows, cols]
            sel = h[rows, cols]
            add = vals.transpose(1, 2, 0)[sel] * 255.0
            now = 0.0 if model.fill == "none" else sub[sel].astype(np.float32)
            sub[sel] = np.clip(now + add, 0, 255).round().astype(np.uint8)
            res[rows, cols] = sub
        res[~h] = img[~h]
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
