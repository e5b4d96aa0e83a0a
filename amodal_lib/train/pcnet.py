"""Training Deocclusion's PCNet-M (Zhan et al., CVPR 2020) on the shared engine.

Self-supervised like Amodal-VAE: training reads only visible (modal) masks
(:meth:`AnnotationSet.modal_view`), never an amodal label. The settings follow the public
Deocclusion code (``docs/design.md``, "PCNet-M"):

Data
    Each training instance's visible mask in its square crop (:func:`amodal_lib.predict.pcnet.square_boxes`)
    at the profile's ``crop``, cropped once into memory (:func:`training_tensors`).
Erasers
    Another training instance's visible mask, randomly flipped, scaled and shifted
    (``grid_sample``, batched), kept only if it covers 0.1%-90% of the target (``cover``; up to
    ``tries`` candidates per sample are drawn at once and the first that fits is used)
    (:func:`place_erasers`). With probability ``front_prob`` = 0.8 the eraser is in front
    (input = target minus eraser), otherwise behind (input = the uncut target; the eraser loses
    the target's pixels) (:func:`make_inputs`).
Loss and optimiser
    Pixel-wise cross-entropy against the uncut visible mask, 5x inside the eraser
    (``eraser_weight``), averaged over pixels; SGD (lr 1e-3, momentum 0.9, weight decay 1e-4),
    batch 32. The loop, checkpoints (``RUN_DIR/pcnet.pt``), resume, device choice and
    torchrun/DDP are the engine's (:mod:`amodal_lib.train.engine`).

``train_pcnet`` trains; ``load_model`` loads a trained run; ``settings`` gives a profile's values.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import metrics
from ..data import as_annotations
from ..data.crops import crop_masks
from ..data.records import AnnotationSet, subsample
from ..errors import DataError
from ..models.pcnet import PCNetM
from ..predict.pcnet import DEFAULT_THRESHOLD, complete_instances, square_boxes
from ..profiles import get_profile
from . import engine, runs, timing

CHECKPOINT_NAME = "pcnet"

# Settings of the method itself (the public Deocclusion code); a profile's "pcnet" section
# overrides any of them (and sets width / crop / batch_size / steps).
DEFAULTS = {
    "width": 32, "crop": 256, "batch_size": 32, "steps": 30000,
    "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4,
    "front_prob": 0.8, "eraser_weight": 5.0, "cover": [0.001, 0.9],
    "eraser_scale": [0.7, 1.4], "eraser_shift": 0.6, "tries": 8, "flip": True,
    "min_pixels": 4, "checkpoint_every": 1000, "log_every": 25, "threshold": DEFAULT_THRESHOLD,
    "eval_every": 500, "eval_instances": 500,
    "threads": None,  # torch CPU threads while training (None: torch's choice; 1 suits tiny smoke tensors)
}


def settings(profile: Optional[str] = None, **overrides) -> dict:
    """The PCNet-M settings of a profile (``DEFAULTS`` updated by the profile's "pcnet" keys,
    then by the ``overrides`` that are not None)."""
    cfg = dict(DEFAULTS)
    cfg.update(get_profile(profile).get("pcnet", {}))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


# --------------------------------------------------------------------------- data
def training_tensors(ann: AnnotationSet, size: int, max_category: Optional[int] = None,
                     min_pixels: int = 4) -> dict:
    """The training set, pre-cropped once: {"mask": (N, S, S) uint8, "cat": (N,) float}.

    Uses visible masks only (``ann`` should be a modal view). Instances whose crop holds fewer
    than ``min_pixels`` pixels are left out.
    """
    insts = list(ann.instances)
    if not insts:
        raise DataError(f"{ann.path}: no instances to train on")
    if max_category is None:
        max_category = max_category_of(ann)
    masks = (crop_masks(insts, "visible", square_boxes(insts), size) >= 0.5)
    keep = masks.flatten(1).sum(1) >= min_pixels
    if not bool(keep.any()):
        raise DataError(f"{ann.path}: every instance is too small to train on at crop {size}")
    cats = torch.tensor([i.category_id for i in insts], dtype=torch.float32) / max(max_category, 1)
    return {"mask": masks[keep].to(torch.uint8), "cat": cats[keep].clamp(0, 1)}


def max_category_of(ann: AnnotationSet) -> int:
    """The largest category id of a file (its categories table and its instances)."""
    ids = [int(k) for k in ann.categories] + [i.category_id for i in ann.instances]
    return max(max(ids), 1) if ids else 1


# --------------------------------------------------------------------------- erasers
def place_erasers(targets: torch.Tensor, pool: torch.Tensor, cover=(0.001, 0.9), scale=(0.7, 1.4),
                  shift: float = 0.6, tries: int = 8, flip: bool = True, generator=None):
    """Random erasers for a batch of target masks, all at once.

    ``targets`` (B, S, S) in {0, 1}; ``pool`` (P, S, S) masks to draw erasers from. Each of
    ``tries`` candidates per target is a pool mask, flipped (p = 0.5), scaled by a
    log-uniform factor in ``scale`` and shifted by up to ``shift`` of the side (one
    ``grid_sample`` call); the first candidate covering ``cover[0] <= |t & e| / |t| < cover[1]``
    of the target is kept. Returns ``(eraser (B, S, S) float, coverage (B,), ok (B,) bool)``;
    where no candidate fits (rare; e.g. a 1-pixel target), the eraser is empty and ``ok`` False.
    """
    B, S = targets.shape[0], targets.shape[-1]
    dev = targets.device
    n = B * tries

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=dev) if generator is not None else \
            torch.rand(*shape, device=dev)
    idx = (rand(n) * len(pool)).long().clamp_(max=len(pool) - 1)
    src = pool[idx].float().unsqueeze(1)
    lo, hi = math.log(scale[0]), math.log(scale[1])
    s = torch.exp(lo + (hi - lo) * rand(n))
    t = (rand(n, 2) * 2 - 1) * (2 * shift)  # normalised coordinates span 2 per side
    sx = torch.where(rand(n) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=dev)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = sx / s
    theta[:, 0, 2] = -sx * t[:, 0] / s
    theta[:, 1, 1] = 1 / s
    theta[:, 1, 2] = -t[:, 1] / s
    grid = F.affine_grid(theta, [n, 1, S, S], align_corners=False)
    cand = (F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0] >= 0.5)
    cand = cand.view(B, tries, S, S)
    tgt = targets.bool()
    area = tgt.flatten(1).sum(1).clamp(min=1)
    inter = (cand & tgt[:, None]).flatten(2).sum(2)
    cov = inter.float() / area[:, None].float()
    fits = (cov >= cover[0]) & (cov < cover[1])
    first = fits.float().argmax(1)  # the first fitting candidate (0 when none fits)
    ok = fits.any(1)
    ar = torch.arange(B, device=dev)
    eraser = cand[ar, first].float() * ok[:, None, None]
    return eraser, cov[ar, first] * ok, ok


def make_inputs(target: torch.Tensor, cat: torch.Tensor, eraser: torch.Tensor, front: torch.Tensor):
    """The network input (B, 2, S, S) and the eraser actually shown, for front/behind erasers."""
    f = front[:, None, None]
    erased = torch.where(f, target * (1 - eraser), target)
    shown = torch.where(f, eraser, eraser * (1 - target))
    return torch.stack([erased * cat[:, None, None], shown], 1), shown


def _step_fn(cfg: dict, pool_holder: dict):
    cover, scale = tuple(cfg["cover"]), tuple(cfg["eraser_scale"])
    wgt = float(cfg["eraser_weight"])

    def step(model, batch, step):
        tgt = batch["mask"].float()
        dev = tgt.device
        B = tgt.shape[0]
        if cfg["flip"]:
            flip = torch.rand(B, device=dev) < 0.5
            tgt = torch.where(flip[:, None, None], tgt.flip(-1), tgt)
        eraser, cov, ok = place_erasers(tgt, pool_holder["pool"], cover, scale, cfg["eraser_shift"], cfg["tries"])
        front = (torch.rand(B, device=dev) < cfg["front_prob"]) & ok
        x, shown = make_inputs(tgt, batch["cat"], eraser, front)
        logits = model(x)
        ce = F.cross_entropy(logits.float(), tgt.long(), reduction="none")
        w = 1.0 + (wgt - 1.0) * shown
        loss = (ce * w).mean()
        with torch.no_grad():
            hidden = (tgt * shown * front[:, None, None]).sum()
            pred = logits.argmax(1).float()
            rec = (pred * tgt * shown * front[:, None, None]).sum() / hidden.clamp(min=1)
        return {"loss": loss, "eraser_ok": ok.float().mean(), "coverage": cov.mean(), "hidden_recall": rec}
    return step


# --------------------------------------------------------------------------- training
def train_pcnet(annotations, out_dir, profile: Optional[str] = None, seed: int = 0, device="auto",
                steps: Optional[int] = None, resume: bool = True, progress: bool = True,
                stop_after: Optional[int] = None, val_annotations=None, **overrides):
    """Train PCNet-M on the visible masks of ``annotations`` into ``out_dir/pcnet.pt``.

    ``annotations``: a path or an :class:`AnnotationSet`; only its :meth:`~AnnotationSet.modal_view`
    is used. ``steps`` overrides the profile's; ``overrides`` any other setting of
    :data:`DEFAULTS`. With ``resume`` a run continues from its checkpoint (a finished one is
    returned at once). ``stop_after`` stops after that step without saving (a simulated kill,
    for tests). ``val_annotations`` (with amodal masks; evaluation only, never trained on): every
    ``eval_every`` steps the full / invisible mIoU (protocol A) of up to ``eval_instances`` of its
    instances (whole images, :func:`amodal_lib.data.records.subsample`) enter the history.
    Returns ``(model, history)``: the model unwrapped, on its device, in eval mode.
    """
    cfg = settings(profile, steps=steps, **overrides)
    engine.seed_everything(seed)
    dist = engine.setup_distributed(device)
    ann = as_annotations(annotations).modal_view()  # no amodal label can reach training
    max_cat = max_category_of(ann)
    clock = timing.Stopwatch()
    data = training_tensors(ann, int(cfg["crop"]), max_cat, int(cfg["min_pixels"]))
    prep = clock.elapsed()
    model = PCNetM(cfg["width"], cfg["crop"], max_cat)
    if dist.enabled and dist.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(memory_format=torch.channels_last)
    holder: dict = {}

    def optimizer(m):
        return torch.optim.SGD(m.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                               weight_decay=cfg["weight_decay"])
    eval_fn = _eval_fn(as_annotations(val_annotations), cfg, seed) if val_annotations is not None else None
    trainer = engine.Trainer(
        model, optimizer, data, batch_size=cfg["batch_size"], steps=cfg["steps"], run_dir=out_dir,
        name=CHECKPOINT_NAME, stage="pcnet-m", seed=seed, step_fn=_step_fn(cfg, holder),
        eval_fn=eval_fn, eval_every=cfg["eval_every"] if eval_fn else 0,
        checkpoint_every=cfg["checkpoint_every"], log_every=cfg["log_every"],
        config={**cfg, "profile": profile, "seed": seed, "train_instances": int(len(data["mask"])),
                "annotations": str(ann.path)},
        extra={"model": model.spec(), "method": "pcnet-m"}, dist=dist, resume=resume, progress=progress,
        prepared=prep)
    holder["pool"] = trainer.data["mask"]
    if progress and dist.is_main:
        print(f"PCNet-M: {len(data['mask'])} training masks at {cfg['crop']}x{cfg['crop']} "
              f"(cropped in {prep['wall_s']:.1f} s), width {cfg['width']}, {cfg['steps']} steps, device {dist.device}",
              file=sys.stderr)
    history = trainer.fit(until=stop_after, threads=cfg.get("threads"))
    model = engine.unwrap(trainer.raw_model)
    model.eval()
    return model, history


def _eval_fn(val: AnnotationSet, cfg: dict, seed: int):
    if not val.has_amodal:
        raise DataError(f"{val.path}: validation needs amodal masks")
    sub = subsample(val, cfg.get("eval_instances"), seed)

    def evaluate(model, step):
        pred = complete_instances(model, val, sub.instances, threshold=cfg["threshold"])
        o = metrics.evaluate(sub, pred)["overall"]["A"]
        return {"val_full_miou": o["full"], "val_invisible_miou": o["invisible"] or 0.0}
    return evaluate


# --------------------------------------------------------------------------- trained runs
def checkpoint_file(run_dir_or_file) -> Path:
    """The checkpoint of a run folder (``pcnet.pt`` in it), or the file itself."""
    return runs.checkpoint_file(run_dir_or_file, CHECKPOINT_NAME)


def is_trained(run_dir) -> bool:
    """Has the run in ``run_dir`` finished all its steps?"""
    return runs.is_trained(run_dir, CHECKPOINT_NAME)


def load_model(run_dir_or_file, device="cpu") -> PCNetM:
    """The trained model of a run folder (its ``pcnet.pt``) or a checkpoint file, in eval mode."""
    path = checkpoint_file(run_dir_or_file)
    ck, spec = runs.read(path, "PCNet-M", "amodal train --model pcnet-m", lambda extra: extra.get("method") == "pcnet-m")
    model = runs.load_weights(path, "PCNet-M", ck, lambda: PCNetM(**spec))
    model.history = ck.get("history", [])
    model.done = bool(ck.get("done"))
    return model.to(memory_format=torch.channels_last).to(engine.resolve_device(device)).eval()


def load_history(run_dir) -> list:
    """The training history (one dict per logged step or evaluation) of a run folder."""
    return engine.load_history(run_dir, CHECKPOINT_NAME)
