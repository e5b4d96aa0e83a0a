"""Figures of results: the supplementary's analyses (notebooks 04-09) and PCNet-M's completions (10)."""
from __future__ import annotations

import textwrap
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..data import masks as M
from ..data.crops import crop_masks
from ..data.records import AnnotationSet, Instance
from .base import (ERASER_COLOR, HIDDEN_COLOR, METRIC_NAMES, METRIC_TITLES, PRED_COLOR, PROTOCOL_NAMES, VISIBLE_COLOR,
                   draw_completion, hidden_layers, legend_below, load_image, overlay)


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
    fig, axes = plt.subplots(2 + len(rows), k, figsize=(1.2 * max(k, 4) + 0.4, 1.2 * (2 + len(rows)) + 0.4),
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
            draw_completion(axes[r, c], ann, inst, masks[inst.id], pad)
    for r, name in enumerate(["input\n(crop)", "P(object)\n0-1"] + [textwrap.fill(n, 14) for n in rows]):
        axes[r, 0].set_ylabel(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([]); ax.set_yticks([])
    handles = [Patch(color=VISIBLE_COLOR, label="visible mask"), Patch(color=ERASER_COLOR, label="eraser (occluders)"),
               Line2D([], [], color=PRED_COLOR, lw=1.5, label="completion"),
               Line2D([], [], color=HIDDEN_COLOR, lw=1.2, ls="--", label="GT amodal mask")]
    fig.tight_layout(h_pad=0.3, w_pad=0.3)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    return fig


def plot_threshold_sweep(sweep: pd.DataFrame, chosen: float, paper: float = 0.1, title: str = ""):
    """Full and invisible mIoU against the decoder threshold t, protocols A (solid) and B (dashed),
    with our chosen t and the paper's t marked. With a ``set`` column
    (:func:`amodal_lib.experiments.comparison.recorded_sweep`) the curves are the rows of set "mean", the ones
    the choice is made on, and where there are several validation sets each one's protocol-A curve
    is drawn thin beside them."""
    pal = sns.color_palette("colorblind")
    sets = [s for s in dict.fromkeys(sweep.set) if s != "mean"] if "set" in sweep else []
    main = sweep[sweep.set == "mean"] if sets else sweep
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4), sharex=True)
    for ax, metric in zip(axes, ("full", "invisible")):
        for prot, ls, mk in (("A", "-", "o"), ("B", "--", "s")):
            col = f"{prot}_{metric}"
            ax.plot(main.threshold, main[col], ls=ls, marker=mk, ms=4, color=pal[0 if prot == "A" else 2],
                    label=PROTOCOL_NAMES[prot] + (", mean over the sets" if len(sets) > 1 else ""))
        for k, s in enumerate(sets if len(sets) > 1 else [], start=3):
            one = sweep[sweep.set == s]
            ax.plot(one.threshold, one[f"A_{metric}"], lw=0.9, color=pal[k], label=f"{s}, protocol A")
        ax.axvline(chosen, color=pal[1], lw=1.5, label=f"ours: t = {chosen:g}")
        ax.axvline(paper, color=pal[7], lw=1.2, ls=":", label=f"paper: t = {paper:g}")
        ax.set(xlabel="decoder threshold t (probability)", ylabel=f"{METRIC_NAMES[metric]} (%)",
               title=METRIC_TITLES[metric] + " vs threshold", xlim=(0, 1))
    if title:
        fig.suptitle(title, fontsize=11)
    legend_below(fig, axes[:1], ncol=2 if len(sets) <= 1 else 3)
    return fig


