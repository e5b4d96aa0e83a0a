"""Amodal-VAE's three training stages: their settings, data, losses and what each reports on
held-out data (supplementary 3.1; ``docs/design.md``, "Training stages").

- :class:`VAEConfig`: every setting (the profiles' "vae" keys); :func:`kl_weight` (supplementary
  eq. (1)) and the loss terms.
- :func:`prepare`: every crop a run needs, cut once into uint8 tensors from the modal view only.
- :class:`Stage1` (shape prior), :class:`Stage2` (partial encoder and transformer on simulated
  occlusions, :mod:`amodal_lib.train.occlusions`), :class:`Stage3` (known-pixel likelihood on real
  occlusions, anchored to stage 2's posterior): modules whose ``forward`` is one step's losses on
  the shared engine.
- :func:`make_eval_fn`: a stage's evaluation: its held-out crops' losses, and (stages 2 and 3)
  the completion score on the run's validation sets (:mod:`amodal_lib.train.validation`), which
  selects the checkpoint.

Running the stages into a run folder is :mod:`amodal_lib.train.amodal_vae`'s.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import as_annotations, crops as C
from ..errors import ArgumentError, DataError
from ..data.corruption import corrupt_crops
from ..models.amodal_vae import S, AmodalVAE, box_to_params, warp_to_frame
from ..predict.amodal_vae import complete_instances, log_aspect_of
from ..profiles import get_profile
from .occlusions import (corrupt_partial, geometry_of, partial_inputs, sim_geometry,
                         simulate_occlusions)
from .validation import Validation

STAGES = (1, 2, 3)
SIM = 56  # side of the pre-cropped full masks that stage 2 composites occlusions on (2 x 28)


# --------------------------------------------------------------------------- configuration
@dataclass
class VAEConfig:
    """Every setting of the three stages. ``from_profile`` reads ``profiles.py``'s "vae" keys."""
    width: int = 32
    latent_dim: int = 64
    hidden: int = 256
    geometry: bool = False  # the transformer also sees where the visible box lies in the image (measured: no gain)
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
    # the reconstruction's pixels that the simulated occluder hides weigh 1 + hidden_weight (the
    # paper: 0, every pixel alike). Completion joins the decoded shape with the visible mask, so the
    # hidden part is all it adds; on the real file 3 raised invisible mIoU on clean and noisy masks
    # alike (docs/design.md, "Training stages")
    hidden_weight: float = 3.0
    # segmenter masks (docs/design.md, "Segmenter masks"). Off by default: on the real file models
    # trained on corrupted masks completed clean masks worse and corrupted ones no better than the
    # default (the soft visible evidence at completion time is what helps). With train_noise > 0
    # stages 2 and 3 corrupt the partial encoder's input (data/corruption.py's model, strength uniform
    # in [0, train_noise] pixels; a share clean_prob left clean) while the target stays the clean
    # mask; the transformer learns from the clean masks
    train_noise: float = 0.0
    clean_prob: float = 0.4
    noise_from: int = 1000  # stage 2 learns from clean masks first, then from both (its last steps)
    # how segmenter masks are taken, and at what threshold, is chosen on these strengths (pixels): on
    # pasted real instances they leave a visible IoU of about 0.82 and 0.69 per instance (pooled 0.90
    # and 0.82), a poor segmenter and a worse one. Validating at a good and a poor one's (0.75, 1.75)
    # serves a good segmenter's real masks better and the embedded data's harsher masks worse
    # (docs/design.md, "Which strengths mean a good and a poor segmenter"), so these stay
    val_noise: tuple = (1.5, 3.0)
    # stage 3
    stage3_instances: str = "occluded"  # "occluded" (touching others or the border) | "all"
    context_scale: float = 3.0
    context_size: int = 56
    anchor_weight: float = 1.0  # KL(q(z|y_hat) || stage 2's q(z|y_hat)): stage 3 stays near stage 2
    # all stages
    flip: bool = True  # random horizontal flips
    val_fraction: float = 0.05  # held-out crops for the stages' own losses
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 25
    # validation (checkpoint selection, threshold): train/validation.py
    holdout_fraction: float = 0.1  # images held out of a file that comes without a validation file
    val_max_targets: Optional[int] = 600  # isolated instances that pasted occlusions are built on
    eval_max_instances: Optional[int] = 1000  # instances of a labelled validation set
    eval_threshold: float = 0.5  # binarisation while selecting checkpoints
    frame: str = "fit"  # how completions find the full-object frame: "fit" | "transformer" (the paper's)
    select: bool = True  # stages 2 and 3 end with their best validation checkpoint
    variants: tuple = ("transformer",)  # other frames that get a checkpoint and threshold of their own
    thresholds: tuple = tuple(round(0.05 * i, 2) for i in range(1, 20))  # swept for threshold.json

    @classmethod
    def from_profile(cls, profile: Optional[str] = None, **overrides) -> "VAEConfig":
        prof = get_profile(profile)
        vals = dict(prof.get("vae", {}))
        if "thresholds" in prof.get("eval", {}):
            vals.setdefault("thresholds", tuple(prof["eval"]["thresholds"]))
        vals.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(vals) - names)
        if unknown:
            raise ArgumentError(f"unknown Amodal-VAE setting(s): {', '.join(unknown)}")
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


