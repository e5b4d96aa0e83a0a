"""The ``amodal`` command line (also ``python -m amodal_lib``): all of its glue lives here.

    amodal synth    --out DIR [--images N] [--seed S] [--profile P]
    amodal train    --model amodal-vae|pcnet-m [--stage 1|2|3] --annotations ANN.json [--images DIR]
                    --out RUN_DIR [--profile P] [--seed S] [--device D] [--steps N] [--no-resume]
                    [--val-annotations VAL.json]
    amodal complete --method visible|convex-hull|amodal-vae|pcnet-m --annotations ANN.json --out PRED.json
                    [--checkpoint RUN_DIR_OR_FILE] [--box predicted|amodal-gt] [--frame fit|transformer]
                    [--threshold T] [--samples K] [--seed S] [--device D]
    amodal evaluate --annotations ANN.json --predictions PRED.json [--out METRICS.json] [--allow-missing]
    amodal train    --model resnet-psp --annotations ANN.json --images DIR --out RUN_DIR [--crop-box amodal|visible]
                    [--weights BACKBONE.pth] [...]
    amodal segment  --checkpoint RUN_DIR --annotations ANN.json [--images DIR] --out MASKS.json
                    [--crop-box amodal|visible] [--threshold T] [--device D]
    amodal complete ... --visible MASKS.json   (complete those visible masks instead of the file's)
    amodal edit     --image IMG --annotations ANN.json --remove ID[,ID] --out OUT.png [--models DIR]
                    [--vae RUN] [--background RUN] [--instance RUN] [--masks-out NEW.json] [--dilate PX]
                    [--threshold T] [--device D]
    (train also takes --model inpaint-background|inpaint-instance [--vgg-weights FILE]: scene editing)
    amodal train    --model spade --annotations ANN.json [--images DIR] --out RUN_DIR [...]
    amodal render   --checkpoint RUN_DIR_OR_FILE --image IMG --annotations ANN.json --id ID --mask NEW_MASK.png
                    --out OUT.png [--device D]

Every command also takes ``--debug`` (before or after its name). Methods are reached by name
through :mod:`amodal_lib.registry`.

What it guarantees on bad input:

- A user's mistake (a missing or malformed file or record, a bad checkpoint, a flag out of
  range, an unsafe output path) is one line on stderr naming the file, the record and the
  field, and exit code 2; never a traceback (``--debug`` shows it). Every such error is an
  :class:`amodal_lib.errors.UserError`, and so is a refusal of the file system (an ``OSError``:
  permission, disk full).
- Ctrl-C exits with 130; anything else is a bug: its traceback, and exit code 1.
- An output is never one of the inputs (compared as resolved paths, through symbolic and hard
  links), is checked to be writable before any work, and is written atomically: an
  interrupted or failed command leaves the earlier file (or ``amodal synth`` data set) whole.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from ..errors import ArgumentError, CheckpointError, UnsafeOutputError, UserError
from ..profiles import PROFILE_NAMES, get_profile
from ..registry import INPAINTERS, METHODS, MODELS, RENDERERS, SEGMENTERS, TRAINABLE

MAX_SAMPLES = 100  # posterior samples per instance for `complete --samples`


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)  # --debug also after the command (not reset there)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error in the input too")
    p = argparse.ArgumentParser(prog="amodal", description="Amodal-VAE reproduction: data, training, completion, evaluation")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error in the input too")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", parents=[common], help="write the embedded synthetic data set (KINS 2020 schema)")
    s.add_argument("--out", required=True, help="output folder (new, empty, or an earlier data set: replaced whole)")
    s.add_argument("--images", type=int, help="number of images (default: the profile's)")
    s.add_argument("--seed", type=int, help="random seed (default: the profile's)")
    s.add_argument("--profile", choices=PROFILE_NAMES, help="scale (default: $AMODAL_PROFILE or 'default')")

    t = sub.add_parser("train", parents=[common], help="train a model; RUN_DIR holds every stage's checkpoint")
    t.add_argument("--model", required=True, choices=TRAINABLE)
    t.add_argument("--stage", type=int, choices=(1, 2, 3), help="one stage (default: all, skipping finished ones)")
    t.add_argument("--annotations", required=True, help="training annotations: KINS, COCOA, COCO or Cityscapes")
    t.add_argument("--val-annotations", help="validation annotations (amodal-vae: selects checkpoints and the "
                                             "threshold; default: images held out of --annotations; "
                                             "pcnet-m: with amodal masks, for logging mIoU)")
    t.add_argument("--images", help="image folder of the annotations (checked to exist and attached to them; "
                                    "resnet-psp and spade read the images, the completion models do not)")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--profile", choices=PROFILE_NAMES)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps")
    t.add_argument("--steps", type=int, help="override the profile's number of steps (per stage for amodal-vae)")
    t.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start over even if a checkpoint exists")

    c = sub.add_parser("complete", parents=[common], help="predict one amodal mask per annotation (COCO results JSON)")
    c.add_argument("--method", required=True, choices=METHODS)
    c.add_argument("--annotations", required=True)
    c.add_argument("--out", required=True, help="predictions JSON (never one of the inputs)")
    c.add_argument("--checkpoint", help="run folder or checkpoint file (learned methods)")
    c.add_argument("--box", choices=("predicted", "amodal-gt"), default="predicted")
    c.add_argument("--frame", choices=("fit", "transformer"), default="fit",
                   help="amodal-vae: the full-object frame fitted to the known pixels around each instance "
                        "(default), or the paper's spatial transformer on the crop alone")
    c.add_argument("--threshold", type=float, help="binarisation threshold in (0, 1] (default: the method's)")
    c.add_argument("--samples", type=int, default=0,
                   help=f"posterior samples, 0 to {MAX_SAMPLES} (0: the posterior mode; amodal-vae only)")
    c.add_argument("--seed", type=int, default=0, help="random seed of the posterior samples (default 0)")
    c.add_argument("--device", default="auto")

    e = sub.add_parser("evaluate", parents=[common], help="full and invisible mIoU, protocols A and B")
    e.add_argument("--annotations", required=True)
    e.add_argument("--predictions", required=True)
    e.add_argument("--out", help="metrics JSON (never one of the inputs)")
    e.add_argument("--allow-missing", action="store_true",
                   help="evaluate only the annotations that have a prediction")
    _add_segmentation_arguments(sub, t, c)
    _add_render_parser(sub, common)
    _add_scene_editing(sub, t, common)
    return p


# --------------------------------------------------------------------------- argument and path checks
def _at_least(ns, name: str, low: int) -> None:
    v = getattr(ns, name, None)
    if v is not None and v < low:
        raise ArgumentError(f"--{name.replace('_', '-')} must be >= {low}, got {v}")


def _same_file(a: Path, b: Path) -> bool:
    """Do two paths name one file (after symbolic links, or as hard links)?"""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, RuntimeError):  # a symlink loop: not the same as anything
        return False


def _writable_folder(folder: Path, out: Path) -> None:
    """Refuse ``out`` unless a file can be created in ``folder`` (which exists): tried, not guessed."""
    if not folder.is_dir():
        raise UnsafeOutputError(out, f"{folder} is not a folder")
    if not folder.stat().st_mode & 0o222:
        raise UnsafeOutputError(out, f"the folder {folder} is read-only")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".amodal-write-test.")
    except OSError as e:
        raise UnsafeOutputError(out, f"cannot write in {folder} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(out, inputs: dict) -> Path:
    """Refuse an output file that is one of ``inputs`` ({label: path}), a folder, read-only, or in
    a folder that cannot be written; nothing is created."""
    p = Path(out)
    if p.is_dir():
        raise UnsafeOutputError(p, "is a folder: --out takes a file name")
    if p.exists() and not p.is_file():
        raise UnsafeOutputError(p, "exists and is not a regular file")
    for label, q in inputs.items():
        if q is not None and _same_file(p, Path(q)):
            same = "" if str(q) == str(p) else f" ({q})"
            raise UnsafeOutputError(p, f"is the {label}{same}: an output never overwrites an input")
    if p.is_file() and not p.stat().st_mode & 0o222:
        raise UnsafeOutputError(p, "is read-only: refusing to replace it")
    folder = p.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent   # atomic_write creates the missing folders
    _writable_folder(folder, p)
    return p


def check_run_folder(out) -> Path:
    """A run folder that exists (created if needed) and can be written, before any training step."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise UnsafeOutputError(p, "exists and is not a folder: --out takes a run folder")
    if not p.exists():
        folder = p.absolute().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        _writable_folder(folder, p)
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UnsafeOutputError(p, f"cannot create the run folder ({e.strerror or e})") from None
    _writable_folder(p, p)
    return p


