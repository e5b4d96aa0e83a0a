"""The embedded synthetic data set: KINS 2020 schema, determinism, mask consistency, caching."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as M

from amodal_lib.data import synth

N_IMAGES = 30


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    paths = synth.generate(out, images=N_IMAGES, seed=3, workers=2, progress=False)
    return out, paths


def _load(paths):
    return {s: json.loads(Path(paths[s]).read_text()) for s in ("train", "val", "test")}


def _decode(segm, h, w):
    if isinstance(segm, list):
        return M.decode(M.merge(M.frPyObjects(segm, h, w))).astype(bool)
    return M.decode({"size": segm["size"], "counts": segm["counts"].encode()}).astype(bool)


def test_files_and_schema(dataset):
    out, paths = dataset
    for key in ("train", "val", "test", "images_dir", "datasheet"):
        assert Path(paths[key]).exists(), key
    for name in ("update_train_2020.json", "update_val_2020.json", "update_test_2020.json", "datasheet.md",
                 "datasheet.json", "params.json"):
        assert (out / name).is_file(), name
    docs = _load(paths)
    n_images = sum(len(d["images"]) for d in docs.values())
    assert n_images == N_IMAGES
    ann_ids, img_ids = set(), set()
    for split, d in docs.items():
        assert set(d) >= {"info", "licenses", "images", "categories", "annotations"}
        assert {(c["id"], c["name"]) for c in d["categories"]} == {
            (1, "cyclist"), (2, "pedestrian"), (4, "car"), (5, "tram"), (6, "truck"), (7, "van"), (8, "misc")}
        for im in d["images"]:
            assert isinstance(im["id"], int) and im["id"] not in img_ids
            img_ids.add(im["id"])
            assert im["file_name"].startswith(split + "/")
            assert (Path(paths["images_dir"]) / im["file_name"]).is_file()
            assert (im["height"], im["width"]) == (160, 512)
        for a in d["annotations"]:
            assert a["id"] not in ann_ids
            ann_ids.add(a["id"])
            assert a["image_id"] in {im["id"] for im in d["images"]}
            assert a["category_id"] in (1, 2, 4, 5, 6, 7, 8)
            assert isinstance(a["a_segm"], list) and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                                                         for p in a["a_segm"])
            assert all(isinstance(v, float) for p in a["a_segm"] for v in p)
            assert isinstance(a["i_segm"], dict) and a["i_segm"]["size"] == [160, 512]
            assert isinstance(a["i_segm"]["counts"], str)
            for k in ("a_bbox", "i_bbox"):
                assert len(a[k]) == 4 and all(isinstance(v, float) for v in a[k])
            for k in ("a_area", "i_area", "oco_id", "ico_id", "area", "iscrowd"):
                assert isinstance(a[k], int), k
            assert a["area"] == a["a_area"] and a["iscrowd"] == 0
            assert (a["oco_id"] == 0) == (a["ico_id"] == 0)


def test_datasheet_is_what_the_files_hold(dataset):
    """The generator's datasheet and one computed from the files read back agree (one bin rule)."""
    from amodal_lib.data import datasheet, load_annotations
    out, paths = dataset
    written = json.loads((out / "datasheet.json").read_text())["splits"]
    read = datasheet.from_annotations({s: load_annotations(paths[s]) for s in ("train", "val", "test")})["splits"]
    assert sum(d["instances"] for d in written.values()) > 50
    for s in ("train", "val", "test"):
        for key in ("images", "instances", "per_occlusion_bin", "mean_occlusion_rate", "occluded_fraction"):
            assert read[s][key] == written[s][key], (s, key)
        for cat, n in written[s]["per_category"].items():
            assert read[s]["per_category"].get(cat, 0) == n
            if n:
                assert read[s]["per_category_and_bin"][cat] == written[s]["per_category_and_bin"][cat]
    assert datasheet.occlusion_bin(100, 100) == "0%" and datasheet.occlusion_bin(100, 90) == "0-10%"
    assert datasheet.occlusion_bin(100, 89) == "10-30%" and datasheet.occlusion_bin(100, 5) == ">90%"


def test_masks_consistent(dataset):
    _, paths = dataset
    docs = _load(paths)
    n = 0
    for d in docs.values():
        for a in d["annotations"]:
            am = _decode(a["a_segm"], 160, 512)
            vm = _decode(a["i_segm"], 160, 512)
            assert vm.any(), "empty visible mask"
            assert not (vm & ~am).any(), "visible not inside amodal"
            assert int(am.sum()) == a["a_area"] and int(vm.sum()) == a["i_area"]
            assert a["i_area"] <= a["a_area"]
            assert a["a_area"] >= synth.MIN_AMODAL_AREA and a["i_area"] >= synth.MIN_VISIBLE_AREA
            for k in ("a_bbox", "i_bbox"):
                x, y, w, h = a[k]
                assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 512 + 1e-6 and y + h <= 160 + 1e-6
            n += 1
    assert n >= 4 * N_IMAGES


