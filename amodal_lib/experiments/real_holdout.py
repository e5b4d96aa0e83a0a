"""Held-out real occlusions: completion scored on a file that has no amodal labels.

A modal-only file (KITTI MOTS, Cityscapes, plain COCO instances) cannot score a completion
directly. This is how the project measures one there, and how every number on real shapes in
``docs/design.md`` was made:

1. whole groups are held out (:func:`amodal_lib.data.holdout.group_of`: the sequence of
   ``SEQ/FRAME.png`` names, else the image), named or a seeded share, and the models are trained
   on the rest;
2. real masks of held-out instances are pasted in front of isolated held-out instances
   (:func:`amodal_lib.data.holdout.pasted_occlusions`): the target's own mask is its amodal mask,
   what the pasted mask covers of it is hidden;
3. each method completes, and is scored (protocols A and B, full and invisible mIoU) on sets:

   - ``clean``: the pasted set as it is (the occluders annotated);
   - ``no-occluders``: the targets alone, their occluders left out of the file (the occluder
     nobody annotated);
   - ``KIND:PX``: every visible mask of the pasted set, the occluders' too, with an error of a
     kind at a strength in pixels (``boundary-noise``, ``wide-boundary-noise``, ``erosion``,
     ``dilation``: :func:`amodal_lib.data.corruption.corrupt_masks`; ``segmenter-noise``:
     :func:`amodal_lib.data.corruption.segmenter_noise`), scored against the clean masks.

Each set says how good its visible masks are: the mean over instances of the visible IoU with the
truth (``visible_iou_mean``) and the pooled one (``visible_iou_pooled``), with the visible mask's
own score as the input's. Compare strengths across noise models and papers by these, not by the
pixels: a boundary moved by a smooth displacement of 0.75 px of :mod:`~amodal_lib.data.corruption`'s
model leaves a mean visible IoU of about 0.90 on the KITTI MOTS instances (pooled 0.95), 1.75 px
about 0.79 (pooled 0.89), since the many small instances lose most.

``benchmarks/real_holdout.py`` runs it from the command line.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

import pandas as pd
from tqdm.auto import tqdm

from .. import metrics, registry
from ..data.corruption import KINDS
from ..data.holdout import group_of, holdout_split, pasted_occlusions, without_occluders
from ..data.records import AnnotationSet
from ..predict.psp import visible_iou
from .segmentation_input import SEGMENTER, corrupted, curves

CLEAN, NO_OCCLUDERS = "clean", "no-occluders"
INPUT = "visible mask (input)"   # the method row of each set's own visible masks
SET_KINDS = (CLEAN, NO_OCCLUDERS, *KINDS, SEGMENTER)
COLUMNS = ["set", "method", "n", "visible_iou_mean", "visible_iou_pooled",
           "A_full", "A_invisible", "B_full", "B_invisible", "seconds"]


@dataclass
class Holdout:
    """A modal file split for held-out real occlusions: ``train`` (what models learn from), ``held``
    (the held-out groups), ``pasted`` (held-out instances with real masks pasted in front; amodal
    labels by construction) and ``no_occluders`` (its targets alone)."""
    train: AnnotationSet
    held: AnnotationSet
    pasted: AnnotationSet
    no_occluders: AnnotationSet
    groups: tuple


def split(ann: AnnotationSet, groups: Optional[Sequence[str]] = None, fraction: float = 0.1,
          seed: int = 0) -> Holdout:
    """:class:`Holdout` of ``ann``: the groups named in ``groups`` held out (a sequence folder, as
    ``0005``, or ``image:ID``), else a seeded ``fraction`` of whole groups
    (:func:`~amodal_lib.data.holdout.holdout_split`). A named group that ``ann`` lacks, or one that
    would leave nothing to train on, is a ``ValueError`` naming it and the file."""
    if groups:
        groups = tuple(str(g) for g in groups)
        present = {group_of(i.file_name, i.image_id) for i in ann.instances}
        missing = [g for g in groups if g not in present]
        if missing:
            shown = ", ".join(sorted(present)[:8]) + (" ..." if len(present) > 8 else "")
            raise ValueError(f"{ann.path}: no image of group(s) {', '.join(missing)} (its groups: {shown})")
        wanted = set(groups)
        held = ann.subset([i for i in ann.instances if group_of(i.file_name, i.image_id) in wanted])
        train = ann.subset([i for i in ann.instances if group_of(i.file_name, i.image_id) not in wanted])
        if not len(train):
            raise ValueError(f"{ann.path}: holding out {', '.join(groups)} leaves nothing to train on")
    else:
        train, held = holdout_split(ann, fraction, seed)
        groups = tuple(sorted({group_of(i.file_name, i.image_id) for i in held.instances}))
    pasted = pasted_occlusions(held, seed=seed)
    return Holdout(train, held, pasted, without_occluders(pasted, held), groups)


def parse_set(spec: str) -> tuple[str, float]:
    """``(kind, pixels)`` of a set's name: ``clean``, ``no-occluders`` or ``KIND:PX`` (KIND one of
    :data:`SET_KINDS`' error kinds, PX > 0). A name that is none of these is a ``ValueError``."""
    kind, _, px = str(spec).partition(":")
    if kind in (CLEAN, NO_OCCLUDERS) and not px:
        return kind, 0.0
    if kind not in SET_KINDS[2:]:
        raise ValueError(f"unknown set {spec!r}: 'clean', 'no-occluders' or KIND:PX with KIND one of "
                         f"{', '.join(SET_KINDS[2:])}")
    if not px:
        raise ValueError(f"set {spec!r} needs a strength in pixels: {kind}:PX")
    try:
        strength = float(px)
    except ValueError:
        raise ValueError(f"set {spec!r}: the strength after ':' must be a number of pixels") from None
    if not strength > 0:
        raise ValueError(f"set {spec!r}: the strength must be above 0 pixels")
    return kind, strength


