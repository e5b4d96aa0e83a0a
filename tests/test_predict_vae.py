"""Amodal-VAE inference: the frame fitted to the known pixels, completions kept where they may hide, and the
depth order of touching instances (the one whose completion claims more of the other's mask is behind)."""
import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from _fixtures import write_kins2020
from amodal_lib.data import load_annotations
from amodal_lib.data import masks as M
from amodal_lib.data.records import with_visible
from amodal_lib.models import amodal_vae as V
from amodal_lib.predict import amodal_vae as PV
from amodal_lib.predict import frame_fit as FF
from amodal_lib.predict import surroundings as SU

L = FF.CONTEXT_HI


def _coord(n):
    """Relative coordinate (unit = the visible box) of the pixel centres of an n-pixel context row."""
    return (torch.arange(n) + 0.5) / n * FF.CONTEXT_SCALE - (FF.CONTEXT_SCALE - 1) / 2


def _context(neighbour_x=(1.0, 2.0), inside=True):
    """One context crop: the visible mask fills the visible box [0, 1]^2; another instance covers
    x in ``neighbour_x`` over the box's rows; the rest is background inside the image."""
    c = _coord(L)
    in_box = (c >= 0) & (c < 1)
    ctx = torch.zeros(1, 3, L, L)
    ctx[0, 0] = (in_box[:, None] & in_box[None, :]).float()
    if neighbour_x is not None:
        nb = (c >= neighbour_x[0]) & (c < neighbour_x[1])
        ctx[0, 1] = (in_box[:, None] & nb[None, :]).float()
    ctx[0, 2] = 1.0 if inside else 0.0
    return ctx


class FillFrame(nn.Module):
    """A stand-in Amodal-VAE whose completion fills whatever frame it is decoded in."""

    def encode_partial(self, x, flag):
        return torch.zeros(len(x), 2), torch.zeros(len(x), 2)

    def decoder(self, mu):
        return torch.full((len(mu), V.S, V.S), 8.0)


def test_facing_sides():
    lo = torch.nn.functional.adaptive_avg_pool2d(_context(), FF.CONTEXT_LO)
    assert FF.facing_sides(lo).tolist() == [[False, False, True, False]]  # only the right side
    lo = torch.nn.functional.adaptive_avg_pool2d(_context(None), FF.CONTEXT_LO)
    assert not FF.facing_sides(lo).any()
    lo = torch.nn.functional.adaptive_avg_pool2d(_context(None, inside=False), FF.CONTEXT_LO)
    assert FF.facing_sides(lo).all()  # the image border on every side


