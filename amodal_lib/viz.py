"""Plots shared by the notebooks. Each returns a matplotlib Figure; notebooks save it with
``ctx.save_figure``. Palettes are seaborn's colour-blind-safe ones."""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .data import masks as M
from .data.records import AnnotationSet, Instance

VISIBLE_COLOR = np.array([0.0, 0.45, 0.70])   # colour-blind palette: blue
HIDDEN_COLOR = np.array([0.90, 0.62, 0.0])    # orange
PRED_COLOR = np.array([0.0, 0.62, 0.45])      # green


def load_image(ann: AnnotationSet, image_id) -> Optional[np.ndarray]:
    """The RGB image of ``image_id`` as HxWx3 uint8, or None when no image folder is known."""
    from PIL import Image
    try:
        return np.asarray(Image.open(ann.image_path(image_id)).convert("RGB"))
    except (FileNotFoundError, KeyError, OSError):
        return None


def overlay(rgb: Optional[np.ndarray], layers: Sequence[tuple], height: int, width: int, alpha: float = 0.55):
    """Blend binary masks (``(mask, rgb colour)`` pairs) over an image (grey when there is none)."""
    base = np.full((height, width, 3), 0.85) if rgb is None else rgb.astype(np.float64) / 255
    out = base.copy()
    for m, color in layers:
        m = m.astype(bool)
        out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color)
    return out


def instance_table(ann: AnnotationSet) -> pd.DataFrame:
    """One row per instance: category, occlusion rate, areas (what the data plots are made of)."""
    return pd.DataFrame([{"id": i.id, "category": i.category, "visible_area": i.visible_area,
                          "amodal_area": i.amodal_area, "occlusion_rate": i.occlusion_rate,
                          "unoccluded_modal": i.is_unoccluded, "n_occluders": len(i.occluders)}
                         for i in ann.instances])


def plot_examples(ann: AnnotationSet, n: int = 4, seed: int = 0):
    """Images with visible (blue) and hidden amodal (orange) parts of every instance overlaid."""
    rng = np.random.default_rng(seed)
    by_img = ann.by_image()
    ids = sorted(by_img, key=lambda k: -sum((i.occlusion_rate or 0) > 0.2 for i in by_img[k]))[: max(n * 4, n)]
    ids = list(rng.choice(ids, size=min(n, len(ids)), replace=False))
    fig, axes = plt.subplots(len(ids), 1, figsize=(10, 2.2 * len(ids)), squeeze=False)
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
        for i in insts:
            x, y, bw, bh = i.amodal_box or i.visible_box
            ax.add_patch(plt.Rectangle((x, y), bw, bh, fill=False, lw=0.8, ec="white"))
            if i.occlusion_rate is not None:
                ax.text(x, y - 1, f"{i.category} {100 * i.occlusion_rate:.0f}%", color="white", fontsize=6,
                        bbox=dict(facecolor="black", alpha=0.5, pad=0.5, lw=0))
        ax.set_axis_off()
        ax.set_title(f"image {image_id}: visible (blue), hidden part of the amodal mask (orange)", fontsize=9)
    fig.tight_layout()
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
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0), squeeze=False)
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
                     title: str = "", pad: float = 0.35):
    """Crops of the image around each instance: visible (blue), predicted amodal (green outline),
    ground truth amodal (orange outline) where known."""
    k = min(n, len(instances))
    fig, axes = plt.subplots(1, k, figsize=(2.2 * k, 2.4), squeeze=False)
    for ax, inst in zip(axes[0], instances[:k]):
        x, y, w, h = inst.amodal_box or inst.visible_box
        x0, y0 = int(max(x - pad * w, 0)), int(max(y - pad * h, 0))
        x1, y1 = int(min(x + (1 + pad) * w, inst.width)), int(min(y + (1 + pad) * h, inst.height))
        vis = M.decode(inst.visible)
        img = overlay(load_image(ann, inst.image_id), [(vis, VISIBLE_COLOR)], inst.height, inst.width, 0.45)
        ax.imshow(img[y0:y1, x0:x1], interpolation="nearest")
        pred = M.decode(masks[inst.id])[y0:y1, x0:x1]
        ax.contour(pred, levels=[0.5], colors=[PRED_COLOR], linewidths=1.5)
        if inst.amodal is not None:
            ax.contour(M.decode(inst.amodal)[y0:y1, x0:x1], levels=[0.5], colors=[HIDDEN_COLOR],
                       linewidths=1.2, linestyles="--")
        occ = "" if inst.occlusion_rate is None else f" {100 * inst.occlusion_rate:.0f}% hidden"
        ax.set_title(f"{inst.category}{occ}", fontsize=8)
        ax.set_axis_off()
    if title:
        fig.suptitle(title + "  (blue: visible, green: predicted, orange dashed: GT amodal)", fontsize=9)
    fig.tight_layout()
    return fig
