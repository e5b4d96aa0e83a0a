"""Where objects go in a synthetic street scene: the road layout (lanes, parking strips,
sidewalks, buildings, sometimes a crossing street) and the populations placed in it (parked
rows, lane traffic, crossing traffic and pedestrians, sidewalk groups, cyclists), without two
footprints overlapping on the ground.
"""
from __future__ import annotations

import math

import numpy as np

from .camera import Camera, Placed, _rects_overlap
from .people import cyclist_model, pedestrian_model
from .vehicles import car_model, misc_model, tram_model, truck_model, van_model

BUILDERS = {"car": car_model, "van": van_model, "truck": truck_model, "tram": tram_model, "misc": misc_model,
            "pedestrian": pedestrian_model, "cyclist": cyclist_model}


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
