"""The embedded default data set: procedural street scenes written in the KINS 2020 schema.

No download, no licence question: ``generate`` (or ``amodal synth``) writes COCO-style JSON
files that the rest of the code reads exactly like KINS's 2020 update files:

    out_dir/update_train_2020.json, update_val_2020.json, update_test_2020.json
    out_dir/images/<split>/<000123>.png
    out_dir/datasheet.md, out_dir/datasheet.json, out_dir/params.json (written last)

Scenes are a pinhole camera at driver's height looking down a street (KITTI-like field of
view, horizon at 35-45 % of the height): road with lanes and markings, parking strips with
rows of parked cars, sidewalks with pedestrians, buildings with window grids, sometimes a
crossing street with a zebra crossing and crossing traffic. Objects are 3D part models
(``synth_shapes``) placed on the ground plane with a yaw, so their silhouettes are true side,
rear, front and 3/4 views whose size follows the perspective (scale proportional to the
distance of the ground contact below the horizon).

Annotations, as KINS has them:
- ``a_segm``: amodal mask as COCO polygons (several convex parts per object, their union is
  the object), clipped to the image by the rasteriser (objects may be truncated).
- ``i_segm``: visible mask, compressed RLE (amodal minus the amodal masks of the instances
  in front of it: the visible part may have holes).
- ``a_bbox``/``i_bbox``/``a_area``/``i_area`` from the rasterised masks (pycocotools).
- ``oco_id``: occlusion cluster (connected component of the "amodal masks overlap" graph in
  the image), unique over the data set; 0 for an instance that overlaps nothing.
- ``ico_id``: order inside the cluster, 1 = nearest to the camera; 0 when not overlapping.
Depth order is the distance of the object's ground-contact centre (equivalently its row
below the horizon). Instances with an amodal area under 40 px or a visible area under 20 px
are left out of the scene altogether (neither drawn nor occluding), so every annotation has
a visible part and every occluder is annotated.

Everything is deterministic in ``seed``: image i uses ``SeedSequence([seed, i])`` whatever the
number of workers, and its split comes from i alone (a low-discrepancy sequence), so the
first N images of a larger data set are the same images in the same splits.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from scipy.spatial import ConvexHull

from ..errors import ArgumentError, UnsafeOutputError
from .synth_shapes import BUILDERS, Model

GENERATOR_VERSION = 2   # bump whenever the generated data change: it keys the cache
SPLITS = ("train", "val", "test")
ANN_FILES = {"train": "update_train_2020.json", "val": "update_val_2020.json", "test": "update_test_2020.json"}
CATEGORIES = [
    {"id": 1, "name": "cyclist", "supercategory": "person"},
    {"id": 2, "name": "pedestrian", "supercategory": "person"},
    {"id": 4, "name": "car", "supercategory": "vehicle"},
    {"id": 5, "name": "tram", "supercategory": "vehicle"},
    {"id": 6, "name": "truck", "supercategory": "vehicle"},
    {"id": 7, "name": "van", "supercategory": "vehicle"},
    {"id": 8, "name": "misc", "supercategory": "vehicle"},
]
CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}
CAT_NAME = {c["id"]: c["name"] for c in CATEGORIES}
OCC_BINS = ("0%", "0-10%", "10-30%", "30-50%", "50-70%", "70-90%", ">90%")
MIN_AMODAL_AREA = 40
MIN_VISIBLE_AREA = 20
MIN_INSTANCES, MAX_INSTANCES = 4, 12
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
FACING_THR = 0.15
IMAGE_NOISE = 0.0     # sensor noise over the whole image (std); > 0 makes the PNGs 7x larger
OBJECT_NOISE = 5.0    # texture noise on the objects (std, grey levels)


# ============================================================================ geometry


class Camera:
    def __init__(self, f, cx, horizon, height_m, H, W):
        self.f, self.cx, self.h, self.hc, self.H, self.W = f, cx, horizon, height_m, H, W

    def project(self, P):
        """(N, 3) world points (X right, Y up, Z forward) -> (N, 2) pixels."""
        Z = P[:, 2]
        return np.column_stack([self.cx + self.f * P[:, 0] / Z, self.h + self.f * (self.hc - P[:, 1]) / Z])

    def row_of(self, Z):
        return self.h + self.f * self.hc / Z


def _rot(yaw):
    c, s = math.cos(yaw), math.sin(yaw)
    # local (x right, y up, z forward) -> world; yaw 0 = heading away from the camera
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _hull_py(P) -> Optional[np.ndarray]:
    """Andrew's monotone chain on a sorted list of distinct points (fallback)."""
    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-2], out[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) <= 0:
                    out.pop()
                else:
                    break
            out.append(p)
        return out

    lower, upper = half(P), half(list(reversed(P)))
    h = lower[:-1] + upper[:-1]
    return np.array(h) if len(h) >= 3 else None


def _hull(pts: np.ndarray) -> Optional[np.ndarray]:
    """Convex hull (counter-clockwise vertices) of 2D points; None when degenerate."""
    if len(pts) > 50:
        try:
            return pts[ConvexHull(pts).vertices]
        except Exception:   # qhull refuses flat or repeated input
            pass
    P = sorted(set(map(tuple, np.round(pts, 4).tolist())))
    if len(P) < 3:
        return None
    return _hull_py(P)


