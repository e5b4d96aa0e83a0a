"""Figures of the segmentation-input experiment (notebook 11): the segmentation network's training,
Table 1 with the paper's numbers, the drop from GT to predicted input per visible-area ratio, the
robustness curves, and predicted masks with their completions in the image."""
from __future__ import annotations

import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..data import masks as M
from ..data.records import AnnotationSet, Instance
from .base import (HIDDEN_COLOR, METRIC_NAMES, METRIC_TITLES, PRED_COLOR, PROTOCOL_NAMES, VISIBLE_COLOR, draw_completion,
                   legend_below)


def plot_segmenter_history(history: Sequence[dict], baselines: dict, title: str = "ResNet-PSP"):
    """Training loss (left); right, the training batches' IoU and the validation crops' IoU (%)
    at each evaluation (in the crops, margins included), the step kept marked, beside
    ``baselines`` ({name: IoU %}, horizontal: e.g. the test masks pasted into the image)."""
    hist = pd.DataFrame(list(history))
    tr, va = hist[hist.split == "train"], hist[hist.split == "val"]
    sel = hist[hist.split == "selected"]
    pal = sns.color_palette("colorblind")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(tr.step, tr.loss, color=pal[0])
    axes[0].set(xlabel="step", ylabel="binary cross-entropy", yscale="log", title=f"{title}: training loss")
    axes[1].plot(tr.step, 100 * tr.iou, color=pal[0], label="training batches (IoU, %)")
    axes[1].plot(va.step, va.val_visible_iou, "o-", color=pal[2], label="validation crops (IoU, %)")
    if len(sel):
        axes[1].plot(sel.step, sel.val_visible_iou, "*", ms=14, color=pal[3], label="checkpoint kept")
    for k, (name, v) in enumerate(baselines.items()):
        axes[1].axhline(v, ls=":", color=pal[4 + k], label=f"{name} (test, in the image, pooled)")
    axes[1].set(xlabel="step", ylabel="visible-mask IoU (%)", title="visible masks during training")
    legend_below(fig, axes[1:], ncol=2, fontsize=8.5)
    return fig


def plot_table1(table: pd.DataFrame, protocol: str = "A"):
    """Table 1 as bars: full and invisible mIoU of each method with GT and with predicted input;
    the paper's KINS numbers as black diamonds where it gives one."""
    methods = list(dict.fromkeys(table.method))
    inputs = list(dict.fromkeys(table["input"]))
    pal = sns.color_palette("colorblind", len(inputs))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(inputs)
    for ax, metric in zip(axes, ("full", "invisible")):
        for j, inp in enumerate(inputs):
            sub = table[table["input"] == inp].set_index("method").reindex(methods)
            x = np.arange(len(methods)) + (j - (len(inputs) - 1) / 2) * width
            ax.bar(x, sub[f"{protocol}_{metric}"].astype(float), width, color=pal[j], label=f"{inp} input (ours)")
            ref = sub[f"paper_{metric}"].astype(float)
            ax.plot(x[ref.notna().values], ref.dropna(), "kD", ms=6, label="paper (KINS)" if j == 0 else None)
        ax.set_xticks(np.arange(len(methods)))
        ax.set_xticklabels([textwrap.fill(m, 16) for m in methods], fontsize=8)
        ax.set(ylabel=f"{METRIC_NAMES[metric]} (%)", title=f"{METRIC_TITLES[metric]}, {PROTOCOL_NAMES[protocol]}")
        lo = np.nanmin(table[[f"{protocol}_{metric}", f"paper_{metric}"]].astype(float).values)
        ax.set_ylim(max(0.0, np.floor(lo / 10) * 10 - 10) if metric == "full" else 0.0, 100)
    legend_below(fig, axes[:1], ncol=3)
    return fig


def plot_drop_per_bin(per_bin: pd.DataFrame, protocol: str = "B"):
    """mIoU against the visible-area ratio (bin centres) with GT input (solid) and predicted input
    (dashed), one colour per method; full (left) and invisible (right). ``per_bin`` is
    :func:`amodal_lib.experiments.segmentation_input.drop_per_bin`'s."""
    d = per_bin[per_bin.protocol == protocol]
    methods = list(dict.fromkeys(d.method))
    pal = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for ax, metric in zip(axes, ("full", "invisible")):
        s = d[d.metric == metric]
        for m in methods:
            c = s[s.method == m].sort_values("visible_ratio")
            ax.plot(c.visible_ratio, c.gt_input, "o-", color=pal[m], ms=4, lw=1.5, label=f"{m}, GT input")
            ax.plot(c.visible_ratio, c.predicted_input, "s--", color=pal[m], ms=4, lw=1.5, label=f"{m}, predicted input")
        ax.set(xlim=(0, 1), xlabel="visible-area ratio (GT visible / amodal area)",
               ylabel=f"{METRIC_NAMES[metric]} (%)", title=f"{METRIC_TITLES[metric]}, {PROTOCOL_NAMES[protocol]}")
    legend_below(fig, axes[:1], ncol=2, fontsize=8.5)
    return fig