def set_input(holdout: Holdout, spec: str, seed: int = 0) -> tuple[AnnotationSet, Optional[dict]]:
    """(the set scored, the visible masks completed: {id: RLE}, None for the set's own)."""
    kind, px = parse_set(spec)
    if kind == CLEAN:
        return holdout.pasted, None
    if kind == NO_OCCLUDERS:
        return holdout.no_occluders, None
    return holdout.pasted, corrupted(holdout.pasted.instances, kind, px, seed)


def evaluate(holdout: Holdout, methods: Sequence[tuple], sets: Sequence[str] = (CLEAN, NO_OCCLUDERS),
             seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """One row per set and method (:data:`COLUMNS`; scores in %): ``methods`` are
    ``(label, registry name, model or None, options for registry.complete)``; every set is first
    scored with its visible masks as the completion (the :data:`INPUT` rows)."""
    for s in sets:
        parse_set(s)   # every name checked before any work
    methods = [(INPUT, "visible", None, {})] + list(methods)
    rows = []
    with tqdm(total=len(sets) * len(methods), desc="held-out sets", disable=not progress) as bar:
        for s in sets:
            ann, vis = set_input(holdout, s, seed)   # once per set: every method reads the same masks
            quality = visible_iou(ann, vis if vis is not None else {i.id: i.visible for i in ann.instances})
            for label, name, model, options in methods:
                t = time.perf_counter()
                pred = (registry.complete(name, ann, model, **options) if vis is None
                        else registry.complete_from_visible(name, ann, vis, model, **options))
                row = metrics.scores_row(label, metrics.evaluate(ann, pred))
                rows.append({"set": s, "method": label, "n": len(ann), "visible_iou_mean": quality["B"],
                             "visible_iou_pooled": quality["A"], "A_full": row["A_full"],
                             "A_invisible": row["A_invisible"], "B_full": row["B_full"],
                             "B_invisible": row["B_invisible"], "seconds": round(time.perf_counter() - t, 1)})
                bar.update()
    return pd.DataFrame(rows, columns=COLUMNS)


def as_robustness(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`evaluate`'s rows as robustness curves (the layout of
    :func:`amodal_lib.experiments.segmentation_input.robustness`, which
    :func:`amodal_lib.viz.seg_input.plot_robustness` draws): one row per error kind, strength and
    method, the clean set as strength 0 of every kind, ``input_visible_iou`` the mean per-instance
    visible IoU of the masks (the measure strengths are compared by). The no-occluders set has no
    strength and is left out."""
    parsed = df.set.map(parse_set)
    kind, strength = parsed.map(lambda p: p[0]), parsed.map(lambda p: p[1])
    out = df.assign(kind=kind, strength=strength, input_visible_iou=df.visible_iou_mean)
    noisy = out[~kind.isin([CLEAN, NO_OCCLUDERS])]
    cols = ["kind", "strength", "method", "input_visible_iou", "n", "A_full", "A_invisible", "B_full", "B_invisible"]
    return curves(noisy, out[kind == CLEAN], list(dict.fromkeys(noisy.kind)))[cols]
