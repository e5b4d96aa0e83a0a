"""Validation without amodal labels: held-out images, real masks pasted in front of isolated instances.

Most instance data has visible (modal) masks only, so nothing says what a completion should be.
This module makes that answer from the data itself, in two steps:

1. :func:`holdout_split` sets whole images aside (whole *sequences* when file names look like
   ``SEQ/FRAME.png``, as in KITTI, so that no frame of a held-out video is trained on), seeded,
   until about ``fraction`` of the instances are held out.
2. :func:`pasted_occlusions` takes the held-out instances that are *isolated* (touching no other
   instance and not the image border: as whole as modal data can tell) as targets, and pastes the
   real visible mask of another held-out instance in front of most of them. The target's amodal
   mask is its original visible mask; its new visible mask is what the occluder leaves. Each
   target gets an image of its own (same size as its source image) holding the target and its
   occluder, so the result is an ordinary :class:`AnnotationSet` with amodal labels that every
   method and metric of the project reads unchanged.

The occluder is an instance of the file by default (as in KINS, where every occluder is annotated);
``with_occluders=False`` leaves them out, the case of real scenes where what hides an object (a
pole, a tree, an unlabelled car) is not an annotated instance. :func:`write_kins2020` saves either
as a KINS 2020 JSON file, so that ``amodal complete`` / ``amodal evaluate`` read it too.

Sizes, decided: the occluder is rescaled so that its height is the target's times a log-uniform
factor in ``scale`` (occluders are nearer, so as tall or taller), and placed at random over the
target's box; of ``tries`` placements, the one whose hidden fraction is closest to a value drawn
uniformly in ``hidden`` is kept (so hidden fractions spread over that range), and a share
``unoccluded`` of the targets is left whole (as many real instances are).
"""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_write_text
from . import masks as M
from .records import AnnotationSet, Instance, box_touches_border, set_amodal_occluders


def group_of(file_name: Optional[str], image_id) -> str:
    """The unit of a hold-out: the folder of ``SEQ/FRAME.png`` file names (a video), else the image."""
    if file_name and "/" in str(file_name).strip("/"):
        return str(file_name).strip("/").rsplit("/", 1)[0]
    return f"image:{image_id}"


