"""Validation without amodal labels: held-out images, real masks pasted in front of isolated instances."""
import json

import numpy as np
import pytest

from _fixtures import write_coco
from _fixtures_vae import tiny_dataset
from amodal_lib.data import holdout as H
from amodal_lib.data import load_annotations
from amodal_lib.data import masks as M


@pytest.fixture(scope="module")
def modal():
    """A modal-only view of the synthetic train split (as a plain COCO file would be read)."""
    return load_annotations(tiny_dataset()["train"]).modal_view()


def test_group_of_uses_the_sequence_folder():
    assert H.group_of("0019/000123.png", 5) == "0019"
    assert H.group_of("a/b/000123.png", 5) == "a/b"
    assert H.group_of("000123.png", 5) == "image:5"
    assert H.group_of(None, 7) == "image:7"


def test_holdout_keeps_whole_sequences_apart(modal):
    # pretend the images form videos of three frames each
    for i in modal.instances:
        i.file_name = f"{i.image_id // 3:04d}/{i.image_id:06d}.png"
    tr, held = H.holdout_split(modal, 0.3, seed=1)
    seq = lambda a: {i.file_name.split("/")[0] for i in a.instances}
    assert seq(tr) and seq(held) and not seq(tr) & seq(held)
    assert len(tr) + len(held) == len(modal)
    assert 0.1 < len(held) / len(modal) < 0.5
    again = H.holdout_split(modal, 0.3, seed=1)[1]
    assert [i.id for i in again.instances] == [i.id for i in held.instances]  # seeded


def test_holdout_refuses_a_single_image(tmp_path):
    one = load_annotations(write_coco(tmp_path / "c.json", n_images=1))
    with pytest.raises(ValueError, match="one image only"):
        H.holdout_split(one, 0.2)


def test_pasted_occlusions_are_consistent(modal):
    val = H.pasted_occlusions(modal, seed=0, unoccluded=0.2)
    assert val.has_amodal
    targets = {i.id for i in H.isolated(modal)}
    by_img = val.by_image()
    n_occluded = 0
    for image_id, insts in by_img.items():
        t = insts[0]
        assert t.id in targets and len(insts) in (1, 2)  # the target, and its occluder when it has one
        vis, amo = M.decode(t.visible).astype(bool), M.decode(t.amodal).astype(bool)
        original = M.decode(next(i for i in modal.instances if i.id == t.id).visible).astype(bool)
        assert np.array_equal(amo, original)  # the answer is the untouched visible mask
        assert not (vis & ~amo).any()  # visible inside amodal
        if len(insts) == 2:
            occ = M.decode(insts[1].visible).astype(bool)
            assert np.array_equal(vis, amo & ~occ)  # what the occluder leaves, exactly
            assert 0 < t.occlusion_rate <= 0.9 and t.occluders == (insts[1].id,)
            assert insts[1].occlusion_rate == 0.0
            n_occluded += 1
        else:
            assert t.occlusion_rate == 0.0
    assert 0.5 < n_occluded / len(by_img) < 1.0
    rates = [i.occlusion_rate for i in val.instances if i.occlusion_rate > 0]
    assert 0.15 < np.mean(rates) < 0.5


def test_with_and_without_occluders_hide_the_same(modal):
    a = H.pasted_occlusions(modal, seed=3)
    b = H.pasted_occlusions(modal, seed=3, with_occluders=False)
    ta = {i.id: i for i in a.instances}
    assert len(b) < len(a) and all(i.id in ta for i in b.instances)
    for i in b.instances:
        assert i.visible["counts"] == ta[i.id].visible["counts"] and i.occluders == ()
    c = H.without_occluders(a, modal)  # the same, derived without pasting again
    assert [i.id for i in c.instances] == [i.id for i in b.instances] and c.images.keys() == b.images.keys()
    assert all(x.visible["counts"] == y.visible["counts"] and x.occluders == () for x, y in zip(b.instances, c.instances))


def test_written_file_reads_back(modal, tmp_path):
    val = H.pasted_occlusions(modal, seed=0)
    path = H.write_kins2020(val, tmp_path / "val.json")
    back = load_annotations(path)
    assert back.schema == "kins2020" and len(back) == len(val)
    for a, b in zip(val.instances, back.instances):
        assert a.id == b.id and a.visible_area == b.visible_area and a.amodal_area == b.amodal_area
        assert a.occluders == b.occluders
    assert json.loads(path.read_text())["images"][0]["height"] == val.instances[0].height
