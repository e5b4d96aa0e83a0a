"""The inpainters' hole simulators, inputs, training on the engine, and filling images."""
import numpy as np
import pytest
import torch

from amodal_lib.train import inpaint as I, timing


def square_pool(n=4, size=32, side=8):
    pool = torch.zeros(n, size, size, dtype=torch.uint8)
    a = (size - side) // 2
    pool[:, a:a + side, a:a + side] = 1
    return pool


def test_dilation_by_hand():
    m = torch.zeros(3, 1, 9, 9)
    m[:, 0, 4, 4] = 1
    out = I._dilate(m, torch.tensor([0, 1, 2]))
    assert [int(out[k].sum()) for k in range(3)] == [1, 9, 25]      # 1, 3x3, 5x5 squares
    assert torch.equal(out[2, 0, 2:7, 2:7], torch.ones(5, 5))


def test_background_holes_are_placed_masks_dilated():
    pool = square_pool()
    g = torch.Generator().manual_seed(0)
    plain = I.background_holes(pool, 16, 1, (1.0, 1.0), (0, 0), generator=g)
    assert plain.shape == (16, 1, 32, 32) and set(plain.unique().tolist()) <= {0.0, 1.0}
    assert bool((plain.flatten(1).sum(1) > 0).all())                  # never empty
    areas = plain.flatten(1).sum(1)
    assert bool((areas <= 64).all())                                   # one 8x8 square at scale 1, maybe cut
    g = torch.Generator().manual_seed(0)
    grown = I.background_holes(pool, 16, 1, (1.0, 1.0), (3, 3), generator=g)
    assert bool((grown >= plain).all())                                # the same placements, dilated
    rows, cols = plain[:, 0].amax(2), plain[:, 0].amax(1)             # squares 3 px or more from the edges
    far = (rows[:, :3].sum(1) == 0) & (rows[:, -3:].sum(1) == 0) & (cols[:, :3].sum(1) == 0) & (cols[:, -3:].sum(1) == 0)
    inner = (areas == 64) & far
    assert bool(inner.any())
    assert bool((grown.flatten(1).sum(1)[inner] == 14 * 14).all())     # 8 + 2 * 3 pixels a side
    assert bool((grown.flatten(1).sum(1) <= 14 * 14).all())
    g = torch.Generator().manual_seed(1)
    several = I.background_holes(pool, 64, 3, (0.7, 1.4), (1, 2), generator=g)
    assert float(several.flatten(1).sum(1).mean()) > float(grown.flatten(1).sum(1).mean()) * 0.5


