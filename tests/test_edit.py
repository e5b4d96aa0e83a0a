"""Scene editing on a tiny hand-made scene: removed pixels replaced, untouched pixels unchanged,
depth order respected; bad input refused; ``amodal edit`` end to end."""
import dataclasses
import json

import numpy as np
import pytest

from amodal_lib.experiments import edit as E
from amodal_lib.data import masks as M
from amodal_lib.data.records import Instance
from amodal_lib.errors import ArgumentError, DataError

H, W = 30, 40
BLUE, RED, GREEN = (0, 0, 255), (255, 0, 0), (0, 255, 0)


def rect(r0, r1, c0, c1):
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


def inst(i, cat, vis, depth=None):
    rle = M.encode(vis.astype(np.uint8))
    return Instance(i, 1, cat, str(cat), H, W, rle, tuple(float(v) for v in M.to_bbox(rle)), int(vis.sum()),
                    depth=depth)


# far (A, class 1), middle (A2, class 2), near (B, class 3, to remove), and C elsewhere
A, A2, B, C = rect(5, 15, 5, 20), rect(8, 18, 15, 30), rect(10, 25, 10, 28), rect(2, 6, 32, 38)
FULL = {1: M.encode(A.astype(np.uint8)), 2: M.encode(A2.astype(np.uint8))}


def scene():
    vis_a2 = A2 & ~B
    vis_a = A & ~B & ~A2
    insts = [inst(1, 1, vis_a), inst(2, 2, vis_a2), inst(3, 3, B), inst(4, 1, C)]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (H, W, 3)).astype(np.uint8)
    return image, insts


def paint_background(image, hole):
    out = image.copy()
    out[hole] = BLUE
    return out


def paint_instance(image, full, hole, category):
    assert (image[hole] == 0).all()             # the instance inpainter reads no pixel of the hole
    out = image.copy()
    out[hole] = RED if category == 1 else GREEN
    return out


def run(**kw):
    image, insts = scene()
    res = E.remove(image, insts, [3], completions=FULL, background=paint_background, instance=paint_instance,
                   dilate_px=1, **kw)
    return image, insts, res


def test_removed_pixels_replaced_untouched_pixels_unchanged():
    image, insts, res = run()
    others = (A & ~B) | (A2 & ~B) | C
    expected_hole = M.dilate(B, 1) & ~others
    assert np.array_equal(res.hole, expected_hole)
    assert np.array_equal(res.image[~res.hole], image[~res.hole])       # nothing outside the hole changes
    assert (res.image[res.hole] != image[res.hole]).any(axis=-1).all()  # every removed pixel is repainted
    bg = res.hole & ~A & ~A2
    assert (res.image[bg] == BLUE).all()
    assert res.removed == [3] and 3 not in res.masks
    assert np.array_equal(M.decode(res.masks[4]).astype(bool), C)       # C keeps its mask


def test_depth_order_nearer_object_takes_the_overlap():
    image, insts, res = run()
    assert res.order == [1, 2]                                           # far to near (A2 reaches lower)
    both = B & A & A2
    assert both.any()
    assert (res.image[both] == GREEN).all()                              # A2 is in front of A
    assert (res.image[B & A & ~A2] == RED).all()
    assert np.array_equal(M.decode(res.masks[2]).astype(bool), A2)       # A2 whole again
    assert np.array_equal(M.decode(res.masks[1]).astype(bool), A & ~A2)  # A: its part not behind A2
    assert not (res.revealed[1] & res.revealed[2]).any()
    # the data's depth order wins over the image rows: A2 declared farther than A
    _, insts = scene()
    insts = [dataclasses.replace(i, depth={1: 2, 2: 3, 3: 1, 4: 1}[i.id]) for i in insts]
    res2 = E.remove(image, insts, [3], completions=FULL, background=paint_background, instance=paint_instance,
                    dilate_px=1)
    assert res2.order == [2, 1] and (res2.image[both] == RED).all()


def test_without_completion_the_background_fills_everything():
    image, insts, res = run(complete=False)
    assert res.completed == {} and (res.image[res.hole] == BLUE).all()
    assert np.array_equal(M.decode(res.masks[2]).astype(bool), A2 & ~B)
    edited = E.edited_annotations(res, insts)
    assert [i.id for i in edited] == [1, 2, 4]


