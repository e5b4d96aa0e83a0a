"""The analyses of the supplementary, as plain functions the notebooks 04-09 call and plot.

Every function takes crops, boxes and instance records (or the tables built from them) and
returns numbers or pandas DataFrames; nothing here trains or plots.

- :func:`best_of_k`: the per-instance table of metrics.instance_table for the best of ``k``
  posterior samples (per instance, the sample with the best full IoU against the GT amodal mask:
  an oracle selection, supplementary Fig 1); the posterior mode's is
  :func:`amodal_lib.thresholds.probs_table`, and the threshold's sweep is
  :mod:`amodal_lib.thresholds`'.
- :func:`per_bin_long`, :func:`mode_vs_best_gap`, :func:`gap_trend`, :func:`bin_composition`: curves
  against the visible-area ratio, the mode / best-of-k gap per bin, and how many instances of each
  bin are fully visible.
- :func:`posterior_width`: supplementary Fig 4 (15 narrowest latent dims x 3 occlusion groups),
  the count of active dims and whether "wider posterior with more occlusion" holds;
  :func:`grouped_width`, :func:`simulated_occlusion_width`, :func:`decoded_blur`, :func:`decoder_curvature`,
  :func:`laplace_width`:
  why it does not hold here (notebook 07): the groups within a category or size, occlusion assigned
  at random in either input frame, and the width stage 2's loss asks for.
- :func:`worst_cases`, :func:`gt_box_gain`, :func:`box_quality`: supplementary Figs 7-8, and how
  good the predicted full-object box is.
- :func:`completion_table`, :func:`category_table`, :func:`oracle_share`: the main table.
- :func:`pick_instances`, :func:`pick_by_occlusion`, :func:`busiest_images`: seeded picks of
  instances, and the images with the most occluded instances, for figures.

Running every method on a split (``run_methods``) is :mod:`amodal_lib.experiments.comparison`'s, the
threshold of record :mod:`amodal_lib.thresholds`'; ``subsample`` (whole images up to a
number of instances) is :func:`amodal_lib.data.records.subsample`.

The GT amodal masks and occlusion rates are read here for evaluation only (never in training).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from .. import metrics
from ..data.crops import crop_masks, frame_boxes, paste_region
from ..data.records import VISIBLE_RATIO_BINS, Instance
from ..metrics import SCORE_COLUMNS
from ..thresholds import check_thresholds, finish_table, instance_meta, region_stats
from ..train.occlusions import partial_inputs, simulate_occlusions

OCCLUSION_GROUPS = ("0%", "1-50%", ">50%")


# --------------------------------------------------------------------------- best of k samples
@dataclass
class BestOfK:
    """``table``: per-instance table of the chosen samples; ``choice``: (N,) index of the chosen
    sample per instance (in the order of the instances given); ``sample_iou``: (N, k) full IoU
    of every sample."""
    table: pd.DataFrame
    choice: np.ndarray
    sample_iou: np.ndarray

    def probs(self, sample_probs: torch.Tensor) -> torch.Tensor:
        """(N, S, S) crops of the chosen samples (for pasting with crops.paste_masks)."""
        return sample_probs[torch.arange(len(self.choice)), torch.as_tensor(self.choice)]


def best_of_k(instances: Sequence[Instance], sample_probs: torch.Tensor, boxes: torch.Tensor,
              threshold: float, union_visible: bool = True, allowed=None) -> BestOfK:
    """Per instance, the posterior sample (of ``sample_probs`` (N, k, S, S)) whose pasted mask at
    ``threshold`` has the best full IoU with the GT amodal mask (first on ties): an oracle
    selection, evaluation only (supplementary Fig 1, "best in samples")."""
    (t,) = check_thresholds([threshold])
    instances = list(instances)
    if sample_probs is None or sample_probs.ndim != 4:
        raise ValueError("sample_probs must be (N, k, S, S): call complete_instances(..., samples=k)")
    if len(sample_probs) != len(instances):
        raise ValueError(f"{len(instances)} instances but {len(sample_probs)} sets of samples")
    k = sample_probs.shape[1]
    rows, choice, ious = [], np.zeros(len(instances), np.int64), np.full((len(instances), k), np.nan)
    for n, inst in enumerate(instances):
        if inst.amodal is None:
            continue
        region = paste_region(sample_probs[n], boxes[n], inst.height, inst.width)
        pred = (region[2] >= t) if region is not None else np.zeros((k, 0, 0), bool)
        st = region_stats(inst, region, pred, union_visible, None if allowed is None else allowed[n])
        iou = st["full_inter"] / np.maximum(st["full_union"], 1)
        j = int(np.argmax(iou))
        choice[n], ious[n] = j, iou
        rows.append({**instance_meta(inst), **{c: int(st[c][j]) for c in st}})
    return BestOfK(finish_table(rows), choice, ious)


# --------------------------------------------------------------------------- tables of methods
def completion_table(results: dict) -> pd.DataFrame:
    """{method: metrics summary} -> one row per method (method, n, A/B full/invisible mIoU %)."""
    return pd.DataFrame([metrics.scores_row(name, r) for name, r in results.items()])


def category_table(results: dict) -> pd.DataFrame:
    """Per category and method: n and full / invisible mIoU (%) under A and B."""
    rows = []
    for name, r in results.items():
        for cat, s in r["per_category"].items():
            rows.append({"category": cat, "method": name, "n": s["n"], "A_full": s["A"]["full"],
                         "A_invisible": s["A"]["invisible"], "B_full": s["B"]["full"],
                         "B_invisible": s["B"]["invisible"]})
    df = pd.DataFrame(rows, columns=["category", "method", "n"] + SCORE_COLUMNS)
    order = {m: k for k, m in enumerate(results)}
    return df.sort_values(["category", "method"], key=lambda s: s.map(order) if s.name == "method" else s
                          ).reset_index(drop=True)


def oracle_share(table: pd.DataFrame, oracle: str = "oracle-28") -> pd.DataFrame:
    """Each method's scores as a percentage of the ``oracle`` row's (the 28x28 ceiling)."""
    ref = table[table.method == oracle]
    if ref.empty:
        raise ValueError(f"no {oracle!r} row in the table")
    ref = ref.iloc[0]
    out = table[["method"]].copy()
    for c in SCORE_COLUMNS:
        out[f"{c}_share"] = 100.0 * table[c].astype(float) / float(ref[c]) if ref[c] else np.nan
    return out


# --------------------------------------------------------------------------- curves per bin
def bin_mids(bins=VISIBLE_RATIO_BINS) -> dict:
    return {lab: (lo + min(hi, 1.0)) / 2 for lab, lo, hi in zip(metrics.bin_labels(bins), bins[:-1], bins[1:])}


def bin_composition(table: pd.DataFrame, bins=VISIBLE_RATIO_BINS) -> pd.DataFrame:
    """Per visible-area-ratio bin of a per-instance table: n, how many instances are fully visible
    (occlusion rate 0) and their share (%). Fig 1's last bin (0.9-1.0) is mostly those."""
    labels = metrics.bin_labels(bins)
    cut = pd.cut(table.visible_ratio, bins=list(bins), labels=labels, right=False, include_lowest=True)
    whole = table.occlusion_rate.fillna(1.0) <= 0.0
    rows = [{"bin": lab, "n": int((cut == lab).sum()), "fully_visible": int(((cut == lab) & whole).sum())}
            for lab in labels]
    out = pd.DataFrame(rows, columns=["bin", "n", "fully_visible"])
    out["fully_visible_share"] = 100.0 * out.fully_visible / out.n.clip(lower=1)
    return out


