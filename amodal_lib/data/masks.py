"""Mask encodings, all through pycocotools: polygons and RLE in, compressed RLE out.

Masks stay in COCO's compressed RLE until a caller needs pixels; areas and overlaps are
computed on the RLE directly (pycocotools' C code), which is what keeps a 10k-instance
file loading in seconds.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict  # {"size": [h, w], "counts": bytes}


class AnnotationError(ValueError):
    """A record of an annotation file that cannot be read: names the file, record and field."""

    def __init__(self, path: Any, record: Any, field: str, message: str):
        self.path, self.record, self.field, self.reason = str(path), record, field, message
        where = f"{self.path}"
        if record is not None:
            where += f": annotation {record}"
        if field:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


def _rle_counts_total(counts: bytes) -> int:
    """Sum of the run lengths in a compressed COCO counts string (its LEB128-like code).

    pycocotools does not check that a compressed RLE covers the whole image, and a
    truncated string decodes to garbage; this is the check.
    """
    runs: list[int] = []
    i, n = 0, len(counts)
    while i < n:
        x, k, more = 0, 0, True
        while more:
            if i >= n:
                raise ValueError("the counts string ends inside a number")
            c = counts[i] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise ValueError("negative run length")
        runs.append(x)
    total = sum(runs)
    return total


def segm_to_rle(segm: Any, height: int, width: int, *, path: Any = "?", record: Any = None,
                field: str = "segmentation") -> RLE:
    """One compressed RLE from COCO polygons (a list of flat lists) or RLE (compressed or not).

    Raises AnnotationError naming ``path``, ``record`` and ``field`` on malformed input
    (odd or too short polygons, a size that disagrees with the image, a truncated RLE).
    Several polygons are merged into one mask (``decode(merge(frPyObjects(...)))``).
    """
    def bad(msg: str) -> AnnotationError:
        return AnnotationError(path, record, field, msg)

    if isinstance(segm, list):
        if not segm:
            raise bad("no polygon")
        if all(isinstance(v, (int, float)) for v in segm):  # one flat polygon (COCOA style)
            segm = [segm]
        polys = []
        for p in segm:
            if not isinstance(p, (list, tuple)) or not all(isinstance(v, (int, float)) for v in p):
                raise bad("a polygon must be a flat list of numbers")
            if len(p) < 6 or len(p) % 2:
                raise bad(f"a polygon needs an even number (>= 6) of coordinates, got {len(p)}")
            polys.append([float(v) for v in p])
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise bad("an RLE needs 'counts' and 'size'")
        size = segm["size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise bad("RLE 'size' must be [height, width]")
        if [int(size[0]), int(size[1])] != [int(height), int(width)]:
            raise bad(f"RLE size {list(size)} differs from the image size {[height, width]}")
        counts = segm["counts"]
        if isinstance(counts, list):  # uncompressed
            if sum(counts) != height * width or any(c < 0 for c in counts):
                raise bad(f"RLE run lengths sum to {sum(counts)}, not height*width = {height * width}")
            return mask_utils.frPyObjects(segm, height, width)
        if isinstance(counts, str):
            counts = counts.encode("ascii")
        if not isinstance(counts, bytes):
            raise bad("RLE 'counts' must be a string or a list")
        try:
            total = _rle_counts_total(counts)
        except ValueError as e:
            raise bad(f"corrupt RLE counts ({e})") from None
        if total != height * width:
            raise bad(f"truncated or corrupt RLE: runs cover {total} of {height * width} pixels")
        return {"size": [int(height), int(width)], "counts": counts}
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
