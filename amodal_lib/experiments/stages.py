"""What notebooks 01-03 show of Amodal-VAE's three training stages (``docs/design.md``, "Training
stages"): what each stage was validated on step by step and which checkpoint it kept, read back
from its history; stage 1's reconstructions; stage 2's simulated occlusions and how much they hide.

A stage's history is the engine's records (:class:`amodal_lib.train.engine.Trainer`): ``split``
"train" (losses per step), "val" (stages 2 and 3: ``val_score``, the selection score, and
``val_<set>_A_full|A_inv|B_full|B_inv`` for each validation set of the run,
:mod:`amodal_lib.train.validation`) and "selected" (the step whose weights the stage ended with).
Stage 3's step 0 is its starting point, stage 2's weights.
"""
from __future__ import annotations

from typing import Optional, Sequence

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..data.crops import crop_masks
from ..models.amodal_vae import S, warp_to_frame
from ..train.amodal_vae import load_model, stage_done, stage_path, train_stage
from ..train.amodal_vae_stages import VAEConfig, prepare
from ..train.occlusions import partial_inputs, simulate_occlusions

HISTORY_KEYS = {"A_full": "A_full", "A_inv": "A_invisible", "B_full": "B_full", "B_inv": "B_invisible"}
VALIDATION_COLUMNS = ["step", "set", "A_full", "A_invisible", "B_full", "B_invisible", "score", "selected"]


# --------------------------------------------------------------------------- validation and selection
def _val_records(history: Sequence[dict]) -> list:
    return sorted((h for h in history if h.get("split") == "val" and "val_score" in h), key=lambda h: h["step"])


def validation_set_names(history: Sequence[dict]) -> list:
    """The validation sets a stage was scored on, in the order of its records (e.g. ["labelled"], or
    ["pasted", "pasted_no_occluders"])."""
    names: dict = {}
    for h in _val_records(history):
        for k in h:
            if k.startswith("val_") and k.endswith("_A_full"):
                names[k[len("val_"):-len("_A_full")]] = None
    return list(names)


def selected_step(history: Sequence[dict]) -> Optional[int]:
    """The step whose weights the stage ended with (None: no selection was made, the last step's)."""
    chosen = [h for h in history if h.get("split") == "selected"]
    return int(chosen[-1]["step"]) if chosen else None


def validation_table(history: Sequence[dict]) -> pd.DataFrame:
    """One row per evaluation step and validation set: ``step``, ``set``, the set's mIoU (%)
    ``A_full``, ``A_invisible``, ``B_full``, ``B_invisible``, the step's selection ``score`` (over
    all sets) and ``selected`` (the checkpoint the stage kept)."""
    sel = selected_step(history)
    rows = [{"step": int(h["step"]), "set": name,
             **{col: h.get(f"val_{name}_{key}") for key, col in HISTORY_KEYS.items()},
             "score": float(h["val_score"]), "selected": int(h["step"]) == sel}
            for h in _val_records(history) for name in validation_set_names(history)]
    return pd.DataFrame(rows, columns=VALIDATION_COLUMNS)


def selection(history: Sequence[dict], stage: int) -> dict:
    """What a stage's checkpoint selection did: {"stage", "steps" (validated), "selected", "score"
    (its selection score), "last_step", "last_score", "start_score" (step 0's, stage 3: stage 2's
    weights; else None), "kept_start" (stage 3 kept stage 2's weights), "statement"}."""
    vals = _val_records(history)
    out = {"stage": stage, "steps": [int(h["step"]) for h in vals], "selected": selected_step(history),
           "score": None, "last_step": None, "last_score": None, "start_score": None, "kept_start": False}
    if not vals:
        out["statement"] = f"Stage {stage} was not validated on completions: it ended with its last step."
        return out
    by_step = {int(h["step"]): float(h["val_score"]) for h in vals}
    last = max(by_step)
    sel = out["selected"] if out["selected"] is not None else last
    out.update(selected=sel, score=by_step.get(sel), last_step=last, last_score=by_step[last],
               start_score=by_step.get(0), kept_start=stage == 3 and sel == 0)
    steps = f"validated at {len(vals)} steps ({min(by_step)} to {last})"
    if out["kept_start"]:
        best = max((s for s in by_step if s != 0), key=by_step.get, default=None)
        tail = "" if best is None else f"; the best fine-tuned checkpoint, step {best}, scored {by_step[best]:.2f}"
        out["statement"] = (f"Stage 3 was {steps}, step 0 being stage 2's weights. None of its checkpoints beat "
                            f"them (selection score {by_step[0]:.2f}{tail}), so the run keeps stage 2's "
                            "weights: stage 3 changed nothing.")
        return out
    kept = f"the checkpoint of step {sel} (selection score {by_step[sel]:.2f})"
    rest = "the last one" if sel == last else f"not the last one (step {last}: {by_step[last]:.2f})"
    start = f", up from {by_step[0]:.2f} with stage 2's weights at step 0" if stage == 3 and 0 in by_step else ""
    out["statement"] = f"Stage {stage} was {steps}; it kept {kept}{start}, {rest}."
    return out


def scores_at(history: Sequence[dict], step: int) -> dict:
    """{set: {"A_full", "A_invisible", "B_full", "B_invisible"}}: what the validation at ``step``
    measured on each set (the numbers :func:`amodal_lib.experiments.comparison.models_table` would compute for
    those weights on that set, at the run's evaluation threshold, in the fitted frame)."""
    rec = [h for h in _val_records(history) if int(h["step"]) == int(step)]
    if not rec:
        return {}
    return {name: {col: rec[-1].get(f"val_{name}_{key}") for key, col in HISTORY_KEYS.items()}
            for name in validation_set_names(history)}


