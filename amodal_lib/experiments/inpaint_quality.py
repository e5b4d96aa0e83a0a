"""How well the inpainters fill holes whose true content is known (notebook 12's table).

Three experiments on held-out (test) images, each seeded, each scored **inside the hole only**:
L1 (mean absolute error of the [0, 1] colour values), PSNR (dB, peak 1, from the mean squared
error over the hole's pixels) and SSIM (the SSIM map of Wang et al. 2004, 11x11 Gaussian window
of sigma 1.5, averaged over the colour channels and over the hole's pixels) (:func:`hole_metrics`).

- :func:`background_benchmark`: whole test images, holes made as in training (instance masks
  placed at random and dilated, :func:`amodal_lib.train.inpaint.background_holes`): the background
  inpainter against OpenCV's Telea and Navier-Stokes.
- :func:`instance_benchmark`: test instances in their square crops with another instance placed
  on them, the hole the object's part under it, the whole placed instance unknown (as in training
  and in an edit): the instance inpainter against the same baselines on the same crops, and
  Navier-Stokes from the object's own pixels.
- :func:`removal_benchmark`: an object removed from a scene where what it hid is known. An
  isolated test instance gets another test instance's pixels pasted in front of it (its own
  image's colours under its mask, scaled to the target's height times a log-uniform factor in
  [0.8, 1.5], placed to hide 10-60 % of the target: :func:`pasted_scene`); :func:`amodal_lib.experiments.edit.remove`
  then takes the pasted object out, and the result is compared with the untouched image, over the
  whole repainted region and over the target's revealed part. Rows: the edit with the hole of the
  instance inpainter from Amodal-VAE's completed mask, the same with the ground-truth full mask
  (the target's own mask), the background inpainter alone (nothing completed), Telea and
  Navier-Stokes.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..data import masks as M
from ..data.holdout import isolated
from ..data.images import read_image
from ..data.records import AnnotationSet, Instance, box_touches_border, group_by_image, set_modal_neighbours
from ..predict.inpaint import CLASSICAL, classical, inpaint_background, to_image, to_tensor
from ..train.inpaint import background_holes, base_fill, instance_crops, instance_holes, predict_batch
from .edit import remove

METRICS = ("L1", "PSNR", "SSIM")


# --------------------------------------------------------------------------- metrics
def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(H, W) SSIM of two (3, H, W) images in [0, 1], averaged over channels (edges replicated)."""
    w = _gauss().expand(3, 1, 11, 11)
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(x):
        return F.conv2d(F.pad(x[None], (5, 5, 5, 5), mode="replicate"), w, groups=3)[0]
    mu_a, mu_b = blur(a), blur(b)
    saa, sbb, sab = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return s.mean(0)


