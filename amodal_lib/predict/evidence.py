"""The visible masks as evidence, not truth: where a completion's probabilities meet what the
visible masks of an image say (``docs/design.md``, "Segmenter masks").

An input file's visible masks come from annotators (a boundary to trust) or from an instance
segmenter (a boundary a pixel or three off, holes, spurs, leaks into a neighbour: the model of
:mod:`amodal_lib.data.corruption`). Their *noise* ``s`` is how far, in image pixels, a boundary
may lie from the truth.

``s = 0`` (hard evidence, the default for annotations)
    Every visible pixel of the instance is the object's (the completion is joined with its visible
    mask), and a completion in a fitted frame is kept inside what may hide it, the union of the
    image's visible masks: outside them the pixels are known background.
``s > 0`` (soft evidence)
    For an instance whose frame was fitted (the background around it is known), the evidence
    becomes a map ``E = blur(own) - blur(known background)`` in [-1, 1], blurred by a Gaussian of
    ``SIGMA_PER_NOISE * s`` pixels (known background: covered by no visible mask); the final mask
    is where ``logit(p) + w * E`` exceeds ``logit(threshold)``. Far from any boundary the
    evidence decides as the hard rule does; near one, where a segmenter's mask may be off, the
    completion's shape decides. No visible pixel is forced in and no completion is cut at a mask
    that may be wrong. The weight ``w`` is :data:`WEIGHT` within the blur's reach (:func:`margin`)
    of another instance's visible mask, where the instance may continue hidden, and
    :data:`FAR_WEIGHT` beyond it: there the object meets background only, its whole boundary is
    seen, and the shape only nudges the evidence's (on held-out real masks a good segmenter's
    full mIoU rose by 0.3 to 0.5; ``docs/design.md``, "Segmenter masks"). An instance whose frame
    was not fitted has no known background to weigh its mask against, and keeps the hard rule:
    blurring its own mask alone only thinned it (real masks 1.5 px off, occluders left out of the
    file: 77.6 / 36.5 A full / invisible mIoU against 78.6 / 38.7 hard).

``smooth`` (where a run's validation chose it: ``threshold.json``'s ``noisy.evidence``)
    A segmenter's masks, the occluders' too, are first smoothed (:func:`smoothed`: a Gaussian of
    ``s`` pixels cut at 0.5), then completed as any masks are, at the noise their smoothed
    boundaries read. A segmenter's boundary errors are bumps a few pixels wide on object outlines
    that are smooth at that scale: on held-out real masks whose boundaries were moved by 1.5 and 3 px,
    smoothing by 3 and 4 px brought their visible IoU with the truth from 0.90 to 0.92 and from 0.81
    to 0.87. A smooth dilation or erosion is left as it is.

The fitted frame reads the known pixels from the masks as given, unblurred: blurring them by the
noise made the frames worse once the gap between two masks counts as possibly hidden
(:func:`amodal_lib.predict.frame_fit.gap_band`). :func:`boundary_roughness` is what tells a file of
segmenter masks from annotations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..data import rle as R
from ..data.corruption import segmenter_noise
from ..data.records import AnnotationSet, group_by_image, with_visible

SIGMA_PER_NOISE = 1.3   # the evidence's blur, per pixel of noise
WEIGHT = 4.0            # logit units the evidence adds far from a boundary, near another instance's mask
FAR_WEIGHT = 16.0       # the same beyond the blur's reach of every other instance's mask


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def margin(noise_px: float) -> int:
    """Pixels of evidence beyond an instance's region that its blur reaches (3 sigma, and 2 more)."""
    return int(np.ceil(3 * SIGMA_PER_NOISE * noise_px)) + 2 if noise_px > 0 else 0


def fuse_window(probs: np.ndarray, own: np.ndarray, others: np.ndarray, noise_px: float, threshold: float,
                beside: Optional[np.ndarray] = None) -> np.ndarray:
    """One instance's mask over a window of its image (all arrays of the window's shape, reaching
    :func:`margin` pixels beyond where the completion can be): its pasted probabilities ``probs``
    (0 off its box) joined with soft evidence (module doc): ``own``, its visible mask; ``others``,
    the other instances' visible masks that may hide it (pixels covered by neither are background:
    the instance's frame was fitted); ``beside``, every other instance's visible mask, those judged
    behind it too (default ``others``): beyond the blur's reach of them the evidence weighs
    :data:`FAR_WEIGHT`. Returns the bool mask of the window: :func:`fused_scores` cut at ``threshold``."""
    return cut(fused_scores(probs, own, others, noise_px, beside), threshold)


