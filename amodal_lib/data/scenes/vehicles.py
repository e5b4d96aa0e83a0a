"""Vehicles of the synthetic street scenes: car, van, truck, tram and misc (trailers,
caravans), each a parametric 3D part model (:mod:`.shapes`) with real shape variation."""
from __future__ import annotations

import numpy as np

from .shapes import (CAR_COLOURS, TRUCK_COLOURS, Model, Piece, _jitter, _pick, _unit, circle_xy, extrude_x,
                     hub_piece, quad_on_plane, wheel_piece)


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