def holdout_split(ann: AnnotationSet, fraction: float = 0.1, seed: int = 0) -> tuple[AnnotationSet, AnnotationSet]:
    """(train, held) views of ``ann``: whole groups (:func:`group_of`) in a seeded order are held
    out while the held-out share of instances stays near ``fraction``; when ``ann`` has fewer than
    two groups, whole images are held out instead. Both views keep ``ann``'s metadata."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    images_of: dict = defaultdict(set)
    count: dict = defaultdict(int)
    for i in ann.instances:
        g = group_of(i.file_name or ann.images.get(i.image_id, {}).get("file_name"), i.image_id)
        images_of[g].add(i.image_id)
        count[g] += 1
    if len(images_of) < 2:
        images_of, count = defaultdict(set), defaultdict(int)
        for i in ann.instances:
            images_of[f"image:{i.image_id}"].add(i.image_id)
            count[f"image:{i.image_id}"] += 1
    if len(images_of) < 2:
        raise ValueError(f"{ann.path}: one image only: nothing to hold out for validation")
    total, want = sum(count.values()), fraction * sum(count.values())
    order = sorted(images_of)
    np.random.default_rng(seed).shuffle(order)
    held: list = []
    n = 0
    for g in order:
        if n >= want:
            break
        if n + count[g] <= 1.5 * want or not held:
            held.append(g)
            n += count[g]
    if n >= total:  # every group held out: give the largest back
        held.remove(max(held, key=lambda g: count[g]))
    held_images = set().union(*(images_of[g] for g in held))
    return (ann.subset([i for i in ann.instances if i.image_id not in held_images]),
            ann.subset([i for i in ann.instances if i.image_id in held_images]))


def isolated(ann: AnnotationSet, min_area: int = 16) -> list:
    """The instances touching no other instance and not the border (from visible masks only)."""
    modal = ann if not ann.has_amodal else ann.modal_view()
    return [i for i in modal.instances if i.is_unoccluded and i.visible_area >= min_area]


def _crop(inst: Instance) -> np.ndarray:
    x, y, w, h = inst.visible_box
    m = M.decode(inst.visible)
    return m[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))].astype(bool)


def _resize(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (F.interpolate(t, size=(max(h, 1), max(w, 1)), mode="bilinear", align_corners=False)[0, 0] >= 0.5).numpy()


def _paste(canvas_hw: tuple, mask: np.ndarray, x0: int, y0: int) -> np.ndarray:
    H, W = canvas_hw
    out = np.zeros((H, W), bool)
    h, w = mask.shape
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if xa < xb and ya < yb:
        out[ya:yb, xa:xb] = mask[ya - y0:yb - y0, xa - x0:xb - x0]
    return out


def pasted_occlusions(held: AnnotationSet, seed: int = 0, with_occluders: bool = True,
                      hidden: tuple = (0.05, 0.6), unoccluded: float = 0.25, scale: tuple = (0.8, 1.5),
                      tries: int = 12, max_targets: Optional[int] = None, min_area: int = 16) -> AnnotationSet:
    """An :class:`AnnotationSet` with amodal labels made from ``held``'s visible masks (module doc).

    Targets keep their ids; occluders get new ids above every id of ``held``, images new ids
    (one per target). ``max_targets`` caps the number of targets (a seeded choice). The random
    draws do not depend on ``with_occluders``: the same seed gives the same targets, occluded the
    same way, with and without their occluders in the file."""
    rng = np.random.default_rng(seed)
    targets = isolated(held, min_area)
    if not targets:
        raise ValueError(f"{held.path}: no isolated instance (touching neither another instance nor the "
                         "border) among the held-out images to build validation from")
    if max_targets is not None and len(targets) > max_targets:
        keep = np.sort(rng.choice(len(targets), max_targets, replace=False))
        targets = [targets[k] for k in keep]
    pool = [i for i in held.instances if i.visible_area >= min_area]
    next_id = max(int(i.id) for i in held.instances) + 1
    images: dict = {}
    out: list = []
    for n, t in enumerate(targets):
        H, W = t.height, t.width
        image_id = n + 1
        src = held.images.get(t.image_id, {})
        images[image_id] = {"id": image_id, "file_name": src.get("file_name", t.file_name), "height": H, "width": W,
                            "source_image_id": t.image_id}
        full = M.decode(t.visible).astype(bool)
        area = int(full.sum())
        amodal = dataclasses.replace(t, image_id=image_id, amodal=t.visible, amodal_box=t.visible_box,
                                     amodal_area=t.visible_area, occluders=(), depth=None)
        if rng.random() < unoccluded:
            out.append(amodal)
            continue
        want = rng.uniform(*hidden)
        tx, ty, tw, th = t.visible_box
        best = None
        for _ in range(tries):
            o = pool[int(rng.integers(len(pool)))]
            if o.id == t.id:
                continue
            om = _crop(o)
            s = th * np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))) / max(om.shape[0], 1)
            om = _resize(om, int(round(om.shape[0] * s)), int(round(om.shape[1] * s)))
            if rng.random() < 0.5:
                om = om[:, ::-1]
            oh, ow = om.shape
            cx = rng.uniform(tx - ow / 2, tx + tw + ow / 2)
            cy = rng.uniform(ty - oh / 4, ty + th + oh / 4)
            occ = _paste((H, W), om, int(round(cx - ow / 2)), int(round(cy - oh / 2)))
            vis = full & ~occ
            frac = 1.0 - vis.sum() / max(area, 1)
            if vis.sum() < min_area or frac <= 0.0 or frac > 0.9 or not occ.any():
                continue
            if best is None or abs(frac - want) < best[0]:
                best = (abs(frac - want), vis, occ, o)
        if best is None:  # nothing fitted: the target stays whole
            out.append(amodal)
            continue
        _, vis, occ, o = best
        vrle = M.encode(vis)
        vbox = tuple(float(v) for v in M.to_bbox(vrle))
        out.append(dataclasses.replace(amodal, visible=vrle, visible_box=vbox, visible_area=int(vis.sum()),
                                       touches_border=box_touches_border(vbox, H, W)))
        if with_occluders:
            orle = M.encode(occ)
            obox = tuple(float(v) for v in M.to_bbox(orle))
            out.append(dataclasses.replace(
                o, id=next_id, image_id=image_id, height=H, width=W, visible=orle, visible_box=obox,
                visible_area=int(occ.sum()), amodal=orle, amodal_box=obox, amodal_area=int(occ.sum()),
                occluders=(), depth=None, file_name=images[image_id]["file_name"],
                touches_border=box_touches_border(obox, H, W)))
            next_id += 1
    set_amodal_occluders(out)
    kind = "with" if with_occluders else "without"
    return AnnotationSet(f"{held.path} (pasted occlusions, {kind} occluders, seed {seed})", "pasted", out, images,
                         dict(held.categories))


def without_occluders(pasted: AnnotationSet, held: AnnotationSet) -> AnnotationSet:
    """The targets of ``pasted`` (made from ``held`` by :func:`pasted_occlusions`) without their
    occluders: the same as ``pasted_occlusions(held, ..., with_occluders=False)``, without redoing
    the pasting (targets keep their ids of ``held``; occluders have new ones)."""
    ids = {i.id for i in held.instances}
    targets = [dataclasses.replace(i, occluders=()) for i in pasted.instances if i.id in ids]
    return dataclasses.replace(pasted.subset(targets), path=pasted.path.replace("with occluders", "without occluders"))


def write_kins2020(ann: AnnotationSet, path) -> Path:
    """Write an AnnotationSet with amodal labels as a KINS 2020 JSON file (masks as RLE)."""
    if not ann.has_amodal:
        raise ValueError(f"{ann.path}: no amodal labels to write as KINS 2020")
    anns = []
    for i in ann.instances:
        anns.append({"id": int(i.id), "image_id": int(i.image_id), "category_id": int(i.category_id),
                     "i_segm": M.to_json(i.visible), "a_segm": M.to_json(i.amodal),
                     "i_bbox": [float(v) for v in i.visible_box], "a_bbox": [float(v) for v in i.amodal_box],
                     "i_area": int(i.visible_area), "a_area": int(i.amodal_area), "oco_id": 0, "ico_id": 0,
                     "area": int(i.amodal_area), "iscrowd": 0})
    ims = [{"id": int(v["id"]), "file_name": v.get("file_name"), "height": int(v["height"]),
            "width": int(v["width"])} for v in ann.images.values()]
    cats = [{"id": int(k), "name": v} for k, v in sorted(ann.categories.items())]
    doc = {"info": {"description": ann.path}, "images": ims, "categories": cats, "annotations": anns}
    return atomic_write_text(path, json.dumps(doc, separators=(",", ":")))
