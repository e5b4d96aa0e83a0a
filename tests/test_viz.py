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
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "protocol A (pooled), mean over the sets" in labels and "pasted_no_occluders, protocol A" in labels
    drawn = [line for line in fig.axes[0].get_lines() if list(line.get_xdata()) == [0.1, 0.5]]
    assert sorted(round(float(line.get_ydata()[0]), 2) for line in drawn) == [70.1, 75.0, 75.1, 80.1]
    plt.close(fig)
    one = viz.plot_threshold_sweep(sweep[sweep.set == "pasted"].drop(columns="set"), 0.5)   # a plain sweep
    assert len(one.axes[0].get_lines()) == 4                       # A, B, ours, paper
    plt.close(one)
