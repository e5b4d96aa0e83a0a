"""Completion at data-set scale: masks read and written inside their boxes (never a full frame),
the completion streamed batch by batch, on several processes, with the same masks as at once."""
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mu

import _fixtures as fx
from _fixtures_vae import tiny_dataset
from amodal_lib import metrics, registry
from amodal_lib.data import load_annotations
from amodal_lib.data import masks as M
from amodal_lib.data import rle as R
from amodal_lib.models import amodal_vae as V
from amodal_lib.predict import amodal_vae as PV
from amodal_lib.predict import frame_fit as FF


def _masks(seed: int, n: int = 400):
    """Random masks of random small sizes: blobs, full columns, full and empty frames."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(1, 25, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        kind = rng.integers(5)
        if kind == 0:
            m[:] = 0
        elif kind == 1:
            m[:] = 1
        elif kind == 2:
            m[:, : w // 2] = 1    # runs down one column into the next
        yield rng, m


def test_window_decode_and_encode_match_pycocotools_on_full_frames():
    for rng, m in _masks(0):
        h, w = m.shape
        rle = mu.encode(np.asfortranarray(m))
        r0, r1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        c0, c1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        assert np.array_equal(R.decode_window(rle, r0, r1, c0, c1), m[r0:r1, c0:c1])
        outside_zero = np.zeros_like(m)
        outside_zero[r0:r1, c0:c1] = m[r0:r1, c0:c1]
        assert R.encode_windows([m[r0:r1, c0:c1]], [(r0, c0)], h, w)[0] == mu.encode(np.asfortranarray(outside_zero))


def test_runs_totals_decide_only_what_they_read_exactly():
    alphabet = list(range(48, 112))
    strings = []
    for rng, m in _masks(1):
        s = mu.encode(np.asfortranarray(m))["counts"]
        cut = rng.random()
        if cut < 0.3:
            s = s[: int(rng.integers(0, len(s) + 1))]            # truncated
        elif cut < 0.4:
            s = bytes(rng.choice(alphabet + [32, 47, 112, 200], int(rng.integers(0, 20))).tolist())
        strings.append(s)
    totals = R.runs_totals(strings)
    for s, t in zip(strings, totals):
        try:
            exact = sum(R._decode_counts(s))
        except ValueError:
            exact = None
        if t >= 0:
            assert t == exact
        assert (R.runs_total(s) if exact is not None else None) == exact


def test_reading_checks_every_mask_in_one_pass(tmp_path):
    """A truncated RLE among good ones is still refused, naming its record."""
    path = fx.write_coco(tmp_path / "c.json")
    data = json.loads(path.read_text())
    rle = mu.encode(np.asfortranarray(np.ones((fx.H, fx.W), np.uint8)))
    data["annotations"][2]["segmentation"] = {"size": [fx.H, fx.W], "counts": rle["counts"].decode()[:-1]}
    path.write_text(json.dumps(data))
    with pytest.raises(M.AnnotationError, match=f"{data['annotations'][2]['id']}.*segmentation.*RLE"):
        load_annotations(path)


@pytest.fixture(scope="module")
def split():
    return load_annotations(tiny_dataset()["test"])


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    m = V.AmodalVAE(width=8, latent_dim=16, hidden=32, geometry=V.GEOMETRY_FEATURES).eval()
    with torch.no_grad():   # completions that reach out of the visible box, so that frames matter
        m.transformer.head.bias.copy_(torch.tensor([0.5, 0.5, 0.0, 0.0]))
        m.decoder.out.bias.fill_(3.0)
    return m


@pytest.mark.parametrize("frame", PV.FRAMES)
def test_completion_never_decodes_a_full_frame(split, vae, frame, monkeypatch):
    def refuse(*_):
        raise AssertionError("a full frame was decoded")
    monkeypatch.setattr(M.mask_utils, "decode", refuse)
    assert len(PV.complete_instances(vae, split.instances, frame=frame, context=split)) == len(split)


def test_evidence_inside_the_region_is_the_union_and_the_clip_of_the_rles(split, vae):
    """Each mask is (pasted probabilities >= t, joined with the visible mask) kept inside what may
    hide it, as RLE operations on whole frames would give it."""
    det = PV.complete_instances(vae, split.instances, frame="fit", context=split, threshold=0.4, return_details=True)
    assert det.fitted.any() and not det.fitted.all()
    from amodal_lib.data.crops import paste_masks
    plain = paste_masks(det.probs, det.boxes, det.instances, 0.4)
    for k, inst in enumerate(det.instances):
        want = M.merge([plain[k], inst.visible])
        if det.allowed[k] is not None:
            want = M.merge([want, det.allowed[k]], intersect=True)
        assert det.masks[inst.id] == want


def test_batches_and_workers_give_the_masks_of_one_batch(split, vae):
    whole = PV.complete_instances(vae, split.instances, frame="fit", context=split, batch_size=4096)
    parts = list(PV.iter_masks(vae, split.instances, frame="fit", context=split, batch_size=7, workers=2))
    assert len(parts) == -(-len(split) // 7)
    assert [k for p in parts for k in p] == [i.id for i in split.instances]   # in order
    assert {k: v for p in parts for k, v in p.items()} == whole


def test_predictions_are_written_as_they_come(split, tmp_path):
    masks = registry.complete("visible", split)
    metrics.write_predictions(tmp_path / "a.json", split, masks)
    n = metrics.write_predictions(tmp_path / "b.json", split, registry.complete_batches("visible", split))
    assert n == len(split) and (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    rows = [{"id": k, "image_id": split.by_id()[k].image_id, "segmentation": M.to_json(r)} for k, r in masks.items()]
    assert (tmp_path / "a.json").read_text() == json.dumps(rows)


def test_the_search_skips_only_scans_that_would_repeat_themselves():
    """The fit with its skips finds the frames of the plain coordinate search (every side scanned
    in every round), with the model's own arithmetic."""
    torch.manual_seed(1)
    model = V.AmodalVAE(width=8, latent_dim=16, hidden=32).eval()
    crops = (torch.rand(6, 3, FF.CONTEXT_HI, FF.CONTEXT_HI) > 0.6).float()
    start = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(6, 1) + 0.05 * torch.randn(6, 4)
    sides = torch.rand(6, 4) > 0.3
    boxes, *_ = FF.fit_frames(model, crops, start, sides, exact=True)
    around = FF.Context.of_crops(crops)
    scorer = FF.Scorer(model, exact=True)
    known = FF._known(around.lo)
    best = start.clone()
    with torch.no_grad():
        for _ in range(2):
            for side in range(4):
                for k in torch.nonzero(sides[:, side]).flatten().tolist():
                    cand = best[k].repeat(len(FF.EXTENSIONS), 1)
                    cand[:, side] = FF.UNIT[0][side] + FF.DIRECTION[side] * torch.tensor(FF.EXTENSIONS)
                    both = torch.cat([best[k][None], cand])[None]
                    nll = FF.score_frames(scorer, around.hi[k:k + 1], known[0][k:k + 1], known[1][k:k + 1], both)[0]
                    j = int(nll[1:].argmin())
                    if nll[1 + j] < nll[0]:
                        best[k] = cand[j]
    assert torch.allclose(boxes, best)