def cut(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The bool mask of :func:`fused_scores` at a probability ``threshold``."""
    return scores > float(_logit(np.float32(threshold)))


def fused_scores(probs: np.ndarray, own: np.ndarray, others: np.ndarray, noise_px: float,
                 beside: Optional[np.ndarray] = None) -> np.ndarray:
    """``logit(p) + w * E`` over a window (arguments as :func:`fuse_window`), before any threshold:
    one fusion that several thresholds cut (:func:`cut`)."""
    evidence = own.astype(np.float32) - (~own.astype(bool) & ~others.astype(bool)).astype(np.float32)
    if noise_px > 0:
        evidence = ndimage.gaussian_filter(evidence, SIGMA_PER_NOISE * noise_px, mode="nearest")
    beside = (others if beside is None else beside).astype(bool)
    far = ndimage.distance_transform_edt(~beside) > margin(noise_px) if beside.any() else np.ones(own.shape, bool)
    weight = np.where(far, np.float32(FAR_WEIGHT), np.float32(WEIGHT))
    return _logit(probs) + weight * evidence


def smooth_masks(instances: Sequence, sigma: float) -> dict:
    """{annotation id: RLE}: each instance's visible mask smoothed, a Gaussian of ``sigma`` pixels cut
    at 0.5 (over its box grown by the blur's reach), a segmenter's bumps, specks and ragged edges taken
    off its boundary. A mask that the smoothing would empty (a thin sliver) is kept as given."""
    instances = list(instances)
    reach = int(np.ceil(3 * sigma)) + 2
    windows = []
    for inst in instances:
        x, y, w, h = inst.visible_box
        windows.append((max(int(y) - reach, 0), min(int(np.ceil(y + h)) + reach, inst.height),
                        max(int(x) - reach, 0), min(int(np.ceil(x + w)) + reach, inst.width)))
    out = {}
    for inst, win, m in zip(instances, windows, R.decode_windows([i.visible for i in instances], windows)):
        smooth = ndimage.gaussian_filter(m.astype(np.float32), sigma, mode="nearest") >= 0.5 if sigma > 0 else m > 0
        keep = smooth if smooth.any() else m > 0
        out[inst.id] = R.encode_windows([keep], [(win[0], win[2])], inst.height, inst.width)[0]
    return out


def smoothed(ann: AnnotationSet, noise_px: float) -> AnnotationSet:
    """``ann`` with every visible mask smoothed by :func:`smooth_masks` at ``sigma = noise_px``: the
    "smooth" way of taking a segmenter's masks (``threshold.json``'s ``noisy.evidence``), whose
    completion then reads the smoothed masks' own noise (module doc)."""
    if noise_px <= 0:
        return ann
    return with_visible(ann, smooth_masks(ann.instances, noise_px), f"{ann.path} (visible masks smoothed)")


ROUGHNESS_SIGMA = 2.0   # pixels: the smoothing a mask's boundary is compared with


def boundary_roughness(instances: Sequence, max_instances: int = 10000, min_area: int = 64, seed: int = 0) -> float:
    """How ragged a file's visible boundaries are, in pixels: the median over instances of
    :func:`roughness_values`. Annotators' masks are smooth (a few tenths); a segmenter's bumps and specks
    raise it."""
    values = roughness_values(instances, max_instances, min_area, seed)
    return float(np.median(values)) if len(values) else 0.0


def roughness_values(instances: Sequence, max_instances: int = 10000, min_area: int = 64, seed: int = 0) -> np.ndarray:
    """Per instance of at least ``min_area`` pixels (beyond ``max_instances`` of them, a seeded choice
    of that many), the pixels where its mask and the mask's Gaussian smoothing (:data:`ROUGHNESS_SIGMA`,
    cut at 0.5) disagree, per boundary pixel. A choice is drawn from the instances in the order of their
    ids, whatever the order they come in. Every mask of a file of up to 10,000 is read (about 0.2 s per
    thousand): a sample of 400, as before, moved a good segmenter's completions by up to 0.2 full mIoU
    points from one draw to another."""
    cand = sorted((i for i in instances if i.visible_area >= min_area), key=lambda i: i.id)
    if not cand:
        return np.zeros(0)
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(cand), min(max_instances, len(cand)), replace=False)) if len(cand) > max_instances \
        else range(len(cand))
    values = []
    m = int(np.ceil(3 * ROUGHNESS_SIGMA)) + 2
    for k in pick:
        inst = cand[k]
        x, y, w, h = inst.visible_box
        c0, r0 = max(int(x) - m, 0), max(int(y) - m, 0)
        c1, r1 = min(int(np.ceil(x + w)) + m, inst.width), min(int(np.ceil(y + h)) + m, inst.height)
        win = R.decode_window(inst.visible, r0, r1, c0, c1).astype(bool)
        edge = win & ~ndimage.binary_erosion(win, border_value=1)
        if not edge.any():
            continue
        smooth = ndimage.gaussian_filter(win.astype(np.float32), ROUGHNESS_SIGMA, mode="nearest") >= 0.5
        values.append((win ^ smooth).sum() / edge.sum())
    return np.asarray(values, dtype=np.float64)


# --------------------------------------------------------------------------- the noise of a file's masks
CALIBRATION_LEVELS = (0.5, 1.0, 2.0, 3.0)   # pixels: the segmenter-noise strengths a calibration measures
# measured on real KITTI MOTS annotations (about 0.15 clean; the segmenter-noise model's levels above):
# what a model trained before calibrations were stored falls back to
DEFAULT_CALIBRATION = {"clean": 0.15, "levels": {"0.5": 0.23, "1.0": 0.28, "2.0": 0.36, "3.0": 0.40}}


