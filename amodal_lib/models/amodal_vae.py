"""Amodal-VAE (Ling et al., NeurIPS 2020): the networks.

Supplementary 3.2: masks are tightly cropped and resized to 28x28; encoder and decoder are CNNs
followed by two residual blocks and fully connected layers, ReLU with batch norm before every
activation; a 64-d factorial Normal latent with prior N(0, I); per-pixel Bernoulli output. A
spatial transformer (a small CNN with max pooling) maps the visible-box crop to the full-object
frame. Decided here (``docs/design.md``, "The networks"):

- ``width`` is the channel count of the residual blocks (at 7x7); the convolutions before them
  have ``width/4`` (28x28) and ``width/2`` (14x14) channels. Profiles: 16 smoke, 32 default,
  64 paper.
- The transformer regresses the full-object box relative to the visible box as
  ``(log sx, log sy, tx, ty)``: the full box has the visible box's size times ``(sx, sy)`` and
  its centre moved by ``(tx, ty)`` visible-box sizes. Its last layer is zero-initialised, so it
  starts as the identity. Besides the crop it is given the visible box's log aspect ratio
  (a 28x28 crop alone has lost it) and, in models built with ``geometry=6``, where the visible
  box lies in its image (:func:`box_geometry`): with a fixed camera, how far down the image an
  object stands tells its size (the ground plane), which a crop has lost too.
- The partial encoder ``q(z | y_hat)`` takes two channels: the crop and a constant flag that says
  which frame the crop is in (0: the visible box, 1: the GT amodal box, where the transformer
  is bypassed: supplementary Figs 7-8).

Relative boxes are ``(x0, y0, x1, y1)`` in units of the input box (the input box is [0, 1]^2).

Entry points: :meth:`AmodalVAE.complete` (tensors in, probabilities and boxes out, batched),
:meth:`AmodalVAE.posterior`, :meth:`AmodalVAE.sample_prior`, :func:`summary`. Records in and
image-size RLEs out: :func:`amodal_lib.predict.amodal_vae.complete_instances`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

S = 28  # crop size of the paper


# --------------------------------------------------------------------------- building blocks
def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def deconv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """x2 upsampling (transposed convolution), batch norm, ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def fc_bn_relu(din: int, dout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(din, dout, bias=False), nn.BatchNorm1d(dout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the input, then ReLU (He et al.)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu2(x + self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))


class Encoder(nn.Module):
    """q(z | y): CNN (28 -> 14 -> 7), two residual blocks, FC layers -> (mu, log variance)."""

    def __init__(self, in_ch: int = 1, width: int = 32, latent_dim: int = 64, hidden: int = 256):
        super().__init__()
        w1, w2 = max(width // 4, 4), max(width // 2, 4)
        self.cnn = nn.Sequential(conv_bn_relu(in_ch, w1), conv_bn_relu(w1, w2, 2), conv_bn_relu(w2, width, 2))
        self.res = nn.Sequential(ResBlock(width), ResBlock(width))
        self.fc = fc_bn_relu(width * 7 * 7, hidden)
        self.head = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, x):
        h = self.fc(self.res(self.cnn(x)).flatten(1))
        mu, logvar = self.head(h).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)


