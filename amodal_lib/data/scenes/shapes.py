"""Parametric 3D objects of the synthetic street scenes: pieces, primitives and colours.

Every object is a list of convex :class:`Piece` s in a local metric frame (x to the right,
y up, z forward along the object's heading, ground at y = 0). A piece is a convex point set,
optionally swept by a sphere (per-point radius, for capsules, heads and rounded bodies). The
image of a convex 3D piece under a pinhole camera is the convex hull of its projected points
(dilated by the projected radii), so the silhouette of an object in any pose is exactly the
union of the hulls of its silhouette pieces: true side, rear, front and 3/4 views come out of
one model, not from flat templates. Non-silhouette pieces (windows, lights, plates, hair)
only colour the RGB image.

The families (:mod:`.vehicles`, :mod:`.people`), each with real shape variation:
- car: sedan / hatchback / wagon / SUV; length, width, height, belt line, cabin position and
  rake, wheel size and wheelbase vary.
- van: tall body with the cabin over most of the length, short or no hood, optional windows.
- truck: cab + box / tanker / flatbed cargo, two or three axles, larger wheels.
- tram: long box with chamfered ends, window band and pantograph (rare).
- misc: trailers and caravans on two wheels with a draw bar (rare).
- pedestrian: head, torso, two arms and two legs in a walking cycle (hip/knee/shoulder/elbow
  angles), optional skirt/coat, backpack or hand bag; adults and children.
- cyclist: a bicycle (two wheels, frame tubes, handle bar) with a rider leaning forward,
  feet on the pedals (crank angle) and hands on the bar (two-link inverse kinematics).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

# ----------------------------------------------------------------------------- pieces


@dataclass
class Piece:
    pts: np.ndarray                  # (N, 3) local coordinates, metres
    role: str                        # colour key in the object's palette
    r: object = 0.0                  # sweep radius: scalar or (N,) metres
    sil: bool = True                 # part of the amodal silhouette
    layer: int = 0                   # draw order class (details > structure)
    normal: Optional[tuple] = None   # local outward normal; facing test decides the layer
    facing_only: bool = False        # drawn only when the normal faces the camera


@dataclass
class Model:
    category: str
    pieces: list
    palette: dict
    base: str                         # the role whose colour fills the instance
    footprint: tuple                  # (half width, half length) on the ground, metres
    shading: float = 0.3              # strength of the vertical shading
    shadow: bool = True
    extra: dict = field(default_factory=dict)


def _P(pts, role, **kw) -> Piece:
    return Piece(np.asarray(pts, dtype=np.float64).reshape(-1, 3), role, **kw)


def extrude_x(profile_zy, x0, x1, x0_top=None, x1_top=None, y_split=None):
    """Points of a prism: a (z, y) profile swept between x0 and x1. When x0_top / x1_top are
    given, points with y above y_split use the narrower top width (tumblehome)."""
    prof = np.asarray(profile_zy, dtype=np.float64)
    out = []
    for z, y in prof:
        if x0_top is not None and y > y_split:
            a, b = x0_top, x1_top
        else:
            a, b = x0, x1
        out.append((a, y, z))
        out.append((b, y, z))
    return np.array(out)


def circle_zy(cz, cy, r, n=12):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cz + r * np.cos(t), cy + r * np.sin(t)], 1)


def circle_xy(cx, cy, r, n=12):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def wheel_piece(x_center, z, radius, width, role="tyre", normal_sign=0, n=12, layer=0):
    """A wheel (cylinder with its axis along x)."""
    c = circle_zy(z, radius, radius, n)
    pts = np.concatenate([
        np.column_stack([np.full(n, x_center - width / 2), c[:, 1], c[:, 0]]),
        np.column_stack([np.full(n, x_center + width / 2), c[:, 1], c[:, 0]])])
    normal = (float(normal_sign), 0.0, 0.0) if normal_sign else None
    return Piece(pts, role, sil=True, layer=layer, normal=normal)


def hub_piece(x_face, z, radius, role="hub", normal_sign=1):
    c = circle_zy(z, radius * 1.0, radius * 0.5, 8)
    pts = np.column_stack([np.full(len(c), x_face), c[:, 1], c[:, 0]])
    return Piece(pts, role, sil=False, layer=3, normal=(float(normal_sign), 0.0, 0.0), facing_only=True)


def quad_on_plane(corners, role, normal, layer=1, sil=False):
    return Piece(np.asarray(corners, dtype=np.float64), role, sil=sil, layer=layer,
                 normal=tuple(float(v) for v in normal), facing_only=True)


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / (np.linalg.norm(v) + 1e-12)


# ----------------------------------------------------------------------------- colours

CAR_COLOURS = [
    (235, 235, 232), (200, 202, 205), (160, 163, 168), (110, 112, 118), (38, 38, 42),
    (30, 45, 85), (60, 80, 130), (150, 25, 30), (120, 20, 25), (200, 185, 150), (40, 70, 50),
    (90, 60, 40), (220, 220, 220), (175, 175, 180), (25, 25, 28),
]
TRUCK_COLOURS = [(230, 230, 230), (200, 40, 35), (30, 60, 140), (235, 200, 40), (40, 110, 60),
                 (150, 150, 155), (60, 60, 65)]
SKIN = [(241, 200, 170), (224, 172, 140), (198, 140, 105), (160, 110, 80), (110, 75, 55), (80, 55, 40)]
HAIR = [(30, 25, 20), (60, 40, 25), (100, 70, 40), (160, 130, 80), (200, 190, 170), (20, 20, 20)]
TOPS = [(30, 30, 35), (60, 60, 70), (20, 40, 90), (150, 30, 40), (230, 230, 225), (90, 110, 60),
        (200, 150, 40), (110, 60, 110), (70, 90, 120), (180, 90, 60), (40, 40, 40)]
BOTTOMS = [(35, 45, 75), (30, 30, 35), (60, 60, 60), (90, 80, 70), (150, 130, 100), (20, 30, 55)]


def _jitter(rng, c, s=12):
    n = rng.normal(0, s, 3)
    return tuple(int(min(255.0, max(0.0, v + e))) for v, e in zip(c, n))


def _pick(rng, lst):
    return lst[int(rng.integers(len(lst)))]
