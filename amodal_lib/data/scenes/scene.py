"""One synthetic street scene and its KINS 2020 annotations (:func:`scene`).

Objects are placed (:mod:`.placement`) and projected (:mod:`.camera`); each amodal mask is the
rasterised union of its silhouette polygons; visible masks come from the depth order (the
distance of the ground-contact centre): an instance's amodal mask minus the amodal masks of the
instances in front. Instances with an amodal area under :data:`MIN_AMODAL_AREA` px or a visible
area under :data:`MIN_VISIBLE_AREA` px are left out of the scene altogether (neither drawn nor
occluding), so every annotation has a visible part and every occluder is annotated. Between
:data:`MIN_INSTANCES` and :data:`MAX_INSTANCES` instances are kept per image.
"""
from __future__ import annotations

import math

import numpy as np
from pycocotools import mask as mask_utils

from ..readers import KINS_CATEGORIES
from .placement import _layout, _Placer
from .render import _render

CAT_ID = {name: k for k, name in KINS_CATEGORIES.items()}
MIN_AMODAL_AREA = 40
MIN_VISIBLE_AREA = 20
MIN_INSTANCES, MAX_INSTANCES = 4, 12


def _rasterise(polys, H, W):
    flat = [p.reshape(-1).tolist() for p in polys]
    rle = mask_utils.merge(mask_utils.frPyObjects(flat, H, W))
    return rle, mask_utils.decode(rle).astype(bool)


def _resolve(order, masks, areas, active, slices, shape):
    """Visible masks (cropped to each amodal box), nearest first; instances too small or
    hidden are left out of the scene entirely (neither drawn nor occluding)."""
    occ = np.zeros(shape, dtype=bool)
    kept, vis = [], {}
    for i in order:
        if i not in active or areas[i] < MIN_AMODAL_AREA:
            continue
        s = slices[i]
        m = masks[i][s]
        v = m & ~occ[s]
        if int(np.count_nonzero(v)) < MIN_VISIBLE_AREA:
            continue
        kept.append(i)
        vis[i] = v
        occ[s] |= m
    return kept, vis


def _slices(rle):
    x, y, w, h = mask_utils.toBbox(rle)
    return (slice(int(math.floor(y)), int(math.ceil(y + h))), slice(int(math.floor(x)), int(math.ceil(x + w))))


def _bbox(rle):
    return [float(round(v, 2)) for v in mask_utils.toBbox(rle)]


