"""Readers for the instance-mask formats of amodal perception, into one record type.

``load_annotations(path)`` detects the schema from the file's content, never its name:

- ``kins2020``: KINS 2020 update (``a_segm``/``i_segm``/``a_bbox``/``i_bbox``/``oco_id``/``ico_id``)
- ``kins``: KINS original (``segmentation``/``bbox`` amodal, ``inmodal_seg``/``inmodal_bbox`` visible)
- ``cocoa``: COCO amodal (per-image records with ``regions``)
- ``coco``: plain COCO instances; ``segmentation`` is the visible mask, no amodal label
- ``cityscapes``: a ``*_instanceIds.png`` file or a folder of them (modal only)

Every mask is turned into compressed RLE by pycocotools. A malformed record raises one
:class:`AnnotationError` naming the file, the annotation id and the field; with
``strict=False`` it is skipped and counted instead (``AnnotationSet.skipped``). Every value is
checked before pycocotools sees it (ids are integers and unique, sizes and coordinates finite
and within :mod:`~amodal_lib.data.masks`' limits), so no file can make a reader exhaust memory.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..errors import AnnotationError, MissingFileError, shown
from . import masks as M
from .records import (AnnotationSet, Instance, box_touches_border, set_amodal_occluders,
                      set_modal_neighbours)

KINS_CATEGORIES = {1: "cyclist", 2: "pedestrian", 4: "car", 5: "tram", 6: "truck", 7: "van", 8: "misc"}
# The masks of one image are decoded together (crops, neighbour search): instances x height x
# width bytes at once, and four times that as floats. 2**29 is 50 x Cityscapes' 2048x1024.
MAX_IMAGE_INSTANCE_PIXELS = 2 ** 29
# Cityscapes label ids of the classes that have instances
CITYSCAPES_CATEGORIES = {24: "person", 25: "rider", 26: "car", 27: "truck", 28: "bus",
                         29: "caravan", 30: "trailer", 31: "train", 32: "motorcycle", 33: "bicycle"}


def load_annotations(path, strict: bool = True, images_dir=None, progress: bool = False) -> AnnotationSet:
    """Read any supported annotation file (or Cityscapes folder) into an :class:`AnnotationSet`."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, None, "", "no such file or directory")
    if path.is_dir() or path.suffix.lower() == ".png":
        return _read_cityscapes(path, strict)
    data = read_json(path)
    schema = detect_schema(data, path)
    reader = _READERS[schema]
    out = reader(data, path, strict)
    if images_dir is not None:
        out.images_dir = str(images_dir)
    else:
        guess = path.parent / "images"
        out.images_dir = str(guess) if guess.is_dir() else None
    return out


def read_json(path, error: type = AnnotationError) -> Any:
    """The content of a JSON file; anything that is not one (a folder, a device, bytes that are
    not UTF-8 JSON, nesting too deep to parse) raises ``error`` naming the file."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, None, "", "no such file or directory")
    if not path.is_file():
        raise error(path, None, "", "not a regular file")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw or raw.isspace():  # (isspace: no copy of a large file)
        raise error(path, None, "", "empty file")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise error(path, None, "", f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise error(path, None, "", f"not a JSON text file (undecodable as {e.encoding}: {e.reason} "
                                    f"at byte {e.start})") from None
    except RecursionError:
        raise error(path, None, "", "invalid JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise error(path, None, "", f"invalid JSON: {str(e).splitlines()[0]}") from None


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
    images: dict = {}
    where: dict = {}
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict):
            raise AnnotationError(path, None, f"images[{k}]", "not an object")
        for f in ("id", "height", "width"):
            if f not in im:
                raise AnnotationError(path, None, f"images[{k}].{f}", "missing")
        iid = im["id"]
        problem = _record_id(iid, "an image id")
        if problem:
            raise AnnotationError(path, None, f"images[{k}].id", problem)
        if iid in images:
            raise AnnotationError(path, None, f"images[{k}].id",
                                  f"duplicate image id {iid} (images[{where[iid]}] has it too)")
        for f in ("height", "width"):
            if M.as_int(im[f]) is None:
                raise AnnotationError(path, None, f"images[{k}].{f}", f"must be an integer, got {shown(im[f])}")
        problem = M.image_size_problem(im["height"], im["width"])
        if problem:
            raise AnnotationError(path, None, f"images[{k}].height/width", problem)
        name = im.get("file_name")
        if name is not None and not isinstance(name, str):
            raise AnnotationError(path, None, f"images[{k}].file_name", f"must be a string, got {shown(name)}")
        images[iid] = {"id": iid, "file_name": name, "height": M.as_int(im["height"]), "width": M.as_int(im["width"])}
        where[iid] = k
    return images


def _categories(data: dict, path: Path, default: dict) -> dict:
    cats = data.get("categories")
    if not (isinstance(cats, list) and cats):
        return dict(default)
    out = {}
    for k, c in enumerate(cats):
        if not (isinstance(c, dict) and "id" in c):
            continue
        cid = M.as_int(c["id"])
        if cid is None:
            raise AnnotationError(path, None, f"categories[{k}].id", f"must be an integer, got {shown(c['id'])}")
        out[cid] = str(c.get("name", cid))
    return out


def _check_box(box, path, ann_id, field_name):
    if box is None:
        return
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(M.is_number(v) for v in box)):
        raise AnnotationError(path, ann_id, field_name, "a box must be [x, y, w, h]")
    if not all(np.isfinite(v) for v in box):
        raise AnnotationError(path, ann_id, field_name, f"a box must hold finite numbers, got {list(box)}")
    if box[2] < 0 or box[3] < 0:
        raise AnnotationError(path, ann_id, field_name, f"negative width or height in box {list(box)}")
    if box[2] == 0 or box[3] == 0:
        raise AnnotationError(path, ann_id, field_name, f"zero-size box {list(box)}")


def _record_id(value, what: str = "an annotation id") -> Optional[str]:
    """Why ``value`` cannot be an id (None when it can: an integer)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{what} must be an integer, got {shown(value)}"
    return None


