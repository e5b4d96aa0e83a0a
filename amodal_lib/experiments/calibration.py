"""Why the searched threshold lies where it does (notebook 04): the decoder's calibration and the
output's resolution, read from the completions of the validation sets and their sweep.

The choice of ``t`` maximises pooled full IoU (``docs/design.md``, "Threshold criterion"). For a
pixel the threshold decides (outside the visible mask, which every completion keeps, and inside
what the fitted frame allows), adding it raises a pooled IoU J exactly when the chance that it
belongs to the object exceeds J / (1 + J). So were the decoder calibrated (of the pixels it gives
probability p, a share p in the object), the best threshold would be J* / (1 + J*), just under 0.5
for J* near 0.93; a threshold far from that says the probabilities are not calibrated, and in which
direction. :func:`pixel_calibration` measures the share per probability bin, :func:`calibrated_threshold`
reads off where it crosses J* / (1 + J*); :func:`crop_sweep` scores the completions at the decoder's
own 28x28 resolution and :func:`size_sweep` at image resolution per object size (how many image
pixels one output pixel covers), to see whether pasting the 28x28 output into the image moves the best
threshold. Evaluation only: the GT amodal masks are read.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from .. import metrics, paper
from ..data import masks as M
from ..data.crops import crop_masks, paste_region
from ..metrics import SCORE_COLUMNS
from ..thresholds import check_thresholds, pick_threshold, threshold_tables


def pixel_calibration(instances, probs: torch.Tensor, boxes: torch.Tensor, allowed=None, bins: int = 20) -> pd.DataFrame:
    """The completions' probabilities pasted at image resolution (``probs`` (N, S, S) in the image
    ``boxes``, kept inside ``allowed[k]`` where given, as the completions are), over the pixels
    outside each instance's visible mask (the only ones a threshold decides): per probability bin,
    the pixels and the share of them inside the GT amodal mask."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total, inside = np.zeros(bins), np.zeros(bins)
    for k, inst in enumerate(instances):
        if inst.amodal is None:
            continue
        region = paste_region(probs[k][None], boxes[k], inst.height, inst.width)
        if region is None:
            continue
        rows, cols, vals = region
        keep = ~M.decode(inst.visible).astype(bool)[rows, cols]
        if allowed is not None and allowed[k] is not None:
            keep &= M.decode(allowed[k]).astype(bool)[rows, cols]
        p, g = vals[0][keep], M.decode(inst.amodal).astype(bool)[rows, cols][keep]
        idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
        total += np.bincount(idx, minlength=bins)
        inside += np.bincount(idx, weights=g, minlength=bins)
    return pd.DataFrame({"p_low": edges[:-1], "p_high": edges[1:], "p_mid": (edges[:-1] + edges[1:]) / 2,
                         "pixels": total.astype(np.int64),
                         "object_share": np.where(total > 0, inside / np.maximum(total, 1), np.nan)})


def calibrated_threshold(calibration: pd.DataFrame, best_iou: float) -> dict:
    """Where the best threshold would be if the probabilities were calibrated (J* / (1 + J*), for the
    best pooled IoU ``best_iou`` in %), and where the measured share of object pixels crosses that
    value (linear between bin centres; None when it never does): the threshold the calibration
    itself implies."""
    j = best_iou / 100.0
    target = j / (1 + j)
    c = calibration.dropna(subset=["object_share"])
    x, y = c.p_mid.to_numpy(float), c.object_share.to_numpy(float)
    cross = None
    for a in range(len(x) - 1):
        if (y[a] - target) * (y[a + 1] - target) <= 0 and y[a + 1] != y[a]:
            cross = float(x[a] + (target - y[a]) * (x[a + 1] - x[a]) / (y[a + 1] - y[a]))
            break
    return {"if_calibrated": float(target), "implied_by_calibration": cross}


