"""Figures of the data and of completions in the image (notebooks 00, 01, 02 and 03)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..data import masks as M
from ..data.records import AnnotationSet, Instance
from .base import HIDDEN_COLOR, VISIBLE_COLOR, draw_completion, drop_overlapping_labels, load_image, overlay


def instance_table(ann: AnnotationSet) -> pd.DataFrame:
    """One row per instance: category, occlusion rate, areas (what the data plots are made of)."""
    return pd.DataFrame([{"id": i.id, "category": i.category, "visible_area": i.visible_area,
                          "amodal_area": i.amodal_area, "occlusion_rate": i.occlusion_rate,
                          "unoccluded_modal": i.is_unoccluded, "n_occluders": len(i.occluders)}
                         for i in ann.instances])


def plot_examples(ann: AnnotationSet, n: int = 4, seed: int = 0):
    """Images with visible (blue) and hidden amodal (orange) parts of every instance overlaid, each
    instance's amodal box, and as many of their labels (category, % hidden) as fit without
    overlapping, the largest instances' first."""
    rng = np.random.default_rng(seed)
    by_img = ann.by_image()
    ids = sorted(by_img, key=lambda k: -sum((i.occlusion_rate or 0) > 0.2 for i in by_img[k]))[: max(n * 4, n)]
    ids = list(rng.choice(ids, size=min(n, len(ids)), replace=False))
    h0, w0 = by_img[ids[0]][0].height, by_img[ids[0]][0].width
    fig, axes = plt.subplots(len(ids), 1, figsize=(7.5, 7.5 * h0 / w0 * len(ids) + 0.7), squeeze=False)
    labels = []
    for ax, image_id in zip(axes[:, 0], ids):
        insts = by_img[image_id]
        h, w = insts[0].height, insts[0].width
        layers = []
        for i in insts:
            vis = M.decode(i.visible)
            layers.append((vis, VISIBLE_COLOR))
            if i.amodal is not None:
                layers.append((M.decode(i.amodal) & (1 - vis), HIDDEN_COLOR))
        ax.imshow(overlay(load_image(ann, image_id), layers, h, w))
        for i in sorted(insts, key=lambda i: -(i.amodal_area or i.visible_area)):
            x, y, bw, bh = i.amodal_box or i.visible_box
            ax.add_patch(plt.Rectangle((x, y), bw, bh, fill=False, lw=0.8, ec="white"))
            if i.occlusion_rate is not None:
                labels.append(ax.text(x, y - 1, f"{i.category} {100 * i.occlusion_rate:.0f}%", color="white",
                                      fontsize=7, clip_on=True, bbox=dict(facecolor="black", alpha=0.5, pad=0.5, lw=0)))
        ax.set_axis_off()
        ax.set_title(f"image {image_id}", fontsize=9)
    fig.suptitle("Visible part blue, hidden part of the amodal mask orange; white: amodal box, with category "
                 "and % hidden", fontsize=9)
    fig.tight_layout()
    drop_overlapping_labels(fig, labels)
    return fig


def plot_counts(df: pd.DataFrame):
    """Instances per category, and the occlusion-rate histogram."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    order = df.category.value_counts().index
    sns.countplot(data=df, y="category", order=order, ax=axes[0], color=sns.color_palette("colorblind")[0])
    axes[0].set(title="Instances per category", xlabel="instances", ylabel="")
    if df.occlusion_rate.notna().any():
        sns.histplot(100 * df.occlusion_rate.dropna(), bins=np.arange(0, 101, 5), ax=axes[1],
                     color=sns.color_palette("colorblind")[1])
        axes[1].set(title="Occlusion rate (1 - visible/amodal area)", xlabel="occlusion rate (%)",
                    ylabel="instances")
        axes[1].set_yscale("log")
    else:
        axes[1].text(0.5, 0.5, "modal-only data: no occlusion rates", ha="center", va="center")
        axes[1].set_axis_off()
    fig.tight_layout()
    return fig


def plot_crops(rows: Sequence[tuple], n: int = 12, title: str = ""):
    """A grid of 28x28 crops: ``rows`` is ``[(label, tensor (N, S, S)), ...]``, one row each."""
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.6 + 1.0, len(rows) * 0.68 + 0.4), squeeze=False)
    for r, (label, crops) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            if c < len(crops):
                ax.imshow(np.asarray(crops[c]), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]); ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_completions(instances: Sequence[Instance], masks: dict, ann: AnnotationSet, n: int = 8,
                     title: str = "", pad: float = 0.35, ncol: int = 4):
    """Crops of the image around each instance, ``ncol`` to a row: visible (blue), predicted amodal
    (green outline), ground truth amodal (orange outline) where known."""
    k = min(n, len(instances))
    cols = min(ncol, max(k, 1))
    rows = max(1, -(-k // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols + 0.2, 1.9 * rows + 0.5), squeeze=False)
    for ax in axes.ravel()[k:]:
        ax.remove()
    for ax, inst in zip(axes.ravel(), instances[:k]):
        draw_completion(ax, ann, inst, masks[inst.id], pad)
        occ = "" if inst.occlusion_rate is None else f" {100 * inst.occlusion_rate:.0f}% hidden"
        ax.set_title(f"{inst.category}{occ}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle((title + "\n" if title else "") + "blue: visible, green: predicted, orange dashed: GT amodal",
                 fontsize=9)
    fig.tight_layout()
    return fig