def _load(path, images=None):
    """The annotation file, read once and checked before any work; ``images`` (a folder) is
    checked to exist and attached to it."""
    from ..data import load_annotations
    if images is not None and not Path(images).is_dir():
        raise ArgumentError(f"--images {images}: no such image folder")
    return load_annotations(path, images_dir=images)


def _checkpoint_inputs(checkpoint) -> dict:
    """The files a learned method may read from ``--checkpoint`` (a file, or a run folder's)."""
    if checkpoint is None:
        return {}
    ck = Path(checkpoint)
    if not ck.is_dir():
        return {"checkpoint": ck}
    files = [q for q in [*sorted(ck.glob("*.pt")), ck / "threshold.json"] if q.is_file()]
    return {f"file {q.name} of the checkpoint folder": q for q in files}


# --------------------------------------------------------------------------- commands
def _synth(ns) -> int:
    from ..data.synth import generate
    _at_least(ns, "images", 1)
    _at_least(ns, "seed", 0)
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
    from .. import registry
    _at_least(ns, "seed", 0)
    _at_least(ns, "steps", 1)
    if ns.model in SEGMENTERS or ns.weights is not None or ns.crop_box is not None:
        return _train_segmenter(ns)
    if getattr(ns, "vgg_weights", None) and ns.model not in INPAINTERS:
        raise ArgumentError(f"--vgg-weights applies to --model {' or '.join(INPAINTERS)} only")
    if ns.model == "pcnet-m" and ns.stage not in (None, 1):
        raise ArgumentError(f"--model pcnet-m has a single training stage; --stage {ns.stage} does not apply")
    if ns.model in RENDERERS and ns.stage not in (None, 1):
        raise ArgumentError(f"--model {ns.model} has a single training stage; --stage {ns.stage} does not apply")
    if Path(ns.out).exists() and not Path(ns.out).is_dir():
        raise UnsafeOutputError(ns.out, "exists and is not a folder: --out takes a run folder")
    ann = _load(ns.annotations, ns.images)   # read once, checked before any step
    val = None
    if ns.val_annotations is not None:
        val = _load(ns.val_annotations)
        if ns.model == "pcnet-m" and not val.has_amodal:
            raise ArgumentError(f"--val-annotations {ns.val_annotations}: has no amodal masks to validate on")
    check_run_folder(ns.out)
    t0 = time.time()
    if ns.model in INPAINTERS:
        return _train_inpainter(ns, ann, val, t0)
    model = registry.train(ns.model, ann, ns.out, profile=ns.profile, seed=ns.seed, device=ns.device,
                           steps=ns.steps, resume=ns.resume, val_annotations=val, stage=ns.stage)
    if ns.model == "amodal-vae":
        print(f"Amodal-VAE: {model.checkpoint} (stage {model.trained_stage}) in {time.time() - t0:.0f} s; "
              f"threshold: {registry.default_threshold('amodal-vae', ns.out)[0]:g} ({Path(ns.out) / 'threshold.json'})")
        return 0
    if ns.model in RENDERERS:
        return _report_renderer(ns, model, time.time() - t0)
    from ..train.pcnet import checkpoint_file
    last = next((h for h in reversed(model.history) if h.get("split") == "train"), {})
    print(f"PCNet-M: trained to step {last.get('step', '?')} (loss {last.get('loss', float('nan')):.4f}) "
          f"in {time.time() - t0:.1f} s; checkpoint {checkpoint_file(ns.out)}")
    return 0


