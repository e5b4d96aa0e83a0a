"""Figures of scene editing (notebook 12): the inpainters' training, holes filled beside the
classical baselines, and supplementary Fig 6 (before / completed shapes / the background
inpainter alone / the edit)."""
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


def edit_panels(image: np.ndarray, instances: Sequence, result, without: Optional[np.ndarray] = None) -> list:
    """The panels of one edit, as (title, RGB float image): before (the removed instances tinted),
    the completed shapes over the edited image (visible part blue, revealed part orange), the same
    hole filled by the background inpainter alone (``without``, when given: what the shape adds)
    and the edited image."""
    H, W = image.shape[:2]
    removed = np.zeros((H, W), bool)
    for i in instances:
        if i.id in result.removed:
            removed |= M.decode(i.visible).astype(bool)
    before = overlay(image, [(removed, REMOVED_COLOR)], H, W, 0.5)
    layers = []
    for i in instances:
        if i.id in result.completed:
            layers.append((M.decode(result.masks[i.id]).astype(bool) & ~result.revealed[i.id], VISIBLE_COLOR))
            layers.append((result.revealed[i.id], HIDDEN_COLOR))
    shapes = overlay(result.image, layers, H, W, 0.6)
    panels = [("before (to remove: purple)", before), ("completed shapes (visible blue, revealed orange)", shapes)]
    if without is not None:
        panels.append(("background inpainter alone (no shape)", np.asarray(without) / 255.0))
    return panels + [("edited (ours)", result.image / 255.0)]


def edit_window(result, H: int, W: int, aspect: float, grow: float = 1.3) -> tuple:
    """(y0, y1, x0, x1): a window of ``aspect`` (width / height) about the edit (the repainted
    pixels and the completed objects), grown by ``grow``, moved inside the image (clipped only
    where the image is smaller)."""
    region = result.hole.copy()
    for full in result.completed.values():
        region |= M.decode(full).astype(bool)
    ys, xs = np.nonzero(region)
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    h = max((ys.max() - ys.min() + 1) * grow, (xs.max() - xs.min() + 1) * grow / aspect, 32)
    h = min(h, H)
    w = min(h * aspect, W)
    y0 = int(round(min(max(cy - h / 2, 0), H - h)))
    x0 = int(round(min(max(cx - w / 2, 0), W - w)))
    return y0, y0 + int(round(h)), x0, x0 + int(round(w))


def plot_scene_edits(edits: Sequence[tuple], crop: bool = True, aspect: float = 2.4, width: float = 13.0):
    """Supplementary Fig 6: one row per edit ``(image, instances of the image, EditResult)``, or with
    a fourth item, the same hole filled by the background inpainter alone: the panels of
    :func:`edit_panels`, the completed full masks outlined green. With ``crop`` each row shows a
    window of ``aspect`` about the edit (:func:`edit_window`); the figure's height follows from the
    panels' (no empty space between rows)."""
    n = len(edits)
    cols = 3 + any(len(e) > 3 and e[3] is not None for e in edits)
    pw = width / cols
    ph = pw / aspect if crop else pw * edits[0][0].shape[0] / edits[0][0].shape[1]
    title = 0.3
    fig, axes = plt.subplots(n, cols, figsize=(width, n * ph + title), squeeze=False)
    fig.subplots_adjust(left=0.003, right=0.997, bottom=0.003, top=1 - title / (n * ph + title), wspace=0.012,
                        hspace=0.012 * aspect)
    for r, e in enumerate(edits):
        image, instances, result = e[:3]
        H, W = image.shape[:2]
        y0, y1, x0, x1 = edit_window(result, H, W, aspect) if crop and result.hole.any() else (0, H, 0, W)
        panels = edit_panels(image, instances, result, e[3] if len(e) > 3 else None)
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(panels):
                ax.axis("off")
                continue
            title_c, panel = panels[c]
            ax.imshow(panel[y0:y1, x0:x1], interpolation="nearest", aspect="auto")
            if c == 1:
                for full in result.completed.values():
                    ax.contour(M.decode(full)[y0:y1, x0:x1], levels=[0.5], colors=[PRED_COLOR], linewidths=1.0)
            if r == 0:
                ax.set_title(title_c, fontsize=9)
    return fig