def bce_sum(logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Bernoulli negative log-likelihood per sample, summed over the 28x28 pixels (each times
    ``weight``, of the same shape, where given)."""
    nll = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (nll if weight is None else nll * weight).flatten(1).sum(1)


def pooled(masks: torch.Tensor) -> torch.Tensor:
    """(B, SIM, SIM) masks as the decoder's (B, 28, 28) targets: each pixel the share of it covered."""
    return F.avg_pool2d(masks.unsqueeze(1), SIM // S)[:, 0]


def hidden_share(y: torch.Tensor, partial: torch.Tensor) -> torch.Tensor:
    """(B, 28, 28) share of each pixel of the full masks ``y`` (28x28) that the occluder hides in
    ``partial`` ((B, SIM, SIM), the full mask times the occluder's complement, in the same frame)."""
    return (y - pooled(partial)).clamp_min(0)


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
    ``full_wh``: their box sizes in pixels, ``full_box``: (N, 4) those boxes (xyxy, image pixels),
    ``full_hw``: (N, 2) their images' sizes; ``occ`` / ``occ_wh``: the visible masks of all
    instances (the occluder pool); ``vis``: (M, 28, 28) visible-box crops of the stage-3
    instances, ``ctx``: (M, 3, C, C) their context crops, ``log_aspect``: (M,), ``vis_box`` /
    ``vis_hw``: their visible boxes and image sizes.
    """
    cfg = cfg or VAEConfig()
    ann = as_annotations(annotations).modal_view()  # from here on, no amodal label exists
    out: dict = {"n_instances": len(ann)}
    if 1 in stages or 2 in stages:
        unocc = ann.unoccluded()
        if not unocc:
            raise DataError(f"{ann.path}: no unoccluded instance (touching neither the border nor another "
                             "instance) to learn the shape prior from")
        out["full"] = _u8(C.crop_masks(unocc, "visible", "visible", size=SIM))
        out["full_wh"] = _wh(unocc)
        out["full_box"], out["full_hw"] = C.frame_boxes(unocc, "visible"), _hw(unocc)
    if 2 in stages:
        allx = list(ann.instances)
        out["occ"] = _u8(C.crop_masks(allx, "visible", "visible", size=SIM))
        out["occ_wh"] = _wh(allx)
    if 3 in stages:
        insts = [i for i in ann.instances if cfg.stage3_instances == "all" or i.occluders or i.touches_border]
        if not insts:
            raise DataError(f"{ann.path}: no instance touches another one or the border: nothing for stage 3")
        out["vis"] = _u8(C.crop_masks(insts, "visible", "visible", size=S))
        out["ctx"] = _u8(C.context_crops(ann, insts, scale=cfg.context_scale, size=cfg.context_size)[0])
        out["vis_box"], out["vis_hw"] = C.frame_boxes(insts, "visible"), _hw(insts)
        out["log_aspect"] = log_aspect_of(out["vis_box"])
    return out


def _hw(instances) -> torch.Tensor:
    return torch.tensor([[i.height, i.width] for i in instances], dtype=torch.float32)


def _wh(instances) -> torch.Tensor:
    return torch.tensor([[i.visible_box[2], i.visible_box[3]] for i in instances], dtype=torch.float32)


def _split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train / held-out indices (at least one of each when n >= 2)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    k = min(max(1, int(round(n * fraction))), n - 1) if n >= 2 else 0
    return perm[k:], perm[:k]


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
        y = pooled(_f(batch["full"]))
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
        flipped = torch.rand(B, device=dev) < 0.5 if self.cfg.flip else torch.zeros(B, dtype=torch.bool, device=dev)
        full = _flip(full, flipped)
        pool, pool_wh = self.pool(dev)
        k = torch.randint(len(pool), (B,), device=dev)
        occ = _f(pool[k])
        if self.cfg.flip:
            occ = _flip(occ, torch.rand(B, device=dev) < 0.5)
        sim = simulate_occlusions(full, batch["full_wh"], occ, pool_wh[k], self.cfg.max_occluded,
                                  self.cfg.unoccluded_prob)
        sim["geometry"] = sim_geometry(sim, batch["full_box"], batch["full_hw"], flipped)
        clean = sim
        strength = training_noise(self.cfg, B, dev) if self._step >= self.cfg.noise_from else None
        if strength is not None:
            sim = corrupt_partial(sim, batch["full_wh"], strength)
            sim["geometry"] = sim_geometry(sim, batch["full_box"], batch["full_hw"], flipped)
        amodal = torch.rand(B, device=dev) < self.cfg.amodal_frame_prob
        y = pooled(full)
        return sim, clean, amodal, y

    _step = 0

    def forward(self, batch: dict, step: int) -> dict:
        self._step = step
        sim, clean, amodal, y = self.simulate(batch)
        x = partial_inputs(sim, amodal)
        mu, logvar = self.vae.encode_partial(x, amodal.float())
        logits = self.vae.decoder(self.vae.reparameterize(mu, logvar))
        # the hidden pixels weigh 1 + hidden_weight: the visible ones are given at completion time
        weight = 1 + self.cfg.hidden_weight * hidden_share(y, clean["partial"]) if self.cfg.hidden_weight else None
        bce = bce_sum(logits, y, weight).mean()
        if self.cfg.match_posterior:
            with torch.no_grad():
                mu_f, logvar_f = self.vae.encoder(y.unsqueeze(1))
            kl = kl_between(mu, logvar, mu_f, logvar_f).mean()
        else:
            kl = kl_to_prior(mu, logvar).mean()
        # the transformer learns from the clean visible-frame masks (corrupted ones taught it outliers)
        x_clean = x if clean is sim else partial_inputs(clean, amodal)
        pred = self.vae.transformer(x_clean.unsqueeze(1), clean["log_aspect"], clean["geometry"])
        target = box_to_params(clean["full_rel"])
        vis = (~amodal).float()
        box = (F.smooth_l1_loss(pred, target, reduction="none", beta=0.1).sum(1) * vis).sum() / vis.sum().clamp_min(1)
        return {"loss": bce + self.cfg.kl_final * kl + self.cfg.box_weight * box, "bce": bce, "kl": kl,
                "box": box, "occluded": sim["occluded"].mean()}


def training_noise(cfg: VAEConfig, n: int, device) -> Optional[torch.Tensor]:
    """(n,) segmenter-noise strengths in pixels for one batch (uniform in [0, ``cfg.train_noise``], a
    share ``cfg.clean_prob`` exactly 0), or None when the model is not trained on noisy masks."""
    if cfg.train_noise <= 0:
        return None
    s = torch.rand(n, device=device) * cfg.train_noise
    return torch.where(torch.rand(n, device=device) < cfg.clean_prob, torch.zeros_like(s), s)


def context_targets(ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 3's target and weight from context crops (N, 3, C, C): target = the visible mask;
    weight 1 on known pixels (inside the image, and either visible or covered by no other
    instance), 0 under another instance's visible mask and outside the image."""
    vis, others, inside = ctx[:, 0], ctx[:, 1], ctx[:, 2]
    known = (inside > 0.5) & ~((others > 0.5) & (vis < 0.5))
    return vis, known.float()


class Stage3(_Stage):
    """Fine-tuning on real occluded instances: likelihood over the known pixels of the context frame,
    and (``anchor_weight``) a KL term that keeps the posterior near stage 2's, whose partial
    encoder is kept frozen beside it."""
    trainable = ("partial_encoder", "transformer")

    def __init__(self, vae: AmodalVAE, cfg: VAEConfig):
        super().__init__(vae, cfg)
        self.anchor = copy.deepcopy(vae.partial_encoder).eval()
        for p in self.anchor.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.anchor.eval()
        return self

    def context_box(self, n: int, device) -> torch.Tensor:
        h = self.cfg.context_scale / 2
        return torch.tensor([[0.5 - h, 0.5 - h, 0.5 + h, 0.5 + h]], device=device).expand(n, 4)

    def forward(self, batch: dict, step: int) -> dict:
        x, ctx, la = _f(batch["vis"]), _f(batch["ctx"]), batch["log_aspect"]
        f = (torch.rand(len(x), device=x.device) < 0.5) if self.cfg.flip else None
        if f is not None:
            x, ctx = _flip(x, f), _flip(ctx, f)
        strength = training_noise(self.cfg, len(x), x.device)
        x_clean = x
        if strength is not None:  # the input is a segmenter's mask; the known pixels stay the clean ones
            wh = (batch["vis_box"][:, 2:] - batch["vis_box"][:, :2]).clamp_min(1.0)
            x = corrupt_crops(x, S / wh[:, 0], S / wh[:, 1], strength)
        mu, logvar = self.vae.encode_partial(x, 0.0)
        probs = torch.sigmoid(self.vae.decoder(self.vae.reparameterize(mu, logvar)).float())
        boxes = self.vae.predict_boxes(x_clean, la, geometry_of(batch["vis_box"], batch["vis_hw"], f))
        warped = warp_to_frame(probs, boxes, self.context_box(len(x), x.device), ctx.shape[-1])
        target, weight = context_targets(ctx)
        nll = F.binary_cross_entropy(warped.clamp(1e-5, 1 - 1e-5), target, reduction="none")
        # per sample, in units of 28x28 output pixels (a context pixel is a fraction of one)
        scale = (self.cfg.context_scale * S / ctx.shape[-1]) ** -2
        bce = ((nll * weight).flatten(1).sum(1) * scale).mean()
        kl = kl_to_prior(mu, logvar).mean()
        loss = bce + self.cfg.kl_final * kl
        out = {"bce": bce, "kl": kl}
        if self.cfg.anchor_weight:
            with torch.no_grad():
                mu2, logvar2 = self.anchor(torch.cat([x.unsqueeze(1), torch.zeros_like(x).unsqueeze(1)], 1))
            out["anchor_kl"] = kl_between(mu, logvar, mu2, logvar2).mean()
            loss = loss + self.cfg.anchor_weight * out["anchor_kl"]
        return {"loss": loss, **out}


# --------------------------------------------------------------------------- evaluation
def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1) > 0.5, b.flatten(1) > 0.5
    return (a & b).sum(1).float() / (a | b).sum(1).clamp_min(1).float()


def variant_frames(cfg: VAEConfig) -> tuple:
    """The frames other than the run's own (``cfg.frame``) that are selected on validation for
    themselves: each gets the checkpoint its own score picks among every evaluation of stages 2 and
    3, and its own threshold (:func:`amodal_lib.train.amodal_vae.write_variants`)."""
    return tuple(f for f in cfg.variants if f != cfg.frame) if cfg.select else ()


def variant_key(frame: str) -> str:
    """The prefix of a variant's validation scores in a stage's history (``variant_transformer_score``,
    ``variant_transformer_<set>_A_full`` ...; the run's own are ``val_...``)."""
    return f"variant_{frame}"


def make_eval_fn(stage: int, cfg: VAEConfig, held: dict, validation: Optional[Validation], seed: int):
    """The validation callback of a stage: losses/IoU on held-out crops, and (stages 2 and 3) the
    completion mIoU of every validation set (``val_<set>_A_full`` ...) and the selection score
    ``val_score`` (:class:`amodal_lib.train.validation.Validation`), in the run's frame; the same for
    each of :func:`variant_frames` under :func:`variant_key`'s prefix."""
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
                sim["geometry"] = sim_geometry(sim, on(model, "full_box"), on(model, "full_hw"))
            dev_cache["sim"] = (sim, pooled(full))
        return dev_cache["sim"]

    def evaluate(model: nn.Module, step: int) -> dict:
        vae = model.vae
        out: dict = {}
        if stage == 1:
            y = pooled(_f(on(model, "full")))
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
                    pred = vae.predict_boxes(x, sim["log_aspect"], sim["geometry"])
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
            boxes = vae.predict_boxes(x, on(model, "log_aspect"), geometry_of(on(model, "vis_box"), on(model, "vis_hw")))
            warped = warp_to_frame(probs, boxes, model.context_box(len(x), x.device), ctx.shape[-1])
            target, weight = context_targets(ctx)
            nll = F.binary_cross_entropy(warped.clamp(1e-5, 1 - 1e-5), target, reduction="none")
            scale = (cfg.context_scale * S / ctx.shape[-1]) ** -2
            out["val_bce_known"] = ((nll * weight).flatten(1).sum(1) * scale).mean()
        if stage >= 2 and validation is not None:
            # the sets scored here are the clean ones (annotations: completed as truth, no noise to estimate)
            for frame in (cfg.frame, *variant_frames(cfg)):
                s = validation.score(lambda a: complete_instances(vae, a.instances, frame=frame, context=a,
                                                                  threshold=cfg.eval_threshold))
                prefix = "val_" if frame == cfg.frame else f"{variant_key(frame)}_"
                out.update({f"{prefix}{k}": v for k, v in s.items()})
        return {k: float(v) for k, v in out.items()}

    return evaluate
