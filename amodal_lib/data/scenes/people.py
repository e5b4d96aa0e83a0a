"""People of the synthetic street scenes: pedestrians (walking cycle, clothes, bags; adults
and children) and cyclists (a bicycle with a rider on the pedals and the bar), as parametric 3D
part models (:mod:`.shapes`)."""
from __future__ import annotations

import math

import numpy as np

from .shapes import BOTTOMS, HAIR, SKIN, TOPS, Model, Piece, _jitter, _pick, circle_zy, wheel_piece


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
