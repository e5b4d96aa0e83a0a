"""The commands that read the pixels: ``amodal segment`` (visible masks predicted from the images,
supplementary Table 1), ``amodal render`` (an instance redrawn in a new full mask by the SPADE
renderer) and ``amodal edit`` (instances removed from an image: what they hid completed by
Amodal-VAE and inpainted)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import registry
from ..data import masks as M
from ..errors import ArgumentError, CheckpointError, DataError
from ..experiments import edit as E
from ..io import atomic_write, atomic_write_json
from ..metrics import write_predictions
from ..predict.psp import overlap_iou, visible_overlaps
from ..predict.spade import render_instance
from ..profiles import RESULTS, get_profile, resolve_profile
from .checks import check_output_file, check_threshold, checkpoint_inputs, load, read_picture

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


# --------------------------------------------------------------------------- segment
def segment(ns) -> int:
    check_threshold(ns.threshold)
    check_output_file(ns.out, {"annotation file": ns.annotations, **checkpoint_inputs(ns.checkpoint)})
    ann = load(ns.annotations, ns.images)
    if ann.images_dir is None:
        raise ArgumentError(f"--images DIR is needed: no 'images' folder beside {ns.annotations}")
    model = registry.load_model(ns.model, ns.checkpoint, ns.device)
    by_id, overlaps = ann.by_id(), []

    def scored(batches):   # each batch compared with the file's visible masks as it is written
        for part in batches:
            overlaps.append(visible_overlaps(by_id, part))
            yield part
    n = write_predictions(ns.out, ann, scored(registry.segment_batches(ns.model, ann, model, threshold=ns.threshold,
                                                                       box=ns.crop_box)))
    q = overlap_iou(*(np.concatenate(x) for x in zip(*overlaps))) if n else None
    print(f"wrote {n} visible masks to {ns.out} (against the file's visible masks: IoU {q['A']:.2f} pooled, "
          f"{q['B']:.2f} mean per instance)" if n else f"wrote 0 visible masks to {ns.out}")
    return 0


# --------------------------------------------------------------------------- render
def render(ns) -> int:
    if Path(ns.out).suffix.lower() != ".png":
        raise ArgumentError(f"--out {ns.out}: the composited image is written as PNG; give a .png name")
    check_output_file(ns.out, {"image": ns.image, "mask": ns.mask, "annotation file": ns.annotations,
                               **checkpoint_inputs(ns.checkpoint)})
    ann = load(ns.annotations)
    inst = ann.by_id().get(ns.id)
    if inst is None:
        raise ArgumentError(f"--id {ns.id}: {ns.annotations} has no annotation with this id")
    image = read_picture(ns.image, "the image", "RGB")
    want = (inst.height, inst.width)
    if image.shape[:2] != want:
        raise DataError(f"{ns.image}: the image is {image.shape[0]}x{image.shape[1]} pixels but {Path(ns.annotations).name} "
                        f"gives {want[0]}x{want[1]} for image {inst.image_id} of annotation {ns.id}")
    mask = read_picture(ns.mask, "the mask", "L") > 0
    if mask.shape != image.shape[:2]:
        raise DataError(f"{ns.mask}: the mask is {mask.shape[0]}x{mask.shape[1]} pixels; it must be the image's "
                        f"size, {want[0]}x{want[1]}")
    if not mask.any():
        raise DataError(f"{ns.mask}: the mask is empty (no nonzero pixel): nothing to draw")
    model = registry.load_model("spade", ns.checkpoint, ns.device)
    out = render_instance(model, ann, inst, mask, image=image)
    atomic_write(ns.out, lambda f: Image.fromarray(out["image"]).save(f, format="PNG"))
    x0, y0, x1, y1 = [round(float(v), 1) for v in out["box"]]
    print(f"rendered annotation {ns.id} in the new mask (crop [{x0}, {y0}, {x1}, {y1}]); wrote {ns.out}")
    return 0


# --------------------------------------------------------------------------- edit
def _remove_ids(text: str) -> list:
    ids = []
    for tok in str(text).split(","):
        tok = tok.strip()
        try:
            ids.append(int(tok))
        except ValueError:
            raise ArgumentError(f"--remove takes annotation ids separated by commas, got {text!r}") from None
    return ids


def _edit_run(ns, name: str, given) -> Path:
    """The run folder of ``name``: as given, or the one trained run named ``name-*`` in --runs."""
    if given:
        if not Path(given).exists():
            raise CheckpointError(given, f"no such {name} run folder or checkpoint")
        return Path(given)
    folder = Path(ns.runs) if ns.runs else RESULTS / "runs" / resolve_profile(ns.profile)
    runs = sorted(p for p in folder.glob(f"{name}-*") if p.is_dir() and registry.is_trained(name, p)) \
        if folder.is_dir() else []
    if len(runs) != 1:
        found = "none" if not runs else ", ".join(p.name for p in runs)
        raise ArgumentError(f"no single trained {name} run in {folder} (found: {found}); train one with "
                            f"`amodal train --model {name} ...` and pass its folder as "
                            f"--{ {'amodal-vae': 'vae', 'inpaint-background': 'background'}.get(name, 'instance')}-checkpoint")
    return runs[0]


def _image_of(ann, image_path):
    """The image id of ``image_path`` in ``ann``: by file name (whole relative name, else base name), or
    the file's only image."""
    p = Path(image_path)
    names = {k: str(v.get("file_name") or "") for k, v in ann.images.items()}
    for k, n in names.items():
        if n and (str(p).endswith(n) or Path(n).name == p.name):
            return k
    if len(ann.images) == 1:
        return next(iter(ann.images))
    raise ArgumentError(f"{ann.path}: no image named {p.name} among its {len(ann.images)} images")


