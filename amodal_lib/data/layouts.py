"""Where each real data set keeps its splits on disk, and the validation split when it has none.

``find_splits(root, dataset)`` finds a layout's files; ``load_split(paths, split)`` reads one
split; ``data_hash(paths)`` names the data a run was made from.

=============  =========================================  ======================================  ==============================
dataset        train                                      test                                    val
=============  =========================================  ======================================  ==============================
``kins``       ``update_train_2020.json``                 ``update_test_2020.json``               ``update_val_2020.json``
               (or ``instances_train.json``)              (or ``instances_test.json``,
                                                          ``instances_val.json``)
``cocoa``      ``COCO_amodal_train2014.json``             ``COCO_amodal_test2014.json``           ``COCO_amodal_val2014.json``
                                                          (or ``COCO_amodal_val2014.json``)
``cityscapes`` ``gtFine/train`` (a folder)                ``gtFine/val``                          (none)
=============  =========================================  ======================================  ==============================

Files are looked for in ``root`` and ``root/annotations`` (Cityscapes: ``root`` is the
``gtFine`` folder or the folder holding it). The threshold and every other choice made on
validation data must never see the test split, so when a layout has no val file of its own,
or its only candidate is the file already used as test (KINS ships train and test only; COCOA's
public val file is what papers test on), **validation is carved out of the training file**:
:data:`VAL_FRACTION` of its images, whole images drawn with the fixed seed :data:`VAL_SEED`
(:func:`amodal_lib.data.records.hold_out_images`), and training uses the rest. ``find_splits``
says so in its result (``"val_from_train"``), and the data hash includes it. Cityscapes has no
amodal labels: it serves training and samples, not evaluation. (``docs/design.md``, "Data set
layouts and the validation split".)
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable, Optional

from .readers import load_annotations
from .records import AnnotationSet, hold_out_images

DATASETS = ("kins", "cocoa", "cityscapes")
VAL_FRACTION = 0.1
VAL_SEED = 0

# per split, the candidates tried in order: (annotation file or folder, image folder or None)
SPLIT_FILES = {
    "kins": {
        "train": [("update_train_2020.json", "training/image_2"), ("instances_train.json", "training/image_2")],
        "test": [("update_test_2020.json", "testing/image_2"), ("instances_test.json", "testing/image_2"),
                 ("instances_val.json", "testing/image_2")],
        "val": [("update_val_2020.json", "training/image_2"), ("instances_val.json", "testing/image_2")],
    },
    "cocoa": {
        "train": [("COCO_amodal_train2014.json", "train2014")],
        "test": [("COCO_amodal_test2014.json", "test2014"), ("COCO_amodal_val2014.json", "val2014")],
        "val": [("COCO_amodal_val2014.json", "val2014")],
    },
    "cityscapes": {
        "train": [("train", None)],
        "test": [("val", None)],
        "val": [],
    },
}


def _find(base: Path, candidates: list, dataset: str) -> Optional[tuple]:
    for name, images in candidates:
        for where in (base, base / "annotations"):
            p = where / name
            if (p.is_dir() if dataset == "cityscapes" else p.is_file()):
                d = next((x for x in (base / images, where / images) if x.is_dir()), None) if images else None
                return str(p), (str(d) if d is not None else None)
    return None


def find_splits(root, dataset: str) -> dict:
    """The splits of a real data set under ``root``: ``{"train", "val", "test"}`` paths (``"val"``
    None when it is carved out of train), ``"val_from_train"`` (the fraction, or absent),
    ``"images_dir"`` ({split: folder or None}) and ``"dataset"``."""
    if dataset not in SPLIT_FILES:
        raise ValueError(f"unknown dataset {dataset!r}: use 'synth', {', '.join(repr(d) for d in DATASETS)} "
                         "(or pass any annotation file to the command line)")
    base = Path(root)
    if dataset == "cityscapes" and (base / "gtFine").is_dir():
        base = base / "gtFine"
    names = SPLIT_FILES[dataset]
    found = {split: _find(base, cands, dataset) for split, cands in names.items()}
    if found["train"] is None or found["test"] is None:
        raise FileNotFoundError(f"{root}: no {dataset} train/test annotations ({names['train'][0][0]}, "
                                f"{names['test'][0][0]}) in it or in its annotations/ folder")
    out = {"dataset": dataset, "train": found["train"][0], "test": found["test"][0],
           "images_dir": {s: f[1] for s, f in found.items() if f is not None}}
    if found["val"] is not None and found["val"][0] != found["test"][0]:
        out["val"] = found["val"][0]
    else:
        out["val"] = None
        out["val_from_train"] = VAL_FRACTION
        out["images_dir"]["val"] = out["images_dir"]["train"]
    return out


def load_split(paths: dict, split: str, read: Optional[Callable[[str], AnnotationSet]] = None) -> AnnotationSet:
    """The :class:`AnnotationSet` of ``split`` ("train", "val" or "test") of ``paths``
    (:func:`find_splits`'s, or the embedded data set's). With ``"val_from_train"``, "val" is the
    held-out images of the training file and "train" the others. ``read`` reads a file (default:
    :func:`load_annotations`, lenient); pass a caching one to read a file once for both splits."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    read = read or (lambda p: load_annotations(p, strict=False))
    if split != "test" and paths.get("val_from_train"):
        rest, held = hold_out_images(read(paths["train"]), paths["val_from_train"], VAL_SEED)
        ann = rest if split == "train" else held
    else:
        ann = read(paths[split])
    images = paths.get("images_dir")
    images = images.get(split) if isinstance(images, dict) else images
    return dataclasses.replace(ann, images_dir=images)


def data_hash(paths: dict) -> str:
    """12 hex digits naming the data of ``paths``: the split files' names and bytes (a folder's
    ``*_instanceIds.png`` files), and how validation was carved out of train if it was."""
    h = hashlib.sha1()
    files = []
    for s in ("train", "val", "test"):
        p = paths.get(s)
        if p and Path(p).is_dir():
            files += sorted(Path(p).rglob("*_instanceIds.png"))
        elif p:
            files.append(Path(p))
    for f in sorted(set(files), key=str):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    if paths.get("val_from_train"):
        h.update(f"val_from_train={paths['val_from_train']},seed={VAL_SEED}".encode())
    return h.hexdigest()[:12]
