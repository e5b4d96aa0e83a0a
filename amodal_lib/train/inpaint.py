"""Training the two partial-convolution inpainters of scene editing (supplementary 3.3) on the
shared engine. The network and its loss are :mod:`amodal_lib.models.inpaint`; how the
trained nets fill an image is :mod:`amodal_lib.predict.inpaint`; ``docs/design.md``, "Scene
editing", gives the decisions.

``background`` (registry name ``inpaint-background``)
    Random square crops (``crop`` pixels, at the image's own resolution) of the training images.
    Holes: 1 to ``masks_per_hole`` instance masks of the training set at their own size (times a
    log-uniform factor in ``scale``), flipped at random, placed anywhere in the crop, their union
    dilated by ``dilate`` pixels (drawn per sample; the paper's 5-25 px at 256 px crops, scaled
    down with the crop in the shorter profiles) (:func:`background_holes`).
``instance`` (registry name ``inpaint-instance``)
    Each training instance in its square (PCNet-M's: side ``max(sqrt(3wh), 1.1w, 1.1h)`` about its
    visible box), resized to ``crop``; its visible pixels are the object whose appearance is
    known. Occlusion is simulated by placing another instance's mask onto it (flipped, scaled,
    shifted until it covers ``cover`` of the object: :func:`amodal_lib.train.pcnet.place_erasers`);
    the hole is the part of the object under it. With ``unknown="occluder"`` (every profile) the
    whole occluder is unknown, as the removed object is when an edit fills the object behind it,
    and the loss counts the object's pixels only; ``"hole"`` blanks the object's part alone. Input
    (:func:`amodal_lib.predict.inpaint.instance_inputs`): the crop with the unknown pixels blanked,
    the class label (category id / the largest id) in the hole, the object's mask (its known pixels
    and the hole), and the ``guides``, fills of the crop from the object's own known pixels
    (:func:`amodal_lib.predict.inpaint.base_fill`); every channel but the colour is known
    everywhere. At test time the hole is the invisible part of the object's completed full mask
    that the edit reveals.

No amodal label is read: holes and objects come from visible masks. Training selects, as the rest
of the study does, the checkpoint of its best validation (hole PSNR on the validation images with
holes made the same way, fixed by the seed). ``train_inpainter`` trains, ``load_model`` loads.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..data import as_annotations
from ..data.crops import crop_masks
from ..data.images import crop_images, read_image
from ..data.records import AnnotationSet
from ..errors import ArgumentError, CheckpointError, DataError
from ..models.inpaint import InpaintingLoss, PConvUNet, load_vgg16_features
from ..predict.inpaint import background_inputs, base_fill, instance_channels, instance_forward, instance_inputs
from ..predict.pcnet import square_boxes
from ..profiles import get_profile
from . import engine, runs, timing
from .pcnet import max_category_of, place_erasers

KINDS = ("background", "instance")
NAMES = {"inpaint-background": "background", "inpaint-instance": "instance"}   # registry name -> kind

# The method's own settings (the paper's scale); a profile's "inpaint" section overrides them.
DEFAULTS = {
    "background": {"width": 64, "depth": 7, "crop": 256, "batch_size": 8, "steps": 30000, "lr": 2e-4,
                   "images": None, "crops_per_image": 8, "masks_per_hole": 3, "scale": [0.7, 1.4],
                   "dilate": [5, 25], "val_images": 64},
    "instance": {"width": 64, "depth": 7, "crop": 256, "batch_size": 8, "steps": 30000, "lr": 2e-4,
                 "min_area": 64, "max_instances": None, "cover": [0.1, 0.7], "scale": [0.7, 1.4], "shift": 0.6,
                 "tries": 8, "val_instances": 128, "unknown": "occluder"},
}
COMMON = {"fill": "none", "guides": [], "checkpoint_every": 200, "log_every": 25, "eval_every": 200, "vgg_weights": None, "threads": None,
          "loss_weights": None}


def settings(kind: str, profile: Optional[str] = None, **overrides) -> dict:
    """The settings of inpainter ``kind`` in a profile: the method's defaults, the profile's
    ``inpaint.<kind>`` keys, then the ``overrides`` that are not None."""
    if kind not in KINDS:
        raise ArgumentError(f"unknown inpainter {kind!r}: use one of {', '.join(KINDS)}")
    cfg = {**COMMON, **DEFAULTS[kind]}
    cfg.update(get_profile(profile).get("inpaint", {}).get(kind, {}))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


def checkpoint_name(kind: str) -> str:
    return f"inpaint-{kind}"


# --------------------------------------------------------------------------- holes
def _dilate(mask: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) masks each dilated by its own number of pixels ``px`` (B,) (square element)."""
    out = mask.clone()
    cur = mask
    for d in range(1, int(px.max()) + 1 if len(px) else 1):
        cur = F.max_pool2d(cur, 3, 1, 1)
        sel = (px >= d).view(-1, 1, 1, 1)
        out = torch.where(sel, cur, out)
    return out