def per_bin_long(results: dict, bins=VISIBLE_RATIO_BINS, min_n: int = 1) -> pd.DataFrame:
    """{method: metrics summary} -> a long DataFrame for seaborn: method, bin, visible_ratio (bin
    centre), n, protocol (A|B), metric (full|invisible), miou (%). Bins with fewer than ``min_n``
    instances and missing scores are left out."""
    mids = bin_mids(bins)
    rows = []
    for name, r in results.items():
        for lab, s in r["per_bin"].items():
            if s["n"] < min_n:
                continue
            for prot in ("A", "B"):
                for metric in ("full", "invisible"):
                    v = s[prot][metric]
                    if v is None:
                        continue
                    rows.append({"method": name, "bin": lab, "visible_ratio": mids[lab], "n": s["n"],
                                 "protocol": prot, "metric": metric, "miou": float(v)})
    return pd.DataFrame(rows, columns=["method", "bin", "visible_ratio", "n", "protocol", "metric", "miou"])


def mode_vs_best_gap(mode: dict, best: dict, bins=VISIBLE_RATIO_BINS) -> pd.DataFrame:
    """Per visible-area-ratio bin: n, and for A/B full/invisible the posterior mode's mIoU, the
    best-of-k's and the gap (best - mode, points)."""
    mids = bin_mids(bins)
    rows = []
    for lab in metrics.bin_labels(bins):
        sm, sb = mode["per_bin"][lab], best["per_bin"][lab]
        if sm["n"] == 0:
            continue
        row = {"bin": lab, "visible_ratio": mids[lab], "n": sm["n"]}
        for prot in ("A", "B"):
            for metric in ("full", "invisible"):
                a, b = sm[prot][metric], sb[prot][metric]
                key = f"{prot}_{metric}"
                row[f"{key}_mode"] = a
                row[f"{key}_best"] = b
                row[f"{key}_gap"] = None if a is None or b is None else b - a
        rows.append(row)
    return pd.DataFrame(rows)