def test_occlusion_is_amodal_minus_front_instances(dataset):
    _, paths = dataset
    d = _load(paths)["train"]
    by_image = {}
    for a in d["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for anns in list(by_image.values())[:8]:
        am = [_decode(a["a_segm"], 160, 512) for a in anns]
        vm = [_decode(a["i_segm"], 160, 512) for a in anns]
        # every hidden pixel of an instance is covered by another instance's amodal mask
        for k in range(len(anns)):
            others = np.zeros((160, 512), bool)
            for j in range(len(anns)):
                if j != k:
                    others |= am[j]
            assert not ((am[k] & ~vm[k]) & ~others).any()
        # clusters: same oco_id <=> connected through overlaps; ico 1 = nearest
        for a in anns:
            if a["oco_id"]:
                members = [b for b in anns if b["oco_id"] == a["oco_id"]]
                assert len(members) >= 2
                assert sorted(b["ico_id"] for b in members) == list(range(1, len(members) + 1))
                near = next(b for b in members if b["ico_id"] == 1)
                assert near["i_area"] == near["a_area"]   # whatever overlaps it is in its cluster


def test_categories_and_occlusion_spread():
    rng_rates, cats = [], set()
    for i in range(60):
        _, insts = synth.scene(synth.image_rng(11, i), 160, 512)
        assert 1 <= len(insts) <= synth.MAX_INSTANCES
        for a in insts:
            cats.add(a["category_id"])
            rng_rates.append(1.0 - a["i_area"] / a["a_area"])
    r = np.array(rng_rates)
    assert {2, 4, 7}.issubset(cats)
    assert (r == 0).mean() > 0.2, "too few unoccluded instances"
    assert (r > 0.5).sum() >= 10, "too few heavily occluded instances"
    assert (r > 0.0).mean() > 0.2
    assert r.max() > 0.8


def test_scene_masks_and_image():
    rgb, insts = synth.scene(np.random.default_rng(5), 160, 512, return_masks=True)
    assert rgb.shape == (160, 512, 3) and rgb.dtype == np.uint8
    for a in insts:
        assert a["a_mask"].shape == (160, 512)
        assert not (a["i_mask"] & ~a["a_mask"]).any()
        assert int(a["i_mask"].sum()) == a["i_area"]


def test_determinism(tmp_path):
    a = synth.generate(tmp_path / "a", images=8, seed=7, workers=1, progress=False)
    b = synth.generate(tmp_path / "b", images=8, seed=7, workers=2, progress=False)
    c = synth.generate(tmp_path / "c", images=8, seed=8, workers=1, progress=False)
    for s in ("train", "val", "test"):
        assert Path(a[s]).read_bytes() == Path(b[s]).read_bytes()
    ja = _load(a)
    files = [im["file_name"] for d in ja.values() for im in d["images"]]
    for f in files:
        pa = np.asarray(Image.open(Path(a["images_dir"]) / f))
        pb = np.asarray(Image.open(Path(b["images_dir"]) / f))
        assert np.array_equal(pa, pb)
        assert (Path(a["images_dir"]) / f).read_bytes() == (Path(b["images_dir"]) / f).read_bytes()
    assert any(Path(a[s]).read_bytes() != Path(c[s]).read_bytes() for s in ("train", "val", "test"))
    pc = np.asarray(Image.open(Path(c["images_dir"]) / files[0]))
    assert not np.array_equal(np.asarray(Image.open(Path(a["images_dir"]) / files[0])), pc)
    # an image does not depend on how many images are generated
    rgb, _ = synth.scene(synth.image_rng(7, 3), 160, 512)
    f3 = Path(a["images_dir"]) / f"{synth.split_of(3)}/000003.png"
    assert np.array_equal(rgb, np.asarray(Image.open(f3)))


def test_split_assignment():
    names = [synth.split_of(i) for i in range(1000)]
    assert abs(names.count("train") - 700) <= 5
    assert abs(names.count("val") - 100) <= 5
    assert abs(names.count("test") - 200) <= 5
    assert names[:50] == [synth.split_of(i) for i in range(50)]


def test_ensure_dataset_caches(tmp_path, monkeypatch):
    p1 = synth.ensure_dataset(root=tmp_path, images=6, seed=1, progress=False)
    root = Path(p1["train"]).parent
    assert root == synth.cache_dir(tmp_path, images=6, seed=1, height=160, width=512)
    assert json.loads((root / "params.json").read_text())["images"] == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    mtime = (root / "params.json").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("regenerated a cached data set")

    monkeypatch.setattr(synth, "generate", boom)
    p2 = synth.ensure_dataset(root=tmp_path, images=6, seed=1, progress=False)
    assert p2 == p1 and (root / "params.json").stat().st_mtime_ns == mtime
    assert synth.cache_dir(tmp_path, images=6, seed=2) != synth.cache_dir(tmp_path, images=6, seed=1)


def test_ensure_dataset_interrupted_leaves_nothing(tmp_path, monkeypatch):
    real = synth.generate

    def interrupted(out_dir, **k):
        real(out_dir, **{**k, "images": 2})
        (Path(out_dir) / "params.json").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synth.ensure_dataset(root=tmp_path, images=5, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []
