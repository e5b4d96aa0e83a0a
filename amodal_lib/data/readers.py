"""Readers for the instance-mask formats of amodal perception, into one record type.

``load_annotations(path)`` detects the schema from the file's content, never its name:

- ``kins2020``: KINS 2020 update (``a_segm``/``i_segm``/``a_bbox``/``i_bbox``/``oco_id``/``ico_id``)
- ``kins``: KINS original (``segmentation``/``bbox`` amodal, ``inmodal_seg``/``inmodal_bbox`` visible)
- ``cocoa``: COCO amodal (per-image records with ``regions``)
- ``coco``: plain COCO instances; ``segmentation`` is the visible mask, no amodal label
- ``cityscapes``: a ``*_instanceIds.png`` file or a folder of them (modal only)

Every mask is turned into compressed RLE by pycocotools. A malformed record raises one
:class:`AnnotationError` naming the file, the annotation id and the field; with
``strict=False`` it is skipped and counted instead (``AnnotationSet.skipped``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from . import masks as M
from .masks import AnnotationError
from .records import (AnnotationSet, Instance, box_touches_border, set_amodal_occluders,
                      set_modal_neighbours)

KINS_CATEGORIES = {1: "cyclist", 2: "pedestrian", 4: "car", 5: "tram", 6: "truck", 7: "van", 8: "misc"}
# Cityscapes label ids of the classes that have instances
CITYSCAPES_CATEGORIES = {24: "person", 25: "rider", 26: "car", 27: "truck", 28: "bus",
                         29: "caravan", 30: "trailer", 31: "train", 32: "motorcycle", 33: "bicycle"}


class MissingFileError(AnnotationError, FileNotFoundError):
    pass


def load_annotations(path, strict: bool = True, images_dir=None, progress: bool = False) -> AnnotationSet:
    """Read any supported annotation file (or Cityscapes folder) into an :class:`AnnotationSet`."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, None, "", "no such file or directory")
    if path.is_dir() or path.suffix.lower() == ".png":
        return _read_cityscapes(path, strict)
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except json.JSONDecodeError as e:
        raise AnnotationError(path, None, "", f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(path, None, "", f"not a JSON text file ({e.reason})") from None
    schema = detect_schema(data, path)
    reader = _READERS[schema]
    out = reader(data, path, strict)
    if images_dir is not None:
        out.images_dir = str(images_dir)
    else:
        guess = path.parent / "images"
        out.images_dir = str(guess) if guess.is_dir() else None
    return out


def detect_schema(data: Any, path="?") -> str:
    if not isinstance(data, dict):
        raise AnnotationError(path, None, "", "expected a JSON object with 'images' and 'annotations'")
    anns = data.get("annotations")
    if not isinstance(anns, list):
        raise AnnotationError(path, None, "annotations", "missing or not a list")
    if not isinstance(data.get("images"), list):
        raise AnnotationError(path, None, "images", "missing or not a list")
    for a in anns[:50]:
        if isinstance(a, dict):
            if "regions" in a:
                return "cocoa"
            if "a_segm" in a or "i_segm" in a:
                return "kins2020"
            if "inmodal_seg" in a:
                return "kins"
    return "coco"


class _Collector:
    """Builds instances; turns record errors into exceptions (strict) or counts (lenient)."""

    def __init__(self, path: Path, strict: bool):
        self.path, self.strict = path, strict
        self.instances: list = []
        self.skipped = 0
        self.reasons: list = []

    def attempt(self, fn: Callable[[], Optional[Instance]]) -> None:
        try:
            inst = fn()
        except AnnotationError as e:
            self.fail(e)
            return
        if inst is not None:
            self.instances.append(inst)

    def fail(self, err: AnnotationError) -> None:
        if self.strict:
            raise err
        self.skipped += 1
        if len(self.reasons) < 1000:
            self.reasons.append(str(err))


def _images_table(data: dict, path: Path) -> dict:
    images = {}
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict):
            raise AnnotationError(path, None, f"images[{k}]", "not an object")
        for f in ("id", "height", "width"):
            if f not in im:
                raise AnnotationError(path, None, f"images[{k}].{f}", "missing")
        h, w = int(im["height"]), int(im["width"])
        if h <= 0 or w <= 0:
            raise AnnotationError(path, None, f"images[{k}].height/width", f"image size {h}x{w}")
        images[im["id"]] = {"id": im["id"], "file_name": im.get("file_name"), "height": h, "width": w}
    return images


def _categories(data: dict, default: dict) -> dict:
    cats = data.get("categories")
    if isinstance(cats, list) and cats:
        return {int(c["id"]): str(c.get("name", c["id"])) for c in cats if isinstance(c, dict) and "id" in c}
    return dict(default)