def plot_threshold_reasons(calibration: pd.DataFrame, crop: pd.DataFrame, sizes: pd.DataFrame,
                           image_sweep: pd.DataFrame, chosen: float, paper: float = 0.1, if_calibrated=None):
    """Why the threshold lies where it does (notebook 04, :mod:`amodal_lib.experiments.calibration`).
    Left: of the pixels outside the visible mask given probability p, the share inside the object,
    beside the diagonal (a calibrated decoder) and the share at which adding a pixel pays
    (``if_calibrated``). Middle: pooled full IoU against t at image resolution (``image_sweep``: the
    validation sweep) and at the decoder's 28x28 (``crop``). Right: full mIoU (A) against t at image
    resolution per object size (``sizes``), each curve's best t marked."""
    pal = sns.color_palette("colorblind")
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    c = calibration[calibration.pixels > 0]
    ax = axes[0]
    ax.plot(c.p_mid, c.object_share, "o-", color=pal[0], ms=4, label="share of object pixels (validation)")
    ax.plot([0, 1], [0, 1], ":", color="0.5", label="calibrated")
    if if_calibrated is not None:
        ax.axhline(if_calibrated, color=pal[2], lw=1, ls="--", label=f"J*/(1+J*) = {if_calibrated:.2f}: pays above")
    ax.set(xlabel="decoder probability p (outside the visible mask)", ylabel="share inside the object",
           title="calibration at image resolution", xlim=(0, 1), ylim=(0, 1))
    ax = axes[1]
    ax.plot(image_sweep.threshold, image_sweep.A_full, "o-", ms=4, color=pal[0], label="image resolution (A full)")
    ax.plot(crop.threshold, crop.crop_full_iou, "s--", ms=4, color=pal[2], label="28x28 crops (pooled full IoU)")
    ax.set(xlabel="threshold t", ylabel="full IoU (%)", title="the sweep at two resolutions", xlim=(0, 1))
    ax = axes[2]
    for k, (name, g) in enumerate(sizes.groupby("size", sort=False)):
        best = g.loc[g.A_full.idxmax()]
        ax.plot(g.threshold, g.A_full, "-", color=pal[k + 3], label=f"{name} (n={int(g.n.iloc[0])}): best t = {best.threshold:g}")
        ax.plot(best.threshold, best.A_full, "*", ms=10, color=pal[k + 3])
    ax.set(xlabel="threshold t", ylabel="full mIoU, A (%)", title="by the size the 28x28 output is pasted at",
           xlim=(0, 1))
    for ax in axes:
        ax.axvline(chosen, color=pal[1], lw=1.3, label=f"ours: t = {chosen:g}")
        ax.axvline(paper, color=pal[7], lw=1.1, ls=":", label=f"paper: t = {paper:g}")
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
    if title:
        fig.suptitle(title, fontsize=11)
    legend_below(fig, axes[:1, 0], ncol=min(len(lab), 3), fontsize=9.5)
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
    block_h = nrow * 0.78 + 0.75
    fig = plt.figure(figsize=(ncol * 0.78 + 1.0, len(blocks) * block_h + (0.3 if title else 0)))
    subs = fig.subfigures(len(blocks), 1, hspace=0.0) if len(blocks) > 1 else [fig]
    for sf, (btitle, rows) in zip(np.atleast_1d(subs), blocks):
        axes = sf.subplots(max(nrow, 1), ncol, squeeze=False)
        sf.subplots_adjust(left=1.0 / (ncol * 0.78 + 1.0), right=0.99, top=1 - 0.62 / block_h, bottom=0.02,
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
                    ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
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
                                 fontsize=8)
        sf.suptitle(btitle, fontsize=10)
    if title:
        fig.text(0.5, 0.0, title, ha="center", va="top", fontsize=9)
    return fig


def plot_posterior_sample_groups(groups: Sequence[tuple], title: str = ""):
    """Supplementary Fig 9 from completions: ``groups`` is ``[(title, instances, details)]`` with
    ``details`` the ``complete_instances(..., samples=k, return_details=True)`` of those instances.
    Each row: the visible mask as the encoder sees it (its visible box), the k sampled
    probabilities in the instance's full-object frame (``details.boxes``) with the visible part
    outlined, and the GT amodal mask in that frame (:func:`plot_posterior_samples`)."""
    blocks = []
    for name, insts, det in groups:
        if not len(insts):
            continue
        vis_in, vis_out = crop_masks(insts, "visible", "visible"), crop_masks(insts, "visible", det.boxes)
        gt_out = crop_masks(insts, "amodal", det.boxes) if all(i.amodal is not None for i in insts) else None
        blocks.append((name, [(f"{i.category}" + ("" if i.occlusion_rate is None else f"\n{100 * i.occlusion_rate:.0f}% hidden"),
                               vis_in[n], det.sample_probs[n], vis_out[n], None if gt_out is None else gt_out[n])
                              for n, i in enumerate(insts)]))
    return plot_posterior_samples(blocks, title)


