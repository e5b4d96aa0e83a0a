"""Amodal-VAE's three training stages (supplementary 3.1; SPEC "Training"), on the generic engine.

1. **Shape prior** (:class:`Stage1`): a VAE on full masks of unoccluded instances, each cropped in
   its own box at 28x28; Adam lr 1e-3; loss BCE + lambda(t) KL(q(z|y) || N(0, I)) with the KL
   annealing of supplementary eq. (1) (:func:`kl_weight`).
2. **Partial encoder** (:class:`Stage2`): decoder (and full encoder) frozen; the partial encoder
   q(z|y_hat) and the spatial transformer learn from simulated occlusions: another instance's mask,
   randomly scaled and shifted, pasted over a full mask (y_hat = y (1 - o)), all on tensors in one
   batch (:func:`simulate_occlusions`). Loss BCE(y, decoder(z)) + lambda_final KL(q(z|y_hat) ||
   N(0, I)) (or, as an option, KL(q(z|y_hat) || q(z|y))), plus a box-regression loss for the
   transformer, whose target is known exactly. Both input frames are trained (visible box, flag 0;
   GT amodal box, flag 1). lr 1e-4.
3. **Fine-tuning on real occluded instances** (:class:`Stage3`): the decoder output, placed in the
   predicted full-object box, is warped into a context frame (the visible box grown 3x) where the
   likelihood counts only the known pixels: the visible mask (1) and the pixels inside the image
   that no other instance covers (0). Pixels under another instance's visible mask are left out.
   lr 1e-4, decoder frozen.

No amodal label is read by any stage: :func:`prepare` starts from ``ann.modal_view()``. Masks are
cropped once per run into in-memory uint8 tensors. :func:`train_amodal_vae` runs the stages into
one run directory (``stage1.pt``, ``stage2.pt``, ``stage3.pt``; stage k starts from stage k-1's);
:func:`load_model` loads the latest; :func:`cli_train` / :func:`cli_complete` serve the ``amodal``
command line.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import as_annotations
from ..data import crops as C
from ..data.records import AnnotationSet
from ..models.amodal_vae import (S, AmodalVAE, box_to_params, complete_instances, log_aspect_of,
                                 warp_to_frame)
from . import engine as E

STAGES = (1, 2, 3)
SIM = 56  # side of the pre-cropped full masks that stage 2 composites occlusions on (2 x 28)


# --------------------------------------------------------------------------- configuration
@dataclass
class VAEConfig:
    """Every setting of the three stages. ``from_profile`` reads ``profiles.py``'s "vae" keys."""
    width: int = 32
    latent_dim: int = 64
    hidden: int = 256
    batch_size: int = 128
    stage1_steps: int = 4000
    stage2_steps: int = 3000
    stage3_steps: int = 1500
    lr1: float = 1e-3
    lr2: float = 1e-4
    lr3: float = 1e-4
    # KL annealing, supplementary eq. (1) (paper: 0.5, 0.01, 0.9995, 2000)
    kl_final: float = 0.5
    kl_start: float = 0.01
    kl_alpha: float = 0.9995
    kl_t_begin: int = 2000
    # stage 2
    match_posterior: bool = False  # KL(q(z|y_hat) || q(z|y)) instead of KL(q(z|y_hat) || N(0, I))
    amodal_frame_prob: float = 0.3  # share of stage-2 samples given in the GT amodal-box frame
    max_occluded: float = 0.9
    unoccluded_prob: float = 0.3  # share of stage-2 samples left whole (as many real instances are)
    box_weight: float = 1.0
    # stage 3
    stage3_instances: str = "occluded"  # "occluded" (touching others or the border) | "all"
    context_scale: float = 3.0
    context_size: int = 56
    # all stages
    flip: bool = True  # random horizontal flips
    val_fraction: float = 0.05
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 25
    eval_threshold: float = 0.5
    eval_max_instances: Optional[int] = 1000

    @classmethod
    def from_profile(cls, profile: Optional[str] = None, **overrides) -> "VAEConfig":
        from ..profiles import get_profile
        prof = get_profile(profile)
        vals = dict(prof.get("vae", {}))
        ev = prof.get("eval", {})
        if ev.get("max_instances", "unset") != "unset" and "eval_max_instances" not in vals:
            vals["eval_max_instances"] = ev.get("max_instances")
        vals.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(vals) - names)
        if unknown:
            raise ValueError(f"unknown Amodal-VAE setting(s): {', '.join(unknown)}")
        return cls(**vals)

    def steps(self, stage: int) -> int:
        return getattr(self, f"stage{stage}_steps")

    def lr(self, stage: int) -> float:
        return getattr(self, f"lr{stage}")


