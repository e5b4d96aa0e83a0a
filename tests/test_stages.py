"""What notebooks 01-03 show of the training stages: validation read back from a stage's history,
the checkpoint kept, and the notebooks' training helper on a tiny run."""
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from _fixtures_vae import TINY, tiny_dataset
from amodal_lib import nb, thresholds, viz
from amodal_lib.experiments import comparison, stages


def _val(step, score, **sets):
    rec = {"split": "val", "stage": "2", "step": step, "val_score": score, "val_bce": 1.0}
    for name, (a_full, a_inv) in sets.items():
        rec.update({f"val_{name}_A_full": a_full, f"val_{name}_A_inv": a_inv,
                    f"val_{name}_B_full": a_full - 1, f"val_{name}_B_inv": a_inv - 1})
    return rec


FAST = dict(TINY, eval_every=6, frame="transformer")  # the helper is under test, not the selection or the frame
TRAIN = [{"split": "train", "step": s, "loss": 1.0 / s} for s in (1, 2, 3)]


def test_validation_table_reads_every_set_and_marks_the_kept_step():
    hist = TRAIN + [_val(6, 55.0, pasted=(80.0, 30.0), pasted_no_occluders=(78.0, 32.0)),
                    _val(3, 60.0, pasted=(82.0, 38.0), pasted_no_occluders=(79.0, 41.0)),
                    {"split": "val", "step": 3, "val_bce": 2.0},      # a loss-only record: not a validation
                    {"split": "selected", "stage": "2", "step": 3, "val_score": 60.0}]
    assert stages.validation_set_names(hist) == ["pasted", "pasted_no_occluders"]  # names with underscores
    assert stages.selected_step(hist) == 3
    t = stages.validation_table(hist)
    assert list(t.columns) == stages.VALIDATION_COLUMNS and len(t) == 4
    assert t.step.tolist() == [3, 3, 6, 6]                                   # in step order
    row = t[(t.step == 3) & (t.set == "pasted_no_occluders")].iloc[0]
    assert (row.A_full, row.A_invisible, row.B_full, row.B_invisible, row.score) == (79.0, 41.0, 78.0, 40.0, 60.0)
    assert t[t.selected].step.unique().tolist() == [3]
    sel = stages.selection(hist, 2)
    assert sel["selected"] == 3 and sel["score"] == 60.0 and sel["last_step"] == 6 and not sel["kept_start"]
    assert "step 3" in sel["statement"] and "not the last one (step 6: 55.00)" in sel["statement"]


def test_selection_says_whether_stage_3_kept_stage_2s_weights():
    kept = [_val(0, 68.4, labelled=(87.0, 49.0)), _val(50, 54.2, labelled=(81.0, 27.0)),
            _val(100, 57.9, labelled=(83.0, 33.0)), {"split": "selected", "step": 0, "val_score": 68.4}]
    s = stages.selection(kept, 3)
    assert s["kept_start"] and s["selected"] == 0 and s["start_score"] == 68.4
    assert "keeps stage 2's weights" in s["statement"] and "step 100, scored 57.90" in s["statement"]
    better = kept[:3] + [{"split": "selected", "step": 50, "val_score": 54.2}]
    better[1] = _val(50, 70.0, labelled=(88.0, 52.0))
    s = stages.selection(better, 3)
    assert not s["kept_start"] and s["selected"] == 50
    assert "up from 68.40 with stage 2's weights" in s["statement"] and "keeps stage 2" not in s["statement"]
    last = stages.selection(kept[:3], 2)                  # no "selected" record: the last step's weights
    assert last["selected"] == 100 and "the last one" in last["statement"]
    none = stages.selection(TRAIN, 1)
    assert none["selected"] is None and "not validated" in none["statement"]
    assert stages.validation_table(TRAIN).empty


def test_before_after_reads_step_0_and_the_kept_step():
    hist = [_val(0, 68.4, labelled=(87.0, 49.0)), _val(50, 70.0, labelled=(88.0, 52.0)),
            _val(100, 57.9, labelled=(83.0, 33.0)), {"split": "selected", "step": 50, "val_score": 70.0}]
    ba = stages.before_after(hist, "before", "after")
    assert ba == {"labelled": {"before": {"A_full": 87.0, "A_invisible": 49.0, "B_full": 86.0, "B_invisible": 48.0},
                               "after": {"A_full": 88.0, "A_invisible": 52.0, "B_full": 87.0, "B_invisible": 51.0}}}
    assert stages.before_after(hist[1:], "before", "after") == {}        # step 0 not validated: nothing known
    assert stages.before_after(TRAIN, "before", "after") == {}