def gap_trend(gap: pd.DataFrame, column: str = "B_full_gap", min_n: int = 5) -> dict:
    """Does the gap narrow as more of the object is visible? The slope of a least-squares line
    of ``column`` against the bin centre, each bin weighted by its instance count (bins with
    fewer than ``min_n`` instances left out): ``narrows`` is slope < 0."""
    g = gap[(gap.n >= min_n) & gap[column].notna()]
    if len(g) < 2:
        return {"column": column, "bins": int(len(g)), "slope": None, "narrows": None}
    x, y, w = g.visible_ratio.to_numpy(float), g[column].to_numpy(float), g.n.to_numpy(float)
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    slope = float(np.sum(w * (x - xm) * (y - ym)) / max(np.sum(w * (x - xm) ** 2), 1e-12))
    return {"column": column, "bins": int(len(g)), "slope": slope, "narrows": bool(slope < 0)}


# --------------------------------------------------------------------------- posterior width
def occlusion_group(rate) -> np.ndarray:
    """'0%' (no occlusion), '1-50%' (0 < rate <= 0.5), '>50%' per GT occlusion rate."""
    r = np.asarray(rate, dtype=float)
    return np.where(r <= 0.0, OCCLUSION_GROUPS[0], np.where(r <= 0.5, OCCLUSION_GROUPS[1], OCCLUSION_GROUPS[2]))


