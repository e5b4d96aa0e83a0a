"""Training the ResNet-PSP segmentation network of supplementary Table 1 on the shared engine.

Supervised, unlike the completion models: it learns each instance's *visible* mask from the RGB
crop of its ground-truth box (``docs/design.md``, "The segmentation-input experiment"). It reads
no amodal mask; with ``box="amodal"`` (the default, the paper's GT box on KINS) it reads the
amodal *box* that frames the crop.

Data
    Every training instance with at least ``min_pixels`` visible pixels: the RGB crop of its box
    grown ``context`` times (:func:`amodal_lib.predict.psp.crop_boxes`) at ``crop`` x ``crop``,
    and its visible mask in the same frame, both cut once into memory (uint8)
    (:func:`training_tensors`). Horizontal flips at random.
Loss and optimiser
    Per-pixel binary cross-entropy. Adam or SGD with momentum (``optimizer``), the learning rate
    decayed by PSPNet's "poly" rule, ``(1 - step / steps) ** 0.9``.
Validation and the checkpoint kept
    Every ``eval_every`` steps, the pooled IoU of the thresholded crops against the visible
    masks of up to ``eval_instances`` validation instances (``val_annotations``, else 10% of
    the training images held out, seed 0); the run ends with the weights of the best one
    (the engine's ``select``).
The loop, checkpoints (``RUN_DIR/psp.pt``), resume, device choice, mixed precision on CUDA and
torchrun/DDP are the engine's (:mod:`amodal_lib.train.engine`). A local weights file of the
backbone (``weights``) starts it from those weights; nothing is ever downloaded.

``train_psp`` trains; ``load_model`` loads a trained run; ``settings`` gives a profile's values.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import as_annotations
from ..data.images import crop_images
from ..data.records import AnnotationSet, group_by_image, hold_out_images
from ..errors import DataError
from ..models.psp import ResNetPSP, build
from ..predict.psp import DEFAULT_BOX, DEFAULT_CONTEXT, DEFAULT_THRESHOLD, crop_boxes, target_crops
from ..profiles import get_profile
from . import engine, runs, timing

CHECKPOINT_NAME = "psp"
MODEL_KEYS = ("backbone", "stages", "output_stride", "bins", "head_channels", "dropout", "crop", "box", "context")

# The method's own settings (PSPNet's: ResNet-50, output stride 8, bins 1-2-3-6, SGD lr 0.01 with
# the poly rule, weight decay 1e-4); a profile's "psp" section overrides any of them.
DEFAULTS = {
    "backbone": "resnet50", "stages": 4, "output_stride": 8, "bins": [1, 2, 3, 6], "head_channels": 512,
    "dropout": 0.1, "crop": 128, "box": DEFAULT_BOX, "context": DEFAULT_CONTEXT,
    "batch_size": 16, "steps": 20000, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
    "poly_power": 0.9, "flip": True, "min_pixels": 4, "threshold": DEFAULT_THRESHOLD,
    "checkpoint_every": 1000, "log_every": 25, "eval_every": 1000, "eval_instances": 1000, "val_fraction": 0.1,
    "threads": None,   # torch CPU threads while training (None: torch's choice)
    "weights": None,   # a local weights file of the backbone (None: random initialisation)
}


def settings(profile: Optional[str] = None, **overrides) -> dict:
    """The ResNet-PSP settings of a profile (``DEFAULTS`` updated by the profile's "psp" keys,
    then by the ``overrides`` that are not None)."""
    cfg = dict(DEFAULTS)
    cfg.update(get_profile(profile).get("psp", {}))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


# --------------------------------------------------------------------------- data
def training_tensors(ann: AnnotationSet, cfg: dict, instances=None) -> dict:
    """{"image": (N, 3, S, S) uint8, "mask": (N, S, S) uint8}: the RGB crops and visible-mask
    targets of ``instances`` (default: all of ``ann``) with at least ``min_pixels`` visible
    pixels, each image read once (a missing or unreadable image is an error naming it)."""
    insts = [i for i in (ann.instances if instances is None else instances) if i.visible_area >= cfg["min_pixels"]]
    if not insts:
        raise DataError(f"{ann.path}: no instance with {cfg['min_pixels']} visible pixels or more to train on")
    frames = crop_boxes(insts, cfg["box"], cfg["context"])
    size = int(cfg["crop"])
    images = (crop_images(ann, insts, frames, size) * 255).round_().to(torch.uint8)
    return {"image": images, "mask": target_crops(insts, frames, size)}


def _step_fn(cfg: dict):
    flip = bool(cfg["flip"])

    def step(model, batch, step):
        x, y = batch["image"].float() / 255.0, batch["mask"].float()
        if flip:
            f = torch.rand(len(x), device=x.device) < 0.5
            x = torch.where(f[:, None, None, None], x.flip(-1), x)
            y = torch.where(f[:, None, None], y.flip(-1), y)
        logits = model(x)[:, 0].float()
        loss = F.binary_cross_entropy_with_logits(logits, y)
        with torch.no_grad():
            p = logits > 0
            iou = (p & (y > 0.5)).sum() / (p | (y > 0.5)).sum().clamp(min=1)
        return {"loss": loss, "iou": iou.float()}
    return step


def _eval_fn(data: dict, cfg: dict, batch_size: int = 256):
    t = float(cfg["threshold"])

    def evaluate(model, step):
        dev = next(model.parameters()).device
        inter = union = 0.0
        for a in range(0, len(data["image"]), batch_size):
            x = data["image"][a:a + batch_size].to(dev).float() / 255.0
            p = torch.sigmoid(model(x)[:, 0].float()).cpu() >= t
            y = data["mask"][a:a + batch_size] > 0
            inter += float((p & y).sum())
            union += float((p | y).sum())
        return {"val_visible_iou": 100.0 * inter / max(union, 1.0)}
    return evaluate


def _validation_instances(val: AnnotationSet, n: Optional[int], seed: int) -> list:
    """Up to ``n`` instances of ``val``, whole images in a seeded order (all of them when None)."""
    if n is None or len(val) <= n:
        return list(val.instances)
    groups = group_by_image(val.instances)
    order = sorted(groups)
    np.random.default_rng(seed).shuffle(order)
    out: list = []
    for image_id in order:
        if len(out) >= n:
            break
        out.extend(groups[image_id])
    return out


# --------------------------------------------------------------------------- training
def train_psp(annotations, out_dir, profile: Optional[str] = None, seed: int = 0, device="auto",
              steps: Optional[int] = None, resume: bool = True, progress: bool = True,
              stop_after: Optional[int] = None, val_annotations=None, **overrides):
    """Train ResNet-PSP on ``annotations`` (a path or an AnnotationSet whose ``images_dir`` holds
    its images) into ``out_dir/psp.pt`` (module doc). ``steps`` overrides the profile's;
    ``overrides`` any other setting of :data:`DEFAULTS` (e.g. ``weights``, ``box``).
    ``val_annotations``: validation (selects the checkpoint kept); default 10% of the training
    images held out. ``stop_after`` stops after that step without saving (a simulated kill).
    Returns ``(model, history)``: the model unwrapped, on its device, in eval mode; the CPU and
    wall time of the training loop and of cutting the crops are added to ``out_dir/psp.timing.json``
    (:mod:`amodal_lib.train.timing`)."""
    cfg = settings(profile, steps=steps, **overrides)
    engine.seed_everything(seed)
    dist = engine.setup_distributed(device)
    ann = as_annotations(annotations)
    if val_annotations is not None:
        train_ann, val_ann = ann, as_annotations(val_annotations)
        if val_ann.images_dir is None:
            val_ann.images_dir = ann.images_dir
        held = "the validation file"
    else:
        train_ann, val_ann = hold_out_images(ann, float(cfg["val_fraction"]), seed=0)
        held = f"{cfg['val_fraction']:.0%} of the training images, held out"
    clock = timing.Stopwatch()
    data = training_tensors(train_ann, cfg)
    val_data = training_tensors(val_ann, cfg, _validation_instances(val_ann, cfg["eval_instances"], seed))
    prep = clock.elapsed()
    model = build({k: cfg[k] for k in MODEL_KEYS}, cfg.get("weights"))
    if dist.enabled and dist.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    n_steps = int(cfg["steps"])

    def optimizer(m):
        if cfg["optimizer"] == "adam":
            return torch.optim.Adam(m.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        return torch.optim.SGD(m.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    trainer = engine.Trainer(
        model, optimizer, data, batch_size=cfg["batch_size"], steps=n_steps, run_dir=out_dir,
        name=CHECKPOINT_NAME, stage="resnet-psp", seed=seed, step_fn=_step_fn(cfg),
        eval_fn=_eval_fn(val_data, cfg), eval_every=cfg["eval_every"], checkpoint_every=cfg["checkpoint_every"],
        log_every=cfg["log_every"], select="val_visible_iou", select_start=False,
        config={**cfg, "profile": profile, "seed": seed, "train_instances": int(len(data["image"])),
                "val_instances": int(len(val_data["image"])), "validation": held, "annotations": str(ann.path)},
        extra={"model": model.spec(), "method": "resnet-psp"}, dist=dist, resume=resume, progress=progress,
        prepared=prep)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(
        trainer.optimizer, lambda s: max(1.0 - s / n_steps, 0.0) ** float(cfg["poly_power"]))
    if progress and dist.is_main:
        print(f"ResNet-PSP: {len(data['image'])} training crops at {cfg['crop']}x{cfg['crop']} by the {cfg['box']} box "
              f"x {cfg['context']:g} (cut in {prep['wall_s']:.1f} s), {cfg['backbone']} ({cfg['stages']} stages, output stride "
              f"{cfg['output_stride']}), {n_steps} steps, validation on {held}, device {dist.device}", file=sys.stderr)
    history = trainer.fit(until=stop_after, threads=cfg.get("threads"))
    model = engine.unwrap(trainer.raw_model)
    model.history, model.selected = history, trainer.selected      # as load_model gives them
    model.done, model.checkpoint = trainer.done, trainer.checkpoint_path
    model.eval()
    return model, history


# --------------------------------------------------------------------------- trained runs
def checkpoint_file(run_dir_or_file) -> Path:
    """The checkpoint of a run folder (``psp.pt`` in it), or the file itself."""
    return runs.checkpoint_file(run_dir_or_file, CHECKPOINT_NAME)


def is_trained(run_dir) -> bool:
    """Has the run in ``run_dir`` finished all its steps?"""
    return runs.is_trained(run_dir, CHECKPOINT_NAME)


def load_model(run_dir_or_file, device="cpu") -> ResNetPSP:
    """The trained model of a run folder (its ``psp.pt``) or a checkpoint file, in eval mode, with
    its ``history``, ``selected`` (the validation step kept) and ``checkpoint``."""
    path = checkpoint_file(run_dir_or_file)
    ck, spec = runs.read(path, "ResNet-PSP", "amodal train --model resnet-psp",
                         lambda extra: extra.get("method") == "resnet-psp")
    model = runs.load_weights(path, "ResNet-PSP", ck, lambda: ResNetPSP(**spec))
    model.history, model.selected = ck.get("history", []), ck.get("selected")
    model.done, model.checkpoint = bool(ck.get("done")), path
    return model.to(engine.resolve_device(device)).eval()


def load_history(run_dir) -> list:
    """The training history (one dict per logged step or evaluation) of a run folder."""
    return engine.load_history(run_dir, CHECKPOINT_NAME)
