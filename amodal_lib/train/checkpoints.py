"""What a training checkpoint holds besides the weights, and the history a run writes beside it.

``jsonable(obj)``
    ``obj`` as plain JSON types (a run's config is stored that way, so that loading a checkpoint
    with ``weights_only=True`` never needs a Python object).
``rng_state()`` / ``set_rng_state(state)``
    The RNG states of torch (and CUDA), numpy and python as tensors and plain types: a resumed
    run draws what an uninterrupted one would.
``history_file(run_dir, name)`` / ``load_history(run_dir, name)``
    The history (list of dicts) a run writes as ``run_dir/<name>.history.jsonl``.

The files themselves are written and read by :mod:`amodal_lib.models.weights`
(``save_checkpoint``, ``load_checkpoint``).
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = "amodal-engine/1"


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types (dict/list/str/int/float/bool/None); raises if impossible."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (Path, torch.device)):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"config value of type {type(o).__name__} is not JSON-able")


def rng_state() -> dict:
    """The global RNG states as tensors and plain types (``weights_only``-loadable)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]),
                   "gauss": None if py_state[2] is None else float(py_state[2])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def history_file(run_dir, name: str) -> Path:
    """Where a run's history is written as JSON lines: ``run_dir/<name>.history.jsonl``."""
    return Path(run_dir) / f"{name}.history.jsonl"


def load_history(run_dir, name: str) -> list:
    """The history a :class:`Trainer` named ``name`` wrote in ``run_dir`` ([] when none)."""
    p = history_file(run_dir, name)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
