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


# --------------------------------------------------------------------------- print readability
PRINT_WIDTH_IN = 7.0   # a paper page's text width: a figure is judged at the size it would print
MIN_PRINT_PT = 5.5     # the smallest text still readable there


def _drawn_texts(fig) -> list:
    """The texts a figure draws: visible, not empty, in a visible panel, and for tick labels only
    those of the ticks inside the axis' limits of an axis that is shown."""
    from matplotlib.text import Text
    hidden = set()
    for ax in fig.axes:
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = sorted(lim)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                loc = tick.get_loc()
                if not (ax.axison and axis.get_visible() and loc is not None and lo - 1e-9 <= loc <= hi + 1e-9):
                    hidden.update((id(tick.label1), id(tick.label2)))
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden
            and (t.axes is None or t.axes.get_visible())]


def layout_problems(fig, print_width: float = PRINT_WIDTH_IN, min_pt: float = MIN_PRINT_PT) -> list:
    """What makes a figure hard to read once printed ``print_width`` inches wide (it is scaled down
    to that width when wider, as saved with ``bbox_inches="tight"``): text smaller than ``min_pt``
    points there, texts that overlap one another, and panels that show nothing. One line each."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    width = fig.get_tightbbox(renderer).width
    scale = min(1.0, print_width / width)
    texts = _drawn_texts(fig)
    problems = []
    small = sorted({round(t.get_fontsize() * scale, 1) for t in texts if t.get_fontsize() * scale < min_pt})
    if small:
        problems.append(f"text at {small[0]:g} pt when printed {print_width:g} in wide (the figure is "
                        f"{width:.1f} in; at least {min_pt:g} pt)")
    boxes = [(t, t.get_window_extent(renderer)) for t in texts]
    for i, (a, ba) in enumerate(boxes):
        for b, bb in boxes[i + 1:]:
            if min(ba.x1, bb.x1) - max(ba.x0, bb.x0) > 1 and min(ba.y1, bb.y1) - max(ba.y0, bb.y0) > 1:
                problems.append(f"overlapping text: {a.get_text()[:40]!r} and {b.get_text()[:40]!r}")
    for ax in fig.axes:
        if ax.get_visible() and not (ax.lines or ax.images or ax.patches or ax.collections or ax.texts
                                     or ax.tables or ax.artists):
            problems.append(f"an empty panel ({ax.get_title()[:40] or 'untitled'})")
    return problems


def drop_overlapping_labels(fig, texts: Sequence) -> None:
    """Hide each of ``texts`` (in order of priority, first kept first) that would overlap one
    already kept: labels on crowded images stay readable instead of piling up."""
    fig.draw_without_rendering()   # where the panels end up (an image's aspect is applied at drawing)
    renderer = fig.canvas.get_renderer()
    kept = []
    for t in texts:
        box = t.get_window_extent(renderer)
        if any(box.overlaps(k) for k in kept):
            t.set_visible(False)
        else:
            kept.append(box)


def legend_below(fig, axes: Sequence, ncol: Optional[int] = None, fontsize: float = 9):
    """One legend for the whole figure, under its panels, never over the data: the entries of
    ``axes`` (each label once, in order). The figure is laid out first; a figure saved with
    ``bbox_inches="tight"`` (as ``nb.Context.save_figure`` does) grows to hold it."""
    seen = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                seen.setdefault(label, h)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.tight_layout()
    return fig.legend(list(seen.values()), list(seen), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                      ncol=ncol or min(len(seen), 4), fontsize=fontsize, frameon=False)
