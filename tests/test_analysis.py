"""The analyses of notebooks 04-09 on tiny inputs: they agree with metrics.py exactly."""
import numpy as np
import pandas as pd
import pytest
import torch

import _fixtures as fx
from amodal_lib import metrics, thresholds
from amodal_lib.experiments import analysis, comparison
from amodal_lib.data import load_annotations
from amodal_lib.data import masks as M
from amodal_lib.data.records import subsample
from amodal_lib.data.crops import crop_masks, frame_boxes, paste_masks, paste_probs, paste_region, scale_boxes


@pytest.fixture(scope="module")
def ann(tmp_path_factory):
    p = fx.write_kins2020(tmp_path_factory.mktemp("a") / "ann.json", n_images=4)
    return load_annotations(p)


@pytest.fixture(scope="module")
def crops(ann):
    """Noisy oracle crops: the amodal mask in a slightly grown amodal box, plus noise."""
    g = torch.Generator().manual_seed(0)
    boxes = scale_boxes(frame_boxes(ann.instances, "amodal"), 1.1)
    c = crop_masks(ann.instances, "amodal", boxes)
    probs = (0.8 * c + 0.3 * torch.rand(c.shape, generator=g)).clamp(0, 1)
    return probs, boxes


def test_paste_region_matches_paste_probs(ann, crops):
    probs, boxes = crops
    for k, inst in enumerate(ann.instances):
        full = paste_probs(probs[k], boxes[k], inst.height, inst.width)
        rows, cols, vals = paste_region(torch.stack([probs[k], probs[k] * 0.5]), boxes[k],
                                                 inst.height, inst.width)
        assert np.allclose(vals[0], full[rows, cols]) and np.allclose(vals[1], 0.5 * full[rows, cols])
        assert full.sum() == pytest.approx(vals[0].sum(), rel=1e-5)   # nothing pasted outside the region
    assert paste_region(probs[:1], [5.0, 5.0, 5.0, 9.0], 100, 200) is None


def test_threshold_tables_equal_metrics(ann, crops):
    probs, boxes = crops
    ts = [0.1, 0.5, 0.9]
    for union in (False, True):  # with union: the visible mask joined to each pasted mask, as complete_instances does
        tabs = thresholds.threshold_tables(ann.instances, probs, boxes, ts, union_visible=union)
        for t in ts:
            pasted = paste_masks(probs, boxes, ann.instances, t)
            if union:
                pasted = [M.merge([r, i.visible]) for r, i in zip(pasted, ann.instances)]
            ref = metrics.instance_table(ann, dict(zip([i.id for i in ann], pasted)))
            cols = ["id", "full_inter", "full_union", "inv_inter", "inv_union", "gt_hidden"]
            pd.testing.assert_frame_equal(tabs[t][cols].reset_index(drop=True), ref[cols].reset_index(drop=True),
                                          check_dtype=False)
            assert metrics.summarize(tabs[t])["overall"] == metrics.summarize(ref)["overall"]
    with pytest.raises(ValueError):
        thresholds.threshold_tables(ann.instances, probs, boxes, [0.0])


def test_sweep_and_pick(ann, crops):
    probs, boxes = crops
    sweep = thresholds.threshold_sweep(ann.instances, probs, boxes, [0.9, 0.05, 0.5])
    assert sweep.threshold.tolist() == [0.05, 0.5, 0.9]
    assert list(sweep.columns) == ["threshold", "n"] + analysis.SCORE_COLUMNS
    t = thresholds.pick_threshold(sweep)
    assert sweep.loc[sweep.threshold == t, "A_full"].item() == sweep.A_full.max()
    # ties go to the smaller threshold
    tie = pd.DataFrame({"threshold": [0.1, 0.2, 0.3], "n": 3, "A_full": [1.0, 2.0, 2.0], "A_invisible": 0.0,
                        "B_full": 0.0, "B_invisible": 0.0})
    assert thresholds.pick_threshold(tie) == 0.2
    s = thresholds.threshold_summary(sweep)
    assert s["paper"] == 0.1 and s["threshold"] == t and s["scores_at_paper"] is None
    with pytest.raises(ValueError):
        thresholds.pick_threshold(sweep, "nope")