def crop_sweep(instances, probs: torch.Tensor, boxes: torch.Tensor, thresholds: Sequence[float]) -> pd.DataFrame:
    """Pooled full IoU (%) of the completions at the decoder's own 28x28 resolution, per threshold:
    each crop binarised at ``t`` and joined with the visible mask cropped in the same frame, against
    the GT amodal mask cropped there (both binarised at 0.5: their pixel's majority). Nothing is
    pasted into the image, so the threshold this picks is the decoder's alone."""
    ts = check_thresholds(thresholds)
    insts = [i for i in instances if i.amodal is not None]
    keep = [k for k, i in enumerate(instances) if i.amodal is not None]
    b = torch.as_tensor(boxes, dtype=torch.float32)[keep]
    p = torch.as_tensor(probs).float()[keep]
    gt = crop_masks(insts, "amodal", b, size=p.shape[-1]) >= 0.5
    vis = crop_masks(insts, "visible", b, size=p.shape[-1]) >= 0.5
    rows = []
    for t in ts:
        pred = (p >= t) | vis
        rows.append({"threshold": t, "n": len(insts), "crop_full_iou":
                     100.0 * float((pred & gt).sum()) / max(float((pred | gt).sum()), 1.0)})
    return pd.DataFrame(rows)


SIZE_CLASSES = ((0.0, 28.0, "under 28 px"), (28.0, 56.0, "28-56 px"), (56.0, float("inf"), "over 56 px"))


def size_sweep(instances, probs: torch.Tensor, boxes: torch.Tensor, thresholds: Sequence[float],
               union_visible: bool = True, allowed=None, classes=SIZE_CLASSES) -> pd.DataFrame:
    """The threshold sweep at image resolution per object size: the longer side, in image pixels, of
    the frame each completion is pasted into (under 28 px the 28x28 output is shrunk, over 56 px one
    output pixel covers more than 2x2 image pixels). One row per (size, threshold): n and the four
    scores (%), as :func:`amodal_lib.thresholds.threshold_sweep` gives them."""
    tabs = threshold_tables(instances, probs, boxes, thresholds, union_visible, allowed)
    b = torch.as_tensor(boxes, dtype=torch.float32)
    side = torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).numpy()
    by_id = {i.id: side[k] for k, i in enumerate(instances)}
    rows = []
    for lo, hi, name in classes:
        for t, tab in tabs.items():
            sel = tab[[lo <= by_id[i] < hi for i in tab.id]]
            if not len(sel):
                continue
            r = metrics.scores_row(name, metrics.summarize(sel))
            rows.append({"size": name, "threshold": t, "n": r["n"], **{c: r[c] for c in SCORE_COLUMNS}})
    return pd.DataFrame(rows, columns=["size", "threshold", "n", *SCORE_COLUMNS])


def best_by(sweep: pd.DataFrame, key: str, criterion: str = "A_full") -> pd.DataFrame:
    """Per value of ``key`` in a sweep (e.g. :func:`size_sweep`'s ``size``): n, the best threshold on
    ``criterion`` and its score."""
    rows = []
    for v, g in sweep.groupby(key, sort=False):
        t = pick_threshold(g, criterion)
        rows.append({key: v, "n": int(g.n.iloc[0]), "best_threshold": t,
                     criterion: float(g.loc[np.isclose(g.threshold, t), criterion].iloc[0])})
    return pd.DataFrame(rows)


def threshold_reasons(sets: dict, details, thresholds: Sequence[float]) -> dict:
    """Notebook 04's tables on a run's validation sets ({name: AnnotationSet}; ``details(ann)``: their
    completions, an ``InstanceCompletions``, as the threshold search makes them): ``calibration``
    (:func:`pixel_calibration`, pixels pooled over the sets), ``crop`` (:func:`crop_sweep`) and
    ``sizes`` (:func:`size_sweep`), each sweep averaged over the sets as the threshold's choice is."""
    cals, crops, sizes = [], [], []
    for name, ann in sets.items():
        det = details(ann)
        cals.append(pixel_calibration(det.instances, det.probs, det.boxes, det.allowed))
        crops.append(crop_sweep(det.instances, det.probs, det.boxes, thresholds))
        sizes.append(size_sweep(det.instances, det.probs, det.boxes, thresholds, det.union_visible, det.allowed))
    cal = cals[0][["p_low", "p_high", "p_mid"]].copy()
    pixels = sum(c.pixels for c in cals)
    cal["pixels"] = pixels
    cal["object_share"] = sum(c.object_share.fillna(0) * c.pixels for c in cals) / pixels.where(pixels > 0)
    mean = lambda frames, keys: pd.concat(frames).groupby(keys, as_index=False, sort=False).agg(   # noqa: E731
        {"n": "sum", **{c: "mean" for c in frames[0].columns if c not in keys + ["n"]}})
    return {"calibration": cal, "crop": mean(crops, ["threshold"]), "sizes": mean(sizes, ["size", "threshold"])}


