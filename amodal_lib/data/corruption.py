"""Controlled corruptions of visible masks: how robust a completion method is to the errors of
a segmentation network (notebook 11; ``docs/design.md``, "The segmentation-input experiment").

All three move the mask's boundary through its signed distance ``sd`` (pixel centres; +0.5 on
the inside row of the boundary, -0.5 on the outside row; Euclidean, ``scipy.ndimage``), by a
``strength`` in pixels:

- ``erosion``: keep ``sd > strength`` (the boundary moves in by ``strength`` pixels);
- ``dilation``: keep ``sd > -strength`` (it moves out);
- ``boundary-noise``: keep ``sd + strength * n > 0``, where ``n`` is a smooth Gaussian random
  field of unit standard deviation (white noise blurred with a Gaussian of ``NOISE_SIGMA``
  pixels): the boundary moves in and out by ``strength`` pixels (one standard deviation), in
  bumps about ``NOISE_SIGMA`` pixels wide.

The image border is not a boundary of the object (nothing is eroded from it). A corrupted mask
is never empty: when nothing is left, the pixels deepest inside the mask are kept. Noise is
seeded per instance (``seed``, annotation id): the same call gives the same masks.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from . import masks as M
from .records import Instance, group_by_image

KINDS = ("erosion", "dilation", "boundary-noise")
NOISE_SIGMA = 2.0   # pixels: the width of the noise's bumps


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
        level = sd + strength * smooth_noise(mask.shape, NOISE_SIGMA, rng)
    out = level > 0
    if not out.any():
        out = mask.astype(bool) & (sd >= sd.max())
    return out.astype(np.uint8)


def corrupt_masks(instances: Sequence[Instance], kind: str, strength: float, seed: int = 0) -> dict:
    """{annotation id: RLE}: each instance's visible mask corrupted by ``kind`` at ``strength``
    pixels, computed in a window about its box (module doc)."""
    margin = int(np.ceil(abs(strength) * 4 + 4 * NOISE_SIGMA)) + 2
    out: dict = {}
    for group in group_by_image(list(instances)).values():
        full = M.decode_many([i.visible for i in group])
        h, w = full.shape[1:]
        for inst, mask in zip(group, full):
            if strength == 0 or not mask.any():
                out[inst.id] = inst.visible
                continue
            x, y, bw, bh = inst.visible_box
            c0, r0 = max(int(x) - margin, 0), max(int(y) - margin, 0)
            c1, r1 = min(int(np.ceil(x + bw)) + margin, w), min(int(np.ceil(y + bh)) + margin, h)
            rng = np.random.default_rng([int(seed), abs(hash(inst.id)) % 2**32])
            res = np.zeros((h, w), np.uint8)
            res[r0:r1, c0:c1] = corrupt(mask[r0:r1, c0:c1], kind, strength, rng)
            out[inst.id] = M.encode(res)
    return out