_CIRCLES = {n: np.stack([np.cos(np.linspace(0, 2 * np.pi, n, endpoint=False)),
                         np.sin(np.linspace(0, 2 * np.pi, n, endpoint=False))], 1) for n in range(4, 25)}


def _n_arc(r, span):
    return int(min(16, max(3, math.ceil(span * r / 1.5))))


def _disc(c, r) -> np.ndarray:
    n = int(min(24, max(6, math.ceil(2 * math.pi * r / 1.5))))
    return c + max(r, 0.3) * _CIRCLES[n]


def _capsule(c1, r1, c2, r2) -> np.ndarray:
    """Convex hull of two discs: two arcs joined by the outer tangents."""
    r1, r2 = max(r1, 0.3), max(r2, 0.3)
    d = c2 - c1
    dist = math.hypot(d[0], d[1])
    if dist <= abs(r1 - r2) + 1e-6:
        return _disc(c1, r1) if r1 >= r2 else _disc(c2, r2)
    th = math.atan2(d[1], d[0])
    a = math.pi / 2 - math.asin((r1 - r2) / dist)
    n2, n1 = _n_arc(r2, 2 * a), _n_arc(r1, 2 * math.pi - 2 * a)
    t2 = np.linspace(th - a, th + a, n2)
    t1 = np.linspace(th + a, th + 2 * math.pi - a, n1)
    return np.concatenate([c2 + r2 * np.stack([np.cos(t2), np.sin(t2)], 1),
                           c1 + r1 * np.stack([np.cos(t1), np.sin(t1)], 1)])


def _clip_poly(poly: np.ndarray, x0, y0, x1, y1) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex polygon to a rectangle (exact inside it)."""
    if poly[:, 0].min() >= x0 and poly[:, 0].max() <= x1 and poly[:, 1].min() >= y0 and poly[:, 1].max() <= y1:
        return poly
    pts = poly.tolist()
    for axis, bound, keep_ge in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        if not pts:
            break
        out = []
        for k in range(len(pts)):
            cur, prev = pts[k], pts[k - 1]
            cin = cur[axis] >= bound if keep_ge else cur[axis] <= bound
            pin = prev[axis] >= bound if keep_ge else prev[axis] <= bound
            if cin != pin:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append([prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])])
            if cin:
                out.append(cur)
        pts = out
    return np.array(pts) if len(pts) >= 3 else np.zeros((0, 2))


class Placed:
    """A model placed in the world and projected."""

    def __init__(self, model: Model, X, Z, yaw, cam: Camera):
        self.model, self.X, self.Z, self.yaw, self.cam = model, float(X), float(Z), float(yaw), cam
        self.R = _rot(yaw)
        self.t = np.array([X, 0.0, Z])
        self.world = [p.pts @ self.R.T + self.t for p in model.pieces]
        self.zmin = min(float(w[:, 2].min()) for w in self.world)
        self.polys = None
        self._pp: dict = {}

    def piece_poly(self, k) -> Optional[np.ndarray]:
        if k not in self._pp:
            self._pp[k] = self._piece_poly(k)
        return self._pp[k]

    def _piece_poly(self, k) -> Optional[np.ndarray]:
        p, Pw, cam = self.model.pieces[k], self.world[k], self.cam
        uv = cam.project(Pw)
        r = np.broadcast_to(np.asarray(p.r, dtype=np.float64), (len(Pw),))
        if r.max() > 0:
            rp = r * cam.f / Pw[:, 2]
            if len(uv) == 1:
                return _disc(uv[0], rp[0])
            if len(uv) == 2:
                return _capsule(uv[0], rp[0], uv[1], rp[1])
            parts = [uv]
            for q, rq in zip(uv, rp):
                if rq > 0.6:
                    n = int(min(24, max(6, math.ceil(2 * math.pi * rq / 1.5))))
                    parts.append(q + rq * _CIRCLES[n])
            uv = np.concatenate(parts)
        elif len(uv) == 4 and p.facing_only:
            # a flat convex quad projects to a convex quad: no hull needed
            x, y = uv[:, 0], uv[:, 1]
            a2 = float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
            return uv if abs(a2) > 1e-3 else None
        return _hull(uv)

    def silhouette(self):
        """Amodal polygons (list of (N, 2) arrays), one per silhouette piece."""
        if self.polys is None:
            H, W = self.cam.H, self.cam.W
            polys = []
            for k, p in enumerate(self.model.pieces):
                if not p.sil:
                    continue
                h = self.piece_poly(k)
                if h is None:
                    continue
                # rounded here: the written polygons are exactly the rasterised ones
                h = np.round(_clip_poly(h, -W, -H, 2 * W, 2 * H), 2)
                if len(h) >= 3:
                    polys.append(h)
            self.polys = polys
        return self.polys

    def draw_list(self):
        """(layer, -distance, polygon, role) for every piece drawn in the RGB image."""
        out = []
        for k, p in enumerate(self.model.pieces):
            Pw = self.world[k]
            c = Pw.mean(0)
            dist = float(np.linalg.norm(c - np.array([0, self.cam.hc, 0])))
            layer = float(p.layer)
            if p.normal is not None:
                nw = self.R @ np.asarray(p.normal, dtype=np.float64)
                nw /= np.linalg.norm(nw) + 1e-12
                to_cam = (np.array([0.0, self.cam.hc, 0.0]) - c) / (dist + 1e-12)
                facing = float(nw @ to_cam) > FACING_THR
                if p.facing_only and not facing:
                    continue
                if not p.facing_only:
                    layer += 0.5 if facing else -0.5
            h = self.piece_poly(k)
            if h is None:
                continue
            out.append((layer, -dist, h, p.role))
        out.sort(key=lambda t: (t[0], t[1]))
        return out

    def footprint(self, margin=0.0):
        hw, hl = self.model.footprint
        hw, hl = hw + margin, hl + margin
        loc = np.array([[-hw, 0, -hl], [hw, 0, -hl], [hw, 0, hl], [-hw, 0, hl]])
        return loc @ self.R.T + self.t


def _rects_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex ground polygons ((4, 3) world points, X and Z)."""
    A, B = a[:, [0, 2]], b[:, [0, 2]]
    for P in (A, B):
        for k in range(len(P)):
            e = P[k] - P[k - 1]
            n = np.array([-e[1], e[0]])
            pa, pb = A @ n, B @ n
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


