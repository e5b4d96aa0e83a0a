"""Controlled corruptions of visible masks: the errors of a segmentation network, to measure how
robust a completion method is (notebook 11) and to train and validate one that is
(``docs/design.md``, "Segmenter masks").

Four single kinds (:data:`KINDS`; :func:`corrupt_masks`, notebook 11's robustness curve) move the mask's boundary through its signed distance ``sd`` (pixel centres; +0.5 on
the inside row of the boundary, -0.5 on the outside row; Euclidean, ``scipy.ndimage``), by a
``strength`` in pixels:

- ``erosion``: keep ``sd > strength`` (the boundary moves in by ``strength`` pixels);
- ``dilation``: keep ``sd > -strength`` (it moves out);
- ``boundary-noise``: keep ``sd + strength * n > 0``, where ``n`` is a smooth Gaussian random
  field of unit standard deviation (white noise blurred with a Gaussian of ``NOISE_SIGMA``
  pixels): the boundary moves in and out by ``strength`` pixels (one standard deviation), in
  bumps about ``NOISE_SIGMA`` pixels wide;
- ``wide-boundary-noise``: the same displacement in bumps :data:`WIDE_SIGMA` pixels wide. Its
  boundary stays smooth, as the masks of a segmenter that predicts them at a low resolution do, so
  nothing local tells it from an annotation's (``docs/design.md``, "Segmenter masks": what it costs).

The **segmenter-noise model** (:func:`segmenter_noise`) mixes what an instance segmenter gets
wrong, at a ``strength`` in pixels or a named level (:data:`NOISE_LEVELS`), for every instance of
an image (the occluders' masks are wrong too). Per instance (``strength`` s):

- the boundary moves by a bias (dilation or erosion) drawn from N(0, s/2) plus a smooth random
  displacement of s * U(0.5, 1) pixels (one standard deviation) in bumps U(1, 4) pixels wide;
- with probability 0.25 the mask is seen at a lower resolution (averaged over cells of about
  1 + s pixels and cut at 0.5: rounded corners, thin parts lost or merged);
- with probability 0.2 each, a blob of radius about s to 2s pixels is cut out at the boundary
  (a hole) or added at it (a spur);
- with probability 0.15, where another instance touches it, the other instance's pixels within
  2s pixels of its boundary are added (a leak into a neighbour).

:func:`corrupt_crops` is the same model on batches of mask crops (PyTorch), for training: the
boundary displacement, the lower resolution and the blobs, scaled by each crop's pixel size.

The image border is not a boundary of the object (nothing is eroded from it). A corrupted mask
is never empty: when nothing is left, the pixels deepest inside the mask are kept. Noise is
seeded per instance (``seed``, annotation id): the same call gives the same masks.
"""
from __future__ import annotations

import math
import zlib
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from . import masks as M
from .records import Instance, group_by_image

NOISE_SIGMA = 2.0   # pixels: the width of boundary noise's bumps
WIDE_SIGMA = 6.0    # pixels: the width of wide boundary noise's bumps
BUMPS = {"boundary-noise": NOISE_SIGMA, "wide-boundary-noise": WIDE_SIGMA}   # the noisy kinds: their bumps' width
KINDS = ("erosion", "dilation", *BUMPS)
# the segmenter-noise model's named strengths, in pixels: "mild" is about a good instance segmenter
# (visible IoU with the truth near 0.9, the mean over the instances of real KITTI scenes, small ones
# included), "strong" a poor one (near 0.8); on mid-size instances the same strengths cost less
# (pasted real instances: pooled IoU 0.94 and 0.87)
NOISE_LEVELS = {"clean": 0.0, "mild": 1.0, "strong": 2.0}


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Signed Euclidean distance of each pixel centre to the mask's boundary (positive inside)."""
    m = mask.astype(bool)
    inside = ndimage.distance_transform_edt(m) - 0.5
    outside = ndimage.distance_transform_edt(~m) - 0.5
    return np.where(m, inside, -outside)


