"""Every completion method by name: how the command line and the notebooks train, load and run
any of them.

- ``visible``, ``convex-hull``: rules that need no training (:mod:`amodal_lib.predict.rules`).
- ``amodal-vae``: network in :mod:`amodal_lib.models.amodal_vae`, training in
  :mod:`amodal_lib.train.amodal_vae` (validation in :mod:`amodal_lib.train.validation`),
  completion in :mod:`amodal_lib.predict.amodal_vae`.
- ``pcnet-m``: network in :mod:`amodal_lib.models.pcnet`, training in :mod:`amodal_lib.train.pcnet`,
  completion in :mod:`amodal_lib.predict.pcnet`.
- ``resnet-psp`` (a segmentation network, not a completion method: it predicts visible masks from
  the images, which ``complete_from_visible`` then completes): network in :mod:`amodal_lib.models.psp`,
  training in :mod:`amodal_lib.train.psp`, segmentation in :mod:`amodal_lib.predict.psp`.
- ``spade`` (a renderer, not a completion method: it draws an instance in a new full mask):
  network in :mod:`amodal_lib.models.spade`, training in :mod:`amodal_lib.train.spade`,
  rendering in :mod:`amodal_lib.predict.spade` (trained, loaded and listed here; ``complete``
  does not take it).
- ``inpaint-background``, ``inpaint-instance`` (:data:`INPAINTERS`, scene editing): trained and loaded
  here, not completion methods; network in :mod:`amodal_lib.models.partial_conv`, training in
  :mod:`amodal_lib.train.inpaint`, filling in :mod:`amodal_lib.predict.inpaint`.

A new family adds its three modules and one branch to each function here.
"""
from __future__ import annotations

from typing import Optional, Sequence

from .errors import ArgumentError

RULES = ("visible", "convex-hull")      # need no training
MODELS = ("amodal-vae", "pcnet-m")      # trained, one family each
METHODS = RULES + MODELS
# trained and loaded here like the models, but not completion methods (`complete` does not take them)
SEGMENTERS = ("resnet-psp",)                              # visible masks from images (`amodal segment`)
INPAINTERS = ("inpaint-background", "inpaint-instance")   # scene editing (`amodal edit`)
RENDERERS = ("spade",)                                    # an instance drawn in a new full mask (`amodal render`)
TRAINABLE = MODELS + SEGMENTERS + INPAINTERS + RENDERERS


def _check(name: str, allowed: Sequence[str] = MODELS) -> None:
    if name not in allowed:
        raise ArgumentError(f"unknown method {name!r}: use one of {', '.join(allowed)}")


def is_trained(name: str, run_dir) -> bool:
    """Has every stage of ``name``'s run in ``run_dir`` finished?"""
    if name in SEGMENTERS:
        return segmenter_is_trained(name, run_dir)
    if name in RENDERERS:
        return _renderer_is_trained(name, run_dir)
    if name in INPAINTERS:
        return _inpainter_is_trained(name, run_dir)
    _check(name)
    if name == "amodal-vae":
        from .train import amodal_vae
        return all(amodal_vae.stage_done(run_dir, s) for s in amodal_vae.STAGES)
    from .train import pcnet
    return pcnet.is_trained(run_dir)


def train(name: str, annotations, run_dir, *, profile: Optional[str] = None, seed: int = 0, device="auto",
          steps: Optional[int] = None, resume: bool = True, val_annotations=None, stage: Optional[int] = None,
          progress: bool = True):
    """Train ``name`` on the visible masks of ``annotations`` (a path or an AnnotationSet) into
    ``run_dir``; returns the trained model in eval mode (PCNet-M's with its ``history``, as
    :func:`load_model` gives it). ``steps`` overrides the profile's (per stage for Amodal-VAE);
    ``stage`` trains one stage only (PCNet-M has one); ``val_annotations``: the validation set
    (PCNet-M: with amodal masks, for metrics only; Amodal-VAE: selects checkpoints and the
    threshold, and when not given is held out of ``annotations``: :mod:`amodal_lib.train.validation`);
    an unfinished run resumes when ``resume``. Amodal-VAE's model carries ``train_log``, the lines
    its run printed (validation, the checkpoint each stage kept, the threshold)."""
    if name in SEGMENTERS:
        return train_segmenter(name, annotations, run_dir, profile=profile, seed=seed, device=device, steps=steps,
                               resume=resume, val_annotations=val_annotations, stage=stage, progress=progress)
    if name in RENDERERS:
        return _train_renderer(name, annotations, run_dir, profile=profile, seed=seed, device=device, steps=steps,
                               resume=resume, val_annotations=val_annotations, stage=stage, progress=progress)
    if name in INPAINTERS:
        return _train_inpainter(name, annotations, run_dir, profile=profile, seed=seed, device=device, steps=steps,
                                resume=resume, val_annotations=val_annotations, stage=stage, progress=progress)
    _check(name)
    if name == "amodal-vae":
        from .train import amodal_vae
        res = amodal_vae.train_amodal_vae(annotations, run_dir, profile=profile, stage=stage, seed=seed,
                                          device=device, resume=resume, val_annotations=val_annotations,
                                          progress=progress, steps=steps)
        res["model"].train_log = res["log"]
        return res["model"]
    from .train import pcnet
    if stage not in (None, 1):
        raise ArgumentError(f"pcnet-m has a single training stage; --stage {stage} does not apply")
    model, history = pcnet.train_pcnet(annotations, run_dir, profile=profile, seed=seed, device=device, steps=steps,
                                       resume=resume, progress=progress, val_annotations=val_annotations)
    model.history = history   # as load_model gives it
    return model


