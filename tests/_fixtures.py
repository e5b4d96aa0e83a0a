"""Tiny annotation files in every supported schema, written by the tests themselves.

Each image holds a "car" (an ellipse polygon, behind) partly hidden by a "pedestrian" (a
rectangle, in front), plus one lone object that touches nothing. Amodal masks are the
polygons; visible masks are what the depth order leaves.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mu

H, W = 100, 200


def _rle(m: np.ndarray) -> dict:
    r = mu.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode()}


def _raster(poly) -> np.ndarray:
    return mu.decode(mu.merge(mu.frPyObjects([poly], H, W)))


def scene_objects(n_images: int = 4, seed: int = 0):
    """[(image_id, [(ann_id, category_id, amodal_polygon, visible_mask, depth)])]"""
    rng = np.random.default_rng(seed)
    out, aid = [], 1
    for im in range(1, n_images + 1):
        cx = int(rng.integers(60, 110))
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        back = np.stack([cx + 40 * np.cos(t), 50 + 20 * np.sin(t)], 1).round(1).ravel().tolist()
        fx = int(cx + rng.integers(5, 30))
        front = [fx, 25, fx + 25, 25, fx + 25, 85, fx, 85]
        lone = [170, 10, 190, 10, 190, 30, 170, 30]
        ab, af, al = _raster(back), _raster(front), _raster(lone)
        objs = [(aid, 4, back, ab * (1 - af), 2), (aid + 1, 2, front, af, 1), (aid + 2, 7, lone, al, 0)]
        aid += 3
        out.append((im, objs))
    return out


def _images(scenes):
    return [{"id": im, "file_name": f"{im:06d}.png", "height": H, "width": W} for im, _ in scenes]


def _box(m):
    return [float(v) for v in mu.toBbox(mu.encode(np.asfortranarray(m.astype(np.uint8))))]


KINS_CATS = [{"id": 1, "name": "cyclist"}, {"id": 2, "name": "pedestrian"}, {"id": 4, "name": "car"},
             {"id": 7, "name": "van"}]


def write_kins2020(path: Path, n_images: int = 4, seed: int = 0, drop_amodal: bool = False) -> Path:
    scenes = scene_objects(n_images, seed)
    anns = []
    for im, objs in scenes:
        for aid, cat, poly, vis, depth in objs:
            a = {"id": aid, "image_id": im, "category_id": cat, "i_segm": [poly] if depth == 0 else _rle(vis),
                 "i_bbox": _box(vis), "i_area": int(vis.sum()), "oco_id": 1 if depth else 0, "ico_id": depth}
            if not drop_amodal:
                amodal = _raster(poly)
                a.update({"a_segm": [poly], "a_bbox": _box(amodal), "a_area": int(amodal.sum())})
            anns.append(a)
    path.write_text(json.dumps({"images": _images(scenes), "annotations": anns, "categories": KINS_CATS}))
    return path


def write_kins_old(path: Path, n_images: int = 4, seed: int = 0) -> Path:
    scenes = scene_objects(n_images, seed)
    anns = []
    for im, objs in scenes:
        for aid, cat, poly, vis, depth in objs:
            amodal = _raster(poly)
            anns.append({"id": aid, "image_id": im, "category_id": cat, "segmentation": [poly],
                         "bbox": _box(amodal), "area": int(amodal.sum()), "inmodal_seg": _rle(vis),
                         "inmodal_bbox": _box(vis), "inmodal_area": int(vis.sum()), "ico_id": depth, "iscrowd": 0})
    path.write_text(json.dumps({"images": _images(scenes), "annotations": anns, "categories": KINS_CATS}))
    return path


def write_coco(path: Path, n_images: int = 4, seed: int = 0, polygons: bool = False) -> Path:
    """Plain COCO instances: ``segmentation`` is the visible mask only."""
    scenes = scene_objects(n_images, seed)
    anns = []
    for im, objs in scenes:
        for aid, cat, poly, vis, depth in objs:
            seg = [poly] if (polygons and depth != 2) else _rle(vis)
            anns.append({"id": aid, "image_id": im, "category_id": cat, "segmentation": seg,
                         "bbox": _box(vis), "area": int(vis.sum()), "iscrowd": 0})
    path.write_text(json.dumps({"images": _images(scenes), "annotations": anns, "categories": KINS_CATS}))
    return path


def write_cocoa(path: Path, n_images: int = 4, seed: int = 0) -> Path:
    scenes = scene_objects(n_images, seed)
    recs = []
    for im, objs in scenes:
        regions = []
        for aid, cat, poly, vis, depth in sorted(objs, key=lambda o: o[4] or 99):
            amodal = _raster(poly)
            r = {"segmentation": poly, "name": {4: "car", 2: "person", 7: "van"}[cat], "area": float(amodal.sum()),
                 "order": len(regions) + 1, "occlude_rate": float(1 - vis.sum() / amodal.sum())}
            if r["occlude_rate"] > 0:
                r["visible_mask"] = _rle(vis)
                r["invisible_mask"] = _rle(amodal * (1 - vis))
            regions.append(r)
        recs.append({"image_id": im, "id": im, "regions": regions, "depth_constraint": "1-2", "size": len(regions)})
    path.write_text(json.dumps({"images": _images(scenes), "annotations": recs}))
    return path


def write_cityscapes(folder: Path, n_images: int = 2, seed: int = 0) -> Path:
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for im, objs in scene_objects(n_images, seed):
        ids = np.zeros((H, W), np.int32)
        for k, (aid, cat, poly, vis, depth) in enumerate(objs):
            ids[vis > 0] = {4: 26, 2: 24, 7: 27}[cat] * 1000 + k
        Image.fromarray(ids.astype(np.uint16)).save(folder / f"city_{im:06d}_000019_gtFine_instanceIds.png")
    return folder