def hole_metrics(pred: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> dict:
    """{"L1", "PSNR", "SSIM"} of ``pred`` against ``truth`` (HxWx3 uint8) inside ``hole`` (HxW bool)."""
    h = np.asarray(hole, bool)
    if not h.any():
        return {"L1": np.nan, "PSNR": np.nan, "SSIM": np.nan}
    ys, xs = np.nonzero(h)                      # the hole's box and the SSIM window around it suffice
    y0, y1 = max(ys.min() - 8, 0), ys.max() + 9
    x0, x1 = max(xs.min() - 8, 0), xs.max() + 9
    pred, truth, h = pred[y0:y1, x0:x1], truth[y0:y1, x0:x1], h[y0:y1, x0:x1]
    p, t = pred.astype(np.float64) / 255.0, truth.astype(np.float64) / 255.0
    d = (p - t)[h]
    l1 = float(np.abs(d).mean())
    mse = float((d ** 2).mean())
    psnr = float(10 * np.log10(1.0 / max(mse, 1e-10)))
    s = ssim_map(to_tensor(pred)[0], to_tensor(truth)[0]).numpy()
    return {"L1": l1, "PSNR": psnr, "SSIM": float(s[h].mean())}


def summarize(rows: pd.DataFrame, by=("experiment", "method")) -> pd.DataFrame:
    """Mean of each metric per experiment and method (rows in the order they first appear), with
    the number of holes scored."""
    keys = list(by)
    g = rows.groupby(keys, sort=False)
    out = g[list(METRICS)].mean().reset_index()
    out["holes"] = g.size().values
    return out


# --------------------------------------------------------------------------- 1. background
def background_benchmark(test: AnnotationSet, inpainters: dict, pool: torch.Tensor, n_images: int = 100,
                         masks_per_hole: int = 3, scale=(0.7, 1.4), dilate=(1, 6), seed: int = 0) -> pd.DataFrame:
    """One row per (image, method): hole metrics of each of ``inpainters`` ({name: (image, hole) ->
    image}; Telea and Navier-Stokes are added) on ``n_images`` test images with holes made from
    ``pool`` (:func:`amodal_lib.train.inpaint.mask_pool`) as in training, tiled over the image."""
    methods = {**inpainters, **{CLASSICAL[k]: (lambda im, h, k=k: classical(im, h, k)) for k in CLASSICAL}}
    ids = sorted(test.images)
    rng = np.random.default_rng(seed)
    if len(ids) > n_images:
        ids = sorted(rng.choice(ids, n_images, replace=False).tolist())
    g = torch.Generator().manual_seed(seed)
    S = pool.shape[-1]
    rows = []
    for image_id in ids:
        img = read_image(test, image_id)
        H, W = img.shape[:2]
        hole = np.zeros((H, W), bool)
        for y in range(0, H, S):           # one placed hole per crop-sized tile, as training sees them
            for x in range(0, W, S):
                t = background_holes(pool, 1, masks_per_hole, scale, dilate, generator=g)[0, 0].numpy() > 0.5
                hh, ww = min(S, H - y), min(W - x, S)
                hole[y:y + hh, x:x + ww] |= t[:hh, :ww]
        for name, fn in methods.items():
            rows.append({"experiment": "background", "method": name, "image_id": image_id,
                         "hole_fraction": float(hole.mean()), **hole_metrics(fn(img, hole), img, hole)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- 2. instance
OBJECT_NS = "OpenCV Navier-Stokes, the object's pixels only"


def instance_benchmark(test: AnnotationSet, model, n: int = 300, seed: int = 0, cfg: Optional[dict] = None
                       ) -> pd.DataFrame:
    """One row per (instance crop, method): the instance inpainter (its own crops and holes, as in
    training: the whole occluder unknown, scored on the object's part of it) against Telea and
    Navier-Stokes filling the same unknown pixels from everything around them, and Navier-Stokes
    from the object's own known pixels alone (:data:`OBJECT_NS`, what the net's fill starts from in
    the shorter profiles)."""
    cfg = cfg or {}
    data = instance_crops(test, int(model.crop), cfg.get("min_area", 64), n, seed, model.max_category)
    g = torch.Generator().manual_seed(seed)
    img = data["image"].float() / 255.0
    obj = data["mask"].float()
    hole, occ = instance_holes(obj, data["mask"], cfg.get("cover", (0.1, 0.7)), cfg.get("scale", (0.7, 1.4)),
                               cfg.get("shift", 0.6), cfg.get("tries", 8), generator=g, with_occluder=True)
    unknown = occ if cfg.get("unknown", "occluder") == "occluder" else hole
    with torch.no_grad():
        comp = predict_batch(model.eval(), "instance", {"image": img, "hole": hole, "label": data["label"],
                                                         "mask": obj, "unknown": unknown})
    unknown = torch.maximum(unknown, hole)
    own = base_fill("ns", img, 1.0 - unknown, obj.unsqueeze(1) * (1.0 - unknown))
    rows = []
    for k in range(len(img)):
        truth, h, u = to_image(img[k]), hole[k, 0].numpy() > 0.5, unknown[k, 0].numpy() > 0.5
        if not h.any():
            continue
        preds = {"instance inpainter (partial conv)": to_image(comp[k]),
                 **{CLASSICAL[m]: classical(truth * (~u)[..., None], u, m) for m in CLASSICAL},
                 OBJECT_NS: to_image(own[k])}
        for p in preds.values():                 # every fill scored in the same composite: the truth outside the hole
            p[~h] = truth[~h]
        for name, p in preds.items():
            rows.append({"experiment": "instance", "method": name, "crop": k, **hole_metrics(p, truth, h)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- 3. removal
@dataclasses.dataclass
class PastedScene:
    """A test image with another object's pixels pasted in front of an isolated instance: ``image``
    (with the paste), ``truth`` (the image before it), ``annotations`` (the instances of the
    image, the target's visible mask cut, and the pasted object with id ``pasted_id``),
    ``target`` (the target's id) and ``target_full`` (its whole mask: the ground-truth amodal one)."""
    image: np.ndarray
    truth: np.ndarray
    annotations: AnnotationSet
    pasted_id: int
    target: int
    target_full: dict


def pasted_scene(test: AnnotationSet, target: Instance, source: Instance, rng: np.random.Generator,
                 hidden=(0.1, 0.6), scale=(0.8, 1.5), tries: int = 12) -> Optional[PastedScene]:
    """Paste ``source`` (its own image's pixels under its visible mask) in front of ``target``
    (module doc); None when no placement hides ``hidden`` of the target and stays in the image."""
    import torch.nn.functional as Fn
    img = read_image(test, target.image_id)
    src = read_image(test, source.image_id)
    H, W = img.shape[:2]
    full = M.decode(target.visible).astype(bool)
    sx, sy, sw, sh = [int(round(v)) for v in source.visible_box]
    smask = M.decode(source.visible).astype(bool)[sy:sy + sh, sx:sx + sw]
    srgb = src[sy:sy + sh, sx:sx + sw]
    if smask.sum() < 16:
        return None
    tx, ty, tw, th = target.visible_box
    area = full.sum()
    for _ in range(tries):
        s = th * np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))) / max(sh, 1)
        h2, w2 = max(int(round(sh * s)), 2), max(int(round(sw * s)), 2)
        if h2 >= H or w2 >= W:
            continue
        m = Fn.interpolate(torch.from_numpy(smask.astype(np.float32))[None, None], (h2, w2), mode="bilinear",
                           align_corners=False)[0, 0].numpy() >= 0.5
        c = Fn.interpolate(torch.from_numpy(srgb.astype(np.float32)).permute(2, 0, 1)[None], (h2, w2), mode="bilinear",
                           align_corners=False)[0].permute(1, 2, 0).numpy()
        cx = rng.uniform(tx - w2 / 2, tx + tw + w2 / 2)
        cy = rng.uniform(ty + th - h2 / 2, ty + th + h2 / 4)        # in front: its bottom lower than the target's
        x0, y0 = int(round(cx - w2 / 2)), int(round(cy - h2 / 2))
        if x0 < 0 or y0 < 0 or x0 + w2 > W or y0 + h2 > H:
            continue
        occ = np.zeros((H, W), bool)
        occ[y0:y0 + h2, x0:x0 + w2] = m
        frac = (full & occ).sum() / max(area, 1)
        if not hidden[0] <= frac <= hidden[1] or occ.sum() < 16:
            continue
        out = img.copy()
        out[occ] = np.clip(c[m], 0, 255).round().astype(np.uint8)
        insts = []
        for i in group_by_image(test.instances)[target.image_id]:
            v = M.decode(i.visible).astype(bool) & ~occ
            if v.sum() == 0:
                continue
            rle = M.encode(v.astype(np.uint8))
            box = tuple(float(b) for b in M.to_bbox(rle))
            insts.append(dataclasses.replace(i, visible=rle, visible_box=box, visible_area=int(v.sum()),
                                             amodal=None, amodal_box=None, amodal_area=None, depth=None,
                                             touches_border=box_touches_border(box, H, W)))
        new_id = max(int(i.id) for i in test.instances) + 1
        orle = M.encode(occ.astype(np.uint8))
        obox = tuple(float(b) for b in M.to_bbox(orle))
        insts.append(dataclasses.replace(source, id=new_id, image_id=target.image_id, visible=orle, visible_box=obox,
                                         visible_area=int(occ.sum()), amodal=None, amodal_box=None, amodal_area=None,
                                         depth=None, height=H, width=W, touches_border=box_touches_border(obox, H, W)))
        set_modal_neighbours(insts)
        ann = dataclasses.replace(test.subset(insts), path=f"{test.path} (pasted scene)")
        return PastedScene(out, img, ann, new_id, target.id, {target.id: target.visible})
    return None


def _last_fill(net):
    """``(image, hole) -> image`` of the background inpainter ``net`` that keeps its last answer and
    gives it again for the same image and hole."""
    last: list = []

    def fill(image, hole):
        if not (last and np.array_equal(last[0], image) and np.array_equal(last[1], hole)):
            last[:] = [np.array(image), np.array(hole), inpaint_background(net, image, hole)]
        return last[2]
    return fill


def removal_benchmark(test: AnnotationSet, vae, background, instance, n: int = 150, seed: int = 0,
                      dilate_px: int = 2, threshold: Optional[float] = None) -> pd.DataFrame:
    """One row per (pasted scene, method, region): the pasted object removed (module doc), scored
    over the whole repainted region ("removed region") and over the target's revealed part
    ("revealed object")."""
    if isinstance(background, torch.nn.Module):   # the three edits of a scene fill the same hole: fill it once
        background = _last_fill(background)
    rng = np.random.default_rng(seed)
    targets = [t for t in isolated(test, 64)]
    pool = [i for i in test.instances if i.visible_area >= 64]
    order = rng.permutation(len(targets))
    rows = []
    done = 0
    for k in order:
        if done >= n:
            break
        t = targets[k]
        scene = pasted_scene(test, t, pool[int(rng.integers(len(pool)))], rng)
        if scene is None:
            continue
        done += 1
        common = dict(vae=vae, background=background, instance=instance, dilate_px=dilate_px, threshold=threshold)
        runs = {"edit, hole from Amodal-VAE's completed mask": remove(scene.image, scene.annotations, [scene.pasted_id],
                                                                      **common),
                "edit, hole from the GT amodal mask": remove(scene.image, scene.annotations, [scene.pasted_id],
                                                             completions=scene.target_full, **common),
                "background inpainter only": remove(scene.image, scene.annotations, [scene.pasted_id],
                                                    complete=False, **common)}
        hole = runs["background inpainter only"].hole
        preds = {name: r.image for name, r in runs.items()}
        preds.update({CLASSICAL[m]: classical(scene.image, hole, m) for m in CLASSICAL})
        obj = M.decode(t.visible).astype(bool) & hole
        for name, p in preds.items():
            for region, h in (("removed region", hole), ("revealed object", obj)):
                rows.append({"experiment": f"removal: {region}", "method": name, "scene": int(t.id),
                             **hole_metrics(p, scene.truth, h)})
    return pd.DataFrame(rows)


def quality_table(*frames: pd.DataFrame) -> pd.DataFrame:
    """The notebook's table: mean L1, PSNR and SSIM per experiment and method."""
    return summarize(pd.concat([f for f in frames if len(f)], ignore_index=True))


def background_examples(test: AnnotationSet, pool: torch.Tensor, inpainters: dict, n: int = 3, dilate=(1, 6),
                        seed: int = 0) -> tuple:
    """``(truths, holes, {method: fills})`` for :func:`amodal_lib.viz.plot_filled_holes`: ``n`` crops
    (twice the training crop, at the images' resolution) of test images with holes made as in
    training, filled by each of ``inpainters`` ({name: (image, hole) -> image}) and the classical
    baselines."""
    methods = {**inpainters, **{CLASSICAL[k]: (lambda im, h, k=k: classical(im, h, k)) for k in CLASSICAL}}
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    S = pool.shape[-1]
    ids = rng.choice(sorted(test.images), min(n, len(test.images)), replace=False).tolist()
    truths, holes, fills = [], [], {k: [] for k in methods}
    for image_id in ids:
        img = read_image(test, image_id)
        H, W = img.shape[:2]
        h, w = min(2 * S, H), min(2 * S, W)
        y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        hole = np.zeros((H, W), bool)
        t = background_holes(pool, 1, 3, (0.7, 1.4), dilate, generator=g)[0, 0].numpy() > 0.5
        hole[y + (h - S) // 2:y + (h - S) // 2 + S, x + (w - S) // 2:x + (w - S) // 2 + S] = t
        for k, fn in methods.items():
            fills[k].append(fn(img, hole)[y:y + h, x:x + w])
        truths.append(img[y:y + h, x:x + w])
        holes.append(hole[y:y + h, x:x + w])
    return truths, holes, fills


def beats_baselines(table: pd.DataFrame, experiment: str, method: str, baselines=None) -> dict:
    """{baseline: (L1 lower, PSNR higher)} of ``method`` against each of ``baselines`` (default: the
    classical fills) in ``experiment``."""
    t = table[table.experiment == experiment].set_index("method")
    return {b: (bool(t.loc[method, "L1"] < t.loc[b, "L1"]), bool(t.loc[method, "PSNR"] > t.loc[b, "PSNR"]))
            for b in (baselines or CLASSICAL.values()) if b in t.index}