# ============================================================================ scene layout


def _layout(rng, H, W):
    cam = Camera(f=W * rng.uniform(0.55, 0.6), cx=W / 2 + rng.normal(0, W * 0.01), horizon=H * rng.uniform(0.35, 0.45),
                 height_m=rng.uniform(1.55, 1.75), H=H, W=W)
    n_lanes = int(rng.choice([1, 2, 2, 3, 3, 4]))
    lane_w = rng.uniform(3.0, 3.6)
    ego = int(rng.integers(n_lanes))
    one_way = n_lanes == 1 or rng.random() < 0.3
    n_opp = 0 if one_way else max(1, n_lanes // 2)
    ego = max(ego, n_opp) if n_opp < n_lanes else ego
    lanes = [((k - ego) * lane_w, math.pi if k < n_opp else 0.0) for k in range(n_lanes)]
    left = (-ego - 0.5) * lane_w
    right = (n_lanes - ego - 0.5) * lane_w
    park_l, park_r = rng.random() < 0.7, rng.random() < 0.75
    road_l = left - (2.3 if park_l else 0.0)
    road_r = right + (2.3 if park_r else 0.0)
    sw_l, sw_r = rng.uniform(2.5, 5.0), rng.uniform(2.5, 5.0)
    inter = None
    if rng.random() < 0.5:
        inter = (rng.uniform(12, 40), rng.uniform(8, 13))   # (Z start, width)
    return {"cam": cam, "lanes": lanes, "lane_w": lane_w, "left": left, "right": right, "road_l": road_l,
            "road_r": road_r, "park_l": park_l, "park_r": park_r, "bld_l": road_l - sw_l, "bld_r": road_r + sw_r,
            "inter": inter, "one_way": one_way, "n_opp": n_opp}


def _vehicle_kind(rng, probs):
    names, p = zip(*probs)
    return names[int(rng.choice(len(names), p=np.array(p) / sum(p)))]


class _Placer:
    def __init__(self, rng, lay):
        self.rng, self.lay, self.cam = rng, lay, lay["cam"]
        self.objs: list[Placed] = []
        self.fps: list[np.ndarray] = []

    def add(self, kind, X, Z, yaw, model=None) -> bool:
        # within (or near) the horizontal field of view
        if Z < 1.5:
            return False
        u = self.cam.cx + self.cam.f * X / Z
        if abs(u - self.cam.W / 2) > self.cam.W * 0.5 + self.cam.f * 10.0 / Z:
            return False
        model = model or BUILDERS[kind](self.rng)
        ob = Placed(model, X, Z, yaw, self.cam)
        if ob.zmin < 1.0:
            return False
        fp = ob.footprint(0.15)
        for g in self.fps:
            if _rects_overlap(fp, g):
                return False
        self.objs.append(ob)
        self.fps.append(fp)
        return True

    # ---- the populations
    def parked_row(self, side):
        rng, lay = self.rng, self.lay
        edge = lay["road_l"] if side < 0 else lay["road_r"]
        X = edge - side * 1.15
        r = rng.random()
        angled = r < 0.3
        perpendicular = r < 0.12
        z = rng.uniform(2.5, 14.0)
        n = int(rng.integers(2, 9))
        base_yaw = (0.0 if rng.random() < 0.8 else math.pi) if side > 0 else \
            (math.pi if (rng.random() < 0.7 and not lay["one_way"]) else 0.0)
        if angled:
            ang = rng.uniform(80, 95) if perpendicular else rng.uniform(30, 60)
            base_yaw = side * math.radians(ang) + (math.pi if rng.random() < 0.3 else 0.0)
            X = edge - side * (2.6 if perpendicular else 1.8)
        for _ in range(n):
            kind = _vehicle_kind(rng, [("car", 0.84), ("van", 0.11), ("truck", 0.02), ("misc", 0.03)])
            model = BUILDERS[kind](rng)
            hl = model.footprint[1]
            if angled:
                step = 2.5 + rng.uniform(0, 0.8) + (0.0 if kind in ("car", "van") else 2.0)
                z += step
                self.add(kind, X + rng.normal(0, 0.15), z, base_yaw + rng.normal(0, 0.04), model)
            else:
                z += hl
                self.add(kind, X + rng.normal(0, 0.12), z, base_yaw + rng.normal(0, 0.035), model)
                z += hl + rng.uniform(0.4, 2.2) + (rng.uniform(4, 9) if rng.random() < 0.12 else 0.0)

    def lane_traffic(self):
        rng, lay = self.rng, self.lay
        for X, yaw in lay["lanes"]:
            for _ in range(int(rng.poisson(1.0))):
                kind = _vehicle_kind(rng, [("car", 0.72), ("van", 0.14), ("truck", 0.12), ("tram", 0.015),
                                           ("misc", 0.01)])
                zmin = 7.0 if abs(X) < 1.0 else 4.0
                self.add(kind, X + rng.normal(0, 0.25), rng.uniform(zmin, 70.0), yaw + rng.normal(0, 0.03))

    def crossing(self):
        rng, lay = self.rng, self.lay
        zc, wc = lay["inter"]
        for _ in range(int(rng.poisson(2.0))):
            kind = _vehicle_kind(rng, [("car", 0.75), ("van", 0.13), ("truck", 0.1), ("misc", 0.02)])
            d = 1 if rng.random() < 0.5 else -1
            z = zc + wc * (0.3 if d > 0 else 0.7)
            if rng.random() < 0.25:   # turning into or out of the main road
                yaw = d * math.radians(rng.uniform(25, 65)) + (math.pi if rng.random() < 0.5 else 0.0)
                self.add(kind, rng.uniform(lay["left"], lay["right"]), zc + rng.uniform(0, wc), yaw)
                continue
            self.add(kind, rng.uniform(-22, 22), z + rng.normal(0, 0.3), d * math.pi / 2 + rng.normal(0, 0.06))
        for _ in range(int(rng.poisson(1.6))):
            kind = "pedestrian" if rng.random() < 0.85 else "cyclist"
            d = 1 if rng.random() < 0.5 else -1
            self.add(kind, rng.uniform(lay["road_l"], lay["road_r"]), zc - rng.uniform(1.2, 4.0),
                     d * math.pi / 2 + rng.normal(0, 0.25))

    def sidewalk_people(self, side):
        rng, lay = self.rng, self.lay
        a, b = (lay["bld_l"], lay["road_l"]) if side < 0 else (lay["road_r"], lay["bld_r"])
        for _ in range(int(rng.poisson(1.5))):
            size = 1 if rng.random() < 0.55 else int(rng.integers(2, 5))
            X0, Z0 = rng.uniform(a + 0.4, b - 0.4), rng.uniform(3.5, 35.0)
            along = rng.random() < 0.75
            yaw0 = (0.0 if rng.random() < 0.5 else math.pi) if along else rng.uniform(-math.pi, math.pi)
            for _ in range(size):
                self.add("pedestrian", np.clip(X0 + rng.normal(0, 0.5), a + 0.3, b - 0.3), Z0 + rng.normal(0, 0.9),
                         yaw0 + rng.normal(0, 0.25))

    def cyclists(self):
        rng, lay = self.rng, self.lay
        for _ in range(int(rng.poisson(0.6))):
            side = 1 if rng.random() < 0.6 else -1
            edge = lay["right"] if side > 0 else lay["left"]
            X = edge - side * rng.uniform(0.5, 1.2)
            if (side > 0 and lay["park_r"]) or (side < 0 and lay["park_l"]):
                X = edge + side * rng.uniform(-1.0, 0.2)
            yaw = (0.0 if side > 0 or lay["one_way"] else math.pi) + rng.normal(0, 0.08)
            if rng.random() < 0.15:
                yaw += math.pi
            self.add("cyclist", X, rng.uniform(4.0, 40.0), yaw)

    def filler(self):
        """One more object, to reach the minimum count."""
        rng, lay = self.rng, self.lay
        r = rng.random()
        if r < 0.45:
            X, yaw = lay["lanes"][int(rng.integers(len(lay["lanes"])))]
            self.add("car", X + rng.normal(0, 0.3), rng.uniform(6, 35), yaw + rng.normal(0, 0.03))
        elif r < 0.85:
            side = 1 if rng.random() < 0.5 else -1
            a, b = (lay["bld_l"], lay["road_l"]) if side < 0 else (lay["road_r"], lay["bld_r"])
            self.add("pedestrian", rng.uniform(a + 0.4, b - 0.4), rng.uniform(4, 25), rng.uniform(-math.pi, math.pi))
        else:
            self.cyclists()


# ============================================================================ masks and scene


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

    # occlusion clusters over the kept instances
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


# ============================================================================ rendering


def _shade(c, k):
    return tuple(int(max(0, min(255, v * k))) for v in c)


def _render(rng, lay, pl: _Placer, kept, masks, slices) -> np.ndarray:
    cam: Camera = lay["cam"]
    H, W = cam.H, cam.W
    hz = cam.h
    light = rng.uniform(0.75, 1.12)
    tint = np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.03, 3)
    # sky
    top = np.array([rng.uniform(90, 160), rng.uniform(120, 180), rng.uniform(170, 235)])
    if rng.random() < 0.35:   # overcast
        g = rng.uniform(170, 220)
        top = np.array([g, g, g + 5])
    bottom = np.minimum(255, top + rng.uniform(30, 70))
    t = np.clip(np.arange(H) / max(hz, 1.0), 0, 1)[:, None]
    col = np.clip(top[None] * (1 - t) + bottom[None] * t, 0, 255).astype(np.uint8)
    im = Image.fromarray(np.ascontiguousarray(np.broadcast_to(col[:, None, :], (H, W, 3))))
    d = ImageDraw.Draw(im)
    P = cam.project

    def quad(pts3, colour):
        pts3 = np.asarray(pts3, dtype=np.float64)
        if pts3[:, 2].min() < 0.5:
            return
        uv = P(pts3)
        d.polygon([(float(x), float(y)) for x, y in uv], fill=colour)

    Zfar = 400.0
    # distant skyline
    x = -1.0
    while x < W:
        bw = rng.uniform(10, 45) * W / 512
        bh = rng.uniform(2, 14) * H / 160
        c = int(rng.uniform(120, 175))
        d.rectangle([x, hz - bh, x + bw, hz + 1], fill=(c - 5, c, c + 10))
        x += bw
    # ground (sidewalk colour everywhere), road, cross street
    sw = tuple(int(v) for v in rng.uniform(140, 175) + rng.normal(0, 4, 3))
    d.rectangle([0, hz, W, H], fill=sw)
    asphalt = tuple(int(v) for v in rng.uniform(70, 105) + rng.normal(0, 2, 3))
    quad([(lay["road_l"], 0, 1.0), (lay["road_r"], 0, 1.0), (lay["road_r"], 0, Zfar), (lay["road_l"], 0, Zfar)], asphalt)
    inter = lay["inter"]
    if inter is not None:
        zc, wc = inter
        quad([(-200, 0, zc), (200, 0, zc), (200, 0, zc + wc), (-200, 0, zc + wc)], asphalt)
        for xs in np.arange(lay["road_l"] + 0.3, lay["road_r"] - 0.5, 1.0):
            quad([(xs, 0, zc - 4.0), (xs + 0.5, 0, zc - 4.0), (xs + 0.5, 0, zc - 1.0), (xs, 0, zc - 1.0)],
                 (215, 215, 210))
    # kerbs
    kerb = _shade(sw, 0.8)
    for X in (lay["road_l"], lay["road_r"]):
        quad([(X - 0.08, 0, 1.0), (X + 0.08, 0, 1.0), (X + 0.08, 0, Zfar), (X - 0.08, 0, Zfar)], kerb)
    # lane markings
    white = (210, 210, 205)
    lw = lay["lane_w"]
    lanes = lay["lanes"]
    for k in range(1, len(lanes)):
        Xb = lanes[k][0] - lw / 2
        if k == lay["n_opp"] and lay["n_opp"] > 0:
            col = (210, 190, 90) if rng.random() < 0.3 else white
            quad([(Xb - 0.07, 0, 1.0), (Xb + 0.07, 0, 1.0), (Xb + 0.07, 0, 120), (Xb - 0.07, 0, 120)], col)
            continue
        z = rng.uniform(0, 9)
        while z < 90:
            quad([(Xb - 0.07, 0, z), (Xb + 0.07, 0, z), (Xb + 0.07, 0, z + 3), (Xb - 0.07, 0, z + 3)], white)
            z += 9
    for Xe in (lay["left"] + 0.2, lay["right"] - 0.2):
        quad([(Xe - 0.06, 0, 1.0), (Xe + 0.06, 0, 1.0), (Xe + 0.06, 0, 120), (Xe - 0.06, 0, 120)], white)
    # buildings along both sides, far to near
    for side, Xb in ((-1, lay["bld_l"]), (1, lay["bld_r"])):
        segs = []
        z = rng.uniform(1.0, 3.0)
        while z < 160:
            L = rng.uniform(6, 28)
            if inter is not None and z < inter[0] + inter[1] + 1 and z + L > inter[0] - 1:
                z = inter[0] + inter[1] + 1
                continue
            if rng.random() < 0.12:   # a gap
                z += rng.uniform(3, 10)
                continue
            segs.append((z, z + L, rng.uniform(6, 24)))
            z += L
        for z1, z2, hb in reversed(segs):
            base = rng.uniform(90, 215)
            col = tuple(int(np.clip(base + rng.normal(0, 18), 30, 240)) for _ in range(3))
            quad([(Xb, 0, z1), (Xb, 0, z2), (Xb, hb, z2), (Xb, hb, z1)], col)
            wcol = _shade(col, rng.uniform(0.35, 0.6))
            if z1 > 60:
                continue
            ww, wh = rng.uniform(0.9, 1.5), rng.uniform(1.1, 1.7)
            sx, sy = rng.uniform(2.2, 3.5), rng.uniform(2.8, 3.4)
            ys = np.arange(rng.uniform(1.8, 3.0), hb - 0.6 - wh, sy)
            zs = np.arange(z1 + rng.uniform(0.5, 1.5), z2 - 0.5 - ww, sx)
            if len(ys) and len(zs):
                yy, zz = np.meshgrid(ys, zs, indexing="ij")
                yy, zz = yy.ravel(), zz.ravel()
                corners = np.stack([np.stack([np.full_like(yy, Xb), yy + dy, zz + dz], 1)
                                    for dy, dz in ((0, 0), (0, ww), (wh, ww), (wh, 0))], 1)   # (n, 4, 3)
                uv = P(corners.reshape(-1, 3)).reshape(-1, 4, 2).tolist()
                for q in uv:
                    d.polygon([tuple(c) for c in q], fill=wcol)
        # the end of the street
    zend = rng.uniform(120, 220)
    quad([(lay["bld_l"], 0, zend), (lay["bld_r"], 0, zend), (lay["bld_r"], rng.uniform(8, 25), zend),
          (lay["bld_l"], rng.uniform(8, 25), zend)], tuple(int(v) for v in rng.uniform(110, 180, 3)))
    # shadows of the kept objects
    for i in kept:
        ob = pl.objs[i]
        fp = ob.footprint(0.12 if ob.model.shadow else -0.05)
        if fp[:, 2].min() > 0.5:
            quad(fp, (35, 35, 38))
    bg = np.array(im, dtype=np.float32)
    # objects, far to near, composited through their amodal masks
    for i in sorted(kept, key=lambda i: -pl.objs[i].Z):
        ob = pl.objs[i]
        m = masks[i]
        sy, sx = slices[i]
        y0, y1, x0, x1 = sy.start, sy.stop, sx.start, sx.stop
        pal = ob.model.palette
        crop = Image.new("RGB", (x1 - x0, y1 - y0), tuple(pal[ob.model.base]))
        cd = ImageDraw.Draw(crop)
        sil = ob.silhouette()
        ytop = min(float(p[:, 1].min()) for p in sil)
        ybot = max(float(p[:, 1].max()) for p in sil)
        for layer, _, poly, role in ob.draw_list():
            cd.polygon([(float(x) - x0, float(y) - y0) for x, y in poly], fill=tuple(pal[role]))
        arr = np.asarray(crop, dtype=np.float32)
        tt = ((np.arange(y0, y1) + 0.5 - ytop) / max(ybot - ytop, 1.0))[:, None, None]
        arr = arr * (1.0 + ob.model.shading * (0.45 - tt))
        arr += rng.standard_normal(size=arr.shape[:2], dtype=np.float32)[..., None] * OBJECT_NOISE
        mc = m[y0:y1, x0:x1]
        bg[y0:y1, x0:x1][mc] = arr[mc]
    # aerial perspective: the far ground and far objects fade towards the sky colour
    yy = np.arange(H, dtype=np.float32)
    w = (np.exp(-np.abs(yy - hz) / (0.12 * H)) * rng.uniform(0.15, 0.4)).astype(np.float32)
    gain = (light * tint).astype(np.float32)[None, None, :]
    bg *= (1.0 - w)[:, None, None] * gain
    bg += w[:, None, None] * (bottom.astype(np.float32) * gain)
    if IMAGE_NOISE > 0:
        bg += rng.standard_normal(size=bg.shape, dtype=np.float32) * IMAGE_NOISE
    np.clip(bg, 0, 255, out=bg)
    return bg.astype(np.uint8)