class Decoder(nn.Module):
    """p(y | z): FC layers, two residual blocks, CNN (7 -> 14 -> 28) -> Bernoulli logits (N, 28, 28)."""

    def __init__(self, width: int = 32, latent_dim: int = 64, hidden: int = 256):
        super().__init__()
        w1, w2 = max(width // 4, 4), max(width // 2, 4)
        self.width = width
        self.fc = nn.Sequential(fc_bn_relu(latent_dim, hidden), fc_bn_relu(hidden, width * 7 * 7))
        self.res = nn.Sequential(ResBlock(width), ResBlock(width))
        self.cnn = nn.Sequential(deconv_bn_relu(width, w2), deconv_bn_relu(w2, w1))
        self.out = nn.Conv2d(w1, 1, 3, 1, 1)

    def forward(self, z):
        h = self.fc(z).view(-1, self.width, 7, 7)
        return self.out(self.cnn(self.res(h)))[:, 0]


class SpatialTransformer(nn.Module):
    """Visible-box crop (+ log aspect ratio of the visible box, + where that box lies in the image)
    -> (log sx, log sy, tx, ty).

    A small CNN with max pooling (28 -> 14 -> 7 -> 3), FC layers; the last layer is zero-initialised
    (the identity: the full box is the visible box). ``geometry`` > 0 adds that many numbers
    describing the visible box in its image (:func:`box_geometry`): with a fixed camera, where an
    object stands in the image tells its size (the ground plane), which a crop alone has lost."""

    def __init__(self, width: int = 32, hidden: int = 64, geometry: int = 0):
        super().__init__()
        w1, w2 = max(width // 4, 4), max(width // 2, 4)
        self.geometry = int(geometry)
        self.cnn = nn.Sequential(conv_bn_relu(1, w1), nn.MaxPool2d(2), conv_bn_relu(w1, w2), nn.MaxPool2d(2),
                                 conv_bn_relu(w2, width), nn.MaxPool2d(2))
        self.fc = fc_bn_relu(width * 3 * 3 + 1 + self.geometry, hidden)
        self.head = nn.Linear(hidden, 4)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x, log_aspect, geometry: Optional[torch.Tensor] = None):
        parts = [self.cnn(x).flatten(1), log_aspect.reshape(-1, 1).to(x.dtype)]
        if self.geometry:
            if geometry is None:
                raise ValueError("this transformer needs the visible boxes' place in the image (geometry)")
            parts.append(geometry.reshape(len(x), self.geometry).to(x.dtype))
        return self.head(self.fc(torch.cat(parts, dim=1)))


GEOMETRY_FEATURES = 6


def box_geometry(boxes: torch.Tensor, height, width) -> torch.Tensor:
    """(N, 6) where xyxy image boxes lie in their (height, width) images: left, right, top and bottom
    edges as fractions of the image's width and height, and log(box width / image height) / 3,
    log(box height / image height) / 3 (sizes in units of the image height: the camera's scale)."""
    b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    h = torch.as_tensor(height, dtype=torch.float32).reshape(-1).expand(len(b))
    w = torch.as_tensor(width, dtype=torch.float32).reshape(-1).expand(len(b))
    bw, bh = (b[:, 2] - b[:, 0]).clamp_min(0.5), (b[:, 3] - b[:, 1]).clamp_min(0.5)
    return torch.stack([b[:, 0] / w, b[:, 2] / w, b[:, 1] / h, b[:, 3] / h,
                        torch.log(bw / h) / 3, torch.log(bh / h) / 3], dim=1)


def mirror_boxes(boxes: torch.Tensor, width) -> torch.Tensor:
    """xyxy image boxes of horizontally flipped images of the given widths."""
    w = torch.as_tensor(width, dtype=boxes.dtype, device=boxes.device).reshape(-1)
    return torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)


def params_to_box(p: torch.Tensor) -> torch.Tensor:
    """(log sx, log sy, tx, ty) -> relative xyxy box, the input box being [0, 1]^2."""
    w, h = p[:, 0].clamp(-3, 3).exp(), p[:, 1].clamp(-3, 3).exp()
    cx, cy = 0.5 + p[:, 2], 0.5 + p[:, 3]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


def box_to_params(b: torch.Tensor) -> torch.Tensor:
    """Relative xyxy box -> (log sx, log sy, tx, ty) (inverse of :func:`params_to_box`)."""
    w, h = (b[:, 2] - b[:, 0]).clamp_min(1e-4), (b[:, 3] - b[:, 1]).clamp_min(1e-4)
    return torch.stack([w.log(), h.log(), (b[:, 0] + b[:, 2]) / 2 - 0.5, (b[:, 1] + b[:, 3]) / 2 - 0.5], dim=1)