def reasons(calibration: pd.DataFrame, sweep_mean: pd.DataFrame, crop: pd.DataFrame, sizes: pd.DataFrame,
            paper_threshold: float, chosen: float, paper_iou: float = paper.GT_VISIBLE_INPUT["Amodal-VAE"]["full"],
            criterion: str = "A_full") -> list:
    """Sentences from the numbers (notebook 04): where the threshold would be if the decoder were
    calibrated and where its calibration puts it, against the one the sweep chose (``chosen``); what
    the paper's t would need of a decoder (``paper_iou``: its full mIoU); and the best threshold at
    the decoder's 28x28 and per object size, against ``chosen``."""
    best = float(sweep_mean[criterion].max())
    cal = calibrated_threshold(calibration, best)
    tc, cross = cal["if_calibrated"], cal["implied_by_calibration"]
    way = "above" if chosen > tc else "below"
    out = [f"Calibrated, the best threshold would be J*/(1+J*) = {tc:.2f} (J* = {best:.2f}%, the best pooled full "
           f"mIoU on validation); the decoder's share of object pixels reaches it at p = "
           + ("(never)" if cross is None else f"{cross:.2f}") + f", and the sweep picks t = {chosen:g}: {way} the "
           f"calibrated value, so near the decision the decoder's probabilities run {way} the shares of object "
           "pixels they stand for."]
    at = calibration[(calibration.p_low <= paper_threshold + 1e-9) & (paper_threshold < calibration.p_high - 1e-9)]
    need = paper_iou / 100 / (1 + paper_iou / 100)
    if len(at) and at.pixels.iloc[0] > 0:
        r = at.iloc[0]
        out.append(f"For the paper's t = {paper_threshold:g} to be best at its {paper_iou:.2f} full mIoU, pixels given "
                   f"p = {paper_threshold:g} would have to be object {100 * need:.0f}% of the time; ours given p in "
                   f"[{r.p_low:.2f}, {r.p_high:.2f}) are object {100 * r.object_share:.0f}% of the time. The paper's "
                   "decoder must be that much less confident in the pixels it adds than ours.")
    crop_t = pick_threshold(crop, "crop_full_iou")
    per_size = best_by(sizes, "size", criterion)
    order = [name for _, _, name in SIZE_CLASSES if name in set(per_size["size"])]
    by_size = per_size.set_index("size").loc[order, "best_threshold"].tolist()
    trend = ("grows with" if all(a <= b for a, b in zip(by_size, by_size[1:])) and by_size[0] < by_size[-1] else
             "falls with" if all(a >= b for a, b in zip(by_size, by_size[1:])) and by_size[0] > by_size[-1] else
             "does not follow")
    ts = [crop_t] + by_size
    near = min(ts) - paper_threshold <= (chosen - paper_threshold) / 2
    out.append(f"At the decoder's own 28x28 resolution the best threshold is {crop_t:g}; at image resolution it "
               f"{trend} the size of the frame the 28x28 output is pasted into (" + ", ".join(
                   f"{r.size} {r.best_threshold:g}, n={r.n}" for r in per_size.set_index("size").loc[order]
                   .reset_index().itertuples()) + "): "
               + (f"the resolution moves it, down to {min(ts):g}." if near else
                  f"none comes near the paper's {paper_threshold:g}, so the output's resolution does not explain it."))
    return out