def _check_box(box, path, ann_id, field_name):
    if box is None:
        return
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise AnnotationError(path, ann_id, field_name, "a box must be [x, y, w, h]")
    if box[2] <= 0 or box[3] <= 0:
        raise AnnotationError(path, ann_id, field_name, f"zero-size box {list(box)}")


def _mask(segm, img, path, ann_id, field_name) -> tuple:
    if segm is None:
        raise AnnotationError(path, ann_id, field_name, "missing")
    rle = M.segm_to_rle(segm, img["height"], img["width"], path=path, record=ann_id, field=field_name)
    a = int(M.area(rle))
    if a == 0:
        raise AnnotationError(path, ann_id, field_name, "empty mask (no pixel inside the image)")
    return rle, tuple(float(v) for v in M.to_bbox(rle)), a


def _instance(path, ann: dict, images: dict, cats: dict, vis_field: str, vis_box_field: Optional[str],
              amodal_field: Optional[str], amodal_box_field: Optional[str], depth_field: Optional[str] = None
              ) -> Instance:
    if not isinstance(ann, dict):
        raise AnnotationError(path, None, "annotations[]", "not an object")
    ann_id = ann.get("id")
    if ann_id is None:
        raise AnnotationError(path, None, "id", "annotation without an id")
    img = images.get(ann.get("image_id"))
    if img is None:
        raise AnnotationError(path, ann_id, "image_id", f"unknown image id {ann.get('image_id')!r}")
    cat = ann.get("category_id")
    if cat is None:
        raise AnnotationError(path, ann_id, "category_id", "missing")
    if vis_box_field:
        _check_box(ann.get(vis_box_field), path, ann_id, vis_box_field)
    vis, vbox, varea = _mask(ann.get(vis_field), img, path, ann_id, vis_field)
    amodal = abox = aarea = None
    if amodal_field:
        if amodal_box_field:
            _check_box(ann.get(amodal_box_field), path, ann_id, amodal_box_field)
        amodal, abox, aarea = _mask(ann.get(amodal_field), img, path, ann_id, amodal_field)
        if aarea < varea:  # annotators' amodal should contain the visible part; make it so
            amodal = M.merge([amodal, vis])
            abox, aarea = tuple(float(v) for v in M.to_bbox(amodal)), int(M.area(amodal))
    depth = ann.get(depth_field) if depth_field else None
    return Instance(
        id=ann_id, image_id=img["id"], category_id=int(cat), category=cats.get(int(cat), str(cat)),
        height=img["height"], width=img["width"], visible=vis, visible_box=vbox, visible_area=varea,
        amodal=amodal, amodal_box=abox, amodal_area=aarea,
        touches_border=box_touches_border(vbox, img["height"], img["width"]),
        file_name=img.get("file_name"), depth=int(depth) if depth else None)


def _read_coco_like(data, path, strict, schema, **fields) -> AnnotationSet:
    images = _images_table(data, path)
    cats = _categories(data, KINS_CATEGORIES if schema.startswith("kins") else {})
    amodal_field = fields.get("amodal_field")
    if amodal_field and not any(isinstance(a, dict) and amodal_field in a for a in data["annotations"]):
        # a KINS file whose amodal fields were removed: read it as modal-only data
        fields.update(amodal_field=None, amodal_box_field=None)
    col = _Collector(path, strict)
    crowd = 0
    for ann in data["annotations"]:
        if isinstance(ann, dict) and ann.get("iscrowd", 0):
            crowd += 1
            continue
        col.attempt(lambda ann=ann: _instance(path, ann, images, cats, **fields))
    if fields.get("amodal_field"):
        set_amodal_occluders(col.instances)
    else:
        set_modal_neighbours(col.instances)
    out = AnnotationSet(str(path), schema, col.instances, images, cats, col.skipped, col.reasons)
    if crowd:
        out.skipped_reasons.append(f"{crowd} crowd annotations (iscrowd=1) left out")
    return out


def _read_kins2020(data, path, strict):
    # a file whose amodal fields were removed (no annotation has a_segm) reads as modal-only
    amodal = any(isinstance(a, dict) and "a_segm" in a for a in data["annotations"])
    return _read_coco_like(data, path, strict, "kins2020", vis_field="i_segm", vis_box_field="i_bbox",
                           amodal_field="a_segm" if amodal else None,
                           amodal_box_field="a_bbox" if amodal else None, depth_field="ico_id")


def _read_kins(data, path, strict):
    return _read_coco_like(data, path, strict, "kins", vis_field="inmodal_seg", vis_box_field="inmodal_bbox",
                           amodal_field="segmentation", amodal_box_field="bbox", depth_field="ico_id")


def _read_coco(data, path, strict):
    return _read_coco_like(data, path, strict, "coco", vis_field="segmentation", vis_box_field="bbox",
                           amodal_field=None, amodal_box_field=None)


