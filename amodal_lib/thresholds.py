"""The binarisation threshold of the completions, one home for the decision: how it is searched on
validation, where the search is stored and read back, and what a method falls back to.

Searched
    :func:`threshold_tables` pastes each instance's probability crop back once and binarises it at
    every threshold (the metrics are exactly :mod:`amodal_lib.metrics`', computed on pixels; tested);
    :func:`threshold_sweep` scores one set at every threshold, :func:`sweep_thresholds` every
    validation set of a run, and the threshold with the largest protocol-A full mIoU averaged over
    the sets is chosen, ties going to the smaller (:func:`pick_threshold`; ``docs/design.md``,
    "Threshold criterion"). The paper found t = 0.1 (:data:`PAPER`, supplementary 3.1).
Stored beside the checkpoints
    ``amodal train --model amodal-vae`` writes the choice to ``threshold.json`` in the run folder
    and the sweep to ``threshold_sweep.csv`` (:func:`write_threshold`).
Read back
    :func:`read_threshold` (a bad file is a :class:`~amodal_lib.errors.CheckpointError` naming it),
    :func:`stored_threshold` (the threshold of record: an error when the run has none) and
    :func:`recorded_sweep`.
Fallen back to
    :func:`default_threshold`: a method's threshold when none is given: Amodal-VAE's searched one
    (``threshold.json`` beside its checkpoint), else :data:`FALLBACK`; PCNet-M's own
    :data:`PCNET_M` (Deocclusion's).

The GT amodal masks are read here for evaluation only (validation and test sets, never training).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from . import metrics, paper
from .data import masks as M
from .data import rle as R
from .data.crops import paste_region
from .data.readers import read_json
from .data.records import AnnotationSet, Instance
from .errors import AnnotationError, CheckpointError, MissingCheckpointError
from .io import atomic_write_json, atomic_write_text
from .metrics import SCORE_COLUMNS

FALLBACK = 0.5          # a method that searched none: the rules, Amodal-VAE without threshold.json, ResNet-PSP
PCNET_M = 0.2           # PCNet-M's own (the public Deocclusion code's)
PAPER = paper.THRESHOLD  # what the paper's search found (0.1): shown beside ours, never a default
FILE = "threshold.json"
SWEEP_FILE = "threshold_sweep.csv"
# the methods whose own threshold is fixed, and those whose training searches one (threshold.json)
OWN = {"pcnet-m": (PCNET_M, "PCNet-M's own")}
SEARCHED = ("amodal-vae",)

TABLE_COLUMNS = ["id", "image_id", "category", "visible_ratio", "occlusion_rate", "full_inter", "full_union",
                 "inv_inter", "inv_union", "gt_hidden"]


# --------------------------------------------------------------------------- completions scored at thresholds
def check_thresholds(thresholds) -> list:
    ts = [float(t) for t in thresholds]
    bad = [t for t in ts if not 0.0 < t <= 1.0]
    if bad:
        raise ValueError(f"thresholds must lie in (0, 1], got {bad[0]}")
    return ts


def region_stats(inst: Instance, region, pred: np.ndarray, union_visible: bool = False, allowed=None) -> dict:
    """Areas behind full and invisible IoU for ``m`` predictions (m, rh, rw) bool that are empty
    outside ``region`` (the same quantities as metrics.instance_table, computed on pixels).
    ``allowed`` (an RLE or None): the predictions are first kept inside it, as
    ``complete_instances(frame="fit")`` keeps a completion inside what may hide it.
    With ``union_visible`` each prediction is then joined with the visible mask V, as
    ``complete_instances(union_visible=True)`` does: |P u V| = |P| + |V| - |P n V| and so on."""
    ag, av = int(M.area(inst.amodal)), int(M.area(inst.visible))
    gv = int(M.area(M.merge([inst.amodal, inst.visible], intersect=True)))
    m = len(pred)
    if region is None:
        ap = pg = pv = pgv = np.zeros(m, np.int64)
    else:
        rows, cols, _ = region   # the masks are read inside the region only
        win = (rows.start, rows.stop, cols.start, cols.stop)
        gr = R.decode_window(inst.amodal, *win).astype(bool)
        vr = R.decode_window(inst.visible, *win).astype(bool)
        if allowed is not None:
            pred = pred & R.decode_window(allowed, *win).astype(bool)
        ap = pred.sum((1, 2))
        pg = (pred & gr).sum((1, 2))
        pv = (pred & vr).sum((1, 2))
        pgv = (pred & (gr & vr)).sum((1, 2))
    if union_visible:
        ap, pg, pv, pgv = ap + av - pv, pg + gv - pgv, np.full(m, av), np.full(m, gv)
    inv_i = pg - pgv
    inv_p, inv_g = ap - pv, ag - gv
    return {"full_inter": pg, "full_union": ap + ag - pg, "inv_inter": inv_i,
            "inv_union": inv_p + inv_g - inv_i, "gt_hidden": np.full(m, inv_g)}


def finish_table(rows: list) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    for c in TABLE_COLUMNS[5:]:
        df[c] = df[c].astype(np.int64)
    df["full_iou"] = df.full_inter / df.full_union.clip(lower=1)
    df["inv_iou"] = np.where(df.inv_union > 0, df.inv_inter / df.inv_union.clip(lower=1), np.nan)
    df.attrs["missing"] = 0
    return df


def instance_meta(inst: Instance) -> dict:
    return {"id": inst.id, "image_id": inst.image_id, "category": inst.category,
            "visible_ratio": inst.visible_ratio, "occlusion_rate": inst.occlusion_rate}


def threshold_tables(instances: Sequence[Instance], probs: torch.Tensor, boxes: torch.Tensor,
                     thresholds: Sequence[float], union_visible: bool = True, allowed=None) -> dict:
    """{t: per-instance table (metrics.instance_table's columns)} of the crops ``probs`` (N, S, S)
    pasted at the image ``boxes`` (N, 4, xyxy) and binarised at each ``t`` (``>= t``, as
    crops.paste_masks), joined with the visible mask when ``union_visible`` (as
    ``complete_instances`` does by default), kept inside ``allowed[k]`` where given
    (``InstanceCompletions.allowed``). One paste per instance, whatever the number of
    thresholds."""
    ts = check_thresholds(thresholds)
    instances = list(instances)
    if len(probs) != len(instances) or len(boxes) != len(instances):
        raise ValueError(f"{len(instances)} instances but {len(probs)} crops and {len(boxes)} boxes")
    tarr = np.asarray(ts, np.float32)[:, None, None]
    rows: dict = {t: [] for t in ts}
    for k, inst in enumerate(instances):
        if inst.amodal is None:
            continue
        region = paste_region(probs[k][None], boxes[k], inst.height, inst.width)
        pred = (region[2] >= tarr) if region is not None else np.zeros((len(ts), 0, 0), bool)
        st = region_stats(inst, region, pred, union_visible, None if allowed is None else allowed[k])
        meta = instance_meta(inst)
        for j, t in enumerate(ts):
            rows[t].append({**meta, **{c: int(st[c][j]) for c in st}})
    return {t: finish_table(r) for t, r in rows.items()}


def probs_table(instances, probs, boxes, threshold: float, union_visible: bool = True, allowed=None
                ) -> pd.DataFrame:
    """The per-instance table of one set of crops at one threshold (e.g. the posterior mode)."""
    return threshold_tables(instances, probs, boxes, [threshold], union_visible, allowed)[float(threshold)]


def threshold_sweep(instances, probs, boxes, thresholds, union_visible: bool = True, allowed=None) -> pd.DataFrame:
    """One row per threshold: n and full / invisible mIoU (%) under protocols A and B."""
    tabs = threshold_tables(instances, probs, boxes, thresholds, union_visible, allowed)
    rows = []
    for t, tab in tabs.items():
        r = metrics.scores_row(f"t={t:g}", metrics.summarize(tab))
        rows.append({"threshold": t, "n": r["n"], **{c: r[c] for c in SCORE_COLUMNS}})
    return pd.DataFrame(rows).sort_values("threshold").reset_index(drop=True)


def pick_threshold(sweep: pd.DataFrame, criterion: str = "A_full") -> float:
    """The threshold with the largest ``criterion`` (a column of :func:`threshold_sweep`; decided:
    protocol-A full mIoU), the smallest such ``t`` on ties."""
    if criterion not in sweep.columns:
        raise ValueError(f"criterion must be one of {SCORE_COLUMNS}, got {criterion!r}")
    s = sweep.sort_values("threshold")
    vals = s[criterion].astype(float).to_numpy()
    if np.all(np.isnan(vals)):
        raise ValueError(f"no threshold has a {criterion} score")
    return float(s.threshold.to_numpy()[int(np.nanargmax(vals))])


def threshold_summary(sweep: pd.DataFrame, criterion: str = "A_full") -> dict:
    """A sweep's threshold (the largest ``criterion``), the paper's beside it, the scores at both, and
    the best threshold per score (notebook 04)."""
    t = pick_threshold(sweep, criterion)

    def at(tt):
        hit = sweep[np.isclose(sweep.threshold, tt)]
        return None if hit.empty else {c: _number(hit.iloc[0][c]) for c in SCORE_COLUMNS}
    best_each = {c: pick_threshold(sweep, c) for c in SCORE_COLUMNS if sweep[c].notna().any()}
    return {"threshold": t, "paper": PAPER, "criterion": f"max {criterion} on the validation split",
            "scores_at_threshold": at(t), "scores_at_paper": at(PAPER), "best_per_metric": best_each,
            "n": int(sweep.n.iloc[0]) if len(sweep) else 0}


def _number(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


# --------------------------------------------------------------------------- searched on validation
def sweep_thresholds(validation, details: Callable[[AnnotationSet], object], thresholds,
                     criterion: str = "A_full") -> tuple[float, pd.DataFrame]:
    """(the chosen threshold, the sweep) on the sets of ``validation`` (a run's
    :class:`~amodal_lib.train.validation.Validation`): ``details(input)`` gives an ``InstanceCompletions`` of
    a set's input (probabilities, frames, ``allowed``, the noise it was completed at); every threshold is
    scored on every set, and the one with the largest ``criterion`` averaged over the sets whose input
    is the clean set is chosen (ties: the smaller). :func:`noisy_threshold` picks the one for
    segmenter masks from the other rows. The sweep's ``noisy`` column says which rows are which."""
    ts = check_thresholds(thresholds)
    frames = []
    for name, ann in validation.sets.items():
        given = validation.input(name)
        det = details(given)
        if given is ann and not getattr(det, "noise", 0):
            sw = threshold_sweep(det.instances, det.probs, det.boxes, ts, det.union_visible, det.allowed)
        else:   # a segmenter's masks (or soft evidence): pasted as the completion joins them, scored on the clean set
            rows = []
            for t, masks in zip(ts, det.paste_thresholds(det.probs, ts)):   # pasted once, cut at each t
                r = metrics.scores_row(f"t={t:g}", metrics.summarize(metrics.instance_table(ann, masks)))
                rows.append({"threshold": t, "n": r["n"], **{c: r[c] for c in SCORE_COLUMNS}})
            sw = pd.DataFrame(rows)
        frames.append(sw.assign(set=name, noisy=validation.is_noisy(name)))
    sweep = pd.concat(frames, ignore_index=True)
    return clean_choice(sweep, criterion)[0], sweep


def clean_choice(sweep: pd.DataFrame, criterion: str = "A_full") -> tuple[float, float]:
    """(threshold, value) that :func:`sweep_thresholds` chooses from a sweep: the largest ``criterion``
    averaged over the rows of the clean sets (all rows where there is none), ties to the smaller threshold."""
    noisy = sweep.noisy.astype(bool)
    return _best(sweep[~noisy] if (~noisy).any() else sweep, criterion)


def noisy_threshold(sweep: pd.DataFrame, criterion: str = "A_full") -> tuple:
    """(threshold, evidence) for segmenter masks: the largest ``criterion`` averaged over the sweep's
    noisy rows (:func:`sweep_thresholds`), among each ``evidence`` the sweep has (:data:`EVIDENCE`;
    ties: the first in that order), or (None, None) without noisy rows."""
    if "noisy" not in sweep.columns or not sweep.noisy.any():
        return None, None
    rows = sweep[sweep.noisy.astype(bool)]
    if "evidence" not in rows.columns:
        rows = rows.assign(evidence="soft")
    best = None
    for ev in sorted(rows.evidence.unique(), key=lambda e: EVIDENCE.index(e) if e in EVIDENCE else len(EVIDENCE)):
        t, v = _best(rows[rows.evidence == ev], criterion)
        if best is None or v > best[2]:
            best = (t, ev, v)
    return best[0], best[1]


# how a segmenter's masks may be taken (amodal_lib.predict.evidence): "soft", evidence at their estimated
# noise (also a run without the choice); "hard", as truth; "smooth", smoothed by their estimated noise first
EVIDENCE = ("soft", "hard", "smooth")


def noisy_evidence(checkpoint) -> str:
    """How a run takes a segmenter's masks, as its validation chose (``threshold.json``'s
    ``noisy.evidence``, one of :data:`EVIDENCE`; "soft" for a run without the choice)."""
    if checkpoint is None:
        return "soft"
    ck = Path(checkpoint)
    noisy = (read_threshold(ck if ck.is_dir() else ck.parent) or {}).get("noisy") or {}
    return noisy.get("evidence", "soft")


def _best(sweep: pd.DataFrame, criterion: str) -> tuple[float, float]:
    """(threshold, value) of the largest ``criterion`` averaged over a sweep's rows per threshold."""
    mean = sweep.groupby("threshold", as_index=False)[SCORE_COLUMNS].mean()
    vals = mean[criterion].to_numpy(float)
    k = int(np.nanargmax(vals))
    return float(mean.threshold.to_numpy()[k]), float(vals[k])



# --------------------------------------------------------------------------- stored and read back
def write_threshold(run_dir, threshold: float, sweep: Optional[pd.DataFrame] = None, **info) -> Path:
    """``run_dir/threshold.json``: the validation threshold ``amodal complete`` and the notebooks use
    (``info``: how it was chosen), and ``run_dir/threshold_sweep.csv``, the ``sweep`` it was chosen
    from, when given."""
    if sweep is not None:
        atomic_write_text(Path(run_dir) / SWEEP_FILE, sweep.to_csv(index=False))
    path = Path(run_dir) / FILE
    atomic_write_json(path, {"threshold": float(threshold), **info})
    return path


def _valid(t) -> bool:
    """A stored threshold: a number in (0, 1]."""
    return not isinstance(t, bool) and isinstance(t, (int, float)) and 0.0 < t <= 1.0


def read_threshold(run_dir) -> Optional[dict]:
    """The content of ``run_dir/threshold.json`` (None when there is none); a
    :class:`~amodal_lib.errors.CheckpointError` naming the file when it is unreadable or its
    ``threshold`` is not a number in (0, 1], or its ``noisy`` (the threshold and evidence for a
    segmenter's masks, where the run searched them) is malformed."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except AnnotationError as e:
        raise CheckpointError(path, e.reason) from None
    if not isinstance(data, dict):
        raise CheckpointError(path, "expected a JSON object with a 'threshold'")
    if "threshold" not in data:
        raise CheckpointError(path, "field 'threshold': missing (train the run to its last stage again, "
                                    "or give --threshold)")
    if not _valid(data["threshold"]):
        raise CheckpointError(path, f"field 'threshold': must be a number in (0, 1], got {str(data['threshold'])[:60]!r}")
    noisy = data.get("noisy")
    if noisy is not None:
        if not isinstance(noisy, dict) or not _valid(noisy.get("threshold")):
            raise CheckpointError(path, "field 'noisy.threshold': must be a number in (0, 1]")
        if noisy.get("evidence", "soft") not in EVIDENCE:
            raise CheckpointError(path, f"field 'noisy.evidence': must be one of {', '.join(map(repr, EVIDENCE))}, "
                                        f"got {str(noisy.get('evidence'))[:60]!r}")
    if not isinstance(data.get("mirror", False), bool):
        raise CheckpointError(path, f"field 'mirror': must be true or false, got {str(data['mirror'])[:60]!r}")
    return data


def stored_threshold(run_dir) -> dict:
    """The threshold of record of an Amodal-VAE run: the one ``amodal train`` searched on
    validation and stored in ``run_dir`` (:func:`read_threshold`), with ``source`` saying where it
    was read; a :class:`~amodal_lib.errors.MissingCheckpointError` when the run has not stored one."""
    run = Path(run_dir)
    saved = read_threshold(run)
    if saved is None:
        raise MissingCheckpointError(run / FILE, "missing: train the run to its last stage "
                                                 "(notebook 03, or ctx.amodal_vae())")
    return {**saved, "source": str(run / FILE)}


def recorded_sweep(run_dir) -> pd.DataFrame:
    """The threshold sweep ``amodal train`` made on validation (``threshold_sweep.csv`` in
    ``run_dir``): one row per threshold and validation set, then one per threshold with ``set``
    "mean", the mean over the sets (``n`` summed) on which the choice is made (``docs/design.md``,
    "Threshold criterion"). The rows of the sets with a segmenter's visible masks (``noisy``), which
    choose threshold.json's "noisy" threshold instead, are left out."""
    path = Path(run_dir) / SWEEP_FILE
    if not path.is_file():
        raise MissingCheckpointError(path, "missing: train the run to its last stage (notebook 03, or ctx.amodal_vae())")
    sweep = pd.read_csv(path)
    if "noisy" in sweep.columns:
        sweep = sweep[~sweep.noisy.astype(bool)]
    mean = sweep.groupby("threshold", as_index=False).agg({"n": "sum", **{c: "mean" for c in SCORE_COLUMNS}})
    return pd.concat([sweep, mean.assign(set="mean")], ignore_index=True)[["set", "threshold", "n"] + SCORE_COLUMNS]


# --------------------------------------------------------------------------- fallen back to
def default_threshold(method: str, checkpoint=None, noisy: bool = False) -> tuple[float, str]:
    """(the binarisation threshold ``method`` uses when none is given, where it comes from):
    Amodal-VAE's is the one its training searched on validation (``threshold.json`` in the run
    folder of ``checkpoint``; with ``noisy``, for visible masks a segmenter made, the one searched on
    the validation sets with a segmenter's masks, where the run has it), else :data:`FALLBACK`;
    PCNet-M's is :data:`PCNET_M` (Deocclusion's); the rules' :data:`FALLBACK`."""
    if method in OWN:
        return OWN[method]
    if method in SEARCHED and checkpoint is not None:
        ck = Path(checkpoint)
        stored = read_threshold(ck if ck.is_dir() else ck.parent)
        if stored is not None:
            if noisy and stored.get("noisy"):
                return float(stored["noisy"]["threshold"]), ("searched on validation with a segmenter's visible masks "
                                                             "by amodal train (threshold.json)")
            return float(stored["threshold"]), "searched on validation by amodal train (threshold.json)"
        return FALLBACK, "default: no threshold.json beside the checkpoint"
    return FALLBACK, "default"