def test_best_of_k_picks_the_best_sample(ann, crops):
    probs, boxes = crops
    bad = torch.zeros_like(probs)
    bad[:, :6] = 1.0  # a bar at the top of each crop
    samples = torch.stack([bad, probs, probs * 0.6], dim=1)   # (N, 3, S, S)
    res = analysis.best_of_k(ann.instances, samples, boxes, 0.5)
    assert res.sample_iou.shape == (len(ann), 3)
    assert np.all(res.sample_iou[np.arange(len(ann)), res.choice] == res.sample_iou.max(1))
    chosen = res.probs(samples)
    pasted = [M.merge([r, i.visible]) for r, i in zip(paste_masks(chosen, boxes, ann.instances, 0.5), ann.instances)]
    ref = metrics.instance_table(ann, dict(zip([i.id for i in ann], pasted)))
    assert np.allclose(res.table.full_iou.to_numpy(), ref.full_iou.to_numpy())
    # best of k is at least as good as any single sample, per instance
    mode = thresholds.probs_table(ann.instances, probs, boxes, 0.5)
    assert np.all(res.table.full_iou.to_numpy() >= mode.full_iou.to_numpy() - 1e-12)
    with pytest.raises(ValueError):
        analysis.best_of_k(ann.instances, probs, boxes, 0.5)


def test_per_bin_and_gap(ann, crops):
    probs, boxes = crops
    mode = metrics.summarize(thresholds.probs_table(ann.instances, probs * 0.55, boxes, 0.5))
    best = metrics.summarize(thresholds.probs_table(ann.instances, probs, boxes, 0.5))
    long = analysis.per_bin_long({"mode": mode, "best": best})
    assert len(long) and set(long.method) == {"mode", "best"}
    assert set(long.protocol) == {"A", "B"} and set(long.metric) <= {"full", "invisible"}
    assert long.visible_ratio.between(0, 1).all() and (long.n >= 1).all()
    gap = analysis.mode_vs_best_gap(mode, best)
    assert gap.n.sum() == len(ann)
    assert np.allclose(gap.B_full_gap, gap.B_full_best - gap.B_full_mode)
    tr = analysis.gap_trend(pd.DataFrame({"visible_ratio": [0.15, 0.55, 0.95], "n": [10, 10, 10],
                                          "B_full_gap": [6.0, 3.0, 1.0]}))
    assert tr["narrows"] is True and tr["slope"] < 0
    assert analysis.gap_trend(gap.head(1))["narrows"] is None


def test_posterior_width():
    rng = np.random.default_rng(0)
    occ = np.array([0.0] * 30 + [0.3] * 30 + [0.7] * 30)
    d = 64
    std = np.ones((90, d)) * 0.99 + 0.01 * rng.random((90, d))
    # dims 0-9 informative: narrower for visible objects; 10-19 somewhat narrow and flat
    width = np.where(occ == 0, 0.05, np.where(occ <= 0.5, 0.1, 0.2))
    std[:, :10] = width[:, None] * (1 + 0.1 * rng.random((90, 10)))
    std[:, 10:20] = 0.4
    pw = analysis.posterior_width(std, occ, n_dims=15, active_threshold=0.5)
    assert set(pw.dims[:10]) == set(range(10)) and set(pw.dims[10:]) <= set(range(10, 20))
    assert len(pw.active) == 20 and pw.holds is True
    assert pw.group_n == {"0%": 30, "1-50%": 30, ">50%": 30}
    assert len(pw.table) == 45 and pw.monotone_dims >= 10
    assert "HOLDS" in pw.statement()
    rev = analysis.posterior_width(std, occ[::-1])
    assert rev.holds is False and "NOT" in rev.statement()
    one = analysis.posterior_width(std[:30], occ[:30])
    assert one.holds is None
    assert list(analysis.occlusion_group([0.0, 0.01, 0.5, 0.51])) == ["0%", "1-50%", "1-50%", ">50%"]


