"""Changing an instance's pose (supplementary 3.4, Fig 10): new full masks, their renderings, and
how good the renderer is (notebook 13).

New poses, as masks in each instance's square crop (:func:`amodal_lib.predict.spade.instance_crops`):

- **mask edits**: :func:`mirror` (left-right), :func:`shear` (leaning, about the object's lowest
  row, so that it keeps standing where it stood);
- **Amodal-VAE's latent space** (``docs/design.md``, "Changing an instance's pose"): each
  instance's posterior (:func:`amodal_lib.predict.amodal_vae.complete_instances` with
  ``return_details=True``: mean, standard deviation, and the 28x28 frame it is decoded in),
  moved along a **latent direction** (:func:`latent_direction`: the first principal axis of
  the class's posterior means; :func:`walk`), **interpolated** towards another instance of its
  class (:func:`interpolate`), or **sampled near the posterior** (:func:`near_posterior`); decoded,
  placed from the VAE's frame into the crop and binarised at 0.5 (:func:`decode_to_crops`).

The renderer is scored on held-out instances (:func:`reconstruction_table`): the rendering from
the instance's own mask and appearance against the real object, both over neutral grey, beside
baselines, and how well the rendering's silhouette (its alpha) follows a mask, the original or a
new one (:func:`silhouette_table`).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..data.images import read_image
from ..data.records import AnnotationSet, Instance
from ..models.amodal_vae import warp_to_frame
from ..predict import spade as P
from ..predict.amodal_vae import complete_instances
from ..train.spade import pick, reconstruction_scores, silhouette_iou, whole_instances

POSE_THRESHOLD = 0.5   # decoded Amodal-VAE masks are binarised here: the decoder's likelier shape


# --------------------------------------------------------------------------- mask edits
def mirror(masks: torch.Tensor) -> torch.Tensor:
    """Masks (N, S, S) mirrored left-right."""
    return masks.flip(-1)


def shear(masks: torch.Tensor, k: float = 0.3) -> torch.Tensor:
    """Masks (N, S, S) sheared horizontally by ``k`` (a row ``d`` pixels above the object's lowest
    row moves ``k * d`` pixels right), binarised at 0.5."""
    n, S = masks.shape[0], masks.shape[-1]
    rows = torch.arange(S, dtype=torch.float32)
    bottom = torch.where(masks.amax(2) > 0.5, rows, torch.full_like(rows, -1.0)).amax(1).clamp_min(0)
    yb = (bottom + 0.5) / S * 2 - 1                 # in normalised coordinates
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = 1.0, 1.0
    theta[:, 0, 1] = k                              # x_src = x + k * (y - yb): y < yb (above) moves right
    theta[:, 0, 2] = -k * yb
    grid = F.affine_grid(theta, [n, 1, S, S], align_corners=False)
    return (F.grid_sample(masks.float()[:, None], grid, align_corners=False)[:, 0] >= 0.5).float()


# --------------------------------------------------------------------------- Amodal-VAE's latent space
def posteriors(vae, ann: AnnotationSet, instances: Sequence[Instance]):
    """Amodal-VAE's posteriors of ``instances`` (an ``InstanceCompletions``: ``mu``, ``std``, and
    ``boxes``, the image frames their 28x28 decodings cover), in their scene ``ann``."""
    return complete_instances(vae, list(instances), context=ann, return_details=True)


@torch.no_grad()
def decode_to_crops(vae, z: torch.Tensor, vae_boxes: torch.Tensor, crop_boxes: torch.Tensor, size: int,
                    threshold: float = POSE_THRESHOLD) -> torch.Tensor:
    """Latent codes (N, d) decoded (N, 28, 28), moved from the VAE's image frames ``vae_boxes`` into
    the square crops ``crop_boxes`` (xyxy image boxes, (N, 4) each) at ``size``, binarised."""
    was = vae.training
    vae.eval()
    try:
        dev = next(vae.parameters()).device
        probs = torch.sigmoid(vae.decoder(z.to(dev).float())).cpu()
    finally:
        vae.train(was)
    return (warp_to_frame(probs, vae_boxes.float(), crop_boxes.float(), size) >= threshold).float()


def latent_direction(mus: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(unit vector, standard deviation along it): the first principal axis of posterior means
    (N, d), e.g. of one class's training instances; its sign makes the mean projection of the
    upper half of the codes positive (deterministic)."""
    x = mus.float() - mus.float().mean(0, keepdim=True)
    _, s, v = torch.linalg.svd(x, full_matrices=False)
    d = v[0]
    proj = x @ d
    if float(proj[proj > proj.median()].mean()) < 0:
        d = -d
    return d, float(s[0] / max(math.sqrt(max(len(x) - 1, 1)), 1.0))