def test_models_table_takes_known_scores_for_the_models_it_names():
    from amodal_lib.data import load_annotations
    from amodal_lib.models.amodal_vae import AmodalVAE
    ann = load_annotations(tiny_dataset()["val"])
    torch.manual_seed(0)
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    direct = comparison.models_table(ann, {"m": vae}, threshold=0.5)
    row = direct[direct.method == "m"].iloc[0]
    known = {"m": {k: float(row[k]) for k in ("A_full", "A_invisible", "B_full", "B_invisible")}}
    reused = comparison.models_table(ann, {"m": vae}, threshold=0.5, known=known)
    pd.testing.assert_frame_equal(direct, reused)
    fake = comparison.models_table(ann, {"m": vae}, threshold=0.5, known={"m": {**known["m"], "A_full": 1.0}})
    assert float(fake[fake.method == "m"].A_full.iloc[0]) == 1.0          # the known numbers are what it shows


def test_validation_plot_draws_protocol_a_only_and_marks_the_kept_step():
    hist = [_val(0, 60.0, a=(80.0, 20.0), b=(70.0, 10.0)), _val(5, 65.0, a=(81.0, 30.0), b=(71.0, 12.0)),
            {"split": "selected", "step": 5, "val_score": 65.0}]
    base = pd.DataFrame({"set": ["a", "a", "b"], "method": ["visible mask", "convex hull", "visible mask"],
                         "A_full": [75.0, 74.0, 66.0], "A_invisible": [0.0, 15.0, 0.0],
                         "B_full": [1.0, 1.0, 1.0], "B_invisible": [2.0, 2.0, 2.0]})
    fig = viz.plot_validation_through_training(stages.validation_table(hist), base)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]   # one legend, under the panels
    assert {"a: Amodal-VAE", "b: Amodal-VAE", "a: visible mask", "a: convex hull", "b: visible mask",
            "kept: step 5"} <= set(labels)
    assert not any("protocol B" in lab for lab in labels + [ax.get_title() for ax in fig.axes])
    levels = sorted(round(line.get_ydata()[0], 1) for line in fig.axes[1].get_lines()
                    if len(set(line.get_ydata())) == 1 and len(line.get_xdata()) == 2 and line.get_xdata()[0] == 0)
    assert levels == [66.0, 74.0, 75.0]                   # the protocol-A levels, never the B ones (1.0)
    plt.close(fig)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny Amodal-VAE trained through the notebooks' helper, in a scratch results folder."""
    mp = pytest.MonkeyPatch()
    mp.setattr(nb, "RESULTS", tmp_path_factory.mktemp("results"))
    ctx = nb.setup("99_test", profile="smoke")
    ctx._paths = {**tiny_dataset(), "hash": "tiny"}
    yield ctx
    mp.undo()


def test_train_helper_prints_the_log_and_gives_each_stage(tiny_run, capsys):
    ctx = tiny_run
    res = ctx.train_amodal_vae(upto=2, device="cpu", **FAST)
    out = capsys.readouterr().out
    assert "validation: " in out and "stage 2: checkpoint of step" in out and res["model"].trained_stage == 2
    assert res["run_dir"] == ctx.run_dir("amodal-vae") and res["validation_info"]["kind"] == "amodal labels"
    sets = ctx.validation_sets()
    assert list(sets) == ["labelled"] and len(sets["labelled"]) and sets["labelled"].images_dir is not None
    res3 = ctx.train_amodal_vae(upto=3, device="cpu", **FAST)
    out = capsys.readouterr().out
    assert "stage 2: " in out and "is finished; skipped" in out and "threshold " in out
    assert res3["model"].trained_stage == 3 and set(res3["history"]) == {1, 2, 3}
    assert comparison.chosen_threshold(ctx)["stage"] == 3         # the threshold of the model the run ends with
    again = ctx.train_amodal_vae(upto=1, device="cpu", **FAST)      # reused; the model of stage 1
    assert again["model"].trained_stage == 1 and again["validation"] is None
    assert "validation: " in capsys.readouterr().out               # said from validation.json
    t = stages.validation_table(res3["history"][3])
    assert t.step.min() == 0 and t.selected.sum() == 1            # stage 3's step 0 is a candidate


