"""A small, model-agnostic training engine: the fit loop every trained model of the study runs on
(Amodal-VAE's three stages, PCNet-M, ResNet-PSP, the inpainters, SPADE).

Its parts, each in its own module and all reachable here as ``engine.NAME``:

- :mod:`amodal_lib.train.distributed`: ``resolve_device``, ``seed_everything``,
  ``setup_distributed`` (torchrun's environment), ``wrap_ddp`` / ``unwrap``;
- :mod:`amodal_lib.models.weights`: ``save_checkpoint`` (atomic) and ``load_checkpoint``
  (``weights_only=True``: opening a checkpoint never runs code; a bad file is one
  :class:`~amodal_lib.errors.CheckpointError` naming it);
- :mod:`amodal_lib.train.checkpoints`: what a checkpoint holds besides the weights (``jsonable``
  config, ``rng_state`` / ``set_rng_state``) and the history file (``load_history``).

API
---
``Trainer(...).fit() -> history``
    The generic loop. The model is any ``nn.Module``; one step is
    ``losses = step_fn(model, batch, step)``, a dict of scalar tensors whose ``"loss"`` entry
    is back-propagated (the default ``step_fn`` is ``model(batch)``: with DDP the forward must
    go through the wrapped ``model(...)`` call so that gradients are averaged). ``batch`` is a
    dict of tensors drawn by index from ``data`` (a dict of equally long in-memory tensors,
    moved to the device once) with a seeded ``torch.Generator`` whose state is checkpointed:
    each step draws ``batch_size`` indices (the global batch) and rank ``r`` of ``W`` keeps
    every ``W``-th starting at ``r``.

    Every ``checkpoint_every`` steps and at the end it writes ``run_dir/<name>.pt`` (model,
    optimiser, scheduler, grad scaler, step, RNG states of torch/CUDA/numpy/python and of the
    batch generator, the config, the history, ``done``). With ``resume=True`` a run whose
    checkpoint exists continues from it and reaches bit-identical weights to an uninterrupted
    run with the same seed (one process; tested). Mixed precision (autocast bf16 or fp16 with a
    GradScaler) is used only on CUDA. Every ``eval_every`` steps ``eval_fn(model, step) -> dict``
    runs (rank 0, model in eval mode) and its metrics enter the history. Train losses are
    averaged over ``log_every`` steps (and over ranks). The history (a list of dicts with
    ``split`` = "train" | "val") is also written as JSON lines to ``run_dir/<name>.history.jsonl``.
    With ``select="metric"`` (a key that ``eval_fn`` returns; higher is better) the trainer keeps
    the weights of the best evaluation (also in the checkpoint, so a resumed run keeps them) and
    ends with them (the starting weights, evaluated before the first step, are a candidate too
    unless ``select_start=False``):
    the final checkpoint holds the selected weights, and its ``selected`` entry
    says which step they come from and their score ("train until converged on the validation
    set"). Only rank 0 evaluates: under DDP, load the final checkpoint to get the selection.
    With ``keep=("metric", ...)`` the best evaluation's weights for each further metric are kept
    too, without being ended with (a variant of the model that is selected on a score of its own,
    e.g. Amodal-VAE's transformer frame): the final checkpoint's ``kept`` entry is {metric:
    {"step", "value", "model"}}, checkpointed like ``best`` so that a resumed run keeps them.
    A loss that becomes NaN/inf raises :class:`NonFiniteLossError` naming the step and the stage;
    the last good checkpoint is left as it was. Only rank 0 writes files and shows a progress bar
    (``tqdm.auto``). What each call of ``fit`` cost (CPU and wall seconds, with the ``prepared``
    seconds the family spent on its data) is added to ``run_dir/<name>.timing.json``
    (:mod:`amodal_lib.train.timing`).

    **Several optimisers** (a GAN's generator and discriminator): ``optimizer`` may be a dict
    ``{phase: optimizer}``; each step then runs the phases in the dict's order on one batch:
    ``losses = step_fn(model, batch, step, phase)``, every gradient zeroed, its ``"loss"``
    back-propagated, and only that phase's optimizer stepped (clipping, when set, over its
    parameters only). The history names each phase's loss ``loss_<phase>`` (a key two phases
    share is prefixed ``<phase>_`` in the later one); the checkpoint holds every optimizer's
    state (and every scheduler's, when ``scheduler`` is a dict too), so resume stays exact.
    Under DDP the phases are separate forward/backward passes of the wrapped model: pass
    ``ddp_kwargs={"find_unused_parameters": True}`` when a phase leaves parameters unused.

Minimal use::

    class Net(nn.Module):
        def forward(self, batch):
            return {"loss": F.mse_loss(self.lin(batch["x"]), batch["y"])}

    net = Net()
    tr = Trainer(net, torch.optim.Adam(net.parameters(), 1e-3), data={"x": X, "y": Y},
                 batch_size=64, steps=1000, run_dir="runs/x", name="net", stage="net", seed=0)
    history = tr.fit()
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as tdist
from torch import nn

from ..errors import CheckpointError, DataError
from ..io import atomic_write_text
from ..models.weights import load_checkpoint, save_checkpoint
from . import timing
# the engine's whole API in one namespace (``engine.X``), each part defined once in its module
from .checkpoints import CHECKPOINT_FORMAT, history_file, jsonable, load_history, rng_state, set_rng_state
from .distributed import Dist, _all_gather_objects, resolve_device, seed_everything, setup_distributed, unwrap, wrap_ddp

__all__ = ["Trainer", "NonFiniteLossError", "resolve_device", "seed_everything", "Dist", "setup_distributed",
           "wrap_ddp", "unwrap", "save_checkpoint", "load_checkpoint", "jsonable", "rng_state", "set_rng_state",
           "history_file", "load_history", "CHECKPOINT_FORMAT"]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the stage, the step and the loss."""

    def __init__(self, stage: str, step: int, name: str, value: float, checkpoint: Optional[Path]):
        self.stage, self.step, self.loss_name, self.value, self.checkpoint = stage, step, name, value, checkpoint
        kept = f"the last good checkpoint {checkpoint} is kept" if checkpoint and Path(checkpoint).exists() \
            else "no checkpoint was written yet"
        super().__init__(f"stage {stage}: loss '{name}' became {value} at step {step}; training stopped ({kept})")