# ============================================================================ data set files


def split_of(index: int, splits=(0.7, 0.1, 0.2)) -> str:
    """The split of image ``index``: deterministic in the index alone (golden-ratio sequence,
    so every prefix of the data set has close to the requested proportions)."""
    total = float(sum(splits))
    u = (index * _GOLDEN + 0.5 * _GOLDEN) % 1.0
    acc = 0.0
    for name, frac in zip(SPLITS, splits):
        acc += frac / total
        if u < acc:
            return name
    return SPLITS[len(splits) - 1]


def image_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _work(args):
    """Worker: render images [start, stop), write their PNGs, return their annotations."""
    start, stop, seed, H, W, out_dir, splits = args
    out = []
    for i in range(start, stop):
        rgb, insts = scene(image_rng(seed, i), H, W)
        split = split_of(i, splits)
        rel = f"{split}/{i:06d}.png"
        Image.fromarray(rgb).save(os.path.join(out_dir, "images", rel), compress_level=1)
        for inst in insts:
            inst.pop("depth", None)
            inst.pop("view_deg", None)
        out.append((i, split, rel, insts))
    return out


def _atomic_write_text(path: Path, text: str):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _atomic_write_json(path: Path, obj, compact=True):
    if compact:
        _atomic_write_text(path, json.dumps(obj, separators=(",", ":")))
    else:
        _atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def occlusion_bin(a_area: int, i_area: int) -> str:
    if i_area >= a_area:
        return OCC_BINS[0]
    r = 1.0 - i_area / a_area
    for name, hi in zip(OCC_BINS[1:], (0.1, 0.3, 0.5, 0.7, 0.9)):
        if r <= hi:
            return name
    return OCC_BINS[-1]


