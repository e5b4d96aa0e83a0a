"""SPADE (GauGAN; Park et al., CVPR 2019) conditioned on one object's full mask: the networks and
their losses, for changing an instance's pose (supplementary 3.4, Fig 10).

The paper renders an instance with GauGAN whose SPADE layers take the single-channel full mask:
given the mask of a new pose, the generator draws the object in it. Here (``docs/design.md``,
"Changing an instance's pose"):

- :class:`SPADE`: a parameter-free normalisation (batch norm by default, as GauGAN's synchronised
  batch norm; instance norm as an option) whose scale and bias are predicted **per pixel** from
  the mask, resized to the features' resolution (area averaging) by a shared 3x3 convolution and
  ReLU, then one 3x3 convolution each for ``gamma`` and ``beta``: ``norm(x) * (1 + gamma) + beta``.
- :class:`SPADEResBlock`: GauGAN's residual block (SPADE, leaky ReLU 0.2, 3x3 convolution, twice;
  a learned SPADE + 1x1 shortcut when the width changes), spectral norm on its convolutions.
- :class:`SPADEGenerator`: GauGAN's generator for an ``S`` x ``S`` crop: a linear map of the
  appearance code to a ``start`` x ``start`` grid, a head block, then one x2 nearest upsampling
  and one block per level up to ``S``; widths ``ngf * min(max_mult, 2 ** (levels - k))`` at
  level ``k`` (at 256 px with ``start`` 8, ``ngf`` 64 and ``max_mult`` 16, GauGAN's widths). Its
  output has four channels: RGB (tanh, in [-1, 1]) and an **alpha** logit, the object's
  silhouette, so that the rendering can be composited and its silhouette compared with the mask.
- :class:`AppearanceEncoder`: GauGAN's style (``ConvEncoder``) encoder: stride-2 3x3
  convolutions with instance norm down to 4x4, then two linear heads, the mean and log variance
  of a Normal appearance code. It sees the object alone (its pixels inside the mask, the rest
  neutral grey), so the code carries appearance and the generator takes the pose from the mask.
- :class:`MultiscaleDiscriminator`: pix2pixHD/GauGAN's ``num_d`` PatchGAN discriminators
  (4x4 convolutions, spectral and instance norm, leaky ReLU), each on a 2x smaller image than the
  last, on the image concatenated with the mask; each returns its intermediate features too.
- Losses: hinge GAN (:func:`hinge_d_loss`, :func:`hinge_g_loss`), discriminator feature matching
  (:func:`feature_matching`), the KL of the appearance code (:func:`kl_normal`), and the VGG19
  perceptual term (:class:`VGGLoss`) **only from a local weights file** (nothing is downloaded);
  :func:`phase_losses` combines them for one training phase (weights :data:`LOSS_WEIGHTS`).

Images are (N, 3, S, S) in [-1, 1]; masks (N, 1, S, S) or (N, S, S) in [0, 1].
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import CheckpointError
from .weights import load_checkpoint

# The weights of the generator's loss terms (GauGAN's, and the two of ours: L1 and the alpha's
# silhouette); a profile's "spade" section or the training call overrides them.
LOSS_WEIGHTS = {"lambda_feat": 10.0, "lambda_vgg": 10.0, "lambda_kl": 0.05, "lambda_l1": 10.0, "lambda_alpha": 1.0}


def _sn(layer: nn.Module, on: bool = True) -> nn.Module:
    return spectral_norm(layer) if on else layer


def as_mask(mask: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) float from (N, H, W) or (N, 1, H, W)."""
    m = mask.float()
    return m[:, None] if m.dim() == 3 else m


