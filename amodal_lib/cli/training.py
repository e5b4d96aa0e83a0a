"""``amodal synth`` (the embedded data set) and ``amodal train`` (any trained family of
:mod:`amodal_lib.registry`, with the options of its row). Both hold their output folder while they
write it (:func:`amodal_lib.io.folder_lock`); ``train`` also records the settings that made its
run and refuses to resume a run made with others (:mod:`amodal_lib.train.folder`)."""
from __future__ import annotations

import time
from pathlib import Path

from .. import registry
from ..data.synth import generate
from ..errors import ArgumentError, UnsafeOutputError
from ..io import folder_lock
from ..profiles import get_profile
from ..train import folder
from .checks import at_least, check_run_folder, load

# the command line's flag of each family option (registry.Family.options)
FLAGS = {"weights": "--backbone-weights", "crop_box": "--crop-box", "vgg_weights": "--vgg-weights"}
FILE_FLAGS = ("--backbone-weights", "--vgg-weights")


def synth(ns) -> int:
    at_least(ns, "num_images", 1)
    at_least(ns, "seed", 0)
    cfg = get_profile(ns.profile)["synth"]
    if ns.num_images is not None:
        cfg["images"] = ns.num_images
    if ns.seed is not None:
        cfg["seed"] = ns.seed
    out = Path(ns.out)
    target = out.resolve() if out.is_symlink() else out   # the folder generate() replaces
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with folder_lock(target.parent / f".{target.name}.amodal.lock", out, "amodal synth"):   # beside: it is swapped in
        paths = generate(ns.out, **cfg)
    print(f"wrote {cfg['images']} images in {time.time() - t0:.1f} s:")
    for k, v in paths.items():
        print(f"  {k}: {v}")
    return 0


def _options(ns, family) -> dict:
    """{training keyword: value} of the family options given, or an ArgumentError naming those the
    family does not take and the families that do."""
    given = {dest: getattr(ns, dest, None) for dest in FLAGS}
    given = {dest: v for dest, v in given.items() if v is not None}
    wrong = [dest for dest in given if dest not in family.options]
    if wrong:
        takers = [n for n in registry.TRAINABLE if any(d in registry.declared(n).options for d in wrong)]
        raise ArgumentError(f"{', '.join(FLAGS[d] for d in wrong)}: applies to --model {' or '.join(takers)} only")
    if ns.weights is not None and not Path(ns.weights).is_file():
        raise ArgumentError(f"--backbone-weights {ns.weights}: no such file")
    return {family.options[dest]: v for dest, v in given.items()}


def _recorded_options(ns) -> dict:
    """{flag: value} of the family options given, as a run's record keeps them (files by resolved path)."""
    given = {FLAGS[d]: getattr(ns, d, None) for d in FLAGS}
    return {flag: str(Path(v).resolve()) if flag in FILE_FLAGS else v for flag, v in given.items() if v is not None}


def train(ns) -> int:
    at_least(ns, "seed", 0)
    at_least(ns, "steps", 1)
    family = registry.declared(ns.model)   # what it is; its modules (torch) load when training starts
    options = _options(ns, family)
    if family.stages == (1,) and ns.stage not in (None, 1):
        raise ArgumentError(f"--model {ns.model} has a single training stage; --stage {ns.stage} does not apply")
    if Path(ns.out).exists() and not Path(ns.out).is_dir():
        raise UnsafeOutputError(ns.out, "exists and is not a folder: --out takes a run folder")
    ann = load(ns.annotations, ns.images)   # read once, checked before any step
    if family.reads_images and ann.images_dir is None:
        raise ArgumentError(f"--model {ns.model} reads the images: give --images DIR (no 'images' folder beside "
                            f"{ns.annotations})")
    val = None
    if ns.val_annotations is not None:
        # the images of both files are in --images for the families that read pixels
        val = load(ns.val_annotations, ns.images if family.reads_images else None)
        if family.val_needs_amodal and not val.has_amodal:
            raise ArgumentError(f"--val-annotations {ns.val_annotations}: has no amodal masks to validate on")
    check_run_folder(ns.out)
    asked = folder.settings(ns.model, ann, profile=ns.profile, seed=ns.seed, steps=ns.steps, val_annotations=val,
                            options=_recorded_options(ns))
    # --stage k of a run starts from its earlier stages: starting over there keeps them
    keep = [f"stage{j}{ext}" for j in family.stages if ns.stage and j < ns.stage
            for ext in (".pt", ".history.jsonl", ".timing.json")]
    t0 = time.time()
    registry.family(ns.model)   # its modules (torch: seconds) load first: the folder is held for the training only
    with folder.hold(ns.out, asked, resume=ns.resume, keep=keep, command=f"amodal train --model {ns.model}"):
        model = registry.train(ns.model, ann, ns.out, profile=ns.profile, seed=ns.seed, device=ns.device,
                               steps=ns.steps, resume=ns.resume, val_annotations=val, stage=ns.stage, **options)
    print(registry.family(ns.model).describe(model, ns.out, time.time() - t0))
    return 0
