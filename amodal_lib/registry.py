"""Every model family by name, in one table: how the command line, the notebooks
(``nb.Context.model``) and the experiments train, load and run any of them.

A family keeps one shape: its network in ``models/<family>.py``, its training on the shared engine
in ``train/<family>.py``, its predictor in ``predict/<family>.py``. Each row of :func:`families`
says which of their functions train, load and run it:

- ``visible``, ``convex-hull`` (rules): ``predict/rules.py`` alone, no network and no training;
- ``amodal-vae`` (completion): ``amodal_vae.py`` in each folder (its three stages in
  ``train/amodal_vae_stages.py``);
- ``pcnet-m`` (completion): ``pcnet.py`` in each folder;
- ``resnet-psp`` (segmenter): ``psp.py`` in each folder;
- ``inpaint-background``, ``inpaint-instance`` (inpainters): ``inpaint.py`` in each folder;
- ``spade`` (renderer): ``spade.py`` in each folder.

A *completion* method (and a rule) completes each instance's amodal mask (:func:`complete`,
``amodal complete``); a *segmenter* predicts visible masks from the images (:func:`segment`,
``amodal segment``), which :func:`complete_from_visible` then completes; the *inpainters* fill the
holes of scene editing (``amodal edit``) and the *renderer* draws an instance in a new full mask
(``amodal render``): those two are trained and loaded here, and run by their predictors.

A new family adds its three modules, its row to :data:`FAMILIES` and its functions to
:func:`families`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from tqdm.auto import tqdm

from .data import masks as M
from .data.records import with_visible
from .errors import ArgumentError

RULE, COMPLETION, SEGMENTER, INPAINTER, RENDERER = "rule", "completion", "segmenter", "inpainter", "renderer"


@dataclass(frozen=True)
class Family:
    """One row of the table: what the family is (declared in :data:`FAMILIES`, read without
    importing its modules), then its functions (attached by :func:`families`). Every callable
    takes and returns what its docstring in this module says; the ones a role does not have are
    None.

    - ``train(annotations, run_dir, *, profile, seed, device, steps, resume, val_annotations,
      stage, progress, **options)``: the trained model, in eval mode (as ``load`` gives it);
    - ``load(checkpoint, device)``, ``is_trained(run_dir)``;
    - ``complete(model, ann, instances, *, threshold, box, samples, frame, seed, workers)``: an
      iterator of {id: RLE}, one per batch of instances, in order (their union is the completion;
      ``workers``: processes to run the batches on, 0 for one per core);
    - ``segment(model, ann, instances, *, threshold, box)``: an iterator of {id: RLE}, one per batch;
    - ``describe(model, run_dir, seconds)``: one line on a finished training (``amodal train``);
    - ``threshold(checkpoint)``: (the threshold a method binarises at when none is given, where it
      comes from: :func:`amodal_lib.thresholds.default_threshold`);
    - ``variant(checkpoint, frame)``: the checkpoint a completion in ``frame`` reads (Amodal-VAE: the
      run's checkpoint and threshold selected for that frame, where the run has them).

    ``stages``: its training stages (``--stage``); ``options``: {command-line flag: training
    keyword} it takes beyond the common ones; ``complete_options``: the flags of ``amodal
    complete`` beyond the common ones; ``reads_images``: training reads the pixels, and the
    command line checks the image folder first; ``val_needs_amodal``: its validation file must
    have amodal masks."""
    name: str
    role: str
    stages: tuple = (1,)
    options: dict = field(default_factory=dict)
    complete_options: tuple = ()
    reads_images: bool = False
    val_needs_amodal: bool = False
    train: Optional[Callable] = None
    load: Optional[Callable] = None
    is_trained: Optional[Callable] = None
    complete: Optional[Callable] = None
    segment: Optional[Callable] = None
    describe: Optional[Callable] = None
    threshold: Optional[Callable] = None
    variant: Optional[Callable] = None


# What each family is. The command line parses, checks its input and answers --help from this
# table alone, without importing a family's modules (they import torch, which takes seconds).
FAMILIES = (
    Family("visible", RULE),
    Family("convex-hull", RULE),
    Family("amodal-vae", COMPLETION, stages=(1, 2, 3), complete_options=("samples", "frame", "noise")),
    Family("pcnet-m", COMPLETION, val_needs_amodal=True),
    Family("resnet-psp", SEGMENTER, options={"weights": "weights", "crop_box": "box"}, reads_images=True),
    Family("inpaint-background", INPAINTER, options={"vgg_weights": "vgg_weights"}),
    Family("inpaint-instance", INPAINTER, options={"vgg_weights": "vgg_weights"}),
    Family("spade", RENDERER),
)
ROLES = {f.name: f.role for f in FAMILIES}


def names(*roles: str) -> tuple:
    """The families of ``roles``, in the table's order."""
    return tuple(n for n, r in ROLES.items() if r in roles)


RULES = names(RULE)                   # need no training
MODELS = names(COMPLETION)            # trained completion methods
METHODS = RULES + MODELS              # what `amodal complete` takes
SEGMENTERS = names(SEGMENTER)         # visible masks from the images (`amodal segment`)
INPAINTERS = names(INPAINTER)         # scene editing (`amodal edit`)
RENDERERS = names(RENDERER)           # an instance drawn in a new full mask (`amodal render`)
TRAINABLE = MODELS + SEGMENTERS + INPAINTERS + RENDERERS
BOXES = ("predicted", "amodal-gt")    # the frame a completion is drawn in (the GT box: evaluation only)
_KIND = {RULE: "method", COMPLETION: "method", SEGMENTER: "segmentation network", INPAINTER: "inpainter",
         RENDERER: "renderer"}
_DECLARED = {f.name: f for f in FAMILIES}


# --------------------------------------------------------------------------- the glue of each row
def _model_of(train_fn: Callable) -> Callable:
    """A training call that returns ``(model, history)`` as one returning the model, its ``history``
    attached (as ``load_model`` gives it)."""
    def train(*args, **kwargs):
        model, history = train_fn(*args, **kwargs)
        model.history = history
        return model
    return train


def _one_stage(train_fn: Callable) -> Callable:
    """A single-stage training call (the ``stage`` argument is checked by :func:`train`)."""
    def train(*args, stage=None, **kwargs):
        return train_fn(*args, **kwargs)
    return train


RULE_BATCH = 4096   # instances a rule completes per batch


def _rule(fn: Callable) -> Callable:
    def complete(model, ann, instances, **_):   # in this process: a rule's batches take no time
        for s in range(0, len(instances), RULE_BATCH):
            yield fn(instances[s:s + RULE_BATCH])
    return complete


def _last(history: list, split: str = "train") -> dict:
    return next((h for h in reversed(history) if h.get("split") == split), {})


@lru_cache(maxsize=None)
def _rules() -> dict:
    """The rows of the rules, which need neither torch nor a trained model."""
    # deferred on purpose: predict/rules.py imports scipy, which the command line's parser never needs
    from .predict import rules
    return {"visible": replace(_DECLARED["visible"], complete=_rule(rules.visible)),
            "convex-hull": replace(_DECLARED["convex-hull"], complete=_rule(rules.convex_hull))}


@lru_cache(maxsize=None)
def families() -> dict:
    """{name: :class:`Family`}: the table (module docstring), built on first use."""
    # Deferred on purpose, like _rules(): the families' modules import torch and torchvision
    # (seconds), which the command line's parser, a rule's completion and the evaluation never need.
    import torch
    from . import thresholds
    from .predict import amodal_vae as vae_predict, pcnet as pcnet_predict, psp as psp_predict, workers as workers_predict
    from .train import amodal_vae as vae_train, inpaint, pcnet as pcnet_train, psp as psp_train, spade as spade_train, timing

    def train_vae(annotations, run_dir, **kwargs):
        res = vae_train.train_amodal_vae(annotations, run_dir, **kwargs)
        res["model"].train_log = res["log"]     # the lines its run printed: validation, checkpoints kept, threshold
        return res["model"]

    def complete_vae(model, ann, instances, *, threshold, box, samples, frame, seed, workers, noise=0.0):
        return vae_predict.iter_masks(model, instances, box=box, threshold=threshold, frame=frame, context=ann,
                                      samples=int(samples), generator=torch.Generator().manual_seed(int(seed)),
                                      workers=workers or workers_predict.default_workers(), noise=noise)

    def complete_pcnet(model, ann, instances, *, threshold, box, samples, frame, seed, workers, noise=0.0):
        if samples:
            raise ArgumentError("pcnet-m is deterministic: --samples does not apply")
        return pcnet_predict.iter_completions(model, ann, instances, threshold=threshold,
                                              box="amodal-gt" if box == "amodal-gt" else "visible",
                                              workers=workers or workers_predict.default_workers())

    def segment_psp(model, ann, instances, *, threshold, box):
        t = psp_predict.DEFAULT_THRESHOLD if threshold is None else float(threshold)
        return psp_predict.iter_segments(model, ann, instances, threshold=t, box=box)

    def describe_vae(model, run_dir, seconds):
        return (f"Amodal-VAE: {model.checkpoint} (stage {model.trained_stage}) in {seconds:.0f} s; threshold: "
                f"{thresholds.default_threshold('amodal-vae', run_dir)[0]:g} ({Path(run_dir) / thresholds.FILE})")

    def describe_pcnet(model, run_dir, seconds):
        last = _last(model.history)
        return (f"PCNet-M: trained to step {last.get('step', '?')} (loss {last.get('loss', float('nan')):.4f}) "
                f"in {seconds:.1f} s; checkpoint {pcnet_train.checkpoint_file(run_dir)}")

    def describe_psp(model, run_dir, seconds):
        sel = model.selected or {}
        return (f"ResNet-PSP: trained in {seconds:.1f} s; kept step {sel.get('step', '?')} (validation visible IoU "
                f"{sel.get('value') or float('nan'):.2f} %); checkpoint {psp_train.checkpoint_file(run_dir)}")

    def describe_spade(model, run_dir, seconds):
        last, t = _last(model.history), timing.read(run_dir, spade_train.CHECKPOINT_NAME) or {}
        return (f"SPADE: trained to step {last.get('step', '?')} (generator loss {last.get('loss_g', float('nan')):.4f}, "
                f"discriminator {last.get('loss_d', float('nan')):.4f}) in {seconds:.1f} s "
                f"({t.get('cpu_s', float('nan')):.0f} CPU s); checkpoint {spade_train.checkpoint_file(run_dir)}")

    def inpainter(name: str) -> dict:
        kind = inpaint.NAMES[name]

        def describe(model, run_dir, seconds):
            sel = _last(model.history, "selected")
            return (f"{name}: {inpaint.checkpoint_file(run_dir, kind)} (validation hole PSNR "
                    f"{sel.get('val_hole_psnr', float('nan')):.2f} dB at step {sel.get('step', '?')}) in "
                    f"{seconds:.0f} s, {model.cpu_seconds:.0f} s of CPU")
        return dict(train=_one_stage(_model_of(partial(inpaint.train_inpainter, kind))),
                    load=lambda checkpoint, device="auto": inpaint.load_model(checkpoint, kind, device),
                    is_trained=lambda run_dir: inpaint.is_trained(run_dir, kind), describe=describe)

    functions = {
        "amodal-vae": dict(train=train_vae, load=vae_train.load_model, complete=complete_vae, describe=describe_vae,
                           variant=vae_train.variant_checkpoint, is_trained=lambda run_dir: all(vae_train.stage_done(run_dir, s) for s in vae_train.STAGES)),
        "pcnet-m": dict(train=_one_stage(_model_of(pcnet_train.train_pcnet)), load=pcnet_train.load_model,
                        is_trained=pcnet_train.is_trained, complete=complete_pcnet, describe=describe_pcnet),
        "resnet-psp": dict(train=_one_stage(_model_of(psp_train.train_psp)), load=psp_train.load_model,
                           is_trained=psp_train.is_trained, segment=segment_psp, describe=describe_psp),
        "inpaint-background": inpainter("inpaint-background"),
        "inpaint-instance": inpainter("inpaint-instance"),
        "spade": dict(train=_one_stage(spade_train.train_spade), load=spade_train.load_model,
                      is_trained=spade_train.is_trained, describe=describe_spade),
    }
    assert _DECLARED["amodal-vae"].stages == tuple(vae_train.STAGES)
    table = {**_rules(), **{n: replace(_DECLARED[n], **f) for n, f in functions.items()}}
    table = {n: replace(f, threshold=partial(thresholds.default_threshold, n)) if f.role in (RULE, COMPLETION) else f
             for n, f in table.items()}
    assert list(table) == list(_DECLARED), "every declared family has its functions, in the table's order"
    return table


def declared(name: str, *roles: str) -> Family:
    """What family ``name`` is (its row of :data:`FAMILIES`, without its functions: nothing is
    imported), which must have one of ``roles`` (default: a trained family); an
    :class:`~amodal_lib.errors.ArgumentError` naming the ones that do otherwise."""
    what = _KIND[roles[0]] if roles else "model"
    roles = roles or (COMPLETION, SEGMENTER, INPAINTER, RENDERER)
    if ROLES.get(name) not in roles:
        raise ArgumentError(f"unknown {what} {name!r}: use one of {', '.join(names(*roles))}")
    return _DECLARED[name]


def family(name: str, *roles: str) -> Family:
    """The whole row of ``name``, with its functions (:func:`declared` checks the name)."""
    f = declared(name, *roles)
    return _rules()[name] if f.role == RULE else families()[name]


# --------------------------------------------------------------------------- every family
def is_trained(name: str, run_dir) -> bool:
    """Has every stage of ``name``'s run in ``run_dir`` finished?"""
    return family(name).is_trained(run_dir)


def train(name: str, annotations, run_dir, *, profile: Optional[str] = None, seed: int = 0, device="auto",
          steps: Optional[int] = None, resume: bool = True, val_annotations=None, stage: Optional[int] = None,
          progress: bool = True, **options):
    """Train ``name`` on ``annotations`` (a path or an AnnotationSet; the completion models read only
    its visible masks, the others its images too) into ``run_dir``; returns the trained model in
    eval mode, as :func:`load_model` gives it (with its ``history``; Amodal-VAE's with
    ``train_log``, the lines its run printed: validation, the checkpoint each stage kept, the
    threshold). ``steps`` overrides the profile's (per stage for Amodal-VAE); ``stage`` trains one
    stage only; ``val_annotations``: the validation set (Amodal-VAE: selects checkpoints and the
    threshold, and when not given is held out of ``annotations``,
    :mod:`amodal_lib.train.validation`; PCNet-M: with amodal masks, for metrics only); an
    unfinished run resumes when ``resume``; ``options``: the family's own settings (ResNet-PSP's
    ``weights`` and ``box``, the inpainters' ``vgg_weights``)."""
    if declared(name).stages == (1,) and stage not in (None, 1):
        raise ArgumentError(f"{name} has a single training stage; --stage {stage} does not apply")
    return family(name).train(annotations, run_dir, profile=profile, seed=seed, device=device, steps=steps, resume=resume,
                   progress=progress, val_annotations=val_annotations, stage=stage, **options)


def load_model(name: str, checkpoint, device="auto"):
    """The trained model of a run folder or checkpoint file, in eval mode."""
    return family(name).load(checkpoint, device)


def variant_checkpoint(name: str, checkpoint, frame: str = "fit"):
    """The checkpoint a completion by ``name`` in ``frame`` reads: for Amodal-VAE, the checkpoint and
    threshold its run selected for that frame on validation (``<run>/<frame>/``) when the run folder
    ``checkpoint`` has them; else ``checkpoint``."""
    f = family(name)
    return f.variant(checkpoint, frame) if f.variant is not None and checkpoint is not None else checkpoint


def default_threshold(name: str, checkpoint=None, noisy: bool = False) -> tuple[float, str]:
    """(the binarisation threshold a method uses when none is given, where it comes from; ``noisy``:
    for a segmenter's visible masks): :func:`amodal_lib.thresholds.default_threshold`."""
    family(name, RULE, COMPLETION)
    return families()[name].threshold(checkpoint, noisy=noisy)


# --------------------------------------------------------------------------- completion
def complete(name: str, ann, model=None, instances: Optional[Sequence] = None, *,
             threshold: Optional[float] = None, box: str = "predicted", samples: int = 0, frame: str = "fit",
             seed: int = 0, noise="auto") -> dict:
    """{annotation id: RLE}: the amodal mask of each of ``instances`` (default: all of ``ann``)
    by method ``name``. ``ann`` is the whole split (PCNet-M finds the occluders in it, Amodal-VAE's
    fitted frame what surrounds each instance); ``model`` a trained model for the learned methods;
    ``box`` "predicted" or "amodal-gt" (the GT amodal box: evaluation only); ``threshold`` None for
    :func:`default_threshold`; Amodal-VAE only: ``frame`` "fit" or "transformer" (the paper's;
    :mod:`amodal_lib.predict.amodal_vae`), ``samples`` K > 0 thresholds the mean of K posterior
    samples' probabilities, drawn from ``seed``; ``noise``: the visible masks' noise in pixels, or
    "auto" to estimate it from the boundaries of all of ``ann``'s (:mod:`amodal_lib.predict.evidence`: 0 for annotations;
    above 0, a segmenter's masks are treated as evidence, not truth, at the threshold searched for
    them). :func:`complete_batches` gives the same batch by batch."""
    return {k: v for part in complete_batches(name, ann, model, instances, threshold=threshold, box=box,
                                              samples=samples, frame=frame, seed=seed, noise=noise)
            for k, v in part.items()}


def complete_batches(name: str, ann, model=None, instances: Optional[Sequence] = None, *,
                     threshold: Optional[float] = None, box: str = "predicted", samples: int = 0, frame: str = "fit",
                     seed: int = 0, workers: int = 1, noise="auto") -> Iterator[dict]:
    """:func:`complete` as an iterator of {annotation id: RLE}, one per batch of instances in order
    (a thousand or so): what ``amodal complete`` writes out as it goes, so that memory does not
    grow with the file. ``workers``: processes the learned methods run their batches on, on the
    CPU (0: one per core; :mod:`amodal_lib.predict.workers`; the same masks). The arguments are
    checked at the call, before any batch."""
    f = family(name, RULE, COMPLETION)
    instances = list(ann.instances if instances is None else instances)
    if f.role == RULE:
        return f.complete(None, ann, instances)
    if model is None:
        raise ArgumentError(f"{name} needs a trained model (a run folder or checkpoint)")
    if box not in BOXES:
        raise ArgumentError(f"box must be 'predicted' or 'amodal-gt', got {box!r}")
    # the noise is the file's: read on all of its masks, not on the few completed (the boundaries of
    # occluded instances alone, cut by their occluders, read rougher than annotations are)
    level, noisy = resolve_evidence(name, model, ann.instances, noise, frame, box)
    if level > 0 and noise == "auto" and evidence_of(model) == "smooth":
        from .predict import evidence   # deferred on purpose: torch, as families()
        ann = evidence.smoothed(ann, level)   # every mask of the file, the neighbours' too
        by_id = ann.by_id()
        instances = [by_id[i.id] for i in instances]
        level = resolve_noise(name, model, ann.instances, "auto", frame, box)   # what the smoothed masks read
    t = default_threshold(name, getattr(model, "checkpoint", None), noisy=noisy)[0] if threshold is None \
        else float(threshold)
    return f.complete(model, ann, instances, threshold=t, box=box, samples=samples, frame=frame, seed=seed,
                      workers=workers, noise=level)


def resolve_evidence(name: str, model, instances: Sequence, noise="auto", frame: str = "fit",
                     box: str = "predicted", reading=None) -> tuple[float, bool]:
    """(the noise in pixels a completion works with, whether the masks are a segmenter's): with
    "auto", masks read as a segmenter's are taken as the run's validation found best
    (:func:`evidence_of`): as soft evidence at their estimated noise, as truth (noise 0), or smoothed
    by their estimated noise first (the noise returned; :func:`complete_batches` smooths them and
    reads their noise again); always at the threshold searched for such masks. ``reading``: the
    instances' :func:`noise_reading`, where made already (its estimate is what "auto" reads)."""
    if noise == "auto" and reading is not None:
        level = reading.estimate
    else:
        level = resolve_noise(name, model, instances, noise, frame, box)
    if level > 0 and noise == "auto" and evidence_of(model) == "hard":
        return 0.0, True
    return level, level > 0


def evidence_of(model) -> str:
    """How a run takes a segmenter's masks, as its validation chose (``threshold.json``'s
    ``noisy.evidence``: "soft", "hard" or "smooth"; :mod:`amodal_lib.predict.evidence`)."""
    from .thresholds import noisy_evidence   # deferred on purpose: torch, as families()
    return noisy_evidence(getattr(model, "checkpoint", None))


def resolve_noise(name: str, model, instances: Sequence, noise="auto", frame: str = "fit",
                  box: str = "predicted") -> float:
    """The visible masks' noise in pixels a completion method works with: Amodal-VAE's ``noise`` (or,
    for "auto", its estimate from the masks' boundaries; 0 in its transformer frame); 0 for the
    others, which take masks as given."""
    if name != "amodal-vae":
        return 0.0
    from .predict.amodal_vae import resolve_noise as vae_noise  # deferred on purpose: torch, as families()
    return vae_noise(model, instances, noise, frame, box)


def noise_reading(name: str, model, instances: Sequence, frame: str = "fit", box: str = "predicted"):
    """Where a completion estimates the visible masks' noise ("auto"), the estimate with its 90% bootstrap
    interval and how many masks it read (:class:`amodal_lib.predict.evidence.NoiseReading`, on the model's
    calibration): what ``amodal complete`` tells its user. None where nothing is estimated (a method or
    frame that takes the masks as given)."""
    if name != "amodal-vae":
        return None
    # deferred on purpose: as resolve_noise
    from .predict.amodal_vae import takes_masks_as_given
    from .predict.evidence import read_noise
    if takes_masks_as_given(frame, box):
        return None
    return read_noise(instances, getattr(model, "noise_calibration", None))


def complete_from_visible(name: str, ann, visible: dict, model=None, instances: Optional[Sequence] = None,
                          source: str = "the visible masks", **kwargs) -> dict:
    """:func:`complete` with ``visible`` ({annotation id: RLE}, e.g. predicted masks) as every
    instance's visible mask, for the targets and for what surrounds them
    (:func:`amodal_lib.data.records.with_visible`). An instance whose given mask is empty has
    nothing to complete: its completion is empty. Evaluate the result against ``ann`` itself.
    :func:`complete_from_visible_batches` gives the same batch by batch."""
    return {k: v for part in complete_from_visible_batches(name, ann, visible, model, instances, source, **kwargs)
            for k, v in part.items()}


def complete_from_visible_batches(name: str, ann, visible: dict, model=None, instances: Optional[Sequence] = None,
                                  source: str = "the visible masks", **kwargs) -> Iterator[dict]:
    """:func:`complete_from_visible` batch by batch, in the order of ``instances`` (as
    :func:`complete_batches`; the instances with an empty mask are completed as empty in place)."""
    swapped = with_visible(ann, visible, source)
    by_id = swapped.by_id()
    wanted = [by_id[i.id] for i in (ann.instances if instances is None else instances)]
    nonempty = [i for i in wanted if i.visible_area > 0]
    batches = complete_batches(name, swapped, model, nonempty, **kwargs) if nonempty else iter(())

    def in_order():
        k = 0
        for part in batches:
            out = {}
            for inst_id in part:   # the empty ones before each completed one, then it
                while wanted[k].id != inst_id:
                    out[wanted[k].id] = M.empty(wanted[k].height, wanted[k].width)
                    k += 1
                out[inst_id] = part[inst_id]
                k += 1
            yield out
        if k < len(wanted):
            yield {i.id: M.empty(i.height, i.width) for i in wanted[k:]}
    return in_order()


# --------------------------------------------------------------------------- segmentation networks
def segment(name: str, ann, model, instances: Optional[Sequence] = None, *, threshold: Optional[float] = None,
            box: Optional[str] = None, progress: bool = False) -> dict:
    """{annotation id: RLE}: the visible mask of each of ``instances`` (default: all of ``ann``)
    predicted by the segmentation network ``model`` from ``ann``'s images (supplementary Table 1);
    ``box``: None for the one the network was trained with ("amodal" or "visible"); ``threshold``
    None for 0.5. :func:`segment_batches` gives the same batch by batch."""
    instances = list(ann.instances if instances is None else instances)
    out: dict = {}
    with tqdm(total=len(instances), desc=name, unit="mask", disable=not progress, leave=False) as bar:
        for part in segment_batches(name, ann, model, instances, threshold=threshold, box=box):
            out.update(part)
            bar.update(len(part))
    return out


def segment_batches(name: str, ann, model, instances: Optional[Sequence] = None, *,
                    threshold: Optional[float] = None, box: Optional[str] = None) -> Iterator[dict]:
    """:func:`segment` as an iterator of {annotation id: RLE}, one per batch of instances in order
    (what ``amodal segment`` writes out as it goes)."""
    return family(name, SEGMENTER).segment(model, ann, instances, threshold=threshold, box=box)
