"""Every completion method by name: how the command line and the notebooks train, load and run
any of them.

- ``visible``, ``convex-hull``: rules that need no training (:mod:`amodal_lib.baselines`).
- ``amodal-vae``: network and completion in :mod:`amodal_lib.models.amodal_vae`, training in
  :mod:`amodal_lib.train.amodal_vae`.
- ``pcnet-m``: network in :mod:`amodal_lib.models.pcnet`, training in :mod:`amodal_lib.train.pcnet`,
  completion in :mod:`amodal_lib.predict.pcnet`.

A new family adds its three modules and one branch to each function here.
"""
from __future__ import annotations

from typing import Optional, Sequence

from .errors import ArgumentError

RULES = ("visible", "convex-hull")      # need no training
MODELS = ("amodal-vae", "pcnet-m")      # trained, one family each
METHODS = RULES + MODELS


def _check(name: str, allowed: Sequence[str] = MODELS) -> None:
    if name not in allowed:
        raise ArgumentError(f"unknown method {name!r}: use one of {', '.join(allowed)}")


def is_trained(name: str, run_dir) -> bool:
    """Has every stage of ``name``'s run in ``run_dir`` finished?"""
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
    ``stage`` trains one stage only (PCNet-M has one); ``val_annotations`` (with amodal masks) are
    for validation metrics only; an unfinished run resumes when ``resume``."""
    _check(name)
    if name == "amodal-vae":
        from .train import amodal_vae
        over = {f"stage{s}_steps": steps for s in amodal_vae.STAGES} if steps is not None else {}
        return amodal_vae.train_amodal_vae(annotations, run_dir, profile=profile, stage=stage, seed=seed,
                                           device=device, resume=resume, val_annotations=val_annotations,
                                           progress=progress, **over)["model"]
    from .train import pcnet
    if stage not in (None, 1):
        raise ArgumentError(f"pcnet-m has a single training stage; --stage {stage} does not apply")
    model, history = pcnet.train_pcnet(annotations, run_dir, profile=profile, seed=seed, device=device, steps=steps,
                                       resume=resume, progress=progress, val_annotations=val_annotations)
    model.history = history   # as load_model gives it
    return model


def load_model(name: str, checkpoint, device="auto"):
    """The trained model of a run folder or checkpoint file, in eval mode."""
    _check(name)
    if name == "amodal-vae":
        from .train import amodal_vae
        return amodal_vae.load_model(checkpoint, device)
    from .train import pcnet
    return pcnet.load_model(checkpoint, device)


def default_threshold(name: str) -> float:
    """The binarisation threshold a method uses when none is given (0.5; PCNet-M's is 0.2)."""
    _check(name, METHODS)
    if name == "pcnet-m":
        from .predict.pcnet import DEFAULT_THRESHOLD
        return DEFAULT_THRESHOLD
    return 0.5


def complete(name: str, ann, model=None, instances: Optional[Sequence] = None, *,
             threshold: Optional[float] = None, box: str = "predicted", samples: int = 0) -> dict:
    """{annotation id: RLE}: the amodal mask of each of ``instances`` (default: all of ``ann``)
    by method ``name``. ``ann`` is the whole split (PCNet-M finds the occluders in it); ``model``
    a trained model for the learned methods; ``box`` "predicted" or "amodal-gt" (the GT amodal
    box: evaluation only); ``threshold`` None for :func:`default_threshold`; ``samples`` K > 0
    (Amodal-VAE only) thresholds the mean of K posterior samples' probabilities."""
    _check(name, METHODS)
    instances = list(ann.instances if instances is None else instances)
    if name in RULES:
        from . import baselines
        return baselines.METHODS[name](instances)
    if model is None:
        raise ArgumentError(f"{name} needs a trained model (a run folder or checkpoint)")
    if box not in ("predicted", "amodal-gt"):
        raise ArgumentError(f"box must be 'predicted' or 'amodal-gt', got {box!r}")
    t = default_threshold(name) if threshold is None else float(threshold)
    if name == "pcnet-m":
        if samples:
            raise ArgumentError("pcnet-m is deterministic: --samples does not apply")
        from .predict import pcnet
        return pcnet.complete_instances(model, ann, instances, threshold=t,
                                        box="amodal-gt" if box == "amodal-gt" else "visible")
    from .models import amodal_vae
    if not samples:
        return amodal_vae.complete_instances(model, instances, box=box, threshold=t)
    return amodal_vae.complete_instances(model, instances, box=box, threshold=t, samples=int(samples),
                                         return_details=True).sample_mean_masks()