def resize_mask(mask: torch.Tensor, size) -> torch.Tensor:
    """The mask at a feature map's size: area averaging (a coarse pixel holds the share of the
    object in it), nearest replication when enlarging."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask, size=tuple(size), mode="area")


# --------------------------------------------------------------------------- SPADE
class SPADE(nn.Module):
    """Spatially-adaptive normalisation: ``norm(x) * (1 + gamma(mask)) + beta(mask)``, per pixel."""

    def __init__(self, channels: int, label_nc: int = 1, hidden: int = 128, norm: str = "batch"):
        super().__init__()
        if norm == "batch":
            self.norm = nn.BatchNorm2d(channels, affine=False)
        elif norm == "instance":
            self.norm = nn.InstanceNorm2d(channels, affine=False)
        else:
            raise ValueError(f"norm must be 'batch' or 'instance', got {norm!r}")
        self.shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU(inplace=True))
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.shared(resize_mask(as_mask(mask).to(x.dtype), x.shape[-2:]))
        return self.norm(x) * (1 + self.gamma(a)) + self.beta(a)


class SPADEResBlock(nn.Module):
    """GauGAN's residual block: [SPADE, leaky ReLU, conv 3x3] x 2, plus a (learned) shortcut."""

    def __init__(self, fin: int, fout: int, label_nc: int = 1, hidden: int = 128, norm: str = "batch",
                 spectral: bool = True):
        super().__init__()
        fmid = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = _sn(nn.Conv2d(fin, fmid, 3, padding=1), spectral)
        self.conv_1 = _sn(nn.Conv2d(fmid, fout, 3, padding=1), spectral)
        self.norm_0 = SPADE(fin, label_nc, hidden, norm)
        self.norm_1 = SPADE(fmid, label_nc, hidden, norm)
        if self.learned_shortcut:
            self.conv_s = _sn(nn.Conv2d(fin, fout, 1, bias=False), spectral)
            self.norm_s = SPADE(fin, label_nc, hidden, norm)

    def forward(self, x, mask):
        xs = self.conv_s(self.norm_s(x, mask)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, mask), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, mask), 0.2))
        return xs + dx


def _levels(crop: int, start: int) -> int:
    n = math.log2(crop / start) if crop > 0 and start > 0 else -1
    if n < 0 or n != int(n):
        raise ValueError(f"crop {crop} must be start ({start}) times a power of two")
    return int(n)


class SPADEGenerator(nn.Module):
    """Appearance code + mask -> (RGB in [-1, 1], alpha logits): see the module docstring."""

    def __init__(self, crop: int = 64, ngf: int = 32, z_dim: int = 64, start: int = 4, max_mult: int = 16,
                 spade_hidden: int = 64, norm: str = "batch", label_nc: int = 1, spectral: bool = True):
        super().__init__()
        n = _levels(crop, start)
        self.start, self.z_dim = start, z_dim
        self.widths = [ngf * min(max_mult, 2 ** (n - k)) for k in range(n + 1)]
        self.fc = nn.Linear(z_dim, self.widths[0] * start * start)
        self.head = SPADEResBlock(self.widths[0], self.widths[0], label_nc, spade_hidden, norm, spectral)
        self.ups = nn.ModuleList(SPADEResBlock(self.widths[k - 1], self.widths[k], label_nc, spade_hidden, norm,
                                               spectral) for k in range(1, n + 1))
        self.out = nn.Conv2d(self.widths[-1], 4, 3, padding=1)

    def forward(self, mask: torch.Tensor, z: torch.Tensor):
        m = as_mask(mask)
        x = self.fc(z).view(len(z), self.widths[0], self.start, self.start)
        x = self.head(x, m)
        for block in self.ups:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"), m)
        y = self.out(F.leaky_relu(x, 0.2))
        return torch.tanh(y[:, :3]), y[:, 3]


class AppearanceEncoder(nn.Module):
    """GauGAN's style encoder: the object's image -> (mu, logvar) of its appearance code."""

    def __init__(self, crop: int = 64, ndf: int = 32, z_dim: int = 64, max_mult: int = 8, spectral: bool = True):
        super().__init__()
        n = _levels(crop, 4)
        layers, cin = [], 3
        for k in range(n):
            cout = ndf * min(max_mult, 2 ** k)
            layers += [_sn(nn.Conv2d(cin, cout, 3, stride=2, padding=1), spectral), nn.InstanceNorm2d(cout, affine=False),
                       nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        self.net = nn.Sequential(*layers)
        self.mu = nn.Linear(cin * 16, z_dim)
        self.logvar = nn.Linear(cin * 16, z_dim)

    def forward(self, image: torch.Tensor):
        h = self.net(image).flatten(1)
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)


