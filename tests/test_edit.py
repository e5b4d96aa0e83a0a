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
    assert (image[hole] == BLUE).all()          # the instance inpainter sees the background-filled image
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
    expected_hole = E.dilate(B, 1) & ~others
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
    assert changed.any() and not (changed & ~E.dilate(removed, 2)).any()   # only around the removed object
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
    assert changed.any() and not (changed & ~E.dilate(removed, 2)).any()


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