@dataclass
class PosteriorWidth:
    """``table``: long DataFrame (rank, dim, group, n, mean_std) for the grouped bars; ``dims``:
    the chosen latent dims, narrowest first; ``dim_mean_std``: (D,) mean std of every dim over
    all instances; ``active``: the dims with mean std < ``active_threshold``; ``group_mean``:
    {group: mean std over the chosen dims}; ``holds``: the mean std over the chosen dims grows
    strictly from 0% to 1-50% to >50% (groups with instances only, at least two of them);
    ``monotone_dims``: how many chosen dims grow monotonically (non-decreasing) across groups."""
    table: pd.DataFrame
    dims: list
    dim_mean_std: np.ndarray
    active: list
    active_threshold: float
    group_mean: dict
    group_n: dict
    holds: Optional[bool]
    monotone_dims: int

    def statement(self) -> str:
        gm = ", ".join(f"{g}: {self.group_mean[g]:.3f} (n={self.group_n[g]})" for g in OCCLUSION_GROUPS
                       if self.group_n[g])
        verdict = {True: "HOLDS", False: "does NOT hold", None: "cannot be tested (fewer than two groups)"}[self.holds]
        return (f"Wider posterior with more occlusion {verdict} on this data: mean std of the "
                f"{len(self.dims)} narrowest latent dims by occlusion group: {gm}; "
                f"{self.monotone_dims}/{len(self.dims)} of these dims grow monotonically; "
                f"{len(self.active)} of {len(self.dim_mean_std)} dims are active (mean std < {self.active_threshold:g}).")


def posterior_width(std, occlusion_rates, n_dims: int = 15, active_threshold: float = 0.5) -> PosteriorWidth:
    """Supplementary Fig 4. ``std``: (N, D) predicted posterior std of the test instances (partial
    encoder, visible-box frame); ``occlusion_rates``: (N,) GT occlusion rates (evaluation only).
    The ``n_dims`` dims are those with the smallest mean std over ALL instances; each is then
    averaged per occlusion group. Active dims: mean std < ``active_threshold`` (the prior's is 1)."""
    s = torch.as_tensor(std).detach().cpu().double().numpy() if not isinstance(std, np.ndarray) else std.astype(float)
    occ = np.asarray(occlusion_rates, dtype=float)
    if s.ndim != 2 or len(s) != len(occ):
        raise ValueError(f"std must be (N, D) with N = {len(occ)} occlusion rates, got {s.shape}")
    keep = ~np.isnan(occ)
    s, occ = s[keep], occ[keep]
    dim_mean = s.mean(0) if len(s) else np.full(s.shape[1], np.nan)
    dims = [int(d) for d in np.argsort(dim_mean, kind="stable")[: min(n_dims, s.shape[1])]]
    groups = occlusion_group(occ)
    rows, gmean, gn = [], {}, {}
    for g in OCCLUSION_GROUPS:
        sel = s[groups == g]
        gn[g] = int(len(sel))
        gmean[g] = float(sel[:, dims].mean()) if len(sel) else float("nan")
        for rank, d in enumerate(dims):
            rows.append({"rank": rank + 1, "dim": d, "group": g, "n": len(sel),
                         "mean_std": float(sel[:, d].mean()) if len(sel) else np.nan})
    table = pd.DataFrame(rows, columns=["rank", "dim", "group", "n", "mean_std"])
    present = [g for g in OCCLUSION_GROUPS if gn[g]]
    holds = None
    if len(present) >= 2:
        holds = bool(all(gmean[a] < gmean[b] for a, b in zip(present[:-1], present[1:])))
    mono = 0
    if len(present) >= 2:
        wide = table[table.group.isin(present)].pivot(index="dim", columns="group", values="mean_std")[present]
        mono = int((wide.diff(axis=1).iloc[:, 1:] >= 0).all(axis=1).sum())
    active = [int(d) for d in np.flatnonzero(dim_mean < active_threshold)]
    return PosteriorWidth(table, dims, dim_mean, active, active_threshold, gmean, gn, holds, mono)


# --------------------------------------------------------------------------- why Fig 4 reverses here
def widens(means) -> Optional[bool]:
    """True when a sequence of group means (0%, 1-50%, >50%; NaN for empty groups) grows strictly."""
    m = [float(v) for v in means if not np.isnan(v)]
    return None if len(m) < 2 else bool(all(a < b for a, b in zip(m[:-1], m[1:])))


