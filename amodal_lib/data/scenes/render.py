"""The RGB image of a synthetic street scene: sky, skyline, road, markings, kerbs, buildings
with windows, shadows, then the kept objects far to near composited through their amodal masks
(so that what is drawn agrees with the annotations), and aerial perspective.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .camera import Camera
from .placement import _Placer

IMAGE_NOISE = 0.0     # sensor noise over the whole image (std); > 0 makes the PNGs 7x larger
OBJECT_NOISE = 5.0    # texture noise on the objects (std, grey levels)


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
