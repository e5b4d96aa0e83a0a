"""What surrounds an instance, read from visible masks only (no amodal label): the other instances
of its image, what may hide it, and which of two touching instances is in front.

:class:`Surroundings` serves :mod:`amodal_lib.predict.amodal_vae`'s fitted frame: an instance that
touches another one or the image border has its frame fitted, and its completion is kept inside
what may hide it. The rest of this module is that pipeline's depth order (step 8).

**Depth order.** Visible masks alone do not say which of two instances that touch hides the other, and a
completion in a fitted frame may grow into every mask it touches (:mod:`amodal_lib.predict.amodal_vae`:
"kept inside what may hide it"). So the front instance of a pair grows into the one behind it as
much as the one behind grows into it, and a whole object's completion claims pixels of the object
it hides: on held-out real occlusions (KITTI MOTS, clean masks) the whole instances that touch
another spilled 5% of their area into it (``docs/design.md``, "Depth order").

The one behind is the one whose completion claims more of the other's visible mask: the front
object's contour is whole where they meet, the one behind is cut there and the shape prior
continues it. For each pair of instances of an image, ``claim(i, j)`` is the number of pixels of
``j``'s visible mask (less ``i``'s own, where masks overlap) inside ``i``'s completion; where one
pair's larger claim is at least :data:`MARGIN` times the smaller, the larger claimant is behind.
The claims are read from the completions at :data:`ORDER_THRESHOLD`, whatever threshold the masks are
cut at: a completion's confident part is what continues under the other instance, the fringe that a
whole object's shape spills into its neighbour is not (on held-out real occlusions, claims read at
the run's threshold ordered 45 of 542 pairs wrongly at a good segmenter's masks, at 0.85 41), and the
threshold search then reads the same order at every threshold it tries.
The instance in front is then completed again with the one behind it as known background, not as
what may hide it (``behind`` given to :meth:`Surroundings.allowed` and :meth:`Surroundings.neighbours`);
an undecided pair is left as it was. The same rule orders the
instances of PCNet-M (Zhan et al. 2020), there from a network's pairwise occlusion scores.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..data import masks as M
from ..data.records import AnnotationSet

MARGIN = 1.25  # a pair is ordered when one side claims at least this many times what the other claims
ORDER_THRESHOLD = 0.85   # the completions' probability at which the claims are read (module doc)


@dataclass
class Surroundings:
    """What surrounds the instances being completed, from visible masks only: the modal view of
    the set they come from (``modal``; no amodal label), its instances by id and by image."""
    modal: AnnotationSet
    by_id: dict
    by_image: dict

    @classmethod
    def of(cls, instances: Sequence, context: Optional[AnnotationSet] = None) -> "Surroundings":
        """The surroundings of ``instances`` in ``context`` (default: the instances themselves)."""
        instances = list(instances)
        ctx = context if context is not None else AnnotationSet("(instances)", "instances", instances, {}, {})
        present = {i.id for i in ctx.instances}
        if any(i.id not in present for i in instances):
            ctx = dataclasses.replace(ctx, instances=list(ctx.instances) + [i for i in instances if i.id not in present])
        modal = ctx.modal_view()
        return cls(modal, {i.id: i for i in modal.instances}, modal.by_image())

    def touch_something(self, instances: Sequence) -> torch.Tensor:
        """(N,) bool: which instances touch another instance or the image border (their frame is fitted)."""
        return torch.tensor([bool(self.by_id[i.id].occluders) or self.by_id[i.id].touches_border for i in instances],
                            dtype=torch.bool).reshape(-1)

    def neighbours(self, instances: Sequence, behind: Optional[dict] = None) -> list:
        """Per instance, the visible masks (RLEs) of the other instances of its image, but those that
        ``behind`` ({id: ids judged behind it}, :func:`behind`) puts behind it."""
        behind = behind or {}
        return [[m.visible for m in self.by_image[i.image_id] if m.id != i.id and m.id not in behind.get(i.id, ())]
                for i in instances]

    def allowed(self, instances: Sequence, fitted: torch.Tensor, behind: Optional[dict] = None) -> Optional[list]:
        """Per instance: for fitted ones, the union of every visible mask of its image (its own and
        what may hide it) but those that ``behind`` puts behind it, an RLE; None (anywhere) for the
        others; None when none is fitted."""
        if not bool(fitted.any()):
            return None
        behind = behind or {}
        union: dict = {}
        out = []
        for inst, f in zip(instances, fitted.tolist()):
            back = behind.get(inst.id)
            if f and back:
                out.append(M.merge([m.visible for m in self.by_image[inst.image_id] if m.id not in back]))
                continue
            if f and inst.image_id not in union:
                union[inst.image_id] = M.merge([m.visible for m in self.by_image[inst.image_id]])
            out.append(union[inst.image_id] if f else None)
        return out


def claims(completions: Sequence, visibles: Sequence) -> np.ndarray:
    """(n, n) pixels: ``[i, j]`` = how many of ``visibles[j]``'s pixels, less ``visibles[i]``'s,
    ``completions[i]`` covers (RLEs of one image); the diagonal is 0."""
    n = len(completions)
    if n < 2:
        return np.zeros((n, n))
    own = [M.merge([c, v], intersect=True) for c, v in zip(completions, visibles)]
    out = M.intersection_areas(completions, visibles) - M.intersection_areas(own, visibles)
    np.fill_diagonal(out, 0)
    return np.maximum(out, 0)


def behind(instances: Sequence, completions: dict, margin: Optional[float] = None) -> dict:
    """{instance id: set of ids judged behind it} over each image of ``instances`` (records whose
    ``visible`` is the mask completed), from ``completions`` ({id: RLE}; an instance without one
    takes part in no pair); ``margin``: None for :data:`MARGIN`. Only instances with such a set are keys."""
    margin = MARGIN if margin is None else margin
    by_image = defaultdict(list)
    for inst in instances:
        if inst.id in completions:
            by_image[inst.image_id].append(inst)
    out: dict = defaultdict(set)
    for group in by_image.values():
        if len(group) < 2:
            continue
        c = claims([completions[i.id] for i in group], [i.visible for i in group])
        for a, b in zip(*np.nonzero(np.triu(np.maximum(c, c.T), 1))):
            big, small = max(c[a, b], c[b, a]), min(c[a, b], c[b, a])
            if big >= margin * small:
                back, front = (a, b) if c[a, b] > c[b, a] else (b, a)
                out[group[front].id].add(group[back].id)
    return dict(out)


def partners(instances: Sequence, by_image: dict) -> list:
    """The instances (with a visible mask) of the images of ``instances`` that are not among them:
    whose completions the order of a pair with one of them needs."""
    have = {i.id for i in instances}
    images = dict.fromkeys(i.image_id for i in instances)
    return [m for img in images for m in by_image.get(img, ()) if m.id not in have and m.visible_area > 0]
