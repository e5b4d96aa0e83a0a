"""Every method completed and scored on one split: the rows of the main table (notebooks 05, 06
and 09), the decoder threshold of record (the one ``amodal train`` searched on validation) and its
sweep, and the sentences the main table supports (:func:`reading`).

:func:`run_methods` completes the instances of a split that have an amodal mask with the visible
mask, its convex hull, PCNet-M, Amodal-VAE (posterior mode in the fitted frame, in the paper's
transformer frame and in the GT amodal box; best of k posterior samples) and the oracle-28
bound, and keeps each method's
per-instance table (:func:`amodal_lib.metrics.instance_table`'s columns), its masks, and the
Amodal-VAE details (posteriors, boxes, samples) the analyses of :mod:`amodal_lib.experiments.analysis` use.
The row names are the constants below.

The per-instance tables are what the analyses of several notebooks read: ``run_methods(...,
save_tables=PATH)`` (notebook 05) stores them with a key naming what made them (the instances, the
models' weights, the thresholds), and :func:`method_tables` (notebooks 06 and 11) reads them back when
the key matches, else completes again: one completion of the test split serves both.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from .. import metrics, paper, registry, thresholds
from ..io import atomic_write
from ..metrics import SCORE_COLUMNS
from ..predict.amodal_vae import complete_instances
from ..thresholds import probs_table
from .analysis import BestOfK, best_of_k, completion_table, oracle_share
from ..data.crops import oracle_masks
from ..data.records import AnnotationSet, subsample

VISIBLE = "visible mask"
HULL = "convex hull"
PCNET = "PCNet-M"
VAE_MODE = "Amodal-VAE (mode, fitted frame)"
VAE_TRANSFORMER = "Amodal-VAE (mode, transformer frame: the paper's)"
VAE_GT_BOX = "Amodal-VAE (mode, GT amodal box)"
VAE_FRAMES = {"fit": VAE_MODE, "transformer": VAE_TRANSFORMER}
FRAME_NAMES = {"fit": "fitted", "transformer": "transformer"}
ORACLE = "oracle-28"


def vae_best_name(k: int) -> str:
    return f"Amodal-VAE (best of {k}, fitted frame)"


@dataclass
class MethodResults:
    """Per-instance tables (metrics.instance_table's columns) of every method run on one split, the
    masks of those a figure needs, and the Amodal-VAE details (InstanceCompletions) per frame:
    "fit", "transformer", "amodal-gt"; ``thresholds``: {method: the threshold it binarised at} (the
    learned methods)."""
    ann: AnnotationSet
    tables: dict
    masks: dict
    details: dict
    best: Optional[BestOfK] = None
    threshold: float = 0.5
    thresholds: dict = field(default_factory=dict)

    def summaries(self) -> dict:
        return summaries(self.tables)


def summaries(tables: dict) -> dict:
    """{method: :func:`amodal_lib.metrics.summarize` of its per-instance table}."""
    return {k: metrics.summarize(t) for k, t in tables.items()}


def complete_details(vae, instances, box: str = "predicted", threshold: float = 0.5, samples: int = 0,
                     frame: str = "fit", context: Optional[AnnotationSet] = None, seed: int = 0):
    """``complete_instances(..., return_details=True)`` of ``instances``: masks, posteriors, frames
    and (with ``samples`` = k) k posterior samples per instance (drawn from ``seed``); ``context``:
    the split they come from (what surrounds them, for the fitted frame)."""
    return complete_instances(vae, list(instances), box=box, threshold=threshold, samples=samples, frame=frame,
                              context=context, return_details=True, generator=torch.Generator().manual_seed(seed))


def frame_model(frame: str, vae, threshold: float, variants: Optional[dict] = None) -> tuple:
    """(model, threshold) of Amodal-VAE in ``frame``: the frame's own, selected on validation for it
    (``variants``: {frame: (model, threshold)}, :func:`chosen_variants`), else ``vae`` at ``threshold``."""
    return (variants or {}).get(frame, (vae, threshold))


def chosen_variants(ctx) -> dict:
    """{frame: (model, threshold)} of the variant frames this notebook run's Amodal-VAE selected for
    themselves on validation (the paper's transformer frame: its own checkpoint and threshold,
    ``<run>/transformer/``); {} for a run made before variants (the frame is then scored with the run's
    own checkpoint and threshold, and the notebook says so)."""
    run = ctx.run_dir("amodal-vae")
    out = {}
    for frame in VAE_FRAMES:
        v = registry.variant_checkpoint("amodal-vae", run, frame)
        if v != run:
            out[frame] = (registry.load_model("amodal-vae", v), thresholds.stored_threshold(v)["threshold"])
    return out


def variants_line(variants: dict, threshold: float) -> str:
    """One sentence on how the paper's transformer frame is scored: with its own checkpoint and threshold
    (``variants``, :func:`chosen_variants`), or, for a run made before variants, with the fitted frame's."""
    if "transformer" not in variants:
        return (f"transformer frame (the paper's): scored with the fitted frame's checkpoint and threshold "
                f"(t = {threshold:g}): this run has no checkpoint of its own for it (trained before variants)")
    model, t = variants["transformer"]
    sel = getattr(model, "variant", None) or {}
    where = f"stage {sel['stage']}, step {sel['step']}" if sel else "its own"
    return (f"transformer frame (the paper's): its own checkpoint ({where}) and threshold t = {t:g}, both chosen "
            f"on validation in that frame")


def choices(res: "MethodResults", vae=None, variants: Optional[dict] = None) -> dict:
    """What the learned rows of a main table were scored with, for the manifest: {"thresholds": {method:
    t}, "checkpoints": {method: the checkpoint file}}."""
    ckpts = {}
    if vae is not None:
        for frame, name in VAE_FRAMES.items():
            model = frame_model(frame, vae, res.threshold, variants)[0]
            ckpts[name] = str(getattr(model, "checkpoint", ""))
    return {"thresholds": {k: float(v) for k, v in res.thresholds.items()}, "checkpoints": ckpts}


def run_methods(ann: AnnotationSet, vae=None, threshold: float = 0.5, samples: int = 0, pcnet=None,
                full_ann: Optional[AnnotationSet] = None, baselines: bool = True, gt_box: bool = True,
                oracle: bool = True, pcnet_threshold: Optional[float] = None,
                save_tables: Optional[Path] = None, variants: Optional[dict] = None) -> MethodResults:
    """Complete every instance of ``ann`` with each method and tabulate it. ``vae``: a trained
    AmodalVAE (posterior mode in the fitted frame and in the transformer's; with ``gt_box`` also in
    the GT amodal box; with ``samples`` = k also the best of k posterior samples of the fitted
    frame). ``full_ann``: the whole split (the occluders PCNet-M erases, what surrounds each
    instance for the fitted frame). ``pcnet``: a trained PCNet-M at ``pcnet_threshold`` (None: its
    0.2). ``baselines``: the visible mask and its convex hull; ``oracle``: the oracle-28 bound.
    ``save_tables``: a file to store the per-instance tables in, for :func:`method_tables`.
    ``variants``: {frame: (model, threshold)} of the frames completed with a checkpoint and threshold
    of their own (:func:`chosen_variants`: the paper's transformer frame); the GT-box and best-of-k
    rows are ``vae``'s at ``threshold``."""
    key = tables_key(ann, vae, threshold, pcnet, full_ann, pcnet_threshold, variants) if save_tables else None
    inst = [i for i in ann.instances if i.amodal is not None]
    ann = ann.subset(inst)
    ids = [i.id for i in inst]
    tables, masks, details, best, used = {}, {}, {}, None, {}
    if baselines:
        for name, method in ((VISIBLE, "visible"), (HULL, "convex-hull")):
            masks[name] = registry.complete(method, ann, instances=inst)
            tables[name] = metrics.instance_table(ann, masks[name])
    if pcnet is not None:
        masks[PCNET] = registry.complete("pcnet-m", full_ann or ann, pcnet, inst, threshold=pcnet_threshold)
        tables[PCNET] = metrics.instance_table(ann, masks[PCNET])
        used[PCNET] = pcnet_threshold if pcnet_threshold is not None else registry.default_threshold("pcnet-m")[0]
    if vae is not None:
        context = full_ann or ann
        for frame, name in VAE_FRAMES.items():
            model, t = frame_model(frame, vae, threshold, variants)
            det = complete_details(model, inst, threshold=t, samples=samples if frame == "fit" else 0,
                                   frame=frame, context=context)
            details[frame] = det
            masks[name] = det.masks
            tables[name], used[name] = probs_table(inst, det.probs, det.boxes, t, det.union_visible, det.allowed), t
        if gt_box:
            dg = complete_details(vae, inst, box="amodal-gt", threshold=threshold)
            details["amodal-gt"] = dg
            masks[VAE_GT_BOX] = dg.masks
            tables[VAE_GT_BOX], used[VAE_GT_BOX] = probs_table(inst, dg.probs, dg.boxes, threshold, dg.union_visible), threshold
        if samples:
            det = details["fit"]
            best = best_of_k(inst, det.sample_probs, det.boxes, threshold, det.union_visible, det.allowed)
            tables[vae_best_name(samples)], used[vae_best_name(samples)] = best.table, threshold
    if oracle:
        masks[ORACLE] = dict(zip(ids, oracle_masks(inst)))
        tables[ORACLE] = metrics.instance_table(ann, masks[ORACLE])
    if save_tables:
        atomic_write(save_tables, lambda f: pd.to_pickle({"key": key, "tables": tables}, f))
    return MethodResults(ann, tables, masks, details, best, threshold, used)


def with_thresholds(table: pd.DataFrame, used: dict) -> pd.DataFrame:
    """``table`` (one row per method) with a ``threshold`` column after ``method``: the threshold each
    learned method binarised at (``MethodResults.thresholds``), empty for the rules and oracle-28."""
    out = table.copy()
    out.insert(1, "threshold", [used.get(m, np.nan) for m in out.method])
    return out


def _weights_digest(model) -> str:
    if model is None:
        return "-"
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def tables_key(ann: AnnotationSet, vae=None, threshold: float = 0.5, pcnet=None,
               full_ann: Optional[AnnotationSet] = None, pcnet_threshold: Optional[float] = None,
               variants: Optional[dict] = None) -> str:
    """A digest of what :func:`run_methods`'s per-instance tables depend on: the instances (ids and
    the context split's ids), the weights of the models (the variants' too) and the thresholds. (The
    number of samples is in the name of the best-of-k table, the only one it changes.)"""
    ids = ",".join(str(i.id) for i in ann.instances)
    ctx_ids = ",".join(str(i.id) for i in full_ann.instances) if full_ann is not None else "-"
    parts = [ids, ctx_ids, _weights_digest(vae), _weights_digest(pcnet), repr(float(threshold)), repr(pcnet_threshold)]
    parts += [f"{f}:{_weights_digest(m)}:{float(t)!r}" for f, (m, t) in sorted((variants or {}).items())]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def method_tables(ann: AnnotationSet, vae=None, threshold: float = 0.5, samples: int = 0, pcnet=None,
                  full_ann: Optional[AnnotationSet] = None, cache: Optional[Path] = None, store: bool = False,
                  **flags) -> dict:
    """{method: per-instance table} of :func:`run_methods` (same arguments; ``flags``: its ``baselines``,
    ``gt_box``, ``oracle``, ``pcnet_threshold``, ``variants``): read from ``cache`` when an earlier
    ``run_methods(..., save_tables=cache)`` stored them for the same instances, models and thresholds
    (and, for the best-of-k table, the same k: its name holds it), else completed now (and, with
    ``store``, stored in ``cache`` for the next reader). Prints which."""
    if cache is not None and Path(cache).is_file():
        key = tables_key(ann, vae, threshold, pcnet, full_ann, flags.get("pcnet_threshold"), flags.get("variants"))
        try:
            stored = pd.read_pickle(cache)
        except Exception:   # an unreadable cache is ignored: the tables are completed again
            stored = {}
        if isinstance(stored, dict) and stored.get("key") == key:
            want = _expected_names(vae, pcnet, samples, **flags)
            if set(want) <= set(stored["tables"]):
                print(f"per-instance tables read from {cache} (same instances, models and thresholds)")
                return {k: stored["tables"][k] for k in want}
    res = run_methods(ann, vae, threshold, samples, pcnet, full_ann, save_tables=cache if store else None, **flags)
    return res.tables


def _expected_names(vae, pcnet, samples: int, baselines: bool = True, gt_box: bool = True, oracle: bool = True,
                    pcnet_threshold: Optional[float] = None, variants: Optional[dict] = None) -> list:
    names = [VISIBLE, HULL] if baselines else []
    names += [PCNET] if pcnet is not None else []
    if vae is not None:
        names += list(VAE_FRAMES.values()) + ([VAE_GT_BOX] if gt_box else [])
        names += [vae_best_name(samples)] if samples else []
    return names + ([ORACLE] if oracle else [])


def chosen_threshold(ctx, vae=None) -> dict:
    """The threshold of record of this notebook run's Amodal-VAE: the one ``amodal train`` searched
    on validation and stored beside the checkpoints (:func:`amodal_lib.thresholds.stored_threshold`),
    with ``source`` saying where it was read."""
    return thresholds.stored_threshold(ctx.run_dir("amodal-vae"))


def recorded_sweep(ctx) -> pd.DataFrame:
    """The threshold sweep ``amodal train`` made on validation for this notebook run's Amodal-VAE
    (:func:`amodal_lib.thresholds.recorded_sweep`: per set, then the mean the choice is made on)."""
    return thresholds.recorded_sweep(ctx.run_dir("amodal-vae"))


def models_table(ann: AnnotationSet, models: dict, threshold: float = 0.5, max_instances: Optional[int] = None,
                 seed: int = 0, known: Optional[dict] = None) -> pd.DataFrame:
    """One row per method on the instances of ``ann`` that have an amodal mask (whole images up to
    ``max_instances``, :func:`amodal_lib.data.records.subsample`): the visible mask, its convex hull,
    each Amodal-VAE of ``models`` ({row name: model}; posterior mode in its fitted frame at
    ``threshold``) and oracle-28, each with its share of oracle-28 (e.g. a stage before and after
    fine-tuning, notebook 03). ``known``: {row name: {"A_full", "A_invisible", "B_full",
    "B_invisible"}} of models already scored on these instances (e.g. by the validation that
    selected their checkpoint, :func:`amodal_lib.experiments.stages.before_after`), used instead of completing
    when every instance is scored (``max_instances`` None: a subsample was not what they scored)."""
    sub = subsample(ann, max_instances, seed)
    res = run_methods(sub)
    summ = {VISIBLE: metrics.summarize(res.tables[VISIBLE]), HULL: metrics.summarize(res.tables[HULL])}
    n = summ[VISIBLE]["overall"]["n"]
    for name, vae in models.items():
        k = (known or {}).get(name)
        if k is not None and max_instances is None:
            summ[name] = {"overall": {"n": n, "A": {"full": k["A_full"], "invisible": k["A_invisible"]},
                                      "B": {"full": k["B_full"], "invisible": k["B_invisible"]}}}
            continue
        summ[name] = metrics.evaluate(sub, registry.complete("amodal-vae", ann, vae, sub.instances, threshold=threshold))
    summ[ORACLE] = metrics.summarize(res.tables[ORACLE])
    table = completion_table(summ)
    return table.merge(oracle_share(table), on="method")


def threshold_choice(sweep: pd.DataFrame, chosen: float, paper_threshold: float) -> pd.DataFrame:
    """Our threshold and the paper's side by side (notebook 04): the scores at each, from the rows of
    ``sweep`` (:func:`recorded_sweep`) with set "mean" (the mean over the validation sets, what
    the choice is made on); a threshold the sweep did not try has no row."""
    mean = sweep[sweep.set == "mean"] if "set" in sweep else sweep
    rows = []
    for label, t in (("ours (threshold.json)", chosen), ("paper", paper_threshold)):
        hit = mean[np.isclose(mean.threshold, t)]
        if len(hit):
            rows.append({"threshold": f"{label}: t = {t:g}", **hit.iloc[0][SCORE_COLUMNS].to_dict()})
    return pd.DataFrame(rows, columns=["threshold"] + SCORE_COLUMNS)


def frame_thresholds(sweeps: dict, chosen: dict, own: str = "fit") -> pd.DataFrame:
    """Each frame's threshold beside the run's own frame's (notebook 04): ``sweeps`` {frame: its
    :func:`recorded_sweep`, made with the checkpoint selected for that frame}, ``chosen`` {frame: its
    threshold of record}. One row per frame at its own threshold, and one per other frame at ``own``'s
    threshold (how it was scored before each frame had its own), with the mean validation scores."""
    rows = []
    for frame, sweep in sweeps.items():
        mean = sweep[sweep.set == "mean"] if "set" in sweep else sweep
        for label, t in ((f"its own: t = {chosen[frame]:g}", chosen[frame]),
                         *(((f"the {FRAME_NAMES.get(own, own)} frame's: t = {chosen[own]:g}", chosen[own]),)
                           if frame != own and own in chosen
                           else ())):
            hit = mean[np.isclose(mean.threshold, t)]
            if len(hit):
                rows.append({"frame": frame, "threshold": label, **hit.iloc[0][SCORE_COLUMNS].to_dict()})
    return pd.DataFrame(rows, columns=["frame", "threshold"] + SCORE_COLUMNS)


def models_table_per_set(sets: dict, models: dict, threshold: float = 0.5, max_instances: Optional[int] = None,
                         seed: int = 0, known: Optional[dict] = None) -> pd.DataFrame:
    """:func:`models_table` on each of ``sets`` ({name: AnnotationSet}, e.g. a run's validation
    sets), one block of rows per set with its name in the first column, ``set``; ``known``: {set:
    models_table's ``known``}."""
    tables = [models_table(ann, models, threshold, max_instances, seed, (known or {}).get(name)).assign(set=name)
              for name, ann in sets.items()]
    out = pd.concat(tables, ignore_index=True)
    return out[["set"] + [c for c in out.columns if c != "set"]]


FRAME_OF = {VAE_MODE: "fit", VAE_TRANSFORMER: "transformer", VAE_GT_BOX: "amodal-gt"}


def figure_rows(res: MethodResults, names: Sequence[str]) -> list:
    """Rows for :func:`amodal_lib.viz.plot_box_pairs`, one per Amodal-VAE row name of ``names``
    (:data:`VAE_MODE`, :data:`VAE_TRANSFORMER`, :data:`VAE_GT_BOX`): (label, its masks, its full IoU
    per instance, the image box each completion was drawn in)."""
    labels = {VAE_MODE: "fitted frame", VAE_TRANSFORMER: "transformer frame (paper)", VAE_GT_BOX: "GT amodal box"}
    rows = []
    for name in names:
        det, tab = res.details[FRAME_OF[name]], res.tables[name]
        rows.append((labels[name], res.masks[name], dict(zip(tab.id, tab.full_iou)), dict(zip(det.ids, det.boxes))))
    return rows


def _versus(t: pd.DataFrame, a: str, b: str, seeds: Optional[pd.DataFrame] = None) -> tuple[dict, int]:
    """Row ``a`` against row ``b`` of a table indexed by method: {"full": "full mIoU x vs y (ahead)
    (A), ... (B)", "invisible": ..., "both": the two joined}, and on how many of the four scores
    ``a`` is ahead. ``seeds``: the same rows trained with other seeds (:func:`seed_margin`), which
    says after each verdict whether every seed agrees with it."""
    def cmp(col):
        x, y = t.loc[a, col], t.loc[b, col]
        if pd.isna(x) or pd.isna(y):
            return "-", 0
        text = f"{x:.2f} vs {y:.2f} ({'ahead' if x > y else 'behind' if x < y else 'level'}"
        return text + (seed_margin(seeds, a, b, col, x, y) if seeds is not None else "") + ")", int(x > y)
    parts = {col: cmp(col) for col in ("A_full", "B_full", "A_invisible", "B_invisible")}
    text = {m: f"{m} mIoU {parts[f'A_{m}'][0]} (A), {parts[f'B_{m}'][0]} (B)" for m in ("full", "invisible")}
    text["both"] = f"{text['full']}; {text['invisible']}"
    return text, sum(p[1] for p in parts.values())


def seed_margin(seeds: pd.DataFrame, a: str, b: str, col: str, x: float, y: float) -> str:
    """Whether the verdict of row ``a`` (score ``x``) against row ``b`` (``y``) on score ``col`` keeps its
    sign when the learned rows are trained with other seeds. ``seeds``: one row per (seed, method)
    of the main table (columns ``seed``, ``method`` and the scores); a row absent from it (a rule)
    scores its table value with every seed. Returns e.g. "; every one of 3 seeds agrees: margin
    +2.10 to +3.40", or "; within the seed spread: 2 of 3 seeds agree, margin -0.30 to +0.90"
    ("" when neither row is in ``seeds``)."""
    per = {row: seeds[seeds.method == row].set_index("seed")[col].astype(float) for row in (a, b)
           if (seeds.method == row).any()}
    if not per:
        return ""
    common = sorted(set.intersection(*(set(v.index) for v in per.values())))
    if not common:
        return ""
    d = np.array([(per[a].loc[k] if a in per else x) - (per[b].loc[k] if b in per else y) for k in common])
    agree = int((np.sign(d) == np.sign(x - y)).sum())
    span = f"margin {d.min():+.2f} to {d.max():+.2f}"
    if agree == len(d):
        return f"; every one of {len(d)} seeds agrees: {span}"
    return f"; within the seed spread: {agree} of {len(d)} seeds agree, {span}"


def reading(table: pd.DataFrame, seeds: Optional[pd.DataFrame] = None) -> list:
    """Sentences the main table supports, computed from its numbers (notebook 05 and
    ``results/README.md``): the fitted frame against the paper's transformer frame, each against
    PCNet-M, the fitted frame against the rules, and what the GT amodal box gives. Rows the table
    lacks are skipped. ``seeds``: the learned rows trained with other seeds (notebook 14's
    ``seed_spread_runs`` table, main-table rows), which adds to each verdict whether every seed
    agrees with it (:func:`seed_margin`)."""
    t = table.set_index("method")
    out = []
    if VAE_MODE in t.index and VAE_TRANSFORMER in t.index:
        text, k = _versus(t, VAE_MODE, VAE_TRANSFORMER, seeds)
        out.append(f"The fitted frame (ours, the default) against the transformer frame (the paper's): {text['both']}; "
                   f"ahead on {k} of 4.")
    for name, label in ((VAE_MODE, "the fitted frame"), (VAE_TRANSFORMER, "the transformer frame")):
        if name in t.index and PCNET in t.index:
            text, k = _versus(t, name, PCNET, seeds)
            out.append(f"Amodal-VAE in {label} against PCNet-M: {text['both']}; ahead on {k} of 4.")
    if VAE_MODE in t.index and VISIBLE in t.index and HULL in t.index:
        full, inv = _versus(t, VAE_MODE, VISIBLE, seeds)[0]["full"], _versus(t, VAE_MODE, HULL, seeds)[0]["invisible"]
        out.append(f"Against the rules (the paper's claim): the fitted frame against the visible mask, {full}; "
                   f"against the convex hull, {inv}.")
    if VAE_GT_BOX in t.index:
        g, ref = t.loc[VAE_GT_BOX], paper.GT_VISIBLE_INPUT["Amodal-VAE"]
        out.append(f"With the GT amodal box instead (evaluation only: it reads the answer's frame) Amodal-VAE "
                   f"scores {g.A_full:.2f} / {g.A_invisible:.2f} (A full / invisible); the paper's KINS numbers, "
                   f"with its predicted box, are {ref['full']:.2f} / {ref['invisible']:.2f}.")
    return out