def _datasheet(per_split: dict, params: dict) -> tuple[dict, str]:
    sheet = {"generator": "amodal_lib.data.synth", "generator_version": GENERATOR_VERSION, "params": params,
             "schema": "KINS 2020 update (a_segm polygons, i_segm RLE, a_bbox, i_bbox, a_area, i_area, oco_id, ico_id)",
             "categories": {str(c["id"]): c["name"] for c in CATEGORIES}, "occlusion_bins": list(OCC_BINS),
             "splits": {}}
    for split, (images, anns) in per_split.items():
        cats = {c["name"]: 0 for c in CATEGORIES}
        bins = {b: 0 for b in OCC_BINS}
        cat_bins = {c["name"]: {b: 0 for b in OCC_BINS} for c in CATEGORIES}
        trunc = 0
        H = W = None
        for im in images:
            H, W = im["height"], im["width"]
        for a in anns:
            name = CAT_NAME[a["category_id"]]
            b = occlusion_bin(a["a_area"], a["i_area"])
            cats[name] += 1
            bins[b] += 1
            cat_bins[name][b] += 1
            x, y, w, h = a["a_bbox"]
            if W is not None and (x <= 0.5 or x + w >= W - 0.5):
                trunc += 1
        rates = [1.0 - a["i_area"] / a["a_area"] for a in anns]
        sheet["splits"][split] = {
            "images": len(images), "instances": len(anns),
            "instances_per_image": round(len(anns) / max(1, len(images)), 3),
            "per_category": cats, "per_occlusion_bin": bins, "per_category_and_bin": cat_bins,
            "mean_occlusion_rate": round(float(np.mean(rates)) if rates else 0.0, 4),
            "occluded_fraction": round(float(np.mean([r > 0 for r in rates])) if rates else 0.0, 4),
            "touching_left_or_right_border": trunc,
            "clusters": len({a["oco_id"] for a in anns if a["oco_id"]}),
        }
    md = ["# Datasheet: embedded synthetic street scenes (KINS 2020 schema)", "",
          "Procedural street scenes from `amodal_lib.data.synth` (generator version "
          f"{GENERATOR_VERSION}): a pinhole camera at driver's height, 3D part models of cars, vans, trucks, "
          "trams, trailers (misc), pedestrians and cyclists placed on the ground plane in lanes, parking rows, "
          "sidewalks and crossings. Amodal masks are exact (the union of the projected parts); visible masks are "
          "the amodal mask minus the amodal masks of the instances in front. Instances with amodal area < "
          f"{MIN_AMODAL_AREA} px or visible area < {MIN_VISIBLE_AREA} px are left out of the scene.", "",
          "Parameters: " + ", ".join(f"`{k}={v}`" for k, v in sorted(params.items())), "",
          "Occlusion rate = 1 - visible area / amodal area (both inside the image).", ""]
    head = "| split | images | instances | per image | occluded | mean occlusion |"
    md += ["## Splits", "", head, "|---|---|---|---|---|---|"]
    for s, d in sheet["splits"].items():
        md.append(f"| {s} | {d['images']} | {d['instances']} | {d['instances_per_image']} | "
                  f"{d['occluded_fraction']:.1%} | {d['mean_occlusion_rate']:.1%} |")
    md += ["", "## Instances per category", "", "| category | " + " | ".join(sheet["splits"]) + " |",
           "|---|" + "---|" * len(sheet["splits"])]
    for c in CATEGORIES:
        md.append(f"| {c['id']} {c['name']} | " +
                  " | ".join(str(d["per_category"][c["name"]]) for d in sheet["splits"].values()) + " |")
    md += ["", "## Instances per occlusion bin", "", "| occlusion | " + " | ".join(sheet["splits"]) + " |",
           "|---|" + "---|" * len(sheet["splits"])]
    for b in OCC_BINS:
        md.append(f"| {b} | " + " | ".join(str(d["per_occlusion_bin"][b]) for d in sheet["splits"].values()) + " |")
    md.append("")
    return sheet, "\n".join(md)