def smooth_noise(shape: tuple, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian random field of unit standard deviation, correlated over ``sigma`` pixels."""
    white = rng.standard_normal(shape)
    field = ndimage.gaussian_filter(white, sigma, mode="wrap")
    return field * (2.0 * np.sqrt(np.pi) * sigma)   # the std of white noise blurred by a 2D Gaussian is 1 / (2 sqrt(pi) sigma)


def corrupt(mask: np.ndarray, kind: str, strength: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """One binary mask (a window of an image) corrupted (module doc)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    if not mask.any():
        return mask.astype(np.uint8)
    sd = signed_distance(mask)
    if kind == "erosion":
        level = sd - strength
    elif kind == "dilation":
        level = sd + strength
    else:
        rng = rng if rng is not None else np.random.default_rng(0)
        level = sd + strength * smooth_noise(mask.shape, BUMPS[kind], rng)
    out = level > 0
    if not out.any():
        out = mask.astype(bool) & (sd >= sd.max())
    return out.astype(np.uint8)


def corrupt_masks(instances: Sequence[Instance], kind: str, strength: float, seed: int = 0) -> dict:
    """{annotation id: RLE}: each instance's visible mask corrupted by ``kind`` at ``strength``
    pixels, computed in a window about its box (module doc)."""
    if strength == 0:
        return {inst.id: inst.visible for inst in instances}
    return _each_in_its_window(instances, int(np.ceil(abs(strength) * 4 + 4 * BUMPS.get(kind, NOISE_SIGMA))) + 2,
                               lambda inst: [int(seed), abs(hash(inst.id)) % 2**32],
                               lambda win, others, rng: corrupt(win, kind, strength, rng))


def _each_in_its_window(instances: Sequence[Instance], margin: int, seed_of, error) -> dict:
    """{annotation id: RLE}: each instance's visible mask replaced, in a window ``margin`` pixels
    about its box, by ``error(window, others, rng)`` (bool arrays of the window: its mask, the other
    visible masks of its image; ``rng`` seeded by ``seed_of(instance)``); an empty mask stays empty."""
    out: dict = {}
    for group in group_by_image(list(instances)).values():
        full = M.decode_many([i.visible for i in group]).astype(bool)
        h, w = full.shape[1:]
        total = full.sum(0)
        for inst, mask in zip(group, full):
            if not mask.any():
                out[inst.id] = inst.visible
                continue
            x, y, bw, bh = inst.visible_box
            c0, r0 = max(int(x) - margin, 0), max(int(y) - margin, 0)
            c1, r1 = min(int(np.ceil(x + bw)) + margin, w), min(int(np.ceil(y + bh)) + margin, h)
            win = mask[r0:r1, c0:c1]
            res = np.zeros((h, w), np.uint8)
            res[r0:r1, c0:c1] = error(win, (total[r0:r1, c0:c1] - win) > 0, np.random.default_rng(seed_of(inst)))
            out[inst.id] = M.encode(res)
    return out


# --------------------------------------------------------------------------- a segmenter's errors
def noise_strength(level: Union[str, float, int, None]) -> float:
    """A segmenter-noise strength in pixels: a name of :data:`NOISE_LEVELS` or a number >= 0."""
    if level is None:
        return 0.0
    if isinstance(level, str):
        if level in NOISE_LEVELS:
            return NOISE_LEVELS[level]
        try:
            level = float(level)
        except ValueError:
            raise ValueError(f"noise level must be one of {', '.join(NOISE_LEVELS)} or pixels >= 0, "
                             f"got {level!r}") from None
    value = float(level)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"noise strength must be a number of pixels >= 0, got {level!r}")
    return value


