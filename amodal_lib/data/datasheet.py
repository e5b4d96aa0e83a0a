"""The datasheet of a data set: instances per split, category and occlusion bin.

The embedded data set writes one when it is generated (``datasheet.json`` and ``.md``, from its
annotation records, :mod:`amodal_lib.data.synth`); for any other data set :func:`from_annotations`
computes the same from the annotation files. :func:`table` turns a datasheet into the table of
notebook 00. One bin rule for both: :func:`occlusion_bin` (occlusion rate = 1 - visible area /
amodal area, right-closed bins; ``0%`` is exactly unoccluded).
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

OCC_BINS = ("0%", "0-10%", "10-30%", "30-50%", "50-70%", "70-90%", ">90%")
_UPPER = (0.1, 0.3, 0.5, 0.7, 0.9)
SPLIT_ORDER = ("train", "val", "test")


def occlusion_bin(a_area: int, i_area: int) -> str:
    """The occlusion bin of an instance with amodal area ``a_area`` and visible area ``i_area``."""
    if i_area >= a_area:
        return OCC_BINS[0]
    r = 1.0 - i_area / a_area
    for name, hi in zip(OCC_BINS[1:], _UPPER):
        if r <= hi:
            return name
    return OCC_BINS[-1]


def count(rows: Iterable[tuple], categories: Iterable[str]) -> dict:
    """Counts of one split from ``rows`` of ``(category name, amodal area or None, visible area)``:
    ``instances``, ``per_category``, and where amodal areas are known ``per_occlusion_bin``,
    ``per_category_and_bin``, ``mean_occlusion_rate`` and ``occluded_fraction``."""
    rows = list(rows)
    cats = {c: 0 for c in categories}
    for c, _, _ in rows:
        cats[c] = cats.get(c, 0) + 1
    out = {"instances": len(rows), "per_category": cats}
    amodal = [(c, a, v) for c, a, v in rows if a is not None]
    if amodal or not rows:
        bins = {b: 0 for b in OCC_BINS}
        cat_bins = {c: {b: 0 for b in OCC_BINS} for c in cats}
        for c, a, v in amodal:
            b = occlusion_bin(a, v)
            bins[b] += 1
            cat_bins[c][b] += 1
        rates = [1.0 - v / a for _, a, v in amodal]
        out.update(per_occlusion_bin=bins, per_category_and_bin=cat_bins,
                   mean_occlusion_rate=round(float(np.mean(rates)) if rates else 0.0, 4),
                   occluded_fraction=round(float(np.mean([r > 0 for r in rates])) if rates else 0.0, 4))
    return out


def from_annotations(splits: dict) -> dict:
    """A datasheet ({"splits": {name: counts}}) of {split name: AnnotationSet}."""
    sheet: dict = {"splits": {}}
    for name, ann in splits.items():
        rows = [(i.category, i.amodal_area, i.visible_area) for i in ann.instances]
        sheet["splits"][name] = {"images": len(ann.images), **count(rows, sorted(set(ann.categories.values())))}
    return sheet


def table(sheet: dict, splits: Optional[dict] = None):
    """One row per split (train, val, test) and category with instances (categories with none are left out): the
    count, the occlusion bins when known, and with ``splits`` ({split name: AnnotationSet}) the
    instances that are unoccluded by the modal rule (touching neither the border nor another
    instance: what stage 1 trains on)."""
    import pandas as pd
    rows = []
    names = sorted(sheet["splits"], key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))
    for name in names:
        d = sheet["splits"][name]
        unocc: dict = {}
        if splits is not None and name in splits:
            for i in splits[name].instances:
                unocc[i.category] = unocc.get(i.category, 0) + int(i.is_unoccluded)
        for cat in sorted(c for c, n in d["per_category"].items() if n):
            row = {"split": name, "category": cat, "instances": d["per_category"][cat]}
            if splits is not None:
                row["unoccluded (modal rule)"] = unocc.get(cat, 0)
            if "per_category_and_bin" in d:
                row.update(d["per_category_and_bin"][cat])
            rows.append(row)
    return pd.DataFrame(rows)
