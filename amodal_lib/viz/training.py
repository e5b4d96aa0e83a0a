"""Figures of training runs: curves through a stage, validation, the checkpoint kept (notebooks 01-03, 10)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .base import METRIC_TITLES, PROTOCOL_NAMES


def plot_training_history(history: Sequence[dict], title: str = "PCNet-M"):
    """A run's training loss (left) and, right, the share of erased pixels the network recovers
    during training beside the validation full / invisible mIoU (protocol A) at each evaluation.
    ``history``: the engine's records (``split`` "train" or "val")."""
    hist = pd.DataFrame(list(history))
    tr = hist[hist.split == "train"] if len(hist) else hist
    va = hist[hist.split == "val"] if len(hist) else hist
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    axes[0].plot(tr.step, tr.loss, label="weighted cross-entropy")
    axes[0].set(xlabel="step", ylabel="training loss", yscale="log", title=f"{title} training loss")
    if "hidden_recall" in tr:
        axes[1].plot(tr.step, 100 * tr.hidden_recall, label="erased pixels recovered (train, %)")
    if len(va):
        axes[1].plot(va.step, va.val_full_miou, "o-", label="val full mIoU (A)")
        axes[1].plot(va.step, va.val_invisible_miou, "s-", label="val invisible mIoU (A)")
    axes[1].set(xlabel="step", ylabel="%", title="completion during training")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_validation_through_training(history: pd.DataFrame, start: dict, baselines: dict,
                                     xlabel: str = "stage-3 step", title: str = "validation"):
    """Validation mIoU through a training stage, full (left) and invisible (right), each protocol
    beside its own baselines: protocol A solid, B dashed, in the same style for the model's
    curve and for each baseline's level. ``history``: the stage's validation records (``step``,
    ``val_A_full``, ``val_A_inv``, ``val_B_full``, ``val_B_inv``); ``start``: the scores before the
    stage (``A_full``, ``A_invisible``, ``B_full``, ``B_invisible``), drawn at step 0; ``baselines``:
    {name: such scores}, drawn as levels (notebook 03)."""
    pal = sns.color_palette("colorblind")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    cols = {"full": "full", "invisible": "inv"}
    for ax, metric in zip(axes, ("full", "invisible")):
        for prot, ls in (("A", "-"), ("B", "--")):
            key, col = f"{prot}_{metric}", f"val_{prot}_{cols[metric]}"
            if col in history:
                ax.plot([0] + history.step.tolist(), [start[key]] + history[col].tolist(), marker="o", ls=ls,
                        color=pal[0], label=f"model, {PROTOCOL_NAMES[prot]}")
            for k, (name, scores) in enumerate(baselines.items(), start=1):
                if scores.get(key) is not None:
                    ax.axhline(scores[key], color=pal[k], ls=ls, lw=1, label=f"{name}, protocol {prot}")
        ax.set(xlabel=xlabel, ylabel="mIoU %", title=f"{METRIC_TITLES[metric]}, {title}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
