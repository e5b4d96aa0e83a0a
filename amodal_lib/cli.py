"""The ``amodal`` command line (also ``python -m amodal_lib``); SPEC.md, "The command line".

    amodal synth    --out DIR [--images N] [--seed S] [--profile P]
    amodal train    --model amodal-vae|pcnet-m [--stage 1|2|3] --annotations ANN.json [--images DIR]
                    --out RUN_DIR [--profile P] [--seed S] [--device D]
    amodal complete --method visible|convex-hull|amodal-vae|pcnet-m --annotations ANN.json --out PRED.json
                    [--checkpoint RUN_DIR_OR_FILE] [--box predicted|amodal-gt] [--threshold T] [--samples K]
    amodal evaluate --annotations ANN.json --predictions PRED.json [--out METRICS.json] [--allow-missing]

A user's mistake (a missing or malformed file, a bad record) is one line on stderr naming
the file, the record and the field, and exit code 2; never a traceback.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .profiles import PROFILE_NAMES, get_profile

MODELS = ("amodal-vae", "pcnet-m")
METHODS = ("visible", "convex-hull", "amodal-vae", "pcnet-m")


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
    t.add_argument("--images", help="image folder (needed only by models that read pixels)")
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
    c.add_argument("--images", help="image folder (unused by mask-only methods)")

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


def _train(ns) -> int:
    if ns.model == "amodal-vae":
        from .train.amodal_vae import cli_train
    else:
        from .baselines.pcnet import cli_train
    cli_train(ns)
    return 0


def _complete(ns) -> int:
    from .data import load_annotations
    from .metrics import write_predictions
    if ns.method in ("visible", "convex-hull"):
        from .baselines import METHODS as BASE
        ann = load_annotations(ns.annotations)
        preds = BASE[ns.method](ann.instances)
    else:
        if not ns.checkpoint:
            raise SystemExit(f"amodal complete: --method {ns.method} needs --checkpoint RUN_DIR_OR_FILE")
        if ns.method == "amodal-vae":
            from .train.amodal_vae import cli_complete
        else:
            from .baselines.pcnet import cli_complete
        ann = load_annotations(ns.annotations)
        preds = cli_complete(argparse.Namespace(**{**vars(ns), "annotations": ann}))  # read the file once
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
