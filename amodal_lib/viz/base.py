"""What every figure shares: colours, the image behind the masks, overlays, one completion drawn
around its instance, and the names of the protocols and metrics."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..data import masks as M
from ..data.records import AnnotationSet, Instance

VISIBLE_COLOR = np.array([0.0, 0.45, 0.70])   # colour-blind palette: blue
HIDDEN_COLOR = np.array([0.90, 0.62, 0.0])    # orange
PRED_COLOR = np.array([0.0, 0.62, 0.45])      # green


def load_image(ann: AnnotationSet, image_id) -> Optional[np.ndarray]:
    """The RGB image of ``image_id`` as HxWx3 uint8, or None when no image folder is known."""
    from PIL import Image
    try:
        return np.asarray(Image.open(ann.image_path(image_id)).convert("RGB"))
    except (FileNotFoundError, KeyError, OSError):
        return None


def overlay(rgb: Optional[np.ndarray], layers: Sequence[tuple], height: int, width: int, alpha: float = 0.55):
    """Blend binary masks (``(mask, rgb colour)`` pairs) over an image (grey when there is none)."""
    base = np.full((height, width, 3), 0.85) if rgb is None else rgb.astype(np.float64) / 255
    out = base.copy()
    for m, color in layers:
        m = m.astype(bool)
        out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color)
    return out


def draw_completion(ax, ann: AnnotationSet, inst: Instance, mask, pad: float) -> None:
    """The image around ``inst`` (its amodal box, else its visible box, grown by ``pad``) with the
    visible mask blue, ``mask`` (an RLE) outlined green and the GT amodal mask orange dashed."""
    x, y, w, h = inst.amodal_box or inst.visible_box
    x0, y0 = int(max(x - pad * w, 0)), int(max(y - pad * h, 0))
    x1, y1 = int(min(x + (1 + pad) * w, inst.width)), int(min(y + (1 + pad) * h, inst.height))
    vis = M.decode(inst.visible)
    img = overlay(load_image(ann, inst.image_id), [(vis, VISIBLE_COLOR)], inst.height, inst.width, 0.45)
    ax.imshow(img[y0:y1, x0:x1], interpolation="nearest")
    ax.contour(M.decode(mask)[y0:y1, x0:x1], levels=[0.5], colors=[PRED_COLOR], linewidths=1.5)
    if inst.amodal is not None:
        ax.contour(M.decode(inst.amodal)[y0:y1, x0:x1], levels=[0.5], colors=[HIDDEN_COLOR],
                   linewidths=1.2, linestyles="--")


# --------------------------------------------------------------------------- PCNet-M (notebook 10)
ERASER_COLOR = np.array([0.84, 0.37, 0.0])    # vermillion

PROTOCOL_NAMES = {"A": "protocol A (pooled)", "B": "protocol B (per-instance mean)"}
METRIC_NAMES = {"full": "full mIoU", "invisible": "invisible mIoU"}
METRIC_TITLES = {"full": "Full mIoU", "invisible": "Invisible mIoU"}

def hidden_layers(masks_and_vis):
    layers = []
    for amodal, vis in masks_and_vis:
        layers.append((vis, VISIBLE_COLOR))
        layers.append((amodal & (1 - vis), HIDDEN_COLOR))
    return layers