def load_model(name: str, checkpoint, device="auto"):
    """The trained model of a run folder or checkpoint file, in eval mode."""
    if name in SEGMENTERS:
        return load_segmenter(name, checkpoint, device)
    if name in RENDERERS:
        return _load_renderer(name, checkpoint, device)
    if name in INPAINTERS:
        return _load_inpainter(name, checkpoint, device)
    _check(name)
    if name == "amodal-vae":
        from .train import amodal_vae
        return amodal_vae.load_model(checkpoint, device)
    from .train import pcnet
    return pcnet.load_model(checkpoint, device)


def default_threshold(name: str, checkpoint=None) -> tuple[float, str]:
    """(the binarisation threshold a method uses when none is given, where it comes from):
    :func:`amodal_lib.thresholds.default_threshold`."""
    _check(name, METHODS)
    from .thresholds import default_threshold as default
    return default(name, checkpoint)


def complete(name: str, ann, model=None, instances: Optional[Sequence] = None, *,
             threshold: Optional[float] = None, box: str = "predicted", samples: int = 0, frame: str = "fit",
             seed: int = 0) -> dict:
    """{annotation id: RLE}: the amodal mask of each of ``instances`` (default: all of ``ann``)
    by method ``name``. ``ann`` is the whole split (PCNet-M finds the occluders in it, Amodal-VAE's
    fitted frame what surrounds each instance); ``model`` a trained model for the learned methods;
    ``box`` "predicted" or "amodal-gt" (the GT amodal box: evaluation only); ``threshold`` None for
    :func:`default_threshold`; Amodal-VAE only: ``frame`` "fit" or "transformer" (the paper's;
    :mod:`amodal_lib.predict.amodal_vae`), ``samples`` K > 0 thresholds the mean of K posterior
    samples' probabilities, drawn from ``seed``."""
    _check(name, METHODS)
    instances = list(ann.instances if instances is None else instances)
    if name in RULES:
        from .predict import rules
        return rules.METHODS[name](instances)
    if model is None:
        raise ArgumentError(f"{name} needs a trained model (a run folder or checkpoint)")
    if box not in ("predicted", "amodal-gt"):
        raise ArgumentError(f"box must be 'predicted' or 'amodal-gt', got {box!r}")
    t = default_threshold(name, getattr(model, "checkpoint", None))[0] if threshold is None else float(threshold)
    if name == "pcnet-m":
        if samples:
            raise ArgumentError("pcnet-m is deterministic: --samples does not apply")
        from .predict import pcnet
        return pcnet.complete_instances(model, ann, instances, threshold=t,
                                        box="amodal-gt" if box == "amodal-gt" else "visible")
    import torch
    from .predict import amodal_vae
    out = amodal_vae.complete_instances(model, instances, box=box, threshold=t, frame=frame, context=ann,
                                        samples=int(samples), return_details=bool(samples),
                                        generator=torch.Generator().manual_seed(int(seed)))
    return out.sample_mean_masks() if samples else out


# --------------------------------------------------------------------------- segmentation networks
# Supplementary Table 1: a network predicts each instance's visible mask from the image, and the
# completion methods complete those masks instead of the file's.
# - ``resnet-psp``: network in :mod:`amodal_lib.models.psp`, training in :mod:`amodal_lib.train.psp`,
#   inference in :mod:`amodal_lib.predict.psp` (``docs/design.md``, "The segmentation-input experiment").


def _check_segmenter(name: str) -> None:
    if name not in SEGMENTERS:
        raise ArgumentError(f"unknown segmentation network {name!r}: use one of {', '.join(SEGMENTERS)}")


def segmenter_is_trained(name: str, run_dir) -> bool:
    """Has the segmentation network's run in ``run_dir`` finished?"""
    _check_segmenter(name)
    from .train import psp
    return psp.is_trained(run_dir)


