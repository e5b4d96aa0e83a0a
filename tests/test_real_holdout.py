"""Held-out real occlusions (experiments/real_holdout.py, benchmarks/real_holdout.py): the split, the
sets' names, what each set feeds the methods, and the script's refusals."""
import subprocess
import sys
from pathlib import Path

import pytest

from _fixtures_vae import tiny_dataset
from amodal_lib.data import load_annotations
from amodal_lib.data.holdout import group_of
from amodal_lib.experiments import real_holdout as RH

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def modal():
    """The synthetic train split, modal only, its images made videos of five frames (SEQ/FRAME.png)."""
    ann = load_annotations(tiny_dataset()["train"]).modal_view()
    for i in ann.instances:
        i.file_name = f"{i.image_id // 5:04d}/{i.image_id:06d}.png"
    return ann


def test_set_names_parse_and_bad_ones_are_refused():
    assert RH.parse_set("clean") == ("clean", 0.0)
    assert RH.parse_set("no-occluders") == ("no-occluders", 0.0)
    assert RH.parse_set("boundary-noise:0.75") == ("boundary-noise", 0.75)
    assert RH.parse_set("segmenter-noise:2") == ("segmenter-noise", 2.0)
    assert RH.parse_set("wide-boundary-noise:1.75") == ("wide-boundary-noise", 1.75)
    for bad, says in [("blur:1", "unknown set"), ("erosion", "needs a strength"), ("erosion:x", "number of pixels"),
                      ("dilation:0", "above 0"), ("clean:1", "unknown set")]:
        with pytest.raises(ValueError, match=says):
            RH.parse_set(bad)


def test_named_groups_are_held_out_whole(modal):
    hold = RH.split(modal, ["0001", "0003"], seed=0)
    assert hold.groups == ("0001", "0003")
    held = {group_of(i.file_name, i.image_id) for i in hold.held.instances}
    train = {group_of(i.file_name, i.image_id) for i in hold.train.instances}
    assert held == {"0001", "0003"} and not held & train
    assert len(hold.train) + len(hold.held) == len(modal)
    assert hold.pasted.has_amodal and {i.id for i in hold.no_occluders.instances} <= {i.id for i in hold.pasted.instances}
    assert all(i.occluders == () for i in hold.no_occluders.instances)
    with pytest.raises(ValueError, match="0042"):
        RH.split(modal, ["0001", "0042"])


def test_each_set_feeds_what_it_says(modal):
    hold = RH.split(modal, ["0001", "0003"], seed=0)
    sets = ["clean", "no-occluders", "boundary-noise:0.75", "boundary-noise:2", "erosion:1"]
    df = RH.evaluate(hold, [("convex hull", "convex-hull", None, {})], sets)
    assert list(df.columns) == RH.COLUMNS and len(df) == 2 * len(sets)
    inp = df[df.method == RH.INPUT].set_index("set")
    assert inp.loc["clean", "visible_iou_mean"] == pytest.approx(100) and inp.loc["clean", "A_invisible"] == 0
    assert inp.loc["no-occluders", "n"] < inp.loc["clean", "n"]
    # a stronger error leaves worse visible masks, and the input's score follows them
    assert 100 > inp.loc["boundary-noise:0.75", "visible_iou_mean"] > inp.loc["boundary-noise:2", "visible_iou_mean"]
    assert inp.loc["clean", "A_full"] > inp.loc["boundary-noise:0.75", "A_full"] > inp.loc["boundary-noise:2", "A_full"]
    hull = df[df.method == "convex hull"].set_index("set")
    assert (hull.visible_iou_mean == inp.visible_iou_mean).all()   # both read the same masks
    assert hull.loc["clean", "A_invisible"] > 0
    again = RH.evaluate(hold, [], ["boundary-noise:0.75"])   # seeded: the same masks again
    assert again.A_full.iloc[0] == inp.loc["boundary-noise:0.75", "A_full"]
    # as robustness curves: the clean set is strength 0 of each kind, the no-occluders set has no place
    rob = RH.as_robustness(df)
    assert sorted(set(rob.kind)) == ["boundary-noise", "erosion"] and len(rob) == 2 * (3 + 2)
    hull = rob[(rob.kind == "boundary-noise") & (rob.method == "convex hull")]
    assert hull.strength.tolist() == [0.0, 0.75, 2.0]
    assert hull.input_visible_iou.tolist() == df[df.method == "convex hull"].set_index("set").loc[
        ["clean", "boundary-noise:0.75", "boundary-noise:2"], "visible_iou_mean"].tolist()


@pytest.mark.parametrize("args, says", [(["--sets", "clean,blur:1"], "unknown set"),
                                        (["--holdout", "0042"], "0042")])
def test_the_script_refuses_before_any_training(modal, tmp_path, args, says):
    src = tiny_dataset()["train"]
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "real_holdout.py"), "--annotations", str(src),
                        "--out", str(tmp_path / "out"), *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and says in r.stderr and not (tmp_path / "out").exists()
