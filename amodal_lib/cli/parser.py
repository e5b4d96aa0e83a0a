"""The ``amodal`` command line's arguments, every command's: built from the families' names alone
(:data:`amodal_lib.registry.FAMILIES`), so that parsing, ``--help`` and argparse's own errors never
wait for torch.

One vocabulary across the commands: ``--model`` names a family (a rule or a trained model),
``--checkpoint`` a run folder or checkpoint file of one (``edit``, which needs three, says whose:
``--vae-checkpoint``...), ``--runs`` a folder of run folders, ``--images`` the folder of the
annotations' images, ``--image`` one image file, ``--annotations`` an annotation file and ``--out``
what the command writes. The spellings these replaced (:data:`RENAMED`) still parse, hidden from
``--help``: scripts written for them keep working."""
from __future__ import annotations

import argparse

from .. import __version__
from ..profiles import PROFILE_NAMES
from ..registry import BOXES, METHODS, SEGMENTERS, TRAINABLE

MAX_SAMPLES = 100  # posterior samples per instance for `complete --samples`

# {command: {old spelling: the option that replaced it}}: accepted, never shown
RENAMED = {
    "synth": {"--images": "--num-images"},
    "train": {"--weights": "--backbone-weights"},
    "complete": {"--method": "--model"},
    "edit": {"--models": "--runs", "--vae": "--vae-checkpoint", "--background": "--background-checkpoint",
             "--instance": "--instance-checkpoint"},
}

# the help of the options several commands share, so that one thing is said one way
HELP = {
    "debug": "show the traceback of an error in the input too",
    "annotations": "the annotation file: KINS (either schema), COCOA, plain COCO instances (visible masks "
                   "suffice) or a Cityscapes gtFine folder",
    "images": "the folder of the annotations' images (default: an 'images' folder beside the annotation file)",
    "device": "where to run: auto (CUDA, else MPS, else CPU; the default), cpu, cuda, cuda:N or mps",
    "profile": "the scale, one of smoke, default, paper (default: $AMODAL_PROFILE, else default)",
    "threshold": "binarisation threshold of the mask probabilities, in (0, 1]",
    "crop_box": "resnet-psp: the ground-truth box its crops are cut by, amodal (the paper's KINS box) or "
                "visible (for files without amodal labels)",
}


def add(p, *flags, **kw):
    """``p.add_argument(*flags, **kw)``, and the option's older spellings (:data:`RENAMED`) as aliases
    that parse like it but never appear in ``--help``, usage or error messages."""
    old = [o for o, new in RENAMED.get(p.prog.split()[-1], {}).items() if new in flags]
    action = p.add_argument(*flags, *old, **kw)
    action.option_strings = list(flags)   # what help, usage and errors show; the parser still knows the old ones
    return action