def generate(out_dir, images: int = 2000, seed: int = 0, height: int = 160, width: int = 512,
             splits=(0.7, 0.1, 0.2), workers: Optional[int] = None, progress: bool = True) -> dict:
    """Write the data set into ``out_dir`` (see the module docstring); returns its paths:
    ``{"train", "val", "test", "images_dir", "datasheet", "datasheet_json", "params", "root"}``.

    The data set is built in a temporary folder beside ``out_dir`` and swapped in only when
    complete, so an interrupted run leaves what ``out_dir`` held before (an earlier data set)
    untouched. An existing ``out_dir`` must be empty or hold only what this function writes:
    a folder with other files is refused (:class:`~amodal_lib.errors.UnsafeOutputError`)."""
    images, seed, height, width = int(images), int(seed), int(height), int(width)
    if images < 1 or height < 16 or width < 16:
        raise ArgumentError("need images >= 1 and an image size of at least 16x16")
    if seed < 0:
        raise ArgumentError(f"the seed must be >= 0, got {seed}")
    splits = tuple(float(s) for s in splits)
    if len(splits) != 3 or min(splits) < 0 or sum(splits) <= 0:
        raise ArgumentError("splits must be three non-negative fractions (train, val, test)")
    final = Path(out_dir)
    target = final.resolve() if final.is_symlink() else final   # a link to a folder: replace the folder
    _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    build = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        build.mkdir()
        _generate_into(build, images, seed, height, width, splits, workers, progress)
        _swap_in(build, target)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return _paths(final)