def calibrate(instances: Sequence, seed: int = 0, max_instances: int = 200) -> dict:
    """How :func:`boundary_roughness` grows with the segmenter-noise strength on these (clean) masks:
    ``{"clean": r, "levels": {strength: r}}``, from whole images of up to ``max_instances`` instances
    (a seeded choice) corrupted by :func:`amodal_lib.data.corruption.segmenter_noise`."""
    groups = list(group_by_image(list(instances)).values())
    order = np.random.default_rng(seed).permutation(len(groups))
    pick, n = [], 0
    for k in order:
        if n >= max_instances:
            break
        pick += groups[k]
        n += len(groups[k])
    sample = AnnotationSet("(calibration)", "instances", pick, {}, {})
    out = {"clean": boundary_roughness(pick, max_instances, seed=seed), "levels": {}}
    for s in CALIBRATION_LEVELS:
        noisy = with_visible(sample, segmenter_noise(pick, s, seed=seed), "segmenter noise").instances
        out["levels"][f"{s:.1f}"] = boundary_roughness(noisy, max_instances, seed=seed)
    return out


def noise_from_roughness(r: float, calibration: Optional[dict] = None) -> float:
    """The segmenter-noise strength (pixels) whose roughness is ``r`` on a calibration's masks:
    piecewise linear between its points; 0 up to the first level's roughness (annotators' masks vary
    too: masks cut by pasted occluders read a little rougher than the training masks), the largest
    level above the last point."""
    cal = calibration or DEFAULT_CALIBRATION
    levels = sorted((float(k), float(v)) for k, v in cal["levels"].items())
    r0 = float(cal["clean"])
    if r <= levels[0][1]:
        return 0.0
    xs, ys = [r0] + [v for _, v in levels], [0.0] + [s for s, _ in levels]
    ys_arr, xs_arr = np.asarray(ys), np.maximum.accumulate(np.asarray(xs))
    return float(np.interp(r, xs_arr, ys_arr))


# the most an estimate says: roughness tells a segmenter's masks from annotations but measures their
# error poorly (real masks whose boundary was moved 1.5 px read as the calibration's 3 px); on the
# real file, evidence blurred for 2 or 3 px where 1.5 was right cost 0.7 and 1.6 full mIoU points,
# 1.5 where 3 was right 0.6 (threshold 0.5)
MAX_ESTIMATE = 1.5


def _estimate(roughness: float, calibration: Optional[dict]) -> float:
    """A median roughness read as noise in pixels, at most :data:`MAX_ESTIMATE`."""
    return min(noise_from_roughness(float(roughness), calibration), MAX_ESTIMATE)


def estimate_noise(instances: Sequence, calibration: Optional[dict] = None, seed: int = 0) -> float:
    """The noise (pixels) of the visible masks of ``instances``, when nobody says it: their
    :func:`boundary_roughness` read on a :func:`calibrate` curve (the model's, made from its training
    masks; else :data:`DEFAULT_CALIBRATION`), at most :data:`MAX_ESTIMATE`. Annotations come out 0,
    a segmenter's masks above. A smooth dilation or erosion leaves no trace on a boundary: it reads
    as clean. Say the noise (``--visible-noise PX``) where it is known."""
    return _estimate(boundary_roughness(instances, seed=seed), calibration)


@dataclass(frozen=True)
class NoiseReading:
    """What :func:`read_noise` found: the ``estimate`` (pixels, as :func:`estimate_noise`), the ``low``
    to ``high`` interval holding it in 90% of bootstrap resamples of the masks read, and ``masks``, how
    many were read (those of at least 64 pixels)."""
    estimate: float
    low: float
    high: float
    masks: int

    def describe(self) -> str:
        """One line: ``"1.2 px off (90% interval 1.1 to 1.2 px, from 1,227 masks' boundaries)"``."""
        return (f"{self.estimate:.2g} px off (90% interval {self.low:.2g} to {self.high:.2g} px, from {self.masks:,} "
                f"masks' boundaries)")


def read_noise(instances: Sequence, calibration: Optional[dict] = None, seed: int = 0, draws: int = 500) -> NoiseReading:
    """:func:`estimate_noise` with how sure it is: the estimate's 5th and 95th percentiles over ``draws``
    bootstrap resamples (seeded) of the masks' :func:`roughness_values`. A few hundred masks can read a
    pixel where the file's thousands read 0 (the embedded data's 203 clean test masks: 1.05 px); the
    interval says so, and where it is wide the noise is better said (``--visible-noise PX``)."""
    values = roughness_values(instances, seed=seed)
    if not len(values):
        return NoiseReading(0.0, 0.0, 0.0, 0)
    rng = np.random.default_rng(seed)
    medians = np.median(values[rng.integers(0, len(values), (draws, len(values)))], axis=1)
    low, high = np.percentile([_estimate(r, calibration) for r in medians], [5, 95])
    return NoiseReading(_estimate(np.median(values), calibration), float(low), float(high), len(values))