def grouped_width(width, occlusion_rates, by=None) -> pd.DataFrame:
    """Mean posterior width (``width``: (N,) per instance, e.g. the mean std over Fig 4's dims) per
    occlusion group, within each value of ``by`` ((N,) labels: a category, a size class; None: all):
    one row per (stratum, group) with n and mean_width, and ``widens`` per stratum."""
    w, occ = np.asarray(width, float), np.asarray(occlusion_rates, float)
    strata = np.asarray(by if by is not None else ["all"] * len(w), dtype=object)
    groups, rows = occlusion_group(occ), []
    for st in dict.fromkeys(strata):
        means = []
        for g in OCCLUSION_GROUPS:
            sel = (strata == st) & (groups == g)
            means.append(float(w[sel].mean()) if sel.any() else np.nan)
            rows.append({"stratum": st, "group": g, "n": int(sel.sum()), "mean_width": means[-1]})
        for r in rows[-3:]:
            r["widens"] = widens(means)
    return pd.DataFrame(rows, columns=["stratum", "group", "n", "mean_width", "widens"])


def box_posterior(model, instances, box: str = "visible") -> tuple:
    """(mu, std), (N, D) each, of the partial encoder on each instance's visible mask cropped in its
    visible box (``box`` "visible", frame flag 0: the paper's input, and the transformer frame's) or in
    its GT amodal box ("amodal", flag 1: evaluation only)."""
    return model.posterior(crop_masks(list(instances), "visible", box), box)


def own_box_crops(instances, size: int = 56) -> tuple:
    """((N, size, size) visible masks cropped in their own box, (N, 2) that box's width and height in
    pixels): the full masks stage 2 occludes, for instances with nothing hidden."""
    inst = list(instances)
    wh = torch.tensor([[i.visible_box[2], i.visible_box[3]] for i in inst], dtype=torch.float32).reshape(-1, 2)
    return crop_masks(inst, "visible", "visible", size=size), wh