def _mask(segm, img, path, ann_id, field_name, totals: Optional[dict] = None) -> tuple:
    if segm is None:
        raise AnnotationError(path, ann_id, field_name, "missing")
    rle = M.segm_to_rle(segm, img["height"], img["width"], path=path, record=ann_id, field=field_name, totals=totals)
    a = int(M.area(rle))
    if a == 0:
        raise AnnotationError(path, ann_id, field_name, "empty mask (no pixel inside the image)")
    return rle, tuple(float(v) for v in M.to_bbox(rle)), a


def _instance(path, ann: dict, images: dict, cats: dict, vis_field: str, vis_box_field: Optional[str],
              amodal_field: Optional[str], amodal_box_field: Optional[str], depth_field: Optional[str] = None,
              totals: Optional[dict] = None) -> Instance:
    if not isinstance(ann, dict):
        raise AnnotationError(path, None, "annotations[]", "not an object")
    ann_id = ann.get("id")
    if ann_id is None:
        raise AnnotationError(path, None, "id", "annotation without an id")
    problem = _record_id(ann_id)
    if problem:
        raise AnnotationError(path, None, "id", problem)
    image_id = ann.get("image_id")
    problem = _record_id(image_id, "an image id")
    if problem:
        raise AnnotationError(path, ann_id, "image_id", problem)
    img = images.get(image_id)
    if img is None:
        raise AnnotationError(path, ann_id, "image_id", f"unknown image id {shown(image_id)}")
    cat = ann.get("category_id")
    if cat is None:
        raise AnnotationError(path, ann_id, "category_id", "missing")
    if M.as_int(cat) is None:
        raise AnnotationError(path, ann_id, "category_id", f"must be an integer, got {shown(cat)}")
    cat = M.as_int(cat)
    depth = ann.get(depth_field) if depth_field else None
    if depth is not None and M.as_int(depth) is None:
        raise AnnotationError(path, ann_id, depth_field, f"must be an integer, got {shown(depth)}")
    if vis_box_field:
        _check_box(ann.get(vis_box_field), path, ann_id, vis_box_field)
    vis, vbox, varea = _mask(ann.get(vis_field), img, path, ann_id, vis_field, totals)
    amodal = abox = aarea = None
    if amodal_field:
        if amodal_box_field:
            _check_box(ann.get(amodal_box_field), path, ann_id, amodal_box_field)
        amodal, abox, aarea = _mask(ann.get(amodal_field), img, path, ann_id, amodal_field, totals)
        if aarea < varea:  # annotators' amodal should contain the visible part; make it so
            amodal = M.merge([amodal, vis])
            abox, aarea = tuple(float(v) for v in M.to_bbox(amodal)), int(M.area(amodal))
    return Instance(
        id=ann_id, image_id=img["id"], category_id=cat, category=cats.get(cat, str(cat)),
        height=img["height"], width=img["width"], visible=vis, visible_box=vbox, visible_area=varea,
        amodal=amodal, amodal_box=abox, amodal_area=aarea,
        touches_border=box_touches_border(vbox, img["height"], img["width"]),
        file_name=img.get("file_name"), depth=M.as_int(depth) or None)


