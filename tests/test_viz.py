"""Figures built from results: what they draw, on tiny inputs."""
import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

import _fixtures as fx
from amodal_lib import viz
from amodal_lib.experiments import comparison
from amodal_lib.data import load_annotations


@pytest.fixture(scope="module")
def ann(tmp_path_factory):
    return load_annotations(fx.write_kins2020(tmp_path_factory.mktemp("v") / "ann.json", n_images=2))


def test_posterior_sample_groups_draw_every_sample_in_its_frame(ann):
    from amodal_lib.models.amodal_vae import AmodalVAE
    torch.manual_seed(0)
    vae = AmodalVAE(width=8, latent_dim=8, hidden=16).eval()
    insts = list(ann.instances)[:3]
    det = comparison.complete_details(vae, insts, samples=4, context=ann, seed=1)
    fig = viz.plot_posterior_sample_groups([("some", insts, det), ("none", [], det)], title="t")
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 3 * (1 + 4 + 1)     # input, 4 samples, GT amodal per row
    assert not fig.subfigs                   # one block: the empty group is left out
    plt.close(fig)


def test_threshold_sweep_draws_the_mean_and_each_set():
    rows = [{"set": s, "threshold": t, "n": 5, "A_full": a + t, "A_invisible": a / 2, "B_full": a, "B_invisible": a / 3}
            for s, a in (("pasted", 80.0), ("pasted_no_occluders", 70.0)) for t in (0.1, 0.5)]
    sweep = pd.DataFrame(rows)
    mean = sweep.groupby("threshold", as_index=False).mean(numeric_only=True).assign(set="mean")
    fig = viz.plot_threshold_sweep(pd.concat([sweep, mean]), 0.5, 0.1)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]     # one legend, under the panels
    assert "protocol A (pooled), mean over the sets" in labels and "pasted_no_occluders, protocol A" in labels
    drawn = [line for line in fig.axes[0].get_lines() if list(line.get_xdata()) == [0.1, 0.5]]
    assert sorted(round(float(line.get_ydata()[0]), 2) for line in drawn) == [70.1, 75.0, 75.1, 80.1]
    plt.close(fig)
    one = viz.plot_threshold_sweep(sweep[sweep.set == "pasted"].drop(columns="set"), 0.5)   # a plain sweep
    assert len(one.axes[0].get_lines()) == 4                       # A, B, ours, paper
    plt.close(one)


# --------------------------------------------------------------------------- laid out for print
def test_the_layout_check_finds_small_text_overlaps_and_empty_panels():
    fig, axes = plt.subplots(1, 3, figsize=(7, 2.5))
    axes[0].plot([0, 1])
    axes[1].imshow([[0, 1]])
    axes[2].plot([0, 1])
    assert viz.layout_problems(fig) == []
    axes[0].text(0.05, 0.5, "one label", fontsize=9)
    axes[0].text(0.1, 0.5, "another label", fontsize=9)           # on top of the first
    problems = viz.layout_problems(fig)
    assert len(problems) == 1 and "overlapping text" in problems[0]
    wide, ax = plt.subplots(1, 2, figsize=(16, 3))                  # 16 in printed 7 in wide: 9 pt becomes ~4
    ax[0].plot([0, 1], label="a line")
    ax[0].legend(fontsize=9)
    found = viz.layout_problems(wide)
    small = [float(p.split()[2]) for p in found if p.startswith("text at")]
    assert small and small[0] < 5.5 and any("empty panel" in p for p in found)
    plt.close("all")


def _history():
    train = [{"split": "train", "step": s, "loss": 1 / s, "hidden_recall": 0.5, "loss_d": 1.9, "g_gan": 0.2,
              "feat": 0.1, "l1": 0.05} for s in range(10, 110, 10)]
    val = [{"split": "val", "step": s, "val_full_miou": 90.0, "val_invisible_miou": 40.0, "val_l1": 20 - s / 50,
            "val_silhouette_iou": 0.9 + s / 1000} for s in (50, 100)]
    return train + val


def test_the_figures_print_readably(ann):
    insts = [i for i in ann.instances if i.amodal is not None][:6]
    val = pd.DataFrame([{"step": s, "set": k, "A_full": 90.0 + s / 100, "A_invisible": 40.0, "score": 65.0 + s / 100,
                         "selected": s == 100} for s in (50, 100) for k in ("labelled", "pasted")])
    base = pd.DataFrame([{"set": k, "method": m, "A_full": 86.0, "A_invisible": v} for k in ("labelled", "pasted")
                         for m, v in (("visible mask", 0.0), ("convex hull", 12.0))])
    figures = {
        "examples": viz.plot_examples(ann, n=2),
        "completions": viz.plot_completions(insts, {i.id: i.amodal for i in insts}, ann, n=6, title="after stage 3"),
        "validation": viz.plot_validation_through_training(val, base, title="stage 2"),
        "pcnet history": viz.plot_training_history(_history()),
        "gan history": viz.plot_gan_history(_history()),
        "pred vs gt": viz.plot_pred_vs_gt(ann, list(ann.images)[:2], {i.id: i.amodal for i in ann.instances},
                                          title="Amodal-VAE vs GT"),
    }
    problems = {name: viz.layout_problems(fig) for name, fig in figures.items()}
    assert problems == {name: [] for name in figures}
    assert figures["validation"].legends and not any(ax.get_legend() for ax in figures["validation"].axes)
    plt.close("all")
