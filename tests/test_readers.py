"""Readers: every schema, detected from content; every bad-input case names file, record and field."""
import json

import numpy as np
import pytest
from pycocotools import mask as mu

import _fixtures as fx
from amodal_lib.data import AnnotationError, MissingFileError, load_annotations
from amodal_lib.data import masks as M


def _check_scene(ann, amodal=True):
    assert len(ann) == 12 and len(ann.images) == 4
    byid = ann.by_id()
    car, ped, lone = byid[1], byid[2], byid[3]
    assert car.category == "car" and ped.category == "pedestrian"
    assert car.visible_area < M.area(mu.merge(mu.frPyObjects([fx.scene_objects()[0][1][0][2]], fx.H, fx.W)))
    if amodal:
        assert car.amodal is not None and 0 < car.occlusion_rate < 1
        assert ped.occlusion_rate == 0
        assert car.occluders == (2,) and ped.occluders == ()   # only the front object covers the car
        assert car.amodal_area > car.visible_area
    else:
        assert car.amodal is None and car.occlusion_rate is None
        assert set(car.occluders) == {2} and set(ped.occluders) == {1}  # modal: touching neighbours
    assert lone.occluders == () and lone.is_unoccluded
    assert not car.is_unoccluded


def test_kins2020(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "whatever_name.json"))
    assert ann.schema == "kins2020"
    _check_scene(ann)
    assert ann.by_id()[2].depth == 1


def test_kins2020_without_amodal_fields_reads_as_modal(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json", drop_amodal=True))
    assert not ann.has_amodal
    _check_scene(ann, amodal=False)


def test_kins_old(tmp_path):
    ann = load_annotations(fx.write_kins_old(tmp_path / "instances_train.json"))
    assert ann.schema == "kins"
    _check_scene(ann)


def test_coco_modal_only(tmp_path):
    ann = load_annotations(fx.write_coco(tmp_path / "x.json", polygons=True))
    assert ann.schema == "coco" and not ann.has_amodal
    _check_scene(ann, amodal=False)


def test_cocoa(tmp_path):
    ann = load_annotations(fx.write_cocoa(tmp_path / "COCO_amodal_val2014.json"))
    assert ann.schema == "cocoa" and ann.has_amodal and len(ann) == 12
    occluded = [i for i in ann if i.occlusion_rate > 0]
    assert len(occluded) == 4 and all(i.category == "car" for i in occluded)
    assert all(len(i.occluders) == 1 for i in occluded)


def test_cityscapes(tmp_path):
    ann = load_annotations(fx.write_cityscapes(tmp_path / "gtFine"))
    assert ann.schema == "cityscapes" and len(ann) == 6 and not ann.has_amodal
    cats = sorted({i.category for i in ann})
    assert cats == ["car", "person", "truck"]


def test_modal_view_holds_no_amodal_label(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json")).modal_view()
    assert not ann.has_amodal
    assert all(i.amodal_box is None and i.amodal_area is None and i.occlusion_rate is None for i in ann)


def test_ten_thousand_instances_load(tmp_path):
    """Not a timing assertion: the load must simply finish (benchmarks/ prints the speed)."""
    scenes = fx.scene_objects(1)
    im, objs = scenes[0]
    anns = []
    for k in range(10000):
        aid, cat, poly, vis, depth = objs[k % 3]
        anns.append({"id": k + 1, "image_id": k // 3 + 1, "category_id": cat, "a_segm": [poly],
                     "i_segm": fx._rle(vis), "a_bbox": [1, 1, 2, 2], "i_bbox": [1, 1, 2, 2]})
    imgs = [{"id": i + 1, "file_name": "x.png", "height": fx.H, "width": fx.W} for i in range(10000 // 3 + 1)]
    p = tmp_path / "big.json"
    p.write_text(json.dumps({"images": imgs, "annotations": anns}))
    ann = load_annotations(p)
    assert len(ann) == 10000


# ---------------------------------------------------------------- bad input
def _kins(tmp_path, mutate):
    p = fx.write_kins2020(tmp_path / "bad.json")
    d = json.loads(p.read_text())
    mutate(d)
    p.write_text(json.dumps(d))
    return p


def _expect(p, ann_id, field, text):
    with pytest.raises(AnnotationError) as e:
        load_annotations(p)
    msg = str(e.value)
    assert str(p) in msg and field in msg and text in msg, msg
    if ann_id is not None:
        assert f"annotation {ann_id}" in msg
    lenient = load_annotations(p, strict=False)
    assert lenient.skipped >= 1 and lenient.skipped_reasons


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="no such file"):
        load_annotations(tmp_path / "nope.json")


def test_invalid_json(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"images": [}')
    with pytest.raises(AnnotationError, match=r"broken.json: invalid JSON.*line 1"):
        load_annotations(p)


def test_unknown_image_id(tmp_path):
    _expect(_kins(tmp_path, lambda d: d["annotations"][4].update(image_id=999)), 5, "image_id", "unknown image id 999")


def test_empty_polygon(tmp_path):
    _expect(_kins(tmp_path, lambda d: d["annotations"][0].update(a_segm=[[]])), 1, "a_segm", "coordinates")


def test_out_of_image_polygon(tmp_path):
    far = [500, 500, 520, 500, 520, 520]
    _expect(_kins(tmp_path, lambda d: d["annotations"][1].update(a_segm=[far])), 2, "a_segm", "empty mask")


def test_zero_size_box(tmp_path):
    _expect(_kins(tmp_path, lambda d: d["annotations"][2].update(i_bbox=[3, 3, 0, 5])), 3, "i_bbox", "zero-size box")


def test_truncated_rle(tmp_path):
    def cut(d):
        seg = d["annotations"][0]["i_segm"]
        seg["counts"] = seg["counts"][: len(seg["counts"]) // 2]
    _expect(_kins(tmp_path, cut), 1, "i_segm", "RLE")


def test_rle_of_wrong_size(tmp_path):
    _expect(_kins(tmp_path, lambda d: d["annotations"][0]["i_segm"].update(size=[10, 10])), 1, "i_segm", "differs")


def test_lenient_load_keeps_the_good_records(tmp_path):
    p = _kins(tmp_path, lambda d: d["annotations"][4].update(image_id=999))
    ann = load_annotations(p, strict=False)
    assert len(ann) == 11 and ann.skipped == 1 and "annotation 5" in ann.skipped_reasons[0]


def test_rle_counts_check_matches_pycocotools():
    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        r = mu.encode(np.asfortranarray(m))
        assert M._rle_counts_total(r["counts"]) == h * w
        back = M.segm_to_rle({"size": [int(h), int(w)], "counts": r["counts"].decode()}, h, w)
        assert (M.decode(back) == m).all()