class PatchDiscriminator(nn.Module):
    """pix2pixHD's NLayerDiscriminator with GauGAN's spectral instance norm; returns every
    layer's output (features for matching, then the patch scores)."""

    def __init__(self, in_ch: int, ndf: int = 64, n_layers: int = 4):
        super().__init__()
        blocks = [nn.Sequential(_sn(nn.Conv2d(in_ch, ndf, 4, 2, 2)), nn.LeakyReLU(0.2, inplace=True))]
        nf = ndf
        for n in range(1, n_layers):
            prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            blocks.append(nn.Sequential(_sn(nn.Conv2d(prev, nf, 4, stride, 2, bias=False)),
                                        nn.InstanceNorm2d(nf, affine=False), nn.LeakyReLU(0.2, inplace=True)))
        blocks.append(nn.Sequential(nn.Conv2d(nf, 1, 4, 1, 2)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the (mask, image) pair at 1x, 1/2x, ... resolution."""

    def __init__(self, in_ch: int = 4, ndf: int = 64, n_layers: int = 4, num_d: int = 2):
        super().__init__()
        self.ds = nn.ModuleList(PatchDiscriminator(in_ch, ndf, n_layers) for _ in range(num_d))

    def forward(self, x) -> list:
        out = []
        for k, d in enumerate(self.ds):
            if k:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(d(x))
        return out


# --------------------------------------------------------------------------- losses
def hinge_d_loss(real: list, fake: list) -> torch.Tensor:
    """The discriminator's hinge loss, mean over scales: relu(1 - D(real)) + relu(1 + D(fake))."""
    return sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake)) / len(real)


def hinge_g_loss(fake: list) -> torch.Tensor:
    """The generator's hinge loss, mean over scales: -D(fake)."""
    return sum(-f[-1].mean() for f in fake) / len(fake)


def feature_matching(real: list, fake: list) -> torch.Tensor:
    """L1 between the discriminators' intermediate features of the real and the fake image (the
    real ones detached), mean over layers and scales (pix2pixHD)."""
    total = 0.0
    for r, f in zip(real, fake):
        total = total + sum(F.l1_loss(fi, ri.detach()) for ri, fi in zip(r[:-1], f[:-1])) / max(len(r) - 1, 1)
    return total / len(real)


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over the code and averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


class VGGLoss(nn.Module):
    """GauGAN's perceptual loss: L1 between VGG19 features (relu1_1 ... relu5_1, weights 1/32 ...
    1) of the fake and the real image. The weights come from a **local** file (a torchvision
    ``vgg19`` state dict, or of its ``features``), loaded with ``weights_only=True``: nothing is
    downloaded. A missing or unusable file is a :class:`~amodal_lib.errors.CheckpointError`."""

    LAYERS = (1, 6, 11, 20, 29)   # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in vgg19().features
    WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

    def __init__(self, weights_file):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers   # vgg19().features, without its classifier
        path = Path(weights_file)
        if not path.is_file():
            raise CheckpointError(path, "no such VGG19 weights file (the perceptual term needs local weights)")
        state = load_checkpoint(path)   # one CheckpointError naming a file that is not a checkpoint
        try:
            state = {k[len("features."):] if k.startswith("features.") else k: v for k, v in state.items()
                     if not k.startswith("classifier.")}
            features = make_layers(cfgs["E"])
            features.load_state_dict(state)
            features = features[: self.LAYERS[-1] + 1]
        except Exception as e:  # any unreadable or mismatched file: one line naming it
            first = (str(e).strip().splitlines() or [""])[0][:120]
            raise CheckpointError(path, f"not usable as VGG19 weights ({type(e).__name__}: {first})") from None
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _feats(self, x):
        h, out = ((x + 1) / 2 - self.mean) / self.std, []
        for k, layer in enumerate(self.features):
            h = layer(h)
            if k in self.LAYERS:
                out.append(h)
        return out

    def forward(self, fake, real):
        return sum(w * F.l1_loss(f, r.detach()) for w, f, r in zip(self.WEIGHTS, self._feats(fake), self._feats(real)))