def place_masks(pool: torch.Tensor, n: int, scale=(0.7, 1.4), shift: float = 1.0, generator=None) -> torch.Tensor:
    """``n`` masks of ``pool`` (P, S, S) (each at its own size, centred), each flipped at random,
    scaled by a log-uniform factor in ``scale`` and moved by up to ``shift`` half-sides: (n, 1, S, S)."""
    S = pool.shape[-1]
    dev = pool.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=dev) if generator is not None else \
            torch.rand(*shape, device=dev)
    idx = (rand(n) * len(pool)).long().clamp_(max=len(pool) - 1)
    lo, hi = math.log(scale[0]), math.log(scale[1])
    s = torch.exp(lo + (hi - lo) * rand(n))
    t = (rand(n, 2) * 2 - 1) * shift
    sx = torch.where(rand(n) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sx / s, -sx * t[:, 0] / s
    theta[:, 1, 1], theta[:, 1, 2] = 1 / s, -t[:, 1] / s
    grid = F.affine_grid(theta, [n, 1, S, S], align_corners=False)
    return (F.grid_sample(pool[idx].float().unsqueeze(1), grid, align_corners=False) >= 0.5).float()


def background_holes(pool: torch.Tensor, batch: int, masks_per_hole: int = 3, scale=(0.7, 1.4),
                     dilate=(5, 25), generator=None) -> torch.Tensor:
    """(B, 1, S, S) holes for the background inpainter: the union of 1 to ``masks_per_hole``
    instance masks placed at random (:func:`place_masks`), dilated by a number of pixels drawn
    uniformly in ``dilate`` per sample. Never empty (the first mask is always placed; an empty
    draw, rare, gets a centred square)."""
    dev = pool.device
    k = max(int(masks_per_hole), 1)
    placed = place_masks(pool, batch * k, scale, 1.0, generator).view(batch, k, *pool.shape[-2:])
    r = torch.rand(batch, k, generator=generator, device=dev) if generator is not None else torch.rand(batch, k, device=dev)
    r[:, 0] = 0.0                                   # the first mask always, the others with p = 1/2
    hole = (placed * (r < 0.5).float()[..., None, None]).amax(1, keepdim=True)
    S = pool.shape[-1]
    empty = hole.flatten(1).sum(1) == 0
    if bool(empty.any()):
        a, b = S * 3 // 8, S * 5 // 8
        hole[empty, :, a:b, a:b] = 1.0
    lo, hi = int(dilate[0]), int(dilate[1])
    u = torch.rand(batch, generator=generator, device=dev) if generator is not None else torch.rand(batch, device=dev)
    px = (lo + u * (hi - lo + 1)).long().clamp_(lo, hi)
    return _dilate(hole, px)


def instance_holes(targets: torch.Tensor, pool: torch.Tensor, cover=(0.1, 0.7), scale=(0.7, 1.4), shift: float = 0.6,
                   tries: int = 8, generator=None, with_occluder: bool = False):
    """(B, 1, S, S) holes for the instance inpainter: the part of each object (``targets`` (B, S, S),
    its visible mask in its crop) under another instance's mask placed onto it so that it covers
    ``cover`` of the object (:func:`amodal_lib.train.pcnet.place_erasers`); where no placement fits,
    the object's left or right half (at random). ``with_occluder``: ``(hole, occluder)``, the
    occluder (B, 1, S, S) being the whole placed mask (the half crop where none fits)."""
    eraser, _, ok = place_erasers(targets, pool, tuple(cover), tuple(scale), shift, tries, generator=generator)
    if not bool(ok.all()):
        S = targets.shape[-1]
        half = torch.zeros_like(targets)
        half[..., : S // 2] = 1.0
        coin = torch.rand(len(targets), generator=generator, device=generator.device) if generator is not None \
            else torch.rand(len(targets), device=targets.device)   # ``generator``'s, so that a seeded set repeats
        half = torch.where((coin.to(targets.device) < 0.5)[:, None, None], half, half.flip(-1))
        eraser = torch.where(ok[:, None, None], eraser, half)
    hole = (eraser * targets).unsqueeze(1)
    return (hole, eraser.unsqueeze(1)) if with_occluder else hole


# --------------------------------------------------------------------------- training data
def mask_pool(ann: AnnotationSet, size: int, min_area: int = 16, max_masks: int = 4000, seed: int = 0) -> torch.Tensor:
    """(P, size, size) uint8: instance visible masks at their own pixel size, centred in a square
    of ``size`` pixels (a mask larger than 0.9 ``size`` is shrunk to fit): what holes are made of."""
    insts = [i for i in ann.instances if i.visible_area >= min_area]
    if not insts:
        raise DataError(f"{ann.path}: no instance mask of at least {min_area} pixels to make holes from")
    if len(insts) > max_masks:
        keep = np.sort(np.random.default_rng(seed).choice(len(insts), max_masks, replace=False))
        insts = [insts[k] for k in keep]
    b = torch.tensor([i.visible_box for i in insts], dtype=torch.float32)
    c = b[:, :2] + b[:, 2:] / 2
    side = torch.maximum(torch.full((len(insts),), float(size)), b[:, 2:].max(1).values / 0.9)
    boxes = torch.cat([c - side[:, None] / 2, c + side[:, None] / 2], 1)
    return (crop_masks(insts, "visible", boxes, size) >= 0.5).to(torch.uint8)


def background_crops(ann: AnnotationSet, size: int, per_image: int = 8, max_images: Optional[int] = None,
                     seed: int = 0) -> torch.Tensor:
    """(N, 3, size, size) uint8 random square crops of the images of ``ann`` (``per_image`` each,
    of up to ``max_images`` images drawn with ``seed``), at the images' own resolution."""
    ids = sorted(ann.images)
    rng = np.random.default_rng(seed)
    if max_images is not None and len(ids) > max_images:
        ids = sorted(rng.choice(ids, int(max_images), replace=False).tolist())
    if not ids:
        raise DataError(f"{ann.path}: no image to train the background inpainter on")
    out = []
    for image_id in ids:
        img = read_image(ann, image_id)
        H, W = img.shape[:2]
        if H < size or W < size:
            img = np.pad(img, ((0, max(size - H, 0)), (0, max(size - W, 0)), (0, 0)), mode="reflect")
            H, W = img.shape[:2]
        ys = rng.integers(0, H - size + 1, per_image)
        xs = rng.integers(0, W - size + 1, per_image)
        out += [img[y:y + size, x:x + size] for y, x in zip(ys, xs)]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def instance_crops(ann: AnnotationSet, size: int, min_area: int = 64, max_instances: Optional[int] = None,
                   seed: int = 0, max_category: Optional[int] = None) -> dict:
    """The instance inpainter's data: {"image": (N, 3, S, S) uint8, "mask": (N, S, S) uint8 (the
    object's visible mask), "label": (N,) category id / the largest id}, each instance in its
    PCNet-M square, from visible masks only."""
    insts = [i for i in ann.instances if i.visible_area >= min_area]
    if max_instances is not None and len(insts) > max_instances:
        keep = np.sort(np.random.default_rng(seed).choice(len(insts), int(max_instances), replace=False))
        insts = [insts[k] for k in keep]
    if not insts:
        raise DataError(f"{ann.path}: no instance of at least {min_area} visible pixels to train the instance "
                        "inpainter on")
    boxes = square_boxes(insts)
    images = crop_images(ann, insts, boxes, size)
    masks = crop_masks(insts, "visible", boxes, size) >= 0.5
    top = max_category if max_category is not None else max_category_of(ann)
    label = torch.tensor([i.category_id / max(top, 1) for i in insts], dtype=torch.float32).clamp(0, 1)
    return {"image": (images * 255).round().to(torch.uint8), "mask": masks.to(torch.uint8), "label": label}


# --------------------------------------------------------------------------- steps
def _flip(batch_size: int, dev) -> torch.Tensor:
    return (torch.rand(batch_size, device=dev) < 0.5).view(-1, 1, 1, 1)


def _background_step(cfg: dict, holder: dict):
    def step(model, batch, step):
        img = batch["image"].float() / 255.0
        img = torch.where(_flip(len(img), img.device), img.flip(-1), img)
        hole = background_holes(holder["pool"], len(img), cfg["masks_per_hole"], cfg["scale"], cfg["dilate"])
        known = 1.0 - hole
        out = model(*background_inputs(img, known, cfg["fill"], cfg["guides"]))
        return holder["loss"](out, img, known)
    return step


def _instance_step(cfg: dict, holder: dict):
    def step(model, batch, step):
        img = batch["image"].float() / 255.0
        tgt = batch["mask"].float()
        flip = _flip(len(img), img.device)
        img, tgt = torch.where(flip, img.flip(-1), img), torch.where(flip[:, 0], tgt.flip(-1), tgt)
        hole, occ = instance_holes(tgt, holder["pool"], cfg["cover"], cfg["scale"], cfg["shift"], cfg["tries"],
                                   with_occluder=True)
        unknown = occ if cfg["unknown"] == "occluder" else hole
        obj = tgt.unsqueeze(1)
        out = instance_forward(model, img, obj, hole, unknown, batch["label"], cfg["fill"], cfg["guides"])
        out = obj * out + (1.0 - obj) * img          # only the object's pixels count
        return holder["loss"](out, img, 1.0 - torch.maximum(unknown, hole))
    return step


# --------------------------------------------------------------------------- validation
def hole_scores(out: torch.Tensor, target: torch.Tensor, hole: torch.Tensor) -> dict:
    """L1 (mean absolute error, [0, 1] scale) and PSNR (dB, peak 1) over the hole pixels of a batch."""
    h = hole.expand_as(target)
    n = h.sum().clamp(min=1)
    l1 = ((out - target).abs() * h).sum() / n
    mse = ((out - target) ** 2 * h).sum() / n
    return {"l1": float(l1), "psnr": float(10 * torch.log10(1.0 / mse.clamp(min=1e-10)))}


def validation_batch(kind: str, val: AnnotationSet, cfg: dict, seed: int, pool: torch.Tensor) -> dict:
    """A fixed validation batch (images, holes, and the instance inpainter's labels) made from the
    validation images as training batches are made, with a generator seeded by ``seed``."""
    g = torch.Generator().manual_seed(int(seed) + 1)
    if kind == "background":
        n = int(cfg["val_images"])
        imgs = background_crops(val, int(cfg["crop"]), 1, n, seed + 1).float() / 255.0
        hole = background_holes(pool, len(imgs), cfg["masks_per_hole"], cfg["scale"], cfg["dilate"], generator=g)
        return {"image": imgs, "hole": hole}
    data = instance_crops(val, int(cfg["crop"]), cfg["min_area"], cfg["val_instances"], seed + 1,
                          cfg.get("max_category"))
    tgt = data["mask"].float()
    hole, occ = instance_holes(tgt, pool, cfg["cover"], cfg["scale"], cfg["shift"], cfg["tries"], generator=g,
                               with_occluder=True)
    return {"image": data["image"].float() / 255.0, "hole": hole, "label": data["label"], "mask": tgt,
            "unknown": occ if cfg.get("unknown", "occluder") == "occluder" else hole}


def predict_batch(model: PConvUNet, kind: str, batch: dict) -> torch.Tensor:
    """The composite (known pixels kept, the hole filled by ``model``) of a validation batch (the
    instance inpainter's: its ``unknown`` pixels, default the hole, are not read)."""
    img, hole = batch["image"], batch["hole"]
    known = 1.0 - hole
    if kind == "background":
        out = model(*background_inputs(img, known, model.fill, model.guides))
    else:
        out = instance_forward(model, img, batch["mask"].unsqueeze(1), hole, batch.get("unknown", hole), batch["label"],
                               model.fill, model.guides)
    return known * img + hole * out.clamp(0, 1)


def _eval_fn(kind: str, batch: dict):
    def evaluate(model, step):
        dev = next(model.parameters()).device
        b = {k: v.to(dev) for k, v in batch.items()}
        comp = predict_batch(model, kind, b)
        s = hole_scores(comp, b["image"], b["hole"])
        return {"val_hole_l1": s["l1"], "val_hole_psnr": s["psnr"]}
    return evaluate


# --------------------------------------------------------------------------- training
def train_inpainter(kind: str, annotations, out_dir, profile: Optional[str] = None, seed: int = 0, device="auto",
                    steps: Optional[int] = None, resume: bool = True, progress: bool = True,
                    val_annotations=None, stop_after: Optional[int] = None, **overrides):
    """Train inpainter ``kind`` ("background" or "instance") on the images and visible masks of
    ``annotations`` (a path or an AnnotationSet whose images are known) into
    ``out_dir/inpaint-<kind>.pt``. ``val_annotations`` (default: the training images themselves,
    which then only track the fit) gives the validation batch whose hole PSNR selects the
    checkpoint. ``vgg_weights`` (an override, or the profile's): a local VGG-16 weights file for
    Liu et al.'s perceptual and style terms (with Liu et al.'s loss weights, unless ``loss_weights``
    is passed here: a profile's weights are meant for the fixed features). Returns ``(model, history)``, the model in eval mode
    with ``kind``, ``crop``, ``max_category``, ``history`` and ``cpu_seconds`` (the process CPU
    time training took, user + system); the cost is added to ``out_dir/inpaint-<kind>.timing.json``
    (:mod:`amodal_lib.train.timing`)."""
    cfg = settings(kind, profile, steps=steps, **overrides)
    ann = as_annotations(annotations).modal_view()      # no amodal label is read
    if ann.images_dir is None:
        raise DataError(f"{ann.path}: the inpainters read pixels; no image folder is known for these annotations "
                        "(give --images DIR)")
    engine.seed_everything(seed)
    dist = engine.setup_distributed(device)
    n_threads = torch.get_num_threads()
    if cfg.get("threads") and dist.device.type == "cpu":
        torch.set_num_threads(int(cfg["threads"]))
    clock = timing.Stopwatch()
    max_cat = max_category_of(ann)
    val = as_annotations(val_annotations).modal_view() if val_annotations is not None else ann
    if val.images_dir is None:
        val = ann
    S = int(cfg["crop"])
    if kind == "background":
        data = {"image": background_crops(ann, S, int(cfg["crops_per_image"]), cfg["images"], seed)}
        pool = mask_pool(ann, S, seed=seed)
        guides = tuple(cfg["guides"])
        net = PConvUNet(3 + 3 * len(guides), 3, int(cfg["width"]), int(cfg["depth"]),
                        mask_channels=3 + 3 * len(guides) if guides else 1, fill=cfg["fill"], guides=guides)
        step_fn = _background_step(cfg, holder := {})
    else:
        data = instance_crops(ann, S, cfg["min_area"], cfg["max_instances"], seed, max_cat)
        pool = data["mask"]
        cin = instance_channels(cfg["guides"])
        net = PConvUNet(cin, 3, int(cfg["width"]), int(cfg["depth"]), mask_channels=cin, fill=cfg["fill"],
                        guides=tuple(cfg["guides"]))
        step_fn = _instance_step(cfg, holder := {})
    if S % net.multiple:
        raise ArgumentError(f"inpaint {kind}: crop {S} is not a multiple of 2**depth = {net.multiple}")
    vbatch = validation_batch(kind, val, {**cfg, "max_category": max_cat}, seed, pool)
    prep = clock.elapsed()
    features = load_vgg16_features(cfg["vgg_weights"]) if cfg.get("vgg_weights") else None
    # a profile's loss weights were chosen for the fixed features; with VGG-16, Liu et al.'s unless set here
    weights = overrides.get("loss_weights") if features is not None else cfg.get("loss_weights")
    holder["loss"] = InpaintingLoss(features, weights).to(dist.device)

    def optimizer(m):
        return torch.optim.Adam(m.parameters(), lr=float(cfg["lr"]))
    trainer = engine.Trainer(
        net, optimizer, data, batch_size=int(cfg["batch_size"]), steps=int(cfg["steps"]), run_dir=out_dir,
        name=checkpoint_name(kind), stage=f"inpaint-{kind}", seed=seed, step_fn=step_fn,
        eval_fn=_eval_fn(kind, vbatch), eval_every=int(cfg["eval_every"]), checkpoint_every=int(cfg["checkpoint_every"]),
        log_every=int(cfg["log_every"]), select="val_hole_psnr", select_start=cfg["fill"] != "none",
        config={**cfg, "profile": profile, "seed": seed, "train_examples": int(len(next(iter(data.values())))),
                "annotations": str(ann.path), "vgg": bool(cfg.get("vgg_weights"))},
        extra={"model": net.spec(), "method": checkpoint_name(kind), "kind": kind, "crop": S, "max_category": max_cat},
        dist=dist, resume=resume, progress=progress, prepared=prep)
    holder["pool"] = pool.to(trainer.device)
    if progress and dist.is_main:
        print(f"inpaint-{kind}: {len(next(iter(data.values())))} training crops at {S}x{S} (prepared in {prep['wall_s']:.1f} s), "
              f"width {cfg['width']}, depth {cfg['depth']}, {cfg['steps']} steps, "
              f"{'VGG-16' if features is not None else 'fixed'} features, device {dist.device}", file=sys.stderr)
    try:
        history = trainer.fit(until=stop_after)
    finally:
        torch.set_num_threads(n_threads)
    model = engine.unwrap(trainer.raw_model).eval()
    _attach(model, kind, S, max_cat, history, trainer.checkpoint_path)
    model.cpu_seconds = clock.elapsed()["cpu_s"]
    return model, history


def _attach(model: PConvUNet, kind: str, crop: int, max_cat: int, history: list, checkpoint) -> PConvUNet:
    model.kind, model.crop, model.max_category = kind, int(crop), int(max_cat)
    model.history, model.checkpoint = list(history), Path(checkpoint)
    return model


# --------------------------------------------------------------------------- trained runs
def checkpoint_file(run_dir_or_file, kind: str) -> Path:
    """The checkpoint of a run folder (``inpaint-<kind>.pt`` in it), or the file itself."""
    return runs.checkpoint_file(run_dir_or_file, checkpoint_name(kind))


def is_trained(run_dir, kind: str) -> bool:
    """Has the run in ``run_dir`` finished all its steps?"""
    return runs.is_trained(run_dir, checkpoint_name(kind))


def load_model(run_dir_or_file, kind: str, device="cpu") -> PConvUNet:
    """The trained inpainter ``kind`` of a run folder or checkpoint file, in eval mode."""
    path = checkpoint_file(run_dir_or_file, kind)
    name = checkpoint_name(kind)
    ck, spec = runs.read(path, name, f"amodal train --model {name}", lambda extra: extra.get("kind") == kind)
    if kind == "instance" and spec.get("in_channels") != instance_channels(spec.get("guides", ())):
        raise CheckpointError(path, "an instance inpainter of an earlier input layout (without the object's mask); "
                                    f"train it again with `amodal train --model {name}`")
    model = runs.load_weights(path, "inpainter", ck, lambda: PConvUNet(**spec))
    extra = ck["extra"]
    _attach(model, kind, extra.get("crop", 64), extra.get("max_category", 1), ck.get("history", []), path)
    model.done = bool(ck.get("done"))
    return model.to(engine.resolve_device(device)).eval()


def load_history(run_dir, kind: str) -> list:
    return engine.load_history(run_dir, checkpoint_name(kind))


__all__ = ("KINDS", "NAMES", "settings", "background_holes", "instance_holes", "instance_inputs", "place_masks",
           "mask_pool", "background_crops", "instance_crops", "train_inpainter", "load_model", "is_trained",
           "checkpoint_file", "load_history", "hole_scores", "base_fill", "background_inputs")