def train_segmenter(name: str, annotations, run_dir, *, profile: Optional[str] = None, seed: int = 0,
                    device="auto", steps: Optional[int] = None, resume: bool = True, val_annotations=None,
                    stage: Optional[int] = None, progress: bool = True, **overrides):
    """Train a segmentation network on the visible masks and images of ``annotations`` (its
    ``images_dir``) into ``run_dir``; returns it in eval mode with its ``history``. ``overrides``:
    settings of :data:`amodal_lib.train.psp.DEFAULTS` (``weights``: a local backbone weights file;
    ``box``: "amodal" or "visible")."""
    _check_segmenter(name)
    if stage not in (None, 1):
        raise ArgumentError(f"{name} has a single training stage; --stage {stage} does not apply")
    from .train import psp
    model, history = psp.train_psp(annotations, run_dir, profile=profile, seed=seed, device=device, steps=steps,
                                   resume=resume, progress=progress, val_annotations=val_annotations, **overrides)
    model.history = history
    return model


def load_segmenter(name: str, checkpoint, device="auto"):
    """The trained segmentation network of a run folder or checkpoint file, in eval mode."""
    _check_segmenter(name)
    from .train import psp
    return psp.load_model(checkpoint, device)


def segment(name: str, ann, model, instances: Optional[Sequence] = None, *, threshold: Optional[float] = None,
            box: Optional[str] = None, progress: bool = False) -> dict:
    """{annotation id: RLE}: the visible mask of each of ``instances`` (default: all of ``ann``)
    predicted by the segmentation network ``model`` from ``ann``'s images; ``box``: None for the
    one the network was trained with ("amodal" or "visible"); ``threshold`` None for 0.5."""
    _check_segmenter(name)
    from .predict import psp
    t = psp.DEFAULT_THRESHOLD if threshold is None else float(threshold)
    return psp.segment_instances(model, ann, instances, threshold=t, box=box, progress=progress)


def complete_from_visible(name: str, ann, visible: dict, model=None, instances: Optional[Sequence] = None,
                          source: str = "the visible masks", **kwargs) -> dict:
    """:func:`complete` with ``visible`` ({annotation id: RLE}, e.g. predicted masks) as every
    instance's visible mask, for the targets and for what surrounds them
    (:func:`amodal_lib.data.records.with_visible`). An instance whose given mask is empty has
    nothing to complete: its completion is empty. Evaluate the result against ``ann`` itself."""
    from .data import masks as M
    from .data.records import with_visible
    swapped = with_visible(ann, visible, source)
    by_id = swapped.by_id()
    wanted = [by_id[i.id] for i in (ann.instances if instances is None else instances)]
    nonempty = [i for i in wanted if i.visible_area > 0]
    out = complete(name, swapped, model, nonempty, **kwargs) if nonempty else {}
    out.update({i.id: M.empty(i.height, i.width) for i in wanted if i.visible_area == 0})
    return {i.id: out[i.id] for i in wanted}
# --------------------------------------------------------------------------- renderers


def _renderer_is_trained(name: str, run_dir) -> bool:
    from .train import spade
    return spade.is_trained(run_dir)


def _train_renderer(name: str, annotations, run_dir, *, profile=None, seed=0, device="auto", steps=None, resume=True,
                    val_annotations=None, stage=None, progress=True):
    """The SPADE renderer trained on the unoccluded instances of ``annotations`` (with their
    images); ``val_annotations`` gives validation metrics (:mod:`amodal_lib.train.spade`)."""
    if stage not in (None, 1):
        raise ArgumentError(f"{name} has a single training stage; --stage {stage} does not apply")
    from .train import spade
    return spade.train_spade(annotations, run_dir, profile=profile, seed=seed, device=device, steps=steps,
                             resume=resume, progress=progress, val_annotations=val_annotations)


def _load_renderer(name: str, checkpoint, device="auto"):
    from .train import spade
    return spade.load_model(checkpoint, device)
# --------------------------------------------------------------------------- scene editing
# The two partial-convolution inpainters of scene editing: trained and loaded by name like the
# completion methods (``amodal train --model inpaint-background``, ``nb.Context.model(name)``), but
# not completion methods (``complete`` does not take them). Network in
# :mod:`amodal_lib.models.partial_conv`, training in :mod:`amodal_lib.train.inpaint`, filling in
# :mod:`amodal_lib.predict.inpaint`, the edit in :mod:`amodal_lib.experiments.edit`.


def _inpainter_kind(name: str) -> str:
    from .train.inpaint import NAMES
    return NAMES[name]


def _inpainter_is_trained(name: str, run_dir) -> bool:
    from .train import inpaint
    return inpaint.is_trained(run_dir, _inpainter_kind(name))


def _train_inpainter(name: str, annotations, run_dir, *, profile=None, seed=0, device="auto", steps=None, resume=True,
                     val_annotations=None, stage=None, progress=True):
    from .train import inpaint
    if stage not in (None, 1):
        raise ArgumentError(f"{name} has a single training stage; --stage {stage} does not apply")
    model, _ = inpaint.train_inpainter(_inpainter_kind(name), annotations, run_dir, profile=profile, seed=seed,
                                       device=device, steps=steps, resume=resume, progress=progress,
                                       val_annotations=val_annotations)
    return model


def _load_inpainter(name: str, checkpoint, device="auto"):
    from .train import inpaint
    return inpaint.load_model(checkpoint, _inpainter_kind(name), device)