def plot_robustness(rob: pd.DataFrame, protocol: str = "A"):
    """Full (top) and invisible (bottom) mIoU against the corruption's strength (pixels), one column
    per corruption, one curve per method; the input mask's IoU with the GT visible mask on top
    axis labels. ``rob`` is :func:`amodal_lib.experiments.segmentation_input.robustness`'s."""
    kinds = list(dict.fromkeys(rob.kind))
    methods = list(dict.fromkeys(rob.method))
    pal = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    markers = dict(zip(methods, "osD^v"))
    fig, axes = plt.subplots(2, len(kinds), figsize=(3.3 * len(kinds), 5.6), squeeze=False, sharey="row")
    for c, kind in enumerate(kinds):
        for r, metric in enumerate(("full", "invisible")):
            ax = axes[r, c]
            s = rob[rob.kind == kind]
            for m in methods:
                cm = s[s.method == m].sort_values("strength")
                ax.plot(cm.strength, cm[f"{protocol}_{metric}"], marker=markers[m], color=pal[m], lw=1.5, ms=5, label=m)
            q = s.drop_duplicates("strength").sort_values("strength")
            ax.set_xticks(q.strength)
            ax.set_xticklabels([f"{v:g}\n({iou:.0f}%)" for v, iou in zip(q.strength, q.input_visible_iou)], fontsize=8)
            ax.set(title=f"{kind}: {METRIC_TITLES[metric]}" if r == 0 else METRIC_TITLES[metric],
                   ylabel=f"{METRIC_NAMES[metric]} (%, {protocol})" if c == 0 else "")
            ax.title.set_fontsize(10)
            if r == 1:
                ax.set_xlabel("strength, pixels\n(input's IoU with the GT visible mask)", fontsize=8.5)
    legend_below(fig, axes[:1, 0], ncol=3)
    return fig


def plot_segmentation_examples(ann: AnnotationSet, swapped: AnnotationSet, instances: Sequence[Instance],
                               images, probs, rows: dict, pad: float = 0.3):
    """A few instances, one column each. Row 1: the network's RGB crop; row 2: its probability of
    the visible mask (0 dark, 1 yellow); row 3: the predicted visible mask (green outline) against
    the GT visible mask (blue); then one row per ``rows`` entry ({name: {id: RLE}}): a completion
    of the predicted mask (blue: the predicted visible mask; green: the completion; orange
    dashed: the GT amodal mask). ``images`` / ``probs``: :func:`amodal_lib.predict.psp.predict_crops`'s."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    k = len(instances)
    by_id = swapped.by_id()
    fig, axes = plt.subplots(3 + len(rows), k, figsize=(1.2 * max(k, 4) + 0.4, 1.2 * (3 + len(rows)) + 0.4),
                             squeeze=False)
    for c, inst in enumerate(instances):
        axes[0, c].imshow(np.asarray(images[c]).transpose(1, 2, 0), interpolation="nearest")
        occ = "" if inst.occlusion_rate is None else f" {100 * inst.occlusion_rate:.0f}% hidden"
        axes[0, c].set_title(f"{inst.category}{occ}", fontsize=8)
        axes[1, c].imshow(np.asarray(probs[c]), vmin=0, vmax=1, cmap="viridis")
        draw_completion(axes[2, c], ann, inst, by_id[inst.id].visible, pad)
        for r, masks in enumerate(rows.values(), start=3):
            draw_completion(axes[r, c], ann, by_id[inst.id], masks[inst.id], pad)
    for r, name in enumerate(["RGB crop\n(GT box)", "P(visible)\n0-1", "predicted\nvisible"]
                             + [textwrap.fill(n, 14) for n in rows]):
        axes[r, 0].set_ylabel(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([]); ax.set_yticks([])
    handles = [Patch(color=VISIBLE_COLOR, label="visible mask (row 3: GT; below: predicted)"),
               Line2D([], [], color=PRED_COLOR, lw=1.5, label="prediction / completion"),
               Line2D([], [], color=HIDDEN_COLOR, lw=1.2, ls="--", label="GT amodal mask")]
    fig.tight_layout(h_pad=0.3, w_pad=0.3)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False)
    return fig
