"""``amodal complete`` (amodal masks by any model of :mod:`amodal_lib.registry`, rules included, of the file's
visible masks or of predicted ones) and ``amodal evaluate`` (full and invisible mIoU, protocols A
and B). Masks in, masks out: the rules and the evaluation run without torch (a test reads
malformed files with them under a memory limit torch's import would exceed)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

from tqdm.auto import tqdm

from .. import registry
from ..data import masks as M
from ..data.records import with_visible
from ..errors import ArgumentError
from ..io import atomic_write_json
from ..metrics import format_table, instance_table, load_predictions, summarize, write_predictions
from .checks import at_least, check_output_file, check_threshold, checkpoint_inputs, load
from .parser import MAX_SAMPLES


def _takers(option: str) -> str:
    return ", ".join(n for n in registry.METHODS if option in registry.declared(n, registry.RULE,
                                                                                 registry.COMPLETION).complete_options)


def complete(ns) -> int:
    at_least(ns, "seed", 0)
    check_threshold(ns.threshold)
    if not 0 <= ns.samples <= MAX_SAMPLES:
        raise ArgumentError(f"--samples must lie in 0..{MAX_SAMPLES}, got {ns.samples}")
    learned = ns.model in registry.MODELS
    if learned and not ns.checkpoint:
        raise ArgumentError(f"--model {ns.model} needs --checkpoint RUN_DIR_OR_FILE")
    if not learned:
        given = [flag for flag, on in (("--checkpoint", ns.checkpoint is not None), ("--threshold", ns.threshold is not None),
                                       ("--samples", ns.samples != 0), ("--box amodal-gt", ns.box != "predicted"))
                 if on]
        if given:
            raise ArgumentError(f"{', '.join(given)}: does not apply to --model {ns.model}")
    options = registry.declared(ns.model, registry.RULE, registry.COMPLETION).complete_options
    if ns.samples and "samples" not in options:
        raise ArgumentError(f"--samples applies to --model {_takers('samples')} only ({ns.model} is deterministic)")
    if ns.frame != "fit" and "frame" not in options:
        raise ArgumentError(f"--frame applies to --model {_takers('frame')} only")
    check_output_file(ns.out, {"visible masks file": ns.visible})
    check_output_file(ns.out, {"annotation file": ns.annotations, **checkpoint_inputs(ns.checkpoint)})
    ann = load(ns.annotations)   # read once
    visible = _load_visible(ns.visible, ann)
    if ns.box == "amodal-gt" and not ann.has_amodal:
        raise ArgumentError(f"--box amodal-gt reads the ground-truth amodal boxes, and {ns.annotations} has none")
    if learned:
        chosen = registry.variant_checkpoint(ns.model, ns.checkpoint, ns.frame)
        if str(chosen) != str(ns.checkpoint):
            print(f"{ns.frame} frame: the checkpoint and threshold its run selected for it on validation ({chosen})",
                  file=sys.stderr)
            ns.checkpoint = chosen
    model = registry.load_model(ns.model, ns.checkpoint, ns.device) if learned else None
    given = with_visible(ann, visible, str(ns.visible)) if visible is not None else ann
    noise, noisy = _noise(ns, model, given)
    threshold = ns.threshold
    if learned and threshold is None:
        threshold, source = registry.default_threshold(ns.model, ns.checkpoint, noisy=noisy)
        print(f"threshold {threshold:g} ({source})", file=sys.stderr)
    if visible is not None:
        return _complete_visible(ns, ann, model, threshold, visible, noise)
    batches = registry.complete_batches(ns.model, ann, model, threshold=threshold, box=ns.box, samples=ns.samples,
                                        frame=ns.frame, seed=ns.seed, workers=0, noise=noise)   # one process per core
    n = write_predictions(ns.out, ann, _progress(batches, len(ann)))
    print(f"wrote {n} predictions to {ns.out}")
    return 0


def _progress(batches, total: int):
    """The batches of a completion, counted on a progress bar (on a terminal)."""
    with tqdm(total=total, unit="mask", desc="completing", disable=None, leave=False) as bar:
        for part in batches:
            yield part
            bar.update(len(part))


def _noise(ns, model, given) -> tuple:
    """(the visible masks' noise in pixels, whether they are a segmenter's) from ``--visible-noise``
    (pixels, or "auto": estimated from their boundaries; :func:`amodal_lib.registry.resolve_evidence`),
    said on stderr (with "auto", what the estimate read and its 90% interval:
    :func:`amodal_lib.registry.noise_reading`); the noise is "auto" where the masks are to be smoothed
    first (the completion smooths them and reads them again)."""
    if "noise" not in registry.declared(ns.model, registry.RULE, registry.COMPLETION).complete_options:
        if ns.visible_noise != "auto":
            raise ArgumentError(f"--visible-noise applies to --model {_takers('noise')} only")
        return 0.0, False
    try:
        level = float(ns.visible_noise) if ns.visible_noise != "auto" else "auto"
    except ValueError:
        raise ArgumentError(f"--visible-noise takes pixels >= 0 or 'auto', got {ns.visible_noise!r}") from None
    if level != "auto" and not (math.isfinite(level) and 0 <= level <= 20):
        raise ArgumentError(f"--visible-noise must lie in 0..20 pixels, got {ns.visible_noise}")
    reading = registry.noise_reading(ns.model, model, given.instances, ns.frame, ns.box) if level == "auto" else None
    noise, noisy = registry.resolve_evidence(ns.model, model, given.instances, level, ns.frame, ns.box, reading)
    read = f", {reading.describe()}" if reading is not None else ""
    if noise > 0 and level == "auto" and registry.evidence_of(model) == "smooth":
        print(f"visible masks read as a segmenter's{read}: smoothed by that much first, as this "
              "run's validation found better", file=sys.stderr)
        return "auto", True
    if noise > 0:
        how = read if level == "auto" else f", {noise:.2g} px off (--visible-noise)"
        print(f"visible masks treated as a segmenter's{how}: evidence, not truth", file=sys.stderr)
    elif noisy:
        print(f"visible masks read as a segmenter's{read}; taken as truth, as this run's validation found better",
              file=sys.stderr)
    elif reading is not None:
        hint = (". A smooth error (a whole mask a pixel too large or small) leaves no trace on a boundary: say "
                "--visible-noise PX where a segmenter made them") if ns.visible else ""
        print(f"visible masks read as annotations{read}: taken as truth{hint}", file=sys.stderr)
    return noise, noisy


def _load_visible(path, ann):
    """The visible masks of ``complete --visible`` ({id: RLE}, one per annotation of ``ann``), or None."""
    if path is None:
        return None
    visible = load_predictions(path, ann)
    missing = [i.id for i in ann.instances if i.id not in visible]
    if missing:
        raise ArgumentError(f"--visible {path}: no mask for {len(missing)} of {len(ann)} annotations of "
                            f"{Path(ann.path).name} (annotation {missing[0]} first)")
    return visible


def _complete_visible(ns, ann, model, threshold, visible, noise) -> int:
    batches = registry.complete_from_visible_batches(ns.model, ann, visible, model, source=str(ns.visible),
                                                     threshold=threshold, box=ns.box, samples=ns.samples,
                                                     frame=ns.frame, seed=ns.seed, workers=0, noise=noise)
    n = write_predictions(ns.out, ann, _progress(batches, len(ann)))
    empty = sum(1 for r in visible.values() if not int(M.area(r)))
    print(f"wrote {n} predictions to {ns.out}, completing the visible masks of {ns.visible}"
          + (f" ({empty} empty: left empty)" if empty else ""))
    return 0


def evaluate(ns) -> int:
    if ns.out:
        check_output_file(ns.out, {"annotation file": ns.annotations, "predictions file": ns.predictions})
    ann = load(ns.annotations)
    preds = load_predictions(ns.predictions, ann)
    result = summarize(instance_table(ann, preds, allow_missing=ns.allow_missing))
    print(format_table(result, f"{Path(ns.predictions).name} on {Path(ns.annotations).name} (mIoU, %)"))
    if ns.out:
        atomic_write_json(ns.out, result)
    return 0
