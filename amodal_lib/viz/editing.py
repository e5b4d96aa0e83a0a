"""Figures of scene editing (notebook 12): the inpainters' training, holes filled beside the
classical baselines, and supplementary Fig 6 (before / removed / completed shapes / inpainted)."""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..data import masks as M
from .base import HIDDEN_COLOR, PRED_COLOR, VISIBLE_COLOR, overlay

REMOVED_COLOR = np.array([0.80, 0.47, 0.65])   # colour-blind palette: reddish purple


def plot_inpainter_training(histories: dict, baselines: Optional[dict] = None):
    """Left: each inpainter's training loss; right: its validation hole PSNR at each evaluation,
    with the step whose weights the run kept marked, and (``baselines`` {name: PSNR}) levels to
    beat. ``histories``: {name: the engine's history records}."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for k, (name, history) in enumerate(histories.items()):
        h = pd.DataFrame(list(history))
        if not len(h):
            continue
        tr, va, sel = h[h.split == "train"], h[h.split == "val"], h[h.split == "selected"]
        axes[0].plot(tr.step, tr.loss, label=name, color=f"C{k}")
        if len(va):
            axes[1].plot(va.step, va.val_hole_psnr, "o-", label=f"{name} (validation)", color=f"C{k}")
        if len(sel):
            axes[1].plot(sel.step, sel.val_hole_psnr, "*", ms=14, color=f"C{k}", label=f"{name}: kept")
    for j, (name, level) in enumerate((baselines or {}).items()):
        axes[1].axhline(level, ls="--", lw=1, color=f"C{j + 4}", label=name)
    axes[0].set(xlabel="step", ylabel="training loss (Liu et al.'s sum)", yscale="log", title="training loss")
    axes[1].set(xlabel="step", ylabel="hole PSNR (dB)", title="validation: PSNR inside the holes")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_filled_holes(truths: Sequence[np.ndarray], holes: Sequence[np.ndarray], filled: dict,
                      title: str = ""):
    """One row per example: the image, its hole (grey), and each method's fill ({name: [images]})."""
    n, cols = len(truths), 2 + len(filled)
    fig, axes = plt.subplots(n, cols, figsize=(2.6 * cols, 1.0 + 1.6 * n * truths[0].shape[0] / truths[0].shape[1]
                                               * cols / 2.2), squeeze=False)
    for r in range(n):
        shown = truths[r].copy()
        shown[holes[r]] = 128
        panels = [("image", truths[r]), ("hole", shown)] + [(k, v[r]) for k, v in filled.items()]
        for c, (name, im) in enumerate(panels):
            axes[r, c].imshow(im, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def edit_panels(image: np.ndarray, instances: Sequence, result) -> list:
    """The four panels of one edit, as (title, RGB float image): before (the removed instances
    tinted), the removed region (grey), the completed shapes (visible blue, revealed orange, the
    full mask's outline green) and the inpainted result."""
    H, W = image.shape[:2]
    removed = np.zeros((H, W), bool)
    for i in instances:
        if i.id in result.removed:
            removed |= M.decode(i.visible).astype(bool)
    before = overlay(image, [(removed, REMOVED_COLOR)], H, W, 0.5)
    holed = image.astype(np.float64) / 255
    holed[result.hole] = 0.5
    layers = []
    for i in instances:
        if i.id in result.completed:
            layers.append((M.decode(result.masks[i.id]).astype(bool) & ~result.revealed[i.id], VISIBLE_COLOR))
            layers.append((result.revealed[i.id], HIDDEN_COLOR))
    shapes = overlay(result.background, layers, H, W, 0.6)
    return [("before (removed: purple)", before), ("object removed", holed),
            ("completed shapes (visible blue, revealed orange)", shapes), ("inpainted", result.image / 255.0)]


def plot_scene_edits(edits: Sequence[tuple], crop: bool = True):
    """Supplementary Fig 6: one row per edit ``(image, instances of the image, EditResult)``:
    before, the object removed, the completed shapes, the inpainted result. With ``crop`` each row
    shows the region around the edit (the hole's box grown 60 %, at least 3:1 wide)."""
    n = len(edits)
    fig, axes = plt.subplots(n, 4, figsize=(14, 1.0 + 2.2 * n), squeeze=False)
    for r, (image, instances, result) in enumerate(edits):
        H, W = image.shape[:2]
        y0, y1, x0, x1 = 0, H, 0, W
        if crop and result.hole.any():
            ys, xs = np.nonzero(result.hole | np.any([result.revealed[k] for k in result.revealed] or [result.hole], 0))
            cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
            h = max((ys.max() - ys.min()) * 1.6, 48)
            w = max((xs.max() - xs.min()) * 1.6, 3 * h)
            y0, y1 = int(max(cy - h / 2, 0)), int(min(cy + h / 2, H))
            x0, x1 = int(max(cx - w / 2, 0)), int(min(cx + w / 2, W))
        for c, (title, panel) in enumerate(edit_panels(image, instances, result)):
            ax = axes[r, c]
            ax.imshow(panel[y0:y1, x0:x1], interpolation="nearest")
            for k, full in result.completed.items():
                if c == 2:
                    ax.contour(M.decode(full)[y0:y1, x0:x1], levels=[0.5], colors=[PRED_COLOR], linewidths=1.2)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
