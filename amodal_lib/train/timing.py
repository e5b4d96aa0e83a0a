"""What training a run cost, kept the same way for every family: ``<name>.timing.json`` beside its
checkpoint ``<name>.pt`` (Amodal-VAE's ``stage1`` to ``stage3``, ``pcnet``, ``psp``,
``inpaint-background``, ``inpaint-instance``, ``spade``).

Every call of :meth:`amodal_lib.train.engine.Trainer.fit` that takes a step adds one *session*
(:func:`add_session`): its steps, the CPU seconds of the process (user + system, every thread:
on a busy machine wall time says more about the other processes than about the run), its wall
seconds, torch's threads, the device, and the seconds the family spent preparing its data before
the loop (cropping the training examples; :class:`Stopwatch`). The file's totals add the sessions
up, so a resumed run counts all of its training. :func:`read` gives them (files written before
this helper, with each family's own keys, are read into the same keys); :func:`describe` says
them in one line.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from ..io import atomic_write_json

TOTALS = ("steps", "cpu_s", "wall_s", "prepare_cpu_s", "prepare_wall_s")


class Stopwatch:
    """CPU (the whole process: user + system, every thread) and wall seconds since it was made."""

    def __init__(self):
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    def elapsed(self) -> dict:
        return {"cpu_s": time.process_time() - self.cpu0, "wall_s": time.perf_counter() - self.wall0}


def path(run_dir, name: str) -> Path:
    return Path(run_dir) / f"{name}.timing.json"


def add_session(run_dir, name: str, steps: int, fit: dict, prepare: Optional[dict] = None, threads: int = 0,
                device: str = "cpu") -> dict:
    """Add one training session to ``run_dir/<name>.timing.json``: ``steps`` trained, ``fit`` and
    ``prepare`` ({"cpu_s", "wall_s"}, :meth:`Stopwatch.elapsed`) seconds; returns the file's content."""
    t = read(run_dir, name) or {"sessions": []}
    prepare = prepare or {"cpu_s": 0.0, "wall_s": 0.0}
    t["sessions"].append({"steps": int(steps), "cpu_s": round(fit["cpu_s"], 2), "wall_s": round(fit["wall_s"], 2),
                          "prepare_cpu_s": round(prepare["cpu_s"], 2), "prepare_wall_s": round(prepare["wall_s"], 2),
                          "threads": int(threads), "device": str(device)})
    out = _totals(t["sessions"])
    atomic_write_json(path(run_dir, name), out)
    return out


def _totals(sessions: list) -> dict:
    t = {k: sum(s.get(k, 0) for s in sessions) for k in TOTALS}
    t = {k: (int(v) if k == "steps" else round(float(v), 1)) for k, v in t.items()}
    t.update(cpu_s_per_step=round(t["cpu_s"] / max(t["steps"], 1), 4),
             steps_per_s=round(t["steps"] / max(t["wall_s"], 1e-9), 3),
             steps_per_cpu_s=round(t["steps"] / max(t["cpu_s"], 1e-9), 3),
             threads=sorted({s.get("threads") for s in sessions if s.get("threads")}),
             device=sessions[-1].get("device") if sessions else None, sessions=sessions)
    return t


def read(run_dir, name: str) -> Optional[dict]:
    """What ``run_dir/<name>.timing.json`` says (None when there is none): ``steps``, ``cpu_s``,
    ``wall_s``, ``prepare_cpu_s``, ``prepare_wall_s``, ``cpu_s_per_step``, ``steps_per_s``,
    ``steps_per_cpu_s``, ``threads`` (a list), ``device`` and the ``sessions``. A file of the
    families' earlier formats (SPADE's ``timing.json``, the inpainters' ``cpu_seconds``, ResNet-PSP's
    ``prepare_s``) is read into the same keys."""
    p = path(run_dir, name)
    if not p.is_file() and (Path(run_dir) / "timing.json").is_file() and name == "spade":
        p = Path(run_dir) / "timing.json"          # SPADE's runs before this helper
    if not p.is_file():
        return None
    return _totals([_session(s) for s in _sessions(json.loads(p.read_text()))])


def _sessions(t: dict) -> list:
    if "sessions" in t:
        return t["sessions"]
    if "cpu_seconds" in t:     # the inpainters' earlier file: one session, its preparation included
        return [{"steps": t.get("steps", 0), "cpu_s": t["cpu_seconds"], "wall_s": t.get("wall_seconds", 0.0),
                 "threads": t.get("threads")}]
    return [{**t, "prepare_wall_s": t.get("prepare_s", 0.0)}]   # ResNet-PSP's earlier file: one session


def _session(s: dict) -> dict:
    """A session of any earlier format in this module's keys (SPADE's named its preparation crop_*)."""
    return {"steps": int(s.get("steps", 0)), "cpu_s": float(s.get("cpu_s", 0.0)), "wall_s": float(s.get("wall_s", 0.0)),
            "prepare_cpu_s": float(s.get("prepare_cpu_s", s.get("crop_cpu_s", 0.0))),
            "prepare_wall_s": float(s.get("prepare_wall_s", s.get("crop_wall_s", 0.0))),
            "threads": s.get("threads"), "device": s.get("device")}


def describe(run_dir, name: str) -> str:
    """One line on what training ``name`` in ``run_dir`` cost (:func:`read`)."""
    t = read(run_dir, name)
    if not t:
        return f"{name}: no timing recorded in {run_dir}"
    device = f" on {t['device']}" if t["device"] else ""
    return (f"{t['steps']} steps in {t['cpu_s']:.0f} CPU s ({t['cpu_s_per_step']:.3f} CPU s a step; "
            f"{t['wall_s']:.0f} s wall, {t['steps_per_s']:.2f} steps/s{device}, torch threads {t['threads']}), "
            f"plus {t['prepare_cpu_s']:.0f} CPU s preparing the training data; {len(t['sessions'])} session(s)")
