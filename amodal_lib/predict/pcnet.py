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

from typing import Optional, Sequence

import torch
from torchvision.ops import roi_align

from ..data import crops
from ..data import masks as M
from ..data.records import AnnotationSet, Instance, group_by_image
from ..models.pcnet import PCNetM
from ..thresholds import PCNET_M

DEFAULT_THRESHOLD = PCNET_M   # Deocclusion's 0.2 (every threshold's home: amodal_lib.thresholds)


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

    ``occluders``: {id: ids} to use instead of each ``Instance.occluders``.
    """
    out = torch.zeros(len(instances), 2, size, size)
    by_image = ann.by_image()
    for image_id, idx in group_by_image(instances, positions=True).items():
        members = list(by_image.get(image_id, []))
        pos = {m.id: j for j, m in enumerate(members)}
        extra = [instances[k] for k in idx if instances[k].id not in pos]
        for inst in extra:
            pos[inst.id] = len(members)
            members.append(inst)
        vis = torch.from_numpy(M.decode_many([m.visible for m in members])).float()
        hw = vis.shape[1:]
        flat = vis.reshape(len(members), -1)
        own_rows = torch.tensor([pos[instances[k].id] for k in idx])
        occ_mat = torch.zeros(len(idx), len(members))
        for r, k in enumerate(idx):
            inst = instances[k]
            occ = occluders.get(inst.id, ()) if occluders is not None else inst.occluders
            cols = [pos[o] for o in occ if o in pos and o != inst.id]
            if cols:
                occ_mat[r, cols] = 1.0
        own = flat[own_rows]
        er = (occ_mat @ flat).clamp_(max=1.0) * (1.0 - own)  # union of the occluders, minus own pixels
        stack = torch.stack([own, er], 1).reshape(len(idx), 2, *hw)
        rois = torch.cat([torch.arange(len(idx), dtype=torch.float32)[:, None], boxes[idx]], dim=1)
        out[idx] = roi_align(stack, rois, (size, size), 1.0, 2, aligned=True)
    return (out >= 0.5).float()


@torch.no_grad()
def predict_crops(model: PCNetM, ann: AnnotationSet, instances: Sequence[Instance], box: str = "visible",
                  eraser: str = "occluders", batch_size: int = 256):
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


def complete_instances(model: PCNetM, ann: AnnotationSet, instances: Optional[Sequence[Instance]] = None,
                       threshold: float = DEFAULT_THRESHOLD, batch_size: int = 256, box: str = "visible",
                       eraser: str = "occluders", chunk: int = 2048, progress: bool = False) -> dict:
    """{annotation id: RLE}: each instance's amodal mask, the network's class-1 probability
    pasted back at ``threshold`` and joined with the visible mask. ``ann`` is the whole split
    (where the occluders are found); ``instances`` the ones to complete (default: all)."""
    from tqdm.auto import tqdm
    instances = list(ann.instances if instances is None else instances)
    out: dict = {}
    bar = tqdm(total=len(instances), desc="PCNet-M", unit="mask", disable=not progress, leave=False)
    for a in range(0, len(instances), chunk):
        part = instances[a:a + chunk]
        probs, _, boxes = predict_crops(model, ann, part, box, eraser, batch_size)
        pasted = crops.paste_masks(probs, boxes, part, threshold, union_visible=True)
        out.update((inst.id, rle) for inst, rle in zip(part, pasted))
        bar.update(len(part))
    bar.close()
    return out
