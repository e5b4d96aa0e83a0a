"""Baselines that need no training: the visible mask itself, and its convex hull.

The learned baseline, Deocclusion's PCNet-M, has the shape of every trained model family:
:mod:`amodal_lib.models.pcnet` (network), :mod:`amodal_lib.train.pcnet` (training) and
:mod:`amodal_lib.predict.pcnet` (completion).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from ..data import masks as M
from ..data import rle as R
from ..data.records import Instance


def visible(instances: Sequence[Instance]) -> dict:
    """The visible mask as the amodal prediction (the paper's "GT Instance Mask" row)."""
    return {i.id: i.visible for i in instances}


def convex_hull_rle(rle: M.RLE) -> M.RLE:
    """Convex hull of a mask: scipy's Qhull on the pixel corners, rasterised by pycocotools. Only
    the mask's box is decoded, and only each row's first and last pixels (whose corners hold every
    corner of the hull) are given to Qhull."""
    h, w = (int(v) for v in rle["size"])
    x, y, bw, bh = (int(v) for v in M.to_bbox(rle))
    if bw == 0 or bh == 0:
        return rle
    m = R.decode_window(rle, y, y + bh, x, x + bw).astype(bool)
    rows = np.flatnonzero(m.any(1))
    first = m[rows].argmax(1)
    last = bw - 1 - m[rows, ::-1].argmax(1)
    ys, xs = np.concatenate([rows, rows]) + y, np.concatenate([first, last]) + x
    # every pixel is the square [x, x+1] x [y, y+1]; its corners bound the hull exactly
    pts = np.unique(np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]), axis=0)
    try:
        hull = ConvexHull(pts.astype(np.float64))
    except QhullError:  # all points on a line: the mask is its own hull
        return rle
    poly = pts[hull.vertices].astype(np.float64).ravel().tolist()
    return M.merge([M.segm_to_rle([poly], h, w), rle])


def convex_hull(instances: Sequence[Instance]) -> dict:
    """The convex hull of the visible mask as the amodal prediction."""
    return {i.id: convex_hull_rle(i.visible) for i in instances}


METHODS = {"visible": visible, "convex-hull": convex_hull}
