"""One record type for an instance, a set of them read from one annotation file, and the
whole-image selections made from such a set (evaluation subsets, a validation split carved
out of a training file)."""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import PredictionError
from . import masks as M
from . import rle as R

# Visible-area-ratio bins used by every per-bin report (supplementary Fig 1's x axis).
VISIBLE_RATIO_BINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001)


@dataclass
class Instance:
    """One object instance of one image.

    Boxes are xywh in image pixels. ``amodal``/``amodal_box``/``occlusion_rate`` are None
    for modal-only data (COCO, Cityscapes). ``occluders`` are the ids of the other
    instances whose visible masks cover pixels of this one's amodal mask; for modal-only
    data (and in :meth:`AnnotationSet.modal_view`) the other instances touching it.
    """

    id: int
    image_id: int
    category_id: int
    category: str
    height: int
    width: int
    visible: M.RLE
    visible_box: tuple
    visible_area: int
    amodal: Optional[M.RLE] = None
    amodal_box: Optional[tuple] = None
    amodal_area: Optional[int] = None
    occluders: tuple = ()
    touches_border: bool = False
    file_name: Optional[str] = None
    depth: Optional[int] = None  # order in the image's occlusion cluster when the data gives one (1 = nearest)

    @property
    def occlusion_rate(self) -> Optional[float]:
        """1 - visible area / amodal area (None without an amodal mask)."""
        if self.amodal_area is None:
            return None
        return float(max(0.0, 1.0 - self.visible_area / max(self.amodal_area, 1)))

    @property
    def visible_ratio(self) -> Optional[float]:
        r = self.occlusion_rate
        return None if r is None else 1.0 - r

    @property
    def is_unoccluded(self) -> bool:
        """Whole and alone, judged from modal information only (no amodal label is read):
        touches neither the image border nor any other instance (``docs/design.md``,
        "Unoccluded instances and occluders")."""
        return not self.occluders and not self.touches_border


@dataclass
class AnnotationSet:
    """The instances of one annotation file, with its images and categories."""

    path: str
    schema: str  # "kins2020" | "kins" | "cocoa" | "coco" | "cityscapes"
    instances: list
    images: dict  # image_id -> {"id", "file_name", "height", "width"}
    categories: dict  # category_id -> name
    skipped: int = 0
    skipped_reasons: list = field(default_factory=list)
    images_dir: Optional[str] = None

    def __len__(self) -> int:
        return len(self.instances)

    def __iter__(self):
        return iter(self.instances)

    def __repr__(self) -> str:
        return (f"AnnotationSet({self.schema}, {Path(self.path).name}: {len(self.images)} images, "
                f"{len(self.instances)} instances, amodal={'yes' if self.has_amodal else 'no'}, "
                f"skipped={self.skipped})")

    @property
    def has_amodal(self) -> bool:
        return any(i.amodal is not None for i in self.instances)

    def by_id(self) -> dict:
        return {i.id: i for i in self.instances}

    def by_image(self) -> dict:
        """{image id: its instances}, in file order."""
        return group_by_image(self.instances)

    def subset(self, instances: Iterable[Instance]) -> "AnnotationSet":
        """The same file's metadata with only ``instances`` (a list or a predicate's result)."""
        inst = list(instances)
        keep = {i.image_id for i in inst}
        return dataclasses.replace(self, instances=inst,
                                   images={k: v for k, v in self.images.items() if k in keep})

    def unoccluded(self) -> list:
        return [i for i in self.instances if i.is_unoccluded]

    def modal_view(self) -> "AnnotationSet":
        """A copy that holds no amodal label at all, as if the file were plain COCO.

        Training stages 1-3 work on this view only, so that no amodal label can reach
        them. Occluders become the instances touching each one, as for modal-only data.
        """
        stripped = [dataclasses.replace(i, amodal=None, amodal_box=None, amodal_area=None,
                                        depth=None) for i in self.instances]
        set_modal_neighbours(stripped)
        return dataclasses.replace(self, instances=stripped, schema=self.schema + "-modal")

    def image_path(self, inst_or_image_id) -> Path:
        """Path of an image file (needs ``images_dir``)."""
        image_id = getattr(inst_or_image_id, "image_id", inst_or_image_id)
        if self.images_dir is None:
            raise FileNotFoundError(f"{self.path}: no images directory was given for this annotation file")
        img = self.images.get(image_id)
        if img is None:
            raise KeyError(f"{self.path}: unknown image id {image_id}")
        return Path(self.images_dir) / img["file_name"]

    def visible_ratios(self) -> np.ndarray:
        return np.array([np.nan if i.visible_ratio is None else i.visible_ratio for i in self.instances])


def group_by_image(instances: Sequence[Instance], positions: bool = False) -> dict:
    """{image id: the instances of that image} in order; with ``positions`` their indices in
    ``instances`` instead. The one grouping every per-image loop of the library uses."""
    out: dict = defaultdict(list)
    for k, inst in enumerate(instances):
        out[inst.image_id].append(k if positions else inst)
    return dict(out)


def subsample(ann: AnnotationSet, max_instances: Optional[int], seed: int = 0) -> AnnotationSet:
    """The instances of ``ann`` that have an amodal mask (what evaluation can score), from whole
    images taken in a seeded random order until ``max_instances`` instances are reached; all of
    them when ``max_instances`` is None or not exceeded. Whole images keep every instance's
    occluders, and full-image figures, intact."""
    usable = [i for i in ann.instances if i.amodal is not None]
    if max_instances is None or len(usable) <= max_instances:
        return ann.subset(usable)
    groups = group_by_image(usable)
    keep: list = []
    for image_id in _image_order(groups, seed):
        if len(keep) >= max_instances:
            break
        keep.extend(groups[image_id])
    return ann.subset(keep)