def _complete(ns) -> int:
    from .. import registry
    from ..metrics import write_predictions
    _at_least(ns, "seed", 0)
    if ns.threshold is not None and not (math.isfinite(ns.threshold) and 0.0 < ns.threshold <= 1.0):
        raise ArgumentError(f"--threshold must lie in (0, 1], got {ns.threshold}")
    if not 0 <= ns.samples <= MAX_SAMPLES:
        raise ArgumentError(f"--samples must lie in 0..{MAX_SAMPLES}, got {ns.samples}")
    learned = ns.method in MODELS
    if learned and not ns.checkpoint:
        raise ArgumentError(f"--method {ns.method} needs --checkpoint RUN_DIR_OR_FILE")
    if not learned:
        given = [flag for flag, on in (("--checkpoint", ns.checkpoint is not None), ("--threshold", ns.threshold is not None),
                                       ("--samples", ns.samples != 0), ("--box amodal-gt", ns.box != "predicted"))
                 if on]
        if given:
            raise ArgumentError(f"{', '.join(given)}: does not apply to --method {ns.method}")
    if ns.samples and ns.method != "amodal-vae":
        raise ArgumentError(f"--samples applies to --method amodal-vae only ({ns.method} is deterministic)")
    if ns.frame != "fit" and ns.method != "amodal-vae":
        raise ArgumentError("--frame applies to --method amodal-vae only")
    check_output_file(ns.out, {"visible masks file": ns.visible})
    check_output_file(ns.out, {"annotation file": ns.annotations, **_checkpoint_inputs(ns.checkpoint)})
    ann = _load(ns.annotations)   # read once
    visible = _load_visible(ns.visible, ann)
    if ns.box == "amodal-gt" and not ann.has_amodal:
        raise ArgumentError(f"--box amodal-gt reads the ground-truth amodal boxes, and {ns.annotations} has none")
    model = registry.load_model(ns.method, ns.checkpoint, ns.device) if learned else None
    threshold = ns.threshold
    if learned and threshold is None:
        threshold, source = registry.default_threshold(ns.method, ns.checkpoint)
        print(f"threshold {threshold:g} ({source})", file=sys.stderr)
    if visible is not None:
        return _complete_visible(ns, ann, model, threshold, visible)
    preds = registry.complete(ns.method, ann, model, threshold=threshold, box=ns.box, samples=ns.samples,
                              frame=ns.frame, seed=ns.seed)
    write_predictions(ns.out, ann, preds)
    print(f"wrote {len(preds)} predictions to {ns.out}")
    return 0


