"""Every method completed and scored on one split: the rows of the main table (notebooks 05, 06
and 09), and the decoder threshold of record (the one ``amodal train`` searched on validation).

:func:`run_methods` completes the instances of a split that have an amodal mask with the visible
mask, its convex hull, PCNet-M, Amodal-VAE (posterior mode in the fitted frame, in the paper's
transformer frame and in the GT amodal box; best of k posterior samples) and the oracle-28
bound, and keeps each method's
per-instance table (:func:`amodal_lib.metrics.instance_table`'s columns), its masks, and the
Amodal-VAE details (posteriors, boxes, samples) the analyses of :mod:`amodal_lib.analysis` use.
The row names are the constants below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from . import metrics, registry
from .analysis import BestOfK, best_of_k, probs_table
from .data.crops import oracle_masks
from .data.records import AnnotationSet, subsample

VISIBLE = "visible mask"
HULL = "convex hull"
PCNET = "PCNet-M"
VAE_MODE = "Amodal-VAE (mode, fitted frame)"
VAE_TRANSFORMER = "Amodal-VAE (mode, transformer frame: the paper's)"
VAE_GT_BOX = "Amodal-VAE (mode, GT amodal box)"
VAE_FRAMES = {"fit": VAE_MODE, "transformer": VAE_TRANSFORMER}
ORACLE = "oracle-28"


def vae_best_name(k: int) -> str:
    return f"Amodal-VAE (best of {k}, fitted frame)"


@dataclass
class MethodResults:
    """Per-instance tables (metrics.instance_table's columns) of every method run on one split, the
    masks of those a figure needs, and the Amodal-VAE details (InstanceCompletions) per frame:
    "fit", "transformer", "amodal-gt"."""
    ann: AnnotationSet
    tables: dict
    masks: dict
    details: dict
    best: Optional[BestOfK] = None
    threshold: float = 0.5

    def summaries(self) -> dict:
        return {k: metrics.summarize(t) for k, t in self.tables.items()}


def complete_details(vae, instances, box: str = "predicted", threshold: float = 0.5, samples: int = 0,
                     frame: str = "fit", context: Optional[AnnotationSet] = None, seed: int = 0):
    """``complete_instances(..., return_details=True)`` of ``instances``: masks, posteriors, frames
    and (with ``samples`` = k) k posterior samples per instance (drawn from ``seed``); ``context``:
    the split they come from (what surrounds them, for the fitted frame)."""
    import torch
    from .predict.amodal_vae import complete_instances
    return complete_instances(vae, list(instances), box=box, threshold=threshold, samples=samples, frame=frame,
                              context=context, return_details=True, generator=torch.Generator().manual_seed(seed))


def run_methods(ann: AnnotationSet, vae=None, threshold: float = 0.5, samples: int = 0, pcnet=None,
                full_ann: Optional[AnnotationSet] = None, baselines: bool = True, gt_box: bool = True,
                oracle: bool = True, pcnet_threshold: Optional[float] = None) -> MethodResults:
    """Complete every instance of ``ann`` with each method and tabulate it. ``vae``: a trained
    AmodalVAE (posterior mode in the fitted frame and in the transformer's; with ``gt_box`` also in
    the GT amodal box; with ``samples`` = k also the best of k posterior samples of the fitted
    frame). ``full_ann``: the whole split (the occluders PCNet-M erases, what surrounds each
    instance for the fitted frame). ``pcnet``: a trained PCNet-M at ``pcnet_threshold`` (None: its
    0.2). ``baselines``: the visible mask and its convex hull; ``oracle``: the oracle-28 bound."""
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
        context = full_ann or ann
        for frame, name in VAE_FRAMES.items():
            det = complete_details(vae, inst, threshold=threshold, samples=samples if frame == "fit" else 0,
                                   frame=frame, context=context)
            details[frame] = det
            masks[name] = det.masks
            tables[name] = probs_table(inst, det.probs, det.boxes, threshold, det.union_visible, det.allowed)
        if gt_box:
            dg = complete_details(vae, inst, box="amodal-gt", threshold=threshold)
            details["amodal-gt"] = dg
            masks[VAE_GT_BOX] = dg.masks
            tables[VAE_GT_BOX] = probs_table(inst, dg.probs, dg.boxes, threshold, dg.union_visible)
        if samples:
            det = details["fit"]
            best = best_of_k(inst, det.sample_probs, det.boxes, threshold, det.union_visible, det.allowed)
            tables[vae_best_name(samples)] = best.table
    if oracle:
        masks[ORACLE] = dict(zip(ids, oracle_masks(inst)))
        tables[ORACLE] = metrics.instance_table(ann, masks[ORACLE])
    return MethodResults(ann, tables, masks, details, best, threshold)


def chosen_threshold(ctx, vae=None) -> dict:
    """The threshold of record of this notebook run's Amodal-VAE: the one ``amodal train`` searched
    on validation and stored beside the checkpoints (``threshold.json``; its sweep is
    ``threshold_sweep.csv`` there), with ``source`` saying where it was read."""
    from .errors import MissingCheckpointError
    from .train.validation import read_threshold
    run = ctx.run_dir("amodal-vae")
    saved = read_threshold(run)
    if saved is None:
        raise MissingCheckpointError(run / "threshold.json", "missing: train the run to its last stage "
                                                             "(notebook 03, or ctx.amodal_vae())")
    return {**saved, "source": str(run / "threshold.json")}


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
        tables[name] = metrics.instance_table(sub, registry.complete("amodal-vae", ann, vae, sub.instances,
                                                                     threshold=threshold))
    tables[ORACLE] = res.tables[ORACLE]
    table = completion_table({k: metrics.summarize(t) for k, t in tables.items()})
    return table.merge(oracle_share(table), on="method")
