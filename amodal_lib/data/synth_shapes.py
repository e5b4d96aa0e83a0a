"""Parametric 3D object families for the synthetic street scenes (``synth.py``).

Every object is a list of convex :class:`Piece` s in a local metric frame (x to the right,
y up, z forward along the object's heading, ground at y = 0). A piece is a convex point set,
optionally swept by a sphere (per-point radius, for capsules, heads and rounded bodies). The
image of a convex 3D piece under a pinhole camera is the convex hull of its projected points
(dilated by the projected radii), so the silhouette of an object in any pose is exactly the
union of the hulls of its silhouette pieces: true side, rear, front and 3/4 views come out of
one model, not from flat templates. Non-silhouette pieces (windows, lights, plates, hair)
only colour the RGB image.

Families, each with real shape variation:
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

import math
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


def _vehicle_palette(rng, colours=CAR_COLOURS):
    body = _jitter(rng, _pick(rng, colours), 10)
    glass = _jitter(rng, (45, 55, 68), 8)
    return {"body": body, "cabin": body, "glass": glass, "tyre": (22, 22, 24),
            "hub": _jitter(rng, (150, 150, 152), 15), "rear_light": (170, 20, 25),
            "head_light": (235, 235, 215), "plate": (225, 225, 215), "trim": (35, 35, 38),
            "bumper": tuple(int(v * 0.8) for v in body)}


# ----------------------------------------------------------------------------- vehicles


def _vehicle_details(pieces, L, W, y_light, lamp_h, lamp_w, y_plate, front_z=None, rear_z=None):
    rz = -L / 2 - 0.01 if rear_z is None else rear_z
    fz = L / 2 + 0.01 if front_z is None else front_z
    for s in (-1, 1):
        xo = s * (W / 2 - 0.08)
        xi = s * (W / 2 - 0.08 - lamp_w)
        pieces.append(quad_on_plane([(xo, y_light, rz), (xi, y_light, rz), (xi, y_light + lamp_h, rz),
                                     (xo, y_light + lamp_h, rz)], "rear_light", (0, 0, -1), layer=2))
        pieces.append(quad_on_plane([(xo, y_light - 0.05, fz), (xi, y_light - 0.05, fz),
                                     (xi, y_light + lamp_h * 0.8 - 0.05, fz),
                                     (xo, y_light + lamp_h * 0.8 - 0.05, fz)], "head_light", (0, 0, 1), layer=2))
    for z, n in ((rz, -1), (fz, 1)):
        pieces.append(quad_on_plane([(-0.26, y_plate, z), (0.26, y_plate, z), (0.26, y_plate + 0.12, z),
                                     (-0.26, y_plate + 0.12, z)], "plate", (0, 0, n), layer=2))


def _wheels(pieces, W, radius, z_list, width=0.21, inset=0.12, twin=False):
    for z in z_list:
        for s in (-1, 1):
            w = width * (2.0 if twin else 1.0)
            xc = s * (W / 2 - inset - w / 2 + 0.06)
            pieces.append(wheel_piece(xc, z, radius, w, normal_sign=s))
            pieces.append(hub_piece(xc + s * w / 2 + s * 0.005, z, radius * 0.55, normal_sign=s))


def car_model(rng) -> Model:
    kind = _pick(rng, ["sedan", "sedan", "hatch", "hatch", "wagon", "suv"])
    L = {"sedan": rng.uniform(4.3, 4.95), "hatch": rng.uniform(3.6, 4.3), "wagon": rng.uniform(4.4, 4.9),
         "suv": rng.uniform(4.2, 4.9)}[kind]
    W = rng.uniform(1.68, 1.86) if kind != "suv" else rng.uniform(1.8, 1.95)
    H = rng.uniform(1.38, 1.52) if kind != "suv" else rng.uniform(1.6, 1.8)
    rw = rng.uniform(0.29, 0.34) if kind != "suv" else rng.uniform(0.34, 0.39)
    y0 = rw * rng.uniform(0.55, 0.75)               # sill / bumper bottom
    yb = H * rng.uniform(0.6, 0.68)                 # belt line
    nose = rng.uniform(0.22, 0.35)                  # how far the nose drops below the hood
    hood_drop = rng.uniform(0.03, 0.1)
    rr = 0.07
    # lower body, convex (z, y); z = -L/2 is the tail, +L/2 the nose
    prof = [(-L / 2 + 0.12, y0), (-L / 2, y0 + 0.1), (-L / 2 + 0.01, yb - 0.08), (-L / 2 + 0.12, yb),
            (L / 2 - 0.55, yb), (L / 2 - 0.12, yb - hood_drop), (L / 2, yb - nose), (L / 2, y0 + 0.12),
            (L / 2 - 0.15, y0)]
    pieces = [Piece(extrude_x(prof, -W / 2 + rr, W / 2 - rr), "body", r=rr)]
    # cabin / greenhouse
    if kind == "sedan":
        zbr, ztr = -L / 2 + L * rng.uniform(0.17, 0.24), -L / 2 + L * rng.uniform(0.3, 0.36)
    elif kind == "hatch":
        zbr, ztr = -L / 2 + 0.06, -L / 2 + L * rng.uniform(0.1, 0.16)
    else:
        zbr, ztr = -L / 2 + 0.05, -L / 2 + L * rng.uniform(0.05, 0.09)
    zbf = L / 2 - L * rng.uniform(0.27, 0.34)
    ztf = zbf - L * rng.uniform(0.14, 0.2)
    wb, wt = W * 0.46, W * rng.uniform(0.35, 0.4)
    cab = np.array([(-wb, yb - 0.02, zbr), (wb, yb - 0.02, zbr), (-wb, yb - 0.02, zbf), (wb, yb - 0.02, zbf),
                    (-wt, H - 0.03, ztr), (wt, H - 0.03, ztr), (-wt, H - 0.03, ztf), (wt, H - 0.03, ztf)])
    pieces.append(Piece(cab, "cabin", r=0.03))
    # windows: side (two sides), windscreen, rear screen
    def lerp(a, b, t):
        return a + (b - a) * t
    m = 0.05
    for s in (-1, 1):
        pts = []
        for (z, y, w) in ((zbr + 0.12, yb + m, wb), (zbf - 0.1, yb + m, wb), (ztf + 0.02, H - 0.09, wt),
                          (ztr - 0.02, H - 0.09, wt)):
            pts.append((s * (w + 0.035), y, z))
        nrm = (s, 0.3, 0.0)
        pieces.append(quad_on_plane(pts, "glass", nrm))
    for (zb, zt, n_sign) in ((zbf, ztf, 1), (zbr, ztr, -1)):
        t0, t1 = 0.12, 0.9
        pts = [(-wb * 0.9, lerp(yb, H, t0), lerp(zb, zt, t0)), (wb * 0.9, lerp(yb, H, t0), lerp(zb, zt, t0)),
               (wt * 0.9, lerp(yb, H, t1), lerp(zb, zt, t1)), (-wt * 0.9, lerp(yb, H, t1), lerp(zb, zt, t1))]
        dz, dy = zt - zb, H - yb
        nrm = _unit((0.0, abs(dz), n_sign * abs(dy)))
        # a windscreen pointing straight up still faces the camera from above
        pts = [(x, y, z + n_sign * 0.035) for x, y, z in pts]
        pieces.append(quad_on_plane(pts, "glass", nrm))
    wbase = L * rng.uniform(0.57, 0.63)
    off = rng.uniform(-0.08, 0.04) * L
    _wheels(pieces, W, rw, (off - wbase / 2, off + wbase / 2))
    _vehicle_details(pieces, L, W, yb - 0.2, 0.12, 0.32, y0 + 0.15)
    pal = _vehicle_palette(rng)
    return Model("car", pieces, pal, "body", (W / 2, L / 2), extra={"kind": kind, "L": L, "W": W, "H": H})


def van_model(rng) -> Model:
    L, W, H = rng.uniform(4.6, 5.8), rng.uniform(1.88, 2.05), rng.uniform(1.9, 2.5)
    rw = rng.uniform(0.32, 0.37)
    y0 = rw * rng.uniform(0.6, 0.8)
    hood = rng.uniform(0.35, 0.75)          # length of the short hood
    ws = rng.uniform(0.5, 0.8)              # windscreen run
    yh = rng.uniform(1.0, 1.2)              # hood height
    rr = 0.06
    prof = [(-L / 2 + 0.05, y0), (-L / 2, y0 + 0.05), (-L / 2, H - 0.08), (-L / 2 + 0.08, H),
            (L / 2 - hood - ws, H), (L / 2 - hood, yh + 0.05), (L / 2 - 0.08, yh - 0.05),
            (L / 2, yh - 0.35), (L / 2, y0 + 0.1), (L / 2 - 0.12, y0)]
    top = W / 2 - rr - rng.uniform(0.02, 0.1)
    pieces = [Piece(extrude_x(prof, -W / 2 + rr, W / 2 - rr, -top, top, y_split=yh + 0.1), "body", r=rr)]
    # windscreen
    zb, zt = L / 2 - hood, L / 2 - hood - ws
    pts = [(-top + 0.05, yh + 0.12, zb - 0.03), (top - 0.05, yh + 0.12, zb - 0.03),
           (top - 0.05, H - 0.1, zt + 0.05), (-top + 0.05, H - 0.1, zt + 0.05)]
    pts = [(x, y, z + 0.04) for x, y, z in pts]
    pieces.append(quad_on_plane(pts, "glass", _unit((0, ws, H - yh))))
    windows = rng.random() < 0.5
    for s in (-1, 1):
        x = s * (W / 2 + 0.01)
        z1, z0 = L / 2 - hood - 0.1, L / 2 - hood - 0.1 - rng.uniform(0.7, 0.9)
        pieces.append(quad_on_plane([(x, yh + 0.12, z0), (x, yh + 0.12, z1 - 0.05), (x, H - 0.15, zt - 0.05),
                                     (x, H - 0.15, z0)], "glass", (s, 0, 0)))
        if windows:
            zz = z0 - 0.15
            while zz - 0.9 > -L / 2 + 0.3:
                pieces.append(quad_on_plane([(x, yh + 0.12, zz - 0.9), (x, yh + 0.12, zz), (x, H - 0.18, zz),
                                             (x, H - 0.18, zz - 0.9)], "glass", (s, 0, 0)))
                zz -= 1.05
    if rng.random() < 0.7:   # rear door windows
        z = -L / 2 - 0.01
        for a, b in ((-top + 0.08, -0.05), (0.05, top - 0.08)):
            pieces.append(quad_on_plane([(a, yh + 0.15, z), (b, yh + 0.15, z), (b, H - 0.15, z), (a, H - 0.15, z)],
                                        "glass", (0, 0, -1)))
    wbase = L * rng.uniform(0.55, 0.62)
    off = rng.uniform(0.0, 0.06) * L
    _wheels(pieces, W, rw, (off - wbase / 2, off + wbase / 2))
    _vehicle_details(pieces, L, W, y0 + 0.45, 0.2, 0.16, y0 + 0.12)
    pal = _vehicle_palette(rng, CAR_COLOURS + [(240, 240, 240)] * 4)
    return Model("van", pieces, pal, "body", (W / 2, L / 2), extra={"L": L, "W": W, "H": H})


def truck_model(rng) -> Model:
    kind = _pick(rng, ["box", "box", "box", "tanker", "flatbed"])
    W = rng.uniform(2.3, 2.55)
    Lc = rng.uniform(1.7, 2.3)
    Hc = rng.uniform(2.6, 3.2)
    Lb = rng.uniform(4.0, 8.5)
    L = Lc + 0.2 + Lb
    rw = rng.uniform(0.45, 0.53)
    yc0 = rw * 0.9
    zf = L / 2
    zc = zf - Lc
    rr = 0.08
    cab_prof = [(zc, yc0), (zc, Hc), (zf - 0.25, Hc), (zf - 0.05, Hc - 0.35), (zf, Hc * 0.45), (zf, yc0),
                (zf - 0.1, yc0 - 0.2)]
    pieces = [Piece(extrude_x(cab_prof, -W / 2 + rr + 0.03, W / 2 - rr - 0.03), "cab", r=rr)]
    # chassis
    ch = [(-L / 2 + 0.2, rw * 1.1), (-L / 2 + 0.2, rw * 1.1 + 0.35), (zc, rw * 1.1 + 0.35), (zc, rw * 1.1)]
    pieces.append(Piece(extrude_x(ch, -W / 2 + 0.35, W / 2 - 0.35), "trim", r=0.03))
    yb0 = rw * 1.1 + 0.3
    if kind == "box":
        Hb = rng.uniform(3.0, 3.9)
        prof = [(-L / 2, yb0), (-L / 2, Hb), (zc - 0.2, Hb), (zc - 0.2, yb0)]
        pieces.append(Piece(extrude_x(prof, -W / 2 - 0.02, W / 2 + 0.02), "cargo", r=0.02))
    elif kind == "tanker":
        R = rng.uniform(0.9, 1.2)
        c = circle_xy(0, yb0 + R, R, 14)
        pts = np.concatenate([np.column_stack([c[:, 0] * W / 2 / R, c[:, 1], np.full(len(c), z)])
                              for z in (-L / 2 + 0.2, zc - 0.3)])
        pieces.append(Piece(pts, "cargo", r=0.15))
    else:
        Hb = rng.uniform(0.4, 0.7)
        prof = [(-L / 2, yb0), (-L / 2, yb0 + Hb), (zc - 0.2, yb0 + Hb), (zc - 0.2, yb0)]
        pieces.append(Piece(extrude_x(prof, -W / 2, W / 2), "cargo", r=0.02))
        if rng.random() < 0.7:   # a load on the bed
            lh = rng.uniform(0.6, 1.6)
            l0 = rng.uniform(-L / 2 + 0.3, zc - 2.5)
            l1 = rng.uniform(l0 + 1.0, zc - 0.4)
            prof = [(l0, yb0 + Hb), (l0, yb0 + Hb + lh), (l1, yb0 + Hb + lh), (l1, yb0 + Hb)]
            pieces.append(Piece(extrude_x(prof, -W / 2 + 0.2, W / 2 - 0.2), "load", r=0.03))
    # cab glass
    pts = [(-W / 2 + 0.2, Hc * 0.58, zf + 0.02), (W / 2 - 0.2, Hc * 0.58, zf + 0.02),
           (W / 2 - 0.25, Hc - 0.2, zf - 0.12), (-W / 2 + 0.25, Hc - 0.2, zf - 0.12)]
    pieces.append(quad_on_plane(pts, "glass", _unit((0, 0.15, 1))))
    for s in (-1, 1):
        x = s * (W / 2 - 0.02)
        pieces.append(quad_on_plane([(x, Hc * 0.58, zf - 0.9), (x, Hc * 0.58, zf - 0.2), (x, Hc - 0.25, zf - 0.3),
                                     (x, Hc - 0.25, zf - 0.9)], "glass", (s, 0, 0)))
    axles = [zf - 0.9 - rng.uniform(0, 0.4)]
    n_rear = 2 if (Lb > 6.0 and rng.random() < 0.7) else 1
    zr = -L / 2 + rng.uniform(0.9, 1.6)
    axles += [zr + 1.35 * k for k in range(n_rear)]
    _wheels(pieces, W, rw, axles, width=0.3, inset=0.05, twin=False)
    _vehicle_details(pieces, L, W, rw * 1.1 + 0.05, 0.15, 0.2, rw * 1.1, front_z=zf + 0.01)
    pal = _vehicle_palette(rng, TRUCK_COLOURS)
    pal["cab"] = pal["body"]
    cargo = _jitter(rng, _pick(rng, [(235, 235, 235), (200, 200, 200), (120, 120, 125), (180, 40, 40),
                                     (40, 70, 130), (200, 170, 60), pal["body"]]), 8)
    pal["cargo"] = cargo
    pal["load"] = _jitter(rng, (140, 110, 70), 20)
    return Model("truck", pieces, pal, "cargo", (W / 2, L / 2), extra={"kind": kind, "L": L, "W": W})


def tram_model(rng) -> Model:
    L, W, H = rng.uniform(15, 27), rng.uniform(2.4, 2.65), rng.uniform(3.3, 3.6)
    y0 = 0.35
    ch = rng.uniform(0.5, 1.2)
    prof = [(-L / 2 + 0.3, y0), (-L / 2, y0 + 0.6), (-L / 2, H - 0.5), (-L / 2 + ch, H), (L / 2 - ch, H),
            (L / 2, H - 0.5), (L / 2, y0 + 0.6), (L / 2 - 0.3, y0)]
    pieces = [Piece(extrude_x(prof, -W / 2 + 0.1, W / 2 - 0.1, -W / 2 + 0.25, W / 2 - 0.25, H - 0.6), "body", r=0.1)]
    # pantograph: thin rhombus on the roof
    pieces.append(Piece(np.array([(-0.5, H, -1.0), (0.5, H, -1.0), (-0.4, H + 1.0, -0.3), (0.4, H + 1.0, -0.3),
                                  (-0.5, H, 0.4), (0.5, H, 0.4)]), "trim", r=0.03))
    for s in (-1, 1):
        x = s * (W / 2 + 0.01)
        z = -L / 2 + 1.2
        while z + 1.3 < L / 2 - 1.0:
            pieces.append(quad_on_plane([(x, 1.25, z), (x, 1.25, z + 1.3), (x, H - 0.55, z + 1.3), (x, H - 0.55, z)],
                                        "glass", (s, 0, 0)))
            z += 1.6
    for zz, n in ((L / 2 + 0.01, 1), (-L / 2 - 0.01, -1)):
        pieces.append(quad_on_plane([(-W / 2 + 0.3, 1.3, zz), (W / 2 - 0.3, 1.3, zz), (W / 2 - 0.35, H - 0.5, zz),
                                     (-W / 2 + 0.35, H - 0.5, zz)], "glass", (0, 0, n)))
    pal = _vehicle_palette(rng, [(230, 230, 225), (200, 40, 40), (240, 200, 40), (60, 120, 60), (40, 90, 160)])
    return Model("tram", pieces, pal, "body", (W / 2, L / 2), shading=0.25)


def misc_model(rng) -> Model:
    kind = _pick(rng, ["trailer", "caravan"])
    if kind == "trailer":
        L, W, H, y0 = rng.uniform(1.8, 3.0), rng.uniform(1.3, 1.8), rng.uniform(0.5, 1.4), 0.45
    else:
        L, W, H, y0 = rng.uniform(3.5, 5.5), rng.uniform(2.0, 2.4), rng.uniform(2.3, 2.7), 0.35
    rw = 0.3
    prof = [(-L / 2, y0), (-L / 2, y0 + H), (L / 2 - (0.3 if kind == "caravan" else 0), y0 + H),
            (L / 2, y0 + H - 0.3), (L / 2, y0)]
    pieces = [Piece(extrude_x(prof, -W / 2 + 0.05, W / 2 - 0.05), "body", r=0.05)]
    pieces.append(Piece(np.array([(0, y0 + 0.1, L / 2), (0, 0.45, L / 2 + 1.2)]), "trim", r=0.04))
    if kind == "caravan":
        for s in (-1, 1):
            x = s * (W / 2 + 0.01)
            pieces.append(quad_on_plane([(x, y0 + 1.1, -0.8), (x, y0 + 1.1, 0.6), (x, y0 + H - 0.5, 0.6),
                                         (x, y0 + H - 0.5, -0.8)], "glass", (s, 0, 0)))
    _wheels(pieces, W, rw, (0.0,), width=0.18, inset=0.0)
    pal = _vehicle_palette(rng, [(235, 235, 230), (120, 120, 120), (90, 70, 50), (60, 90, 60), (200, 200, 195)])
    return Model("misc", pieces, pal, "body", (W / 2, L / 2 + 0.6), extra={"kind": kind})


# ----------------------------------------------------------------------------- people


def _limb(a, b, ra, rb, role, sil=True):
    return Piece(np.array([a, b], dtype=np.float64), role, r=np.array([ra, rb]), sil=sil)


def _ik2(root, target, l1, l2, bend_dir):
    """Two-link inverse kinematics: the middle joint, bent towards bend_dir."""
    root, target = np.asarray(root, float), np.asarray(target, float)
    d = target - root
    dist = np.linalg.norm(d)
    dist_c = min(max(dist, abs(l1 - l2) + 1e-3), l1 + l2 - 1e-3)
    u = d / (dist + 1e-12)
    a = (l1 ** 2 - l2 ** 2 + dist_c ** 2) / (2 * dist_c)
    hgt = math.sqrt(max(l1 ** 2 - a ** 2, 0.0))
    bd = np.asarray(bend_dir, float)
    bd = bd - u * (bd @ u)
    bd = bd / (np.linalg.norm(bd) + 1e-12)
    return root + u * a + bd * hgt


def _person_palette(rng):
    skin = _jitter(rng, _pick(rng, SKIN), 8)
    top = _jitter(rng, _pick(rng, TOPS), 12)
    return {"skin": skin, "hair": _jitter(rng, _pick(rng, HAIR), 8), "top": top,
            "sleeve": top if rng.random() < 0.75 else skin,
            "bottom": _jitter(rng, _pick(rng, BOTTOMS), 10), "shoe": _jitter(rng, (30, 28, 28), 8),
            "bag": _jitter(rng, _pick(rng, [(30, 30, 30), (90, 60, 35), (140, 30, 30), (40, 60, 100)]), 10),
            "skirt": _jitter(rng, _pick(rng, TOPS + BOTTOMS), 12)}


def _body_parts(pieces, H, hip_y, lean, sh_half, head_r, arm_targets, hip_z=0.0):
    """Torso, head, neck and arms of a person whose pelvis centre is at (0, hip_y, hip_z)."""
    T = 0.3 * H
    up = np.array([0.0, math.cos(lean), math.sin(lean)])
    hip = np.array([0.0, hip_y, hip_z])
    sh = hip + up * T
    depth = 0.05 * H
    torso = []
    for s in (-1, 1):
        for d in (-1, 1):
            torso.append(sh + np.array([s * (sh_half - 0.03 * H), -0.02 * H, d * depth * 0.8]))
            torso.append(hip + up * 0.1 * H + np.array([s * 0.08 * H, 0, d * depth]))
            torso.append(hip + np.array([s * 0.09 * H, 0, d * depth]))
    pieces.append(Piece(np.array(torso), "top", r=0.03 * H))
    neck = sh + up * 0.05 * H
    head_c = sh + up * (0.05 * H + head_r * 1.05) + np.array([0, 0, 0.01 * H])
    pieces.append(_limb(sh, neck, 0.03 * H, 0.028 * H, "skin"))
    pieces.append(Piece(head_c[None], "skin", r=head_r))
    # hair: a cap behind/above the head, in front of it when seen from behind
    hair_c = head_c + np.array([0, 0.012 * H, -0.012 * H])
    pieces.append(Piece(hair_c[None], "hair", r=head_r * 0.97, sil=False, normal=(0, 0.2, -1.0), layer=0))
    shoulders = []
    for s, tgt in zip((-1, 1), arm_targets):
        shj = sh + np.array([s * sh_half, -0.03 * H, 0])
        shoulders.append(shj)
        ua, fa = 0.17 * H, 0.16 * H
        if tgt is None:
            continue
        kind, val = tgt
        if kind == "swing":
            ang, bend = val
            elbow = shj + ua * np.array([s * 0.12, -math.cos(ang), math.sin(ang)])
            fa_dir = np.array([s * 0.08, -math.cos(ang + bend), math.sin(ang + bend)])
            hand = elbow + fa * fa_dir
        else:
            hand = np.asarray(val, float)
            elbow = _ik2(shj, hand, ua, fa, (s * 1.0, -0.6, 0.0))
        pieces.append(_limb(shj, elbow, 0.034 * H, 0.03 * H, "sleeve"))
        pieces.append(_limb(elbow, hand, 0.03 * H, 0.024 * H, "sleeve"))
        pieces.append(Piece(hand[None], "skin", r=0.028 * H))
    return sh, head_c, shoulders


def pedestrian_model(rng) -> Model:
    child = rng.random() < 0.1
    H = rng.uniform(1.05, 1.4) if child else rng.uniform(1.52, 1.95)
    head_r = (0.075 if child else 0.062) * H
    pal = _person_palette(rng)
    walking = rng.random() < 0.8
    A = math.radians(rng.uniform(12, 32)) if walking else math.radians(rng.uniform(0, 5))
    phi = rng.uniform(0, 2 * math.pi)
    K = math.radians(rng.uniform(10, 45)) if walking else 0.0
    pieces: list = []
    hip_y = 0.5 * H
    thigh, shin = 0.245 * H, 0.24 * H
    feet = []
    for s, ph in ((-1, phi), (1, phi + math.pi)):
        hip_ang = A * math.sin(ph)
        knee_flex = K * max(0.0, math.sin(ph + 0.9)) + (math.radians(rng.uniform(0, 8)))
        hipj = np.array([s * 0.06 * H, hip_y, 0.0])
        knee = hipj + thigh * np.array([s * 0.01, -math.cos(hip_ang), math.sin(hip_ang)])
        sa = hip_ang - knee_flex
        ankle = knee + shin * np.array([s * 0.01, -math.cos(sa), math.sin(sa)])
        toe = ankle + np.array([0, -0.02 * H, 0.11 * H])
        pieces.append(_limb(hipj, knee, 0.06 * H, 0.042 * H, "bottom"))
        pieces.append(_limb(knee, ankle, 0.042 * H, 0.03 * H, "bottom"))
        pieces.append(_limb(ankle + np.array([0, 0, -0.02 * H]), toe, 0.03 * H, 0.024 * H, "shoe"))
        feet.append(min(ankle[1] - 0.03 * H, toe[1] - 0.024 * H))
    arm = []
    for s, ph in ((-1, phi + math.pi), (1, phi)):
        arm.append(("swing", (0.8 * A * math.sin(ph) + math.radians(rng.uniform(-3, 6)),
                              math.radians(rng.uniform(5, 35)))))
    holding = rng.random() < 0.15
    if holding:   # a hand bag in one hand
        arm[1] = ("swing", (math.radians(3), math.radians(5)))
    lean = math.radians(rng.uniform(0, 8) if walking else rng.uniform(-2, 3))
    sh_half = (0.12 if rng.random() < 0.6 else 0.105) * H
    sh, head_c, shoulders = _body_parts(pieces, H, hip_y, lean, sh_half, head_r, arm)
    if rng.random() < 0.25:   # skirt or long coat
        hem = rng.uniform(0.28, 0.45) * H
        wide = rng.uniform(0.12, 0.17) * H
        pts = [(s * 0.1 * H, hip_y + 0.08 * H, d * 0.06 * H) for s in (-1, 1) for d in (-1, 1)]
        pts += [(s * wide, hem, d * 0.09 * H) for s in (-1, 1) for d in (-1, 1)]
        pieces.append(Piece(np.array(pts), "skirt", r=0.01 * H))
    if rng.random() < 0.25:   # backpack
        up = np.array([0, math.cos(lean), math.sin(lean)])
        b0 = np.array([0, hip_y, 0]) + up * 0.12 * H
        pts = [b0 + up * t + np.array([s * 0.075 * H, 0, -d]) for t in (0.0, 0.17 * H) for s in (-1, 1)
               for d in (0.06 * H, 0.14 * H)]
        pieces.append(Piece(np.array(pts), "bag", r=0.01 * H))
    if holding:
        hand = shoulders[1] + np.array([0.02 * H, -0.33 * H, 0.0])
        pts = [hand + np.array([dx, dy, dz]) for dx in (-0.02 * H, 0.02 * H) for dy in (-0.02 * H, -0.16 * H)
               for dz in (-0.09 * H, 0.09 * H)]
        pieces.append(Piece(np.array(pts), "bag", r=0.005 * H))
    ground = min(feet)
    for p in pieces:
        p.pts = p.pts - np.array([0, ground, 0])
    return Model("pedestrian", pieces, pal, "top", (0.25, 0.3), shading=0.2, shadow=False,
                 extra={"H": H, "walking": walking})


def cyclist_model(rng) -> Model:
    H = rng.uniform(1.55, 1.95)
    pal = _person_palette(rng)
    pal["frame"] = _jitter(rng, _pick(rng, [(30, 30, 30), (180, 30, 30), (30, 60, 150), (220, 220, 220),
                                            (40, 120, 60), (200, 160, 30)]), 10)
    pal["tyre"] = (25, 25, 27)
    pal["rim"] = (120, 120, 125)
    Rw = rng.uniform(0.32, 0.36)
    wb = rng.uniform(1.0, 1.12)
    zr, zf = -wb / 2, wb / 2
    pieces: list = []
    for z in (zr, zf):
        pieces.append(wheel_piece(0.0, z, Rw, 0.045, role="tyre", n=14))
        c = circle_zy(z, Rw, Rw * 0.82, 12)
        for s in (-1, 1):
            pieces.append(Piece(np.column_stack([np.full(12, s * 0.03), c[:, 1], c[:, 0]]), "rim", sil=False,
                                layer=1, normal=(s, 0, 0), facing_only=True))
    bb = np.array([0, 0.28, -0.04])
    seat_h = 0.42 * H + 0.2
    seat = np.array([0, seat_h, zr + 0.25])
    head = np.array([0, seat_h - 0.02, zf - 0.14])
    bar = head + np.array([0, 0.1, 0.06])
    rh, fh = np.array([0, Rw, zr]), np.array([0, Rw, zf])
    for a, b in ((seat, bb), (seat, head), (head, bb), (bb, rh), (seat + [0, -0.05, 0], rh), (head, fh),
                 (head, bar)):
        pieces.append(_limb(a, b, 0.025, 0.025, "frame"))
    pieces.append(_limb(bar + [-0.27, 0, 0], bar + [0.27, 0, 0], 0.022, 0.022, "trim"))
    pieces.append(_limb(seat + [0, 0.04, -0.09], seat + [0, 0.04, 0.07], 0.035, 0.025, "trim"))
    pal["trim"] = (25, 25, 25)
    # rider
    hip_y = seat_h + 0.06
    lean = math.radians(rng.uniform(18, 45))
    crank = rng.uniform(0, 2 * math.pi)
    thigh, shin = 0.245 * H, 0.25 * H
    hip_z = seat[2]
    for s, ang in ((-1, crank), (1, crank + math.pi)):
        pedal = bb + np.array([s * 0.13, 0.17 * math.sin(ang), 0.17 * math.cos(ang)])
        hipj = np.array([s * 0.08 * H, hip_y, hip_z])
        knee = _ik2(hipj, pedal + [0, 0.03, 0], thigh, shin, (0.0, 0.2, 1.0))
        pieces.append(_limb(hipj, knee, 0.06 * H, 0.042 * H, "bottom"))
        pieces.append(_limb(knee, pedal + [0, 0.03, 0], 0.042 * H, 0.03 * H, "bottom"))
        pieces.append(_limb(pedal + [0, 0.02, -0.05], pedal + [0, 0.0, 0.12], 0.03 * H, 0.024 * H, "shoe"))
    grips = [bar + [-0.22, 0, 0], bar + [0.22, 0, 0]]
    _body_parts(pieces, H, hip_y, lean, 0.115 * H, 0.062 * H, [("hand", grips[0]), ("hand", grips[1])],
                hip_z=hip_z)
    if rng.random() < 0.35:   # helmet
        pal["hair"] = _jitter(rng, _pick(rng, [(230, 230, 230), (30, 30, 30), (200, 40, 40), (40, 90, 180)]), 8)
    return Model("cyclist", pieces, pal, "top", (0.3, wb / 2 + Rw), shading=0.2, shadow=False,
                 extra={"H": H})


BUILDERS = {"car": car_model, "van": van_model, "truck": truck_model, "tram": tram_model, "misc": misc_model,
            "pedestrian": pedestrian_model, "cyclist": cyclist_model}
