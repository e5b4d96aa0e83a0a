"""The depth order of touching instances (amodal_lib.predict.surroundings): the one whose completion
claims more of the other's visible mask is behind, and the one in front stays out of it."""
import numpy as np
import pytest
import torch

from _fixtures import write_kins2020
from amodal_lib.data import load_annotations
from amodal_lib.data import masks as M
from amodal_lib.models import amodal_vae as V
from amodal_lib.predict import amodal_vae as PV
from amodal_lib.predict import surroundings as SU


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


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A car partly hidden by a pedestrian that touches it, and a lone van, in each image."""
    return load_annotations(write_kins2020(tmp_path_factory.mktemp("k") / "k.json", n_images=3))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = V.AmodalVAE(width=8, latent_dim=16, hidden=32, geometry=V.GEOMETRY_FEATURES).eval()
    with torch.no_grad():  # a transformer that predicts a box twice the visible one, a decoder that fills it
        m.transformer.head.bias.copy_(torch.tensor([0.7, 0.7, 0.0, 0.0]))
        m.decoder.out.bias.fill_(5.0)
    return m


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