def test_worst_cases_and_gt_box_gain(ann, crops):
    probs, boxes = crops
    pred = thresholds.probs_table(ann.instances, probs * 0.6, boxes, 0.5)
    gt = thresholds.probs_table(ann.instances, probs, boxes, 0.5)
    w = analysis.worst_cases(pred, gt, n=3)
    assert len(w) == 3 and w.full_iou_pred.is_monotonic_increasing
    assert w.full_iou_pred.iloc[0] == pred.full_iou.min()
    assert np.allclose(w.gain, w.full_iou_gt_box - w.full_iou_pred)
    capped = analysis.worst_cases(pred, gt, n=12, min_occlusion=0.01, max_occlusion=0.3)
    assert len(capped) and capped.occlusion_rate.between(0.01, 0.3).all()
    assert len(capped) < len(analysis.worst_cases(pred, gt, n=12, min_occlusion=0.01))
    g = analysis.gt_box_gain(metrics.summarize(pred), metrics.summarize(gt))
    assert len(g) == 4 and g.gain.notna().sum() == 4 and (g.gain >= 0).all()


def test_box_quality(ann):
    insts = list(ann.instances)
    gt = frame_boxes(insts, "amodal")
    perfect = analysis.box_quality(insts, gt)
    assert perfect.group.iloc[-1] == "all" and perfect.n.iloc[-1] == len(insts)
    assert np.allclose(perfect.box_iou_predicted, 1.0) and np.allclose(perfect.log_area_ratio_predicted, 0, atol=1e-5)
    vis = analysis.box_quality(insts, frame_boxes(insts, "visible"))  # the identity transformer
    assert np.allclose(vis.box_iou_predicted, vis.box_iou_visible)
    occluded = vis[vis.group.isin(["1-50%", ">50%"])]   # a box around the visible part of a hidden object is too small
    assert len(occluded) and (occluded.log_area_ratio_visible < 0).all() and (occluded.box_iou_visible < 1).all()
    half = gt.clone()
    half[:, 2] = (gt[:, 0] + gt[:, 2]) / 2                     # half the width: area ratio 1/2
    assert np.allclose(analysis.box_quality(insts, half).log_area_ratio_predicted, np.log(0.5), atol=1e-4)


def test_tables_and_oracle_share(ann, crops):
    probs, boxes = crops
    res = {"a": metrics.summarize(thresholds.probs_table(ann.instances, probs * 0.6, boxes, 0.5)),
           "oracle-28": metrics.summarize(thresholds.probs_table(ann.instances, probs, boxes, 0.5))}
    t = analysis.completion_table(res)
    assert t.method.tolist() == ["a", "oracle-28"]
    share = analysis.oracle_share(t)
    assert share.loc[share.method == "oracle-28", "A_full_share"].item() == pytest.approx(100.0)
    cat = analysis.category_table(res)
    assert set(cat.category) == {i.category for i in ann} and len(cat) == 2 * len(set(cat.category))
    assert cat.groupby("category").method.first().eq("a").all()


def test_subsample_keeps_whole_images(ann):
    sub = subsample(ann, 4, seed=1)
    assert 4 <= len(sub) <= 6 and len(sub.by_image()) == 2   # 3 instances an image: two whole images
    per_img = {k: len(v) for k, v in ann.by_image().items()}
    assert all(per_img[k] == len(v) for k, v in sub.by_image().items())
    assert len(subsample(ann, None)) == len(ann)
    assert [i.id for i in subsample(ann, 4, seed=1)] == [i.id for i in sub]


def test_pick_by_occlusion(ann):
    low, high = analysis.pick_by_occlusion(ann.instances, 2, low=(0.0, 0.0), high=(0.01, 1.0))
    assert len(low) == 2 and len(high) == 2      # the fixture has 8 unoccluded and 4 occluded instances
    assert all(i.occlusion_rate == 0 for i in low) and all(i.occlusion_rate > 0 for i in high)
    again = analysis.pick_by_occlusion(ann.instances, 2, low=(0.0, 0.0), high=(0.01, 1.0))
    assert [i.id for i in again[0] + again[1]] == [i.id for i in low + high]      # seeded