def simulated_occlusion_width(model, full, full_wh, pool, pool_wh, dims, seed: int = 0) -> pd.DataFrame:
    """Fig 4 with occlusion assigned at random: each unoccluded instance (``full``: (N, 56, 56) full
    masks in their own box, ``full_wh`` (N, 2) that box in pixels) is encoded whole and with one
    occlusion simulated as stage 2 makes them (another instance of ``pool`` pasted over it, seeded),
    in the visible-box frame (flag 0, the paper's input) and in the full box (flag 1, the GT amodal
    box's). Rows: frame, group (0% for the whole masks, else by the hidden fraction), n, mean_width
    (mean std over ``dims``) and paired_change: the mean over those instances of their width when
    occluded minus their width whole (0 for the 0% group)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        k = torch.randint(len(pool), (len(full),))
        sim = simulate_occlusions(full, full_wh, pool[k], pool_wh[k], unoccluded_prob=0.0)
    whole = F.adaptive_avg_pool2d(full.unsqueeze(1), 28)[:, 0]
    groups = occlusion_group(sim["occluded"].numpy())
    rows = []
    for flag, frame in ((0.0, "visible box (flag 0)"), (1.0, "full box (flag 1)")):
        x = partial_inputs(sim, torch.full((len(full),), bool(flag)))
        w0 = model.posterior(whole, "amodal" if flag else "visible")[1][:, dims].mean(1).numpy()
        w1 = model.posterior(x, "amodal" if flag else "visible")[1][:, dims].mean(1).numpy()
        rows.append({"frame": frame, "group": OCCLUSION_GROUPS[0], "n": len(w0), "mean_width": float(w0.mean()),
                     "paired_change": 0.0})
        for g in OCCLUSION_GROUPS[1:]:
            sel = groups == g
            rows.append({"frame": frame, "group": g, "n": int(sel.sum()),
                         "mean_width": float(w1[sel].mean()) if sel.any() else np.nan,
                         "paired_change": float((w1[sel] - w0[sel]).mean()) if sel.any() else np.nan})
    return pd.DataFrame(rows, columns=["frame", "group", "n", "mean_width", "paired_change"])


def decoded_blur(model, mu) -> np.ndarray:
    """(N,) mean over the 28x28 pixels of p (1 - p) of the decoded posterior mode: 0 for a crisp
    mask, 0.25 where every pixel is a coin toss."""
    with torch.no_grad():
        p = torch.sigmoid(model.decoder(torch.as_tensor(mu, dtype=torch.float32)))
    return (p * (1 - p)).flatten(1).mean(1).numpy()


def decoder_curvature(model, mu, dims) -> np.ndarray:
    """(N, len(dims)): for each latent dim k of ``dims``, the curvature of the Bernoulli likelihood
    along z_k at ``mu``, sum over pixels of p (1 - p) J_k^2 (J_k: the derivative of the decoder's
    logits along z_k, p its probabilities; the Gauss-Newton curvature, whatever the target)."""
    z = torch.as_tensor(mu, dtype=torch.float32)
    dec = model.decoder.eval()
    with torch.no_grad():
        p = torch.sigmoid(dec(z)).flatten(1)
    out = []
    for d in dims:
        e = torch.zeros_like(z)
        e[:, d] = 1.0
        _, jk = torch.func.jvp(lambda v: dec(v).flatten(1), (z,), (e,))
        out.append((p * (1 - p) * jk.detach() ** 2).sum(1))
    return torch.stack(out, 1).numpy()


def laplace_width(curvature, kl_weight: float) -> np.ndarray:
    """(N,) the posterior width stage 2's loss (BCE + ``kl_weight`` KL to N(0, I)) asks for, by its
    Laplace approximation: per dim std = (1 + curvature / kl_weight)^(-1/2) (:func:`decoder_curvature`),
    averaged over the dims."""
    return ((1.0 + np.asarray(curvature, float) / kl_weight) ** -0.5).mean(1)


# --------------------------------------------------------------------------- failures, GT box
def worst_cases(pred: pd.DataFrame, gt_box: pd.DataFrame, n: int = 8, min_occlusion: float = 0.0,
                max_occlusion: float = 1.0) -> pd.DataFrame:
    """The ``n`` instances with the lowest full IoU with the predicted box (among those whose GT
    occlusion rate lies in [``min_occlusion``, ``max_occlusion``]: e.g. 0.9 leaves out the slivers
    that are 97-99% hidden, which otherwise fill the list), beside their IoU with the GT amodal
    box and the gain."""
    a = pred[["id", "image_id", "category", "occlusion_rate", "full_iou", "inv_iou"]].rename(
        columns={"full_iou": "full_iou_pred", "inv_iou": "inv_iou_pred"})
    b = gt_box[["id", "full_iou", "inv_iou"]].rename(columns={"full_iou": "full_iou_gt_box", "inv_iou": "inv_iou_gt_box"})
    m = a.merge(b, on="id", how="inner")
    occ = m.occlusion_rate.fillna(0)
    m = m[(occ >= min_occlusion) & (occ <= max_occlusion)]
    m["gain"] = m.full_iou_gt_box - m.full_iou_pred
    return m.sort_values(["full_iou_pred", "id"]).head(n).reset_index(drop=True)


def box_quality(instances: Sequence[Instance], pred_boxes) -> pd.DataFrame:
    """How well a full-object frame matches the GT amodal box, per GT occlusion group (and "all"):
    mean IoU with the GT amodal box, and mean log area ratio to it (< 0: too small), of the visible
    box (the transformer's identity start) and of each predicted frame. ``pred_boxes``: (N, 4) xyxy
    image boxes (``InstanceCompletions.boxes``; columns ``*_predicted``), or {name: such boxes}
    (columns ``*_<name>``, e.g. the transformer's frame and the fitted frame side by side).
    Evaluation only."""
    named = dict(pred_boxes) if isinstance(pred_boxes, dict) else {"predicted": pred_boxes}
    keep = [k for k, i in enumerate(instances) if i.amodal is not None and i.occlusion_rate is not None]
    insts = [instances[k] for k in keep]
    cols = (["group", "n"] + [f"box_iou_{n}" for n in named] + ["box_iou_visible"] +
            [f"log_area_ratio_{n}" for n in named] + ["log_area_ratio_visible"])
    if not insts:
        return pd.DataFrame(columns=cols)
    gt = frame_boxes(insts, "amodal")
    boxes = {**{n: torch.as_tensor(b, dtype=torch.float32)[keep] for n, b in named.items()},
             "visible": frame_boxes(insts, "visible")}

    def area(b):
        return ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).clamp_min(1e-6)
    iou = {n: box_iou(b, gt).diag().numpy() for n, b in boxes.items()}
    ratio = {n: torch.log(area(b) / area(gt)).numpy() for n, b in boxes.items()}
    groups = occlusion_group([i.occlusion_rate for i in insts])
    rows = []
    for g in OCCLUSION_GROUPS + ("all",):
        sel = groups == g if g != "all" else np.ones(len(insts), bool)
        if sel.any():
            rows.append({"group": g, "n": int(sel.sum()), **{f"box_iou_{n}": float(v[sel].mean()) for n, v in iou.items()},
                         **{f"log_area_ratio_{n}": float(v[sel].mean()) for n, v in ratio.items()}})
    return pd.DataFrame(rows, columns=cols)


def gt_box_gain(pred: dict, gt_box: dict) -> pd.DataFrame:
    """Overall mIoU (%) with the predicted box and with the GT amodal box, and the gain, per
    protocol and metric."""
    rows = []
    for prot in ("A", "B"):
        for metric in ("full", "invisible"):
            a, b = pred["overall"][prot][metric], gt_box["overall"][prot][metric]
            rows.append({"protocol": prot, "metric": metric, "predicted_box": a, "gt_amodal_box": b,
                         "gain": None if a is None or b is None else b - a})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- sample picking (figures)
def pick_instances(instances: Sequence[Instance], n: int, occlusion=(0.0, 1.0), min_side: float = 6,
                   occluded_only: bool = False, seed=0) -> list:
    """Up to ``n`` instances (in their order) drawn with a seeded generator (``seed``: an int or a
    ``numpy.random.Generator``, which is advanced) among those whose
    GT occlusion rate lies in ``occlusion`` (inclusive), whose visible box is at least
    ``min_side`` pixels on each side and (``occluded_only``) that have an occluder. For figures."""
    lo, hi = occlusion
    cand = [i for i in instances if i.occlusion_rate is not None and lo <= i.occlusion_rate <= hi
            and min(i.visible_box[2], i.visible_box[3]) >= min_side and (i.occluders or not occluded_only)]
    idx = np.random.default_rng(seed).permutation(len(cand))[:n]
    return [cand[k] for k in sorted(idx)]


def busiest_images(ann, n: int, min_occlusion: float = 0.2) -> list:
    """The ids of the ``n`` images of ``ann`` with the most instances more than ``min_occlusion``
    hidden (file order on ties): the images a whole-image figure shows (supplementary Fig 5)."""
    by_img = ann.by_image()
    count = {k: sum((i.occlusion_rate or 0) > min_occlusion for i in v) for k, v in by_img.items()}
    return sorted(by_img, key=count.get, reverse=True)[:n]


def pick_by_occlusion(instances: Sequence[Instance], n: int, low=(0.05, 0.3), high=(0.5, 0.9),
                      seed: int = 0) -> tuple:
    """Two lists of up to ``n`` instances: mostly visible (occlusion rate in ``low``) and heavily
    occluded (in ``high``), drawn with one seeded generator (supplementary Fig 9)."""
    rng = np.random.default_rng(seed)
    return tuple(pick_instances(instances, n, occlusion, seed=rng) for occlusion in (low, high))