def _evaluate(ns) -> int:
    from ..io import atomic_write_json
    from ..metrics import format_table, instance_table, load_predictions, summarize
    if ns.out:
        check_output_file(ns.out, {"annotation file": ns.annotations, "predictions file": ns.predictions})
    ann = _load(ns.annotations)
    preds = load_predictions(ns.predictions, ann)
    result = summarize(instance_table(ann, preds, allow_missing=ns.allow_missing))
    print(format_table(result, f"{Path(ns.predictions).name} on {Path(ns.annotations).name} (mIoU, %)"))
    if ns.out:
        atomic_write_json(ns.out, result)
    return 0


COMMANDS = {"synth": _synth, "train": _train, "complete": _complete, "evaluate": _evaluate}


# --------------------------------------------------------------------------- segmentation input
# `amodal train --model resnet-psp`, `amodal segment` (visible masks predicted from the images) and
# `amodal complete --visible MASKS.json` (complete those instead of the file's visible masks).
def _add_segmentation_arguments(sub, train, complete) -> None:
    train.add_argument("--crop-box", choices=("amodal", "visible"),
                       help="resnet-psp: the ground-truth box its crops are cut by (default: the profile's, amodal: "
                            "the paper's KINS GT box; visible for files without amodal labels)")
    train.add_argument("--weights", help="resnet-psp: a local weights file of its torchvision ResNet backbone "
                                         "(default: random initialisation; nothing is downloaded)")
    complete.add_argument("--visible", help="COCO results JSON of visible masks (e.g. from `amodal segment`), "
                                            "one per annotation: completed instead of the file's visible masks, "
                                            "for the targets and for what surrounds them")
    s = sub.add_parser("segment", help="predict every annotation's visible mask from the images (COCO results JSON)")
    s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the traceback of an error in the input too")
    s.add_argument("--model", choices=SEGMENTERS, default=SEGMENTERS[0])
    s.add_argument("--checkpoint", required=True, help="run folder or checkpoint file of `amodal train --model resnet-psp`")
    s.add_argument("--annotations", required=True, help="the instances to segment (their boxes and images)")
    s.add_argument("--images", help="image folder of the annotations (default: 'images' beside the file)")
    s.add_argument("--out", required=True, help="visible masks, COCO results JSON with id = annotation id "
                                                "(never one of the inputs)")
    s.add_argument("--crop-box", choices=("amodal", "visible"), help="default: the box the network was trained with")
    s.add_argument("--threshold", type=float, help="binarisation threshold in (0, 1] (default 0.5)")
    s.add_argument("--device", default="auto")


