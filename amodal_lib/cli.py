"""The ``amodal`` command line (also ``python -m amodal_lib``): all of its glue lives here.

    amodal synth    --out DIR [--images N] [--seed S] [--profile P]
    amodal train    --model amodal-vae|pcnet-m [--stage 1|2|3] --annotations ANN.json [--images DIR]
                    --out RUN_DIR [--profile P] [--seed S] [--device D] [--steps N] [--no-resume]
                    [--val-annotations VAL.json]
    amodal complete --method visible|convex-hull|amodal-vae|pcnet-m --annotations ANN.json --out PRED.json
                    [--checkpoint RUN_DIR_OR_FILE] [--box predicted|amodal-gt] [--threshold T] [--samples K]
                    [--device D]
    amodal evaluate --annotations ANN.json --predictions PRED.json [--out METRICS.json] [--allow-missing]

A user's mistake (a missing or malformed file, a bad record) is one line on stderr naming
the file, the record and the field, and exit code 2; never a traceback. Methods are reached by
name through :mod:`amodal_lib.registry`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .profiles import PROFILE_NAMES, get_profile
from .registry import METHODS, MODELS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amodal", description="Amodal-VAE reproduction: data, training, completion, evaluation")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write the embedded synthetic data set (KINS 2020 schema)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--images", type=int, help="number of images (default: the profile's)")
    s.add_argument("--seed", type=int, help="random seed (default: the profile's)")
    s.add_argument("--profile", choices=PROFILE_NAMES, help="scale (default: $AMODAL_PROFILE or 'default')")

    t = sub.add_parser("train", help="train a model; RUN_DIR holds every stage's checkpoint")
    t.add_argument("--model", required=True, choices=MODELS)
    t.add_argument("--stage", type=int, choices=(1, 2, 3), help="one stage (default: all, skipping finished ones)")
    t.add_argument("--annotations", required=True, help="training annotations: KINS, COCOA, COCO or Cityscapes")
    t.add_argument("--val-annotations", help="optional validation annotations (with amodal masks) for logging mIoU")
    t.add_argument("--images", help="image folder of the annotations (checked to exist and attached to them; "
                                    "no current model reads pixels)")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--profile", choices=PROFILE_NAMES)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps")
    t.add_argument("--steps", type=int, help="override the profile's number of steps (per stage)")
    t.add_argument("--no-resume", dest="resume", action="store_false", help="start over even if a checkpoint exists")

    c = sub.add_parser("complete", help="predict one amodal mask per annotation (COCO results JSON)")
    c.add_argument("--method", required=True, choices=METHODS)
    c.add_argument("--annotations", required=True)
    c.add_argument("--out", required=True, help="predictions JSON")
    c.add_argument("--checkpoint", help="run folder or checkpoint file (learned methods)")
    c.add_argument("--box", choices=("predicted", "amodal-gt"), default="predicted")
    c.add_argument("--threshold", type=float, help="binarisation threshold (default: the method's)")
    c.add_argument("--samples", type=int, default=0, help="posterior samples (0: the posterior mode)")
    c.add_argument("--device", default="auto")

    e = sub.add_parser("evaluate", help="full and invisible mIoU, protocols A and B")
    e.add_argument("--annotations", required=True)
    e.add_argument("--predictions", required=True)
    e.add_argument("--out", help="metrics JSON")
    e.add_argument("--allow-missing", action="store_true",
                   help="evaluate only the annotations that have a prediction")
    return p


def _synth(ns) -> int:
    from .data.synth import generate
    cfg = get_profile(ns.profile)["synth"]
    if ns.images is not None:
        cfg["images"] = ns.images
    if ns.seed is not None:
        cfg["seed"] = ns.seed
    t0 = time.time()
    paths = generate(ns.out, **cfg)
    print(f"wrote {cfg['images']} images in {time.time() - t0:.1f} s:")
    for k, v in paths.items():
        print(f"  {k}: {v}")
    return 0


def _load(path, images=None):
    """The annotation file, read once; ``images`` (a folder) is checked and attached to it."""
    from .data import load_annotations
    if images is not None and not Path(images).is_dir():
        raise FileNotFoundError(f"{images}: no such image folder (--images)")
    return load_annotations(path, images_dir=images)


def _train(ns) -> int:
    ann = _load(ns.annotations, ns.images)
    if ns.model == "amodal-vae":  # its glue still lives in train/amodal_vae.py (reads stage, seed, device)
        from .train.amodal_vae import cli_train
        cli_train(argparse.Namespace(**{**vars(ns), "annotations": ann}))
        return 0
    from . import registry
    from .train.pcnet import checkpoint_file, load_history
    val = _load(ns.val_annotations) if ns.val_annotations else None
    t0 = time.time()
    registry.train(ns.model, ann, ns.out, profile=ns.profile, seed=ns.seed, device=ns.device, steps=ns.steps,
                   resume=ns.resume, val_annotations=val, stage=ns.stage)
    last = next((h for h in reversed(load_history(ns.out)) if h.get("split") == "train"), {})
    print(f"PCNet-M: trained to step {last.get('step', '?')} (loss {last.get('loss', float('nan')):.4f}) "
          f"in {time.time() - t0:.1f} s; checkpoint {checkpoint_file(ns.out)}")
    return 0


def _complete(ns) -> int:
    from . import registry
    from .metrics import write_predictions
    if ns.method in MODELS and not ns.checkpoint:
        raise SystemExit(f"amodal complete: --method {ns.method} needs --checkpoint RUN_DIR_OR_FILE")
    ann = _load(ns.annotations)
    if ns.method == "amodal-vae":  # its glue still lives in train/amodal_vae.py (threshold.json, samples)
        from .train.amodal_vae import cli_complete
        preds = cli_complete(argparse.Namespace(**{**vars(ns), "annotations": ann}))
    else:
        model = registry.load_model(ns.method, ns.checkpoint, ns.device) if ns.method in MODELS else None
        preds = registry.complete(ns.method, ann, model, threshold=ns.threshold, box=ns.box, samples=ns.samples)
    write_predictions(ns.out, ann, preds)
    print(f"wrote {len(preds)} predictions to {ns.out}")
    return 0


def _evaluate(ns) -> int:
    from .data import load_annotations
    from .io import atomic_write_json
    from .metrics import format_table, instance_table, load_predictions, summarize
    ann = load_annotations(ns.annotations)
    preds = load_predictions(ns.predictions, ann)
    result = summarize(instance_table(ann, preds, allow_missing=ns.allow_missing))
    print(format_table(result, f"{Path(ns.predictions).name} on {Path(ns.annotations).name} (mIoU, %)"))
    if ns.out:
        atomic_write_json(ns.out, result)
    return 0


def main(argv=None) -> int:
    from .data.masks import AnnotationError
    ns = _parser().parse_args(argv)
    try:
        return {"synth": _synth, "train": _train, "complete": _complete, "evaluate": _evaluate}[ns.command](ns)
    except (AnnotationError, FileNotFoundError, ValueError) as e:
        print(f"amodal {ns.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"amodal {ns.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
