"""Figures of the pose change with the SPADE renderer (notebook 13): Fig 10 and its training run."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .base import legend_below


def plot_pose_change(rows: Sequence[dict], title: str = "Changing an instance's pose (Fig 10)"):
    """One row per example (:func:`amodal_lib.experiments.pose.pose_examples`): the scene around the instance,
    the new full mask, the rendering (over grey) and the composited scene."""
    cols = ("original", "new full mask", "rendering", "composited scene")
    fig, axes = plt.subplots(len(rows), 4, figsize=(9.5, 2.1 * len(rows) + 0.4), squeeze=False)
    for r, row in enumerate(rows):
        for c, (key, img) in enumerate(zip(cols, (row["original"], row["mask"], row["render"], row["scene"]))):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1 if img.ndim == 2 else None,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(key, fontsize=10)
        axes[r, 0].set_ylabel(row["title"].replace(": ", ":\n"), fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_gan_history(history: Sequence[dict], title: str = "SPADE renderer"):
    """A GAN run of the engine: the discriminator's and the generator's hinge losses and the
    feature-matching and L1 terms (left), and the validation reconstruction (L1 on the object's
    pixels) and silhouette IoU at each evaluation (right)."""
    hist = pd.DataFrame(list(history))
    tr = hist[hist.split == "train"] if len(hist) else hist
    va = hist[hist.split == "val"] if len(hist) else hist
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.3))
    for key, label in (("loss_d", "discriminator hinge"), ("g_gan", "generator hinge"), ("feat", "feature matching"),
                       ("l1", "L1 to the real object")):
        if key in tr:
            axes[0].plot(tr.step, tr[key], label=label)
    axes[0].set(xlabel="step", ylabel="loss", title=f"{title}: training losses")
    if len(va) and "val_l1" in va:
        axes[1].plot(va.step, va.val_l1, "o-", color="C4", label="val L1, object pixels (grey levels)")
        axes[1].set(xlabel="step", ylabel="grey levels", title="validation")
        twin = axes[1].twinx()
        twin.plot(va.step, 100 * va.val_silhouette_iou, "s--", color="C2", label="val silhouette IoU (%)")
        twin.set_ylabel("silhouette IoU (%)")
        twin.grid(False)
        legend_below(fig, [axes[0], axes[1], twin], ncol=3)
        return fig
    axes[0].legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_pose_strip(masks: np.ndarray, renders: np.ndarray, labels: Sequence[str], title: str = ""):
    """One instance through a sequence of poses (e.g. an interpolation): masks above, renderings below."""
    n = len(masks)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n + 0.4, 3.0), squeeze=False)
    for k in range(n):
        axes[0, k].imshow(masks[k], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[1, k].imshow(renders[k], interpolation="nearest")
        axes[0, k].set_title(labels[k], fontsize=8)
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("mask", fontsize=9)
    axes[1, 0].set_ylabel("rendering", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