def before_after(history: Sequence[dict], before: str, after: str) -> dict:
    """Stage 3's validation of its start (step 0, stage 2's weights) and of the step it kept, as
    {set: {before: scores, after: scores}} (:func:`scores_at`); {} when either was not validated."""
    sel = selected_step(history)
    start, kept = scores_at(history, 0), scores_at(history, sel if sel is not None else -1)
    if not start or not kept:
        return {}
    return {name: {before: start[name], after: kept[name]} for name in start}


# --------------------------------------------------------------------------- stage 1
@torch.no_grad()
def reconstructions(model, ann, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1 on unoccluded masks of ``ann`` (judged from modal information): the first ``n``,
    each cropped in its own box (n, 28, 28), and their decoded posterior modes."""
    unoccluded = ann.modal_view().unoccluded()[:n]
    x = crop_masks(unoccluded, "visible", "visible")
    return x, model.reconstruct(x.to(next(model.parameters()).device)).cpu()


# --------------------------------------------------------------------------- stage 2
def stage2_data(ann, config: dict) -> tuple[dict, object]:
    """What stage 2 simulates occlusions from, cut from ``ann`` as a run cuts its training split
    (``amodal_vae_stages.prepare``: the unoccluded instances' masks and the occluder pool, modal
    information only), and the run's settings as a ``VAEConfig`` (``config``: a run's
    ``res["config"]``)."""
    cfg = VAEConfig(**config)
    return prepare(ann, stages=(2,), cfg=cfg), cfg


def _simulate(data: dict, n: int, cfg, seed: int, unoccluded_prob: float, device="cpu") -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(data["full"]), (n,), generator=g)
    k = torch.randint(len(data["occ"]), (n,), generator=g)
    full = data["full"][idx].float().div(255).to(device)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sim = simulate_occlusions(full, data["full_wh"][idx].to(device), data["occ"][k].float().div(255).to(device),
                                  data["occ_wh"][k].to(device), cfg.max_occluded, unoccluded_prob)
    return sim, full


@torch.no_grad()
def simulated_completions(model, ann, config: dict, n: int = 12, seed: int = 0) -> tuple[list, torch.Tensor]:
    """Stage 2's simulated occlusions (all occluded) of ``n`` unoccluded masks of ``ann``
    (:func:`stage2_data`) and the model's completions: rows for :func:`amodal_lib.viz.plot_crops`
    (the full mask y, the occluded y_hat, the encoder's input in its visible box, the completion in
    its full-object frame, and that completion placed in the box the transformer predicts, seen in
    the true full frame), and the hidden fractions."""
    data, cfg = stage2_data(ann, config)
    dev = next(model.parameters()).device
    sim, full = _simulate(data, n, cfg, seed, 0.0, dev)
    x = partial_inputs(sim, torch.zeros(n, dtype=torch.bool, device=dev))
    r = model.complete(x, log_aspect=sim["log_aspect"])
    placed = warp_to_frame(r.probs, r.boxes, sim["full_rel"], S)
    y = F.adaptive_avg_pool2d(full.unsqueeze(1), S)[:, 0]
    rows = [("full y", y), ("occluded y_hat", sim["partial"]), ("input", x), ("completion", r.probs),
            ("in pred. box", placed)]
    return [(name, t.cpu()) for name, t in rows], sim["occluded"].cpu()


def simulated_fractions(ann, config: dict, n: int = 2000, seed: int = 0) -> np.ndarray:
    """Hidden fractions of ``n`` simulated occlusions of ``ann``'s masks as stage 2 draws them (a
    share ``unoccluded_prob`` left whole), for comparison with real occlusion rates."""
    data, cfg = stage2_data(ann, config)
    sim, _ = _simulate(data, n, cfg, seed + 1, cfg.unoccluded_prob)
    return sim["occluded"].numpy()


# --------------------------------------------------------------------------- stage 2 trained otherwise
#: stage 2 trained otherwise for notebook 07: {name: (run folder suffix, VAEConfig overrides)}
STAGE2_VARIANTS = {"KL weight 1": ("stage2-kl1", {"kl_final": 1.0}),
                   "KL to the full mask's posterior": ("stage2-match", {"match_posterior": True})}


def stage2_variant(annotations, base_run, out_dir, profile: Optional[str] = None, seed: int = 0, device="auto",
                   **overrides):
    """Stage 2 trained again from ``base_run``'s stage 1 (its ``stage1.pt`` copied into ``out_dir``)
    with :class:`~amodal_lib.train.amodal_vae_stages.VAEConfig` ``overrides`` (``kl_final``: stage 2's
    KL weight; ``match_posterior=True``: KL to the full mask's posterior instead of the prior), on
    the modal view of ``annotations``, without validation (it keeps its last step); a finished one in
    ``out_dir`` is reused. Notebook 07 asks with it whether the KL weight or stage 2's objective makes
    Fig 4. Returns the stage-2 model."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not stage_done(out, 2):
        if not stage_done(out, 1):
            shutil.copy(stage_path(base_run, 1), stage_path(out, 1))
        cfg = VAEConfig.from_profile(profile, **overrides)
        train_stage(2, prepare(annotations, [2], cfg), out, cfg, seed=seed, device=device, progress=False)
    return load_model(out, device, stage=2)