def walk(mu: torch.Tensor, direction: torch.Tensor, spread: float, steps: Sequence[float]) -> torch.Tensor:
    """Codes (len(steps), N, d): ``mu + t * spread * direction`` for each ``t``."""
    return torch.stack([mu + float(t) * spread * direction for t in steps])


def interpolate(mu_a: torch.Tensor, mu_b: torch.Tensor, steps: Sequence[float]) -> torch.Tensor:
    """Codes (len(steps), N, d) on the segment from ``mu_a`` (t = 0) to ``mu_b`` (t = 1)."""
    return torch.stack([(1 - float(t)) * mu_a + float(t) * mu_b for t in steps])


def near_posterior(mu: torch.Tensor, std: torch.Tensor, k: int, spread: float = 1.0,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Codes (k, N, d) drawn from N(mu, (spread * std)^2)."""
    eps = torch.randn((k, *mu.shape), generator=generator)
    return mu[None] + spread * std[None] * eps


def partners(instances: Sequence[Instance], seed: int = 0) -> list:
    """For each instance, the position of another instance of its class (itself when alone)."""
    rng = np.random.default_rng(seed)
    by_cat: dict = {}
    for k, i in enumerate(instances):
        by_cat.setdefault(i.category_id, []).append(k)
    out = []
    for k, i in enumerate(instances):
        others = [j for j in by_cat[i.category_id] if j != k]
        out.append(int(rng.choice(others)) if others else k)
    return out


def class_directions(mus: torch.Tensor, categories: Sequence[int], min_count: int = 5) -> dict:
    """{category: (direction, spread)} of :func:`latent_direction` per class with ``min_count``
    codes, and under ``None`` the one of all codes together (for the rarer classes)."""
    cats = torch.as_tensor(list(categories))
    out = {None: latent_direction(mus)}
    for c in sorted(set(cats.tolist())):
        sel = cats == c
        if int(sel.sum()) >= min_count:
            out[c] = latent_direction(mus[sel])
    return out


def new_poses(vae, ann: AnnotationSet, instances: Sequence[Instance], crop_boxes: torch.Tensor, size: int,
              directions: dict, walk_t: float = 1.5, shear_k: float = 0.3, seed: int = 0) -> dict:
    """{pose source: (N, S, S) masks in the instances' crops}: the Amodal-VAE posterior mode (the
    original pose as the VAE sees it), a walk of ``walk_t`` standard deviations along the class's
    latent direction (``directions``: :func:`class_directions` of training codes), the midpoint
    to another instance of the class (:func:`partners`), one sample near the posterior, and the
    mask edits mirror and shear (of the instances' own masks in ``ann``)."""
    insts = list(instances)
    det = posteriors(vae, ann, insts)
    mu, std, vb = det.mu, det.std, det.boxes
    dirs = torch.stack([directions.get(i.category_id, directions[None])[0] for i in insts])
    spreads = torch.tensor([directions.get(i.category_id, directions[None])[1] for i in insts])[:, None]
    other = partners(insts, seed)
    g = torch.Generator().manual_seed(seed)
    codes = {"Amodal-VAE posterior mode": mu,
             f"latent direction (+{walk_t:g} sd)": mu + walk_t * spreads * dirs,
             "interpolation to another instance (t = 0.5)": interpolate(mu, mu[other], [0.5])[0],
             "sample near the posterior": near_posterior(mu, std, 1, 1.0, g)[0]}
    return {name: decode_to_crops(vae, z, vb, crop_boxes, size) for name, z in codes.items()}


# --------------------------------------------------------------------------- baselines
def class_mean_colours(rgb: torch.Tensor, masks: torch.Tensor, categories: Sequence[int]) -> dict:
    """{category: (3,) mean RGB of its objects' pixels}, and under None that of all objects."""
    cats = torch.as_tensor(list(categories))
    m = masks.float()[:, None]
    sums, counts = (rgb * m).sum((2, 3)), m.sum((2, 3))
    out = {None: sums.sum(0) / counts.sum().clamp_min(1)}
    for c in sorted(set(cats.tolist())):
        sel = cats == c
        out[c] = sums[sel].sum(0) / counts[sel].sum().clamp_min(1)
    return out


def _same_class(query_cats, pool_cats) -> torch.Tensor:
    q, p = torch.as_tensor(list(query_cats)), torch.as_tensor(list(pool_cats))
    same = q[:, None] == p[None]
    return torch.where(same.any(1, keepdim=True), same, torch.ones_like(same))   # no such class: any


def nearest_by_mask(query: torch.Tensor, pool: torch.Tensor, query_cats, pool_cats) -> torch.Tensor:
    """For each query mask (N, S, S), the pool mask (P, S, S) of its class with the largest IoU."""
    a, b = query.flatten(1).float(), pool.flatten(1).float()
    inter = a @ b.T
    iou = inter / (a.sum(1, keepdim=True) + b.sum(1)[None] - inter).clamp_min(1)
    return torch.where(_same_class(query_cats, pool_cats), iou, torch.full_like(iou, -1.0)).argmax(1)


def nearest_by_appearance(query_rgb, query_masks, pool_rgb, pool_masks, query_cats, pool_cats) -> torch.Tensor:
    """For each query object (over neutral grey), the pool object of its class nearest in L2."""
    def flat(rgb, m):
        return (0.5 + (rgb - 0.5) * m.float()[:, None]).flatten(1)
    d = torch.cdist(flat(query_rgb, query_masks), flat(pool_rgb, pool_masks))
    return torch.where(_same_class(query_cats, pool_cats), d, torch.full_like(d, float("inf"))).argmin(1)


def paste_fill(src_rgb, src_masks, masks) -> torch.Tensor:
    """Source objects' pixels inside the target masks; target pixels the source does not cover
    take the source object's mean colour."""
    m = src_masks.float()[:, None]
    mean = (src_rgb * m).sum((2, 3)) / m.sum((2, 3)).clamp_min(1)
    return torch.where(m > 0.5, src_rgb, mean[:, :, None, None].expand_as(src_rgb))


# --------------------------------------------------------------------------- scores
def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004; Gaussian window, data range 1, mean over channels and
    the valid positions) of (N, 3, H, W) images in [0, 1]; the window shrinks to fit small images."""
    w = min(window, x.shape[-1], x.shape[-2])
    t = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = (g / g.sum())
    k = (g[:, None] * g[None]).expand(x.shape[1], 1, w, w).contiguous()

    def blur(z):
        return F.conv2d(z, k, groups=x.shape[1])
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def scores(rgb: torch.Tensor, alpha: torch.Tensor, real: torch.Tensor, masks: torch.Tensor) -> dict:
    """Per-instance L1 (object pixels, grey levels), PSNR (dB), SSIM and silhouette IoU of
    renderings against the real objects, all composited over neutral grey
    (:func:`amodal_lib.train.spade.reconstruction_scores`)."""
    s = reconstruction_scores(rgb, alpha, real, masks)
    fake = 0.5 + (rgb - 0.5) * alpha[:, None]
    true = 0.5 + (real - 0.5) * masks.float()[:, None]
    s["ssim"] = ssim(fake, true)
    return s


def reconstruction_table(model, train: AnnotationSet, test: AnnotationSet, min_side: float = 8,
                         max_instances: Optional[int] = None, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """The renderer's reconstructions of held-out instances (``test``'s unoccluded ones, from their
    own mask and appearance) against four baselines, all drawn into the same mask: the class's
    mean colour and the nearest training object of the class by mask IoU (neither sees the
    instance's pixels, as the issue's baselines), and, seeing them as the renderer's encoder does,
    the instance's own mean colour and the nearest training object by appearance (L2 over grey).
    Returns (the table, {method: per-instance scores})."""
    S, pad = model.crop, float(model.config.get("pad", 1.25))
    held = pick(whole_instances(test, min_side), max_instances, seed)
    pool = whole_instances(train, min_side)
    rgb, masks, _ = P.instance_crops(test, held, S, pad)
    prgb, pmasks, _ = P.instance_crops(train, pool, S, pad)
    cats, pcats = [i.category_id for i in held], [i.category_id for i in pool]
    out, alpha = P.render_crops(model, masks, rgb, masks)
    colours = class_mean_colours(prgb, pmasks, pcats)
    per_class = torch.stack([colours.get(c, colours[None]) for c in cats])[:, :, None, None].expand_as(rgb)
    own = ((rgb * masks[:, None]).sum((2, 3)) / masks[:, None].sum((2, 3)).clamp_min(1))[:, :, None, None]
    nn_mask = nearest_by_mask(masks, pmasks, cats, pcats)
    nn_app = nearest_by_appearance(rgb, masks, prgb, pmasks, cats, pcats)
    methods = {"SPADE renderer (ours)": (out, alpha, True),
               "per-class mean colour": (per_class, masks, False),
               "nearest neighbour by mask, pasted": (paste_fill(prgb[nn_mask], pmasks[nn_mask], masks), masks, False),
               "instance's own mean colour": (own.expand_as(rgb), masks, True),
               "nearest neighbour by appearance, pasted": (paste_fill(prgb[nn_app], pmasks[nn_app], masks), masks, True)}
    per = {name: scores(r, a, rgb, masks) for name, (r, a, _) in methods.items()}
    ours = per["SPADE renderer (ours)"]
    rows = []
    for name, (_, _, sees) in methods.items():
        s = per[name]
        rows.append({"method": name, "sees the instance's pixels": "yes" if sees else "no",
                     "L1 (grey levels)": float(s["l1"].mean()), "PSNR (dB)": float(s["psnr"].mean()),
                     "SSIM": float(s["ssim"].mean()),
                     "silhouette IoU": float(s["silhouette_iou"].mean()) if name == "SPADE renderer (ours)" else None,
                     "SPADE L1 lower on (%)": None if s is ours else float(100 * (ours["l1"] < s["l1"]).float().mean())})
    table = pd.DataFrame(rows)
    table.attrs["instances"] = len(held)
    return table, per


def silhouette_table(model, vae, train: AnnotationSet, test: AnnotationSet, min_side: float = 8,
                     max_instances: Optional[int] = None, seed: int = 0) -> pd.DataFrame:
    """How well the renderer's silhouette (alpha > 0.5) follows the mask it is given, for held-out
    instances in their own pose and in every new pose of :func:`new_poses` (class directions from
    the training instances' posteriors): mean IoU with the mask, and the share of the rendering's
    alpha that falls inside the mask."""
    S, pad = model.crop, float(model.config.get("pad", 1.25))
    held = pick(whole_instances(test, min_side), max_instances, seed)
    pool = whole_instances(train, min_side)
    rgb, masks, boxes = P.instance_crops(test, held, S, pad)
    tr = posteriors(vae, train, pool)
    dirs = class_directions(tr.mu, [i.category_id for i in pool])
    poses = {"original mask": masks, "mirror": mirror(masks), "shear (0.3)": shear(masks, 0.3),
             **new_poses(vae, test, held, boxes, S, dirs, seed=seed)}
    rows = []
    for name, new in poses.items():
        _, alpha = P.render_crops(model, new, rgb, masks)
        iou = silhouette_iou(alpha > 0.5, new > 0.5)
        inside = (alpha * new).flatten(1).sum(1) / alpha.flatten(1).sum(1).clamp_min(1e-6)
        rows.append({"mask": name, "silhouette IoU": float(iou.mean()), "alpha inside the mask (%)":
                     float(100 * inside.mean()), "mask area (% of crop)": float(100 * new.mean())})
    table = pd.DataFrame(rows)
    table.attrs["instances"] = len(held)
    return table


# --------------------------------------------------------------------------- Fig 10
def scene_window(inst: Instance, box: torch.Tensor, grow: float = 1.8) -> tuple:
    """(rows, cols) slices of the image around a crop box grown by ``grow``."""
    x0, y0, x1, y1 = [float(v) for v in box]
    cx, cy, h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * grow / 2
    return (slice(max(int(cy - h), 0), min(int(math.ceil(cy + h)), inst.height)),
            slice(max(int(cx - h), 0), min(int(math.ceil(cx + h)), inst.width)))


def pose_examples(model, vae, train: AnnotationSet, ann: AnnotationSet, instances: Sequence[Instance],
                  sources: Sequence[str], fill: Optional[Callable] = None, seed: int = 0) -> list:
    """Fig 10's rows: for each instance and pose source (a key of :func:`new_poses` or "mirror",
    "shear (0.3)"), {"title", "original": the scene around it, "mask": the new mask (S, S),
    "render": the rendering over grey (S, S, 3), "scene": the composited scene around it}.
    ``fill``: the background filler of :func:`amodal_lib.predict.spade.composite_into`."""
    S, pad = model.crop, float(model.config.get("pad", 1.25))
    insts = list(instances)
    rgb, masks, boxes = P.instance_crops(ann, insts, S, pad)
    pool = whole_instances(train)
    tr = posteriors(vae, train, pool)
    poses = {"mirror": mirror(masks), "shear (0.3)": shear(masks, 0.3),
             **new_poses(vae, ann, insts, boxes, S, class_directions(tr.mu, [i.category_id for i in pool]), seed=seed)}
    rows = []
    for k, (inst, source) in enumerate(zip(insts, sources)):
        new = poses[source][k]
        r = P.render_instance(model, ann, inst, new, box=boxes[k], image=read_image(ann, inst.image_id), fill=fill)
        win = scene_window(inst, boxes[k])
        over = 0.5 + (r["rgb"] - 0.5) * r["alpha"][None]
        rows.append({"title": f"{inst.category} {inst.id}: {source}", "original": read_image(ann, inst.image_id)[win],
                     "mask": new.numpy(), "render": over.permute(1, 2, 0).numpy(), "scene": r["image"][win]})
    return rows


def pick_examples(ann: AnnotationSet, n: int = 6, min_side: float = 24, seed: int = 0) -> list:
    """``n`` unoccluded instances of ``ann`` large enough to see (visible box's longer side at least
    ``min_side`` pixels, else the largest ones), classes taken in turn, drawn with ``seed``."""
    cands = whole_instances(ann, min_side) or sorted(whole_instances(ann, 1), key=lambda i: -max(i.visible_box[2:]))[:n]
    rng = np.random.default_rng(seed)
    by_cat: dict = {}
    for k in rng.permutation(len(cands)):
        by_cat.setdefault(cands[k].category_id, []).append(cands[k])
    out, queues = [], [by_cat[c] for c in sorted(by_cat, key=lambda c: -len(by_cat[c]))]
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def interpolation_strip(model, vae, ann: AnnotationSet, inst: Instance, other: Instance,
                        steps: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> tuple:
    """``inst`` drawn (its own appearance, in its frame) along Amodal-VAE's interpolation from its
    posterior mean (t = 0) to ``other``'s (t = 1): (masks (T, S, S), renderings over grey
    (T, S, S, 3), labels)."""
    S, pad = model.crop, float(model.config.get("pad", 1.25))
    rgb, masks, boxes = P.instance_crops(ann, [inst], S, pad)
    det = posteriors(vae, ann, [inst, other])
    z = interpolate(det.mu[:1], det.mu[1:], steps)[:, 0]
    new = decode_to_crops(vae, z, det.boxes[:1].expand(len(z), 4), boxes.expand(len(z), 4), S)
    out, alpha = P.render_crops(model, new, rgb.expand(len(z), -1, -1, -1), masks.expand(len(z), -1, -1))
    over = 0.5 + (out - 0.5) * alpha[:, None]
    return new.numpy(), over.permute(0, 2, 3, 1).numpy(), [f"t = {t:g}" for t in steps]


def verdict(table: pd.DataFrame) -> str:
    """Does the renderer beat the two baselines that do not see the instance's pixels, and the
    two that do, on L1 (lower), PSNR and SSIM (higher)? One line each."""
    ours = table.iloc[0]
    lines = []
    for _, row in table.iloc[1:].iterrows():
        wins = [ours["L1 (grey levels)"] < row["L1 (grey levels)"], ours["PSNR (dB)"] > row["PSNR (dB)"],
                ours["SSIM"] > row["SSIM"]]
        word = "beats" if all(wins) else "does not beat" if not any(wins) else "partly beats"
        sees = row["sees the instance's pixels"]
        lines.append(f"SPADE {word} '{row['method']}' (sees the pixels: {sees}): L1 {ours['L1 (grey levels)']:.2f} vs "
                     f"{row['L1 (grey levels)']:.2f}, PSNR {ours['PSNR (dB)']:.2f} vs {row['PSNR (dB)']:.2f}, "
                     f"SSIM {ours['SSIM']:.3f} vs {row['SSIM']:.3f}")
    return "\n".join(lines)