def plot_pred_vs_gt(ann: AnnotationSet, image_ids: Sequence, pred: dict, title: str = ""):
    """Supplementary Fig 5: for each image (a row), predicted (left) and GT (right) amodal masks of
    its instances: visible part blue, completed hidden part orange, each amodal outline white."""
    by_img = ann.by_image()
    first = by_img[image_ids[0]][0]
    panel_h = 4.9 * first.height / first.width
    fig, axes = plt.subplots(len(image_ids), 2, figsize=(10, panel_h * len(image_ids) + 0.9), squeeze=False)
    for row, image_id in zip(axes, image_ids):
        insts = [i for i in by_img[image_id] if i.id in pred]
        h, w = insts[0].height, insts[0].width
        rgb = load_image(ann, image_id)
        for ax, which in zip(row, ("Pred", "GT")):
            pairs = []
            for i in insts:
                m = M.decode(pred[i.id] if which == "Pred" else i.amodal)
                pairs.append((m, M.decode(i.visible)))
            ax.imshow(overlay(rgb, hidden_layers(pairs), h, w, alpha=0.5))
            for m, _ in pairs:
                if m.any():
                    ax.contour(m, levels=[0.5], colors="white", linewidths=0.7)
            ax.set_xticks([]); ax.set_yticks([])
        row[0].set_ylabel(f"image {image_id}", fontsize=9)
    axes[0, 0].set_title("prediction", fontsize=10)
    axes[0, 1].set_title("ground truth", fontsize=10)
    fig.suptitle((title + "\n" if title else "") + "visible part: blue; hidden part of the amodal mask: orange; "
                 "amodal outline: white", fontsize=9.5)
    fig.tight_layout(h_pad=0.4, w_pad=0.6)
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


def plot_seed_spread(runs: pd.DataFrame, experiment: str = "main table", rules: Sequence[str] = (),
                     lines: Optional[Sequence[str]] = None):
    """The rows of one experiment of notebook 14's ``runs`` table trained with each seed: one panel
    per score, one point per seed and row (the learned rows), the mean as a bar; the rows no seed
    changes (``rules``) are not points, and those of ``lines`` (default: all of them) dashed lines."""
    lines = rules if lines is None else lines
    r = runs[runs.experiment == experiment]
    learned = r[~r.method.isin(rules)]
    order = list(dict.fromkeys(learned.method))
    fig, axes = plt.subplots(1, 4, figsize=(16, 0.55 * len(order) + 2.2), sharey=True)
    for ax, col in zip(axes, ("A_full", "A_invisible", "B_full", "B_invisible")):
        sns.pointplot(data=learned, y="method", x=col, order=order, ax=ax, linestyle="none", errorbar=None,
                      markers="|", color="0.2", markersize=18)
        sns.stripplot(data=learned, y="method", x=col, order=order, hue="seed", ax=ax, size=6, jitter=False,
                      palette="colorblind", legend=ax is axes[-1])
        for k, rule in enumerate(r[r.method.isin(lines)].drop_duplicates("method").itertuples()):
            ax.axvline(getattr(rule, col), ls="--", lw=1, color=f"C{k + 3}", label=rule.method)
        ax.set(xlabel=f"{col.replace('_', ' ')} mIoU (%)", ylabel="")
    handles, labels = axes[-1].get_legend_handles_labels()
    if axes[-1].get_legend() is not None:
        axes[-1].get_legend().remove()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="seed / rule")
    seeds = sorted(learned.seed.unique())
    fig.suptitle(f"{experiment}: the learned rows trained with seeds {', '.join(map(str, seeds))} "
                 "(points; mean: bar)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_width_checks(panels: dict, value: str = "mean_width"):
    """Notebook 07's investigation of Fig 4: one bar panel per entry of ``panels`` ({title: a table with
    ``group`` (the occlusion groups), ``curve`` (the bars' hue) and ``value``})."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.8), squeeze=False)
    for ax, (title, t) in zip(axes[0], panels.items()):
        sns.barplot(data=t, x="group", y=value, hue="curve", ax=ax, palette="colorblind")
        ax.set(title=title, xlabel="occlusion (share of the object hidden)", ylabel="mean posterior std")
        ax.legend(fontsize=7, title=None, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    fig.tight_layout()
    return fig