def _read_coco_like(data, path, strict, schema, **fields) -> AnnotationSet:
    images = _images_table(data, path)
    cats = _categories(data, path, KINS_CATEGORIES if schema.startswith("kins") else {})
    amodal_field = fields.get("amodal_field")
    if amodal_field and not any(isinstance(a, dict) and amodal_field in a for a in data["annotations"]):
        # a KINS file whose amodal fields were removed: read it as modal-only data
        fields.update(amodal_field=None, amodal_box_field=None)
    col = _Collector(path, strict)
    crowd = 0
    seen: dict = {}
    mask_fields = [f for f in (fields.get("vis_field"), fields.get("amodal_field")) if f]
    totals = M.counts_totals([a.get(f) for a in data["annotations"] if isinstance(a, dict) for f in mask_fields])
    for k, ann in enumerate(data["annotations"]):
        aid = ann.get("id") if isinstance(ann, dict) else None
        if _record_id(aid) is None:
            if aid in seen:
                col.fail(AnnotationError(path, aid, "id", f"duplicate annotation id (annotations[{seen[aid]}] "
                                                          f"and annotations[{k}] have it)"))
                continue
            seen[aid] = k
        if isinstance(ann, dict) and ann.get("iscrowd", 0):
            crowd += 1
            continue
        col.attempt(lambda ann=ann: _instance(path, ann, images, cats, **fields, totals=totals))
    _check_image_loads(col, images)
    if fields.get("amodal_field"):
        set_amodal_occluders(col.instances)
    else:
        set_modal_neighbours(col.instances)
    out = AnnotationSet(str(path), schema, col.instances, images, cats, col.skipped, col.reasons)
    if crowd:
        out.skipped_reasons.append(f"{crowd} crowd annotations (iscrowd=1) left out")
    return out


def _check_image_loads(col: _Collector, images: dict) -> None:
    """Refuse (or, lenient, skip) the instances of an image whose masks, decoded together as the
    crops and neighbour searches do, would not fit in memory (see ``MAX_IMAGE_INSTANCE_PIXELS``)."""
    counts: dict = {}
    for inst in col.instances:
        counts[inst.image_id] = counts.get(inst.image_id, 0) + 1
    over = {iid for iid, n in counts.items()
            if n * images[iid]["height"] * images[iid]["width"] > MAX_IMAGE_INSTANCE_PIXELS}
    for iid in sorted(over):
        img = images[iid]
        col.fail(AnnotationError(col.path, None, f"images (id {iid})",
                                 f"{counts[iid]} instances of {img['height']}x{img['width']} pixels: over the "
                                 f"limit of {MAX_IMAGE_INSTANCE_PIXELS} instance-pixels per image "
                                 "(amodal_lib.data.readers.MAX_IMAGE_INSTANCE_PIXELS)"))
    if over:
        col.skipped += sum(counts[i] for i in over) - len(over)
        col.instances = [i for i in col.instances if i.image_id not in over]


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
    seen: dict = {}
    for r, rec in enumerate(data["annotations"]):
        if not isinstance(rec, dict) or not isinstance(rec.get("regions"), list):
            iid = rec.get("image_id") if isinstance(rec, dict) else None
            col.fail(AnnotationError(path, iid if _record_id(iid) is None else None,
                                     "regions", "missing or not a list"))
            continue
        image_id = rec.get("image_id")
        problem = _record_id(image_id, "an image id")
        if problem:
            col.fail(AnnotationError(path, None, f"annotations[{r}].image_id", problem))
            continue
        if image_id in seen:  # region ids are image_id * 1000 + k + 1: they would collide
            col.fail(AnnotationError(path, None, f"annotations[{r}].image_id",
                                     f"duplicate image id {image_id}: annotations[{seen[image_id]}] holds "
                                     "its regions too, and their region ids would collide"))
            continue
        seen[image_id] = r
        if len(rec["regions"]) > 999:
            col.fail(AnnotationError(path, None, f"annotations[{r}].regions",
                                     f"{len(rec['regions'])} regions in image {image_id}: over 999, region ids "
                                     "(image_id * 1000 + k + 1) would collide with the next image's"))
            continue
        img = images.get(image_id)
        for k, reg in enumerate(rec["regions"]):
            rid = image_id * 1000 + k + 1

            def build(reg=reg, rid=rid, img=img, image_id=image_id):
                if img is None:
                    raise AnnotationError(path, rid, "image_id", f"unknown image id {shown(image_id)}")
                if not isinstance(reg, dict):
                    raise AnnotationError(path, rid, "regions[]", "not an object")
                order = reg.get("order")
                if order is not None and M.as_int(order) is None:
                    raise AnnotationError(path, rid, "order", f"must be an integer, got {shown(order)}")
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
                                file_name=img.get("file_name"), depth=M.as_int(order))
            col.attempt(build)
    _check_image_loads(col, images)
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
            with Image.open(f) as im:
                problem = M.image_size_problem(im.height, im.width)  # before decoding any pixel
                ids = None if problem else np.asarray(im)
        except Exception as e:  # PIL raises several types for broken files
            col.fail(AnnotationError(f, None, "", f"unreadable PNG ({e})"))
            continue
        if problem:
            col.fail(AnnotationError(f, None, "", problem))
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
    _check_image_loads(col, images)
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
