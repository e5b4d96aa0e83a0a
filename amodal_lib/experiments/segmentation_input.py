"""The segmentation-input experiment (supplementary Table 1; notebook 11): completion methods fed
visible masks that a network predicted, or that were corrupted on purpose, instead of the
ground-truth ones (``docs/design.md``, "The segmentation-input experiment").

Every completion is scored against the ground truth of the split itself: the GT amodal mask, and
the GT visible mask that defines the invisible part; only the *input* changes
(:func:`amodal_lib.registry.complete_from_visible`, :func:`amodal_lib.data.records.with_visible`).

- :func:`segmentation_quality`: predicted visible masks against the GT visible masks, beside the
  box-filled baselines (the whole box as the mask).
- :func:`run_inputs`: every method on every input (``{input name: visible masks, or None for the
  GT}``); :func:`table1`, :func:`drop_table`, :func:`drop_per_bin` turn the result into Table 1
  with the paper's numbers beside ours, the drop from GT to predicted input, and that drop per
  visible-area-ratio bin.
- :func:`robustness`: the same completions with the GT visible mask eroded, dilated, given a
  noisy boundary (in bumps 2 px wide, or 6 px: smooth errors, which read as annotations), or a
  segmenter's mixture of errors (:mod:`amodal_lib.data.corruption`) at several strengths.
- :func:`frame_or_shape`: where predicted input costs, read with two evaluation-only rows: the
  completion in the GT amodal box (a perfect frame), and the input mask joined with the GT hidden
  part (a perfect completion of what is hidden, the input's own errors kept).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .. import metrics, paper, registry
from ..data import masks as M
from ..data.corruption import KINDS, corrupt_masks, segmenter_noise
from ..data.records import AnnotationSet
from ..metrics import SCORE_COLUMNS
from ..predict.psp import visible_iou
from .analysis import per_bin_long
from .comparison import PCNET, VAE_FRAMES, VAE_GT_BOX, VAE_MODE, VAE_TRANSFORMER, VISIBLE, frame_model

GT_INPUT = "GT visible mask"
PREDICTED_INPUT = "predicted (ResNet-PSP)"
INPUT_MASK = "input mask (no completion)"
SEGMENTER = "segmenter-noise"   # the robustness curve's kind for data.corruption's segmenter-noise model   # the visible mask given, as the amodal prediction
HIDDEN_ORACLE = "input mask + GT hidden part (oracle)"
GT_BOX_ROW = f"{VAE_GT_BOX}: evaluation only"   # frame_or_shape's completion in the GT amodal box

# the paper's numbers (KINS, protocol A) for (input, method) rows of ours
PAPER_ROWS = {
    (GT_INPUT, INPUT_MASK): paper.GT_VISIBLE_INPUT["visible mask"],
    (GT_INPUT, VAE_TRANSFORMER): paper.GT_VISIBLE_INPUT["Amodal-VAE"],
    (PREDICTED_INPUT, INPUT_MASK): paper.PREDICTED_INPUT["predicted masks"],
    (PREDICTED_INPUT, VAE_TRANSFORMER): paper.PREDICTED_INPUT["Amodal-VAE"],
    (PREDICTED_INPUT, PCNET): paper.PREDICTED_INPUT["Deocclusion (PCNet-M)"],
}


def segmentation_quality(ann: AnnotationSet, masks: dict) -> pd.DataFrame:
    """{name: {id: RLE}} visible masks -> one row each: n, IoU with the GT visible masks (%),
    A (pooled) and B (mean per instance)."""
    rows = []
    for name, m in masks.items():
        q = visible_iou(ann, m)
        rows.append({"method": name, "n": q["n"], "A_visible_iou": q["A"], "B_visible_iou": q["B"]})
    return pd.DataFrame(rows, columns=["method", "n", "A_visible_iou", "B_visible_iou"])


def complete_methods(ann: AnnotationSet, visible: Optional[dict], vae=None, pcnet=None, threshold: float = 0.5,
                     frames: Sequence[str] = ("fit", "transformer"), variants: Optional[dict] = None) -> dict:
    """{method: {id: RLE}}: the instances of ``ann`` that have an amodal mask completed from
    ``visible`` ({id: RLE}; None: the file's own visible masks) by the input mask itself,
    Amodal-VAE in each of ``frames`` and PCNet-M (at its own 0.2); what surrounds each instance is
    the whole of ``ann``, with the same visible masks. Amodal-VAE completes the file's masks as truth
    at ``threshold``, other masks with its noise estimate ("auto", :mod:`amodal_lib.predict.evidence`)
    at the threshold its run searched for such masks (``threshold.json``, else ``threshold``'s).
    ``variants``: {frame: (model, threshold)}, the frames with a checkpoint and threshold of their own
    (:func:`amodal_lib.experiments.comparison.chosen_variants`); the others are ``vae``'s."""
    inst = [i for i in ann.instances if i.amodal is not None]
    given = visible if visible is not None else {i.id: i.visible for i in ann.instances}

    def run(name, model=None, **kw):
        return registry.complete_from_visible(name, ann, given, model, inst, **kw)
    out = {INPUT_MASK: {i.id: given[i.id] for i in inst}}
    if vae is not None:
        # masks that are not the file's: Amodal-VAE estimates their noise from their boundaries and, when
        # they read as a segmenter's, takes them as evidence at the threshold its training searched for them
        for frame in frames:
            model, t = frame_model(frame, vae, threshold, variants)
            out[VAE_FRAMES[frame]] = run("amodal-vae", model, threshold=t if visible is None else None, frame=frame,
                                         noise=0.0 if visible is None else "auto")
    if pcnet is not None:
        out[PCNET] = run("pcnet-m", pcnet)
    return out


def run_inputs(ann: AnnotationSet, inputs: dict, vae=None, pcnet=None, threshold: float = 0.5,
               frames: Sequence[str] = ("fit", "transformer"), gt_tables: Optional[dict] = None,
               variants: Optional[dict] = None) -> dict:
    """{(input, method): metrics summary} of :func:`complete_methods` on each of ``inputs``
    ({input name: visible masks, or None for the GT}), scored against ``ann``'s ground truth.
    ``gt_tables``: the per-instance tables of the GT input already made by
    :func:`amodal_lib.experiments.comparison.method_tables` (the same completions: notebook 05's), used for
    the input that is None instead of completing it again. ``variants``: :func:`complete_methods`'s."""
    scored = ann.subset([i for i in ann.instances if i.amodal is not None])
    out = {}
    for name, visible in inputs.items():
        if visible is None and gt_tables is not None:
            for method in [INPUT_MASK, *[VAE_FRAMES[f] for f in frames if vae is not None],
                           *([PCNET] if pcnet is not None else [])]:
                out[(name, method)] = metrics.summarize(gt_tables[VISIBLE if method == INPUT_MASK else method])
            continue
        for method, masks in complete_methods(ann, visible, vae, pcnet, threshold, frames, variants).items():
            out[(name, method)] = metrics.evaluate(scored, masks)
    return out


def table1(results: dict) -> pd.DataFrame:
    """Supplementary Table 1 from :func:`run_inputs`: input, method, n, A / B full and invisible mIoU
    (%), and the paper's full / invisible mIoU (KINS, protocol A) where it gives one."""
    rows = []
    for (inp, method), r in results.items():
        row = metrics.scores_row(method, r)
        ref = PAPER_ROWS.get((inp, method), {})
        rows.append({"input": inp, **row, "paper_full": ref.get("full"), "paper_invisible": ref.get("invisible")})
    return pd.DataFrame(rows, columns=["input", "method", "n", *SCORE_COLUMNS, "paper_full", "paper_invisible"])


def _paper_drop(method: str, metric: str) -> Optional[float]:
    gt, pred = PAPER_ROWS.get((GT_INPUT, method), {}), PAPER_ROWS.get((PREDICTED_INPUT, method), {})
    if gt.get(metric) is None or pred.get(metric) is None:
        return None
    return round(gt[metric] - pred[metric], 2)


def drop_table(results: dict, gt: str = GT_INPUT, predicted: str = PREDICTED_INPUT) -> pd.DataFrame:
    """Per method, protocol and metric: mIoU with GT input, with predicted input, the drop (points,
    GT - predicted) and the paper's drop (protocol A, where it gives both numbers)."""
    rows = []
    for (inp, method), r in results.items():
        if inp != gt or (predicted, method) not in results:
            continue
        p = results[(predicted, method)]
        for prot in ("A", "B"):
            for metric in ("full", "invisible"):
                a, b = r["overall"][prot][metric], p["overall"][prot][metric]
                if a is None or b is None:
                    continue
                rows.append({"method": method, "protocol": prot, "metric": metric, "gt_input": a,
                             "predicted_input": b, "drop": a - b,
                             "paper_drop": _paper_drop(method, metric) if prot == "A" else None})
    return pd.DataFrame(rows, columns=["method", "protocol", "metric", "gt_input", "predicted_input", "drop",
                                       "paper_drop"])


def drop_per_bin(results: dict, gt: str = GT_INPUT, predicted: str = PREDICTED_INPUT, min_n: int = 1) -> pd.DataFrame:
    """Per visible-area-ratio bin (of the GT masks), method, protocol and metric: mIoU with GT and
    with predicted input, and the drop (supplementary Fig 1's axis, in the paper's setting)."""
    longs = []
    for (inp, method), r in results.items():
        if inp in (gt, predicted):
            df = per_bin_long({method: r}, min_n=min_n)
            df["input"] = inp
            longs.append(df)
    if not longs:
        return pd.DataFrame(columns=["method", "bin", "visible_ratio", "n", "protocol", "metric", "gt_input",
                                     "predicted_input", "drop"])
    long = pd.concat(longs, ignore_index=True)
    keys = ["method", "bin", "visible_ratio", "n", "protocol", "metric"]
    wide = long.pivot_table(index=keys, columns="input", values="miou").reset_index()
    wide = wide.rename(columns={gt: "gt_input", predicted: "predicted_input"})
    wide = wide.dropna(subset=["gt_input", "predicted_input"])
    wide["drop"] = wide.gt_input - wide.predicted_input
    wide.columns.name = None
    return wide[keys + ["gt_input", "predicted_input", "drop"]].sort_values(keys[:2]).reset_index(drop=True)


def corrupted(instances: Sequence, kind: str, strength: float, seed: int = 0) -> dict:
    """{id: RLE}: the visible masks of ``instances`` with an error of ``kind`` (one of
    :data:`amodal_lib.data.corruption.KINDS`, or :data:`SEGMENTER` for the segmenter-noise model) at
    ``strength`` pixels, seeded."""
    return (segmenter_noise(instances, float(strength), seed) if kind == SEGMENTER
            else corrupt_masks(instances, kind, float(strength), seed))


def robustness(ann: AnnotationSet, vae=None, pcnet=None, threshold: float = 0.5,
               strengths: Sequence[float] = (1, 2, 3), kinds: Optional[Sequence[str]] = None,
               frames: Sequence[str] = ("fit",), seed: int = 0, variants: Optional[dict] = None) -> pd.DataFrame:
    """Every method of :func:`complete_methods` on ``ann``'s GT visible masks corrupted by each
    of ``kinds`` (default all of :data:`amodal_lib.data.corruption.KINDS` and :data:`SEGMENTER`, the
    segmenter-noise model of :func:`amodal_lib.data.corruption.segmenter_noise`) at each of ``strengths``
    (pixels; strength 0, the GT masks, is added). One row per (kind, strength, method): the
    corrupted input's IoU with the GT visible masks (A, %), n and A / B full / invisible mIoU.
    ``variants``: :func:`complete_methods`'s."""
    kinds = list(kinds or (*KINDS, SEGMENTER))
    scored = ann.subset([i for i in ann.instances if i.amodal is not None])
    rows = []

    def score(kind, strength, visible):
        q = visible_iou(ann, visible)["A"] if visible is not None else 100.0
        for method, masks in complete_methods(ann, visible, vae, pcnet, threshold, frames, variants).items():
            rows.append({"kind": kind, "strength": float(strength), "method": method, "input_visible_iou": q,
                         **{k: v for k, v in metrics.scores_row(method, metrics.evaluate(scored, masks)).items()
                            if k != "method"}})
    score("none", 0, None)
    for kind in kinds:
        for s in strengths:
            score(kind, s, corrupted(ann.instances, kind, s, seed))
    df = pd.DataFrame(rows)
    return curves(df[df.kind != "none"], df[df.kind == "none"], kinds)


def curves(noisy: pd.DataFrame, clean: pd.DataFrame, kinds: Sequence[str]) -> pd.DataFrame:
    """Robustness rows (a ``kind`` and a ``strength`` column) as curves: the ``noisy`` rows and the
    ``clean`` ones (strength 0) copied into every one of ``kinds``, since strength 0 belongs to each
    kind's curve; sorted by kind, method and strength."""
    df = pd.concat([noisy] + [clean.assign(kind=k) for k in kinds], ignore_index=True)
    return df.sort_values(["kind", "method", "strength"], kind="stable").reset_index(drop=True)


def with_hidden_part(ann: AnnotationSet, visible: dict) -> dict:
    """{id: RLE} for the instances of ``ann`` with an amodal mask: the given visible mask joined with
    the GT hidden part (GT amodal minus GT visible): a perfect completion of what is hidden, the
    input's own errors kept (evaluation only: it reads the amodal labels)."""
    out = {}
    for inst in ann.instances:
        if inst.amodal is None:
            continue
        given, amodal, gt = (M.decode(r).astype(bool) for r in (visible[inst.id], inst.amodal, inst.visible))
        out[inst.id] = M.encode((given | (amodal & ~gt)).astype(np.uint8))
    return out


def frame_or_shape(ann: AnnotationSet, visible: dict, results: dict, vae, predicted: str = PREDICTED_INPUT
                   ) -> pd.DataFrame:
    """Where completing ``visible`` (a segmenter's masks) loses against completing the GT ones: the
    rows of :func:`run_inputs`'s ``results`` for the input mask and the fitted frame on ``predicted``
    input, beside two evaluation-only rows on the same input: Amodal-VAE in the GT amodal box (its
    run's threshold and evidence for such masks, as the fitted row's in :func:`complete_methods`)
    and :func:`with_hidden_part`. When the GT box recovers what the fitted frame loses, the frame
    is at fault, not the shape."""
    scored = ann.subset([i for i in ann.instances if i.amodal is not None])
    inst = list(scored.instances)
    rows = [metrics.scores_row(m, results[(predicted, m)]) for m in (INPUT_MASK, VAE_MODE) if (predicted, m) in results]
    if vae is not None:
        gt_box = registry.complete_from_visible("amodal-vae", ann, visible, vae, inst, box="amodal-gt", noise="auto")
        rows.append(metrics.scores_row(GT_BOX_ROW, metrics.evaluate(scored, gt_box)))
    rows.append(metrics.scores_row(HIDDEN_ORACLE, metrics.evaluate(scored, with_hidden_part(ann, visible))))
    return pd.DataFrame(rows, columns=["method", "n", *SCORE_COLUMNS])


def frame_or_shape_lines(rows: pd.DataFrame) -> list:
    """What :func:`frame_or_shape`'s rows say, as sentences (protocol A; numbers as measured)."""
    t = rows.set_index("method")
    if not {VAE_MODE, GT_BOX_ROW, HIDDEN_ORACLE} <= set(t.index):
        return []
    fit, gt, top = (t.loc[m, ["A_full", "A_invisible"]].astype(float) for m in (VAE_MODE, GT_BOX_ROW, HIDDEN_ORACLE))
    gap = top.A_invisible - fit.A_invisible
    share = (gt.A_invisible - fit.A_invisible) / gap * 100 if gap > 0 else float("nan")
    return [f"fitted frame {fit.A_full:.2f} / {fit.A_invisible:.2f} (A full / invisible); in the GT amodal box "
            f"{gt.A_full:.2f} / {gt.A_invisible:.2f}; input + GT hidden part {top.A_full:.2f} / {top.A_invisible:.2f}",
            f"a perfect frame recovers {gt.A_invisible - fit.A_invisible:.2f} of the {gap:.2f} invisible points "
            f"between the fitted frame and the hidden-part oracle ({share:.0f}%)"]


def summary_lines(table: pd.DataFrame, drops: pd.DataFrame, quality: pd.DataFrame) -> list:
    """What the numbers say, as sentences (printed by the notebook; numbers as measured)."""
    lines = []
    q = quality.set_index("method")
    if len(q) >= 2:
        net, base = q.index[0], q.A_visible_iou.drop(q.index[0]).idxmax()
        lines.append(f"{net}: visible IoU {q.A_visible_iou[net]:.2f} (A) / {q.B_visible_iou[net]:.2f} (B) vs "
                     f"{base} {q.A_visible_iou[base]:.2f} / {q.B_visible_iou[base]:.2f}: "
                     f"{q.A_visible_iou[net] - q.A_visible_iou[base]:+.2f} points (A)")
    d = drops[drops.protocol == "A"]
    for method in dict.fromkeys(d.method):
        s = d[d.method == method].set_index("metric")
        parts = []
        for metric in ("full", "invisible"):
            if metric in s.index:
                r = s.loc[metric]
                ref = "" if pd.isna(r["paper_drop"]) else f" (paper {r['paper_drop']:.2f})"
                parts.append(f"{metric} {r['gt_input']:.2f} -> {r['predicted_input']:.2f}, drop {r['drop']:.2f}{ref}")
        lines.append(f"{method}, protocol A: " + "; ".join(parts))
    return lines


def worst_bins(per_bin: pd.DataFrame, method: str, protocol: str = "B", metric: str = "full") -> pd.DataFrame:
    """The bins of one method's curve, largest drop first (for the notebook's remarks)."""
    s = per_bin[(per_bin.method == method) & (per_bin.protocol == protocol) & (per_bin.metric == metric)]
    return s.sort_values("drop", ascending=False)[["bin", "n", "gt_input", "predicted_input", "drop"]]


def mean_drop(per_bin: pd.DataFrame) -> pd.DataFrame:
    """Per method, protocol and metric: the drop averaged over the bins (each bin counts once)."""
    return per_bin.groupby(["method", "protocol", "metric"], sort=False)["drop"].agg(["mean", "min", "max"]).reset_index()