# what generate() writes at the top of its folder (anything else there is the user's, and kept)
_WRITTEN = {*ANN_FILES.values(), "images", "datasheet.md", "datasheet.json", "params.json"}


def _check_replaceable(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise UnsafeOutputError(target, "exists and is not a folder: refusing to replace it with a data set")
    foreign = sorted(p.name for p in target.iterdir() if p.name not in _WRITTEN and ".tmp-" not in p.name)
    images = target / "images"
    if images.is_dir():
        foreign += sorted(f"images/{p.name}" for p in images.iterdir() if p.name not in SPLITS)
    if foreign:
        raise UnsafeOutputError(target, f"holds files that are not an amodal synth data set (e.g. {foreign[0]!r}): "
                                        "give an empty or new folder")


def _swap_in(build: Path, target: Path) -> None:
    """Put the finished folder ``build`` at ``target``; an older ``target`` is removed only after."""
    if not target.exists():
        os.rename(build, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    moved = False
    try:
        os.rename(target, old)
        moved = True
        os.rename(build, target)
    except BaseException:
        if moved and not target.exists():
            os.rename(old, target)   # put the old data set back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _generate_into(out: Path, images: int, seed: int, height: int, width: int, splits: tuple,
                   workers: Optional[int], progress: bool) -> None:
    from tqdm.auto import tqdm

    for s in SPLITS:
        (out / "images" / s).mkdir(parents=True, exist_ok=True)
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    chunk = 25
    jobs = [(a, min(a + chunk, images), seed, height, width, str(out), splits) for a in range(0, images, chunk)]
    results = {}
    bar = tqdm(total=images, desc="synth images", unit="img", disable=not progress)
    try:
        if workers <= 1 or len(jobs) == 1:
            for j in jobs:
                for r in _work(j):
                    results[r[0]] = r
                bar.update(j[1] - j[0])
        else:
            import multiprocessing as mp
            methods = mp.get_all_start_methods()
            ctx = mp.get_context("fork" if "fork" in methods else "spawn")
            with ctx.Pool(workers) as pool:
                for res in pool.imap_unordered(_work, jobs):
                    for r in res:
                        results[r[0]] = r
                    bar.update(len(res))
    finally:
        bar.close()

    per_split = {s: ([], []) for s in SPLITS}
    ann_id, oco_base = 0, 0
    for i in range(images):
        _, split, rel, insts = results[i]
        image_id = i + 1
        per_split[split][0].append({"id": image_id, "file_name": rel, "height": height, "width": width})
        n_clusters = max([a["oco_id"] for a in insts] + [0])
        for a in insts:
            ann_id += 1
            rec = {"id": ann_id, "image_id": image_id, "category_id": a["category_id"],
                   "a_segm": a["a_segm"], "i_segm": a["i_segm"], "a_bbox": a["a_bbox"], "i_bbox": a["i_bbox"],
                   "a_area": a["a_area"], "i_area": a["i_area"],
                   "oco_id": a["oco_id"] + oco_base if a["oco_id"] else 0, "ico_id": a["ico_id"],
                   "area": a["a_area"], "iscrowd": 0}
            per_split[split][1].append(rec)
        oco_base += n_clusters
    params = {"images": images, "seed": seed, "height": height, "width": width, "splits": list(splits),
              "generator_version": GENERATOR_VERSION}
    paths = {}
    for s in SPLITS:
        ims, anns = per_split[s]
        doc = {"info": {"description": f"Amodal-VAE embedded synthetic street scenes, {s} split, KINS 2020 schema",
                        "version": str(GENERATOR_VERSION), "year": 2020, "contributor": "amodal_lib.data.synth",
                        "seed": seed, "split": s},
               "licenses": [], "images": ims, "categories": CATEGORIES, "annotations": anns}
        _atomic_write_json(out / ANN_FILES[s], doc)
        paths[s] = str(out / ANN_FILES[s])
    sheet, md = _datasheet({s: per_split[s] for s in SPLITS}, params)
    _atomic_write_json(out / "datasheet.json", sheet, compact=False)
    _atomic_write_text(out / "datasheet.md", md)
    _atomic_write_json(out / "params.json", params, compact=False)   # last: marks completeness


def _paths(root: Path) -> dict:
    root = Path(root)
    d = {s: str(root / ANN_FILES[s]) for s in SPLITS}
    d.update(images_dir=str(root / "images"), datasheet=str(root / "datasheet.md"),
             datasheet_json=str(root / "datasheet.json"), params=str(root / "params.json"), root=str(root))
    return d


def _canonical_params(images=2000, seed=0, height=160, width=512, splits=(0.7, 0.1, 0.2), **extra) -> dict:
    p = {"images": int(images), "seed": int(seed), "height": int(height), "width": int(width),
         "splits": [float(s) for s in splits], "generator_version": GENERATOR_VERSION}
    for k in ("workers", "progress"):   # how, not what: no effect on the data
        extra.pop(k, None)
    p.update(extra)
    return p


def cache_dir(root="data", **params) -> Path:
    """``root/synth-<first 12 hex of the sha1 of the sorted parameters' JSON>``.

    The parameters are ``images``, ``seed``, ``height``, ``width``, ``splits`` (defaults
    filled in) and the generator version, so a change of the generator gets a new folder."""
    p = _canonical_params(**params)
    key = hashlib.sha1(json.dumps(p, sort_keys=True).encode()).hexdigest()[:12]
    return Path(root) / f"synth-{key}"


def is_complete(path) -> bool:
    path = Path(path)
    if not (path / "params.json").is_file():
        return False
    return all((path / ANN_FILES[s]).is_file() for s in SPLITS) and (path / "images").is_dir()


def ensure_dataset(root="data", images: int = 2000, seed: int = 0, height: int = 160, width: int = 512,
                   progress: bool = True, workers: Optional[int] = None, splits=(0.7, 0.1, 0.2)) -> dict:
    """The data set for these parameters, generated once and cached under ``cache_dir(...)``.

    A complete cached copy (``params.json`` present: it is written last) is returned as is.
    Otherwise it is generated into a temporary folder beside it and moved into place with
    ``os.replace``, so an interrupted run never leaves a half data set behind."""
    target = cache_dir(root, images=images, seed=seed, height=height, width=width, splits=splits)
    if is_complete(target):
        return _paths(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        generate(tmp, images=images, seed=seed, height=height, width=width, splits=splits, workers=workers,
                 progress=progress)
        if target.exists():
            if is_complete(target):   # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return _paths(target)
            shutil.rmtree(target)     # a leftover without its completeness mark
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _paths(target)