def test_folded_batch_norms_compute_the_same_function():
    torch.manual_seed(2)
    model = V.AmodalVAE(width=8, latent_dim=16, hidden=32)
    model.train()
    with torch.no_grad():   # batch norms with statistics of their own
        for _ in range(3):
            model.decoder(torch.randn(32, 16))
            model.partial_encoder(torch.rand(32, 2, 28, 28))
    model.eval()
    import copy
    x, z = torch.rand(5, 2, 28, 28), torch.randn(5, 16)
    with torch.no_grad():
        enc, dec = FF.fold_batch_norms(copy.deepcopy(model.partial_encoder)), FF.fold_batch_norms(copy.deepcopy(model.decoder))
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules())
        assert torch.allclose(enc(x)[0], model.partial_encoder(x)[0], atol=1e-4)
        assert torch.allclose(dec(z), model.decoder(z), atol=1e-4)


def test_padded_network_batches_give_each_row_its_own_result():
    """The fit's network calls are padded to a few batch shapes (bounded kernel caches): each real
    row gets what the unpadded call gives it, for one tensor or a tuple of them."""
    torch.manual_seed(3)
    model = V.AmodalVAE(width=8, latent_dim=16, hidden=32).eval()
    z, crops = torch.randn(FF.PAD_ROWS + 5, 16), torch.rand(7, 28, 28)
    with torch.no_grad():
        out = FF.padded(model.decoder, z)
        assert out.shape == (FF.PAD_ROWS + 5, 28, 28) and torch.allclose(out, model.decoder(z), atol=1e-5)
        mu, logvar = FF.padded(lambda c: model.encode_partial(c, 1.0), crops)
        want = model.encode_partial(crops, 1.0)
        assert mu.shape == (7, 16) and torch.allclose(mu, want[0], atol=1e-5) and torch.allclose(logvar, want[1], atol=1e-5)
        scorer = FF.Scorer(model)
        assert torch.allclose(scorer(crops), FF.Scorer(model, exact=True)(crops), atol=0.05)


def test_each_batch_gives_its_freed_memory_back(monkeypatch):
    from amodal_lib.predict import workers as W
    W.release_memory()   # glibc's malloc_trim where there is one, nothing elsewhere: never an error
    given_back = []
    monkeypatch.setattr(W, "release_memory", lambda: given_back.append(1))
    assert list(W.ordered_map(lambda x: x * x, range(5), workers=1)) == [0, 1, 4, 9, 16]
    assert len(given_back) == 5