def _blob(shape: tuple, centre: tuple, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def _segmenter_error(mask: np.ndarray, neighbours: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """One window's mask with the segmenter-noise model's errors at strength ``s`` (module doc)."""
    m = mask.astype(bool)
    sd = signed_distance(m)
    level = sd + rng.normal(0.0, s / 2) + s * rng.uniform(0.5, 1.0) * smooth_noise(m.shape, rng.uniform(1, 4), rng)
    out = level > 0
    if rng.random() < 0.25:  # seen at a lower resolution
        cell = 1.0 + s * rng.uniform(0.5, 1.5)
        small = ndimage.zoom(out.astype(np.float32), 1.0 / cell, order=1, grid_mode=True, mode="nearest")
        back = ndimage.zoom(small, (m.shape[0] / small.shape[0], m.shape[1] / small.shape[1]), order=1,
                            grid_mode=True, mode="nearest")
        out = back[:m.shape[0], :m.shape[1]] >= 0.5
    for add in (False, True):  # a hole cut at the boundary, a spur added at it
        if rng.random() < 0.2:
            edge = np.argwhere(np.abs(sd) < 1.0)
            if len(edge):
                c = edge[rng.integers(len(edge))]
                blob = _blob(m.shape, tuple(c), s * rng.uniform(1.0, 2.0))
                out = (out | blob) if add else (out & ~blob)
    if neighbours.any() and rng.random() < 0.15:  # leaking into a touching neighbour
        out |= neighbours & (sd > -2 * s)
    if not out.any():
        out = m & (sd >= sd.max())
    return out


def segmenter_noise(instances: Sequence[Instance], strength: Union[str, float], seed: int = 0) -> dict:
    """{annotation id: RLE}: every instance's visible mask with a segmenter's errors at ``strength``
    (pixels, or a name of :data:`NOISE_LEVELS`), computed in a window about its box from the clean
    masks of its image (module doc). Strength 0 returns the masks unchanged; the same seed gives the
    same masks."""
    s = noise_strength(strength)
    if s == 0:
        return {inst.id: inst.visible for inst in instances}
    return _each_in_its_window(instances, int(np.ceil(6 * s + 4 * 4)) + 2,
                               lambda inst: [int(seed), zlib.crc32(str(inst.id).encode()), 7],   # not hash(): salted
                               lambda win, others, rng: _segmenter_error(win, others, s, rng))


def _gauss_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    x = torch.arange(size, device=sigma.device, dtype=torch.float32) - size // 2
    k = torch.exp(-0.5 * (x[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    return k / k.sum(1, keepdim=True)


def blur_crops(m: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor, replicate: bool = False) -> torch.Tensor:
    """(B, H, W) crops blurred by a Gaussian of per-crop standard deviations (B,) along x and y (in
    the crops' pixels); zero (or, with ``replicate``, the edge value) outside the crop."""
    b = len(m)
    size = int(2 * math.ceil(3 * float(torch.maximum(sigma_x, sigma_y).max().clamp(0.3, 8.0))) + 1)
    pad, mode = size // 2, ("replicate" if replicate else "constant")
    x = F.conv2d(F.pad(m[None].float(), (pad, pad, 0, 0), mode=mode), _gauss_kernels(sigma_x, size)[:, None, None],
                 groups=b)
    x = F.conv2d(F.pad(x, (0, 0, pad, pad), mode=mode), _gauss_kernels(sigma_y, size)[:, None, :, None], groups=b)
    return x[0]


def corrupt_crops(masks: torch.Tensor, px_x: torch.Tensor, px_y: torch.Tensor, strength: torch.Tensor,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Batched segmenter noise on mask crops (B, H, W) in [0, 1], for training (module doc).

    ``px_x``, ``px_y`` (B,): crop pixels per image pixel along x and y (a crop resized from its box);
    ``strength`` (B,): each crop's strength in image pixels (0: left as it is). The boundary moves
    through the crop blurred by a Gaussian and cut at the level a displacement ``d`` asks for (a
    straight edge blurred by sigma and cut at Phi(-d / sigma) moves out by d); then, per crop, a lower
    resolution (probability 0.25) and a hole and a spur at the boundary (0.2 each). Crops left empty
    keep their mask."""
    b, h, w = masks.shape
    dev = masks.device
    s = strength.to(dev).float()

    def rand(*shape):
        return torch.rand(*shape, device=dev, generator=generator)

    bias = torch.randn(b, device=dev, generator=generator) * s / 2
    amp = s * (0.5 + 0.5 * rand(b))
    sigma = 0.5 + 0.6 * (bias.abs() + 2 * amp)          # image pixels: wide enough for the displacement
    blurred = blur_crops(masks, sigma * px_x, sigma * px_y)
    width = 1 + 3 * rand(b)
    field = blur_crops(torch.randn(b, h, w, device=dev, generator=generator), width * px_x, width * px_y, replicate=True)
    field = field / field.flatten(1).std(1).clamp_min(1e-6)[:, None, None]
    d = bias[:, None, None] + amp[:, None, None] * field
    out = (blurred > 0.5 * (1 + torch.erf(-d / sigma[:, None, None] / math.sqrt(2)))).float()
    low = rand(b) < 0.25  # a lower resolution: cells of about 1 + s image pixels
    if bool(low.any()):
        cells = ((1 + s * (0.5 + rand(b))) * torch.maximum(px_x, px_y)).clamp(1, h / 2)
        k = int(cells[low].median().round().clamp(1, h // 2))
        coarse = F.interpolate(F.avg_pool2d(out[low][:, None], k, k, ceil_mode=True), size=(h, w), mode="bilinear",
                               align_corners=False)[:, 0]
        out[low] = (coarse >= 0.5).float()
    edge = (blur_crops(out, px_x.clamp_min(0.5), px_y.clamp_min(0.5)) - 0.5).abs() < 0.3
    yy = torch.arange(h, device=dev, dtype=torch.float32)[None, :, None]
    xx = torch.arange(w, device=dev, dtype=torch.float32)[None, None, :]
    for add in (False, True):
        pick = (rand(b) < 0.2) & edge.flatten(1).any(1)
        if not bool(pick.any()):
            continue
        score = rand(b, h * w) * edge.flatten(1)
        idx = score.argmax(1)
        cy, cx = (idx // w).float(), (idx % w).float()
        r = s * (1 + rand(b))
        blob = ((yy - cy[:, None, None]) / (r * px_y).clamp_min(0.5)[:, None, None]) ** 2 + \
               ((xx - cx[:, None, None]) / (r * px_x).clamp_min(0.5)[:, None, None]) ** 2 <= 1
        blob &= pick[:, None, None]
        out = torch.where(blob, torch.full_like(out, 1.0 if add else 0.0), out)
    keep = (s <= 0) | (out.flatten(1).sum(1) < 1)
    return torch.where(keep[:, None, None], (masks > 0.5).float(), out)