def test_the_background_is_filled_from_the_scene_or_from_the_background_alone():
    image, insts = scene()
    seen = {}

    def record(img, hole):
        seen["hole"] = hole.copy()
        return paint_background(img, hole)
    res = E.remove(image, insts, [3], completions=FULL, background=record, instance=paint_instance, dilate_px=1)
    assert np.array_equal(seen["hole"], res.hole)                        # every pixel around the hole is read
    res2 = E.remove(image, insts, [3], completions=FULL, background=record, instance=paint_instance, dilate_px=1,
                    background_from="background")
    others = (A & ~B) | (A2 & ~B) | C
    assert np.array_equal(seen["hole"], res2.hole | others)             # the instances' pixels are not read
    assert np.array_equal(res2.image[~res2.hole], image[~res2.hole])    # and stay as they were
    assert np.array_equal(res2.image, res.image)


def test_the_removed_objects_shadow_goes_with_it():
    h, w = 60, 60
    image = np.full((h, w, 3), 150, np.uint8)
    car = np.zeros((h, w), bool)
    car[10:31, 15:46] = True
    image[car] = RED
    image[31:34, 13:48] = 35                                             # its shadow on the ground
    person = np.zeros((h, w), bool)
    person[40:58, 2:6] = True
    image[person] = GREEN

    def box(m):
        return M.encode(m.astype(np.uint8))
    insts = [Instance(1, 1, 4, "car", h, w, box(car), tuple(float(v) for v in M.to_bbox(box(car))), int(car.sum())),
             Instance(2, 1, 2, "person", h, w, box(person), tuple(float(v) for v in M.to_bbox(box(person))),
                      int(person.sum()))]
    shadow = E.cast_shadow(image, car, person)
    assert shadow[31:34, 15:46].all() and not shadow[34:].any() and not (shadow & car).any()
    res = E.remove(image, insts, [1], background=paint_background, complete=False, dilate_px=0)
    assert res.hole[31:34, 15:46].all() and (res.image[31:34, 15:46] == BLUE).all()
    plain = E.remove(image, insts, [1], background=paint_background, complete=False, dilate_px=0, shadows=False)
    assert np.array_equal(plain.hole, car)
    light = image.copy()
    light[31:34, 13:48] = 140                                            # barely darker than the ground: no shadow
    assert not E.cast_shadow(light, car, person).any()


def test_the_edit_threshold_is_the_largest_validation_invisible_miou(tmp_path):
    import pandas as pd
    rows = [{"threshold": t, "A_invisible": a, "A_full": f, "set": s} for s, off in (("x", 0.0), ("y", 1.0))
            for t, a, f in ((0.2, 40 + off, 90), (0.4, 45 + off, 91), (0.6, 44 + off, 92))]
    pd.DataFrame(rows).to_csv(tmp_path / "threshold_sweep.csv", index=False)
    t, why = E.edit_threshold(tmp_path / "stage3.pt")
    assert t == 0.4 and "invisible" in why
    assert E.edit_threshold(tmp_path / "elsewhere" / "stage3.pt")[0] == 0.5   # no sweep, no threshold.json


def test_bad_input_is_one_clear_error():
    image, insts = scene()
    kw = dict(completions=FULL, background=paint_background, instance=paint_instance)
    with pytest.raises(ArgumentError, match="no annotation with id 99"):
        E.remove(image, insts, [99], **kw)
    with pytest.raises(ArgumentError, match="nothing to remove"):
        E.remove(image, insts, [], **kw)
    with pytest.raises(DataError, match="30x40"):
        E.remove(image[:20], insts, [3], **kw)
    with pytest.raises(DataError, match="HxWx3"):
        E.remove(image[..., 0], insts, [3], **kw)
    with pytest.raises(ArgumentError, match="Amodal-VAE"):
        E.remove(image, insts, [3], background=paint_background)
    other = dataclasses.replace(insts[3], id=7, image_id=2)
    with pytest.raises(ArgumentError, match="different images"):
        E.remove(image, insts + [other], [3, 7], **kw)