def scene(rng: np.random.Generator, height: int = 160, width: int = 512, return_masks: bool = False):
    """One street scene: (rgb uint8 (H, W, 3), instances).

    Each instance is a dict with the KINS 2020 fields except ``id``/``image_id``:
    ``category_id``, ``a_segm`` (polygons), ``i_segm`` (RLE, counts as str), ``a_bbox``,
    ``i_bbox``, ``a_area``, ``i_area``, ``oco_id`` (cluster number inside this image, 1-based;
    0 = overlaps nothing), ``ico_id``, plus ``depth`` (metres to the ground-contact centre),
    ``view_deg`` (heading relative to the line of sight: 0 = seen from behind, +-180 = from
    the front, +-90 = from the side)
    and, with ``return_masks``, boolean ``a_mask`` / ``i_mask`` arrays.
    """
    H, W = int(height), int(width)
    for attempt in range(8):
        lay = _layout(rng, H, W)
        pl = _Placer(rng, lay)
        for side in (-1, 1):
            if lay["park_l" if side < 0 else "park_r"] and rng.random() < 0.85:
                pl.parked_row(side)
        pl.lane_traffic()
        if lay["inter"] is not None:
            pl.crossing()
        for side in (-1, 1):
            pl.sidewalk_people(side)
        pl.cyclists()
        target = int(rng.integers(MIN_INSTANCES, MAX_INSTANCES + 1))
        masks, rles, areas, slices = {}, {}, {}, {}

        def rasterise_new():
            for i, ob in enumerate(pl.objs):
                if i in masks:
                    continue
                polys = ob.silhouette()
                if not polys:
                    masks[i], rles[i], areas[i], slices[i] = None, None, 0, None
                    continue
                rles[i], masks[i] = _rasterise(polys, H, W)
                areas[i] = int(mask_utils.area(rles[i]))
                slices[i] = _slices(rles[i])

        rasterise_new()
        active = set(range(len(pl.objs)))
        for _ in range(6):
            kept, vis = _resolve(sorted(active, key=lambda i: pl.objs[i].Z), masks, areas, active, slices, (H, W))
            if len(kept) > target:
                drop = rng.choice(np.array(kept), size=len(kept) - target, replace=False)
                active -= set(int(d) for d in drop)
                continue
            if len(kept) < MIN_INSTANCES:
                n_before = len(pl.objs)
                for _ in range(2 * (MIN_INSTANCES - len(kept))):
                    pl.filler()
                rasterise_new()
                active |= set(range(n_before, len(pl.objs)))
                continue
            break
        kept, vis = _resolve(sorted(active, key=lambda i: pl.objs[i].Z), masks, areas, active, slices, (H, W))
        if len(kept) > MAX_INSTANCES:   # keep the nearest: their visibility does not change
            active = set(kept[:MAX_INSTANCES])
            kept, vis = _resolve(sorted(active, key=lambda i: pl.objs[i].Z), masks, areas, active, slices, (H, W))
        if kept:
            break
    rgb = _render(rng, lay, pl, kept, masks, slices)

    oco, ico = _clusters(kept, rles, masks, slices)

    out = []
    for a, i in enumerate(kept):
        ob = pl.objs[i]
        v = np.zeros((H, W), dtype=bool)
        v[slices[i]] = vis[i]
        vr = mask_utils.encode(np.asfortranarray(v.astype(np.uint8)))
        inst = {
            "category_id": CAT_ID[ob.model.category],
            "a_segm": [p.reshape(-1).tolist() for p in ob.silhouette()],
            "i_segm": {"size": [H, W], "counts": vr["counts"].decode("ascii")},
            "a_bbox": _bbox(rles[i]), "i_bbox": _bbox(vr),
            "a_area": int(areas[i]), "i_area": int(mask_utils.area(vr)),
            "oco_id": oco[a], "ico_id": ico[a], "depth": round(ob.Z, 3),
            "view_deg": round(math.degrees((ob.yaw - math.atan2(ob.X, ob.Z) + math.pi) % (2 * math.pi) - math.pi), 1),
        }
        if return_masks:
            inst["a_mask"], inst["i_mask"] = masks[i], v
        out.append(inst)
    return rgb, out


def _clusters(kept, rles, masks, slices) -> tuple:
    """KINS's ``oco_id`` / ``ico_id`` of the kept instances (nearest first): occlusion clusters
    are the connected components of the "amodal masks overlap" graph, numbered by their nearest
    member from 1 (0: overlapping nothing); ``ico_id`` is the rank inside the cluster, 1 nearest."""
    n = len(kept)
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    boxes = [mask_utils.toBbox(rles[i]) for i in kept]
    for a in range(n):
        for b in range(a + 1, n):
            ba, bb = boxes[a], boxes[b]
            if ba[0] >= bb[0] + bb[2] or bb[0] >= ba[0] + ba[2] or ba[1] >= bb[1] + bb[3] or bb[1] >= ba[1] + ba[3]:
                continue
            sa = slices[kept[a]]
            if (masks[kept[a]][sa] & masks[kept[b]][sa]).any():
                parent[find(a)] = find(b)
    groups: dict[int, list[int]] = {}
    for a in range(n):
        groups.setdefault(find(a), []).append(a)
    oco, ico = [0] * n, [0] * n
    cid = 0
    for a in range(n):   # clusters numbered by their nearest member (kept is nearest first)
        g = groups[find(a)]
        if len(g) < 2 or oco[a]:
            continue
        cid += 1
        for rank, m in enumerate(sorted(g), start=1):
            oco[m], ico[m] = cid, rank
    return oco, ico
