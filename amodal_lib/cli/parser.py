"""The ``amodal`` command line's arguments, every command's: built from the families' names alone
(:data:`amodal_lib.registry.FAMILIES`), so that parsing, ``--help`` and argparse's own errors never
wait for torch."""
from __future__ import annotations

import argparse

from ..profiles import PROFILE_NAMES
from ..registry import BOXES, METHODS, SEGMENTERS, TRAINABLE

MAX_SAMPLES = 100  # posterior samples per instance for `complete --samples`
DEBUG_HELP = "show the traceback of an error in the input too"


def build() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)  # --debug also after the command (not reset there)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    p = argparse.ArgumentParser(prog="amodal", description="Amodal-VAE reproduction: data, training, completion, evaluation")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    _data_and_training(sub, common)
    _completion(sub, common)
    _images(sub, common)
    return p


# --------------------------------------------------------------------------- synth, train
def _data_and_training(sub, common) -> None:
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
                   help="start over: the folder's earlier run (its checkpoints, histories, threshold, run.json) is "
                        "removed first, also when it was made with other settings; with --stage K the earlier "
                        "stages are kept")
    # a family's own options (registry.Family.options)
    t.add_argument("--crop-box", choices=("amodal", "visible"),
                   help="resnet-psp: the ground-truth box its crops are cut by (default: the profile's, amodal: "
                        "the paper's KINS GT box; visible for files without amodal labels)")
    t.add_argument("--weights", help="resnet-psp: a local weights file of its torchvision ResNet backbone "
                                     "(default: random initialisation; nothing is downloaded)")
    t.add_argument("--vgg-weights", help="inpaint-*: a local VGG-16 weights file (torchvision's vgg16 "
                                         "state dict) for Liu et al.'s perceptual and style losses "
                                         "(default: fixed hand-made features; nothing is downloaded)")


# --------------------------------------------------------------------------- complete, evaluate, segment
def _completion(sub, common) -> None:
    c = sub.add_parser("complete", parents=[common], help="predict one amodal mask per annotation (COCO results JSON)")
    c.add_argument("--method", required=True, choices=METHODS)
    c.add_argument("--annotations", required=True)
    c.add_argument("--out", required=True, help="predictions JSON (never one of the inputs)")
    c.add_argument("--checkpoint", help="run folder or checkpoint file (learned methods)")
    c.add_argument("--box", choices=BOXES, default="predicted")
    c.add_argument("--frame", choices=("fit", "transformer"), default="fit",
                   help="amodal-vae: the full-object frame fitted to the known pixels around each instance "
                        "(default), or the paper's spatial transformer on the crop alone")
    c.add_argument("--threshold", type=float, help="binarisation threshold in (0, 1] (default: the method's)")
    c.add_argument("--samples", type=int, default=0,
                   help=f"posterior samples, 0 to {MAX_SAMPLES} (0: the posterior mode; amodal-vae only)")
    c.add_argument("--seed", type=int, default=0, help="random seed of the posterior samples (default 0)")
    c.add_argument("--device", default="auto")
    c.add_argument("--visible", help="COCO results JSON of visible masks (e.g. from `amodal segment`), "
                                     "one per annotation: completed instead of the file's visible masks, "
                                     "for the targets and for what surrounds them")

    e = sub.add_parser("evaluate", parents=[common], help="full and invisible mIoU, protocols A and B")
    e.add_argument("--annotations", required=True)
    e.add_argument("--predictions", required=True)
    e.add_argument("--out", help="metrics JSON (never one of the inputs)")
    e.add_argument("--allow-missing", action="store_true",
                   help="evaluate only the annotations that have a prediction")

    s = sub.add_parser("segment", help="predict every annotation's visible mask from the images (COCO results JSON)")
    s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    s.add_argument("--model", choices=SEGMENTERS, default=SEGMENTERS[0])
    s.add_argument("--checkpoint", required=True, help="run folder or checkpoint file of `amodal train --model resnet-psp`")
    s.add_argument("--annotations", required=True, help="the instances to segment (their boxes and images)")
    s.add_argument("--images", help="image folder of the annotations (default: 'images' beside the file)")
    s.add_argument("--out", required=True, help="visible masks, COCO results JSON with id = annotation id "
                                                "(never one of the inputs)")
    s.add_argument("--crop-box", choices=("amodal", "visible"), help="default: the box the network was trained with")
    s.add_argument("--threshold", type=float, help="binarisation threshold in (0, 1] (default 0.5)")
    s.add_argument("--device", default="auto")


# --------------------------------------------------------------------------- render, edit
def _images(sub, common) -> None:
    r = sub.add_parser("render", parents=[common], help="draw an instance in a new full mask with a trained SPADE "
                                                          "renderer and paste it into its image")
    r.add_argument("--checkpoint", required=True, help="run folder or checkpoint file of `amodal train --model spade`")
    r.add_argument("--image", required=True, help="the image the instance is in")
    r.add_argument("--annotations", required=True, help="the annotation file holding the instance")
    r.add_argument("--id", required=True, type=int, help="the instance's annotation id")
    r.add_argument("--mask", required=True, help="the new full mask: a PNG of the image's size, nonzero = object")
    r.add_argument("--out", required=True, help="the composited image (PNG; never one of the inputs)")
    r.add_argument("--device", default="auto")

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
    d.add_argument("--threshold", type=float, help="Amodal-VAE's threshold (default: the largest validation invisible "
                   "mIoU of its run's threshold_sweep.csv, else its threshold.json)")
    d.add_argument("--device", default="auto")
