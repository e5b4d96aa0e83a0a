"""Scene editing (supplementary 3.3, Fig 6): remove objects from an image, complete the shapes of
the objects they hid with Amodal-VAE, inpaint the background under them and the newly revealed
part of each completed object, and composite the result in depth order.

    result = remove(image, annotations, [7, 12], vae=vae, background=bg_net, instance=inst_net)
    result.image        # HxWx3 uint8, equal to ``image`` outside ``result.hole``
    result.masks        # {id: RLE}: the visible masks of the instances that remain
    result.completed    # {id: RLE}: the full masks of the objects that were behind the removed ones

What happens, in order (``docs/design.md``, "Scene editing"):

1. **Remove**: the hole is the removed instances' visible masks and the shadow each casts on the
   ground just below it (:func:`cast_shadow`; ``shadows=False`` keeps the masks alone), dilated by
   ``dilate`` pixels (their anti-aliased edges), less the visible pixels of every instance that
   stays (those are not touched). No fill reads a pixel of the hole.
2. **Complete the shapes**: every remaining instance that touches a removed one and lies *behind*
   it (:func:`behind`) is completed (Amodal-VAE,
   :func:`amodal_lib.predict.amodal_vae.complete_instances` with the whole image as context; or
   given ``completions``). Its *revealed* part is its full mask inside the hole; where two revealed
   parts overlap the nearer object takes the pixel.
3. **Fill the objects**: each revealed part is filled by the instance inpainter (``instance``: a
   trained net or a callable ``(image, object_mask, hole, category_id) -> image``, given the image
   with the hole blanked and the object's pixels after the edit) from the object's own visible
   pixels (:func:`amodal_lib.predict.inpaint.inpaint_instances`).
4. **Fill the background**: the rest of the hole is filled by the background inpainter
   (``background``: a trained net or any callable ``(image, hole) -> image``;
   :func:`amodal_lib.predict.inpaint.inpaint_background` is that call) from the scene around the
   hole. ``background_from="background"`` fills it from the background's pixels alone (every
   remaining instance's pixels are part of what it fills, and only the hole's pixels are kept):
   better with exact shapes, worse with Amodal-VAE's (``docs/design.md``). With ``complete=False``
   nothing is completed and the background inpainter fills the hole from every pixel around it
   (the inpainter alone, as a classical fill would).
5. **Composite**: the background, then the objects far to near.

Depth order: where the annotations give it (``Instance.depth``, KINS' order in an occlusion
cluster, 1 = nearest) for both instances, the data's; otherwise (plain COCO, and every modal view)
the ground-plane rule of street scenes: the instance whose visible box reaches lower in the image
is nearer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from .. import registry
from ..data import masks as M
from ..data.records import AnnotationSet, Instance, group_by_image, set_modal_neighbours
from ..errors import ArgumentError, DataError
from ..predict.amodal_vae import complete_instances
from ..predict.inpaint import inpaint_background, inpaint_instances

DEFAULT_DILATE = 2


@dataclass
class EditResult:
    """What :func:`remove` made. ``image``: the edited image; ``masks``: {id: RLE} visible masks of
    the remaining instances; ``removed``: the ids taken out; ``completed``: {id: RLE} full masks of
    the objects completed; ``revealed``: {id: HxW bool} the pixels each of them gained; ``hole``:
    HxW bool, every pixel that was repainted; ``background``: the background inpainter's fill
    (outside the hole it also replaces the remaining instances' pixels, which the edit keeps);
    ``order``: the completed ids, far to near."""
    image: np.ndarray
    masks: dict
    removed: list
    completed: dict
    revealed: dict
    hole: np.ndarray
    background: np.ndarray
    order: list = field(default_factory=list)
    image_id: object = None


def _nearer_key(inst: Instance):
    """Sorting key, far to near: (the data's depth, farther first), else the visible box's bottom."""
    x, y, w, h = inst.visible_box
    return (-(inst.depth or 0), y + h)


def behind(a: Instance, b: Instance) -> bool:
    """Is ``a`` behind ``b`` (so that removing ``b`` can reveal ``a``)? The data's depth order when
    both have one (1 = nearest), else: ``b``'s visible box reaches lower in the image than ``a``'s."""
    if a.depth is not None and b.depth is not None and a.depth != b.depth:
        return a.depth > b.depth
    ya, yb = a.visible_box[1] + a.visible_box[3], b.visible_box[1] + b.visible_box[3]
    return ya < yb - 0.5


def cast_shadow(image: np.ndarray, mask: np.ndarray, keep: np.ndarray, reach: float = 0.25, darker: float = 0.75
                ) -> np.ndarray:
    """The shadow an object (``mask``, HxW bool) casts on the ground just below it: the pixels within
    ``reach`` of its height below its lowest pixel in each column (and 2 px to either side), not in
    ``keep`` (what must not be repainted: the other instances' pixels), darker than ``darker`` times
    the ground further below (the median brightness of the next band of that height), and connected
    to the object through such pixels. HxW bool; empty where nothing is that dark."""
    if not mask.any():
        return np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    H, W = mask.shape
    h = int(np.ceil(reach * (ys.max() - ys.min() + 1))) + 2
    lowest = np.full(W, -1)
    np.maximum.at(lowest, xs, ys)
    lowest = ndimage.maximum_filter1d(lowest, 5)            # 2 px to either side
    rows = np.arange(H)[:, None]
    below = (lowest[None] >= 0) & (rows > lowest[None])
    band = below & (rows <= lowest[None] + h) & ~mask & ~keep
    ground = below & (rows > lowest[None] + h) & (rows <= lowest[None] + 2 * h) & ~keep
    if not band.any() or ground.sum() < 8:
        return np.zeros_like(mask)
    lum = image.astype(np.float32).mean(2)
    dark = band & (lum < darker * float(np.median(lum[ground])))
    lab, _ = ndimage.label(dark | mask, structure=np.ones((3, 3)))
    touching = np.unique(lab[mask])
    return np.isin(lab, touching[touching > 0]) & dark


def _image_instances(annotations, ids: Sequence) -> tuple:
    """(the AnnotationSet of the removed instances' image, its instances, the removed ids)."""
    if isinstance(annotations, AnnotationSet):
        ann = annotations
    else:
        insts = list(annotations)
        ann = AnnotationSet("<instances>", "records", insts, {}, {})
    if not len(ids):
        raise ArgumentError("nothing to remove: give at least one annotation id")
    by_id = ann.by_id()
    wanted = []
    for i in ids:
        key = i if i in by_id else (int(i) if str(i).lstrip("-").isdigit() and int(i) in by_id else None)
        if key is None:
            some = ", ".join(str(k) for k in list(by_id)[:12]) + (" ..." if len(by_id) > 12 else "")
            raise ArgumentError(f"{ann.path}: no annotation with id {i!r} (ids: {some or 'none'})")
        wanted.append(key)
    images = {by_id[k].image_id for k in wanted}
    if len(images) > 1:
        raise ArgumentError(f"{ann.path}: the ids {wanted} belong to {len(images)} different images; remove "
                            "instances of one image at a time")
    image_id = images.pop()
    insts = group_by_image(ann.instances)[image_id]
    return ann, insts, list(dict.fromkeys(wanted)), image_id


def _call_background(background, image, hole):
    if background is None:
        raise ArgumentError("remove() needs a background inpainter (a trained net or a callable (image, hole) -> image)")
    if callable(background) and not isinstance(background, torch.nn.Module):
        return np.asarray(background(image, hole), dtype=np.uint8)
    return inpaint_background(background, image, hole)


def _call_instances(instance, image, objects, holes, cats, unknown) -> list:
    if callable(instance) and not isinstance(instance, torch.nn.Module):
        blank = image.copy()
        blank[unknown] = 0
        return [np.asarray(instance(blank, o, h, c), dtype=np.uint8) for o, h, c in zip(objects, holes, cats)]
    return inpaint_instances(instance, image, objects, holes, cats, unknown=unknown)


def remove(image, annotations, ids: Sequence, *, vae=None, background: Union[Callable, torch.nn.Module, None] = None,
           instance: Union[Callable, torch.nn.Module, None] = None, completions: Optional[dict] = None,
           complete: bool = True, dilate_px: int = DEFAULT_DILATE, threshold: Optional[float] = None,
           shadows: bool = True, background_from: str = "scene") -> EditResult:
    """Remove the instances ``ids`` of one image from ``image`` (module doc).

    ``image``: HxWx3 uint8 (the image the annotations describe); ``annotations``: an
    :class:`AnnotationSet` (or a list of instances) holding every instance of that image (other
    images are ignored); ``vae``: a trained Amodal-VAE (binarised at :func:`edit_threshold` unless
    ``threshold``); ``completions``: {id: RLE} full masks to use instead of completing (e.g. the
    ground-truth amodal masks); ``complete=False`` completes nothing (the background inpainter
    fills the whole hole, from every pixel around it); ``background`` and ``instance``: the
    inpainters (nets or callables; with no ``instance``, the revealed parts get the background's
    fill).
    A bad id, or an image or mask that does not fit the annotations, raises a
    :class:`~amodal_lib.errors.UserError` saying which."""
    ann, insts, removed_ids, image_id = _image_instances(annotations, ids)
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise DataError(f"the image must be HxWx3 uint8 RGB, got shape {img.shape} and type {img.dtype}")
    H, W = img.shape[:2]
    vis = {}
    for inst in insts:
        if (inst.height, inst.width) != (H, W):
            raise DataError(f"{ann.path}: annotation {inst.id} is for a {inst.height}x{inst.width} image but the "
                            f"image is {H}x{W}")
        m = M.decode(inst.visible).astype(bool)
        if m.shape != (H, W):
            raise DataError(f"{ann.path}: annotation {inst.id}: its mask is {m.shape[0]}x{m.shape[1]}, "
                            f"the image {H}x{W}")
        vis[inst.id] = m
    gone = set(removed_ids)
    removed = np.zeros((H, W), bool)
    for i in removed_ids:
        removed |= vis[i]
    stay = [i for i in insts if i.id not in gone]
    others = np.zeros((H, W), bool)
    for i in stay:
        others |= vis[i.id]
    if shadows:                                                          # the removed objects' shadows go too
        for i in removed_ids:
            removed |= cast_shadow(img, vis[i], others)
    hole = M.dilate(removed, int(dilate_px)) & ~others

    # 2. the objects behind the removed ones, completed
    rem = [i for i in insts if i.id in gone]
    near_removed = M.dilate(removed, 1)
    cands = [i for i in stay if (vis[i.id] & near_removed).any() and any(behind(i, r) for r in rem)]
    full: dict = {}
    if complete and cands:
        if completions is not None:
            full = {i.id: completions[i.id] for i in cands if i.id in completions}
        elif vae is not None:
            full = _complete(vae, ann, insts, cands, threshold)
        else:
            raise ArgumentError("remove() needs an Amodal-VAE (vae=...) or completions={id: RLE} to complete the "
                                "objects behind the removed ones (complete=False fills the hole with background)")
    order = sorted([i for i in cands if i.id in full], key=_nearer_key)      # far to near
    owner = np.full((H, W), -1, np.int64)
    for k, inst in enumerate(order):
        f = M.decode(full[inst.id]).astype(bool) if not isinstance(full[inst.id], np.ndarray) else full[inst.id]
        owner[f & hole] = k                                                 # nearer ones overwrite
    revealed = {inst.id: owner == k for k, inst in enumerate(order)}

    # 3. the objects, each from its own visible pixels
    todo = [i for i in order if revealed[i.id].any()] if instance is not None else []
    filled = _call_instances(instance, img, [vis[i.id] | revealed[i.id] for i in todo], [revealed[i.id] for i in todo],
                             [i.category_id for i in todo], hole) if todo else []
    # 4. the background, from the scene around the hole (or from the background's pixels alone: every
    #    remaining instance's pixels are then filled too, and kept as they were)
    region = hole | others if complete and background_from == "background" else hole
    bg = _call_background(background, img, region) if hole.any() else img.copy()
    # 5. composite: the background, then the objects far to near
    out = img.copy()
    out[hole] = bg[hole]
    for inst, f in zip(todo, filled):
        r = revealed[inst.id]
        out[r] = f[r]
    masks = {i.id: M.encode((vis[i.id] | revealed.get(i.id, False)).astype(np.uint8)) for i in stay}
    completed = {i.id: (full[i.id] if not isinstance(full[i.id], np.ndarray) else M.encode(full[i.id].astype(np.uint8)))
                 for i in order}
    return EditResult(out, masks, removed_ids, completed, revealed, hole, bg, [i.id for i in order], image_id)


def edit_threshold(checkpoint=None) -> tuple:
    """(the threshold an edit binarises Amodal-VAE's completions at, where it comes from). An edit
    shows what was hidden, so it takes the threshold of the largest protocol-A *invisible* mIoU of
    the validation sweep ``amodal train`` recorded beside the checkpoint (``threshold_sweep.csv``,
    mean over the validation sets; ties: the smaller), not the completion's own (largest full
    mIoU, ``threshold.json``); without a sweep, that one (:func:`amodal_lib.registry.default_threshold`)."""
    if checkpoint is not None:
        ck = Path(checkpoint)
        path = (ck if ck.is_dir() else ck.parent) / "threshold_sweep.csv"
        if path.is_file():
            mean = pd.read_csv(path).groupby("threshold", as_index=False)["A_invisible"].mean()
            if len(mean) and mean.A_invisible.notna().any():
                best = mean.threshold.to_numpy()[int(np.nanargmax(mean.A_invisible.to_numpy(float)))]
                return float(best), f"largest validation invisible mIoU (protocol A) of {path.name}"
    return registry.default_threshold("amodal-vae", checkpoint)


def _complete(vae, ann: AnnotationSet, insts: list, cands: list, threshold: Optional[float]) -> dict:
    """{id: RLE} Amodal-VAE's full masks of ``cands``, the whole image (``insts``) as context."""
    t = threshold if threshold is not None else edit_threshold(getattr(vae, "checkpoint", None))[0]
    context = ann.subset(insts)
    return complete_instances(vae, cands, threshold=t, frame="fit", context=context)


def edited_annotations(result: EditResult, annotations) -> list:
    """The instances after an edit: the removed ones gone, the completed ones with their new visible
    masks (and boxes, areas); modal occluders recomputed. A list of :class:`Instance`."""
    import dataclasses
    ann = annotations if isinstance(annotations, AnnotationSet) else None
    insts = [i for i in (ann.instances if ann is not None else annotations)
             if i.image_id == result.image_id and i.id in result.masks]
    out = []
    for i in insts:
        rle = result.masks[i.id]
        box = tuple(float(v) for v in M.to_bbox(rle))
        out.append(dataclasses.replace(i, visible=rle, visible_box=box, visible_area=int(M.area(rle))))
    set_modal_neighbours(out)
    return out


def pick_removals(annotations: AnnotationSet, n: int, seed: int = 0, min_area: int = 150,
                  max_occluder_area: int = 6000) -> list:
    """Up to ``n`` edits worth showing, one per image (a seeded choice): ``(image_id, id to remove)``
    where the instance to remove hides part of an object of at least ``min_area`` visible pixels
    behind it (from visible masks and :func:`behind` only) and covers at most ``max_occluder_area``."""
    rng = np.random.default_rng(seed)
    groups = group_by_image(annotations.modal_view().instances if annotations.has_amodal else annotations.instances)
    out = []
    for image_id in rng.permutation(sorted(groups)).tolist():
        insts = {i.id: i for i in groups[image_id]}
        pairs = [(o, i) for i in insts.values() for o in i.occluders if o in insts
                 and i.visible_area >= min_area and insts[o].visible_area <= max_occluder_area
                 and behind(i, insts[o])]
        if pairs:
            o, _ = pairs[int(rng.integers(len(pairs)))]
            out.append((image_id, o))
        if len(out) >= n:
            break
    return out