def _train_segmenter(ns) -> int:
    from .. import registry
    if ns.model not in SEGMENTERS:
        given = [f for f, v in (("--weights", ns.weights), ("--crop-box", ns.crop_box)) if v is not None]
        raise ArgumentError(f"{', '.join(given)}: applies to --model {', '.join(SEGMENTERS)} only")
    if ns.stage not in (None, 1):
        raise ArgumentError(f"--model {ns.model} has a single training stage; --stage {ns.stage} does not apply")
    if Path(ns.out).exists() and not Path(ns.out).is_dir():
        raise UnsafeOutputError(ns.out, "exists and is not a folder: --out takes a run folder")
    if ns.weights is not None and not Path(ns.weights).is_file():
        raise ArgumentError(f"--weights {ns.weights}: no such file")
    ann = _load(ns.annotations, ns.images)
    if ann.images_dir is None:
        raise ArgumentError(f"--model {ns.model} reads the images: give --images DIR (no 'images' folder beside "
                            f"{ns.annotations})")
    val = None
    if ns.val_annotations is not None:
        val = _load(ns.val_annotations, ns.images)   # --images holds the images of both files
    check_run_folder(ns.out)
    t0 = time.time()
    overrides = {k: v for k, v in (("box", ns.crop_box), ("weights", ns.weights)) if v is not None}
    model = registry.train(ns.model, ann, ns.out, profile=ns.profile, seed=ns.seed, device=ns.device,
                                     steps=ns.steps, resume=ns.resume, val_annotations=val, **overrides)
    from ..train.psp import checkpoint_file
    sel = model.selected or {}
    print(f"ResNet-PSP: trained in {time.time() - t0:.1f} s; kept step {sel.get('step', '?')} (validation visible IoU "
          f"{sel.get('value') or float('nan'):.2f} %); checkpoint {checkpoint_file(ns.out)}")
    return 0


def _segment(ns) -> int:
    from .. import registry
    from ..metrics import write_predictions
    from ..predict.psp import visible_iou
    if ns.threshold is not None and not (math.isfinite(ns.threshold) and 0.0 < ns.threshold <= 1.0):
        raise ArgumentError(f"--threshold must lie in (0, 1], got {ns.threshold}")
    check_output_file(ns.out, {"annotation file": ns.annotations, **_checkpoint_inputs(ns.checkpoint)})
    ann = _load(ns.annotations, ns.images)
    if ann.images_dir is None:
        raise ArgumentError(f"--images DIR is needed: no 'images' folder beside {ns.annotations}")
    model = registry.load_model(ns.model, ns.checkpoint, ns.device)
    masks = registry.segment(ns.model, ann, model, threshold=ns.threshold, box=ns.crop_box)
    write_predictions(ns.out, ann, masks)
    q = visible_iou(ann, masks)
    print(f"wrote {len(masks)} visible masks to {ns.out} (against the file's visible masks: IoU {q['A']:.2f} pooled, "
          f"{q['B']:.2f} mean per instance)" if masks else f"wrote 0 visible masks to {ns.out}")
    return 0


def _load_visible(path, ann):
    """The visible masks of ``complete --visible`` ({id: RLE}, one per annotation of ``ann``), or None."""
    if path is None:
        return None
    from ..metrics import load_predictions
    visible = load_predictions(path, ann)
    missing = [i.id for i in ann.instances if i.id not in visible]
    if missing:
        raise ArgumentError(f"--visible {path}: no mask for {len(missing)} of {len(ann)} annotations of "
                            f"{Path(ann.path).name} (annotation {missing[0]} first)")
    return visible


def _complete_visible(ns, ann, model, threshold, visible) -> int:
    from .. import registry
    from ..metrics import write_predictions
    preds = registry.complete_from_visible(ns.method, ann, visible, model, source=str(ns.visible), threshold=threshold,
                                           box=ns.box, samples=ns.samples, frame=ns.frame, seed=ns.seed)
    write_predictions(ns.out, ann, preds)
    empty = sum(1 for k, r in visible.items() if k in preds and not _area(r))
    print(f"wrote {len(preds)} predictions to {ns.out}, completing the visible masks of {ns.visible}"
          + (f" ({empty} empty: left empty)" if empty else ""))
    return 0


def _area(rle) -> int:
    from ..data import masks as M
    return int(M.area(rle))


