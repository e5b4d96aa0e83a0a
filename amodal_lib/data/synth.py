"""The embedded default data set: procedural street scenes written in the KINS 2020 schema.

No download, no licence question: ``generate`` (or ``amodal synth``) writes COCO-style JSON
files that the rest of the code reads exactly like KINS's 2020 update files:

    out_dir/update_train_2020.json, update_val_2020.json, update_test_2020.json
    out_dir/images/<split>/<000123>.png
    out_dir/datasheet.md, out_dir/datasheet.json, out_dir/params.json (written last)

This module is the data set on disk: splits, files, the cache and the datasheet. One scene
is made by :mod:`amodal_lib.data.scenes`: a pinhole camera at driver's height looking down a
street (KITTI-like field of view, horizon at 35-45 % of the height): road with lanes and
markings, parking strips with rows of parked cars, sidewalks with pedestrians, buildings with
window grids, sometimes a crossing street with a zebra crossing and crossing traffic. Objects
are 3D part models (:mod:`amodal_lib.data.scenes.vehicles`, :mod:`~amodal_lib.data.scenes.people`)
placed on the ground plane with a yaw, so their silhouettes are true side, rear, front and 3/4
views whose size follows the perspective (scale proportional to the distance of the ground
contact below the horizon).

Annotations, as KINS has them:
- ``a_segm``: amodal mask as COCO polygons (several convex parts per object, their union is
  the object), clipped to the image by the rasteriser (objects may be truncated).
- ``i_segm``: visible mask, compressed RLE (amodal minus the amodal masks of the instances
  in front of it: the visible part may have holes).
- ``a_bbox``/``i_bbox``/``a_area``/``i_area`` from the rasterised masks (pycocotools).
- ``oco_id``: occlusion cluster (connected component of the "amodal masks overlap" graph in
  the image), unique over the data set; 0 for an instance that overlaps nothing.
- ``ico_id``: order inside the cluster, 1 = nearest to the camera; 0 when not overlapping.
Depth order is the distance of the object's ground-contact centre (equivalently its row
below the horizon). Instances with an amodal area under 40 px or a visible area under 20 px
are left out of the scene altogether (neither drawn nor occluding), so every annotation has
a visible part and every occluder is annotated.

Everything is deterministic in ``seed``: image i uses ``SeedSequence([seed, i])`` whatever the
number of workers, and its split comes from i alone (a low-discrepancy sequence), so the
first N images of a larger data set are the same images in the same splits.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..errors import ArgumentError, UnsafeOutputError
from ..io import atomic_write_text
from .datasheet import OCC_BINS, count, occlusion_bin  # noqa: F401 (occlusion_bin, OCC_BINS: public here too)
from .readers import KINS_CATEGORIES
from .scenes import MAX_INSTANCES, MIN_AMODAL_AREA, MIN_INSTANCES, MIN_VISIBLE_AREA, scene  # noqa: F401 (public here too)

GENERATOR_VERSION = 2   # bump whenever the generated data change: it keys the cache
SPLITS = ("train", "val", "test")
ANN_FILES = {"train": "update_train_2020.json", "val": "update_val_2020.json", "test": "update_test_2020.json"}
_SUPERCATEGORY = {"cyclist": "person", "pedestrian": "person"}
CATEGORIES = [{"id": k, "name": name, "supercategory": _SUPERCATEGORY.get(name, "vehicle")}
              for k, name in KINS_CATEGORIES.items()]
CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}
CAT_NAME = {c["id"]: c["name"] for c in CATEGORIES}
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def split_of(index: int, splits=(0.7, 0.1, 0.2)) -> str:
    """The split of image ``index``: deterministic in the index alone (golden-ratio sequence,
    so every prefix of the data set has close to the requested proportions)."""
    total = float(sum(splits))
    u = (index * _GOLDEN + 0.5 * _GOLDEN) % 1.0
    acc = 0.0
    for name, frac in zip(SPLITS, splits):
        acc += frac / total
        if u < acc:
            return name
    return SPLITS[len(splits) - 1]


def image_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _work(args):
    """Worker: render images [start, stop), write their PNGs, return their annotations."""
    start, stop, seed, H, W, out_dir, splits = args
    out = []
    for i in range(start, stop):
        rgb, insts = scene(image_rng(seed, i), H, W)
        split = split_of(i, splits)
        rel = f"{split}/{i:06d}.png"
        Image.fromarray(rgb).save(os.path.join(out_dir, "images", rel), compress_level=1)
        for inst in insts:
            inst.pop("depth", None)
            inst.pop("view_deg", None)
        out.append((i, split, rel, insts))
    return out


def _write_json(path: Path, obj, compact=True):
    """The annotation files compact, the others sorted and indented (their bytes name the data:
    do not change the format without bumping GENERATOR_VERSION)."""
    if compact:
        atomic_write_text(path, json.dumps(obj, separators=(",", ":")))
    else:
        atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _datasheet(per_split: dict, params: dict) -> tuple[dict, str]:
    """The datasheet of the written splits ({split: (images, annotations)}): JSON and Markdown."""
    sheet = {"generator": "amodal_lib.data.synth", "generator_version": GENERATOR_VERSION, "params": params,
             "schema": "KINS 2020 update (a_segm polygons, i_segm RLE, a_bbox, i_bbox, a_area, i_area, oco_id, ico_id)",
             "categories": {str(c["id"]): c["name"] for c in CATEGORIES}, "occlusion_bins": list(OCC_BINS),
             "splits": {}}
    names = [c["name"] for c in CATEGORIES]
    for split, (images, anns) in per_split.items():
        width = images[-1]["width"] if images else None
        c = count(((CAT_NAME[a["category_id"]], a["a_area"], a["i_area"]) for a in anns), names)
        sheet["splits"][split] = {
            "images": len(images), "instances": len(anns),
            "instances_per_image": round(len(anns) / max(1, len(images)), 3),
            **{k: c[k] for k in ("per_category", "per_occlusion_bin", "per_category_and_bin",
                                 "mean_occlusion_rate", "occluded_fraction")},
            # amodal boxes reaching the left or right image border: truncated objects
            "touching_left_or_right_border": sum(width is not None and (a["a_bbox"][0] <= 0.5 or
                                                 a["a_bbox"][0] + a["a_bbox"][2] >= width - 0.5) for a in anns),
            "clusters": len({a["oco_id"] for a in anns if a["oco_id"]}),
        }
    md = ["# Datasheet: embedded synthetic street scenes (KINS 2020 schema)", "",
          "Procedural street scenes from `amodal_lib.data.synth` (generator version "
          f"{GENERATOR_VERSION}): a pinhole camera at driver's height, 3D part models of cars, vans, trucks, "
          "trams, trailers (misc), pedestrians and cyclists placed on the ground plane in lanes, parking rows, "
          "sidewalks and crossings. Amodal masks are exact (the union of the projected parts); visible masks are "
          "the amodal mask minus the amodal masks of the instances in front. Instances with amodal area < "
          f"{MIN_AMODAL_AREA} px or visible area < {MIN_VISIBLE_AREA} px are left out of the scene.", "",
          "Parameters: " + ", ".join(f"`{k}={v}`" for k, v in sorted(params.items())), "",
          "Occlusion rate = 1 - visible area / amodal area (both inside the image).", ""]
    head = "| split | images | instances | per image | occluded | mean occlusion |"
    md += ["## Splits", "", head, "|---|---|---|---|---|---|"]
    for s, d in sheet["splits"].items():
        md.append(f"| {s} | {d['images']} | {d['instances']} | {d['instances_per_image']} | "
                  f"{d['occluded_fraction']:.1%} | {d['mean_occlusion_rate']:.1%} |")
    md += ["", "## Instances per category", "", "| category | " + " | ".join(sheet["splits"]) + " |",
           "|---|" + "---|" * len(sheet["splits"])]
    for c in CATEGORIES:
        md.append(f"| {c['id']} {c['name']} | " +
                  " | ".join(str(d["per_category"][c["name"]]) for d in sheet["splits"].values()) + " |")
    md += ["", "## Instances per occlusion bin", "", "| occlusion | " + " | ".join(sheet["splits"]) + " |",
           "|---|" + "---|" * len(sheet["splits"])]
    for b in OCC_BINS:
        md.append(f"| {b} | " + " | ".join(str(d["per_occlusion_bin"][b]) for d in sheet["splits"].values()) + " |")
    md.append("")
    return sheet, "\n".join(md)


def generate(out_dir, images: int = 2000, seed: int = 0, height: int = 160, width: int = 512,
             splits=(0.7, 0.1, 0.2), workers: Optional[int] = None, progress: bool = True) -> dict:
    """Write the data set into ``out_dir`` (see the module docstring); returns its paths:
    ``{"train", "val", "test", "images_dir", "datasheet", "datasheet_json", "params", "root"}``.

    The data set is built in a temporary folder beside ``out_dir`` and swapped in only when
    complete, so an interrupted run leaves what ``out_dir`` held before (an earlier data set)
    untouched. An existing ``out_dir`` must be empty or hold only what this function writes:
    a folder with other files is refused (:class:`~amodal_lib.errors.UnsafeOutputError`)."""
    images, seed, height, width = int(images), int(seed), int(height), int(width)
    if images < 1 or height < 16 or width < 16:
        raise ArgumentError("need images >= 1 and an image size of at least 16x16")
    if seed < 0:
        raise ArgumentError(f"the seed must be >= 0, got {seed}")
    splits = tuple(float(s) for s in splits)
    if len(splits) != 3 or min(splits) < 0 or sum(splits) <= 0:
        raise ArgumentError("splits must be three non-negative fractions (train, val, test)")
    final = Path(out_dir)
    target = final.resolve() if final.is_symlink() else final   # a link to a folder: replace the folder
    _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    build = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        build.mkdir()
        _generate_into(build, images, seed, height, width, splits, workers, progress)
        _swap_in(build, target)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return _paths(final)


# what generate() writes at the top of its folder (anything else there is the user's, and kept)
_WRITTEN = {*ANN_FILES.values(), "images", "datasheet.md", "datasheet.json", "params.json"}


def _check_replaceable(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise UnsafeOutputError(target, "exists and is not a folder: refusing to replace it with a data set")
    foreign = sorted(p.name for p in target.iterdir() if p.name not in _WRITTEN and ".tmp-" not in p.name)
    images = target / "images"
    if images.is_dir():
        foreign += sorted(f"images/{p.name}" for p in images.iterdir() if p.name not in SPLITS)
    if foreign:
        raise UnsafeOutputError(target, f"holds files that are not an amodal synth data set (e.g. {foreign[0]!r}): "
                                        "give an empty or new folder")


def _swap_in(build: Path, target: Path) -> None:
    """Put the finished folder ``build`` at ``target``; an older ``target`` is removed only after."""
    if not target.exists():
        os.rename(build, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    moved = False
    try:
        os.rename(target, old)
        moved = True
        os.rename(build, target)
    except BaseException:
        if moved and not target.exists():
            os.rename(old, target)   # put the old data set back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _generate_into(out: Path, images: int, seed: int, height: int, width: int, splits: tuple,
                   workers: Optional[int], progress: bool) -> None:
    from tqdm.auto import tqdm

    for s in SPLITS:
        (out / "images" / s).mkdir(parents=True, exist_ok=True)
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    chunk = 25
    jobs = [(a, min(a + chunk, images), seed, height, width, str(out), splits) for a in range(0, images, chunk)]
    results = {}
    bar = tqdm(total=images, desc="synth images", unit="img", disable=not progress)
    try:
        if workers <= 1 or len(jobs) == 1:
            for j in jobs:
                for r in _work(j):
                    results[r[0]] = r
                bar.update(j[1] - j[0])
        else:
            import multiprocessing as mp
            methods = mp.get_all_start_methods()
            ctx = mp.get_context("fork" if "fork" in methods else "spawn")
            with ctx.Pool(workers) as pool:
                for res in pool.imap_unordered(_work, jobs):
                    for r in res:
                        results[r[0]] = r
                    bar.update(len(res))
    finally:
        bar.close()

    per_split = {s: ([], []) for s in SPLITS}
    ann_id, oco_base = 0, 0
    for i in range(images):
        _, split, rel, insts = results[i]
        image_id = i + 1
        per_split[split][0].append({"id": image_id, "file_name": rel, "height": height, "width": width})
        n_clusters = max([a["oco_id"] for a in insts] + [0])
        for a in insts:
            ann_id += 1
            rec = {"id": ann_id, "image_id": image_id, "category_id": a["category_id"],
                   "a_segm": a["a_segm"], "i_segm": a["i_segm"], "a_bbox": a["a_bbox"], "i_bbox": a["i_bbox"],
                   "a_area": a["a_area"], "i_area": a["i_area"],
                   "oco_id": a["oco_id"] + oco_base if a["oco_id"] else 0, "ico_id": a["ico_id"],
                   "area": a["a_area"], "iscrowd": 0}
            per_split[split][1].append(rec)
        oco_base += n_clusters
    params = {"images": images, "seed": seed, "height": height, "width": width, "splits": list(splits),
              "generator_version": GENERATOR_VERSION}
    paths = {}
    for s in SPLITS:
        ims, anns = per_split[s]
        doc = {"info": {"description": f"Amodal-VAE embedded synthetic street scenes, {s} split, KINS 2020 schema",
                        "version": str(GENERATOR_VERSION), "year": 2020, "contributor": "amodal_lib.data.synth",
                        "seed": seed, "split": s},
               "licenses": [], "images": ims, "categories": CATEGORIES, "annotations": anns}
        _write_json(out / ANN_FILES[s], doc)
        paths[s] = str(out / ANN_FILES[s])
    sheet, md = _datasheet({s: per_split[s] for s in SPLITS}, params)
    _write_json(out / "datasheet.json", sheet, compact=False)
    atomic_write_text(out / "datasheet.md", md)
    _write_json(out / "params.json", params, compact=False)   # last: marks completeness


def _paths(root: Path) -> dict:
    root = Path(root)
    d = {s: str(root / ANN_FILES[s]) for s in SPLITS}
    d.update(images_dir=str(root / "images"), datasheet=str(root / "datasheet.md"),
             datasheet_json=str(root / "datasheet.json"), params=str(root / "params.json"), root=str(root))
    return d


def _canonical_params(images=2000, seed=0, height=160, width=512, splits=(0.7, 0.1, 0.2), **extra) -> dict:
    p = {"images": int(images), "seed": int(seed), "height": int(height), "width": int(width),
         "splits": [float(s) for s in splits], "generator_version": GENERATOR_VERSION}
    for k in ("workers", "progress"):   # how, not what: no effect on the data
        extra.pop(k, None)
    p.update(extra)
    return p


def cache_dir(root="data", **params) -> Path:
    """``root/synth-<first 12 hex of the sha1 of the sorted parameters' JSON>``.

    The parameters are ``images``, ``seed``, ``height``, ``width``, ``splits`` (defaults
    filled in) and the generator version, so a change of the generator gets a new folder."""
    p = _canonical_params(**params)
    key = hashlib.sha1(json.dumps(p, sort_keys=True).encode()).hexdigest()[:12]
    return Path(root) / f"synth-{key}"


def is_complete(path) -> bool:
    path = Path(path)
    if not (path / "params.json").is_file():
        return False
    return all((path / ANN_FILES[s]).is_file() for s in SPLITS) and (path / "images").is_dir()


def ensure_dataset(root="data", images: int = 2000, seed: int = 0, height: int = 160, width: int = 512,
                   progress: bool = True, workers: Optional[int] = None, splits=(0.7, 0.1, 0.2)) -> dict:
    """The data set for these parameters, generated once and cached under ``cache_dir(...)``.

    A complete cached copy (``params.json`` present: it is written last) is returned as is.
    Otherwise it is generated into a temporary folder beside it and moved into place with
    ``os.replace``, so an interrupted run never leaves a half data set behind."""
    target = cache_dir(root, images=images, seed=seed, height=height, width=width, splits=splits)
    if is_complete(target):
        return _paths(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        generate(tmp, images=images, seed=seed, height=height, width=width, splits=splits, workers=workers,
                 progress=progress)
        if target.exists():
            if is_complete(target):   # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return _paths(target)
            shutil.rmtree(target)     # a leftover without its completeness mark
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _paths(target)
