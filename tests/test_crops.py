"""Crop-and-resize and paste-back: frames, the round trip, and the oracle-28 bound."""
import numpy as np
import torch

import _fixtures as fx
from amodal_lib import metrics
from amodal_lib.data import load_annotations
from amodal_lib.data import masks as M
from amodal_lib.data.crops import (context_crops, crop_masks, frame_boxes, oracle_masks, paste_masks,
                                   paste_probs)


def test_crop_of_full_box_is_the_mask_resized(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json"))
    lone = [i for i in ann if i.is_unoccluded][0]          # a 20x20 square (polygon corners 170..190)
    c = crop_masks([lone], "visible", "visible", size=28)
    assert c.shape == (1, 28, 28)
    assert c.min() >= 0 and c.max() <= 1 and c.mean() > 0.95


def test_crop_frames_differ_for_occluded(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json"))
    car = next(i for i in ann if i.amodal_box[2] > i.visible_box[2] + 2)   # hidden at one end
    in_vis = crop_masks([car], "visible", "visible")
    in_amodal = crop_masks([car], "visible", "amodal")
    assert in_vis.mean() > in_amodal.mean()               # the visible part fills its own box more
    assert torch.equal(frame_boxes([car], "amodal")[0, 2:] - frame_boxes([car], "amodal")[0, :2],
                       torch.tensor(car.amodal_box[2:], dtype=torch.float32))


def test_paste_is_the_inverse_of_crop():
    m = np.zeros((50, 80), np.uint8)
    m[10:30, 20:60] = 1
    box = torch.tensor([20.0, 10.0, 60.0, 30.0])
    crop = torch.ones(28, 28)
    full = paste_probs(crop, box, 50, 80)
    assert ((full >= 0.5) == m.astype(bool)).all()


def test_oracle_28_round_trip_above_0_9(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json", n_images=6))
    preds = dict(zip([i.id for i in ann], oracle_masks(ann.instances)))
    r = metrics.evaluate(ann, preds)
    assert r["overall"]["B"]["full"] > 90


def test_windowed_batched_crops_equal_roi_align_over_the_whole_image(tmp_path):
    from torchvision.ops import roi_align
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json"))
    insts = ann.instances
    boxes = frame_boxes(insts, "visible")
    boxes[0] += torch.tensor([-30.0, -30.0, 30.0, 30.0])  # a frame that runs off the image
    batch = crop_masks(insts, "amodal", boxes)
    ref = torch.cat([roi_align(torch.from_numpy(M.decode(i.amodal)).float()[None, None],
                               torch.cat([torch.zeros(1, 1), boxes[k:k + 1]], 1), (28, 28), 1.0, 2, aligned=True)[:, 0]
                     for k, i in enumerate(insts)])
    assert torch.allclose(batch, ref, atol=1e-4)


def test_batched_paste_equals_one_by_one(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json"))
    insts = ann.instances
    probs = torch.rand(len(insts), 28, 28)
    boxes = frame_boxes(insts, "amodal") + torch.tensor([-5.0, -5.0, 8.0, 3.0])
    rles = paste_masks(probs, boxes, insts, threshold=0.5, chunk=5)
    for k, inst in enumerate(insts):
        ref = paste_probs(probs[k], boxes[k], inst.height, inst.width) >= 0.5
        assert (M.decode(rles[k]).astype(bool) == ref).all()


def test_paste_masks_threshold(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json"))
    insts = ann.instances[:3]
    probs = torch.full((3, 28, 28), 0.3)
    boxes = frame_boxes(insts, "visible")
    assert all(M.area(r) > 0 for r in paste_masks(probs, boxes, insts, threshold=0.2))
    assert all(M.area(r) == 0 for r in paste_masks(probs, boxes, insts, threshold=0.5))


def test_context_crops_channels(tmp_path):
    ann = load_annotations(fx.write_kins2020(tmp_path / "k.json"))
    car = ann.by_id()[1]
    c, boxes = context_crops(ann, [car], scale=3.0, size=64)
    assert c.shape == (1, 3, 64, 64)
    own, others, inside = c[0]
    assert own.sum() > 0 and others.sum() > 0           # the pedestrian in front is in view
    assert inside.min() < 0.5                              # the 3x frame reaches beyond the image top
    w = boxes[0, 2] - boxes[0, 0]
    assert torch.isclose(w, torch.tensor(3.0 * car.visible_box[2]))