# --------------------------------------------------------------------------- the command line, end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Amodal-VAE and both inpainters, a few steps each on the tiny embedded data set."""
    from _fixtures_vae import TINY, tiny_dataset
    from amodal_lib.data import load_annotations
    from amodal_lib.train import amodal_vae as T
    from amodal_lib.train import inpaint as I
    paths = tiny_dataset()
    root = tmp_path_factory.mktemp("edit-runs")
    T.train_amodal_vae(paths["train"], root / "amodal-vae-tiny", profile="smoke", seed=0, device="cpu",
                       progress=False, val_annotations=paths["val"], **TINY)
    train = load_annotations(paths["train"])
    tiny = dict(width=4, depth=3, batch_size=4, steps=2, eval_every=2, checkpoint_every=2, log_every=1, threads=1)
    I.train_inpainter("background", train, root / "inpaint-background-tiny", profile="smoke", device="cpu",
                      progress=False, crop=32, images=4, crops_per_image=2, val_images=2, **tiny)
    I.train_inpainter("instance", train, root / "inpaint-instance-tiny", profile="smoke", device="cpu",
                      progress=False, crop=16, max_instances=30, val_instances=4, min_area=30, **tiny)
    return root, paths


def _occluder(ann):
    """(image id, the id of an instance in front of another one) in ``ann``."""
    from amodal_lib.experiments.edit import pick_removals
    picks = pick_removals(ann, 1, 0, min_area=20)
    assert picks, "the tiny data set has no occlusion to edit"
    return picks[0]


def test_amodal_edit_on_an_embedded_image_and_on_a_users_coco_file(trained, tmp_path):
    from PIL import Image
    from amodal_lib.cli import main
    from amodal_lib.data import load_annotations
    root, paths = trained
    test = load_annotations(paths["test"])
    image_id, ann_id = _occluder(test.modal_view())
    src = test.image_path(image_id)
    out = tmp_path / "edited.png"
    assert main(["edit", "--image", str(src), "--annotations", paths["test"], "--remove", str(ann_id),
                 "--out", str(out), "--models", str(root), "--masks-out", str(tmp_path / "new.json")]) == 0
    before, after = np.asarray(Image.open(src).convert("RGB")), np.asarray(Image.open(out).convert("RGB"))
    changed = (before != after).any(-1)
    removed = M.decode(test.by_id()[ann_id].visible).astype(bool)
    others = np.zeros_like(removed)
    for i in test.instances:
        if i.image_id == image_id and i.id != ann_id:
            others |= M.decode(i.visible).astype(bool)
    region = M.dilate(removed | E.cast_shadow(before, removed, others), 2)   # the object and its shadow
    assert changed.any() and not (changed & ~region).any()                  # only around the removed object
    new = load_annotations(tmp_path / "new.json")
    assert ann_id not in new.by_id() and new.schema == "coco"
    # a user's own image, renamed, with a COCO file of its instances (visible masks only, no amodal label)
    mine = tmp_path / "my_photo.png"
    Image.fromarray(before).save(mine)
    coco = {"images": [{"id": 5, "file_name": "my_photo.png", "height": before.shape[0], "width": before.shape[1]}],
            "categories": [{"id": k, "name": v} for k, v in test.categories.items()],
            "annotations": [{"id": i.id, "image_id": 5, "category_id": i.category_id, "iscrowd": 0,
                             "segmentation": M.to_json(i.visible), "bbox": list(i.visible_box),
                             "area": i.visible_area} for i in test.instances if i.image_id == image_id]}
    (tmp_path / "mine.json").write_text(json.dumps(coco))
    out2 = tmp_path / "mine_edited.png"
    assert main(["edit", "--image", str(mine), "--annotations", str(tmp_path / "mine.json"), "--remove", str(ann_id),
                 "--out", str(out2), "--vae", str(root / "amodal-vae-tiny"),
                 "--background", str(root / "inpaint-background-tiny"),
                 "--instance", str(root / "inpaint-instance-tiny")]) == 0
    mine_after = np.asarray(Image.open(out2).convert("RGB"))
    changed = (before != mine_after).any(-1)     # no depth order in a COCO file: the ground-plane rule orders
    assert changed.any() and not (changed & ~region).any()


