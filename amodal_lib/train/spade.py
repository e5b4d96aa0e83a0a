"""Training the SPADE renderer (:mod:`amodal_lib.models.spade`) on the shared engine.

Data
    The **unoccluded** instances of the training file (touching neither another instance nor the
    border, judged from visible masks only: :meth:`AnnotationSet.modal_view`; their visible mask
    is their full mask), each in its square crop (:func:`amodal_lib.predict.spade.instance_crops`):
    the RGB crop and the full mask, cropped once into memory as uint8 (:func:`training_tensors`).
    Instances whose visible box's longer side is under ``min_side`` pixels are left out. Each
    step flips half the batch left-right (image and mask together).
Losses (GauGAN's, :func:`amodal_lib.models.spade.phase_losses`)
    Generator phase: the appearance code is sampled from the encoder's posterior of the real
    object; the generator draws it in the real mask; the fake is the rendering composited over
    neutral grey through its alpha, the real the object over grey. Loss: hinge GAN
    + ``lambda_feat`` discriminator feature matching + ``lambda_kl`` KL of the code
    + ``lambda_vgg`` VGG19 perceptual (only with ``vgg_weights``, a local file; default
    ``$AMODAL_VGG19_WEIGHTS``) + two terms of ours: ``lambda_l1`` L1 between fake and real, and
    ``lambda_alpha`` binary cross-entropy of the alpha against the mask (the silhouette).
    Discriminator phase: hinge loss on the real pair and the generator phase's fake (detached).
Optimisers
    GauGAN's two-time-scale Adam (beta1 0, beta2 0.9; generator and encoder lr 1e-4,
    discriminator 4e-4), one per phase on the engine (:class:`~amodal_lib.train.engine.Trainer`
    with a dict of optimisers), both decayed linearly to 0 over the steps after ``decay_from`` of
    the run (GauGAN's ``niter_decay``). The run length is ``steps``, else ``epochs`` over the
    training crops.
Validation
    Every ``eval_every`` steps, on up to ``eval_instances`` unoccluded instances of the validation
    file: the reconstruction from the real mask (L1 on the object's pixels in grey levels, PSNR)
    and the silhouette IoU of the alpha with the mask. The run keeps its last weights.

``train_spade`` trains (its cost in ``spade.timing.json``: :mod:`amodal_lib.train.timing`); ``load_model`` loads.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Optional

import torch

from ..data import as_annotations
from ..data.records import AnnotationSet
from ..errors import DataError
from ..models.spade import LOSS_WEIGHTS, SpadeRenderer, VGGLoss, phase_losses, silhouette_iou  # noqa: F401 (public here too)
from ..predict.spade import instance_crops, render_crops
from ..profiles import get_profile
from . import engine, runs, timing

CHECKPOINT_NAME = "spade"
NETWORK_KEYS = ("crop", "ngf", "ndf", "z_dim", "start", "max_mult", "spade_hidden", "norm", "enc_ndf", "d_layers",
                "num_d")

# The published GauGAN settings at the paper's 256 px; a profile's "spade" section overrides any.
DEFAULTS = {
    "crop": 256, "pad": 1.25, "ngf": 64, "ndf": 64, "enc_ndf": 64, "z_dim": 256, "start": 8, "max_mult": 16,
    "spade_hidden": 128, "norm": "batch", "d_layers": 4, "num_d": 2,
    "batch_size": 16, "epochs": 200, "steps": None, "decay_from": 0.5,
    "lr_g": 1e-4, "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.9,
    **LOSS_WEIGHTS,
    "vgg_weights": None, "flip": True, "min_side": 8,
    "checkpoint_every": 1000, "log_every": 25, "eval_every": 1000, "eval_instances": 200,
    "threads": None,   # torch CPU threads while training (None: torch's choice)
}


def settings(profile: Optional[str] = None, **overrides) -> dict:
    """The renderer's settings for a profile: :data:`DEFAULTS`, the profile's "spade" keys, then
    the ``overrides`` that are not None (``vgg_weights`` defaults to ``$AMODAL_VGG19_WEIGHTS``)."""
    cfg = dict(DEFAULTS)
    cfg.update(get_profile(profile).get("spade", {}))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if cfg.get("vgg_weights") is None and os.environ.get("AMODAL_VGG19_WEIGHTS"):
        cfg["vgg_weights"] = os.environ["AMODAL_VGG19_WEIGHTS"]
    return cfg


# --------------------------------------------------------------------------- data
def whole_instances(ann: AnnotationSet, min_side: float = 8) -> list:
    """The unoccluded instances of ``ann``'s modal view (no amodal label is read) whose visible
    box's longer side is at least ``min_side`` pixels."""
    return [i for i in ann.modal_view().instances if i.is_unoccluded and max(i.visible_box[2:]) >= min_side]


