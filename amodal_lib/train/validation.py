"""What a training run is validated on, how completions are scored there, and the threshold it picks.

Supplementary 3.1 trains every stage "until the model converges on the validation set" and searches
the decoder threshold on it. :func:`validation_split` finds that set for any input file:

- ``val_annotations`` given: that file; scored on its amodal labels when it has them, otherwise on
  pasted occlusions built from it (below).
- none given: whole images (whole sequences when file names are ``SEQ/FRAME.png``) are held out of
  the training file (:func:`amodal_lib.data.holdout.holdout_split`) and never trained on. When they
  carry amodal labels (KINS, COCOA, the embedded data) those are the answer; when they do not (plain
  COCO, Cityscapes: most users' data) the answer is made from the data itself: real masks of
  held-out instances pasted in front of isolated held-out instances
  (:func:`amodal_lib.data.holdout.pasted_occlusions`), once with the occluders in the file and once
  with them left out (occluders that no one annotated: poles, trees, unlabelled objects).

:meth:`Validation.score` completes every set and returns its mIoU under both protocols; the
selection score of a checkpoint is, decided, the mean over the sets of ``(A_full + A_inv) / 2``
(pooled full and invisible mIoU weigh equally: full mIoU alone rewards a completion that adds
nothing). The binarisation threshold is then searched on the same sets
(:func:`amodal_lib.thresholds.sweep_thresholds`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .. import metrics
from ..data import as_annotations
from ..data import holdout as H
from ..data.corruption import noise_strength, segmenter_noise
from ..data.records import AnnotationSet, subsample, with_visible
from ..io import atomic_write_json
from ..metrics import write_predictions

SCORE_KEYS = ("A_full", "A_inv", "B_full", "B_inv")


@dataclass
class Validation:
    """The validation sets of a run: {name: AnnotationSet with amodal labels}; ``kind`` is
    "amodal labels" or "pasted occlusions"; ``held_images``: image ids held out of training.
    ``inputs``: {name: the set a completion is given} where it is not the set itself: the same
    instances with a segmenter's visible masks (``noise``: {name: strength in pixels}), scored
    against the clean set."""
    sets: dict
    kind: str
    description: str
    held_images: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    noise: dict = field(default_factory=dict)

    def input(self, name: str) -> AnnotationSet:
        """What a completion of set ``name`` is given (its visible masks may be a segmenter's)."""
        return self.inputs.get(name, self.sets[name])

    def is_noisy(self, name: str) -> bool:
        return self.noise.get(name, 0.0) > 0

    def score(self, complete: Callable[[AnnotationSet], dict]) -> dict:
        """{f"{set}_{A_full|A_inv|B_full|B_inv}": %, "score": selection score} of the masks that
        ``complete(input) -> {id: RLE}`` gives for each set's input, against the set."""
        out: dict = {}
        parts = []
        for name, ann in self.sets.items():
            if self.is_noisy(name):   # they choose the threshold for segmenter masks, not the checkpoint
                continue
            o = metrics.evaluate(ann, complete(self.input(name)))["overall"]
            s = {"A_full": o["A"]["full"], "A_inv": o["A"]["invisible"] or 0.0,
                 "B_full": o["B"]["full"], "B_inv": o["B"]["invisible"] or 0.0}
            out.update({f"{name}_{k}": float(v) for k, v in s.items()})
            parts.append((s["A_full"] + s["A_inv"]) / 2)
        out["score"] = float(np.mean(parts))
        return out

    def summary(self, scores: dict) -> str:
        """One line: each set's protocol-A full / invisible mIoU."""
        return "; ".join(f"{name} A {scores[f'{name}_A_full']:.2f} / {scores[f'{name}_A_inv']:.2f}"
                         for name in self.sets if not self.is_noisy(name))

    def write(self, folder) -> dict:
        """Write every set as a KINS 2020 file into ``folder`` (``amodal evaluate`` reads them) and
        ``validation.json`` describing them; returns {set: path}."""
        folder = Path(folder)
        paths = {name: str(H.write_kins2020(ann, folder / f"validation_{name}.json"))
                 for name, ann in self.sets.items() if name not in self.inputs}
        visible = {}
        for name, inp in self.inputs.items():   # a noisy input: its visible masks, for `complete --visible`
            truth = next(k for k in paths if self.sets[k] is self.sets[name])
            paths[name] = paths[truth]
            visible[name] = f"validation_{name}_visible.json"
            write_predictions(folder / visible[name], inp, {i.id: i.visible for i in inp.instances})
        atomic_write_json(folder / "validation.json", {"kind": self.kind, "description": self.description,
                                                       "files": {k: Path(v).name for k, v in paths.items()},
                                                       "visible_files": visible, "noise": self.noise,
                                                       "held_out_images": self.held_images})
        return paths


def validation_split(ann, val_annotations=None, fraction: float = 0.1, seed: int = 0,
                     max_targets: Optional[int] = 600, max_instances: Optional[int] = 1500,
                     noise_levels: Sequence = ()) -> tuple[AnnotationSet, Validation]:
    """(the annotations to train on, the :class:`Validation` of the run) (module doc).

    ``max_targets`` caps the isolated instances pasted occlusions are built on, ``max_instances``
    the instances of a labelled validation set (whole images, seeded): both keep validation cheap
    enough to run at every evaluation. ``noise_levels`` (names or pixels of
    :mod:`amodal_lib.data.corruption`'s segmenter-noise model) adds, for each set and level, the
    same instances with a segmenter's visible masks (every mask of an image), scored against the
    clean set: what the checkpoints and thresholds are chosen for includes the masks a segmenter gives."""
    train, validation = _split_sets(ann, val_annotations, fraction, seed, max_targets, max_instances)
    for name in list(validation.sets):
        for level in noise_levels:
            strength = noise_strength(level)
            if strength <= 0:
                continue
            key = f"{name}_{level}"
            clean = validation.sets[name]
            validation.sets[key] = clean
            validation.inputs[key] = with_visible(clean, segmenter_noise(clean.instances, strength, seed),
                                                  f"segmenter noise {level}")
            validation.noise[key] = strength
    if validation.noise:
        validation.description += (f"; each also with a segmenter's visible masks (segmenter noise "
                                   f"{', '.join(str(v) for v in noise_levels)}), scored against the clean masks")
    return train, validation


def _split_sets(ann, val_annotations, fraction: float, seed: int, max_targets, max_instances
                ) -> tuple[AnnotationSet, Validation]:
    ann = as_annotations(ann)
    if val_annotations is not None:
        val = as_annotations(val_annotations)
        train, source, held_images = ann, f"{Path(val.path).name}", []
    else:
        train, val = H.holdout_split(ann, fraction, seed)
        held_images = sorted(int(i) if isinstance(i, (int, np.integer)) else i for i in val.images)
        groups = {H.group_of(i.file_name, i.image_id) for i in ann.instances}
        held_groups = {H.group_of(i.file_name, i.image_id) for i in val.instances}
        by_sequence = len(groups) >= 2 and not any(g.startswith("image:") for g in groups)
        unit = f" (whole sequences: {', '.join(sorted(held_groups))})" if by_sequence else ""
        source = f"{len(val.images)} images{unit} of {Path(ann.path).name} held out of training, seed {seed}"
    if val.has_amodal:
        labelled = val.subset([i for i in val.instances if i.amodal is not None])
        labelled = subsample(labelled, max_instances, seed)
        return train, Validation({"labelled": labelled}, "amodal labels",
                                 f"{source}: {len(labelled)} instances scored on their amodal labels", held_images)
    pasted = H.pasted_occlusions(val, seed=seed, max_targets=max_targets)
    sets = {"pasted": pasted, "pasted_no_occluders": H.without_occluders(pasted, val)}
    n_t = len(sets["pasted_no_occluders"])
    return train, Validation(sets, "pasted occlusions",
                             f"{source}: no amodal labels, so real masks of held-out instances were pasted in "
                             f"front of {n_t} isolated held-out instances (with the occluders in the file, and "
                             "left out of it)", held_images)