def _read_cocoa(data, path, strict) -> AnnotationSet:
    """COCOA: one record per image; region ``k`` (0-based) of image ``i`` gets id ``i * 1000 + k + 1``.

    Regions are class-agnostic; ``name`` is kept as the category name with one shared id.
    A region's visible mask is ``visible_mask`` when it is occluded, else its amodal polygon.
    ``depth_constraint`` "1-2,3-4" means region 1 occludes region 2 (1-based).
    """
    images = _images_table(data, path)
    col = _Collector(path, strict)
    names: dict = {}
    for rec in data["annotations"]:
        if not isinstance(rec, dict) or not isinstance(rec.get("regions"), list):
            col.fail(AnnotationError(path, rec.get("image_id") if isinstance(rec, dict) else None,
                                     "regions", "missing or not a list"))
            continue
        image_id = rec.get("image_id")
        img = images.get(image_id)
        for k, reg in enumerate(rec["regions"]):
            rid = (image_id if isinstance(image_id, int) else 0) * 1000 + k + 1

            def build(reg=reg, rid=rid, img=img, image_id=image_id):
                if img is None:
                    raise AnnotationError(path, rid, "image_id", f"unknown image id {image_id!r}")
                if not isinstance(reg, dict):
                    raise AnnotationError(path, rid, "regions[]", "not an object")
                amodal, abox, aarea = _mask(reg.get("segmentation"), img, path, rid, "segmentation")
                if reg.get("visible_mask") is not None:
                    vis, vbox, varea = _mask(reg["visible_mask"], img, path, rid, "visible_mask")
                else:
                    vis, vbox, varea = amodal, abox, aarea
                amodal = M.merge([amodal, vis]) if aarea < varea else amodal
                name = str(reg.get("name", "object"))
                names.setdefault(name, len(names) + 1)
                return Instance(id=rid, image_id=image_id, category_id=1, category=name,
                                height=img["height"], width=img["width"], visible=vis, visible_box=vbox,
                                visible_area=varea, amodal=amodal, amodal_box=tuple(float(v) for v in M.to_bbox(amodal)),
                                amodal_area=int(M.area(amodal)),
                                touches_border=box_touches_border(vbox, img["height"], img["width"]),
                                file_name=img.get("file_name"), depth=reg.get("order"))
            col.attempt(build)
    set_amodal_occluders(col.instances)
    return AnnotationSet(str(path), "cocoa", col.instances, images, {1: "object"}, col.skipped, col.reasons)


def _read_cityscapes(path: Path, strict: bool) -> AnnotationSet:
    from PIL import Image

    files = sorted(path.rglob("*_instanceIds.png")) if path.is_dir() else [path]
    if not files:
        raise MissingFileError(path, None, "", "no *_instanceIds.png file in this folder")
    root = path if path.is_dir() else path.parent
    col = _Collector(path, strict)
    images = {}
    for image_id, f in enumerate(files, start=1):
        try:
            ids = np.asarray(Image.open(f))
        except Exception as e:  # PIL raises several types for broken files
            col.fail(AnnotationError(f, None, "", f"unreadable PNG ({e})"))
            continue
        if ids.ndim != 2:
            col.fail(AnnotationError(f, None, "", "expected a single-channel id image"))
            continue
        h, w = ids.shape
        rel = str(f.relative_to(root))
        images[image_id] = {"id": image_id, "file_name": rel, "height": h, "width": w}
        for v in np.unique(ids):
            v = int(v)
            if v < 1000 or v // 1000 not in CITYSCAPES_CATEGORIES:
                continue
            rle = M.encode(ids == v)
            box = tuple(float(x) for x in M.to_bbox(rle))
            col.instances.append(Instance(
                id=image_id * 100000 + v, image_id=image_id, category_id=v // 1000,
                category=CITYSCAPES_CATEGORIES[v // 1000], height=h, width=w, visible=rle, visible_box=box,
                visible_area=int(M.area(rle)), touches_border=box_touches_border(box, h, w), file_name=rel))
    set_modal_neighbours(col.instances)
    return AnnotationSet(str(path), "cityscapes", col.instances, images, dict(CITYSCAPES_CATEGORIES),
                         col.skipped, col.reasons, images_dir=str(root))


_READERS = {"kins2020": _read_kins2020, "kins": _read_kins, "coco": _read_coco, "cocoa": _read_cocoa}


def as_annotations(annotations, **kwargs) -> AnnotationSet:
    """``annotations`` itself if it is an :class:`AnnotationSet`, else ``load_annotations(annotations, **kwargs)``
    (for functions that take either a path or a loaded set)."""
    if isinstance(annotations, AnnotationSet):
        return annotations
    return load_annotations(annotations, **kwargs)