COMMANDS["segment"] = _segment
# --------------------------------------------------------------------------- render (SPADE)
def _add_render_parser(sub, common) -> None:
    r = sub.add_parser("render", parents=[common], help="draw an instance in a new full mask with a trained SPADE "
                                                          "renderer and paste it into its image")
    r.add_argument("--checkpoint", required=True, help="run folder or checkpoint file of `amodal train --model spade`")
    r.add_argument("--image", required=True, help="the image the instance is in")
    r.add_argument("--annotations", required=True, help="the annotation file holding the instance")
    r.add_argument("--id", required=True, type=int, help="the instance's annotation id")
    r.add_argument("--mask", required=True, help="the new full mask: a PNG of the image's size, nonzero = object")
    r.add_argument("--out", required=True, help="the composited image (PNG; never one of the inputs)")
    r.add_argument("--device", default="auto")


def _read_png(path, what: str, mode: str):
    """A picture as a numpy array (Pillow ``mode``), or one DataError naming the file."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    from ..errors import DataError, MissingFileError
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(p, None, "", f"{what}: no such file")
    try:
        with Image.open(p) as im:
            if im.width * im.height > 2 ** 26:
                raise DataError(f"{p}: {what} of {im.width}x{im.height} pixels is too large")
            return np.array(im.convert(mode))   # a writable copy
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{p}: {what} is not a readable image ({type(e).__name__}: {str(e)[:120]})") from None


def _render(ns) -> int:
    from ..errors import DataError
    from ..io import atomic_write
    if Path(ns.out).suffix.lower() != ".png":
        raise ArgumentError(f"--out {ns.out}: the composited image is written as PNG; give a .png name")
    check_output_file(ns.out, {"image": ns.image, "mask": ns.mask, "annotation file": ns.annotations,
                               **_checkpoint_inputs(ns.checkpoint)})
    ann = _load(ns.annotations)
    inst = ann.by_id().get(ns.id)
    if inst is None:
        raise ArgumentError(f"--id {ns.id}: {ns.annotations} has no annotation with this id")
    image = _read_png(ns.image, "the image", "RGB")
    want = (inst.height, inst.width)
    if image.shape[:2] != want:
        raise DataError(f"{ns.image}: the image is {image.shape[0]}x{image.shape[1]} pixels but {Path(ns.annotations).name} "
                        f"gives {want[0]}x{want[1]} for image {inst.image_id} of annotation {ns.id}")
    mask = _read_png(ns.mask, "the mask", "L") > 0
    if mask.shape != image.shape[:2]:
        raise DataError(f"{ns.mask}: the mask is {mask.shape[0]}x{mask.shape[1]} pixels; it must be the image's "
                        f"size, {want[0]}x{want[1]}")
    if not mask.any():
        raise DataError(f"{ns.mask}: the mask is empty (no nonzero pixel): nothing to draw")
    from .. import registry
    from ..predict.spade import render_instance
    model = registry.load_model("spade", ns.checkpoint, ns.device)
    out = render_instance(model, ann, inst, mask, image=image)
    from PIL import Image
    atomic_write(ns.out, lambda f: Image.fromarray(out["image"]).save(f, format="PNG"))
    x0, y0, x1, y1 = [round(float(v), 1) for v in out["box"]]
    print(f"rendered annotation {ns.id} in the new mask (crop [{x0}, {y0}, {x1}, {y1}]); wrote {ns.out}")
    return 0


def _report_renderer(ns, model, seconds: float) -> int:
    from ..train.spade import checkpoint_file, timing
    last = next((h for h in reversed(model.history) if h.get("split") == "train"), {})
    t = timing(ns.out) or {}
    print(f"SPADE: trained to step {last.get('step', '?')} (generator loss {last.get('loss_g', float('nan')):.4f}, "
          f"discriminator {last.get('loss_d', float('nan')):.4f}) in {seconds:.1f} s "
          f"({t.get('train_cpu_s', float('nan')):.0f} CPU s); checkpoint {checkpoint_file(ns.out)}")
    return 0


COMMANDS["render"] = _render


# --------------------------------------------------------------------------- scene editing
def _add_scene_editing(sub, train_parser, common) -> None:
    """``amodal edit``, and ``train --vgg-weights`` for the inpainters."""
    train_parser.add_argument("--vgg-weights", help="inpaint-*: a local VGG-16 weights file (torchvision's vgg16 "
                                                    "state dict) for Liu et al.'s perceptual and style losses "
                                                    "(default: fixed hand-made features; nothing is downloaded)")
    d = sub.add_parser("edit", parents=[common], help="remove instances from an image: complete what they hid "
                                                     "(Amodal-VAE) and inpaint it (partial convolutions)")
    d.add_argument("--image", required=True, help="the image (PNG, JPEG...) the annotations describe")
    d.add_argument("--annotations", required=True, help="its instances: COCO (visible masks suffice), KINS or COCOA; "
                                                        "the image is found by file name (or is the file's only one)")
    d.add_argument("--remove", required=True, help="annotation ids to remove, comma-separated")
    d.add_argument("--out", required=True, help="the edited image (.png, .jpg; never one of the inputs)")
    d.add_argument("--masks-out", help="also write the remaining instances with their new masks (COCO JSON)")
    d.add_argument("--models", help="a folder of trained runs named <model>-* (default: results/runs/<profile>, the "
                                    "notebooks' runs)")
    d.add_argument("--vae", help="Amodal-VAE run folder (default: found in --models)")
    d.add_argument("--background", help="inpaint-background run folder (default: found in --models)")
    d.add_argument("--instance", help="inpaint-instance run folder (default: found in --models)")
    d.add_argument("--profile", choices=PROFILE_NAMES, help="whose runs --models defaults to, and the dilation")
    d.add_argument("--dilate", type=int, help="grow the removed masks by this many pixels (default: the profile's)")
    d.add_argument("--threshold", type=float, help="Amodal-VAE's threshold (default: its run's threshold.json)")
    d.add_argument("--device", default="auto")


def _train_inpainter(ns, ann, val, t0) -> int:
    from ..train import inpaint
    if ns.stage not in (None, 1):
        raise ArgumentError(f"--model {ns.model} has a single training stage; --stage {ns.stage} does not apply")
    kind = inpaint.NAMES[ns.model]
    model, history = inpaint.train_inpainter(kind, ann, ns.out, profile=ns.profile, seed=ns.seed, device=ns.device,
                                             steps=ns.steps, resume=ns.resume, val_annotations=val,
                                             vgg_weights=ns.vgg_weights)
    sel = next((h for h in reversed(history) if h.get("split") == "selected"), {})
    print(f"{ns.model}: {inpaint.checkpoint_file(ns.out, kind)} (validation hole PSNR "
          f"{sel.get('val_hole_psnr', float('nan')):.2f} dB at step {sel.get('step', '?')}) in "
          f"{time.time() - t0:.0f} s, {model.cpu_seconds:.0f} s of CPU")
    return 0


def _remove_ids(text: str) -> list:
    ids = []
    for tok in str(text).split(","):
        tok = tok.strip()
        try:
            ids.append(int(tok))
        except ValueError:
            raise ArgumentError(f"--remove takes annotation ids separated by commas, got {text!r}") from None
    return ids


def _edit_run(ns, name: str, given) -> Path:
    """The run folder of ``name``: as given, or the one trained run named ``name-*`` in --models."""
    from .. import registry
    if given:
        if not Path(given).exists():
            raise CheckpointError(given, f"no such {name} run folder or checkpoint")
        return Path(given)
    from ..profiles import RESULTS, resolve_profile
    folder = Path(ns.models) if ns.models else RESULTS / "runs" / resolve_profile(ns.profile)
    runs = sorted(p for p in folder.glob(f"{name}-*") if p.is_dir() and registry.is_trained(name, p)) \
        if folder.is_dir() else []
    if len(runs) != 1:
        found = "none" if not runs else ", ".join(p.name for p in runs)
        raise ArgumentError(f"no single trained {name} run in {folder} (found: {found}); train one with "
                            f"`amodal train --model {name} ...` and pass its folder as "
                            f"--{ {'amodal-vae': 'vae', 'inpaint-background': 'background'}.get(name, 'instance')}")
    return runs[0]


def _image_of(ann, image_path):
    """The image id of ``image_path`` in ``ann``: by file name (whole relative name, else base name), or
    the file's only image."""
    p = Path(image_path)
    names = {k: str(v.get("file_name") or "") for k, v in ann.images.items()}
    for k, n in names.items():
        if n and (str(p).endswith(n) or Path(n).name == p.name):
            return k
    if len(ann.images) == 1:
        return next(iter(ann.images))
    raise ArgumentError(f"{ann.path}: no image named {p.name} among its {len(ann.images)} images")


