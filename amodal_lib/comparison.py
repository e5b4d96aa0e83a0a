"""Every method completed and scored on one split: the rows of the main table (notebooks 05, 06
and 09), and the decoder threshold of record (notebook 04's, or the same sweep run in place).

:func:`run_methods` completes the instances of a split that have an amodal mask with the visible
mask, its convex hull, PCNet-M, Amodal-VAE (posterior mode in the predicted box and in the GT
amodal box, best of k posterior samples) and the oracle-28 bound, and keeps each method's
per-instance table (:func:`amodal_lib.metrics.instance_table`'s columns), its masks, and the
Amodal-VAE details (posteriors, boxes, samples) the analyses of :mod:`amodal_lib.analysis` use.
The row names are the constants below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from . import metrics, registry
from .analysis import BestOfK, best_of_k, probs_table, threshold_summary, threshold_sweep
from .data.crops import oracle_masks
from .data.records import AnnotationSet, subsample

VISIBLE = "visible mask"
HULL = "convex hull"
PCNET = "PCNet-M"
VAE_MODE = "Amodal-VAE (mode, predicted box)"
VAE_GT_BOX = "Amodal-VAE (mode, GT amodal box)"
ORACLE = "oracle-28"


def vae_best_name(k: int) -> str:
    return f"Amodal-VAE (best of {k}, predicted box)"


@dataclass
class MethodResults:
    """Per-instance tables (metrics.instance_table's columns) of every method run on one split, the
    masks of those a figure needs, and the Amodal-VAE details (InstanceCompletions) per box mode."""
    ann: AnnotationSet
    tables: dict
    masks: dict
    details: dict
    best: Optional[BestOfK] = None
    threshold: float = 0.5

    def summaries(self) -> dict:
        return {k: metrics.summarize(t) for k, t in self.tables.items()}


def complete_details(vae, instances, box: str = "predicted", threshold: float = 0.5, samples: int = 0):
    """``complete_instances(..., return_details=True)`` of ``instances``: masks, posteriors, boxes and
    (with ``samples`` = k) k posterior samples per instance."""
    from .models.amodal_vae import complete_instances
    return complete_instances(vae, list(instances), box=box, threshold=threshold, samples=samples,
                              return_details=True)


def run_methods(ann: AnnotationSet, vae=None, threshold: float = 0.5, samples: int = 0, pcnet=None,
                full_ann: Optional[AnnotationSet] = None, baselines: bool = True, gt_box: bool = True,
                oracle: bool = True, pcnet_threshold: Optional[float] = None) -> MethodResults:
    """Complete every instance of ``ann`` with each method and tabulate it. ``vae``: a trained
    AmodalVAE (posterior mode with the predicted box; with ``gt_box`` also in the GT amodal box;
    with ``samples`` = k also the best of k posterior samples). ``pcnet``: a trained PCNet-M, run
    with ``full_ann`` (the whole split, for the occluders) at ``pcnet_threshold`` (None: its 0.2). ``baselines``:
    the visible mask and its convex hull; ``oracle``: the oracle-28 bound."""
    inst = [i for i in ann.instances if i.amodal is not None]
    ann = ann.subset(inst)
    ids = [i.id for i in inst]
    tables, masks, details, best = {}, {}, {}, None
    if baselines:
        for name, method in ((VISIBLE, "visible"), (HULL, "convex-hull")):
            masks[name] = registry.complete(method, ann, instances=inst)
            tables[name] = metrics.instance_table(ann, masks[name])
    if pcnet is not None:
        masks[PCNET] = registry.complete("pcnet-m", full_ann or ann, pcnet, inst, threshold=pcnet_threshold)
        tables[PCNET] = metrics.instance_table(ann, masks[PCNET])
    if vae is not None:
        det = complete_details(vae, inst, box="predicted", threshold=threshold, samples=samples)
        details["predicted"] = det
        masks[VAE_MODE] = det.masks
        tables[VAE_MODE] = probs_table(inst, det.probs, det.boxes, threshold, det.union_visible)
        if gt_box:
            dg = complete_details(vae, inst, box="amodal-gt", threshold=threshold)
            details["amodal-gt"] = dg
            masks[VAE_GT_BOX] = dg.masks
            tables[VAE_GT_BOX] = probs_table(inst, dg.probs, dg.boxes, threshold, dg.union_visible)
        if samples:
            best = best_of_k(inst, det.sample_probs, det.boxes, threshold, det.union_visible)
            tables[vae_best_name(samples)] = best.table
    if oracle:
        masks[ORACLE] = dict(zip(ids, oracle_masks(inst)))
        tables[ORACLE] = metrics.instance_table(ann, masks[ORACLE])
    return MethodResults(ann, tables, masks, details, best, threshold)


def sweep_split(vae, ann: AnnotationSet, thresholds) -> pd.DataFrame:
    """threshold_sweep of the posterior mode (predicted box) on every instance of ``ann``."""
    inst = [i for i in ann.instances if i.amodal is not None]
    det = complete_details(vae, inst, box="predicted")
    return threshold_sweep(inst, det.probs, det.boxes, thresholds, det.union_visible)


def chosen_threshold(ctx, vae, criterion: str = "A_full") -> dict:
    """The threshold notebook 04 stored for this profile, data and model; when it is missing or
    was made for another profile or data set, the same validation sweep is run here."""
    key = {"profile": ctx.profile, "data": ctx.data()["hash"], "seed": ctx.seed}
    try:
        saved = ctx.load_json("threshold")
        if all(saved.get(k) == v for k, v in key.items()):
            saved["source"] = "04_threshold_search"
            return saved
    except FileNotFoundError:
        pass
    val = subsample(ctx.annotations("val"), ctx.cfg["eval"]["max_instances"], ctx.seed)
    sweep = sweep_split(vae, val, ctx.cfg["eval"]["thresholds"])
    out = {**threshold_summary(sweep, criterion), **key, "source": "swept in place (04 not run for this profile)"}
    return out


def models_table(ann: AnnotationSet, models: dict, threshold: float = 0.5, max_instances: Optional[int] = None,
                 seed: int = 0) -> pd.DataFrame:
    """One row per method on the instances of ``ann`` that have an amodal mask (whole images up to
    ``max_instances``, :func:`amodal_lib.data.records.subsample`): the visible mask, its convex hull,
    each Amodal-VAE of ``models`` ({row name: model}; posterior mode in its predicted box at
    ``threshold``) and oracle-28, each with its share of oracle-28 (e.g. a stage before and after
    fine-tuning, notebook 03)."""
    from .analysis import completion_table, oracle_share
    sub = subsample(ann, max_instances, seed)
    res = run_methods(sub)
    tables = {VISIBLE: res.tables[VISIBLE], HULL: res.tables[HULL]}
    for name, vae in models.items():
        tables[name] = metrics.instance_table(sub, registry.complete("amodal-vae", sub, vae, threshold=threshold))
    tables[ORACLE] = res.tables[ORACLE]
    table = completion_table({k: metrics.summarize(t) for k, t in tables.items()})
    return table.merge(oracle_share(table), on="method")
