"""Camera geometry of the synthetic street scenes: a pinhole camera, 2D convex shapes
(hulls, discs, capsules, clipping), and a 3D part model placed on the ground and projected.

World frame: X to the right, Y up, Z forward (away from the camera), ground at Y = 0, the
camera at height ``hc`` looking along Z. The image of a convex 3D piece is the convex hull of
its projected points (dilated by the projected sweep radii), so an object's silhouette in any
pose is the union of the hulls of its silhouette pieces.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy.spatial import ConvexHull

from .shapes import Model

FACING_THR = 0.15   # a piece faces the camera when cos(normal, to camera) exceeds this


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