def test_pick_instances_filters(ann):
    picks = analysis.pick_instances(ann.instances, 10, occlusion=(0.01, 1.0), occluded_only=True, min_side=1)
    assert len(picks) == 4 and all(i.occluders and i.occlusion_rate > 0 for i in picks)
    assert analysis.pick_instances(ann.instances, 10, min_side=10_000) == []


def test_run_methods_with_an_untrained_model(ann):
    from amodal_lib.models.amodal_vae import AmodalVAE
    torch.manual_seed(0)
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    res = comparison.run_methods(ann, vae, threshold=0.5, samples=3)
    names = [comparison.VISIBLE, comparison.HULL, comparison.VAE_MODE, comparison.VAE_TRANSFORMER,
             comparison.VAE_GT_BOX, comparison.vae_best_name(3), comparison.ORACLE]
    assert list(res.tables) == names
    assert all(len(t) == len(ann) for t in res.tables.values())
    assert res.best.choice.shape == (len(ann),) and res.details["fit"].sample_probs.shape[1] == 3
    # the visible mask has no invisible part: invisible IoU 0, full IoU 100 when unoccluded
    vis = res.tables[comparison.VISIBLE]
    assert (vis.inv_inter == 0).all()
    s = res.summaries()
    assert s[comparison.ORACLE]["overall"]["B"]["full"] > 90
    # each frame's table agrees with the masks complete_instances pasted (the fitted frame's are
    # kept inside what may hide them, and the table must apply the same rule)
    assert res.details["fit"].fitted.any() and not res.details["transformer"].fitted.any()
    for name in (comparison.VAE_MODE, comparison.VAE_TRANSFORMER, comparison.VAE_GT_BOX):
        ref = metrics.instance_table(res.ann, res.masks[name])
        for col in ("full_inter", "full_union", "inv_inter", "inv_union"):
            assert (ref[col].to_numpy() == res.tables[name][col].to_numpy()).all(), (name, col)


def test_method_tables_reuse_stored_tables_only_for_the_same_inputs(ann, tmp_path, capsys):
    from amodal_lib.models.amodal_vae import AmodalVAE
    torch.manual_seed(0)
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    cache = tmp_path / "test_tables.pkl"
    res = comparison.run_methods(ann, vae, threshold=0.5, samples=2, save_tables=cache)
    assert cache.is_file()
    got = comparison.method_tables(ann, vae, threshold=0.5, samples=2, cache=cache, gt_box=False, oracle=False)
    assert "read from" in capsys.readouterr().out
    assert list(got) == [comparison.VISIBLE, comparison.HULL, comparison.VAE_MODE, comparison.VAE_TRANSFORMER,
                         comparison.vae_best_name(2)]
    for k, t in got.items():
        assert t.equals(res.tables[k])
    # another threshold, other weights or other instances: completed again, not read
    for kw in (dict(threshold=0.4), dict(samples=3)):
        comparison.method_tables(ann, vae, **{"threshold": 0.5, "samples": 2, **kw}, cache=cache)
        assert "read from" not in capsys.readouterr().out
    other = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    comparison.method_tables(ann, other, threshold=0.5, samples=2, cache=cache)
    assert "read from" not in capsys.readouterr().out
    fewer = ann.subset(ann.instances[:-1])
    assert len(comparison.method_tables(fewer, vae, threshold=0.5, samples=2, cache=cache)[comparison.VISIBLE]) \
        == len(fewer)
    cache.write_bytes(b"not a pickle")          # an unreadable cache is ignored
    assert len(comparison.method_tables(ann, vae, threshold=0.5, samples=2, cache=cache)) == 7


def test_segmentation_input_reads_the_gt_input_from_the_tables(ann):
    """Notebook 11's GT-input rows from notebook 05's tables equal those of completing again."""
    import json
    from amodal_lib.experiments import segmentation_input as S
    from amodal_lib.models.amodal_vae import AmodalVAE
    torch.manual_seed(0)
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    direct = S.run_inputs(ann, {S.GT_INPUT: None}, vae, None, 0.5)
    tables = comparison.method_tables(ann, vae, threshold=0.5, full_ann=ann, gt_box=False, oracle=False)
    reused = S.run_inputs(ann, {S.GT_INPUT: None}, vae, None, 0.5, gt_tables=tables)
    assert list(direct) == list(reused) and len(direct) == 3
    for k in direct:
        assert json.dumps(direct[k], sort_keys=True, default=str) == json.dumps(reused[k], sort_keys=True, default=str)


