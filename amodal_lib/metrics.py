"""Full and invisible IoU of amodal masks at full image resolution, under two protocols.

For an instance with predicted amodal mask P, ground-truth amodal mask G and visible mask V:

- full IoU = |P & G| / |P | G|
- invisible IoU = the same on the pixels outside V: |(P-V) & (G-V)| / |(P-V) | (G-V)|

Protocol **A** (pooled; Deocclusion, ASBU, the paper's 94.68 / 62.85): sum intersections and
unions over all instances, then divide (invisible: over all instances).
Protocol **B** (per-instance mean; C2F-Seg): mean of the per-instance IoUs; invisible over
the instances whose hidden part G-V is non-empty.

Every area is computed on RLE by pycocotools, without decoding a mask (``docs/design.md``,
"Evaluation protocols").
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from .data import masks as M
from .data.readers import read_json
from .data.records import VISIBLE_RATIO_BINS, AnnotationSet
from .errors import AnnotationError, PredictionError, shown
from .io import atomic_write

SCORE_COLUMNS = ["A_full", "A_invisible", "B_full", "B_invisible"]   # :func:`scores_row`'s, after method and n
PROTOCOLS = {"A": "pooled: sum of intersections / sum of unions",
             "B": "per-instance mean (invisible over instances with a hidden part)"}


def _area(rle) -> int:
    return int(M.area(rle))


def _inter(*rles) -> int:
    return int(M.area(M.merge(list(rles), intersect=True)))


def instance_table(ann: AnnotationSet, predictions: dict, allow_missing: bool = False) -> pd.DataFrame:
    """One row per evaluated instance: the intersection and union areas behind both IoUs."""
    if not ann.has_amodal:
        raise AnnotationError(ann.path, None, "", "has no amodal masks, so completions cannot be evaluated on it")
    known = {i.id for i in ann.instances}
    extra = [k for k in predictions if k not in known]
    if extra:
        raise AnnotationError("predictions", extra[0], "id",
                              f"no such annotation in {ann.path} ({len(extra)} predictions have unknown ids)")
    missing = [i.id for i in ann.instances if i.id not in predictions]
    if missing and not allow_missing:
        raise AnnotationError("predictions", missing[0], "id",
                              f"no prediction for {len(missing)} of {len(ann)} annotations (use allow_missing / --allow-missing)")
    rows = []
    for inst in ann.instances:
        if inst.id not in predictions or inst.amodal is None:
            continue
        p, g, v = predictions[inst.id], inst.amodal, inst.visible
        ap, ag = _area(p), _area(g)
        pg = _inter(p, g)
        pv, gv, pgv = _inter(p, v), _inter(g, v), _inter(p, g, v)
        inv_i = pg - pgv
        inv_p, inv_g = ap - pv, ag - gv
        rows.append({
            "id": inst.id, "image_id": inst.image_id, "category": inst.category,
            "visible_ratio": inst.visible_ratio, "occlusion_rate": inst.occlusion_rate,
            "full_inter": pg, "full_union": ap + ag - pg,
            "inv_inter": inv_i, "inv_union": inv_p + inv_g - inv_i, "gt_hidden": inv_g,
        })
    df = pd.DataFrame(rows, columns=["id", "image_id", "category", "visible_ratio", "occlusion_rate", "full_inter",
                                     "full_union", "inv_inter", "inv_union", "gt_hidden"])
    df["full_iou"] = df.full_inter / df.full_union.clip(lower=1)
    df["inv_iou"] = np.where(df.inv_union > 0, df.inv_inter / df.inv_union.clip(lower=1), np.nan)
    df.attrs["missing"] = len(missing)
    return df


def _scores(df: pd.DataFrame) -> dict:
    """Both protocols' full and invisible mIoU (in percent) of a table's rows."""
    if len(df) == 0:
        return {"n": 0, "A": {"full": None, "invisible": None}, "B": {"full": None, "invisible": None}}
    hidden = df[df.gt_hidden > 0]
    a_full = 100.0 * df.full_inter.sum() / max(df.full_union.sum(), 1)
    a_inv = 100.0 * df.inv_inter.sum() / df.inv_union.sum() if df.inv_union.sum() > 0 else None
    b_full = 100.0 * df.full_iou.mean()
    b_inv = 100.0 * (hidden.inv_inter / hidden.inv_union.clip(lower=1)).mean() if len(hidden) else None
    return {"n": int(len(df)), "n_hidden": int(len(hidden)),
            "A": {"full": float(a_full), "invisible": None if a_inv is None else float(a_inv)},
            "B": {"full": float(b_full), "invisible": None if b_inv is None else float(b_inv)}}


def summarize(df: pd.DataFrame, bins=VISIBLE_RATIO_BINS) -> dict:
    """Overall, per-category and per visible-area-ratio-bin scores under both protocols."""
    out = {"protocols": PROTOCOLS, "overall": _scores(df), "per_category": {}, "per_bin": {},
           "missing": int(df.attrs.get("missing", 0))}
    for cat, sub in df.groupby("category", sort=True):
        out["per_category"][str(cat)] = _scores(sub)
    labels = bin_labels(bins)
    cut = pd.cut(df.visible_ratio, bins=list(bins), labels=labels, right=False, include_lowest=True)
    for lab in labels:
        out["per_bin"][lab] = _scores(df[cut == lab])
    return out


def bin_labels(bins=VISIBLE_RATIO_BINS) -> list:
    return [f"{lo:.1f}-{min(hi, 1.0):.1f}" for lo, hi in zip(bins[:-1], bins[1:])]


def evaluate(ann: AnnotationSet, predictions: dict, allow_missing: bool = False) -> dict:
    return summarize(instance_table(ann, predictions, allow_missing))


def load_predictions(path, ann: Optional[AnnotationSet] = None) -> dict:
    """COCO results JSON ``[{"id", "image_id", "segmentation": RLE}]`` -> {annotation id: RLE}.

    Every result is checked before its mask is decoded: the id is an integer, appears once and,
    when ``ann`` is given, names one of its annotations (whose image size the mask must have).
    A malformed result raises :class:`~amodal_lib.errors.PredictionError` naming the file, the
    id and the field."""
    path = Path(path)
    data = read_json(path, error=PredictionError)
    if not isinstance(data, list):
        raise PredictionError(path, None, "", "expected a list of results")
    sizes = {i.id: (i.height, i.width) for i in ann.instances} if ann is not None else None
    totals = M.counts_totals([r.get("segmentation") for r in data if isinstance(r, dict)])
    out: dict = {}
    where: dict = {}
    for k, r in enumerate(data):
        if not isinstance(r, dict) or "id" not in r:
            raise PredictionError(path, None, f"[{k}].id", "a result needs the annotation 'id'")
        rid = r["id"]
        if isinstance(rid, bool) or not isinstance(rid, int):
            raise PredictionError(path, None, f"[{k}].id", f"an annotation id must be an integer, got {shown(rid)}")
        if rid in where:
            raise PredictionError(path, rid, "id", f"duplicate: results [{where[rid]}] and [{k}] have this id")
        where[rid] = k
        if "segmentation" not in r:
            raise PredictionError(path, rid, "segmentation", "missing")
        seg = r["segmentation"]
        if sizes is not None:
            if rid not in sizes:
                raise PredictionError(path, rid, "id", f"no such annotation in {ann.path}")
            h, w = sizes[rid]
        else:
            size = seg.get("size") if isinstance(seg, dict) else None
            if not (isinstance(size, (list, tuple)) and len(size) == 2):
                raise PredictionError(path, rid, "segmentation",
                                      "an RLE with its 'size' is needed when no annotation file gives the image size")
            h, w = size
        out[rid] = M.segm_to_rle(seg, h, w, path=path, record=rid, field="segmentation", error=PredictionError,
                                 totals=totals)
    return out


def write_predictions(path, ann_or_instances, masks) -> int:
    """Write {annotation id: RLE} as COCO results JSON, atomically; ``masks`` may also be an
    iterable of such dicts (or of ``(id, RLE)`` pairs), written as they come (a completion streamed
    batch by batch is never held whole). Returns the number of results written."""
    insts = ann_or_instances.instances if isinstance(ann_or_instances, AnnotationSet) else ann_or_instances
    img = {i.id: i.image_id for i in insts}

    def pairs():
        if isinstance(masks, dict):
            yield from masks.items()
            return
        for part in masks:
            yield from (part.items() if isinstance(part, dict) else [part])

    count = 0

    def write(f):   # the bytes of json.dumps(rows), one row at a time
        nonlocal count
        f.write("[")
        for k, r in pairs():
            f.write((", " if count else "") + json.dumps({"id": k, "image_id": img.get(k), "segmentation": M.to_json(r)}))
            count += 1
        f.write("]")
    atomic_write(path, write, mode="w")
    return count


def format_table(result: dict, title: str = "") -> str:
    """A plain-text table of a summary: overall, per category and per bin, both protocols."""
    def f(v):
        return "   -  " if v is None else f"{v:6.2f}"
    lines = [title] if title else []
    lines.append(f"{'':18s} {'n':>6s}  {'A full':>6s} {'A inv':>6s}  {'B full':>6s} {'B inv':>6s}")
    def row(name, s):
        lines.append(f"{name:18s} {s['n']:6d}  {f(s['A']['full'])} {f(s['A']['invisible'])}  "
                     f"{f(s['B']['full'])} {f(s['B']['invisible'])}")
    row("overall", result["overall"])
    for k, s in result["per_category"].items():
        row(f"  {k}", s)
    lines.append("visible-area ratio")
    for k, s in result["per_bin"].items():
        if s["n"]:
            row(f"  {k}", s)
    if result.get("missing"):
        lines.append(f"({result['missing']} annotations had no prediction and were left out)")
    return "\n".join(lines)


def scores_row(name: str, result: dict) -> dict:
    """One flat row (method, n, A full, A inv, B full, B inv) for comparison tables."""
    o = result["overall"]
    return {"method": name, "n": o["n"], "A_full": o["A"]["full"], "A_invisible": o["A"]["invisible"],
            "B_full": o["B"]["full"], "B_invisible": o["B"]["invisible"]}