def edit(ns) -> int:
    fmt = IMAGE_FORMATS
    if Path(ns.out).suffix.lower() not in fmt:
        raise ArgumentError(f"--out {ns.out}: give an image file name ending in {', '.join(fmt)}")
    if ns.dilate is not None and not 0 <= ns.dilate <= 64:
        raise ArgumentError(f"--dilate must lie in 0..64, got {ns.dilate}")
    check_threshold(ns.threshold)
    ids = _remove_ids(ns.remove)
    inputs = {"image": ns.image, "annotation file": ns.annotations}
    check_output_file(ns.out, inputs)
    if ns.masks_out:
        check_output_file(ns.masks_out, {**inputs, "edited image (--out)": ns.out})
    image = read_picture(ns.image, "the image", "RGB")
    ann = load(ns.annotations)
    image_id = _image_of(ann, ns.image)
    one = ann.subset([i for i in ann.instances if i.image_id == image_id])
    by_id = ann.by_id()
    for i in ids:
        if i in by_id and by_id[i].image_id != image_id:
            raise ArgumentError(f"--remove {i}: annotation {i} of {ns.annotations} belongs to image "
                                f"{ann.images[by_id[i].image_id].get('file_name') or by_id[i].image_id}, not to {ns.image}")
    info = ann.images[image_id]
    if (int(info["height"]), int(info["width"])) != image.shape[:2]:
        raise DataError(f"{ns.image}: the image is {image.shape[0]}x{image.shape[1]} pixels but {ns.annotations} "
                        f"gives {info['height']}x{info['width']} for image {image_id}")
    runs = {n: _edit_run(ns, n, g) for n, g in (("amodal-vae", ns.vae_checkpoint),
                                                 ("inpaint-background", ns.background_checkpoint),
                                                 ("inpaint-instance", ns.instance_checkpoint))}
    models = {n: registry.load_model(n, r, ns.device) for n, r in runs.items()}
    dilate = ns.dilate if ns.dilate is not None else get_profile(ns.profile).get("inpaint", {}).get("edit", {}).get(
        "dilate", E.DEFAULT_DILATE)
    t0 = time.time()
    res = E.remove(image, one, ids, vae=models["amodal-vae"], background=models["inpaint-background"],
                      instance=models["inpaint-instance"], dilate_px=int(dilate), threshold=ns.threshold)
    suffix = Path(ns.out).suffix.lower()
    atomic_write(ns.out, lambda f: Image.fromarray(res.image).save(f, format=fmt[suffix]))
    if ns.masks_out:
        anns = []
        for inst in E.edited_annotations(res, one):
            anns.append({"id": inst.id, "image_id": image_id, "category_id": inst.category_id,
                         "segmentation": M.to_json(inst.visible), "bbox": list(inst.visible_box),
                         "area": int(inst.visible_area), "iscrowd": 0})
        atomic_write_json(ns.masks_out, {"images": [dict(info)], "annotations": anns,
                                         "categories": [{"id": k, "name": v} for k, v in one.categories.items()]})
    print(f"removed {', '.join(map(str, res.removed))}; completed {len(res.completed)} object(s) behind them "
          f"({', '.join(map(str, res.order)) or 'none'}); {int(res.hole.sum())} pixels repainted in "
          f"{time.time() - t0:.1f} s; wrote {ns.out}" + (f" and {ns.masks_out}" if ns.masks_out else ""))
    return 0