def test_chosen_threshold_is_the_runs(tmp_path):
    from amodal_lib.errors import MissingCheckpointError
    from amodal_lib.thresholds import write_threshold

    class Ctx:
        def run_dir(self, name):
            return tmp_path
    with pytest.raises(MissingCheckpointError, match="threshold.json: missing"):
        comparison.chosen_threshold(Ctx())
    write_threshold(tmp_path, 0.45, criterion="c")
    out = comparison.chosen_threshold(Ctx())
    assert out["threshold"] == 0.45 and out["source"].endswith("threshold.json")


def test_models_table_per_set(ann):
    from amodal_lib.predict import rules
    from amodal_lib.models.amodal_vae import AmodalVAE
    torch.manual_seed(0)
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    table = comparison.models_table(ann, {"after stage 2": vae, "after stage 3": vae}, threshold=0.5)
    assert table.method.tolist() == ["visible mask", "convex hull", "after stage 2", "after stage 3", "oracle-28"]
    assert table.loc[table.method == "oracle-28", "A_full_share"].item() == pytest.approx(100.0)
    assert table.iloc[2][analysis.SCORE_COLUMNS].tolist() == table.iloc[3][analysis.SCORE_COLUMNS].tolist()
    ref = metrics.evaluate(ann, rules.visible(ann.instances))
    assert table.iloc[0].A_full == pytest.approx(ref["overall"]["A"]["full"])
    half = subsample(ann, 4, seed=0)
    per_set = comparison.models_table_per_set({"all": ann, "half": half}, {"m": vae}, threshold=0.5)
    assert list(per_set.columns[:2]) == ["set", "method"] and per_set.set.tolist() == ["all"] * 4 + ["half"] * 4
    assert per_set[per_set.set == "half"].n.iloc[0] == len(half)


def test_box_quality_of_several_frames(ann):
    insts = list(ann.instances)
    gt, vis = frame_boxes(insts, "amodal"), frame_boxes(insts, "visible")
    both = analysis.box_quality(insts, {"perfect": gt, "identity": vis})
    assert list(both.columns) == ["group", "n", "box_iou_perfect", "box_iou_identity", "box_iou_visible",
                                  "log_area_ratio_perfect", "log_area_ratio_identity", "log_area_ratio_visible"]
    assert np.allclose(both.box_iou_perfect, 1.0) and np.allclose(both.box_iou_identity, both.box_iou_visible)
    one = analysis.box_quality(insts, vis)                     # a tensor: the "predicted" columns, as before
    assert np.allclose(one.box_iou_predicted, both.box_iou_identity)
    assert analysis.box_quality([], {"a": gt[:0]}).empty


def test_bin_composition_counts_fully_visible_instances(ann, crops):
    probs, boxes = crops
    tab = thresholds.probs_table(ann.instances, probs, boxes, 0.5)
    comp = analysis.bin_composition(tab)
    assert comp.bin.tolist() == metrics.bin_labels() and comp.n.sum() == len(tab)
    whole = int((tab.occlusion_rate == 0).sum())
    assert whole == 8 and comp.fully_visible.iloc[-1] == whole and comp.fully_visible.iloc[:-1].sum() == 0
    last = comp.iloc[-1]
    assert last.fully_visible_share == pytest.approx(100.0 * whole / last.n)
    assert comp.loc[comp.n == 0, "fully_visible_share"].eq(0).all()       # empty bins: no division by zero


def test_busiest_images(ann):
    ids = analysis.busiest_images(ann, 2, min_occlusion=0.0)
    count = {k: sum((i.occlusion_rate or 0) > 0 for i in v) for k, v in ann.by_image().items()}
    assert len(ids) == 2 and sorted(count.values(), reverse=True)[:2] == [count[k] for k in ids]
    assert analysis.busiest_images(ann, 100) == analysis.busiest_images(ann, len(count))


