"""Real data sets' layouts on disk: which file is which split, and validation never on test."""
import pytest

import _fixtures as fx
from amodal_lib import nb
from amodal_lib.data import layouts, load_annotations
from amodal_lib.data.records import hold_out_images


def _kins_2020(root, val=False, n_images=10):
    (root / "training" / "image_2").mkdir(parents=True)
    (root / "testing" / "image_2").mkdir(parents=True)
    fx.write_kins2020(root / "update_train_2020.json", n_images=n_images, seed=1)
    fx.write_kins2020(root / "update_test_2020.json", n_images=4, seed=2)
    if val:
        fx.write_kins2020(root / "update_val_2020.json", n_images=3, seed=3)
    return root


def _images(ann):
    return {i.image_id for i in ann.instances}


def test_kins_without_a_val_file_carves_validation_out_of_train(tmp_path):
    root = _kins_2020(tmp_path)
    p = layouts.find_splits(root, "kins")
    assert p["train"] == str(root / "update_train_2020.json") and p["test"] == str(root / "update_test_2020.json")
    assert p["val"] is None and p["val_from_train"] == layouts.VAL_FRACTION
    assert p["images_dir"] == {"train": str(root / "training/image_2"), "test": str(root / "testing/image_2"),
                               "val": str(root / "training/image_2")}
    train, val, test = (layouts.load_split(p, s) for s in ("train", "val", "test"))
    assert test.path == p["test"] and len(test) == len(load_annotations(p["test"]))
    assert val.path == train.path == p["train"]                      # both from the training file ...
    assert _images(val) and _images(train) and not _images(val) & _images(train)   # ... whole images, disjoint
    assert len(_images(val)) == 1 and len(_images(val) | _images(train)) == 10      # 10% of 10 images
    assert train.images_dir == str(root / "training/image_2") and test.images_dir == str(root / "testing/image_2")
    again = layouts.load_split(p, "val")
    assert [i.id for i in again] == [i.id for i in val]             # seeded: the same images every time


def test_a_val_file_of_its_own_is_used(tmp_path):
    root = _kins_2020(tmp_path, val=True)
    p = layouts.find_splits(root, "kins")
    assert p["val"] == str(root / "update_val_2020.json") and "val_from_train" not in p
    assert len(_images(layouts.load_split(p, "train"))) == 10


def test_old_kins_val_file_is_the_test_file_so_val_is_carved(tmp_path):
    (tmp_path / "annotations").mkdir()
    fx.write_kins_old(tmp_path / "annotations" / "instances_train.json", n_images=10)
    fx.write_kins_old(tmp_path / "annotations" / "instances_val.json", n_images=3)
    p = layouts.find_splits(tmp_path, "kins")
    assert p["test"] == str(tmp_path / "annotations" / "instances_val.json")
    assert p["val"] is None and p["val_from_train"]


def test_cocoa(tmp_path):
    fx.write_cocoa(tmp_path / "COCO_amodal_train2014.json", n_images=10)
    fx.write_cocoa(tmp_path / "COCO_amodal_val2014.json", n_images=3)
    p = layouts.find_splits(tmp_path, "cocoa")
    assert p["test"] == str(tmp_path / "COCO_amodal_val2014.json") and p["val"] is None
    fx.write_cocoa(tmp_path / "COCO_amodal_test2014.json", n_images=3)
    p = layouts.find_splits(tmp_path, "cocoa")
    assert p["test"] == str(tmp_path / "COCO_amodal_test2014.json")
    assert p["val"] == str(tmp_path / "COCO_amodal_val2014.json") and "val_from_train" not in p


@pytest.mark.parametrize("given", ["parent", "gtFine"])
def test_cityscapes_folders(tmp_path, given):
    fx.write_cityscapes(tmp_path / "gtFine" / "train" / "aachen", n_images=10)
    fx.write_cityscapes(tmp_path / "gtFine" / "val" / "lindau", n_images=2)
    p = layouts.find_splits(tmp_path if given == "parent" else tmp_path / "gtFine", "cityscapes")
    assert p["train"] == str(tmp_path / "gtFine" / "train") and p["test"] == str(tmp_path / "gtFine" / "val")
    assert p["val_from_train"]
    train, val = layouts.load_split(p, "train"), layouts.load_split(p, "val")
    assert train.schema == "cityscapes" and not _images(train) & _images(val)
    assert len(layouts.data_hash(p)) == 12


def test_missing_and_unknown_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="update_train_2020.json"):
        layouts.find_splits(tmp_path, "kins")
    with pytest.raises(ValueError, match="unknown dataset"):
        layouts.find_splits(tmp_path, "kitti")


def test_data_hash_names_the_files_and_the_carving(tmp_path):
    root = _kins_2020(tmp_path)
    p = layouts.find_splits(root, "kins")
    h = layouts.data_hash(p)
    assert h == layouts.data_hash(dict(p)) and len(h) == 12
    assert layouts.data_hash({**p, "val_from_train": None}) != h
    fx.write_kins2020(root / "update_test_2020.json", n_images=5, seed=2)
    assert layouts.data_hash(p) != h


def test_hold_out_images_is_whole_images_and_seeded(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json", n_images=10))
    rest, held = hold_out_images(ann, 0.3, seed=0)
    assert len(_images(held)) == 3 and _images(rest) | _images(held) == _images(ann)
    assert len(rest) + len(held) == len(ann)
    assert [i.id for i in hold_out_images(ann, 0.3, seed=0)[1]] == [i.id for i in held]
    assert [i.id for i in hold_out_images(ann, 0.3, seed=1)[1]] != [i.id for i in held]
    with pytest.raises(ValueError):
        hold_out_images(ann, 1.0)


def test_notebook_context_never_validates_on_test(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "RESULTS", tmp_path / "results")
    root = _kins_2020(tmp_path / "kins")
    ctx = nb.setup("99_test", profile="smoke", data_root=str(root), dataset="kins")
    train, val, test = ctx.annotations("train"), ctx.annotations("val"), ctx.annotations("test")
    assert val.path == str(root / "update_train_2020.json") != test.path
    assert not _images(val) & _images(train)
    assert ctx.data()["hash"] == layouts.data_hash(layouts.find_splits(root, "kins"))
