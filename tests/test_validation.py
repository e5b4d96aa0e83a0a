"""What a training run is validated on: the file's own labels, or pasted occlusions; the threshold."""
import json

import pandas as pd
import pytest

from _fixtures_vae import tiny_dataset, without_amodal
from amodal_lib import thresholds
from amodal_lib.data import load_annotations
from amodal_lib.train import validation as VAL


def test_labelled_file_is_validated_on_its_labels():
    d = tiny_dataset()
    train, val = VAL.validation_split(d["train"], seed=0)
    assert val.kind == "amodal labels" and list(val.sets) == ["labelled"] and val.sets["labelled"].has_amodal
    held = set(val.held_images)
    assert held and not held & {i.image_id for i in train.instances}  # never trained on
    assert {i.image_id for i in val.sets["labelled"].instances} <= held
    given = VAL.validation_split(d["train"], val_annotations=d["val"])[1]
    assert given.held_images == [] and len(given.sets["labelled"]) <= 1500


def test_modal_file_gets_pasted_occlusions(tmp_path):
    modal = without_amodal(tiny_dataset()["train"], tmp_path / "modal.json")
    train, val = VAL.validation_split(modal, fraction=0.4, seed=0, max_targets=10)
    assert val.kind == "pasted occlusions" and list(val.sets) == ["pasted", "pasted_no_occluders"]
    with_occ, without = val.sets["pasted"], val.sets["pasted_no_occluders"]
    assert 2 <= len(without) <= 10 and len(with_occ) > len(without)  # the targets, then with their occluders
    assert not set(val.held_images) & {i.image_id for i in train.instances}
    paths = val.write(tmp_path / "run")
    back = load_annotations(paths["pasted"])
    assert len(back) == len(with_occ) and back.has_amodal
    meta = json.loads((tmp_path / "run" / "validation.json").read_text())
    assert meta["kind"] == "pasted occlusions" and meta["held_out_images"] == val.held_images


def test_score_is_the_mean_of_full_and_invisible(tmp_path):
    val = VAL.validation_split(tiny_dataset()["train"], seed=0)[1]
    visible = lambda ann: {i.id: i.visible for i in ann.instances}
    s = val.score(visible)
    assert s["labelled_A_inv"] == 0.0 and s["score"] == pytest.approx(s["labelled_A_full"] / 2)
    amodal = lambda ann: {i.id: i.amodal for i in ann.instances}
    assert val.score(amodal)["score"] == pytest.approx(100.0)


def test_threshold_file_round_trip(tmp_path):
    assert thresholds.read_threshold(tmp_path) is None
    thresholds.write_threshold(tmp_path, 0.35, criterion="x")
    assert thresholds.read_threshold(tmp_path) == {"threshold": 0.35, "criterion": "x"}
    (tmp_path / "threshold.json").write_text('{"t": 1}')
    with pytest.raises(ValueError, match="threshold.json: field .threshold.: missing"):
        thresholds.read_threshold(tmp_path)
    (tmp_path / "threshold.json").write_text('{"threshold": 1.5}')
    with pytest.raises(ValueError, match=r"must be a number in \(0, 1\], got .1.5."):
        thresholds.read_threshold(tmp_path)