def pick(instances: list, max_instances: Optional[int], seed: int = 0) -> list:
    """Up to ``max_instances`` of ``instances`` (a seeded draw, kept in file order); all when None."""
    if not max_instances or len(instances) <= max_instances:
        return list(instances)
    import numpy as np
    keep = np.sort(np.random.default_rng(seed).choice(len(instances), int(max_instances), replace=False))
    return [instances[k] for k in keep]


def training_tensors(ann: AnnotationSet, size: int, pad: float, min_side: float = 8) -> dict:
    """{"rgb": (N, 3, S, S) uint8, "mask": (N, S, S) uint8, "cat": (N,) int64} of the whole
    instances (:func:`whole_instances`), cropped once."""
    insts = whole_instances(ann, min_side)
    if not insts:
        raise DataError(f"{ann.path}: no unoccluded instance of at least {min_side} px to train the renderer on")
    rgb, masks, _ = instance_crops(ann, insts, size, pad)
    return {"rgb": (rgb * 255).round().to(torch.uint8), "mask": masks.to(torch.uint8),
            "cat": torch.tensor([i.category_id for i in insts], dtype=torch.int64)}


def prepare(batch: dict, flip: bool = False) -> dict:
    """A batch as the networks take it: RGB in [-1, 1], the mask (N, 1, S, S); with ``flip`` half
    of it mirrored left-right (image and mask together; global RNG)."""
    rgb = batch["rgb"].float() / 127.5 - 1
    m = batch["mask"].float()[:, None]
    if flip:
        f = (torch.rand(len(rgb), device=rgb.device) < 0.5)[:, None, None, None]
        rgb, m = torch.where(f, rgb.flip(-1), rgb), torch.where(f, m.flip(-1), m)
    return {"rgb": rgb, "mask": m}


def _step_fn(cfg: dict, vgg: Optional[VGGLoss]):
    weights = {k: float(cfg[k]) for k in ("lambda_feat", "lambda_vgg", "lambda_kl", "lambda_l1", "lambda_alpha")}
    held: dict = {}

    def step(model, batch, step, phase):
        if phase == "g":
            held["batch"] = prepare(batch, bool(cfg["flip"]))
            out = model(held["batch"], "g", weights=weights, vgg=vgg)
            held["fake"] = out.pop("fake")
            return out
        return model(held.pop("batch"), "d", fake=held.pop("fake"))
    return step