# --------------------------------------------------------------------------- the loop
def _default_step(model, batch, step, *phase):
    return model(batch, *phase)


class Trainer:
    """A generic training loop over in-memory tensors (see the module docstring for the contract).

    Parameters
    ----------
    model: the module to train (trainable = ``requires_grad`` parameters). It is moved to the
        device and wrapped in DDP when several processes run.
    optimizer: built over ``model``'s parameters (or a callable ``model -> optimizer``, which is
        called after the model is on its device); or a dict ``{phase: optimizer or callable}``
        for several optimisers stepped in turn (module docstring; ``step_fn`` then also takes
        the phase).
    data: dict name -> tensor, all with the same first dimension.
    batch_size: the global batch (split over ranks).
    steps: total number of optimisation steps.
    run_dir, name: files are ``run_dir/name.pt`` and ``run_dir/name.history.jsonl``.
    stage: a label for messages and the history.
    step_fn: ``(model, batch, step) -> {"loss": tensor, ...}``; ``(model, batch, step, phase)``
        with a dict of optimisers.
    eval_fn: ``(model, step) -> {metric: float}`` on rank 0, model unwrapped and in eval mode.
    config: JSON-able settings stored in the checkpoint; ``extra``: more JSON-able content
        (e.g. how to rebuild the model).
    amp: "auto" (bf16 on CUDA if supported, else fp16), "bf16", "fp16" or None/"off"; only on CUDA.
    save_module: the module whose ``state_dict`` is the checkpoint's "model" (default: ``model``;
        e.g. the network inside a loss wrapper).
    select: a metric of ``eval_fn`` (higher is better) whose best evaluation's weights the run
        ends with; None keeps the last step's. ``select_start``: the starting weights are
        evaluated and are a candidate too (off when they are untrained).
    keep: further metrics of ``eval_fn`` whose best evaluation's weights are kept in the checkpoint
        (``kept``) beside the run's own.
    prepared: {"cpu_s", "wall_s"} the family spent preparing ``data`` before the loop
        (:class:`amodal_lib.train.timing.Stopwatch`), recorded with each session's timing.
    """

    def __init__(self, model: nn.Module, optimizer, data: dict, batch_size: int, steps: int,
                 run_dir, name: str = "model", stage: str = "train", seed: int = 0,
                 step_fn: Callable = _default_step, eval_fn: Optional[Callable] = None,
                 eval_every: int = 0, checkpoint_every: int = 0, log_every: int = 10,
                 scheduler=None, clip_grad_norm: Optional[float] = None, config: Optional[dict] = None,
                 extra: Optional[dict] = None, device="auto", dist: Optional[Dist] = None,
                 amp: Optional[str] = "auto", resume: bool = True, progress: bool = True,
                 ddp_kwargs: Optional[dict] = None, save_module: Optional[nn.Module] = None,
                 select: Optional[str] = None, select_start: bool = True, prepared: Optional[dict] = None,
                 keep: Sequence[str] = ()):
        self.dist = dist or setup_distributed(device)
        self.device = self.dist.device
        self.raw_model = model.to(self.device)
        self.model = wrap_ddp(self.raw_model, self.dist, **(ddp_kwargs or {}))
        self.save_module = save_module if save_module is not None else self.raw_model
        self.phased = isinstance(optimizer, dict)
        if self.phased and not optimizer:
            raise ValueError("optimizer: an empty dict of phases")
        self.optimizers = {k: self._build_optimizer(v) for k, v in
                           (optimizer.items() if self.phased else [("", optimizer)])}
        self.optimizer = next(iter(self.optimizers.values()))  # the only one, when not phased
        sizes = {k: len(v) for k, v in data.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"data tensors differ in length: {sizes}")
        self.n = next(iter(sizes.values()))
        if self.n == 0:
            raise DataError(f"stage {stage}: no training examples")
        self.data = {k: v.to(self.device) for k, v in data.items()}
        self.batch_size, self.steps = int(batch_size), int(steps)
        self.run_dir = Path(run_dir)
        self.name, self.stage, self.seed = name, str(stage), int(seed)
        self.step_fn, self.eval_fn = step_fn, eval_fn
        self.eval_every, self.checkpoint_every, self.log_every = eval_every, checkpoint_every, max(1, log_every)
        self.scheduler, self.clip_grad_norm = scheduler, clip_grad_norm
        self.config = jsonable(config or {})
        self.extra = jsonable(extra or {})
        self.resume, self.progress = resume, progress
        self.amp_dtype = self._amp_dtype(amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.step = 0
        self.history: list = []
        self.done = False
        self.select, self.select_start = select, select_start
        self.best: Optional[dict] = None  # {"step", "value", "model"}: the best evaluation so far
        self.selected: Optional[dict] = None  # {"metric", "step", "value"} once the run is done
        self.keep = tuple(keep)
        self.kept: dict = {}  # {metric: {"step", "value", "model"}}: the best evaluation of each of ``keep``
        self.prepared = prepared
        self._first_step: Optional[int] = None   # the step this call of fit started from (after resuming)

    def _build_optimizer(self, optimizer):
        return optimizer(self.raw_model) if callable(optimizer) and not isinstance(
            optimizer, torch.optim.Optimizer) else optimizer

    def _schedulers(self) -> list:
        if self.scheduler is None:
            return []
        return list(self.scheduler.values()) if isinstance(self.scheduler, dict) else [self.scheduler]

    # -- paths
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / f"{self.name}.pt"

    @property
    def history_path(self) -> Path:
        return history_file(self.run_dir, self.name)

    def _amp_dtype(self, amp):
        if self.device.type != "cuda" or amp in (None, False, "off", "none", "fp32"):
            return None
        if amp == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]

    # -- state
    def state_dict(self) -> dict:
        rngs = _all_gather_objects(rng_state(), self.dist)
        return {
            "format": CHECKPOINT_FORMAT, "name": self.name, "stage": self.stage,
            "step": self.step, "steps": self.steps, "done": self.done, "seed": self.seed,
            "world_size": self.dist.world_size,
            "model": self.save_module.state_dict(),
            "optimizer": ({k: o.state_dict() for k, o in self.optimizers.items()} if self.phased
                          else self.optimizer.state_dict()),
            "scheduler": ({k: v.state_dict() for k, v in self.scheduler.items()} if isinstance(self.scheduler, dict)
                          else self.scheduler.state_dict() if self.scheduler is not None else None),
            "scaler": self.scaler.state_dict(),
            "rng": rngs, "generator": self.generator.get_state(),
            "config": self.config, "extra": self.extra, "history": self.history,
            "best": self.best, "selected": self.selected, "kept": self.kept,
        }

    def load_state_dict(self, ck: dict) -> None:
        self.save_module.load_state_dict(ck["model"])
        if self.phased:
            for k, o in self.optimizers.items():
                o.load_state_dict(ck["optimizer"][k])
        else:
            self.optimizer.load_state_dict(ck["optimizer"])
        if self.scheduler is not None and ck.get("scheduler") is not None:
            if isinstance(self.scheduler, dict):
                for k, v in self.scheduler.items():
                    v.load_state_dict(ck["scheduler"][k])
            else:
                self.scheduler.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        rngs = ck["rng"]
        set_rng_state(rngs[self.dist.rank] if self.dist.rank < len(rngs) else rngs[0])
        self.generator.set_state(ck["generator"])
        self.step, self.history, self.done = int(ck["step"]), list(ck["history"]), bool(ck["done"])
        self.best, self.selected, self.kept = ck.get("best"), ck.get("selected"), dict(ck.get("kept") or {})

    def save(self) -> None:
        state = self.state_dict()  # collective when distributed: every rank calls it
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_path, state)
            self._write_history()
        if self.dist.enabled:
            tdist.barrier()  # no rank reads the checkpoint before it is complete

    def _write_history(self) -> None:
        atomic_write_text(self.history_path, "".join(json.dumps(h) + "\n" for h in self.history))

    # -- batches
    def next_batch(self) -> dict:
        idx = torch.randint(self.n, (self.batch_size,), generator=self.generator)
        if self.dist.enabled:
            idx = idx[self.dist.rank::self.dist.world_size]
        idx = idx.to(self.device)
        return {k: v[idx] for k, v in self.data.items()}

    # -- the loop
    def fit(self, until: Optional[int] = None, threads: Optional[int] = None) -> list:
        """Train to ``steps`` (or stop after step ``until``, without a checkpoint: a simulated kill).
        ``threads``: torch's thread count on the CPU while training (a profile's ``threads``; small
        networks run faster on one), restored afterwards. A call that takes a step adds a session to
        ``run_dir/<name>.timing.json`` (:mod:`amodal_lib.train.timing`)."""
        before = torch.get_num_threads()
        if threads and self.device.type == "cpu":
            torch.set_num_threads(int(threads))
        clock, self._first_step = timing.Stopwatch(), None
        try:
            history = self._fit(until)
            if self.dist.is_main and self._first_step is not None and self.step > self._first_step:
                timing.add_session(self.run_dir, self.name, self.step - self._first_step, clock.elapsed(),
                                   self.prepared, torch.get_num_threads(), self.device)
            return history
        finally:
            torch.set_num_threads(before)

    def _fit(self, until: Optional[int]) -> list:
        if self.resume and self.checkpoint_path.is_file():
            ck = load_checkpoint(self.checkpoint_path, map_location=self.device)
            try:
                self.load_state_dict(ck)
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
                first = (str(e).strip().splitlines() or [""])[0][:120]
                raise CheckpointError(self.checkpoint_path, f"cannot resume from it ({type(e).__name__}: {first}); "
                                                            "delete it to start this stage over") from e
        self._first_step = self.step
        if self.done or self.step >= self.steps:
            self.done = True
            return self.history
        from tqdm.auto import tqdm
        bar = tqdm(total=self.steps, initial=self.step, desc=f"stage {self.stage}", leave=False,
                   disable=not (self.progress and self.dist.is_main), dynamic_ncols=True)
        if self.select is not None and self.select_start and self.step == 0 and self.eval_fn is not None:
            self.evaluate()  # the starting weights are a candidate too: a run never ends worse than it began
        self.model.train()
        sums: dict = {}
        count, t0 = 0, time.perf_counter()
        try:
            while self.step < self.steps:
                step = self.step + 1
                batch = self.next_batch()
                values = {}
                for phase, opt in self.optimizers.items():
                    values.update(self._phase(phase, opt, batch, step, values))
                self.scaler.update()
                for sched in self._schedulers():
                    sched.step()
                self.step = step
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                bar.update(1)
                if step % self.log_every == 0 or step == self.steps:
                    rec = {"split": "train", "stage": self.stage, "step": step,
                           **{k: v / count for k, v in sums.items()},
                           "steps_per_s": count / max(time.perf_counter() - t0, 1e-9)}
                    self.history.append(rec)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items()
                                     if k in ("loss", "bce", "kl") or (self.phased and k.startswith("loss_"))})
                    sums, count, t0 = {}, 0, time.perf_counter()
                if self.eval_fn is not None and self.eval_every and (step % self.eval_every == 0 or step == self.steps):
                    self.evaluate()
                if step == self.steps:
                    self._end_with_selection()
                    self.done = True
                if self.done or (self.checkpoint_every and step % self.checkpoint_every == 0):
                    self.save()
                if until is not None and step >= until:
                    break
        finally:
            bar.close()
        return self.history

    def _phase(self, phase: str, opt, batch: dict, step: int, seen: dict) -> dict:
        """One optimiser's part of a step: its losses, back-propagated, and its update (the grad
        scaler's ``update`` follows the last phase). Returns its losses, named for the history."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            losses = self.step_fn(self.model, batch, step, phase) if self.phased else \
                self.step_fn(self.model, batch, step)
        values = self._reduce(losses)
        if self.phased:
            values = {(f"loss_{phase}" if k == "loss" else f"{phase}_{k}" if k in seen else k): v
                      for k, v in values.items()}
        bad = [(k, v) for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(self.stage, step, bad[0][0], bad[0][1],
                                     self.checkpoint_path if self.checkpoint_path.exists() else None)
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        if self.clip_grad_norm:
            self.scaler.unscale_(opt)
            params = [p for g in opt.param_groups for p in g["params"]] if self.phased else \
                list(self.raw_model.parameters())
            torch.nn.utils.clip_grad_norm_([p for p in params if p.requires_grad], self.clip_grad_norm)
        self.scaler.step(opt)
        return values

    def evaluate(self) -> Optional[dict]:
        """Run ``eval_fn`` on rank 0 (model in eval mode) and append its metrics to the history."""
        if self.eval_fn is None:
            return None
        rec = None
        if self.dist.is_main:
            model = unwrap(self.raw_model)
            model.eval()
            try:
                with torch.no_grad():
                    metrics = self.eval_fn(model, self.step) or {}
            finally:
                self.model.train()
            rec = {"split": "val", "stage": self.stage, "step": self.step,
                   **{k: float(v) for k, v in metrics.items()}}
            self.history.append(rec)
            if self.select is not None:
                self.best = self._consider(rec, self.select, self.best, "select")
            for metric in self.keep:
                self.kept[metric] = self._consider(rec, metric, self.kept.get(metric), "keep")
        return rec

    def _consider(self, rec: dict, metric: str, best: Optional[dict], role: str) -> Optional[dict]:
        """``best`` ({"step", "value", "model"} or None), or a copy of the weights when ``rec`` is a
        better evaluation by ``metric`` (ties: the earlier)."""
        if metric not in rec:
            raise KeyError(f"stage {self.stage}: {role}={metric!r} but the evaluation returned "
                           f"only {sorted(k for k in rec if k not in ('split', 'stage', 'step'))}")
        value = float(rec[metric])
        if math.isfinite(value) and (best is None or value > best["value"]):
            state = {k: v.detach().to("cpu", copy=True) for k, v in self.save_module.state_dict().items()}
            return {"step": self.step, "value": value, "model": state}
        return best

    def _end_with_selection(self) -> None:
        """At the last step: load the best evaluation's weights (rank 0), and say which they are."""
        if self.select is None or not self.dist.is_main:
            return
        if self.best is None:
            self.selected = {"metric": self.select, "step": self.step, "value": None}
            return
        if self.best["step"] != self.step:
            self.save_module.load_state_dict(self.best["model"])
        self.selected = {"metric": self.select, "step": int(self.best["step"]), "value": self.best["value"]}
        self.history.append({"split": "selected", "stage": self.stage, "step": int(self.best["step"]),
                             self.select: self.best["value"]})

    def _reduce(self, losses: dict) -> dict:
        if "loss" not in losses:
            raise KeyError(f"stage {self.stage}: the step function must return a dict with a 'loss' entry")
        keys = sorted(losses)
        vec = torch.stack([losses[k].detach().float().reshape(()) for k in keys])
        if self.dist.enabled:
            tdist.all_reduce(vec)
            vec = vec / self.dist.world_size
        return dict(zip(keys, vec.tolist()))