def kl_weight(t: int, lambda_final: float = 0.5, lambda_start: float = 0.01, alpha: float = 0.9995,
              t_begin: int = 2000) -> float:
    """Supplementary eq. (1): lambda(t) = l_final - (l_final - l_start) * alpha ** max(0, t - t_begin)."""
    return lambda_final - (lambda_final - lambda_start) * alpha ** max(0, t - t_begin)


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample (summed over the latent dimensions)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def kl_between(mu_q, logvar_q, mu_p, logvar_p) -> torch.Tensor:
    """KL(q || p) of factorial Normals per sample."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0).sum(1)


def bce_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bernoulli negative log-likelihood per sample, summed over the 28x28 pixels."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none").flatten(1).sum(1)


def _u8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _f(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def _flip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Flip ``x`` (.., W) horizontally where ``mask`` (N,) is true."""
    return torch.where(mask.reshape(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


# --------------------------------------------------------------------------- data
def prepare(annotations, stages: Sequence[int] = STAGES, cfg: Optional[VAEConfig] = None) -> dict:
    """Crop every mask a run needs, once, into uint8 tensors; modal information only.

    Returns a dict with (per the stages asked for):
    ``full``: (N, 56, 56) visible masks of the unoccluded instances in their own box,
    ``full_wh``: their box sizes in pixels; ``occ`` / ``occ_wh``: the visible masks of all
    instances (the occluder pool); ``vis``: (M, 28, 28) visible-box crops of the stage-3
    instances, ``ctx``: (M, 3, C, C) their context crops, ``log_aspect``: (M,).
    """
    cfg = cfg or VAEConfig()
    ann = as_annotations(annotations).modal_view()  # from here on, no amodal label exists
    out: dict = {"n_instances": len(ann)}
    if 1 in stages or 2 in stages:
        unocc = ann.unoccluded()
        if not unocc:
            raise ValueError(f"{ann.path}: no unoccluded instance (touching neither the border nor another "
                             "instance) to learn the shape prior from")
        out["full"] = _u8(C.crop_masks(unocc, "visible", "visible", size=SIM))
        out["full_wh"] = _wh(unocc)
    if 2 in stages:
        allx = list(ann.instances)
        out["occ"] = _u8(C.crop_masks(allx, "visible", "visible", size=SIM))
        out["occ_wh"] = _wh(allx)
    if 3 in stages:
        insts = [i for i in ann.instances if cfg.stage3_instances == "all" or i.occluders or i.touches_border]
        if not insts:
            raise ValueError(f"{ann.path}: no instance touches another one or the border: nothing for stage 3")
        out["vis"] = _u8(C.crop_masks(insts, "visible", "visible", size=S))
        out["ctx"] = _u8(C.context_crops(ann, insts, scale=cfg.context_scale, size=cfg.context_size)[0])
        out["log_aspect"] = log_aspect_of(C.frame_boxes(insts, "visible"))
    return out


def _wh(instances) -> torch.Tensor:
    return torch.tensor([[i.visible_box[2], i.visible_box[3]] for i in instances], dtype=torch.float32)


def _split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train / held-out indices (at least one of each when n >= 2)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    k = min(max(1, int(round(n * fraction))), n - 1) if n >= 2 else 0
    return perm[k:], perm[:k]


# --------------------------------------------------------------------------- stage 2's simulation
def _mask_boxes(m: torch.Tensor, thr: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """xyxy boxes (in units of the frame, [0, 1]) of the pixels > thr of (B, S, S) masks, and
    which masks have any such pixel."""
    on = m > thr
    rows, cols = on.any(2), on.any(1)
    n = m.shape[-1]
    ar = torch.arange(n, device=m.device)
    big = n + 1

    def first_last(v):
        first = torch.where(v, ar, big).amin(1)
        last = torch.where(v, ar, -1).amax(1)
        return first, last

    x0, x1 = first_last(cols)
    y0, y1 = first_last(rows)
    ok = rows.any(1)
    box = torch.stack([x0, y0, x1 + 1, y1 + 1], 1).float() / n
    box = torch.where(ok[:, None], box, torch.tensor([0.0, 0.0, 1.0, 1.0], device=m.device))
    return box, ok


def simulate_occlusions(full: torch.Tensor, full_wh: torch.Tensor, occ: torch.Tensor, occ_wh: torch.Tensor,
                        max_occluded: float = 0.9, unoccluded_prob: float = 0.3, tries: int = 4) -> dict:
    """Occlude full masks with other instances' masks, batched (SPEC stage 2).

    ``full``: (B, S, S) full masks in their own box, ``full_wh`` (B, 2) that box in pixels;
    ``occ``/``occ_wh``: (B, S, S) occluder masks in their own box and its size. Each occluder is
    placed at its true relative scale (jittered, biased larger: occluders are nearer) with a random
    centre over the target's box (``affine_grid``/``grid_sample``). Each sample draws a target
    hidden fraction uniformly in [0, ``max_occluded``] and keeps, of ``tries`` placements (each with
    another occluder), the one closest to it that hides at most ``max_occluded`` and leaves a visible
    part; so the hidden fraction spreads evenly over 0-90 %. A share ``unoccluded_prob`` is left whole.

    Returns ``partial`` (B, S, S) = full * (1 - o), ``vis_box`` (B, 4) the visible box in the
    target frame ([0, 1]^2), ``full_rel`` (B, 4) the full box relative to the visible box (the
    transformer's target), ``occluded`` (B,) the hidden fraction, ``log_aspect`` (B,) of the
    visible box in pixels.
    """
    B, n, dev = len(full), full.shape[-1], full.device
    area = full.flatten(1).sum(1).clamp_min(1e-6)
    partial = full.clone()
    occlude = torch.rand(B, device=dev) >= unoccluded_prob
    want = torch.rand(B, device=dev) * max_occluded
    best = torch.full((B,), float("inf"), device=dev)
    frame = torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=dev).expand(B, 4)
    for t in range(tries):
        if t:
            occ, occ_wh = occ.roll(1, 0), occ_wh.roll(1, 0)  # another occluder
        rel = (occ_wh / full_wh.clamp_min(1.0)) * torch.exp((torch.rand(B, 2, device=dev) - 0.5) * 0.6
                                                           + torch.rand(B, 1, device=dev) * 0.4)
        rel = rel.clamp(0.15, 4.0)
        centre = torch.rand(B, 2, device=dev) * (1 + 0.5 * rel) - 0.25 * rel
        o = warp_to_frame(occ, torch.cat([centre - rel / 2, centre + rel / 2], 1), frame, n)
        cand = full * (1 - o)
        frac = 1 - cand.flatten(1).sum(1) / area
        _, ok = _mask_boxes(cand)
        dist = (frac - want).abs()
        good = occlude & ok & (frac <= max_occluded) & (dist < best)
        partial = torch.where(good[:, None, None], cand, partial)
        best = torch.where(good, dist, best)
    vis_box, _ = _mask_boxes(partial)
    vw, vh = vis_box[:, 2] - vis_box[:, 0], vis_box[:, 3] - vis_box[:, 1]
    full_rel = torch.stack([-vis_box[:, 0] / vw, -vis_box[:, 1] / vh, (1 - vis_box[:, 0]) / vw,
                            (1 - vis_box[:, 1]) / vh], 1)
    occluded = 1 - partial.flatten(1).sum(1) / area
    log_aspect = torch.log(vw * full_wh[:, 0].clamp_min(1.0)) - torch.log(vh * full_wh[:, 1].clamp_min(1.0))
    return {"partial": partial, "vis_box": vis_box, "full_rel": full_rel, "occluded": occluded,
            "log_aspect": log_aspect}


def partial_inputs(sim: dict, amodal_frame: torch.Tensor) -> torch.Tensor:
    """28x28 encoder inputs of simulated partial masks: cropped in their visible box, or (where
    ``amodal_frame``) in the full box, as the GT-amodal-box mode crops them."""
    p = sim["partial"]
    in_vis = warp_to_frame(p, torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=p.device).expand(len(p), 4),
                           sim["vis_box"], S)
    in_full = F.adaptive_avg_pool2d(p.unsqueeze(1), S)[:, 0]
    return torch.where(amodal_frame[:, None, None], in_full, in_vis)


# --------------------------------------------------------------------------- the stage modules
class _Stage(nn.Module):
    """Wraps the AmodalVAE for one stage: which parts train, and the loss (``forward``).
    Frozen parts stay in eval mode (their batch-norm statistics do not move)."""

    trainable: tuple = ()

    def __init__(self, vae: AmodalVAE, cfg: VAEConfig):
        super().__init__()
        self.vae, self.cfg = vae, cfg
        for name, part in self._parts().items():
            for p in part.parameters():
                p.requires_grad_(name in self.trainable)

    def _parts(self) -> dict:
        v = self.vae
        return {"encoder": v.encoder, "decoder": v.decoder, "partial_encoder": v.partial_encoder,
                "transformer": v.transformer}

    def train(self, mode: bool = True):
        super().train(mode)
        for name, part in self._parts().items():
            part.train(mode and name in self.trainable)
        return self

    def parameters_to_train(self):
        return [p for p in self.vae.parameters() if p.requires_grad]


class Stage1(_Stage):
    """VAE on full masks: BCE + lambda(t) KL, eq. (1)."""
    trainable = ("encoder", "decoder")

    def forward(self, batch: dict, step: int) -> dict:
        y = F.avg_pool2d(_f(batch["full"]).unsqueeze(1), SIM // S)[:, 0]
        if self.cfg.flip:
            y = _flip(y, torch.rand(len(y), device=y.device) < 0.5)
        mu, logvar = self.vae.encoder(y.unsqueeze(1))
        logits = self.vae.decoder(self.vae.reparameterize(mu, logvar))
        bce, kl = bce_sum(logits, y).mean(), kl_to_prior(mu, logvar).mean()
        lam = kl_weight(step, self.cfg.kl_final, self.cfg.kl_start, self.cfg.kl_alpha, self.cfg.kl_t_begin)
        return {"loss": bce + lam * kl, "bce": bce, "kl": kl, "kl_weight": torch.tensor(lam)}


class Stage2(_Stage):
    """Partial encoder and transformer on simulated occlusions; decoder frozen."""
    trainable = ("partial_encoder", "transformer")

    def __init__(self, vae: AmodalVAE, cfg: VAEConfig, occ: torch.Tensor, occ_wh: torch.Tensor):
        super().__init__(vae, cfg)
        # the occluder pool: plain tensors, not buffers (DDP would broadcast buffers every step)
        self._pool = {"occ": occ, "occ_wh": occ_wh}

    def pool(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pool["occ"].device != device:
            self._pool = {k: v.to(device) for k, v in self._pool.items()}
        return self._pool["occ"], self._pool["occ_wh"]

    def simulate(self, batch: dict) -> tuple[dict, torch.Tensor, torch.Tensor]:
        full = _f(batch["full"])
        dev, B = full.device, len(full)
        if self.cfg.flip:
            full = _flip(full, torch.rand(B, device=dev) < 0.5)
        pool, pool_wh = self.pool(dev)
        k = torch.randint(len(pool), (B,), device=dev)
        occ = _f(pool[k])
        if self.cfg.flip:
            occ = _flip(occ, torch.rand(B, device=dev) < 0.5)
        sim = simulate_occlusions(full, batch["full_wh"], occ, pool_wh[k], self.cfg.max_occluded,
                                  self.cfg.unoccluded_prob)
        amodal = torch.rand(B, device=dev) < self.cfg.amodal_frame_prob
        y = F.avg_pool2d(full.unsqueeze(1), SIM // S)[:, 0]
        return sim, amodal, y

    def forward(self, batch: dict, step: int) -> dict:
        sim, amodal, y = self.simulate(batch)
        x = partial_inputs(sim, amodal)
        mu, logvar = self.vae.encode_partial(x, amodal.float())
        logits = self.vae.decoder(self.vae.reparameterize(mu, logvar))
        bce = bce_sum(logits, y).mean()
        if self.cfg.match_posterior:
            with torch.no_grad():
                mu_f, logvar_f = self.vae.encoder(y.unsqueeze(1))
            kl = kl_between(mu, logvar, mu_f, logvar_f).mean()
        else:
            kl = kl_to_prior(mu, logvar).mean()
        pred = self.vae.transformer(x.unsqueeze(1), sim["log_aspect"])
        target = box_to_params(sim["full_rel"])
        vis = (~amodal).float()
        box = (F.smooth_l1_loss(pred, target, reduction="none", beta=0.1).sum(1) * vis).sum() / vis.sum().clamp_min(1)
        return {"loss": bce + self.cfg.kl_final * kl + self.cfg.box_weight * box, "bce": bce, "kl": kl,
                "box": box, "occluded": sim["occluded"].mean()}


def context_targets(ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 3's target and weight from context crops (N, 3, C, C): target = the visible mask;
    weight 1 on known pixels (inside the image, and either visible or covered by no other
    instance), 0 under another instance's visible mask and outside the image."""
    vis, others, inside = ctx[:, 0], ctx[:, 1], ctx[:, 2]
    known = (inside > 0.5) & ~((others > 0.5) & (vis < 0.5))
    return vis, known.float()


class Stage3(_Stage):
    """Fine-tuning on real occluded instances: likelihood over the known pixels of the context frame."""
    trainable = ("partial_encoder", "transformer")

    def context_box(self, n: int, device) -> torch.Tensor:
        h = self.cfg.context_scale / 2
        return torch.tensor([[0.5 - h, 0.5 - h, 0.5 + h, 0.5 + h]], device=device).expand(n, 4)

    def forward(self, batch: dict, step: int) -> dict:
        x, ctx, la = _f(batch["vis"]), _f(batch["ctx"]), batch["log_aspect"]
        if self.cfg.flip:
            f = torch.rand(len(x), device=x.device) < 0.5
            x, ctx = _flip(x, f), _flip(ctx, f)
        mu, logvar = self.vae.encode_partial(x, 0.0)
        probs = torch.sigmoid(self.vae.decoder(self.vae.reparameterize(mu, logvar)).float())
        boxes = self.vae.predict_boxes(x, la)
        warped = warp_to_frame(probs, boxes, self.context_box(len(x), x.device), ctx.shape[-1])
        target, weight = context_targets(ctx)
        nll = F.binary_cross_entropy(warped.clamp(1e-5, 1 - 1e-5), target, reduction="none")
        # per sample, in units of 28x28 output pixels (a context pixel is a fraction of one)
        scale = (self.cfg.context_scale * S / ctx.shape[-1]) ** -2
        bce = ((nll * weight).flatten(1).sum(1) * scale).mean()
        kl = kl_to_prior(mu, logvar).mean()
        return {"loss": bce + self.cfg.kl_final * kl, "bce": bce, "kl": kl}


# --------------------------------------------------------------------------- validation
def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1) > 0.5, b.flatten(1) > 0.5
    return (a & b).sum(1).float() / (a | b).sum(1).clamp_min(1).float()


def completion_scores(model: AmodalVAE, ann: AnnotationSet, threshold: float = 0.5, box: str = "predicted",
                      max_instances: Optional[int] = None, seed: int = 0) -> dict:
    """Full / invisible mIoU (protocols A and B, in %) of the model's completions on ``ann``
    (evaluation: reads its amodal labels), on at most ``max_instances`` instances."""
    from ..metrics import evaluate
    insts = list(ann.instances)
    if max_instances and len(insts) > max_instances:
        keep = np.random.default_rng(seed).choice(len(insts), max_instances, replace=False)
        insts = [insts[k] for k in sorted(keep)]
    preds = complete_instances(model, insts, box=box, threshold=threshold)
    o = evaluate(ann.subset(insts), preds)["overall"]
    return {"A_full": o["A"]["full"], "A_inv": o["A"]["invisible"] or 0.0,
            "B_full": o["B"]["full"], "B_inv": o["B"]["invisible"] or 0.0}


def make_eval_fn(stage: int, cfg: VAEConfig, held: dict, val_ann: Optional[AnnotationSet], seed: int):
    """The validation callback of a stage: losses/IoU on held-out crops, and completion mIoU on
    ``val_ann`` (stages 2 and 3, when it has amodal labels)."""
    dev_cache: dict = {}

    def on(model, key):
        dev = next(model.parameters()).device
        if (key, dev) not in dev_cache:
            dev_cache[(key, dev)] = held[key].to(dev)
        return dev_cache[(key, dev)]

    def fixed_sim(model):
        """The same simulated occlusions at every evaluation."""
        if "sim" not in dev_cache:
            dev = next(model.parameters()).device
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(seed + 1)
                full, wh = _f(on(model, "full")), on(model, "full_wh")
                k = torch.randint(len(held["occ"]), (len(full),))
                sim = simulate_occlusions(full, wh, _f(held["occ"][k].to(dev)), held["occ_wh"][k].to(dev),
                                          cfg.max_occluded, cfg.unoccluded_prob)
            dev_cache["sim"] = (sim, F.avg_pool2d(full.unsqueeze(1), SIM // S)[:, 0])
        return dev_cache["sim"]

    def evaluate(model: nn.Module, step: int) -> dict:
        vae = model.vae
        out: dict = {}
        if stage == 1:
            y = F.avg_pool2d(_f(on(model, "full")).unsqueeze(1), SIM // S)[:, 0]
            mu, logvar = vae.encoder(y.unsqueeze(1))
            logits = vae.decoder(mu)
            out.update(val_bce=bce_sum(logits, y).mean(), val_kl=kl_to_prior(mu, logvar).mean(),
                       val_recon_iou=100 * _iou(torch.sigmoid(logits), y).mean())
        elif stage == 2:
            sim, y = fixed_sim(model)
            vis_frame = torch.zeros(len(y), dtype=torch.bool, device=y.device)
            for name, amodal in (("vis", vis_frame), ("gtbox", ~vis_frame)):
                x = partial_inputs(sim, amodal)
                mu, logvar = vae.encode_partial(x, amodal.float())
                probs = torch.sigmoid(vae.decoder(mu))
                if name == "vis":
                    pred = vae.predict_boxes(x, sim["log_aspect"])
                    # the prediction, in its predicted box, seen in the true full frame
                    placed = warp_to_frame(probs, pred, sim["full_rel"], S)
                    out["val_iou_predbox"] = 100 * _iou(placed, y).mean()
                    out["val_box_l1"] = (box_to_params(pred) - box_to_params(sim["full_rel"])).abs().mean()
                    out["val_bce"] = bce_sum(torch.logit(probs.clamp(1e-6, 1 - 1e-6)), y).mean()
                else:
                    out["val_iou_gtbox"] = 100 * _iou(probs, y).mean()
        else:
            x, ctx = _f(on(model, "vis")), _f(on(model, "ctx"))
            mu, logvar = vae.encode_partial(x, 0.0)
            probs = torch.sigmoid(vae.decoder(mu))
            boxes = vae.predict_boxes(x, on(model, "log_aspect"))
            warped = warp_to_frame(probs, boxes, model.context_box(len(x), x.device), ctx.shape[-1])
            target, weight = context_targets(ctx)
            nll = F.binary_cross_entropy(warped.clamp(1e-5, 1 - 1e-5), target, reduction="none")
            scale = (cfg.context_scale * S / ctx.shape[-1]) ** -2
            out["val_bce_known"] = ((nll * weight).flatten(1).sum(1) * scale).mean()
        if stage >= 2 and val_ann is not None and val_ann.has_amodal:
            s = completion_scores(vae, val_ann, cfg.eval_threshold, "predicted", cfg.eval_max_instances, seed)
            out.update({f"val_{k}": v for k, v in s.items()})
        return {k: float(v) for k, v in out.items()}

    return evaluate


# --------------------------------------------------------------------------- running the stages
def stage_path(run_dir, stage: int) -> Path:
    return Path(run_dir) / f"stage{stage}.pt"


def stage_done(run_dir, stage: int) -> bool:
    p = stage_path(run_dir, stage)
    if not p.is_file():
        return False
    return bool(E.load_checkpoint(p).get("done"))


def _vae_from_checkpoint(path: Path, device) -> tuple[AmodalVAE, dict]:
    ck = E.load_checkpoint(path, map_location="cpu")
    mcfg = ck.get("extra", {}).get("model")
    if mcfg is None:
        raise ValueError(f"{path}: not an Amodal-VAE checkpoint (no model configuration)")
    vae = AmodalVAE(**mcfg)
    vae.load_state_dict(ck["model"])
    return vae.to(device), ck


def train_stage(stage: int, data: dict, run_dir, cfg: VAEConfig, seed: int = 0, device="auto",
                resume: bool = True, val_ann: Optional[AnnotationSet] = None, progress: bool = True,
                dist: Optional[E.Dist] = None) -> tuple[AmodalVAE, list]:
    """Train one stage into ``run_dir/stage{k}.pt``, starting from stage k-1's checkpoint."""
    run_dir = Path(run_dir)
    dist = dist or E.setup_distributed(device)
    E.seed_everything(seed + 1000 * stage + dist.rank)
    if stage == 1:
        vae = AmodalVAE(cfg.width, cfg.latent_dim, cfg.hidden)
    else:
        prev = stage_path(run_dir, stage - 1)
        if not stage_done(run_dir, stage - 1):
            raise FileNotFoundError(f"stage {stage} starts from stage {stage - 1}'s finished checkpoint, "
                                    f"and {prev} is {'unfinished' if prev.is_file() else 'missing'}: "
                                    f"train stage {stage - 1} first")
        vae, _ = _vae_from_checkpoint(prev, "cpu")
        if stage == 2:
            vae.init_partial_from_full()
    if stage in (1, 2):
        tr_idx, val_idx = _split(len(data["full"]), cfg.val_fraction, seed)
        train_data = {"full": data["full"][tr_idx], "full_wh": data["full_wh"][tr_idx]}
        held = {"full": data["full"][val_idx], "full_wh": data["full_wh"][val_idx]}
        if stage == 2:
            held.update(occ=data["occ"], occ_wh=data["occ_wh"])
    else:
        tr_idx, val_idx = _split(len(data["vis"]), cfg.val_fraction, seed)
        train_data = {k: data[k][tr_idx] for k in ("vis", "ctx", "log_aspect")}
        held = {k: data[k][val_idx] for k in ("vis", "ctx", "log_aspect")}
    module = {1: Stage1, 2: Stage2, 3: Stage3}[stage]
    mod = module(vae, cfg, data["occ"], data["occ_wh"]) if stage == 2 else module(vae, cfg)
    opt = torch.optim.Adam(mod.parameters_to_train(), lr=cfg.lr(stage))
    trainer = E.Trainer(
        mod, opt, train_data, batch_size=cfg.batch_size, steps=cfg.steps(stage), run_dir=run_dir,
        name=f"stage{stage}", stage=str(stage), seed=seed + stage,
        step_fn=lambda m, b, s: m(b, s), eval_fn=make_eval_fn(stage, cfg, held, val_ann, seed),
        eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
        config=asdict(cfg), extra={"model": vae.config, "stage": stage, "seed": seed},
        dist=dist, resume=resume, progress=progress, save_module=vae)
    history = trainer.fit()
    return vae.eval(), history


def train_amodal_vae(annotations, out_dir, profile: Optional[str] = None, stage: Optional[int] = None,
                     seed: int = 0, device="auto", resume: bool = True, val_annotations=None,
                     progress: bool = True, upto: Optional[int] = None, **overrides) -> dict:
    """Train Amodal-VAE's stages into ``out_dir`` (SPEC "The command line": ``amodal train``).

    ``annotations``: a path or AnnotationSet (any format; only its modal view is used).
    ``stage``: one stage, or None for all in order (up to stage ``upto`` if given), skipping
    those already finished (an unfinished one resumes when ``resume``). ``overrides``: any :class:`VAEConfig` field, e.g.
    ``stage1_steps=200``. ``val_annotations``: for validation metrics (completion mIoU needs its
    amodal labels; training never reads them). Returns {"model", "history": {stage: [...]},
    "seconds": {stage: s}, "config"}.
    """
    cfg = VAEConfig.from_profile(profile, **overrides)
    out_dir = Path(out_dir)
    stages = [int(stage)] if stage is not None else [s for s in STAGES if upto is None or s <= upto]
    if any(s not in STAGES for s in stages):
        raise ValueError(f"stage must be 1, 2 or 3, got {stage}")
    todo = [s for s in stages if not stage_done(out_dir, s)]
    dist = E.setup_distributed(device)
    val_ann = as_annotations(val_annotations) if val_annotations is not None else None
    result: dict = {"history": {}, "seconds": {}, "config": asdict(cfg), "model": None}
    data = prepare(annotations, todo, cfg) if todo else {}
    for s in stages:
        if s not in todo:
            if dist.is_main and progress:
                print(f"stage {s}: {stage_path(out_dir, s)} is finished; skipped")
            result["history"][s] = E.load_checkpoint(stage_path(out_dir, s))["history"]
            continue
        t0 = time.perf_counter()
        _, hist = train_stage(s, data, out_dir, cfg, seed=seed, device=device, resume=resume, val_ann=val_ann,
                              progress=progress, dist=dist)
        result["history"][s] = hist
        result["seconds"][s] = time.perf_counter() - t0
    result["model"] = load_model(out_dir, dist.device)
    return result


def load_model(run_dir_or_file, device="auto", stage: Optional[int] = None) -> AmodalVAE:
    """The Amodal-VAE of a run directory's latest stage checkpoint (or of a ``.pt`` file), in eval mode."""
    p = Path(run_dir_or_file)
    dev = E.resolve_device(device)
    if p.is_dir() or not p.suffix:
        cands = [stage_path(p, stage)] if stage else [stage_path(p, s) for s in reversed(STAGES)]
        found = [c for c in cands if c.is_file()]
        if not found:
            raise FileNotFoundError(f"{cands[-1] if stage is None else cands[0]}: no Amodal-VAE checkpoint "
                                    f"({', '.join(c.name for c in cands)}) in {p}")
        p = found[0]
    vae, ck = _vae_from_checkpoint(p, dev)
    vae.trained_stage = int(ck.get("extra", {}).get("stage", 0))
    vae.checkpoint = str(p)
    return vae.eval()


def save_threshold(run_dir, threshold: float, **info) -> Path:
    """Store a validation sweep's threshold as ``run_dir/threshold.json`` (notebook 04 does), where
    ``amodal complete --method amodal-vae`` finds it when no ``--threshold`` is given."""
    from ..io import atomic_write_json
    path = Path(run_dir) / "threshold.json"
    atomic_write_json(path, {"threshold": float(threshold), **info})
    return path


def run_threshold(run_dir) -> Optional[float]:
    """The threshold a validation sweep stored in ``run_dir/threshold.json`` (None if none)."""
    p = Path(run_dir) / "threshold.json"
    if p.is_file():
        return float(json.loads(p.read_text())["threshold"])
    return None


# --------------------------------------------------------------------------- command line
def cli_train(ns) -> None:
    """``amodal train --model amodal-vae``: ns has annotations, images, out, profile, seed, device, stage."""
    seed = getattr(ns, "seed", None)
    res = train_amodal_vae(ns.annotations, ns.out, profile=getattr(ns, "profile", None),
                           stage=getattr(ns, "stage", None), seed=0 if seed is None else seed,
                           device=getattr(ns, "device", None) or "auto")
    if E.setup_distributed(getattr(ns, "device", None) or "auto").is_main:
        for s, sec in res["seconds"].items():
            print(f"stage {s}: trained in {sec:.0f} s -> {stage_path(ns.out, s)}")


def cli_complete(ns) -> dict:
    """``amodal complete --method amodal-vae``: {annotation id: RLE}.

    ns has annotations, checkpoint, box ("predicted" | "amodal-gt"), threshold (None: the run's
    stored validation threshold, else 0.5), samples (K > 0: the mask is the mean of K posterior
    samples' probabilities, thresholded), device."""
    ann = as_annotations(ns.annotations)
    model = load_model(ns.checkpoint, getattr(ns, "device", None) or "auto")
    thr = getattr(ns, "threshold", None)
    if thr is None:
        ck = Path(ns.checkpoint)
        stored = run_threshold(ck if ck.is_dir() else ck.parent)
        thr = 0.5 if stored is None else stored
        print(f"threshold {thr:g} ({'threshold.json beside the checkpoint' if stored is not None else 'default; no threshold.json'})",
              file=sys.stderr)
    box = getattr(ns, "box", None) or "predicted"
    k = int(getattr(ns, "samples", 0) or 0)
    if not k:
        return complete_instances(model, ann.instances, box=box, threshold=thr)
    return complete_instances(model, ann.instances, box=box, threshold=thr, samples=k,
                              return_details=True).sample_mean_masks()
