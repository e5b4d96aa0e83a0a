"""Mask encodings, all through pycocotools: polygons and RLE in, compressed RLE out.

Masks stay in COCO's compressed RLE until a caller needs pixels; areas and overlaps are
computed on the RLE directly (pycocotools' C code), which is what keeps a 10k-instance
file loading in seconds.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

from ..errors import AnnotationError, shown  # AnnotationError: defined in amodal_lib.errors, re-exported here
from . import rle as R

RLE = dict  # {"size": [h, w], "counts": bytes}


# Limits that keep a malformed or hostile file from exhausting memory: pycocotools allocates in
# proportion to a polygon's perimeter (upsampled 5x) and to an image's pixels when decoding, and
# the library decodes every mask of an image at once. Far above any amodal data set (KINS
# 1242x375, COCO 640x480, Cityscapes 2048x1024); raise them here for larger images.
MAX_IMAGE_SIDE = 2 ** 15          # pixels along one side
MAX_IMAGE_PIXELS = 2 ** 26        # 67 M pixels (8192 x 8192)
POLYGON_MARGIN = 4                # coordinates may lie up to 4 image sizes outside the image
MAX_POLYGON_TURNS = 200           # a polygon's perimeter is at most 200 x (height + width)


def as_int(v: Any) -> Optional[int]:
    """``v`` as an int when it is one (an integral float too, but no bool), else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return int(v)
    return None


