"""Notebook 07's investigation of Fig 4 and notebook 04's reasons for the threshold, on tiny inputs:
each quantity checked against a direct computation."""
import numpy as np
import pandas as pd
import pytest
import torch

import _fixtures as fx
from amodal_lib import thresholds
from amodal_lib.data import load_annotations
from amodal_lib.data import masks as M
from amodal_lib.data.crops import crop_masks, frame_boxes, paste_region, scale_boxes
from amodal_lib.experiments import analysis, calibration, claims
from amodal_lib.models.amodal_vae import AmodalVAE

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ann(tmp_path_factory):
    return load_annotations(fx.write_kins2020(tmp_path_factory.mktemp("w") / "ann.json", n_images=4))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AmodalVAE(width=8, latent_dim=6, hidden=16).eval()


def test_grouped_width_per_stratum_and_group():
    occ = np.array([0.0, 0.0, 0.3, 0.8, 0.0, 0.6])
    w = np.array([1.0, 3.0, 4.0, 5.0, 2.0, 1.0])
    g = analysis.grouped_width(w, occ, ["a", "a", "a", "a", "b", "b"])
    assert g.mean_width.tolist()[:3] == [2.0, 4.0, 5.0] and g.widens.tolist()[:3] == [True] * 3
    assert g.n.tolist() == [2, 1, 1, 1, 0, 1] and g.widens.tolist()[3:] == [False] * 3   # b: 2.0 then 1.0
    assert analysis.widens([0.1, np.nan, 0.3]) is True and analysis.widens([0.2]) is None
    v = claims.strata_verdict("in a", g, min_n=1)
    assert v.holds is True and "1 of 1 strata" in v.line
    assert claims.group_verdict("all", analysis.grouped_width(w, occ)).holds is False
    assert claims.trend_line("b", g[g.stratum == "b"]).endswith("shrinks with occlusion")


def test_posteriors_crops_and_random_occlusion(ann, model):
    insts = ann.instances
    mu, std = analysis.box_posterior(model, insts)
    ref = model.posterior(crop_masks(insts, "visible", "visible"))
    assert torch.allclose(mu, ref[0]) and torch.allclose(std, ref[1])
    assert not torch.allclose(analysis.box_posterior(model, insts, "amodal")[1], std)
    full, wh = analysis.own_box_crops(insts[:5])
    assert full.shape == (5, 56, 56) and wh.tolist()[0] == list(insts[0].visible_box[2:])
    pool, pool_wh = analysis.own_box_crops(insts)
    t = analysis.simulated_occlusion_width(model, full, wh, pool, pool_wh, [0, 1, 2], seed=3)
    assert list(t.frame.unique()) == ["visible box (flag 0)", "full box (flag 1)"]
    assert (t[t.group == "0%"].n == 5).all() and t.groupby("frame").n.sum().tolist() == [10, 10]
    assert t.equals(analysis.simulated_occlusion_width(model, full, wh, pool, pool_wh, [0, 1, 2], seed=3))


def test_decoder_curvature_matches_finite_differences(model):
    mu = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    c = analysis.decoder_curvature(model, mu, [0, 3])
    eps = 1e-3
    for j, d in enumerate([0, 3]):
        e = torch.zeros_like(mu)
        e[:, d] = eps
        with torch.no_grad():
            jac = (model.decoder(mu + e) - model.decoder(mu - e)).flatten(1) / (2 * eps)
            p = torch.sigmoid(model.decoder(mu)).flatten(1)
        assert np.allclose(c[:, j], (p * (1 - p) * jac ** 2).sum(1).numpy(), rtol=1e-2, atol=1e-4)
    w = analysis.laplace_width(c, 0.5)
    assert np.allclose(w, ((1 + c / 0.5) ** -0.5).mean(1)) and (analysis.laplace_width(c, 2.0) > w).all()
    blur = analysis.decoded_blur(model, mu)
    assert blur.shape == (4,) and ((blur > 0) & (blur <= 0.25)).all()


def test_calibration_counts_the_pixels_a_threshold_decides(ann):
    insts = ann.instances
    g = torch.Generator().manual_seed(0)
    boxes = scale_boxes(frame_boxes(insts, "amodal"), 1.1)
    probs = (0.7 * crop_masks(insts, "amodal", boxes) + 0.3 * torch.rand(len(insts), 28, 28, generator=g)).clamp(0, 1)
    cal = calibration.pixel_calibration(insts, probs, boxes, bins=10)
    assert len(cal) == 10 and cal.pixels.sum() > 0
    assert (cal.object_share.dropna().between(0, 1)).all()
    # the pixels counted: those of each pasted box outside the instance's visible mask
    expect = 0
    for k, inst in enumerate(insts):
        rows, cols, _ = paste_region(probs[k][None], boxes[k], inst.height, inst.width)
        expect += int((~M.decode(inst.visible).astype(bool)[rows, cols]).sum())
    assert cal.pixels.sum() == expect
    hi = cal[cal.p_low >= 0.7]
    assert (hi.object_share.dropna() > cal[cal.p_high <= 0.3].object_share.dropna().mean()).all()
    t = calibration.calibrated_threshold(cal, 90.0)
    assert t["if_calibrated"] == pytest.approx(0.9 / 1.9)
    crop = calibration.crop_sweep(insts, probs, boxes, [0.2, 0.5, 0.8])
    assert crop.crop_full_iou.between(0, 100).all() and len(crop) == 3
    sizes = calibration.size_sweep(insts, probs, boxes, [0.2, 0.5, 0.8])
    total = thresholds.threshold_sweep(insts, probs, boxes, [0.2, 0.5, 0.8])
    assert sizes.groupby("threshold").n.sum().tolist() == total.n.tolist()
    best = calibration.best_by(sizes, "size")
    assert set(best.columns) == {"size", "n", "best_threshold", "A_full"}


def test_calibrated_threshold_finds_the_crossing():
    cal = pd.DataFrame({"p_mid": [0.25, 0.5, 0.75], "object_share": [0.2, 0.4, 0.6], "pixels": [1, 1, 1]})
    t = calibration.calibrated_threshold(cal, 100 * 0.5 / 0.5)   # J* = 1: target 0.5
    assert t["implied_by_calibration"] == pytest.approx(0.625)
    assert calibration.calibrated_threshold(cal.assign(object_share=0.1), 90.0)["implied_by_calibration"] is None
