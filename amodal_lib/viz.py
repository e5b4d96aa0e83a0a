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


def _draw_completion(ax, ann: AnnotationSet, inst: Instance, mask, pad: float) -> None:
    """The image around ``inst`` (its amodal box, else its visible box, grown by ``pad``) with the
    visible mask blue, ``mask`` (an RLE) outlined green and the GT amodal mask orange dashed."""
    x, y, w, h = inst.amodal_box or inst.visible_box
    x0, y0 = int(max(x - pad * w, 0)), int(max(y - pad * h, 0))
    x1, y1 = int(min(x + (1 + pad) * w, inst.width)), int(min(y + (1 + pad) * h, inst.height))
    vis = M.decode(inst.visible)
    img = overlay(load_image(ann, inst.image_id), [(vis, VISIBLE_COLOR)], inst.height, inst.width, 0.45)
    ax.imshow(img[y0:y1, x0:x1], interpolation="nearest")
    ax.contour(M.decode(mask)[y0:y1, x0:x1], levels=[0.5], colors=[PRED_COLOR], linewidths=1.5)
    if inst.amodal is not None:
        ax.contour(M.decode(inst.amodal)[y0:y1, x0:x1], levels=[0.5], colors=[HIDDEN_COLOR],
                   linewidths=1.2, linestyles="--")


