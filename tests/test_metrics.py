"""Metrics against hand-computed cases; baselines; the oracle-28 bound."""
import numpy as np
import pytest

import _fixtures as fx
from amodal_lib import metrics
from amodal_lib.predict import rules
from amodal_lib.data import AnnotationSet, Instance, load_annotations
from amodal_lib.data import masks as M


def _inst(iid, vis, amodal, cat="car"):
    rv, ra = M.encode(vis), M.encode(amodal)
    return Instance(id=iid, image_id=1, category_id=1, category=cat, height=10, width=10, visible=rv,
                    visible_box=tuple(M.to_bbox(rv)), visible_area=int(vis.sum()), amodal=ra,
                    amodal_box=tuple(M.to_bbox(ra)), amodal_area=int(amodal.sum()))


def _mask(r0, r1, c0, c1):
    m = np.zeros((10, 10), np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


@pytest.fixture
def hand():
    i1 = _inst(1, _mask(0, 5, 0, 5), _mask(0, 5, 0, 10))
    i2 = _inst(2, _mask(6, 10, 0, 2), _mask(6, 10, 0, 2), cat="pedestrian")
    ann = AnnotationSet("hand", "test", [i1, i2], {1: {"id": 1, "height": 10, "width": 10}}, {1: "car"})
    preds = {1: M.encode(_mask(0, 5, 0, 8)), 2: M.encode(_mask(6, 10, 0, 4))}
    return ann, preds


def test_hand_computed_both_protocols(hand):
    ann, preds = hand
    df = metrics.instance_table(ann, preds)
    assert df.full_inter.tolist() == [40, 8] and df.full_union.tolist() == [50, 16]
    assert df.inv_inter.tolist() == [15, 0] and df.inv_union.tolist() == [25, 8]
    r = metrics.summarize(df)
    o = r["overall"]
    assert o["A"]["full"] == pytest.approx(100 * 48 / 66)
    assert o["A"]["invisible"] == pytest.approx(100 * 15 / 33)
    assert o["B"]["full"] == pytest.approx(65.0)
    assert o["B"]["invisible"] == pytest.approx(60.0)   # only instance 1 has a hidden part
    assert r["per_category"]["pedestrian"]["B"]["full"] == pytest.approx(50.0)
    assert r["per_category"]["pedestrian"]["B"]["invisible"] is None
    assert r["per_bin"]["0.5-0.6"]["n"] == 1 and r["per_bin"]["0.9-1.0"]["n"] == 1


def test_perfect_prediction_scores_100(hand):
    ann, _ = hand
    r = metrics.evaluate(ann, {i.id: i.amodal for i in ann})
    assert r["overall"]["A"]["full"] == 100 and r["overall"]["B"]["invisible"] == 100


def test_missing_predictions_are_an_error_unless_allowed(hand):
    ann, preds = hand
    del preds[2]
    with pytest.raises(ValueError, match="no prediction for 1 of 2"):
        metrics.evaluate(ann, preds)
    r = metrics.evaluate(ann, preds, allow_missing=True)
    assert r["overall"]["n"] == 1 and r["missing"] == 1


def test_unknown_prediction_id_is_an_error(hand):
    ann, preds = hand
    preds[99] = preds[1]
    with pytest.raises(ValueError, match="99"):
        metrics.evaluate(ann, preds)


def test_visible_baseline_has_zero_invisible_iou(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json"))
    r = metrics.evaluate(ann, rules.visible(ann.instances))
    assert r["overall"]["A"]["invisible"] == 0 and r["overall"]["A"]["full"] < 100


def test_convex_hull_contains_visible_and_is_convex(tmp_path):
    from matplotlib.path import Path as PolyPath
    from scipy.spatial import ConvexHull
    vis = np.zeros((30, 30), np.uint8)
    vis[5:25, 5:10] = 1
    vis[20:25, 5:25] = 1   # an L shape: its hull adds the triangle above the foot
    hull = M.decode(rules.convex_hull_rle(M.encode(vis)))
    assert (hull >= vis).all()
    assert hull.sum() > vis.sum() + 100
    assert hull[10, 12] == 1 and hull[6, 22] == 0

    def holes_in_own_hull(m):
        """Pixels whose centres lie inside the convex hull of the mask's pixel centres, but off the mask."""
        ys, xs = np.nonzero(m)
        pts = np.stack([xs, ys], 1).astype(float)
        inside = PolyPath(pts[ConvexHull(pts).vertices]).contains_points(
            np.stack(np.meshgrid(np.arange(30), np.arange(30)), -1).reshape(-1, 2), radius=-1e-6).reshape(30, 30)
        return int((inside & (m == 0)).sum())
    assert holes_in_own_hull(vis) > 50 and holes_in_own_hull(hull) == 0   # convex: nothing left to fill


def test_convex_hull_beats_visible_on_occluded_ellipses(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json"))
    occluded = ann.subset([i for i in ann if i.occlusion_rate])
    assert len(occluded) == 4
    hull = metrics.evaluate(occluded, rules.convex_hull(occluded.instances))["overall"]
    vis = metrics.evaluate(occluded, rules.visible(occluded.instances))["overall"]
    for p in ("A", "B"):
        assert hull[p]["full"] > vis[p]["full"] + 10 and hull[p]["invisible"] > 50 and vis[p]["invisible"] == 0


def test_predictions_file_round_trip(tmp_path, hand):
    ann, preds = hand
    metrics.write_predictions(tmp_path / "p.json", ann, preds)
    back = metrics.load_predictions(tmp_path / "p.json", ann)
    assert set(back) == {1, 2}
    assert (M.decode(back[1]) == M.decode(preds[1])).all()