def is_number(v: Any) -> bool:
    """A JSON number (int or float, not a bool); NaN and infinities included."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def image_size_problem(height: Any, width: Any) -> Optional[str]:
    """Why ``height`` x ``width`` is not a usable image size (None when it is)."""
    h, w = as_int(height), as_int(width)
    if h is None or w is None:
        return f"image size must be two integers, got {shown(height)} x {shown(width)}"
    if h <= 0 or w <= 0:
        return f"image size {h}x{w}"
    if max(h, w) > MAX_IMAGE_SIDE or h * w > MAX_IMAGE_PIXELS:
        return (f"image size {h}x{w} is over the limit of {MAX_IMAGE_SIDE} pixels a side and "
                f"{MAX_IMAGE_PIXELS} pixels in all (amodal_lib.data.masks.MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS)")
    return None


def polygon_problem(poly: Sequence, height: int, width: int) -> Optional[str]:
    """Why one flat polygon ``[x0, y0, x1, y1, ...]`` must not reach pycocotools (None if it may).

    Checked before any decoding: pycocotools converts coordinates to C ints (a huge one
    overflows) and allocates one entry per upsampled pixel of the perimeter (a NaN, an infinity
    or 1e9 made it allocate until the process was killed)."""
    if len(poly) < 6 or len(poly) % 2:
        return f"a polygon needs an even number (>= 6) of coordinates, got {len(poly)}"
    return _polygon_array_problem(np.asarray(poly, dtype=np.float64), poly, height, width)


def _polygon_array_problem(xy: np.ndarray, poly: Sequence, height: int, width: int) -> Optional[str]:
    """:func:`polygon_problem` of a polygon of an even length >= 6 already converted to ``xy``
    (float64): each check first on the whole array, the offending coordinate found only on failure
    (this runs for every polygon of a file)."""
    if not np.isfinite(xy).all():
        k = int(np.flatnonzero(~np.isfinite(xy))[0])
        return f"coordinate {k} is {poly[k]!r}, not a finite number"
    m = POLYGON_MARGIN * max(height, width)
    pts = xy.reshape(-1, 2)
    lo, hi = pts.min(0), pts.max(0)
    if lo[0] < -m or lo[1] < -m or hi[0] > width + m or hi[1] > height + m:
        x, y = xy[0::2], xy[1::2]
        for axis, v, size in (("x", x, width), ("y", y, height)):
            out = np.flatnonzero((v < -m) | (v > size + m))
            if len(out):
                k = int(out[0])
                return (f"{axis} coordinate {v[k]:g} (coordinate {2 * k + (axis == 'y')}) is far outside the "
                        f"{height}x{width} image (allowed: {-m} to {size + m})")
    # each edge's longer side, the closing edge included: the pixels pycocotools will upsample
    step = np.empty_like(pts)
    step[:-1] = pts[1:] - pts[:-1]
    step[-1] = pts[0] - pts[-1]
    perimeter = float(np.abs(step).max(1).sum())
    limit = MAX_POLYGON_TURNS * (height + width)
    if perimeter > limit:
        return (f"polygon too long: its edges run {perimeter:.0f} pixels, over {MAX_POLYGON_TURNS} x "
                f"(height + width) = {limit}")
    return None


def _all_numbers(values: Sequence) -> bool:
    """Is every entry a JSON number (:func:`is_number`)? Plain ints and floats, what a JSON file
    gives, are recognised by their types at once; anything else entry by entry."""
    types = set(map(type, values))
    return types <= {int, float} or all(is_number(v) for v in values)


def _rle_counts_total(counts: bytes) -> int:
    """Sum of the run lengths in a compressed COCO counts string (its LEB128-like code).

    pycocotools does not check that a compressed RLE covers the whole image, and a
    truncated string decodes to garbage; this is the check. Characters outside the code's
    alphabet ('0' to 'o') and run lengths over 2**64 are refused (ValueError, with the reason).
    """
    return R.runs_total(counts)


def counts_totals(segms: Sequence) -> dict:
    """{compressed counts string: :func:`_rle_counts_total`} of the RLE masks among ``segms``
    (anything else is passed over), checked in one vectorised pass: a reader computes it for a
    whole file and gives it to :func:`segm_to_rle`, which then checks each mask by a look-up.
    Strings the pass cannot decide are left out (:func:`segm_to_rle` reads them alone)."""
    strings = [seg["counts"] for seg in segms
               if isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes))]
    try:
        raw = [c.encode("ascii") if isinstance(c, str) else c for c in strings]
    except UnicodeEncodeError:
        return {}
    totals = R.runs_totals(raw)
    return {c: int(t) for c, t in zip(strings, totals.tolist()) if t >= 0}


def segm_to_rle(segm: Any, height: int, width: int, *, path: Any = "?", record: Any = None,
                field: str = "segmentation", error: type = AnnotationError, totals: Optional[dict] = None) -> RLE:
    """One compressed RLE from COCO polygons (a list of flat lists) or RLE (compressed or not).

    Raises ``error`` (an :class:`AnnotationError`) naming ``path``, ``record`` and ``field`` on
    malformed input (odd or too short polygons, a coordinate that is not finite or far outside
    the image, a size that disagrees with the image, a truncated RLE), before pycocotools sees it.
    Several polygons are merged into one mask (``decode(merge(frPyObjects(...)))``).
    """
    def bad(msg: str) -> AnnotationError:
        return error(path, record, field, msg)

    size_problem = image_size_problem(height, width)
    if size_problem:
        raise bad(size_problem)
    height, width = int(height), int(width)
    if isinstance(segm, list):
        if not segm:
            raise bad("no polygon")
        if _all_numbers(segm):  # one flat polygon (COCOA style)
            segm = [segm]
        polys = []
        for j, p in enumerate(segm):
            if not isinstance(p, (list, tuple)) or not _all_numbers(p):
                raise bad("a polygon must be a flat list of numbers")
            if len(p) < 6 or len(p) % 2:
                problem = polygon_problem(p, height, width)
            else:
                xy = np.asarray(p, dtype=np.float64)
                problem = _polygon_array_problem(xy, p, height, width)
            if problem:
                raise bad(problem if len(segm) == 1 else f"polygon {j}: {problem}")
            polys.append(xy.tolist())
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise bad("an RLE needs 'counts' and 'size'")
        size = segm["size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise bad("RLE 'size' must be [height, width]")
        if as_int(size[0]) is None or as_int(size[1]) is None:
            raise bad(f"RLE 'size' must be two integers [height, width], got {shown(list(size))}")
        if [as_int(size[0]), as_int(size[1])] != [height, width]:
            raise bad(f"RLE size {list(size)} differs from the image size {[height, width]}")
        counts = segm["counts"]
        if isinstance(counts, list):  # uncompressed
            if not all(as_int(c) is not None and c >= 0 for c in counts):
                raise bad("uncompressed RLE counts must be non-negative integers")
            total = sum(int(c) for c in counts)
            if total != height * width:
                raise bad(f"RLE run lengths sum to {total}, not height*width = {height * width}")
            return mask_utils.frPyObjects({"size": [height, width], "counts": [int(c) for c in counts]},
                                          height, width)
        total = totals.get(counts) if totals and isinstance(counts, (str, bytes)) else None
        if isinstance(counts, str):
            try:
                counts = counts.encode("ascii")
            except UnicodeEncodeError:
                raise bad("RLE 'counts' must be an ASCII string") from None
        if not isinstance(counts, bytes):
            raise bad("RLE 'counts' must be a string or a list")
        if total is None:
            try:
                total = _rle_counts_total(counts)
            except ValueError as e:
                raise bad(f"corrupt RLE counts ({e})") from None
        if total != height * width:
            raise bad(f"truncated or corrupt RLE: runs cover {total} of {height * width} pixels")
        return {"size": [height, width], "counts": counts}
    raise bad(f"expected polygons or RLE, got {type(segm).__name__}")


def decode(rle: RLE) -> np.ndarray:
    """The HxW uint8 mask of one RLE."""
    return mask_utils.decode(rle)


def decode_many(rles: Sequence[RLE]) -> np.ndarray:
    """An (N, H, W) uint8 stack of masks of one image size."""
    if not rles:
        raise ValueError("no masks to decode")
    return np.ascontiguousarray(mask_utils.decode(list(rles)).transpose(2, 0, 1))


def encode(mask: np.ndarray) -> RLE:
    """Compressed RLE of an HxW binary mask."""
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """A binary mask dilated by ``px`` pixels (square structuring element: 8-connected steps), bool."""
    if px <= 0 or not mask.any():
        return mask.astype(bool)
    return ndimage.maximum_filter(mask.astype(bool), size=2 * px + 1, mode="constant")


def area(rles: RLE | Sequence[RLE]) -> np.ndarray | int:
    return mask_utils.area(rles)


def to_bbox(rles: RLE | Sequence[RLE]) -> np.ndarray:
    """xywh boxes of RLEs."""
    return mask_utils.toBbox(rles)


def merge(rles: Sequence[RLE], intersect: bool = False) -> RLE:
    return mask_utils.merge(list(rles), intersect=intersect)


def intersection_areas(a: Sequence[RLE], b: Sequence[RLE]) -> np.ndarray:
    """(len(a), len(b)) matrix of |a_i & b_j|, computed on RLE in C.

    pycocotools' iou with iscrowd=1 is |a & b| / |a|; multiplying back by |a| gives the
    intersection exactly (up to float rounding, removed by rint).
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    frac = np.asarray(mask_utils.iou(list(a), list(b), [1] * len(b)), dtype=np.float64)
    return np.rint(frac * np.asarray(area(list(a)), dtype=np.float64)[:, None])


def to_json(rle: RLE) -> dict:
    """An RLE that json can write (counts as str)."""
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def empty(height: int, width: int) -> RLE:
    return encode(np.zeros((height, width), np.uint8))