def plot_completions(instances: Sequence[Instance], masks: dict, ann: AnnotationSet, n: int = 8,
                     title: str = "", pad: float = 0.35):
    """Crops of the image around each instance: visible (blue), predicted amodal (green outline),
    ground truth amodal (orange outline) where known."""
    k = min(n, len(instances))
    fig, axes = plt.subplots(1, k, figsize=(2.2 * k, 2.4), squeeze=False)
    for ax, inst in zip(axes[0], instances[:k]):
        _draw_completion(ax, ann, inst, masks[inst.id], pad)
        occ = "" if inst.occlusion_rate is None else f" {100 * inst.occlusion_rate:.0f}% hidden"
        ax.set_title(f"{inst.category}{occ}", fontsize=8)
        ax.set_axis_off()
    if title:
        fig.suptitle(title + "  (blue: visible, green: predicted, orange dashed: GT amodal)", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- PCNet-M (notebook 10)
ERASER_COLOR = np.array([0.84, 0.37, 0.0])    # vermillion


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


def plot_pcnet_completions(ann: AnnotationSet, instances: Sequence[Instance], inputs, probs, rows: dict,
                           pad: float = 0.3):
    """PCNet-M on a few instances, one column each. Row 1: the network's input in its square crop
    (visible mask blue, eraser vermillion); row 2: its class-1 probability (0 dark to 1 yellow);
    then one row per ``rows`` entry ({name: {id: RLE}}): the completion pasted back into the
    image (green) against the GT amodal mask (orange dashed). ``inputs`` (N, 2, S, S) and
    ``probs`` (N, S, S) are :func:`amodal_lib.predict.pcnet.predict_crops`'s."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    k = len(instances)
    fig, axes = plt.subplots(2 + len(rows), k, figsize=(1.9 * max(k, 4), 1.9 * (2 + len(rows)) + 0.5),
                             squeeze=False)
    for c, inst in enumerate(instances):
        rgb = np.ones(tuple(inputs.shape[-2:]) + (3,))
        rgb[np.asarray(inputs[c, 0]) > 0] = VISIBLE_COLOR
        rgb[np.asarray(inputs[c, 1]) > 0] = ERASER_COLOR
        axes[0, c].imshow(rgb, interpolation="nearest")
        occ = "" if inst.occlusion_rate is None else f" {100 * inst.occlusion_rate:.0f}% hidden"
        axes[0, c].set_title(f"{inst.category}{occ}", fontsize=8)
        axes[1, c].imshow(np.asarray(probs[c]), vmin=0, vmax=1, cmap="viridis")
        for r, masks in enumerate(rows.values(), start=2):
            _draw_completion(axes[r, c], ann, inst, masks[inst.id], pad)
    for r, name in enumerate(["input (crop)", "P(object), 0-1"] + list(rows)):
        axes[r, 0].set_ylabel(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([]); ax.set_yticks([])
    handles = [Patch(color=VISIBLE_COLOR, label="visible mask"), Patch(color=ERASER_COLOR, label="eraser (occluders)"),
               Line2D([], [], color=PRED_COLOR, lw=1.5, label="completion"),
               Line2D([], [], color=HIDDEN_COLOR, lw=1.2, ls="--", label="GT amodal mask")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


# --------------------------------------------------------------------------- analyses (notebooks 04-09)
PROTOCOL_NAMES = {"A": "protocol A (pooled)", "B": "protocol B (per-instance mean)"}
METRIC_NAMES = {"full": "full mIoU", "invisible": "invisible mIoU"}
METRIC_TITLES = {"full": "Full mIoU", "invisible": "Invisible mIoU"}


def plot_threshold_sweep(sweep: pd.DataFrame, chosen: float, paper: float = 0.1, title: str = ""):
    """Full and invisible mIoU against the decoder threshold t, protocols A (solid) and B (dashed),
    with our chosen t and the paper's t marked."""
    pal = sns.color_palette("colorblind")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for ax, metric in zip(axes, ("full", "invisible")):
        for prot, ls, mk in (("A", "-", "o"), ("B", "--", "s")):
            col = f"{prot}_{metric}"
            ax.plot(sweep.threshold, sweep[col], ls=ls, marker=mk, ms=4, color=pal[0 if prot == "A" else 2],
                    label=PROTOCOL_NAMES[prot])
        ax.axvline(chosen, color=pal[1], lw=1.5, label=f"ours: t = {chosen:g}")
        ax.axvline(paper, color=pal[7], lw=1.2, ls=":", label=f"paper: t = {paper:g}")
        ax.set(xlabel="decoder threshold t (probability)", ylabel=f"{METRIC_NAMES[metric]} (%)",
               title=METRIC_TITLES[metric] + " vs threshold", xlim=(0, 1))
    axes[0].legend(fontsize=8, loc="lower center")
    if title:
        fig.suptitle(title, fontsize=11)
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


def plot_miou_vs_visible(long: pd.DataFrame, order: Optional[Sequence[str]] = None, title: str = ""):
    """Supplementary Fig 1: mIoU against the visible-area ratio (bin centres), one curve per method;
    columns full / invisible mIoU, rows protocols A and B. ``long`` is analysis.per_bin_long."""
    order = list(order or dict.fromkeys(long.method))
    pal = dict(zip(order, sns.color_palette("colorblind", len(order))))
    markers = dict(zip(order, "osD^vP*X<>"))
    prots = [p for p in ("A", "B") if (long.protocol == p).any()] or ["A"]
    fig, axes = plt.subplots(len(prots), 2, figsize=(11, 3.6 * len(prots)), squeeze=False, sharex=True)
    for r, prot in enumerate(prots):
        for c, metric in enumerate(("full", "invisible")):
            ax = axes[r, c]
            sub = long[(long.protocol == prot) & (long.metric == metric)]
            for m in order:
                s = sub[sub.method == m].sort_values("visible_ratio")
                if len(s):
                    ax.plot(s.visible_ratio, s.miou, marker=markers[m], ms=5, lw=1.6, color=pal[m], label=m,
                            ls="--" if "best" in m else "-")
            ax.set(title=f"{METRIC_TITLES[metric]}, {PROTOCOL_NAMES[prot]}", xlim=(0, 1),
                   ylabel=f"{METRIC_NAMES[metric]} (%)")
            if r == len(prots) - 1:
                ax.set_xlabel("visible-area ratio (visible / amodal area), bin centre")
    h, lab = axes[0, 0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=min(len(lab), 4), fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.07 if len(lab) <= 4 else 0.11, 1, 1))
    return fig


def plot_posterior_width(table: pd.DataFrame, title: str = ""):
    """Supplementary Fig 4: mean predicted posterior std of the narrowest latent dims (x, narrowest
    first), grouped by occlusion (bars). ``table`` is analysis.posterior_width(...).table."""
    t = table.dropna(subset=["mean_std"]).copy()
    t["latent"] = "z" + t["dim"].astype(str)
    order = list(dict.fromkeys(t.sort_values("rank")["latent"]))
    groups = [g for g in ("0%", "1-50%", ">50%") if (t.group == g).any()]
    n = t.groupby("group")["n"].first()
    t["occlusion"] = t.group.map(lambda g: f"{g} occluded (n={n[g]})")
    hue_order = [f"{g} occluded (n={n[g]})" for g in groups]
    fig, ax = plt.subplots(figsize=(max(7, 0.55 * len(order) + 2), 3.8))
    sns.barplot(data=t, x="latent", y="mean_std", hue="occlusion", order=order, hue_order=hue_order,
                palette="colorblind", ax=ax)
    ax.axhline(1.0, color="0.3", ls=":", lw=1, label="prior std (1)")
    ax.set(xlabel="latent dimension (sorted by mean std over all test instances)",
           ylabel="mean posterior std", title=title or "Posterior width vs occlusion")
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="GT occlusion", title_fontsize=8)
    fig.tight_layout()
    return fig