def warp_to_frame(probs: torch.Tensor, src_boxes: torch.Tensor, dst_boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Resample crops that cover ``src_boxes`` onto ``size`` x ``size`` grids covering ``dst_boxes``.

    Boxes are xyxy in one shared coordinate frame (e.g. relative to the visible box); pixels
    are centred as in ``roi_align(aligned=True)``/``paste_probs``; outside a source crop is 0.
    Differentiable in the probabilities and in both boxes (``affine_grid`` + ``grid_sample``).
    """
    sw, sh = src_boxes[:, 2] - src_boxes[:, 0], src_boxes[:, 3] - src_boxes[:, 1]
    dw, dh = dst_boxes[:, 2] - dst_boxes[:, 0], dst_boxes[:, 3] - dst_boxes[:, 1]
    theta = torch.zeros(len(probs), 2, 3, dtype=probs.dtype, device=probs.device)
    theta[:, 0, 0] = dw / sw
    theta[:, 0, 2] = (2 * (dst_boxes[:, 0] - src_boxes[:, 0]) + dw) / sw - 1
    theta[:, 1, 1] = dh / sh
    theta[:, 1, 2] = (2 * (dst_boxes[:, 1] - src_boxes[:, 1]) + dh) / sh - 1
    grid = F.affine_grid(theta, [len(probs), 1, size, size], align_corners=False)
    return F.grid_sample(probs.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


# --------------------------------------------------------------------------- the model
@dataclass
class Completion:
    """What :meth:`AmodalVAE.complete` returns.

    ``probs``: (N, 28, 28) posterior-mode probabilities, or (N, k, 28, 28) for k samples, in the
    full-object frame; ``boxes``: (N, 4) that frame relative to the input box; ``mu``/``std``:
    the posterior, (N, 64) each."""
    probs: torch.Tensor
    boxes: torch.Tensor
    mu: torch.Tensor
    std: torch.Tensor

    def __iter__(self):  # ``probs, boxes = model.complete(...)``
        return iter((self.probs, self.boxes))


class AmodalVAE(nn.Module):
    """Encoder q(z|y) and decoder p(y|z) (stage 1), partial encoder q(z|y_hat) and spatial
    transformer (stages 2-3). ``config`` holds the constructor arguments (for checkpoints)."""

    def __init__(self, width: int = 32, latent_dim: int = 64, hidden: int = 256, geometry: int = 0):
        super().__init__()
        self.config = {"width": int(width), "latent_dim": int(latent_dim), "hidden": int(hidden),
                       "geometry": int(geometry)}
        self.latent_dim = latent_dim
        self.encoder = Encoder(1, width, latent_dim, hidden)
        self.decoder = Decoder(width, latent_dim, hidden)
        self.partial_encoder = Encoder(2, width, latent_dim, hidden)
        self.transformer = SpatialTransformer(width, geometry=geometry)

    # -- pieces
    @staticmethod
    def reparameterize(mu, logvar):
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def init_partial_from_full(self) -> None:
        """Start the partial encoder as a copy of the full one (the flag channel's weights 0)."""
        src, dst = self.encoder.state_dict(), self.partial_encoder.state_dict()
        for k, v in src.items():
            if dst[k].shape == v.shape:
                dst[k] = v.clone()
            else:  # the first convolution: one more input channel
                dst[k] = torch.zeros_like(dst[k])
                dst[k][:, : v.shape[1]] = v
        self.partial_encoder.load_state_dict(dst)

    def encode_partial(self, crops: torch.Tensor, frame_flag: torch.Tensor | float = 0.0):
        """q(z | y_hat): crops (N, 28, 28), flag 0 (visible-box frame) or 1 (GT amodal-box frame)."""
        x = crops.unsqueeze(1).float()
        flag = torch.as_tensor(frame_flag, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1).expand_as(x)
        return self.partial_encoder(torch.cat([x, flag], dim=1))

    def predict_boxes(self, crops: torch.Tensor, log_aspect: Optional[torch.Tensor] = None,
                      geometry: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The full-object box relative to the visible box, (N, 4) xyxy. ``geometry``: (N, 6)
        :func:`box_geometry` of the visible boxes (needed when the transformer was built with it)."""
        if log_aspect is None:
            log_aspect = torch.zeros(len(crops), device=crops.device)
        return params_to_box(self.transformer(crops.unsqueeze(1).float(), log_aspect, geometry))

    # -- the user-facing calls
    @torch.no_grad()
    def complete(self, visible_crops: torch.Tensor, mode: str = "mean", n_samples: int = 0,
                 frame: str = "visible", log_aspect: Optional[torch.Tensor] = None,
                 geometry: Optional[torch.Tensor] = None) -> Completion:
        """Complete partial masks (batched, no loop over instances).

        ``visible_crops``: (N, 28, 28) visible masks cropped in the visible box (``frame="visible"``)
        or in the GT amodal box (``frame="amodal"``: the transformer is bypassed and the returned
        boxes are the identity). ``mode="mean"`` decodes z = mu; ``"sample"`` (or ``n_samples=k``)
        decodes ``k`` posterior samples, giving probs (N, k, 28, 28). ``log_aspect``: log(w/h) of the
        input box in pixels (used by the transformer; 0 if not given); ``geometry``: where the input
        boxes lie in their images (:func:`box_geometry`; for a transformer built with it).
        Returns a :class:`Completion` (unpacks as ``probs, boxes``).
        """
        if frame not in ("visible", "amodal"):
            raise ValueError(f"frame must be 'visible' or 'amodal', got {frame!r}")
        if mode not in ("mean", "sample"):
            raise ValueError(f"mode must be 'mean' or 'sample', got {mode!r}")
        crops = visible_crops.float()
        mu, logvar = self.encode_partial(crops, 1.0 if frame == "amodal" else 0.0)
        std = (0.5 * logvar).exp()
        k = n_samples if n_samples else (1 if mode == "sample" else 0)
        if k:
            z = mu[:, None] + std[:, None] * torch.randn(len(mu), k, mu.shape[1], device=mu.device)
            probs = torch.sigmoid(self.decoder(z.reshape(-1, mu.shape[1]))).reshape(len(mu), k, S, S)
        else:
            probs = torch.sigmoid(self.decoder(mu))
        if frame == "amodal":
            boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=crops.device).expand(len(crops), 4).clone()
        else:
            boxes = self.predict_boxes(crops, log_aspect, geometry)
        return Completion(probs, boxes, mu, std)

    @torch.no_grad()
    def posterior(self, visible_crops: torch.Tensor, frame: str = "visible"):
        """(mu, std) of q(z | y_hat), (N, 64) each (supplementary Fig 4)."""
        mu, logvar = self.encode_partial(visible_crops.float(), 1.0 if frame == "amodal" else 0.0)
        return mu, (0.5 * logvar).exp()

    @torch.no_grad()
    def sample_prior(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Decoded Bernoulli probabilities (n, 28, 28) of z ~ N(0, I) (supplementary Fig 3)."""
        dev = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(dev)
        return torch.sigmoid(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, full_crops: torch.Tensor) -> torch.Tensor:
        """Stage-1 reconstruction (posterior mode) of full-mask crops (N, 28, 28)."""
        mu, _ = self.encoder(full_crops.unsqueeze(1).float())
        return torch.sigmoid(self.decoder(mu))


# --------------------------------------------------------------------------- Fig 2
def _blocks(net: nn.Module) -> list:
    """(name, module) of a sub-network's blocks, in order: each child, or the children of a child
    that is a sequence of blocks (a residual block, a conv-BN-ReLU, a max pool, a linear layer)."""
    out = []
    for name, child in net.named_children():
        if isinstance(child, nn.Sequential) and any(isinstance(g, (nn.Sequential, ResBlock)) for g in child.children()):
            out += [(f"{name}.{n}", g) for n, g in child.named_children()]
        else:
            out.append((name, child))
    return out


def _describe(block: nn.Module) -> str:
    """What a block is, from its layers: e.g. "conv 3x3 /2 + BN + ReLU"."""
    if isinstance(block, ResBlock):
        return "residual block (2x conv 3x3 + BN)"
    parts = []
    for m in [block] if not list(block.children()) else [m for m in block.modules() if not list(m.children())]:
        if isinstance(m, nn.ConvTranspose2d):
            parts.append(f"deconv {m.kernel_size[0]}x{m.kernel_size[1]} x{m.stride[0]}")
        elif isinstance(m, nn.Conv2d):
            parts.append(f"conv {m.kernel_size[0]}x{m.kernel_size[1]}" + (f" /{m.stride[0]}" if m.stride[0] > 1 else ""))
        elif isinstance(m, nn.Linear):
            parts.append(f"linear {m.in_features}->{m.out_features}")
        elif isinstance(m, nn.MaxPool2d):
            parts.append("max pool /2")
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            parts.append("BN")
        else:
            parts.append(type(m).__name__)
    return " + ".join(parts)


def architecture(model: nn.Module, batch: int = 2) -> list:
    """Supplementary Fig 2 read from the live model by a forward pass on a dummy batch: one dict per
    sub-network (encoder, decoder, partial encoder, spatial transformer) with its ``title``,
    ``input`` (what it takes, with shapes), ``params`` and ``blocks`` in order, each block a dict of
    ``name``, ``kind`` (:func:`_describe`), output ``shape``, ``params`` and ``layers``: (name, type,
    output shape, parameters) of its layers (a residual block is one layer)."""
    model = model.module if hasattr(model, "module") else model
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    x = torch.zeros(batch, S, S, device=dev)
    geo = model.transformer.geometry
    parts = [("encoder q(z|y)", "encoder", model.encoder, f"full mask (1, {S}, {S})",
              lambda: model.encoder(x.unsqueeze(1))),
             ("decoder p(y|z)", "decoder", model.decoder, f"z ({model.latent_dim},)",
              lambda: model.decoder(torch.zeros(batch, model.latent_dim, device=dev))),
             ("partial encoder q(z|y_hat)", "partial", model.partial_encoder,
              f"partial mask + frame flag (2, {S}, {S})", lambda: model.encode_partial(x, 0.0)),
             ("spatial transformer", "spatial", model.transformer,
              f"partial mask (1, {S}, {S}) + log aspect (1,)" + (f" + box geometry ({geo},)" if geo else ""),
              lambda: model.transformer(x.unsqueeze(1), torch.zeros(batch, device=dev), torch.zeros(batch, geo, device=dev)))]
    out, hooks = [], []

    def shape_of(o):
        return tuple(o.shape[1:]) if torch.is_tensor(o) else "-"
    try:
        with torch.no_grad():
            for title, prefix, net, given, run in parts:
                blocks = []
                for name, block in _blocks(net):
                    rec = {"name": f"{prefix}.{name}", "kind": _describe(block), "shape": None,
                           "params": sum(p.numel() for p in block.parameters()), "layers": []}
                    leaves = [("", block)] if isinstance(block, ResBlock) or not list(block.children()) else \
                        [(n, m) for n, m in block.named_modules() if not list(m.children())]
                    for lname, leaf in leaves:
                        def hook(mod, inp, o, rec=rec, lname=lname):
                            rec["layers"].append((rec["name"] + (f".{lname}" if lname else ""), type(mod).__name__,
                                                  shape_of(o), sum(p.numel() for p in mod.parameters())))
                        hooks.append(leaf.register_forward_hook(hook))
                    hooks.append(block.register_forward_hook(lambda mod, inp, o, rec=rec: rec.update(shape=shape_of(o))))
                    blocks.append(rec)
                run()
                for h in hooks:
                    h.remove()
                hooks.clear()
                out.append({"title": title, "input": given, "params": sum(p.numel() for p in net.parameters()),
                            "blocks": blocks})
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return out


def summary(model: nn.Module, batch: int = 2) -> str:
    """A printed architecture (supplementary Fig 2): every layer with its output shape and
    parameter count, per sub-network, from :func:`architecture`'s forward pass."""
    model = model.module if hasattr(model, "module") else model
    lines = []
    for part in architecture(model, batch):
        lines.append(f"{part['title']}: {part['params']:,} parameters")
        for block in part["blocks"]:
            for name, kind, shape, cnt in block["layers"]:
                lines.append(f"  {name:34s} {kind:18s} {str(shape):16s} {cnt:>9,}")
    total = sum(p.numel() for p in model.parameters())
    lines.append(f"total: {total:,} parameters; latent {model.latent_dim}-d factorial Normal, prior N(0, I); "
                 f"width {model.config['width']}")
    return "\n".join(lines)