def test_amodal_edit_refuses_bad_input_in_one_line(trained, tmp_path, capsys):
    from amodal_lib.cli import main
    root, paths = trained
    from amodal_lib.data import load_annotations
    test = load_annotations(paths["test"])
    image_id, ann_id = _occluder(test.modal_view())
    src = str(test.image_path(image_id))
    base = ["edit", "--annotations", paths["test"], "--models", str(root), "--out", str(tmp_path / "o.png")]
    other = next(i.id for i in test.instances if i.image_id != image_id)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    small = tmp_path / "small.png"
    from PIL import Image
    Image.new("RGB", (10, 10)).save(small)
    cases = [(["--image", src, "--remove", "999999"], "no annotation with id 999999"),
             (["--image", src, "--remove", str(other)], "belongs to image"),
             (["--image", src, "--remove", "x"], "--remove takes annotation ids"),
             (["--image", str(tmp_path / "none.png"), "--remove", str(ann_id)], "the image: no such file"),
             (["--image", str(broken), "--remove", str(ann_id)], "not a readable image"),
             (["--image", str(small), "--remove", str(ann_id)], "no image named small.png")]
    for args, message in cases:
        assert main(base + args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    # the image does not fit its annotation (a mask of another size)
    one = tmp_path / "one.json"
    data = json.loads(open(paths["test"]).read())
    data["images"] = [dict(im, file_name="small.png") for im in data["images"] if im["id"] == image_id]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] == image_id]
    one.write_text(json.dumps(data))
    assert main(["edit", "--annotations", str(one), "--models", str(root), "--out", str(tmp_path / "o.png"),
                 "--image", str(small), "--remove", str(ann_id)]) == 2
    assert "10x10 pixels" in capsys.readouterr().err
    assert main(base + ["--image", src, "--remove", str(ann_id), "--out", src]) == 2   # never over an input
    assert "never overwrites an input" in capsys.readouterr().err


def test_the_editor_shows_the_scene_and_what_the_latest_removal_completed(monkeypatch):
    from amodal_lib.editor import SceneEditor
    image, insts = scene()
    original = E.remove
    monkeypatch.setattr(E, "remove", lambda *a, **kw: original(*a, completions=FULL, **kw))   # shapes without a VAE
    ed = SceneEditor(image, insts, background=paint_background, instance=paint_instance, selected=3)
    box = ed.widget
    assert {"amodal-editor-scene", "amodal-editor-result"} <= set(ed.w_scene._dom_classes)   # the scene is the result
    assert ed.shapes_panel() is None and ed.w_shapes_box.layout.display == "none"   # nothing completed yet
    res = ed.remove(3)
    assert np.array_equal(ed.image, res.image) and 3 not in [i.id for i in ed.instances]
    shapes = ed.shapes_panel()
    assert shapes.shape == image.shape and ed.w_shapes_box.layout.display is None
    assert not np.allclose(shapes, res.image / 255.0)          # the shapes are drawn over the result
    assert "removed 3" in ed.w_status.value and len(box.children) == 5
    assert ed.undo() and ed.shapes_panel() is None and np.array_equal(ed.image, image)


def test_fig6_rows_are_windows_of_one_aspect_inside_the_image():
    import matplotlib
    matplotlib.use("Agg")
    from amodal_lib.viz.editing import edit_window, plot_scene_edits
    image, insts, res = run()
    y0, y1, x0, x1 = edit_window(res, H, W, 1.2)
    assert 0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W
    assert abs((x1 - x0) / (y1 - y0) - 1.2) < 0.1
    ys, xs = np.nonzero(res.hole)
    assert y0 <= ys.min() and ys.max() < y1 and x0 <= xs.min() and xs.max() < x1   # the edit is inside
    fig = plot_scene_edits([(image, insts, res), (image, insts, res, image)], aspect=1.2, width=8)
    assert len(fig.axes) == 8                                                   # 2 rows of 4 panels
    w, h = fig.get_size_inches()
    assert abs(h - (2 * 2 / 1.2 + 0.3)) < 1e-6                                  # no space beyond the panels'