def test_instance_holes_lie_inside_the_object_and_cover_what_was_asked():
    S = 32
    targets = torch.zeros(8, S, S)
    targets[:, 8:24, 8:24] = 1
    pool = square_pool(4, S, 12)
    g = torch.Generator().manual_seed(0)
    hole = I.instance_holes(targets, pool, (0.1, 0.7), (0.7, 1.4), 0.6, 16, generator=g)
    assert hole.shape == (8, 1, S, S)
    assert bool((hole[:, 0] <= targets).all())                         # only the object's pixels
    frac = hole.flatten(1).sum(1) / targets.flatten(1).sum(1)
    assert bool(((frac >= 0.1) & (frac < 0.7)).all())
    # an object no placement can cover as asked loses the part of it in the left or right half of the crop
    tiny = torch.zeros(1, S, S)
    tiny[0, 16, S // 2 - 1] = 1
    tiny[0, 16, S // 2] = 1
    h = I.instance_holes(tiny, pool, (0.1, 0.2), generator=torch.Generator().manual_seed(0))
    assert int(h.sum()) == 1


def test_instance_inputs_carry_the_label_in_the_hole():
    img = torch.rand(2, 3, 8, 8)
    hole = torch.zeros(2, 1, 8, 8)
    hole[:, :, 2:4, 2:4] = 1
    x, mask = I.instance_inputs(img, hole, torch.tensor([0.25, 1.0]))
    assert x.shape == (2, 4, 8, 8) and mask.shape == (2, 4, 8, 8)
    assert float(x[0, 3, 2, 2]) == 0.25 and float(x[1, 3, 3, 3]) == 1.0 and float(x[0, 3, 0, 0]) == 0.0
    assert float(x[:, :3, 2:4, 2:4].abs().sum()) == 0.0                 # the colour is blanked in the hole
    assert bool((mask[:, 3] == 1).all()) and bool((mask[:, :3, 2:4, 2:4] == 0).all())


def test_base_fill_of_the_instance_reads_the_object_only():
    img = torch.zeros(1, 3, 8, 8)
    img[..., :, 4:] = 1.0                     # the object (right half) is white, the background black
    known = torch.ones(1, 1, 8, 8)
    known[..., 2:6, 5:7] = 0                  # a hole inside the object
    obj = torch.zeros(1, 1, 8, 8)
    obj[..., :, 4:] = 1
    obj = obj * known
    f = I.base_fill("smooth", img, known, obj)
    assert torch.allclose(f[..., 2:6, 5:7], torch.ones(1, 3, 4, 2), atol=1e-5)
    assert I.base_fill("none", img, known) is None
    t = I.base_fill("telea", img, known)
    assert torch.equal(t * known, img * known)


def test_background_inputs_append_the_guides_known_everywhere():
    img = torch.rand(2, 3, 8, 8)
    known = torch.ones(2, 1, 8, 8)
    known[..., 2:5, 3:6] = 0
    x, mask, base = I.background_inputs(img, known)
    assert torch.equal(x, img * known) and torch.equal(mask, known) and base is None
    x, mask, base = I.background_inputs(img, known, "telea", ("smooth", "telea"))
    assert x.shape == (2, 9, 8, 8) and mask.shape == (2, 9, 8, 8)
    assert torch.equal(x[:, 3:6], I.base_fill("smooth", img, known)) and torch.equal(x[:, 6:], base)
    assert torch.equal(base, I.base_fill("telea", img, known))
    assert bool((mask[:, 3:] == 1).all()) and torch.equal(mask[:, :3], known.expand(-1, 3, -1, -1))
    from amodal_lib.models.inpaint import PConvUNet
    net = PConvUNet(9, 3, 4, 2, mask_channels=9, fill="telea", guides=("smooth", "telea")).eval()
    assert torch.allclose(net(x, mask, base), base)           # a fresh net gives its base fill
    with pytest.raises(ValueError, match="guides"):
        PConvUNet(6, 3, 4, 2, guides=("vgg",))


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Both inpainters trained for a few steps on the tiny embedded data set."""
    from _fixtures_vae import tiny_dataset
    from amodal_lib.data import load_annotations
    paths = tiny_dataset()
    train, val = load_annotations(paths["train"]), load_annotations(paths["val"])
    root = tmp_path_factory.mktemp("inpaint")
    tiny = dict(width=4, depth=3, batch_size=4, steps=4, eval_every=2, checkpoint_every=2, log_every=1, threads=1)
    runs = {}
    for kind, extra in (("background", dict(crop=32, images=6, crops_per_image=2, val_images=4, dilate=[1, 2],
                                            fill="telea", guides=["smooth", "telea"])),
                        ("instance", dict(crop=16, max_instances=40, val_instances=8, min_area=30, fill="smooth"))):
        model, history = I.train_inpainter(kind, train, root / kind, profile="smoke", device="cpu", progress=False,
                                           val_annotations=val, **tiny, **extra)
        runs[kind] = (root / kind, model, history)
    return runs, train, val


def test_training_selects_a_checkpoint_and_reloads(tiny_runs):
    runs, train, _ = tiny_runs
    for kind, (run, model, history) in runs.items():
        assert I.is_trained(run, kind)
        sel = [h for h in history if h["split"] == "selected"]
        assert len(sel) == 1 and sel[0]["step"] in (0, 2, 4)   # the fill it starts from is a candidate
        again = I.load_model(run, kind)
        assert again.spec() == model.spec() and again.crop == model.crop
        assert (again.fill, again.guides) == (("telea", ("smooth", "telea")) if kind == "background" else ("smooth", ()))
        for a, b in zip(again.state_dict().values(), model.state_dict().values()):
            assert torch.equal(a.cpu(), b.cpu())
        t = timing.read(run, f"inpaint-{kind}")
        assert t["steps"] == 4 and t["cpu_s"] >= 0 and len(t["sessions"]) == 1
    from amodal_lib.errors import CheckpointError
    with pytest.raises(CheckpointError, match="not an inpaint-instance"):
        I.load_model(runs["background"][0] / "inpaint-background.pt", "instance")


def test_an_unfinished_run_resumes_to_the_same_weights(tiny_runs, tmp_path):
    runs, train, val = tiny_runs
    kw = dict(profile="smoke", device="cpu", progress=False, val_annotations=val, fill="smooth", width=4, depth=3,
              batch_size=4, steps=4, eval_every=2, checkpoint_every=2, log_every=1, threads=1, crop=16,
              max_instances=40, val_instances=8, min_area=30)
    I.train_inpainter("instance", train, tmp_path, stop_after=2, **kw)
    resumed, _ = I.train_inpainter("instance", train, tmp_path, **kw)
    _, whole, _ = runs["instance"]
    for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()):
        assert torch.allclose(a.cpu().float(), b.cpu().float())


def test_filling_changes_only_the_hole(tiny_runs):
    from amodal_lib.data.images import read_image
    from amodal_lib.predict.inpaint import classical, inpaint_background, inpaint_instances
    runs, train, _ = tiny_runs
    img = read_image(train, next(iter(train.images)))
    hole = np.zeros(img.shape[:2], bool)
    hole[40:60, 100:130] = True
    for out in (inpaint_background(runs["background"][1], img, hole), classical(img, hole, "telea"),
                classical(img, hole, "ns")):
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.array_equal(out[~hole], img[~hole])
    full = np.zeros_like(hole)
    full[30:70, 90:140] = True
    (filled,) = inpaint_instances(runs["instance"][1], img, [full], [hole], [1])
    assert np.array_equal(filled[~hole], img[~hole]) and not np.array_equal(filled[hole], img[hole])
