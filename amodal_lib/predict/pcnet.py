"""PCNet-M inference: instance records in, amodal masks (RLE) out (``docs/design.md``, "PCNet-M").

The frame
    A square of side ``max(sqrt(3wh), 1.1w, 1.1h)`` about the centre of the visible box (``w, h``
    its size), resized to the model's ``crop`` with ``torchvision.ops.roi_align``
    (:func:`square_boxes`; training crops its targets the same way).
The input
    Channel 0: the instance's visible mask times its category value; channel 1: the eraser, the
    union of the visible masks of its occluders (``Instance.occluders``: from the data's amodal
    masks / depth order when it has them, the touching neighbours for modal-only data;
    ``eraser="neighbours"`` forces the latter), minus the instance's own pixels.
The output
    The class-1 probability, pasted back into the image (``crops.paste_masks``), thresholded at
    :data:`DEFAULT_THRESHOLD` (0.2, Deocclusion's) and joined with the visible mask.

``predict_crops`` gives the crops themselves (for figures); ``complete_instances`` the masks.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torchvision.ops import roi_align

from ..data import crops
from ..data import rle as R
from ..data.records import AnnotationSet, Instance, group_by_image
from ..models.pcnet import PCNetM
from ..thresholds import PCNET_M
from . import workers as W

DEFAULT_THRESHOLD = PCNET_M   # Deocclusion's 0.2 (every threshold's home: amodal_lib.thresholds)
NET_BATCH = 32                # crops per network call: larger batches' activations are fresh memory each time


def square_boxes(instances: Sequence[Instance], frame: str = "visible") -> torch.Tensor:
    """(N, 4) xyxy squares of side ``max(sqrt(3wh), 1.1w, 1.1h)`` about each box's centre
    (``frame`` "visible", or "amodal" for the ground-truth amodal box)."""
    return square_from_xyxy(crops.frame_boxes(instances, frame))


def square_from_xyxy(b: torch.Tensor) -> torch.Tensor:
    """The PCNet-M square about each xyxy box of ``b`` (N, 4)."""
    w, h = (b[:, 2] - b[:, 0]).clamp(min=1.0), (b[:, 3] - b[:, 1]).clamp(min=1.0)
    side = torch.maximum(torch.sqrt(3 * w * h), torch.maximum(1.1 * w, 1.1 * h))
    c = (b[:, :2] + b[:, 2:]) / 2
    return torch.cat([c - side[:, None] / 2, c + side[:, None] / 2], dim=1)


def input_crops(ann: AnnotationSet, instances: Sequence[Instance], boxes: torch.Tensor, size: int,
                occluders: Optional[dict] = None) -> torch.Tensor:
    """(N, 2, size, size) binary crops in ``boxes``: (0) the instance's visible mask, (1) the
    union of its occluders' visible masks (minus its own pixels).

    ``occluders``: {id: ids} to use instead of each ``Instance.occluders``. Each box (plus a pixel
    for bilinear sampling) is decoded from the RLEs of the instance and of those of its occluders
    that reach into it, never a whole image (``crops.sample_window``: the values of aligning whole
    images, since the rest is never sampled, up to float32 rounding of the sample positions in the
    window's coordinates: a sample within ~1e-5 of 0.5 can binarise the other way; 2 of 1,246
    held-out KITTI MOTS masks differed from whole-image aligning, by 34 pixels in all).
    """
    out = torch.zeros(len(instances), 2, size, size)
    by_image = ann.by_image()
    for image_id, idx in group_by_image(instances, positions=True).items():
        members = {m.id: m for m in by_image.get(image_id, [])}
        for k in idx:
            members.setdefault(instances[k].id, instances[k])
        for k in idx:
            inst = instances[k]
            occ = occluders.get(inst.id, ()) if occluders is not None else inst.occluders
            c0, r0, c1, r1 = crops.sample_window(boxes[k].tolist(), inst.height, inst.width)
            own = R.decode_window(members[inst.id].visible, r0, r1, c0, c1)
            eraser = np.zeros_like(own)
            for o in dict.fromkeys(occ):
                m = members.get(o)
                if m is None or o == inst.id:
                    continue
                x, y, w, h = m.visible_box
                if x < c1 and x + w > c0 and y < r1 and y + h > r0:
                    eraser |= R.decode_window(m.visible, r0, r1, c0, c1)
            win = torch.from_numpy(np.stack([own, eraser & (1 - own)]).astype(np.float32))
            roi = torch.tensor([[0.0, *(boxes[k] - torch.tensor([c0, r0, c0, r0], dtype=torch.float32)).tolist()]])
            out[k] = roi_align(win[None], roi, (size, size), 1.0, 2, aligned=True)[0]
    return (out >= 0.5).float()


@torch.no_grad()
def predict_crops(model: PCNetM, ann: AnnotationSet, instances: Sequence[Instance], box: str = "visible",
                  eraser: str = "occluders", batch_size: int = NET_BATCH):
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
    size = model.crop
    dev = next(model.parameters()).device
    inputs = input_crops(ann, instances, boxes, size, occ)
    inputs[:, 0] *= model.category_value([i.category_id for i in instances])[:, None, None]
    probs = torch.zeros(len(instances), size, size)
    model.eval()
    for a in range(0, len(instances), batch_size):
        x = inputs[a:a + batch_size].to(dev)
        probs[a:a + batch_size] = torch.softmax(model(x).float(), 1)[:, 1].cpu()
    return probs, inputs, boxes


def iter_completions(model: PCNetM, ann: AnnotationSet, instances: Optional[Sequence[Instance]] = None,
                     threshold: float = DEFAULT_THRESHOLD, batch_size: int = NET_BATCH, box: str = "visible",
                     eraser: str = "occluders", chunk: int = 2048, workers: int = 1) -> Iterator[dict]:
    """:func:`complete_instances` ``chunk`` instances at a time, in order: yields {annotation id: RLE}
    per chunk (what a caller writes out as it goes); ``workers`` > 1 runs the chunks on that many
    processes on the CPU (:func:`amodal_lib.predict.workers.ordered_map`; the same masks)."""
    instances = list(ann.instances if instances is None else instances)

    def complete(a: int) -> dict:
        part = instances[a:a + chunk]
        probs, _, boxes = predict_crops(model, ann, part, box, eraser, batch_size)
        pasted = crops.paste_masks(probs, boxes, part, threshold, union_visible=True)
        return {inst.id: rle for inst, rle in zip(part, pasted)}
    on_cpu = next(model.parameters()).device.type == "cpu"
    return W.ordered_map(complete, range(0, len(instances), chunk), workers if on_cpu else 1)


def complete_instances(model: PCNetM, ann: AnnotationSet, instances: Optional[Sequence[Instance]] = None,
                       threshold: float = DEFAULT_THRESHOLD, batch_size: int = NET_BATCH, box: str = "visible",
                       eraser: str = "occluders", chunk: int = 2048, progress: bool = False) -> dict:
    """{annotation id: RLE}: each instance's amodal mask, the network's class-1 probability
    pasted back at ``threshold`` and joined with the visible mask. ``ann`` is the whole split
    (where the occluders are found); ``instances`` the ones to complete (default: all)."""
    from tqdm.auto import tqdm
    instances = list(ann.instances if instances is None else instances)
    out: dict = {}
    with tqdm(total=len(instances), desc="PCNet-M", unit="mask", disable=not progress, leave=False) as bar:
        for part in iter_completions(model, ann, instances, threshold, batch_size, box, eraser, chunk):
            out.update(part)
            bar.update(len(part))
    return out