def test_reading_states_what_the_table_says():
    t = pd.DataFrame({"method": [comparison.VISIBLE, comparison.HULL, comparison.PCNET, comparison.VAE_MODE,
                                 comparison.VAE_TRANSFORMER, comparison.VAE_GT_BOX],
                      "A_full": [88.0, 85.0, 90.0, 91.0, 89.0, 94.0], "A_invisible": [0.0, 20.0, 40.0, 45.0, 30.0, 60.0],
                      "B_full": [80.0, 78.0, 85.0, 84.0, 83.0, 92.0], "B_invisible": [0.0, 25.0, 43.0, 44.0, 31.0, 58.0]})
    text = comparison.reading(t)
    frames = next(s for s in text if s.startswith("The fitted frame"))
    assert "full mIoU 91.00 vs 89.00 (ahead) (A)" in frames and "ahead on 4 of 4" in frames
    pc = next(s for s in text if "fitted frame against PCNet-M" in s)
    assert "84.00 vs 85.00 (behind) (B)" in pc and "ahead on 3 of 4" in pc
    assert any("transformer frame against PCNet-M" in s and "ahead on 0 of 4" in s for s in text)
    rules = next(s for s in text if s.startswith("Against the rules"))
    assert "91.00 vs 88.00 (ahead) (A)" in rules and "invisible mIoU 45.00 vs 20.00 (ahead) (A)" in rules
    assert any("94.00 / 60.00" in s for s in text)
    assert comparison.reading(t[t.method == comparison.VISIBLE]) == []     # rows it lacks are skipped


def test_figure_rows_follow_each_frame(ann):
    from amodal_lib.models.amodal_vae import AmodalVAE
    torch.manual_seed(0)
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    res = comparison.run_methods(ann, vae, threshold=0.5, baselines=False, oracle=False)
    names = [comparison.VAE_MODE, comparison.VAE_TRANSFORMER, comparison.VAE_GT_BOX]
    rows = comparison.figure_rows(res, names)
    assert [r[0] for r in rows] == ["fitted frame", "transformer frame (paper)", "GT amodal box"]
    for (label, masks, iou, boxes), name, key in zip(rows, names, ("fit", "transformer", "amodal-gt")):
        assert masks is res.masks[name] and set(iou) == set(boxes) == {i.id for i in ann.instances}
        k = 3
        assert torch.equal(boxes[res.details[key].ids[k]], res.details[key].boxes[k])


def test_frame_or_shape_reads_a_perfect_frame_and_a_perfect_hidden_part(ann):
    """The hidden-part oracle of the GT visible masks is the GT amodal mask; of eroded masks it keeps
    their errors (below 100 full, above the input); the GT-box row completes in the GT box."""
    from amodal_lib.data.corruption import corrupt_masks
    from amodal_lib.experiments import segmentation_input as S
    from amodal_lib.models.amodal_vae import AmodalVAE
    gt = {i.id: i.visible for i in ann.instances}
    oracle = S.with_hidden_part(ann, gt)
    assert all(M.area(M.merge([oracle[i.id], i.amodal], intersect=True)) == M.area(i.amodal) == M.area(oracle[i.id])
               for i in ann.instances)
    torch.manual_seed(0)
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    eroded = corrupt_masks(ann.instances, "erosion", 1.0)
    res = S.run_inputs(ann, {S.PREDICTED_INPUT: eroded}, vae, None, 0.5, frames=("fit",))
    t = S.frame_or_shape(ann, eroded, res, vae).set_index("method")
    assert list(t.index) == [S.INPUT_MASK, comparison.VAE_MODE, f"{comparison.VAE_GT_BOX}: evaluation only",
                             S.HIDDEN_ORACLE]
    assert len(S.frame_or_shape_lines(t.reset_index())) == 2
    assert t.loc[S.INPUT_MASK, "A_full"] < t.loc[S.HIDDEN_ORACLE, "A_full"] < 100
    assert t.loc[S.HIDDEN_ORACLE, "A_invisible"] == 100   # erosion adds no pixel outside the GT visible mask