def plot_prior_samples(probs, ncol: int = 8, title: str = "Samples from the prior (Bernoulli probabilities)"):
    """Supplementary Fig 3: decoded probabilities of z ~ N(0, I), greyscale in [0, 1], before
    binarisation."""
    probs = np.asarray(probs)
    nrow = int(np.ceil(len(probs) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * 1.0, nrow * 1.0 + 0.6), squeeze=False)
    im = None
    for k, ax in enumerate(axes.ravel()):
        if k < len(probs):
            im = ax.imshow(probs[k], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([]); ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    if im is not None:
        cax = fig.add_axes([0.93, 0.15, 0.02, 0.7])
        fig.colorbar(im, cax=cax, label="p(pixel in mask)")
    return fig


def plot_posterior_samples(blocks: Sequence[tuple], title: str = ""):
    """Supplementary Fig 9: several posterior samples per partial mask. ``blocks`` is
    ``[(block title, rows)]`` (e.g. mostly visible, heavily occluded: side by side); each row is
    ``(label, visible crop (S, S) in the visible box, samples (k, S, S) in the predicted full-object
    frame, visible mask in that frame (S, S) or None, GT amodal mask in that frame or None)``."""
    k = max((len(r[2]) for _, rows in blocks for r in rows), default=0)
    nrow = max((len(rows) for _, rows in blocks), default=0)
    ncol = k + 2
    fig = plt.figure(figsize=(len(blocks) * (ncol * 0.8 + 0.9), nrow * 0.85 + 0.9))
    subs = fig.subfigures(1, len(blocks), wspace=0.02) if len(blocks) > 1 else [fig]
    for sf, (btitle, rows) in zip(np.atleast_1d(subs), blocks):
        axes = sf.subplots(max(nrow, 1), ncol, squeeze=False)
        sf.subplots_adjust(left=0.16, right=0.99, top=1 - 0.75 / (nrow * 0.85 + 0.9), bottom=0.02,
                           wspace=0.06, hspace=0.08)
        for r in range(axes.shape[0]):
            for c in range(ncol):
                ax = axes[r, c]
                ax.set_xticks([]); ax.set_yticks([])
                if r >= len(rows):
                    ax.set_axis_off()
                    continue
                label, vis, samples, vis_out, gt_out = rows[r]
                if c == 0:
                    ax.imshow(np.asarray(vis), cmap="Blues", vmin=0, vmax=1.3)
                    ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
                elif c <= len(samples):
                    ax.imshow(np.asarray(samples[c - 1]), cmap="gray", vmin=0, vmax=1)
                    if vis_out is not None:
                        ax.contour(np.asarray(vis_out), levels=[0.5], colors=[VISIBLE_COLOR], linewidths=0.8)
                elif gt_out is not None:
                    ax.imshow(np.asarray(gt_out), cmap="Oranges", vmin=0, vmax=1.3)
                else:
                    ax.set_axis_off()
                if r == 0:
                    ax.set_title("input\n(visible)" if c == 0 else ("GT\namodal" if c == ncol - 1 else f"sample\n{c}"),
                                 fontsize=7)
        sf.suptitle(btitle, fontsize=9)
    if title:
        fig.text(0.5, -0.02, title, ha="center", va="top", fontsize=8)
    return fig


def _hidden_layers(masks_and_vis):
    layers = []
    for amodal, vis in masks_and_vis:
        layers.append((vis, VISIBLE_COLOR))
        layers.append((amodal & (1 - vis), HIDDEN_COLOR))
    return layers


def plot_pred_vs_gt(ann: AnnotationSet, image_ids: Sequence, pred: dict, title: str = ""):
    """Supplementary Fig 5: for each image, predicted (left) and GT (right) amodal masks of its
    instances: visible part blue, completed hidden part orange, each amodal outline white."""
    by_img = ann.by_image()
    fig, axes = plt.subplots(len(image_ids), 2, figsize=(13, 2.3 * len(image_ids) + 0.4), squeeze=False)
    for row, image_id in zip(axes, image_ids):
        insts = [i for i in by_img[image_id] if i.id in pred]
        h, w = insts[0].height, insts[0].width
        rgb = load_image(ann, image_id)
        for ax, which in zip(row, ("Pred", "GT")):
            pairs = []
            for i in insts:
                m = M.decode(pred[i.id] if which == "Pred" else i.amodal)
                pairs.append((m, M.decode(i.visible)))
            ax.imshow(overlay(rgb, _hidden_layers(pairs), h, w, alpha=0.5))
            for m, _ in pairs:
                if m.any():
                    ax.contour(m, levels=[0.5], colors="white", linewidths=0.7)
            ax.set_axis_off()
            ax.set_title(f"{which}: image {image_id}", fontsize=9)
    fig.suptitle((title + "\n" if title else "") + "visible part: blue; hidden part of the amodal mask: orange; "
                 "amodal outline: white", fontsize=9)
    fig.tight_layout()
    return fig


def plot_box_pairs(ann: AnnotationSet, instances: Sequence[Instance], rows: Sequence[tuple], pad: float = 0.25,
                   title: str = ""):
    """Supplementary Figs 7-8: the same instances completed several ways, one row per way.
    ``rows``: ``[(label, {id: RLE}, {id: full IoU}, {id: xyxy box used} or None)]``. Each panel:
    the image around the instance, visible mask blue, prediction green outline, GT amodal orange
    dashed, the box the completion was drawn in as a green dotted rectangle."""
    n = len(instances)
    fig, axes = plt.subplots(len(rows), n, figsize=(2.3 * n, 2.5 * len(rows) + 0.4), squeeze=False)
    for c, inst in enumerate(instances):
        boxes = [inst.amodal_box or inst.visible_box]
        for _, _, _, bx in rows:
            if bx is not None and inst.id in bx:
                x1, y1, x2, y2 = [float(v) for v in bx[inst.id]]
                boxes.append((x1, y1, x2 - x1, y2 - y1))
        xs = [b[0] for b in boxes] + [b[0] + b[2] for b in boxes]
        ys = [b[1] for b in boxes] + [b[1] + b[3] for b in boxes]
        w, h = max(xs) - min(xs), max(ys) - min(ys)
        x0, y0 = int(max(min(xs) - pad * w, 0)), int(max(min(ys) - pad * h, 0))
        x1, y1 = int(min(max(xs) + pad * w, inst.width)), int(min(max(ys) + pad * h, inst.height))
        vis = M.decode(inst.visible)
        rgb = load_image(ann, inst.image_id)
        if rgb is not None:  # a grey image, so that the coloured overlays stand out
            rgb = np.repeat(rgb.mean(-1, keepdims=True), 3, -1) * 0.6 + 80
        img = overlay(rgb, [(vis, VISIBLE_COLOR)], inst.height, inst.width, 0.6)
        for r, (label, masks, ious, bx) in enumerate(rows):
            ax = axes[r, c]
            ax.imshow(img[y0:y1, x0:x1], interpolation="nearest", extent=(x0, x1, y1, y0))
            pm = M.decode(masks[inst.id])[y0:y1, x0:x1]
            xx, yy = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
            if pm.any():
                ax.contour(xx, yy, pm, levels=[0.5], colors=[PRED_COLOR], linewidths=1.6)
            if inst.amodal is not None:
                ax.contour(xx, yy, M.decode(inst.amodal)[y0:y1, x0:x1], levels=[0.5], colors=[HIDDEN_COLOR],
                           linewidths=1.2, linestyles="--")
            if bx is not None and inst.id in bx:
                bx1, by1, bx2, by2 = [float(v) for v in bx[inst.id]]
                ax.add_patch(plt.Rectangle((bx1, by1), bx2 - bx1, by2 - by1, fill=False, ec=PRED_COLOR, lw=1,
                                           ls=":"))
            ax.set_xlim(x0, x1); ax.set_ylim(y1, y0)
            ax.set_xticks([]); ax.set_yticks([])
            iou = ious.get(inst.id)
            ax.set_title((f"full IoU {100 * iou:.0f}%" if iou is not None else "") +
                         (f"\n{inst.category}, {100 * inst.occlusion_rate:.0f}% hidden"
                          if r == 0 and inst.occlusion_rate is not None else ""), fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle((title + "\n" if title else "") + "blue: visible; green: completion (dotted: its box); "
                 "orange dashed: GT amodal", fontsize=9)
    fig.tight_layout()
    return fig