def build() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)  # --debug also after the command (not reset there)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=HELP["debug"])
    p = argparse.ArgumentParser(prog="amodal", description="Amodal-VAE reproduction: data, training, completion, "
                                "evaluation, scene editing. `amodal COMMAND --help` lists a command's options.")
    p.add_argument("--version", action="version", version=f"amodal {__version__}", help="print the version and exit")
    p.add_argument("--debug", action="store_true", help=HELP["debug"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _data_and_training(sub, common)
    _completion(sub, common)
    _images(sub, common)
    return p


# --------------------------------------------------------------------------- synth, train
def _data_and_training(sub, common) -> None:
    s = sub.add_parser("synth", parents=[common], help="write the embedded synthetic data set (KINS 2020 schema)")
    add(s, "--out", required=True, help="output folder (new, empty, or an earlier data set: replaced whole)")
    add(s, "--num-images", type=int, metavar="N", help="how many images (default: the profile's)")
    add(s, "--seed", type=int, metavar="S", help="random seed of the scenes (default: the profile's)")
    add(s, "--profile", choices=PROFILE_NAMES, help=HELP["profile"] + "; sets the image count and size")

    t = sub.add_parser("train", parents=[common], help="train a model; its run folder holds every stage's checkpoint")
    add(t, "--model", required=True, choices=TRAINABLE, help="the family to train: " + ", ".join(TRAINABLE))
    add(t, "--stage", type=int, choices=(1, 2, 3), help="amodal-vae: train this stage only (default: every stage, "
                                                        "skipping finished ones)")
    add(t, "--annotations", required=True, metavar="ANN.json", help="training annotations: " + HELP["annotations"].split(": ", 1)[1]
        + "; no amodal label is read")
    add(t, "--val-annotations", metavar="VAL.json", help="validation annotations (amodal-vae: selects checkpoints and the threshold; "
                                     "default: images held out of --annotations; pcnet-m: with amodal masks, for "
                                     "logging mIoU)")
    add(t, "--images", metavar="DIR", help=HELP["images"] + "; checked to exist (resnet-psp, the inpainters and "
                                                            "spade read the images, the completion models do not)")
    add(t, "--out", required=True, metavar="RUN_DIR", help="the run folder (created; an unfinished run in it resumes)")
    add(t, "--profile", choices=PROFILE_NAMES, help=HELP["profile"] + "; sets the steps, widths and batch size")
    add(t, "--seed", type=int, metavar="S", default=0, help="random seed of the initialisation and the batches (default 0)")
    add(t, "--device", default="auto", metavar="DEVICE", help=HELP["device"])
    add(t, "--steps", type=int, metavar="N", help="training steps, overriding the profile's (per stage for amodal-vae)")
    add(t, "--no-resume", dest="resume", action="store_false",
        help="start over: the folder's earlier run (its checkpoints, histories, threshold, run.json) is removed "
             "first, also when it was made with other settings; with --stage K the earlier stages are kept")
    # a family's own options (registry.Family.options)
    add(t, "--crop-box", choices=("amodal", "visible"), help=HELP["crop_box"] + "; default: the profile's, amodal")
    add(t, "--backbone-weights", dest="weights", metavar="FILE",
        help="resnet-psp: a local weights file of its torchvision ResNet backbone (default: random initialisation; "
             "nothing is downloaded)")
    add(t, "--vgg-weights", metavar="FILE", help="inpaint-*: a local VGG-16 weights file (torchvision's vgg16 state "
                                                 "dict) for Liu et al.'s perceptual and style losses (default: fixed "
                                                 "hand-made features; nothing is downloaded)")


# --------------------------------------------------------------------------- complete, evaluate, segment
def _completion(sub, common) -> None:
    c = sub.add_parser("complete", parents=[common], help="predict one amodal mask per annotation (COCO results JSON)")
    add(c, "--model", required=True, choices=METHODS,
        help="how to complete: a rule (visible: the visible mask itself; convex-hull: its convex hull) or a trained "
             "model (amodal-vae, pcnet-m; give its --checkpoint)")
    add(c, "--annotations", required=True, metavar="ANN.json", help="the instances to complete: " + HELP["annotations"].split(": ", 1)[1])
    add(c, "--out", required=True, help="predictions JSON (never one of the inputs)")
    add(c, "--checkpoint", metavar="RUN_DIR_OR_FILE", help="a trained model's run folder or checkpoint file (`amodal train --out`)")
    add(c, "--box", choices=BOXES, default="predicted",
        help="the frame of the completion: predicted (the default) or amodal-gt (the ground-truth amodal box: reads "
             "the answer's frame, for evaluation only)")
    add(c, "--frame", choices=("fit", "transformer"), default="fit",
        help="amodal-vae: the full-object frame fitted to the known pixels around each instance (fit, the default), "
             "or the paper's spatial transformer on the crop alone, with the checkpoint and threshold its run chose "
             "for it on validation (RUN/transformer/, where the run has them)")
    add(c, "--threshold", type=float, metavar="T", help=HELP["threshold"] + " (default: the run's threshold.json, else the model's)")
    add(c, "--samples", type=int, default=0, metavar="K",
        help=f"amodal-vae: average this many posterior samples, 0 to {MAX_SAMPLES} (default 0: the posterior mode)")
    add(c, "--seed", type=int, metavar="S", default=0, help="random seed of the posterior samples (default 0)")
    add(c, "--visible-noise", default="auto", metavar="PX",
        help="amodal-vae: how far, in pixels, the visible masks' boundaries may lie from the truth (0: annotations, "
             "trusted; above 0: a segmenter's masks, taken as evidence, not truth); default auto: estimated from "
             "how ragged their boundaries are")
    add(c, "--device", default="auto", metavar="DEVICE", help=HELP["device"])
    add(c, "--visible", metavar="MASKS.json", help="COCO results JSON of visible masks (e.g. from `amodal segment`), "
                                                   "one per annotation: completed instead of the file's visible masks, "
                                                   "for the targets and for what surrounds them")

    e = sub.add_parser("evaluate", parents=[common], help="full and invisible mIoU, protocols A and B")
    add(e, "--annotations", required=True, metavar="ANN.json", help="the ground truth, with amodal masks: KINS (either schema) or COCOA")
    add(e, "--predictions", required=True, metavar="PRED.json", help="COCO results JSON, one amodal mask per annotation (`amodal complete`)")
    add(e, "--out", help="also write the metrics as JSON (never one of the inputs)")
    add(e, "--allow-missing", action="store_true", help="evaluate only the annotations that have a prediction")

    s = sub.add_parser("segment", parents=[common],
                       help="predict every annotation's visible mask from the images (COCO results JSON)")
    add(s, "--model", choices=SEGMENTERS, default=SEGMENTERS[0],
        help="the segmentation network's family (default and only one: " + ", ".join(SEGMENTERS) + ")")
    add(s, "--checkpoint", required=True, metavar="RUN_DIR_OR_FILE", help="its run folder or checkpoint file (`amodal train --model resnet-psp`)")
    add(s, "--annotations", required=True, metavar="ANN.json", help="the instances to segment (their boxes and images): "
                                                + HELP["annotations"].split(": ", 1)[1])
    add(s, "--images", metavar="DIR", help=HELP["images"])
    add(s, "--out", required=True, help="visible masks, COCO results JSON with id = annotation id (never one of "
                                        "the inputs)")
    add(s, "--crop-box", choices=("amodal", "visible"), help=HELP["crop_box"] + "; default: the box the network was "
                                                                                "trained with")
    add(s, "--threshold", type=float, metavar="T", help=HELP["threshold"] + " (default 0.5)")
    add(s, "--device", default="auto", metavar="DEVICE", help=HELP["device"])


# --------------------------------------------------------------------------- render, edit
def _images(sub, common) -> None:
    r = sub.add_parser("render", parents=[common], help="draw an instance in a new full mask with a trained SPADE "
                                                          "renderer and paste it into its image")
    add(r, "--checkpoint", required=True, metavar="RUN_DIR_OR_FILE", help="run folder or checkpoint file of `amodal train --model spade`")
    add(r, "--image", required=True, metavar="IMG", help="the image the instance is in")
    add(r, "--annotations", required=True, metavar="ANN.json", help="the annotation file holding the instance")
    add(r, "--id", required=True, type=int, metavar="ID", help="the instance's annotation id")
    add(r, "--mask", required=True, metavar="MASK.png", help="the new full mask: a PNG of the image's size, nonzero = object")
    add(r, "--out", required=True, help="the composited image (PNG; never one of the inputs)")
    add(r, "--device", default="auto", metavar="DEVICE", help=HELP["device"])

    d = sub.add_parser("edit", parents=[common], help="remove instances from an image: complete what they hid "
                                                     "(Amodal-VAE) and inpaint it (partial convolutions)")
    add(d, "--image", required=True, metavar="IMG", help="the image (PNG, JPEG...) the annotations describe")
    add(d, "--annotations", required=True, metavar="ANN.json", help="its instances: COCO (visible masks suffice), KINS or COCOA; "
                                                "the image is found by file name (or is the file's only one)")
    add(d, "--remove", required=True, metavar="ID[,ID...]", help="annotation ids to remove, comma-separated")
    add(d, "--out", required=True, help="the edited image (.png, .jpg; never one of the inputs)")
    add(d, "--masks-out", help="also write the remaining instances with their new masks (COCO JSON)")
    add(d, "--runs", metavar="DIR", help="a folder of trained run folders named <model>-* (default: "
                                         "results/runs/<profile>, the notebooks' runs)")
    add(d, "--vae-checkpoint", metavar="RUN_DIR", help="Amodal-VAE run folder (default: the one amodal-vae-* in --runs)")
    add(d, "--background-checkpoint", metavar="RUN_DIR", help="background inpainter's run folder (default: the one "
                                           "inpaint-background-* in --runs)")
    add(d, "--instance-checkpoint", metavar="RUN_DIR", help="instance inpainter's run folder (default: the one inpaint-instance-* "
                                         "in --runs)")
    add(d, "--profile", choices=PROFILE_NAMES, help=HELP["profile"] + "; sets whose runs --runs defaults to, and "
                                                                      "the dilation")
    add(d, "--dilate", type=int, metavar="PX", help="grow the removed masks by this many pixels, 0 to 64 (default: the profile's)")
    add(d, "--threshold", type=float, metavar="T", help="Amodal-VAE's " + HELP["threshold"] + " (default: the largest validation "
                                                                     "invisible mIoU of its run's threshold_sweep.csv, "
                                                                     "else its threshold.json)")
    add(d, "--device", default="auto", metavar="DEVICE", help=HELP["device"])
