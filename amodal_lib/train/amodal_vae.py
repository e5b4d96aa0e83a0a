"""Amodal-VAE's three training stages (supplementary 3.1; ``docs/design.md``, "Training stages"),
on the generic engine (:mod:`amodal_lib.train.engine`).

1. **Shape prior** (:class:`Stage1`): a VAE on full masks of unoccluded instances, each cropped in
   its own box at 28x28; Adam lr 1e-3; loss BCE + lambda(t) KL(q(z|y) || N(0, I)) with the KL
   annealing of supplementary eq. (1) (:func:`kl_weight`).
2. **Partial encoder** (:class:`Stage2`): decoder (and full encoder) frozen; the partial encoder
   q(z|y_hat) and the spatial transformer learn from simulated occlusions: another instance's mask,
   randomly scaled and shifted, pasted over a full mask (y_hat = y (1 - o)), all on tensors in one
   batch (:mod:`amodal_lib.train.occlusions`). Loss BCE(y, decoder(z)) + lambda_final
   KL(q(z|y_hat) || N(0, I)) (or, as an option, KL(q(z|y_hat) || q(z|y))), plus a box-regression
   loss for the transformer, whose target is known exactly. Both input frames are trained (visible
   box, flag 0; GT amodal box, flag 1). lr 1e-4.
3. **Fine-tuning on real occluded instances** (:class:`Stage3`): the decoder output, placed in the
   predicted full-object box, is warped into a context frame (the visible box grown 3x) where the
   likelihood counts only the known pixels: the visible mask (1) and the pixels inside the image
   that no other instance covers (0). Pixels under another instance's visible mask are left out;
   a KL term keeps the posterior near stage 2's. lr 1e-4, decoder frozen.

Every stage is validated (:mod:`amodal_lib.train.validation`: the file's own amodal labels, or
pasted occlusions on held-out images when it has none); stages 2 and 3 end with their best
validation checkpoint, and stage 3's candidates include stage 2's weights, so it never makes
validation worse (on real masks its known-pixel likelihood counts truly hidden pixels as background
wherever the occluder is not annotated: poles, trees, unlabelled objects). After the last stage the
threshold is searched on the same validation (``threshold.json``).

The run's frame (``VAEConfig.frame``, the fitted one by default) is what selects the checkpoints. A
variant frame (``VAEConfig.variants``: the paper's transformer frame) is scored at every evaluation
too and gets what a fair comparison needs: the checkpoint its own validation score picks among
every evaluation of stages 2 and 3, and its own threshold, in ``<run>/<frame>/``
(:func:`write_variants`; ``amodal complete --frame transformer`` reads them from there).

No amodal label is read by any stage: :func:`prepare` starts from ``ann.modal_view()``. Masks are
cropped once per run into in-memory uint8 tensors. :func:`train_amodal_vae` runs the stages into
one run directory (``stage1.pt``, ``stage2.pt``, ``stage3.pt``; stage k starts from stage k-1's);
:func:`load_model` loads the latest. The stages' settings, data, losses and evaluation are
:mod:`amodal_lib.train.amodal_vae_stages`'s.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
import dataclasses
from typing import Optional

import pandas as pd
import torch

from ..data import as_annotations
from ..data.readers import read_json
from ..errors import ArgumentError, CheckpointError, MissingCheckpointError
from ..io import atomic_write_json
from ..models.amodal_vae import GEOMETRY_FEATURES, AmodalVAE
from ..predict.amodal_vae import complete_instances, resolve_noise, takes_masks_as_given
from ..predict import evidence as EV
from ..predict.evidence import calibrate
from ..thresholds import clean_choice, noisy_threshold, read_threshold, sweep_thresholds, write_threshold
from . import engine as E
from . import timing
from .amodal_vae_stages import (STAGES, Stage1, Stage2, Stage3, VAEConfig, _split, make_eval_fn, prepare,
                                 variant_frames, variant_key)
from .validation import Validation, validation_split


CALIBRATION_FILE = "noise_calibration.json"   # how rough the training masks are, clean and corrupted


# --------------------------------------------------------------------------- running the stages
def stage_path(run_dir, stage: int) -> Path:
    return Path(run_dir) / f"stage{stage}.pt"


def stage_done(run_dir, stage: int) -> bool:
    p = stage_path(run_dir, stage)
    if not p.is_file():
        return False
    return bool(E.load_checkpoint(p).get("done"))


def _vae_from_checkpoint(path: Path, device) -> tuple[AmodalVAE, dict]:
    ck = E.load_checkpoint(path, map_location="cpu")
    extra = ck.get("extra") if isinstance(ck, dict) else None
    mcfg = extra.get("model") if isinstance(extra, dict) else None
    if not isinstance(mcfg, dict) or "latent_dim" not in mcfg:
        raise CheckpointError(path, "not an Amodal-VAE checkpoint (no model configuration)")
    try:
        vae = AmodalVAE(**mcfg)
        vae.load_state_dict(ck["model"])
    except (TypeError, KeyError, RuntimeError) as e:
        raise CheckpointError(path, f"its weights do not fit an Amodal-VAE of {mcfg} "
                                    f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return vae.to(device), ck


def train_stage(stage: int, data: dict, run_dir, cfg: VAEConfig, seed: int = 0, device="auto",
                resume: bool = True, validation: Optional[Validation] = None, progress: bool = True,
                dist: Optional[E.Dist] = None, steps: Optional[int] = None) -> tuple[AmodalVAE, list]:
    """Train one stage into ``run_dir/stage{k}.pt``, starting from stage k-1's checkpoint. With a
    ``validation`` (and ``cfg.select``), stages 2 and 3 end with their best validation checkpoint;
    stage 3's candidates include its starting point (stage 2's weights), so it never ends worse. The
    best evaluation of each variant frame (``cfg.variants``) is kept in the checkpoint too
    (:func:`write_variants`)."""
    run_dir = Path(run_dir)
    dist = dist or E.setup_distributed(device)
    E.seed_everything(seed + 1000 * stage + dist.rank)
    if stage == 1:
        vae = AmodalVAE(cfg.width, cfg.latent_dim, cfg.hidden, GEOMETRY_FEATURES if cfg.geometry else 0)
    else:
        prev = stage_path(run_dir, stage - 1)
        if not stage_done(run_dir, stage - 1):
            raise MissingCheckpointError(prev, f"stage {stage} starts from stage {stage - 1}'s finished checkpoint, "
                                    f"and it is {'unfinished' if prev.is_file() else 'missing'}: "
                                    f"train stage {stage - 1} first")
        vae, _ = _vae_from_checkpoint(prev, "cpu")
        if stage == 2:
            vae.init_partial_from_full()
    if stage in (1, 2):
        tr_idx, val_idx = _split(len(data["full"]), cfg.val_fraction, seed)
        keys = ("full", "full_wh", "full_box", "full_hw")
        train_data = {k: data[k][tr_idx] for k in keys}
        held = {k: data[k][val_idx] for k in keys}
        if stage == 2:
            held.update(occ=data["occ"], occ_wh=data["occ_wh"])
    else:
        tr_idx, val_idx = _split(len(data["vis"]), cfg.val_fraction, seed)
        keys = ("vis", "ctx", "log_aspect", "vis_box", "vis_hw")
        train_data = {k: data[k][tr_idx] for k in keys}
        held = {k: data[k][val_idx] for k in keys}
    module = {1: Stage1, 2: Stage2, 3: Stage3}[stage]
    mod = module(vae, cfg, data["occ"], data["occ_wh"]) if stage == 2 else module(vae, cfg)
    opt = torch.optim.Adam(mod.parameters_to_train(), lr=cfg.lr(stage))
    select = "val_score" if stage >= 2 and validation is not None and cfg.select else None
    keep = [f"{variant_key(f)}_score" for f in variant_frames(cfg)] if select else []
    trainer = E.Trainer(
        mod, opt, train_data, batch_size=cfg.batch_size, steps=steps or cfg.steps(stage), run_dir=run_dir,
        name=f"stage{stage}", stage=str(stage), seed=seed + stage,
        step_fn=lambda m, b, s: m(b, s), eval_fn=make_eval_fn(stage, cfg, held, validation, seed),
        eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
        config=asdict(cfg), extra={"model": vae.config, "stage": stage, "seed": seed},
        dist=dist, resume=resume, progress=progress, save_module=vae, select=select,
        select_start=stage == 3, keep=keep)
    history = trainer.fit()
    return vae.eval(), history


def stage_summary(stage: int, history: list, validation: Optional[Validation]) -> str:
    """One line on a finished stage: the checkpoint it ended with and its validation scores."""
    chosen = [h for h in history if h.get("split") == "selected"]
    vals = [h for h in history if h.get("split") == "val" and "val_score" in h]
    if not chosen or not vals or validation is None:
        return f"stage {stage}: done"
    step = chosen[-1]["step"]
    rec = next(h for h in vals if h["step"] == step)
    scores = {k[4:]: v for k, v in rec.items() if k.startswith("val_")}
    line = f"stage {stage}: checkpoint of step {step} selected (validation score {rec['val_score']:.2f}: " \
           f"{validation.summary(scores)})"
    if stage == 3 and step == 0:
        line += "; stage 3 did not improve on stage 2, so the run keeps stage 2's weights"
    return line


def train_amodal_vae(annotations, out_dir, profile: Optional[str] = None, stage: Optional[int] = None,
                     seed: int = 0, device="auto", resume: bool = True, val_annotations=None,
                     progress: bool = True, upto: Optional[int] = None, steps: Optional[int] = None,
                     **overrides) -> dict:
    """Train Amodal-VAE's stages into ``out_dir`` (``amodal train --model amodal-vae``).

    ``annotations``: a path or AnnotationSet (any format; only its modal view is trained on).
    ``val_annotations``: the validation set (:func:`amodal_lib.train.validation.validation_split`;
    None: whole images of ``annotations`` are held out and, without amodal labels, pasted
    occlusions are built on them). The sets are written into ``out_dir`` (``validation*.json``).
    ``stage``: one stage, or None for all in order (up to stage ``upto`` if given), skipping
    those already finished (an unfinished one resumes when ``resume``). ``steps`` overrides every
    stage's number of steps; ``overrides``: any :class:`VAEConfig` field, e.g. ``stage1_steps=200``.
    When the last stage is trained here, the threshold with the best validation full mIoU is
    written to ``out_dir/threshold.json`` (:func:`amodal_lib.thresholds.sweep_thresholds`), and each
    variant frame gets its own checkpoint and threshold in ``out_dir/<frame>/`` (:func:`write_variants`).
    Returns {"model", "history": {stage: [...]}, "seconds": {stage: s}, "config", "validation",
    "threshold", "variants", "log": [lines]}.
    """
    cfg = VAEConfig.from_profile(profile, **overrides)
    out_dir = Path(out_dir)
    stages = [int(stage)] if stage is not None else [s for s in STAGES if upto is None or s <= upto]
    if any(s not in STAGES for s in stages):
        raise ArgumentError(f"stage must be 1, 2 or 3, got {stage}")
    todo = [s for s in stages if not stage_done(out_dir, s)]
    last = max(stages)
    # the threshold is searched after the last stage asked for, when trained now, or trained by a run
    # killed before it wrote the threshold (threshold.json missing, or of an earlier stage)
    search = last >= 2 and (last in todo or (not any(stage_path(out_dir, s).is_file() for s in STAGES if s > last)
                                             and (read_threshold(out_dir) or {}).get("stage") != last))
    dist = E.setup_distributed(device)
    result: dict = {"history": {}, "seconds": {}, "config": asdict(cfg), "model": None, "validation": None,
                    "threshold": None, "variants": {}, "log": []}

    def say(line: str) -> None:
        result["log"].append(line)
        if dist.is_main and progress:
            print(line, flush=True)

    validation = None
    train_ann = annotations
    if todo or search:
        train_ann, validation = validation_split(annotations, val_annotations, cfg.holdout_fraction, seed,
                                                 cfg.val_max_targets, cfg.eval_max_instances,
                                                 cfg.val_noise)
        result["validation"] = validation
        if dist.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            validation.write(out_dir)
            if not (out_dir / CALIBRATION_FILE).is_file():
                cal = calibrate(as_annotations(train_ann).modal_view().instances, seed=seed)
                atomic_write_json(out_dir / CALIBRATION_FILE, cal)
                say(f"segmenter-noise calibration (boundary roughness of the training masks, clean "
                    f"{cal['clean']:.3f}) -> {out_dir / CALIBRATION_FILE}")
        say(f"validation: {validation.description}")
    data = prepare(train_ann, todo, cfg) if todo else {}
    for s in stages:
        if s not in todo:
            say(f"stage {s}: {stage_path(out_dir, s)} is finished; skipped")
            result["history"][s] = E.load_checkpoint(stage_path(out_dir, s))["history"]
            continue
        clock = timing.Stopwatch()
        _, hist = train_stage(s, data, out_dir, cfg, seed=seed, device=device, resume=resume, validation=validation,
                              progress=progress, dist=dist, steps=steps)
        result["history"][s] = hist
        result["seconds"][s] = clock.elapsed()["wall_s"]
        say(stage_summary(s, hist, validation) + f" [{result['seconds'][s]:.0f} s]")
    result["model"] = load_model(out_dir, dist.device)
    if search and dist.is_main:
        # the variants first: a run killed before threshold.json is written searches both again
        result["variants"] = write_variants(out_dir, cfg, validation, last, dist.device)
        for frame, info in result["variants"].items():
            say(f"{frame} frame (a variant selected for itself): checkpoint of stage {info['stage']} step "
                f"{info['step']} (its validation score {info['value']:.2f}), threshold {info['threshold']:g} "
                f"-> {variant_dir(out_dir, frame)}")
        result["threshold"] = search_threshold(result["model"], validation, cfg, out_dir)
        th = result["threshold"]
        said = ", ".join(f"{k} {v:.2f}" for k, v in th["mirror_choice"].items())
        noisy = th.get("noisy")
        how = {"soft": "as soft evidence", "hard": "as truth", "smooth": "smoothed first"}
        segmenter = f"; a segmenter's masks {how[noisy['evidence']]}, threshold {noisy['threshold']:g}" if noisy else ""
        say(f"threshold {th['threshold']:g} (largest validation full mIoU, protocol A), mirror average "
            f"{'on' if th['mirror'] else 'off'} (validation full mIoU {said}){segmenter} -> {out_dir / 'threshold.json'}")
    return result


# --------------------------------------------------------------------------- variants
def variant_dir(run_dir, frame: str) -> Path:
    """Where a run keeps a variant frame's own checkpoint and threshold: ``run_dir/<frame>/``, itself
    a run folder that :func:`load_model` and :func:`amodal_lib.thresholds.default_threshold` read."""
    return Path(run_dir) / frame


def variant_checkpoint(checkpoint, frame: str) -> Path:
    """What a completion in ``frame`` reads from ``checkpoint``: the run's own checkpoint and threshold
    for that frame (``<run>/<frame>/``, :func:`write_variants`) when ``checkpoint`` is a run folder that
    has them, else ``checkpoint`` itself (a file, the run's own frame, or a run made before variants)."""
    p = Path(checkpoint)
    v = variant_dir(p, frame)
    if p.is_dir() and any(v.glob("stage*.pt")) and (v / "threshold.json").is_file():
        return v
    return p


def write_variants(out_dir, cfg: VAEConfig, validation: Validation, last: int, device="cpu") -> dict:
    """Each variant frame of the run (:func:`~amodal_lib.train.amodal_vae_stages.variant_frames`, e.g. the
    paper's transformer frame beside the fitted one), selected for itself: among every evaluation of
    stages 2 to ``last`` (the stage checkpoints' ``kept`` weights; ties: the earlier), the checkpoint
    with the best selection score in that frame, written as ``<frame>/stage{k}.pt``; then its own
    threshold, searched on the same validation in that frame (``<frame>/threshold.json``,
    :func:`search_threshold`). Returns {frame: {"stage", "step", "value", "threshold", "dir"}}."""
    out = {}
    for frame in variant_frames(cfg):
        metric = f"{variant_key(frame)}_score"
        best = None
        for s in range(2, last + 1):
            path = stage_path(out_dir, s)
            ck = E.load_checkpoint(path, map_location="cpu")
            kept = (ck.get("kept") or {}).get(metric)
            if kept is not None and (best is None or kept["value"] > best[1]["value"]):
                best = (s, kept, ck)
        if best is None:
            continue
        s, kept, ck = best
        folder = variant_dir(out_dir, frame)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("stage*.pt"):   # an earlier selection of another stage
            if old.name != f"stage{s}.pt":
                old.unlink()
        selected = {"stage": s, "step": int(kept["step"]), "metric": metric, "value": float(kept["value"])}
        E.save_checkpoint(folder / f"stage{s}.pt", {"model": kept["model"], "done": True, "history": [],
                                                   "extra": {**ck["extra"], "variant": frame, "selected": selected}})
        model = load_model(folder, device)
        info = search_threshold(model, validation, dataclasses.replace(cfg, frame=frame), folder)
        out[frame] = {**{k: v for k, v in selected.items() if k != "metric"}, "threshold": info["threshold"],
                      "dir": str(folder)}
    return out


def search_threshold(model: AmodalVAE, validation: Validation, cfg: VAEConfig, out_dir) -> dict:
    """Sweep ``cfg.thresholds`` on the validation sets, write ``threshold.json`` and
    ``threshold_sweep.csv`` into ``out_dir``; returns what threshold.json holds. In the fitted frame the
    sweep is made without and with the mirror average (:func:`amodal_lib.predict.amodal_vae.mirrored`),
    and the one of the larger criterion (ties: without) is kept: threshold.json's ``mirror``, which
    :func:`load_model` gives the model (``model.mirror``)."""
    if takes_masks_as_given(cfg.frame):   # any masks are taken at its one threshold: no noisy sets to search
        validation = dataclasses.replace(validation, sets={k: v for k, v in validation.sets.items()
                                                           if not validation.is_noisy(k)})
    searched = {}
    for mirror in (False, True) if cfg.frame == "fit" else (False,):
        model.mirror = mirror
        searched[mirror] = _sweep(model, validation, cfg)
    mirror = max(searched, key=lambda m: (searched[m][2], not m))
    model.mirror = mirror
    t, sweep, _ = searched[mirror]
    at = sweep[(sweep.threshold == t) & ~sweep.noisy]
    info = {"threshold": t, "criterion": "largest protocol-A full mIoU on the validation sets (mean over sets)",
            "frame": cfg.frame, "stage": int(getattr(model, "trained_stage", 0)),
            "validation": validation.description, "mirror": mirror,
            "mirror_choice": {("with" if m else "without"): round(v[2], 4) for m, v in searched.items()},
            "scores": {row.set: {"A_full": row.A_full, "A_inv": row.A_invisible, "B_full": row.B_full,
                                 "B_inv": row.B_invisible} for row in at.itertuples()}}
    tn, evidence = noisy_threshold(sweep)
    if tn is not None:   # for a segmenter's masks: the threshold, and soft evidence or the masks as truth
        atn = sweep[(sweep.threshold == tn) & sweep.noisy & (sweep.evidence == evidence)]
        info["noisy"] = {"threshold": tn, "evidence": evidence,
                         "criterion": "the same, on the sets with a segmenter's visible masks, with soft evidence "
                                      "(the noise estimated), the masks taken as truth, or smoothed first",
                         "scores": {row.set: {"A_full": row.A_full, "A_inv": row.A_invisible, "B_full": row.B_full,
                                              "B_inv": row.B_invisible} for row in atn.itertuples()}}
    write_threshold(out_dir, t, sweep, **{k: v for k, v in info.items() if k != "threshold"})
    return info


def _sweep(model: AmodalVAE, validation: Validation, cfg: VAEConfig) -> tuple:
    """(threshold, sweep, its criterion's value there: :func:`amodal_lib.thresholds.clean_choice`) of
    :func:`search_threshold`; the noisy sets swept with each way of taking a segmenter's masks
    (:data:`amodal_lib.thresholds.EVIDENCE`: soft evidence, as truth, smoothed first)."""
    def details(a, noise="auto"):
        return complete_instances(model, a.instances, frame=cfg.frame, context=a, return_details=True, noise=noise)

    def smooth_first(a):   # smoothed by the noise their boundaries read, then completed as any masks are
        return details(EV.smoothed(a, resolve_noise(model, a.instances, "auto", cfg.frame)))

    t, sweep = sweep_thresholds(validation, details, cfg.thresholds)
    sweep["evidence"] = "soft"
    noisy_sets = {k: v for k, v in validation.sets.items() if validation.is_noisy(k)}
    if noisy_sets:   # the same sets with the masks taken another way: validation says which helps
        noisy_val = dataclasses.replace(validation, sets=noisy_sets)
        for evidence, run in (("hard", lambda a: details(a, 0.0)), ("smooth", smooth_first)):
            _, other = sweep_thresholds(noisy_val, run, cfg.thresholds)
            sweep = pd.concat([sweep, other.assign(evidence=evidence)], ignore_index=True)
    return t, sweep, clean_choice(sweep)[1]


def load_model(run_dir_or_file, device="auto", stage: Optional[int] = None) -> AmodalVAE:
    """The Amodal-VAE of a run directory's latest stage checkpoint (or of a ``.pt`` file), in eval mode."""
    p = Path(run_dir_or_file)
    dev = E.resolve_device(device)
    if p.is_dir() or not p.suffix:
        cands = [stage_path(p, stage)] if stage else [stage_path(p, s) for s in reversed(STAGES)]
        found = [c for c in cands if c.is_file()]
        if not found:
            raise MissingCheckpointError(p, f"no Amodal-VAE checkpoint ({', '.join(c.name for c in cands)}) "
                                            "in this folder")
        p = found[0]
    vae, ck = _vae_from_checkpoint(p, dev)
    vae.trained_stage = int(ck.get("extra", {}).get("stage", 0))
    vae.checkpoint = str(p)
    vae.variant = ck.get("extra", {}).get("selected")   # a variant frame's: where its own selection found it
    cal = p.parent / CALIBRATION_FILE
    vae.noise_calibration = read_json(cal) if cal.is_file() else None
    vae.mirror = bool((read_threshold(p.parent) or {}).get("mirror", False))   # as its validation chose
    return vae.eval()
