"""Run folders and their checkpoints, shared by every single-stage family (PCNet-M, ResNet-PSP,
the inpainters, SPADE).

A run folder holds one checkpoint, ``<name>.pt``, written by :class:`amodal_lib.train.engine.Trainer`
with the family's network settings in ``extra["model"]``; its ``done`` flag says the run finished.
Each family's ``load_model`` checks the checkpoint is its own (:func:`read`) and rebuilds the
network from those settings (:func:`load_weights`). Every failure is one
:class:`~amodal_lib.errors.CheckpointError` naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn

from ..errors import CheckpointError, MissingCheckpointError
from . import engine


def checkpoint_file(run_dir_or_file, name: str) -> Path:
    """The checkpoint of a run folder (``<name>.pt`` in it), or the file itself."""
    p = Path(run_dir_or_file)
    return p / f"{name}.pt" if p.is_dir() or not p.suffix else p


def is_trained(run_dir_or_file, name: str) -> bool:
    """Has the run finished all its steps?"""
    p = checkpoint_file(run_dir_or_file, name)
    return p.is_file() and bool(engine.load_checkpoint(p).get("done"))


def read(path: Path, what: str, command: str, is_ours: Callable[[dict], bool]) -> tuple[dict, dict]:
    """(the checkpoint, its network settings ``extra["model"]``) of ``path``, a checkpoint of
    ``what`` (e.g. "PCNet-M"): ``is_ours(extra)`` says whether its ``extra`` is that family's.
    A missing file names ``command``, the one that trains it."""
    if not path.is_file():
        raise MissingCheckpointError(path, f"no {what} checkpoint (train one with `{command}`)")
    ck = engine.load_checkpoint(path, map_location="cpu")   # CheckpointError for a damaged file
    extra = ck.get("extra")
    spec = extra.get("model") if isinstance(extra, dict) else None
    if not isinstance(spec, dict) or not is_ours(extra) or not isinstance(ck.get("model"), dict):
        found = extra.get("method") if isinstance(extra, dict) else None
        article = "an" if what[:1].lower() in "aeio" else "a"
        raise CheckpointError(path, f"not {article} {what} checkpoint" + (f" (it is {found})" if found else ""))
    return ck, spec


def load_weights(path: Path, what: str, ck: dict, build: Callable[[], nn.Module]) -> nn.Module:
    """The network ``build()`` makes, with the checkpoint's weights (a DDP run's ``module.``
    prefixes dropped); a network that cannot be rebuilt is a CheckpointError naming the file."""
    try:
        model = build()
        model.load_state_dict({k[len("module."):] if k.startswith("module.") else k: v for k, v in ck["model"].items()})
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise CheckpointError(path, f"a {what} checkpoint whose network cannot be rebuilt ({type(e).__name__}: "
                                    f"{first})") from e
    return model