def _edit(ns) -> int:
    from PIL import Image
    from .. import registry
    from ..experiments import edit
    from ..data import masks as M
    from ..io import atomic_write, atomic_write_json
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
    if Path(ns.out).suffix.lower() not in fmt:
        raise ArgumentError(f"--out {ns.out}: give an image file name ending in {', '.join(fmt)}")
    if ns.dilate is not None and not 0 <= ns.dilate <= 64:
        raise ArgumentError(f"--dilate must lie in 0..64, got {ns.dilate}")
    if ns.threshold is not None and not (math.isfinite(ns.threshold) and 0.0 < ns.threshold <= 1.0):
        raise ArgumentError(f"--threshold must lie in (0, 1], got {ns.threshold}")
    ids = _remove_ids(ns.remove)
    inputs = {"image": ns.image, "annotation file": ns.annotations}
    check_output_file(ns.out, inputs)
    if ns.masks_out:
        check_output_file(ns.masks_out, {**inputs, "edited image (--out)": ns.out})
    image = _read_png(ns.image, "the image", "RGB")
    ann = _load(ns.annotations)
    image_id = _image_of(ann, ns.image)
    one = ann.subset([i for i in ann.instances if i.image_id == image_id])
    by_id = ann.by_id()
    for i in ids:
        if i in by_id and by_id[i].image_id != image_id:
            raise ArgumentError(f"--remove {i}: annotation {i} of {ns.annotations} belongs to image "
                                f"{ann.images[by_id[i].image_id].get('file_name') or by_id[i].image_id}, not to {ns.image}")
    info = ann.images[image_id]
    if (int(info["height"]), int(info["width"])) != image.shape[:2]:
        from ..errors import DataError
        raise DataError(f"{ns.image}: the image is {image.shape[0]}x{image.shape[1]} pixels but {ns.annotations} "
                        f"gives {info['height']}x{info['width']} for image {image_id}")
    runs = {n: _edit_run(ns, n, g) for n, g in (("amodal-vae", ns.vae), ("inpaint-background", ns.background),
                                                 ("inpaint-instance", ns.instance))}
    models = {n: registry.load_model(n, r, ns.device) for n, r in runs.items()}
    dilate = ns.dilate if ns.dilate is not None else get_profile(ns.profile).get("inpaint", {}).get("edit", {}).get(
        "dilate", edit.DEFAULT_DILATE)
    t0 = time.time()
    res = edit.remove(image, one, ids, vae=models["amodal-vae"], background=models["inpaint-background"],
                      instance=models["inpaint-instance"], dilate_px=int(dilate), threshold=ns.threshold)
    suffix = Path(ns.out).suffix.lower()
    atomic_write(ns.out, lambda f: Image.fromarray(res.image).save(f, format=fmt[suffix]))
    if ns.masks_out:
        anns = []
        for inst in edit.edited_annotations(res, one):
            anns.append({"id": inst.id, "image_id": image_id, "category_id": inst.category_id,
                         "segmentation": M.to_json(inst.visible), "bbox": list(inst.visible_box),
                         "area": int(inst.visible_area), "iscrowd": 0})
        atomic_write_json(ns.masks_out, {"images": [dict(info)], "annotations": anns,
                                         "categories": [{"id": k, "name": v} for k, v in one.categories.items()]})
    print(f"removed {', '.join(map(str, res.removed))}; completed {len(res.completed)} object(s) behind them "
          f"({', '.join(map(str, res.order)) or 'none'}); {int(res.hole.sum())} pixels repainted in "
          f"{time.time() - t0:.1f} s; wrote {ns.out}" + (f" and {ns.masks_out}" if ns.masks_out else ""))
    return 0


COMMANDS["edit"] = _edit


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_message(e: OSError) -> str:
    if e.filename is not None and e.strerror:
        names = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 is not None else "")
        return f"{names}: {e.strerror}"
    return str(e) or type(e).__name__


def main(argv=None) -> int:
    """Run one command; returns the exit code: 0 done, 2 a user's mistake (one line on stderr),
    130 interrupted, 1 a bug (with its traceback)."""
    ns = _parser().parse_args(argv)
    try:
        return COMMANDS[ns.command](ns)
    except (UserError, OSError) as e:  # OSError: the file system refused (permission, disk full...)
        if ns.debug:
            traceback.print_exc()
        msg = str(e) if isinstance(e, UserError) else _os_message(e)
        print(f"amodal {ns.command}: error: {_one_line(msg)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"amodal {ns.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(f"amodal {ns.command}: internal error: this is a bug, not a problem with your input; "
              "please report it with the traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