def test_recorded_sweep_and_choice(tiny_run):
    ctx = tiny_run
    ctx.train_amodal_vae(upto=3, device="cpu", **FAST)
    sweep = comparison.recorded_sweep(ctx)
    raw = pd.read_csv(ctx.run_dir("amodal-vae") / "threshold_sweep.csv")
    # a transformer-frame run takes any visible masks as given: no threshold is searched for a segmenter's
    assert not raw.noisy.any() and "noisy" not in thresholds.read_threshold(ctx.run_dir("amodal-vae"))
    assert list(sweep.set.unique()) == ["labelled", "mean"] and len(sweep) == 2 * len(raw)
    mean = sweep[sweep.set == "mean"].reset_index(drop=True)
    assert np.allclose(mean.A_full, raw.groupby("threshold").A_full.mean().to_numpy())
    chosen = comparison.chosen_threshold(ctx)
    assert chosen["threshold"] == mean.threshold[mean.A_full.idxmax()]    # the criterion, on the mean rows
    choice = comparison.threshold_choice(sweep, chosen["threshold"], 0.1)
    assert choice.threshold.tolist() == [f"ours (threshold.json): t = {chosen['threshold']:g}", "paper: t = 0.1"]
    assert comparison.threshold_choice(sweep, chosen["threshold"], 0.123).shape[0] == 1   # not swept: no row
    fig = viz.plot_threshold_sweep(sweep, chosen["threshold"], 0.1)
    plt.close(fig)


def test_recorded_sweep_leaves_out_the_segmenter_mask_rows(tmp_path):
    rows = [{"threshold": t, "n": 10, "A_full": a, "A_invisible": 1.0, "B_full": 1.0, "B_invisible": 1.0,
             "set": s, "noisy": s.endswith("_mild")}
            for s, a in (("labelled", 50.0), ("labelled_mild", 10.0)) for t in (0.4, 0.5)]
    pd.DataFrame(rows).to_csv(tmp_path / thresholds.SWEEP_FILE, index=False)
    sweep = thresholds.recorded_sweep(tmp_path)
    assert list(sweep.set.unique()) == ["labelled", "mean"] and (sweep.A_full == 50.0).all()


def test_stage_figures_on_a_tiny_run(tiny_run):
    from amodal_lib import paper
    ctx = tiny_run
    res = ctx.train_amodal_vae(upto=3, device="cpu", **FAST)
    val = ctx.annotations("val")
    data, cfg = stages.stage2_data(val, res["config"])
    assert len(data["full"]) == len(val.modal_view().unoccluded()) and cfg.width == TINY["width"]
    rows, hidden = stages.simulated_completions(res["model"], val, res["config"], n=5, seed=1)
    assert [r[0] for r in rows][:2] == ["full y", "occluded y_hat"] and all(len(r[1]) == 5 for r in rows)
    assert (hidden > 0).all() and rows[2][1].shape[-2:] == (28, 28)
    again, _ = stages.simulated_completions(res["model"], val, res["config"], n=5, seed=1)
    assert torch.equal(rows[3][1], again[3][1])                     # seeded
    frac = stages.simulated_fractions(val, res["config"], n=400, seed=0)
    assert frac.shape == (400,) and 0.1 < (frac == 0).mean() < 0.5   # about unoccluded_prob left whole
    x, recon = stages.reconstructions(res["model"], val, n=4)
    assert x.shape == recon.shape and len(x) <= 4
    for fig in (viz.plot_stage1_training(res["history"][1], res["config"], paper.KL_SCHEDULE, 3000),
                viz.plot_stage2_training(res["history"][2]), viz.plot_occlusion_spread(frac, [0.2, 0.5]),
                viz.plot_occlusion_spread(frac)):
        assert fig.axes
        plt.close(fig)
    table = comparison.models_table_per_set(ctx.validation_sets(), {"m": res["model"]}, threshold=0.5)
    assert table.columns[0] == "set" and table.method.tolist() == ["visible mask", "convex hull", "m", "oracle-28"]
    info = json.loads((res["run_dir"] / "validation.json").read_text())
    assert info == ctx.validation_info()