def hold_out_images(ann: AnnotationSet, fraction: float, seed: int = 0) -> tuple:
    """``(rest, held)``: ``ann`` split by whole images, ``held`` holding ``round(fraction * images)``
    of its images (at least one, and one left over, when it has two or more) drawn in a seeded
    random order. How a validation split is carved out of a training file (whole images, so that
    no image contributes to both)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must lie in (0, 1), got {fraction}")
    groups = group_by_image(ann.instances)
    order = _image_order(groups, seed)
    n = min(max(1, round(fraction * len(order))), len(order) - 1) if len(order) >= 2 else 0
    held_ids = set(order[:n])
    rest = [i for i in ann.instances if i.image_id not in held_ids]
    held = [i for i in ann.instances if i.image_id in held_ids]
    return ann.subset(rest), ann.subset(held)


def _image_order(groups: dict, seed: int) -> list:
    """The image ids of ``groups`` in a seeded random order (sorted first: independent of file order)."""
    order = sorted(groups)
    np.random.default_rng(seed).shuffle(order)
    return order


def set_amodal_occluders(instances: list) -> None:
    """Occluders from amodal data: per image, the others whose visible mask covers our amodal mask."""
    for group in group_by_image(instances).values():
        if len(group) < 2:
            for i in group:
                i.occluders = ()
            continue
        inter = M.intersection_areas([g.visible for g in group],
                                     [g.amodal if g.amodal is not None else g.visible for g in group])
        for j, target in enumerate(group):
            target.occluders = tuple(group[k].id for k in range(len(group)) if k != j and inter[k, j] > 0)


def _touching(a: np.ndarray, b: np.ndarray) -> bool:
    """Do two binary masks of one frame overlap or share a pixel edge/corner?"""
    if (a & b).any():
        return True
    d = a.copy()
    d[1:] |= a[:-1]; d[:-1] |= a[1:]
    d2 = d.copy()
    d2[:, 1:] |= d[:, :-1]; d2[:, :-1] |= d[:, 1:]
    return bool((d2 & b).any())


def set_modal_neighbours(instances: list) -> None:
    """Occluders for modal-only data: the other instances of the image touching each one.

    Only pairs whose boxes (grown by one pixel) meet are decoded, and only inside that
    joint window (straight from the RLEs, :func:`amodal_lib.data.rle.decode_window`), so this
    stays cheap on crowded images and never decodes a whole frame.
    """
    pairs = []   # (a, b, window) of the instances whose grown boxes meet, per image
    for group in group_by_image(instances).values():
        boxes = np.array([i.visible_box for i in group], dtype=np.float64).reshape(-1, 4)
        for a in range(len(group)):
            for b in range(a + 1, len(group)):
                xa, ya, wa, ha = boxes[a]
                xb, yb, wb, hb = boxes[b]
                x0, y0 = max(xa, xb) - 1, max(ya, yb) - 1
                x1, y1 = min(xa + wa, xb + wb) + 1, min(ya + ha, yb + hb) + 1
                if x0 >= x1 or y0 >= y1:
                    continue
                ia, ib = group[a], group[b]
                c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), ia.width)
                r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), ia.height)
                pairs.append((ia, ib, (r0, r1, c0, c1)))
    involved = list({id(i): i for p in pairs for i in p[:2]}.values())
    parsed = dict(zip(map(id, involved), R.runs_many([i.visible["counts"] for i in involved])))
    nb: dict = {id(i): [] for i in instances}
    for ia, ib, win in pairs:
        ma = R.decode_window(ia.visible, *win, run_lengths=parsed[id(ia)]).astype(bool)
        mb = R.decode_window(ib.visible, *win, run_lengths=parsed[id(ib)]).astype(bool)
        if _touching(ma, mb):
            nb[id(ia)].append(ib.id)
            nb[id(ib)].append(ia.id)
    for i in instances:
        i.occluders = tuple(nb[id(i)])


def box_touches_border(box, height: int, width: int, margin: float = 0.5) -> bool:
    x, y, w, h = box
    return x <= margin or y <= margin or x + w >= width - margin or y + h >= height - margin


# --------------------------------------------------------------------------- other visible masks
def with_visible(ann: AnnotationSet, masks: dict, source: str = "the visible masks") -> AnnotationSet:
    """A copy of ``ann`` whose instances have ``masks`` ({annotation id: RLE}, e.g. predicted by a
    segmentation network) as their visible masks: box, area and border flag follow the new mask,
    so every method that reads visible masks (of the targets, and of what surrounds them) reads
    these. The occlusion relations are the file's own when it has amodal labels (the GT order, as
    with GT visible masks); for modal-only data they are recomputed from the new masks (the
    touching instances). Amodal labels are unchanged: evaluate against ``ann`` itself, whose
    visible masks define the invisible part. Every instance needs a mask (an error naming the
    first id without one, and ``source``)."""
    missing = [i.id for i in ann.instances if i.id not in masks]
    if missing:
        raise PredictionError(source, missing[0], "id", f"no mask for {len(missing)} of {len(ann)} annotations of "
                                                        f"{ann.path}")
    out = []
    for inst in ann.instances:
        rle = masks[inst.id]
        area = int(M.area(rle))
        box = tuple(float(v) for v in M.to_bbox(rle)) if area else (0.0, 0.0, 0.0, 0.0)
        out.append(dataclasses.replace(inst, visible=rle, visible_box=box, visible_area=area,
                                       touches_border=bool(area) and box_touches_border(box, inst.height, inst.width)))
    if not ann.has_amodal:
        set_modal_neighbours(out)
    return dataclasses.replace(ann, instances=out)