# --------------------------------------------------------------------------- the renderer
class SpadeRenderer(nn.Module):
    """Encoder, generator and discriminator of one run; ``config`` rebuilds it from a checkpoint.

    :meth:`render` is inference (mask + appearance image -> RGB and alpha); :meth:`forward` is one
    training phase, ``"g"`` or ``"d"`` (:mod:`amodal_lib.train.spade`)."""

    def __init__(self, crop: int = 64, ngf: int = 32, ndf: int = 32, z_dim: int = 64, start: int = 4,
                 max_mult: int = 16, spade_hidden: int = 64, norm: str = "batch", enc_ndf: int = 32,
                 d_layers: int = 4, num_d: int = 2):
        super().__init__()
        self.config = {"crop": int(crop), "ngf": int(ngf), "ndf": int(ndf), "z_dim": int(z_dim), "start": int(start),
                       "max_mult": int(max_mult), "spade_hidden": int(spade_hidden), "norm": str(norm),
                       "enc_ndf": int(enc_ndf), "d_layers": int(d_layers), "num_d": int(num_d)}
        self.crop = int(crop)
        self.generator = SPADEGenerator(crop, ngf, z_dim, start, max_mult, spade_hidden, norm)
        self.encoder = AppearanceEncoder(crop, enc_ndf, z_dim)
        self.discriminator = MultiscaleDiscriminator(4, ndf, d_layers, num_d)

    @staticmethod
    def object_image(rgb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The object alone: ``rgb`` ([-1, 1]) inside the mask, neutral grey (0) outside."""
        return rgb * as_mask(mask).to(rgb.dtype)

    @staticmethod
    def composite(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """A rendering over neutral grey through its alpha (probabilities, (N, H, W))."""
        return rgb * alpha[:, None]

    def appearance(self, rgb: torch.Tensor, mask: torch.Tensor, sample: bool = False, generator=None):
        """(code, mu, logvar) of each object's appearance; the code is the posterior mean unless
        ``sample``."""
        mu, logvar = self.encoder(self.object_image(rgb, mask))
        if not sample:
            return mu, mu, logvar
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype) if generator is not None \
            else torch.randn_like(mu)
        return mu + eps * (0.5 * logvar).exp(), mu, logvar

    @torch.no_grad()
    def render(self, mask: torch.Tensor, rgb: torch.Tensor, appearance_mask: torch.Tensor):
        """The object of ``rgb`` (in ``appearance_mask``) drawn in ``mask``: (RGB in [-1, 1],
        alpha probabilities), all (N, ., S, S) at the crop size."""
        z, _, _ = self.appearance(rgb, appearance_mask)
        out, alpha = self.generator(mask, z)
        return out, torch.sigmoid(alpha)

    def discriminate(self, image: torch.Tensor, mask: torch.Tensor) -> list:
        return self.discriminator(torch.cat([as_mask(mask).to(image.dtype), image], dim=1))

    def forward(self, batch: dict, phase: str = "g", **kw):
        return phase_losses(self, batch, phase, **kw)


# --------------------------------------------------------------------------- a training phase's losses
def phase_losses(model: SpadeRenderer, batch: dict, phase: str, fake: Optional[torch.Tensor] = None,
                 weights: Optional[dict] = None, vgg: Optional[VGGLoss] = None) -> dict:
    """One training phase's losses (:mod:`amodal_lib.train.spade` describes them). ``batch``:
    :func:`amodal_lib.train.spade.prepare`'s. Phase "g" also returns the composited fake (``"fake"``, detached) for phase "d", which takes it as ``fake``."""
    w = {**LOSS_WEIGHTS, **(weights or {})}
    real_rgb, m = batch["rgb"], batch["mask"]
    real = model.object_image(real_rgb, m)
    if phase == "d":
        if fake is None:
            raise ValueError("the discriminator phase needs the generator phase's fake")
        d_real, d_fake = model.discriminate(real, m), model.discriminate(fake.detach(), m)
        return {"loss": hinge_d_loss(d_real, d_fake), "d_real": torch.stack([r[-1].mean() for r in d_real]).mean(),
                "d_fake": torch.stack([f[-1].mean() for f in d_fake]).mean()}
    if phase != "g":
        raise ValueError(f"phase must be 'g' or 'd', got {phase!r}")
    z, mu, logvar = model.appearance(real_rgb, m, sample=True)
    rgb, alpha_logit = model.generator(m, z)
    out = model.composite(rgb, torch.sigmoid(alpha_logit))
    d_fake = model.discriminate(out, m)
    with torch.no_grad():
        d_real = model.discriminate(real, m)
    losses = {"g_gan": hinge_g_loss(d_fake), "feat": feature_matching(d_real, d_fake), "kl": kl_normal(mu, logvar),
              "l1": (out - real).abs().mean(),
              "alpha_bce": F.binary_cross_entropy_with_logits(alpha_logit, m[:, 0])}
    total = losses["g_gan"] + w["lambda_feat"] * losses["feat"] + w["lambda_kl"] * losses["kl"] \
        + w["lambda_l1"] * losses["l1"] + w["lambda_alpha"] * losses["alpha_bce"]
    if vgg is not None:
        losses["vgg"] = vgg(out, real)
        total = total + w["lambda_vgg"] * losses["vgg"]
    with torch.no_grad():
        losses["silhouette_iou"] = silhouette_iou(alpha_logit > 0, m[:, 0] > 0.5).mean()
    return {"loss": total, **losses, "fake": out.detach()}


def silhouette_iou(pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample IoU of two (N, H, W) boolean masks (1 where both are empty)."""
    inter = (pred & mask).flatten(1).sum(1).float()
    union = (pred | mask).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
