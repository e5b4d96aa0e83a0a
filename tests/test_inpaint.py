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


def test_instance_inputs_carry_the_label_in_the_hole_and_the_object_mask():
    img = torch.rand(2, 3, 8, 8)
    hole = torch.zeros(2, 1, 8, 8)
    hole[:, :, 2:4, 2:4] = 1
    x, mask = I.instance_inputs(img, hole, torch.tensor([0.25, 1.0]))
    assert x.shape == (2, 5, 8, 8) and mask.shape == (2, 5, 8, 8) and I.instance_channels() == 5
    assert float(x[0, 3, 2, 2]) == 0.25 and float(x[1, 3, 3, 3]) == 1.0 and float(x[0, 3, 0, 0]) == 0.0
    assert float(x[:, :3, 2:4, 2:4].abs().sum()) == 0.0                 # the colour is blanked in the hole
    assert bool((mask[:, 3:] == 1).all()) and bool((mask[:, :3, 2:4, 2:4] == 0).all())
    # the occluder's other pixels unknown too, the object's mask and a guide known everywhere
    occ = torch.zeros(2, 1, 8, 8)
    occ[:, :, 1:5, 1:5] = 1
    obj = torch.zeros(2, 1, 8, 8)
    obj[:, :, 2:7, 2:7] = 1
    guide = torch.rand(2, 3, 8, 8)
    x, mask = I.instance_inputs(img, hole, torch.tensor([0.25, 1.0]), occ, obj, [guide])
    assert x.shape == (2, 8, 8, 8) and I.instance_channels(["ns"]) == 8
    assert torch.equal(mask[:, :3], (1 - occ).expand(-1, 3, -1, -1)) and bool((mask[:, 3:] == 1).all())
    assert float(x[:, :3, 1:5, 1:5].abs().sum()) == 0.0 and torch.equal(x[:, 5:], guide)
    assert torch.equal(x[:, 4:5], obj) and float(x[0, 3].sum()) == 0.25 * 4   # the label only in the hole


def test_instance_holes_with_their_occluder():
    S = 32
    targets = torch.zeros(8, S, S)
    targets[:, 8:24, 8:24] = 1
    g = torch.Generator().manual_seed(0)
    hole, occ = I.instance_holes(targets, square_pool(4, S, 12), (0.1, 0.7), generator=g, with_occluder=True)
    assert occ.shape == hole.shape == (8, 1, S, S)
    assert torch.equal(hole, occ * targets[:, None])                      # the hole is the object under it
    assert bool(((occ * (1 - targets[:, None])).flatten(1).sum(1) > 0).any())   # and it reaches beyond the object


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
    # Navier-Stokes from the object's pixels alone: the black background never reaches the hole
    ns = I.base_fill("ns", img, known, obj)
    assert bool((ns[..., 2:6, 5:7] > 0.9).all())


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
        assert (again.fill, again.guides) == (("telea", ("smooth", "telea")) if kind == "background"
                                              else ("smooth", ("ns", "smooth")))
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
    # no pixel of the unknown region is read: changing them changes nothing
    unknown = np.zeros_like(hole)
    unknown[35:75, 95:160] = True
    other = img.copy()
    other[unknown] = 255 - other[unknown]
    a = inpaint_instances(runs["instance"][1], img, [full], [hole & unknown], [1], unknown=unknown)[0]
    b = inpaint_instances(runs["instance"][1], other, [full], [hole & unknown], [1], unknown=unknown)[0]
    assert np.array_equal(a[hole & unknown], b[hole & unknown])


def test_object_fill_reads_the_object_only():
    from amodal_lib.predict.inpaint import object_fill
    img = np.zeros((20, 30, 3), np.uint8)
    obj = np.zeros((20, 30), bool)
    obj[5:15, 5:25] = True
    img[obj] = (200, 100, 50)
    known = obj.copy()
    known[8:12, 10:20] = False                                   # the object's hole
    for method in ("ns", "telea", "smooth"):
        out = object_fill(img, known, [0, 0, 30, 20], method)
        assert np.abs(out[8:12, 10:20].astype(int) - [200, 100, 50]).max() <= 2, method
        assert np.array_equal(out[known], img[known])
    assert np.array_equal(object_fill(img, np.zeros_like(obj), [0, 0, 30, 20]), img)   # nothing known: unchanged


def test_the_removal_benchmark_fills_a_repeated_hole_once(tiny_runs):
    from amodal_lib.data.images import read_image
    from amodal_lib.experiments.inpaint_quality import _last_fill
    from amodal_lib.predict.inpaint import inpaint_background
    runs, train, _ = tiny_runs
    net = runs["background"][1]
    calls = []
    handle = net.register_forward_hook(lambda *a: calls.append(1))
    try:
        img = read_image(train, next(iter(train.images)))
        hole = np.zeros(img.shape[:2], bool)
        hole[40:60, 100:130] = True
        fill = _last_fill(net)
        a, b = fill(img, hole), fill(img.copy(), hole.copy())
        assert len(calls) == 1 and np.array_equal(a, b) and np.array_equal(a, inpaint_background(net, img, hole))
        hole[40, 99] = True
        fill(img, hole)
        assert len(calls) == 3                                     # another hole is filled anew
    finally:
        handle.remove()


def test_a_plain_instance_net_paints_its_own_output_into_the_hole():
    """The paper profile's instance inpainter: Liu et al.'s plain net (no base fill, no guides)."""
    from amodal_lib.models.inpaint import PConvUNet
    from amodal_lib.predict.inpaint import inpaint_instances
    net = PConvUNet(I.instance_channels(), 3, 4, 3, mask_channels=I.instance_channels()).eval()
    net.crop, net.max_category = 16, 4
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3)).astype(np.uint8)
    full = np.zeros((40, 60), bool)
    full[10:30, 15:45] = True
    hole = np.zeros_like(full)
    hole[15:25, 30:45] = True
    (out,) = inpaint_instances(net, img, [full], [hole], [2])
    assert np.array_equal(out[~hole], img[~hole]) and not np.array_equal(out[hole], img[hole])


def test_instance_holes_repeat_with_their_generator_whatever_the_global_rng():
    """Where no placement fits, the half erased is drawn from the generator given (the notebook's
    benchmark and the validation holes repeat whatever ran before them in the process)."""
    from amodal_lib.train.inpaint import instance_holes
    targets = torch.zeros(16, 32, 32)
    targets[:, 8:24, 8:24] = 1.0
    pool = torch.zeros(4, 32, 32)    # empty occluders: no placement ever fits, every hole is a half
    out = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        out.append(instance_holes(targets, pool, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(out[0], out[1]) and out[0].sum() > 0
