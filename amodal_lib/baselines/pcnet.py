"""Deocclusion's PCNet-M (Zhan et al., CVPR 2020), trained and evaluated in our pipeline.

Self-supervised like Amodal-VAE: training reads only visible (modal) masks
(:meth:`AnnotationSet.modal_view`), never an amodal label.

The model (SPEC.md, "Baselines"; the public Deocclusion code)
    A UNet (:mod:`.unet`; channels ``w-2w-4w-8w-8w``, ``w = 32`` in the paper profile), batch
    norm, bilinear upsampling. Input: 2 channels, (0) the erased visible mask times the
    category id normalised by the largest id, (1) the eraser. Output: 2-class logits.
Crops
    A square of side ``max(sqrt(3wh), 1.1w, 1.1h)`` about the centre of the visible box
    (``w, h`` its size), resized to the profile's ``crop`` with ``torchvision.ops.roi_align``.
Training
    Target: the uncut visible mask of an instance. Eraser: another training instance's visible
    mask (its own square crop), randomly flipped, scaled and shifted (``grid_sample``,
    batched), kept only if it covers 0.1%-90% of the target (``cover``; up to ``tries``
    candidates per sample are drawn at once and the first that fits is used). With
    probability ``front_prob`` = 0.8 the eraser is in front (input = target minus eraser),
    otherwise behind (input = the uncut target; the eraser loses the target's pixels).
    Pixel-wise cross-entropy, 5x inside the eraser (``eraser_weight``), averaged over pixels.
    SGD (lr 1e-3, momentum 0.9, weight decay 1e-4), batch 32. The loop, checkpoints
    (``RUN_DIR/pcnet.pt``), resume, device choice and torchrun/DDP are the shared engine's
    (:mod:`amodal_lib.train.engine`).
Completion
    The eraser of an instance is the union of the visible masks of its occluders
    (``Instance.occluders``: from the data's amodal masks / depth order when it has them, the
    touching neighbours for modal-only data; ``eraser="neighbours"`` forces the latter). The
    class-1 probability is pasted back to the image (``crops.paste_masks``), thresholded at
    0.2, and OR'ed with the visible mask.

API
---
``train_pcnet(annotations, out_dir, profile=None, seed=0, device="auto", steps=None, resume=True)``
    -> ``(model, history)``; ``annotations`` is a path or an :class:`AnnotationSet`.
``load_model(run_dir_or_file)`` -> :class:`PCNetM` in eval mode.
``complete_instances(model, ann, instances=None, threshold=0.2, batch_size=256)`` -> {id: RLE}.
``cli_train(ns)``, ``cli_complete(ns)``: ``amodal train --model pcnet-m`` / ``amodal complete --method pcnet-m``.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from ..data import crops as C
from ..data import as_annotations
from ..data import masks as M
from ..data.records import AnnotationSet, Instance
from ..profiles import get_profile
from ..train import engine as E
from .unet import UNet

CHECKPOINT_NAME = "pcnet"
DEFAULT_THRESHOLD = 0.2

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
    """The PCNet-M settings of a profile (``DEFAULTS`` updated by the profile's "pcnet" keys)."""
    cfg = dict(DEFAULTS)
    cfg.update(get_profile(profile).get("pcnet", {}))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg


# --------------------------------------------------------------------------- the model
class PCNetM(nn.Module):
    """The UNet with what completion needs to know: crop size and category normalisation."""

    def __init__(self, width: int = 32, crop: int = 256, max_category: int = 1):
        super().__init__()
        if crop % 16:
            raise ValueError(f"PCNet-M crop size must be a multiple of 16, got {crop}")
        self.width, self.crop, self.max_category = int(width), int(crop), max(int(max_category), 1)
        self.unet = UNet(in_channels=2, n_classes=2, width=self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, S, S)`` -> ``(B, 2, S, S)`` logits."""
        return self.unet(x.contiguous(memory_format=torch.channels_last))

    def spec(self) -> dict:
        """How to rebuild this model (stored in the checkpoint's ``extra``)."""
        return {"width": self.width, "crop": self.crop, "max_category": self.max_category}

    def category_value(self, category_ids) -> torch.Tensor:
        c = torch.as_tensor(np.asarray(category_ids, dtype=np.float32))
        return (c / self.max_category).clamp(0, 1)


# --------------------------------------------------------------------------- crops
def square_boxes(instances: Sequence[Instance], frame: str = "visible") -> torch.Tensor:
    """(N, 4) xyxy squares of side ``max(sqrt(3wh), 1.1w, 1.1h)`` about each box's centre
    (``frame`` "visible", or "amodal" for the ground-truth amodal box)."""
    b = C.frame_boxes(instances, frame)
    return square_from_xyxy(b)


def square_from_xyxy(b: torch.Tensor) -> torch.Tensor:
    w, h = (b[:, 2] - b[:, 0]).clamp(min=1.0), (b[:, 3] - b[:, 1]).clamp(min=1.0)
    side = torch.maximum(torch.sqrt(3 * w * h), torch.maximum(1.1 * w, 1.1 * h))
    c = (b[:, :2] + b[:, 2:]) / 2
    return torch.cat([c - side[:, None] / 2, c + side[:, None] / 2], dim=1)


def input_crops(ann: AnnotationSet, instances: Sequence[Instance], boxes: torch.Tensor, size: int,
                occluders: Optional[dict] = None) -> torch.Tensor:
    """(N, 2, size, size) binary crops in ``boxes``: (0) the instance's visible mask, (1) the
    union of its occluders' visible masks (minus its own pixels).

    ``occluders``: {id: ids} to use instead of each ``Instance.occluders``.
    """
    out = torch.zeros(len(instances), 2, size, size)
    by_image = ann.by_image()
    for image_id, idx in C.group_by_image(instances).items():
        members = list(by_image.get(image_id, []))
        pos = {m.id: j for j, m in enumerate(members)}
        extra = [instances[k] for k in idx if instances[k].id not in pos]
        for inst in extra:
            pos[inst.id] = len(members)
            members.append(inst)
        vis = torch.from_numpy(M.decode_many([m.visible for m in members])).float()
        hw = vis.shape[1:]
        flat = vis.reshape(len(members), -1)
        own_rows = torch.tensor([pos[instances[k].id] for k in idx])
        occ_mat = torch.zeros(len(idx), len(members))
        for r, k in enumerate(idx):
            inst = instances[k]
            occ = occluders.get(inst.id, ()) if occluders is not None else inst.occluders
            cols = [pos[o] for o in occ if o in pos and o != inst.id]
            if cols:
                occ_mat[r, cols] = 1.0
        own = flat[own_rows]
        er = (occ_mat @ flat).clamp_(max=1.0) * (1.0 - own)  # union of the occluders, minus own pixels
        stack = torch.stack([own, er], 1).reshape(len(idx), 2, *hw)
        rois = torch.cat([torch.arange(len(idx), dtype=torch.float32)[:, None], boxes[idx]], dim=1)
        out[idx] = roi_align(stack, rois, (size, size), 1.0, 2, aligned=True)
    return (out >= 0.5).float()


def training_tensors(ann: AnnotationSet, size: int, max_category: Optional[int] = None,
                     min_pixels: int = 4) -> dict:
    """The training set, pre-cropped once: {"mask": (N, S, S) uint8, "cat": (N,) float}.

    Uses visible masks only (``ann`` should be a modal view). Instances whose crop holds fewer
    than ``min_pixels`` pixels are left out.
    """
    insts = list(ann.instances)
    if not insts:
        raise ValueError(f"{ann.path}: no instances to train on")
    if max_category is None:
        max_category = max_category_of(ann)
    masks = (C.crop_masks(insts, "visible", square_boxes(insts), size) >= 0.5)
    keep = masks.flatten(1).sum(1) >= min_pixels
    if not bool(keep.any()):
        raise ValueError(f"{ann.path}: every instance is too small to train on at crop {size}")
    cats = torch.tensor([i.category_id for i in insts], dtype=torch.float32) / max(max_category, 1)
    return {"mask": masks[keep].to(torch.uint8), "cat": cats[keep].clamp(0, 1)}


def max_category_of(ann: AnnotationSet) -> int:
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
    instances enter the history. Returns ``(model, history)``: the model unwrapped, on its
    device, in eval mode.
    """
    cfg = settings(profile, steps=steps, **overrides)
    E.seed_everything(seed)
    dist = E.setup_distributed(device)
    ann = as_annotations(annotations).modal_view()  # no amodal label can reach training
    max_cat = max_category_of(ann)
    t0 = time.perf_counter()
    data = training_tensors(ann, int(cfg["crop"]), max_cat, int(cfg["min_pixels"]))
    prep_s = time.perf_counter() - t0
    model = PCNetM(cfg["width"], cfg["crop"], max_cat)
    if dist.enabled and dist.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(memory_format=torch.channels_last)
    holder: dict = {}

    def optimizer(m):
        return torch.optim.SGD(m.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                               weight_decay=cfg["weight_decay"])
    eval_fn = _eval_fn(as_annotations(val_annotations), cfg, seed) if val_annotations is not None else None
    trainer = E.Trainer(
        model, optimizer, data, batch_size=cfg["batch_size"], steps=cfg["steps"], run_dir=out_dir,
        name=CHECKPOINT_NAME, stage="pcnet-m", seed=seed, step_fn=_step_fn(cfg, holder),
        eval_fn=eval_fn, eval_every=cfg["eval_every"] if eval_fn else 0,
        checkpoint_every=cfg["checkpoint_every"], log_every=cfg["log_every"],
        config={**cfg, "profile": profile, "seed": seed, "train_instances": int(len(data["mask"])),
                "annotations": str(ann.path)},
        extra={"model": model.spec(), "method": "pcnet-m"}, dist=dist, resume=resume, progress=progress)
    holder["pool"] = trainer.data["mask"]
    if progress and dist.is_main:
        print(f"PCNet-M: {len(data['mask'])} training masks at {cfg['crop']}x{cfg['crop']} "
              f"(cropped in {prep_s:.1f} s), width {cfg['width']}, {cfg['steps']} steps, device {dist.device}",
              file=sys.stderr)
    n_threads = torch.get_num_threads()
    if cfg.get("threads") and dist.device.type == "cpu":
        torch.set_num_threads(int(cfg["threads"]))
    try:
        history = trainer.fit(until=stop_after)
    finally:
        torch.set_num_threads(n_threads)
    model = E.unwrap(trainer.raw_model)
    model.eval()
    return model, history


def _eval_fn(val: AnnotationSet, cfg: dict, seed: int):
    from .. import metrics
    if not val.has_amodal:
        raise ValueError(f"{val.path}: validation needs amodal masks")
    n = cfg.get("eval_instances") or len(val)
    order = np.random.default_rng(seed).permutation(len(val))[:n]
    insts = [val.instances[k] for k in sorted(order)]
    sub = val.subset(insts)

    def evaluate(model, step):
        pred = complete_instances(model, val, insts, threshold=cfg["threshold"])
        o = metrics.evaluate(sub, pred)["overall"]["A"]
        return {"val_full_miou": o["full"], "val_invisible_miou": o["invisible"] or 0.0}
    return evaluate


def checkpoint_file(run_dir_or_file) -> Path:
    p = Path(run_dir_or_file)
    return p / f"{CHECKPOINT_NAME}.pt" if p.is_dir() or not p.suffix else p


def load_model(run_dir_or_file, device="cpu") -> PCNetM:
    """The trained model of a run folder (its ``pcnet.pt``) or a checkpoint file, in eval mode."""
    path = checkpoint_file(run_dir_or_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no PCNet-M checkpoint (train one with `amodal train --model pcnet-m`)")
    ck = E.load_checkpoint(path, map_location="cpu")
    spec = (ck.get("extra") or {}).get("model")
    if not spec or (ck.get("extra") or {}).get("method") != "pcnet-m":
        raise ValueError(f"{path}: not a PCNet-M checkpoint")
    model = PCNetM(**spec)
    state = {k.replace("module.", "", 1) if k.startswith("module.") else k: v for k, v in ck["model"].items()}
    model.load_state_dict(state)
    model.history = ck.get("history", [])
    model.done = bool(ck.get("done"))
    return model.to(memory_format=torch.channels_last).to(E.resolve_device(device)).eval()


def load_history(run_dir) -> list:
    """The training history (JSON lines) of a run folder."""
    import json
    p = Path(run_dir) / f"{CHECKPOINT_NAME}.history.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- completion
@torch.no_grad()
def predict_crops(model: PCNetM, ann: AnnotationSet, instances: Sequence[Instance], box: str = "visible",
                  eraser: str = "occluders", batch_size: int = 256):
    """``(probs (N, S, S), inputs (N, 2, S, S), boxes (N, 4))``: the class-1 probability in each
    instance's square crop. ``box``: "visible" or "amodal" (ground-truth amodal box);
    ``eraser``: "occluders" (``Instance.occluders``) or "neighbours" (touching instances)."""
    if box in ("predicted", "visible"):
        boxes = square_boxes(instances, "visible")
    elif box in ("amodal", "amodal-gt"):
        boxes = square_boxes(instances, "amodal")
    else:
        raise ValueError(f"box must be 'visible' or 'amodal-gt', got {box!r}")
    if eraser == "occluders":
        occ = None
    elif eraser == "neighbours":
        occ = {i.id: i.occluders for i in ann.modal_view().instances}
    else:
        raise ValueError(f"eraser must be 'occluders' or 'neighbours', got {eraser!r}")
    S = model.crop
    dev = next(model.parameters()).device
    inputs = input_crops(ann, instances, boxes, S, occ)
    inputs[:, 0] *= model.category_value([i.category_id for i in instances])[:, None, None]
    probs = torch.zeros(len(instances), S, S)
    model.eval()
    for a in range(0, len(instances), batch_size):
        x = inputs[a:a + batch_size].to(dev)
        probs[a:a + batch_size] = torch.softmax(model(x).float(), 1)[:, 1].cpu()
    return probs, inputs, boxes


def complete_instances(model: PCNetM, ann: AnnotationSet, instances: Optional[Sequence[Instance]] = None,
                       threshold: float = DEFAULT_THRESHOLD, batch_size: int = 256, box: str = "visible",
                       eraser: str = "occluders", chunk: int = 2048, progress: bool = False) -> dict:
    """{annotation id: RLE}: each instance's amodal mask, the network's class-1 probability
    pasted back at ``threshold`` and OR'ed with the visible mask."""
    instances = list(ann.instances if instances is None else instances)
    out: dict = {}
    from tqdm.auto import tqdm
    bar = tqdm(total=len(instances), desc="PCNet-M", unit="mask", disable=not progress, leave=False)
    for a in range(0, len(instances), chunk):
        part = instances[a:a + chunk]
        probs, _, boxes = predict_crops(model, ann, part, box, eraser, batch_size)
        pasted = C.paste_masks(probs, boxes, part, threshold, union_visible=True)
        out.update((inst.id, rle) for inst, rle in zip(part, pasted))
        bar.update(len(part))
    bar.close()
    return out


# --------------------------------------------------------------------------- command line
def cli_train(ns) -> None:
    """``amodal train --model pcnet-m``: PCNet-M has one stage (``--stage 1`` or none)."""
    if getattr(ns, "stage", None) not in (None, 1):
        raise ValueError(f"pcnet-m has a single training stage; --stage {ns.stage} does not apply")
    ann = as_annotations(ns.annotations)
    t0 = time.time()
    model, history = train_pcnet(ann, ns.out, profile=ns.profile, seed=ns.seed, device=ns.device,
                                 steps=ns.steps, resume=getattr(ns, "resume", True),
                                 val_annotations=getattr(ns, "val_annotations", None))
    last = next((h for h in reversed(history) if h.get("split") == "train"), {})
    print(f"PCNet-M: trained to step {last.get('step', '?')} (loss {last.get('loss', float('nan')):.4f}) "
          f"in {time.time() - t0:.1f} s; checkpoint {checkpoint_file(ns.out)}")


def cli_complete(ns) -> dict:
    """``amodal complete --method pcnet-m``: {annotation id: RLE}."""
    if getattr(ns, "samples", 0):
        raise ValueError("pcnet-m is deterministic: --samples does not apply")
    ann = as_annotations(ns.annotations)
    model = load_model(ns.checkpoint, device=getattr(ns, "device", "auto") or "auto")
    box = "amodal-gt" if getattr(ns, "box", "predicted") == "amodal-gt" else "visible"
    thr = DEFAULT_THRESHOLD if getattr(ns, "threshold", None) is None else float(ns.threshold)
    return complete_instances(model, ann, threshold=thr, box=box)