# --------------------------------------------------------------------------- validation
def reconstruction_scores(rgb: torch.Tensor, alpha: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> dict:
    """Per-instance scores of renderings (RGB (N, 3, S, S) and alpha (N, S, S) in [0, 1]) against
    the real objects (RGB in [0, 1], masks (N, S, S)): both composited over neutral grey, the
    mean absolute error on the object's pixels in grey levels (``l1``), PSNR over the crop in dB
    (``psnr``), and the IoU of alpha > 0.5 with the mask (``silhouette_iou``)."""
    m = mask.float()[:, None]
    fake = 0.5 + (rgb - 0.5) * alpha[:, None]
    true = 0.5 + (real - 0.5) * m
    err = (fake - true).abs()
    l1 = 255 * (err * m).flatten(1).sum(1) / (3 * m.flatten(1).sum(1)).clamp_min(1)
    mse = (err ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return {"l1": l1, "psnr": 10 * torch.log10(1 / mse),
            "silhouette_iou": silhouette_iou(alpha > 0.5, mask > 0.5)}


def _eval_fn(val: AnnotationSet, cfg: dict):
    insts = pick(whole_instances(val, cfg["min_side"]), cfg.get("eval_instances"), 0)
    if not insts:
        return None
    rgb, masks, _ = instance_crops(val, insts, int(cfg["crop"]), float(cfg["pad"]))

    def evaluate(model, step):
        out, alpha = render_crops(model, masks, rgb, masks)
        s = reconstruction_scores(out, alpha, rgb, masks)
        return {f"val_{k}": float(v.mean()) for k, v in s.items()}
    return evaluate


# --------------------------------------------------------------------------- training
def build_model(cfg: dict) -> SpadeRenderer:
    model = SpadeRenderer(**{k: cfg[k] for k in NETWORK_KEYS})
    model.config["pad"] = float(cfg["pad"])
    return model


def train_spade(annotations, out_dir, profile: Optional[str] = None, seed: int = 0, device="auto",
                steps: Optional[int] = None, resume: bool = True, progress: bool = True,
                stop_after: Optional[int] = None, val_annotations=None, **overrides) -> SpadeRenderer:
    """Train the renderer on the unoccluded instances of ``annotations`` (a path or an
    :class:`AnnotationSet` with its images) into ``out_dir/spade.pt``; returns the model (eval
    mode, with ``history``). ``val_annotations``: validation metrics in the history. ``steps``
    overrides the profile's run length, ``overrides`` any other setting of :data:`DEFAULTS`;
    ``stop_after`` stops after that step without saving (a simulated kill, for tests). The CPU and
    wall seconds of cropping and training are added to ``out_dir/spade.timing.json``."""
    cfg = settings(profile, steps=steps, **overrides)
    engine.seed_everything(seed)
    dist = engine.setup_distributed(device)
    ann = as_annotations(annotations)
    clock = timing.Stopwatch()
    data = training_tensors(ann, int(cfg["crop"]), float(cfg["pad"]), float(cfg["min_side"]))
    prep = clock.elapsed()
    n = len(data["rgb"])
    total = int(cfg["steps"]) if cfg.get("steps") else max(1, math.ceil(float(cfg["epochs"]) * n / int(cfg["batch_size"])))
    cfg["steps"] = total
    model = build_model(cfg)
    vgg = VGGLoss(cfg["vgg_weights"]).to(dist.device) if cfg.get("vgg_weights") else None
    betas = (float(cfg["beta1"]), float(cfg["beta2"]))
    opts = {"g": lambda m: torch.optim.Adam([*m.generator.parameters(), *m.encoder.parameters()], cfg["lr_g"],
                                            betas=betas),
            "d": lambda m: torch.optim.Adam(m.discriminator.parameters(), cfg["lr_d"], betas=betas)}
    eval_fn = _eval_fn(as_annotations(val_annotations), cfg) if val_annotations is not None else None
    trainer = engine.Trainer(
        model, opts, data, batch_size=cfg["batch_size"], steps=total, run_dir=out_dir, name=CHECKPOINT_NAME,
        stage="spade", seed=seed, step_fn=_step_fn(cfg, vgg), eval_fn=eval_fn,
        eval_every=cfg["eval_every"] if eval_fn else 0, checkpoint_every=cfg["checkpoint_every"],
        log_every=cfg["log_every"], dist=dist, resume=resume, progress=progress,
        ddp_kwargs={"find_unused_parameters": True},
        config={**cfg, "profile": profile, "seed": seed, "train_instances": n, "annotations": str(ann.path)},
        extra={"model": model.config, "method": "spade"}, prepared=prep)
    decay = lambda s: min(1.0, max(0.0, (total - s) / max(total * (1 - float(cfg["decay_from"])), 1)))  # noqa: E731
    trainer.scheduler = {k: torch.optim.lr_scheduler.LambdaLR(o, decay) for k, o in trainer.optimizers.items()}
    if progress and dist.is_main:
        print(f"SPADE: {n} unoccluded training instances at {cfg['crop']}x{cfg['crop']} (cropped in "
              f"{prep['wall_s']:.1f} s), {total} steps of batch {cfg['batch_size']}, VGG term "
              f"{'on' if vgg is not None else 'off (no local weights)'}, device {dist.device}", file=sys.stderr)
    trainer.fit(until=stop_after, threads=cfg.get("threads"))
    model = engine.unwrap(trainer.raw_model).eval()
    model.history = trainer.history
    model.checkpoint = trainer.checkpoint_path
    return model


# --------------------------------------------------------------------------- trained runs
def checkpoint_file(run_dir_or_file) -> Path:
    """The checkpoint of a run folder (``spade.pt`` in it), or the file itself."""
    return runs.checkpoint_file(run_dir_or_file, CHECKPOINT_NAME)


def is_trained(run_dir) -> bool:
    """Has the run in ``run_dir`` finished all its steps?"""
    return runs.is_trained(run_dir, CHECKPOINT_NAME)


def load_model(run_dir_or_file, device="cpu") -> SpadeRenderer:
    """The trained renderer of a run folder (its ``spade.pt``) or a checkpoint file, in eval mode."""
    path = checkpoint_file(run_dir_or_file)
    ck, spec = runs.read(path, "SPADE renderer", "amodal train --model spade", lambda extra: extra.get("method") == "spade")

    def build():
        model = SpadeRenderer(**{k: spec[k] for k in NETWORK_KEYS})
        model.config["pad"] = float(spec.get("pad", DEFAULTS["pad"]))
        return model
    model = runs.load_weights(path, "SPADE", ck, build)
    model.history = ck.get("history", [])
    model.done = bool(ck.get("done"))
    model.checkpoint = path
    return model.to(engine.resolve_device(device)).eval()


def load_history(run_dir) -> list:
    return engine.load_history(run_dir, CHECKPOINT_NAME)