class LeftHalf(FillFrame):
    """A stand-in whose completion fills the left half of its frame (a shape prior that says the
    object is twice as wide as a left-half view of it)."""

    def decoder(self, mu):
        out = torch.full((len(mu), V.S, V.S), -8.0)
        out[:, :, : V.S // 2] = 8.0
        return out


def test_fit_never_reaches_into_known_background():
    """A shape that fills its frame, cut by a neighbour on the right: the frame may reach under
    the neighbour (nothing is known there) but never past it (known background)."""
    start = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    sides = torch.tensor([[False, False, True, False]])
    for far in (2.0, 1.5, 1.1):
        box, probs, mu, std = FF.fit_frames(FillFrame(), _context((1.0, far)), start, sides)
        assert 1.0 <= box[0, 2].item() <= far + 0.03, far
        assert box[0, [0, 1, 3]].tolist() == [0.0, 0.0, 1.0]  # sides facing nothing stay put
        assert probs.shape == (1, V.S, V.S) and mu.shape == std.shape == (1, 2)
    # a side that may not move does not move, whatever the score
    box, *_ = FF.fit_frames(FillFrame(), _context((1.0, 2.0)), start, torch.zeros(1, 4, dtype=torch.bool))
    assert box.tolist() == start.tolist()


def test_fit_moves_a_side_to_where_the_prior_explains_the_visible_pixels():
    """With a prior whose objects fill the left half of their frame, only a frame twice the visible
    box's width covers the visible pixels without reaching into background."""
    box, *_ = FF.fit_frames(LeftHalf(), _context((1.0, 1.1)), torch.tensor([[0.0, 0.0, 1.0, 1.0]]),
                            torch.tensor([[False, False, True, False]]))
    assert box[0].tolist() == pytest.approx([0.0, 0.0, 2.0, 1.0], abs=1e-6)


def test_a_gap_between_two_masks_is_not_known_background():
    """A segmenter's masks seldom meet where one object hides another: the pixels between them,
    within GAP_PX of both, may belong to either (gap_band); background stays background."""
    own = np.zeros((20, 30), np.uint8)
    own[5:15, 2:12] = 1
    other = np.zeros_like(own)
    other[5:15, 14:25] = 1                                    # a gap of 2 px: columns 12 and 13
    band = FF.gap_band(own, other, 2)
    assert band.dtype == np.uint8 and band[5:15, 12:14].all()
    assert not band[:, :12].any() and not band[:, 14:].any()  # never a pixel of either mask, nor beyond
    assert not FF.gap_band(own, other, 1).any()               # a gap wider than that stays background
    met = np.zeros_like(own)
    met[5:15, 12:25] = 1                                      # masks that meet, as annotations do
    assert not FF.gap_band(own, met, 2)[5:15].any()           # only the seam's ends are touched
    far = np.zeros_like(own)
    far[5:15, 17:25] = 1
    assert not FF.gap_band(own, far, 2).any()                 # 5 px apart: background between
    assert not FF.gap_band(own, np.zeros_like(own), 2).any()


def test_the_gap_band_is_the_one_of_whole_window_dilations():
    """gap_band dilates only around the instance's own mask: the same band as dilating the whole window,
    masks at the window's edges included."""
    rng = np.random.default_rng(0)
    for k in range(60):
        h, w = rng.integers(8, 40, 2)
        own, others = np.zeros((h, w), np.uint8), (rng.random((h, w)) < rng.uniform(0.02, 0.3)).astype(np.uint8)
        r, c = rng.integers(0, h), rng.integers(0, w)
        own[r:r + rng.integers(1, 12), c:c + rng.integers(1, 12)] = 1
        others[own > 0] = rng.integers(0, 2)                   # overlapping or not
        for px in (1, 2, 3):
            near = M.dilate(own, px) & M.dilate(others, px)
            assert (FF.gap_band(own, others, px) == (near & (own == 0) & (others == 0))).all(), (k, px)


def test_the_fitted_frames_context_counts_a_gap_as_what_may_hide(scene, monkeypatch):
    """The pedestrian's mask eroded by 2 px, as a segmenter's that does not meet the car's: the
    car's context holds the gap among the pixels that may hide it."""
    car = next(i for i in scene.instances if i.category == "car")
    ped = next(i for i in scene.instances if i.image_id == car.image_id and i.category == "pedestrian")
    eroded = ndimage.binary_erosion(M.decode(ped.visible).astype(bool), iterations=2).astype(np.uint8)
    seg = with_visible(scene, {**{i.id: i.visible for i in scene.instances}, ped.id: M.encode(eroded)}).modal_view()
    mine = [seg.by_id()[car.id]]
    with_gap = FF.context(seg, mine).lo[0, 1].sum()
    monkeypatch.setattr(FF, "GAP_PX", 0)
    assert with_gap > FF.context(seg, mine).lo[0, 1].sum() + 1   # the gap's pixels, pooled


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The test scenes: a car partly hidden by a pedestrian (touching), and a lone van."""
    return load_annotations(write_kins2020(tmp_path_factory.mktemp("k") / "k.json", n_images=3))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = V.AmodalVAE(width=8, latent_dim=16, hidden=32, geometry=V.GEOMETRY_FEATURES).eval()
    with torch.no_grad():  # a transformer that predicts a box twice the visible one: completions reach out
        m.transformer.head.bias.copy_(torch.tensor([0.7, 0.7, 0.0, 0.0]))
        m.decoder.out.bias.fill_(5.0)
    return m


def test_fit_keeps_completions_where_they_may_hide(scene, model):
    det = PV.complete_instances(model, scene.instances, frame="fit", return_details=True)
    tr = PV.complete_instances(model, scene.instances, frame="transformer", return_details=True)
    by_img = scene.by_image()
    for k, inst in enumerate(scene.instances):
        mask = M.decode(det.masks[inst.id]).astype(bool)
        vis = M.decode(inst.visible).astype(bool)
        assert (mask >= vis).all()  # visible pixels are kept
        if det.fitted[k]:
            union = np.any([M.decode(o.visible).astype(bool) for o in by_img[inst.image_id]], axis=0)
            assert not (mask & ~union).any()  # nothing on known background
            assert det.allowed[k] is not None
        else:  # the lone van: unclipped, in the transformer's frame drawn halfway to the visible box
            assert inst.category == "van" and det.allowed[k] is None
            vb = torch.tensor(inst.visible_box)
            want = torch.cat([vb[:2], vb[:2] + vb[2:]])
            want = PV.ISOLATED_FRAME * tr.boxes[k] + (1 - PV.ISOLATED_FRAME) * want
            assert torch.allclose(det.boxes[k], want, atol=1e-4)
            assert (mask & ~vis).any()  # this transformer reaches out of the visible box
    assert det.fitted.sum() == 2 * len(by_img)  # the car and the pedestrian touch


def test_fit_reads_no_amodal_label(scene, model, tmp_path):
    modal = scene.modal_view()
    a = PV.complete_instances(model, scene.instances, frame="fit")
    b = PV.complete_instances(model, modal.instances, frame="fit")
    assert all(a[i]["counts"] == b[i]["counts"] for i in a)


def test_samples_repeat_with_a_generator(scene, model):
    runs = [PV.complete_instances(model, scene.instances, samples=3, return_details=True,
                                  generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert runs[0].sample_probs.shape == (len(scene), 3, V.S, V.S)
    assert torch.equal(runs[0].sample_probs, runs[1].sample_probs)
    assert set(runs[0].sample_mean_masks()) == {i.id for i in scene.instances}


def test_frames_are_checked(scene, model):
    with pytest.raises(ValueError, match="frame must be one of fit, transformer"):
        PV.complete_instances(model, scene.instances, frame="oracle")


@pytest.mark.parametrize("frame", PV.FRAMES)
def test_complete_instances_returns_rles_and_samples(frame):
    from _fixtures_vae import tiny_dataset
    from amodal_lib.data import load_annotations
    from amodal_lib.data import masks as M
    ann = load_annotations(tiny_dataset()["test"])
    model = V.AmodalVAE(width=8, latent_dim=16, hidden=32).eval()
    insts = ann.instances[:9]
    preds = PV.complete_instances(model, insts, threshold=0.5, batch_size=4, frame=frame)
    assert set(preds) == {i.id for i in insts}
    for i in insts:
        assert list(preds[i.id]["size"]) == [i.height, i.width]
        # the visible mask is part of every completion (union_visible)
        assert M.area(M.merge([preds[i.id], i.visible], intersect=True)) == i.visible_area
    det = PV.complete_instances(model, insts, box="amodal-gt", samples=3, return_details=True, batch_size=4)
    assert det.sample_probs.shape == (9, 3, 28, 28) and len(det.all_sample_masks()) == 3
    assert set(det.sample_masks(0)) == set(preds)


def _mirror(inst):
    """The instance mirrored left-right in its image (visible and amodal masks and boxes)."""
    import dataclasses
    def flip(rle):
        return M.encode(np.ascontiguousarray(M.decode(rle)[:, ::-1]))
    def box(b):
        x, y, w, h = b
        return (inst.width - x - w, y, w, h)
    return dataclasses.replace(inst, visible=flip(inst.visible), visible_box=box(inst.visible_box),
                               amodal=flip(inst.amodal), amodal_box=box(inst.amodal_box))


@pytest.mark.parametrize("mirror", [True, False])
def test_the_completion_of_a_mirrored_instance_is_the_mirror_image(scene, mirror):
    # with the mirror average (a run's choice: model.mirror) the completion in a frame is the mean of the
    # crop's and its mirror image's (PV.mirrored), so a mirrored object is completed as the mirror image;
    # the networks alone have no such symmetry
    torch.manual_seed(1)
    model = V.AmodalVAE(width=8, latent_dim=16, hidden=32, geometry=V.GEOMETRY_FEATURES).eval()
    model.mirror = mirror
    with torch.no_grad():   # an untrained net's output is nearly flat: make it depend on its input
        model.decoder.out.weight.mul_(100.0)
    insts = scene.instances
    a = PV.complete_instances(model, insts, box="amodal-gt", return_details=True)
    b = PV.complete_instances(model, [_mirror(i) for i in insts], box="amodal-gt", return_details=True)
    gap = (b.probs - a.probs.flip(-1)).abs().max().item()
    assert (gap < 1e-4) if mirror else (gap > 1e-2)


# --------------------------------------------------------------------------- depth order
def _rle(rows, cols, shape=(20, 30)):
    m = np.zeros(shape, np.uint8)
    m[rows, cols] = 1
    return M.encode(m)


def test_claims_count_the_other_masks_pixels_less_ones_own():
    a, b = _rle(slice(5, 15), slice(0, 10)), _rle(slice(5, 15), slice(10, 20))
    grown_a = _rle(slice(5, 15), slice(0, 14))        # 4 columns into b
    c = SU.claims([grown_a, b], [a, b])
    assert c.tolist() == [[0, 40], [0, 0]]
    overlapping = _rle(slice(5, 15), slice(8, 20))    # b's mask overlaps a's by 2 columns
    c = SU.claims([grown_a, overlapping], [a, overlapping])
    assert c[0, 1] == 40 and c[1, 0] == 0             # a's own pixels are not a claim on b
    assert SU.claims([a], [a]).shape == (1, 1)


class _Inst:
    def __init__(self, id, image_id, visible):
        self.id, self.image_id, self.visible = id, image_id, visible


def test_the_larger_claimant_is_behind_past_the_margin():
    a, b = _rle(slice(5, 15), slice(0, 10)), _rle(slice(5, 15), slice(10, 20))
    insts = [_Inst(1, 7, a), _Inst(2, 7, b)]
    comps = {1: _rle(slice(5, 15), slice(0, 14)), 2: _rle(slice(5, 15), slice(9, 20))}   # claims 40 and 10
    assert SU.behind(insts, comps) == {2: {1}}         # 1 claims more: 1 is behind 2
    assert SU.behind(insts, comps, margin=5.0) == {}   # 40 < 5 x 10: undecided
    assert SU.behind(insts, {1: comps[1]}) == {}        # 2 has no completion: no pair
    other_image = [_Inst(1, 7, a), _Inst(2, 8, b)]
    assert SU.behind(other_image, comps) == {}          # only instances of one image are paired


def _pairs(scene):
    for insts in scene.by_image().values():
        car = next(i for i in insts if i.category == "car")
        yield car, next(i for i in insts if i.category == "pedestrian")


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_the_instance_in_front_stays_out_of_the_one_behind(scene, model, monkeypatch, noise):
    monkeypatch.setattr(SU, "behind", lambda instances, completions, margin=None: {})   # no order: as before the step
    before = PV.complete_instances(model, scene.instances, noise=noise)
    claimant = {}
    for car, ped in _pairs(scene):   # whichever of the two grows into the other is put in front of it
        for a, b in ((car, ped), (ped, car)):
            a_vis, b_vis = (M.decode(i.visible).astype(bool) for i in (a, b))
            if (M.decode(before[a.id]).astype(bool) & b_vis & ~a_vis).any():
                claimant[a.id] = b
    assert claimant   # without the order, a completion reaches into the other instance
    monkeypatch.setattr(SU, "behind", lambda instances, completions, margin=None: {a: {b.id} for a, b in claimant.items()})
    after = PV.complete_instances(model, scene.instances, noise=noise, return_details=True)
    by_id = scene.by_id()
    for a_id, b in claimant.items():
        a_vis, b_vis = M.decode(by_id[a_id].visible).astype(bool), M.decode(b.visible).astype(bool)
        k = after.ids.index(a_id)
        assert not (M.decode(after.allowed[k]).astype(bool) & b_vis & ~a_vis).any()
        if noise:   # soft evidence: the one behind is known background there, no longer what may hide it
            assert b.visible["counts"] not in [m["counts"] for m in after.neighbours[k]]
            assert len(after.neighbours[k]) == len(scene.by_image()[b.image_id]) - 2
        else:       # in front: out of it
            assert not (M.decode(after.masks[a_id]).astype(bool) & b_vis & ~a_vis).any()
        if b.id not in claimant:
            assert after.masks[b.id]["counts"] == before[b.id]["counts"]              # behind: as it was
    assert after.masks.keys() == before.keys()


def test_the_order_is_the_same_whatever_the_batch(scene, model):
    det = PV.complete_instances(model, scene.instances, return_details=True)
    assert SU.behind(scene.modal_view().instances, det.masks)   # the scene's pairs are ordered
    one_by_one = PV.complete_instances(model, scene.instances, batch_size=1)   # the pair's other one: a partner
    assert all(det.masks[i]["counts"] == one_by_one[i]["counts"] for i in det.masks)


def test_the_order_is_read_at_its_own_threshold_whatever_the_masks_are_cut_at(scene, model, monkeypatch):
    seen = []   # the completions each order was read from
    real = SU.behind
    monkeypatch.setattr(SU, "behind", lambda instances, completions, margin=None: seen.append(completions)
                        or real(instances, completions, margin))
    lo, hi = (PV.complete_instances(model, scene.instances, threshold=t, return_details=True) for t in (0.3, 0.95))
    assert len(seen) == 2 and seen[0] == seen[1]                      # the same claims, so the same order
    assert [a is None or a["counts"] for a in lo.allowed] == [a is None or a["counts"] for a in hi.allowed]
    assert any(lo.masks[i]["counts"] != hi.masks[i]["counts"] for i in lo.masks)   # cut at different thresholds
    monkeypatch.setattr(SU, "behind", lambda instances, completions, margin=None: {})   # unordered, at its threshold
    unordered = PV.complete_instances(model, scene.instances, threshold=SU.ORDER_THRESHOLD)
    assert {i: m["counts"] for i, m in seen[0].items()} == {i: m["counts"] for i, m in unordered.items()}
