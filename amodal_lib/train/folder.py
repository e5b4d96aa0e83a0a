"""A run folder: the record of the settings that made its run (``run.json``), and its lock.

Whatever trains into a folder (``amodal train`` for every family, the notebooks through
:class:`amodal_lib.nb.Context`) holds it with :func:`hold`, which

1. locks it (:func:`amodal_lib.io.folder_lock` on ``.amodal.lock`` in the folder): a second process
   into the same folder is refused in one line naming the holder (PID, host, since when); a lock a
   killed process left is taken over, and said so;
2. compares what the folder's ``run.json`` records with the settings asked for (:func:`settings`:
   the family, the profile, the seed, ``--steps`` and any other override, the family's options, and
   the hashes of the training and validation data): a folder made with other settings is refused in
   one line naming the first difference and the two ways out (``--no-resume``, another ``--out``);
   so is a folder holding a run but no record (made before runs recorded their settings), unless
   the caller adopts it (the notebooks: their folder names say the profile, the data and the seed);
3. starts over when asked (``resume=False``): the earlier run's files (:data:`RUN_FILES`, and no
   other file of the folder) are removed before the record of the new one is written; ``--stage k``
   keeps the earlier stages it starts from, and only when they were made with the same settings.

The record is written before the first step, so a run that is killed resumes only with the
settings that started it. No torch here: the command line checks a folder before it imports torch.
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional, Sequence

from ..data.records import AnnotationSet
from ..errors import CheckpointError, OtherRunError
from ..io import LOCK_NAME, atomic_write_json, folder_lock
from ..profiles import resolve_profile

RECORD = "run.json"
FORMAT = "amodal-run/1"
# Every family's checkpoint names (Amodal-VAE's stages, the single-stage families' CHECKPOINT_NAME;
# tests/test_hardening.py checks them against the modules)
CHECKPOINT_NAMES = ("stage1", "stage2", "stage3", "pcnet", "psp", "inpaint-background", "inpaint-instance", "spade")
VARIANT_FRAMES = ("fit", "transformer")   # the subfolders of Amodal-VAE's variant frames
# What a training run writes into its folder (the engine's checkpoints, histories and timings, and
# what an interrupted atomic write left; Amodal-VAE's validation sets and threshold; the record):
# what starting over removes, and nothing else of the folder
RUN_FILES = (*(f"{name}{ext}" for name in CHECKPOINT_NAMES for ext in (".pt", ".history.jsonl", ".timing.json")),
             *(f".{name}.pt.*.tmp" for name in CHECKPOINT_NAMES), "timing.json", "threshold.json",
             "threshold_sweep.csv", "validation.json", "validation_*.json", "noise_calibration.json", RECORD,
             # Amodal-VAE's variant frames, each selected for itself (train/amodal_vae.py write_variants)
             *(f"{frame}/{name}" for frame in VARIANT_FRAMES for name in ("stage*.pt", ".stage*.pt.*.tmp",
                                                                          "threshold.json", "threshold_sweep.csv")))
# the settings in the order a difference is named
KEYS = ("model", "profile", "data", "validation", "seed", "steps", "options", "overrides")
REMEDY = "use --no-resume to start over in it, or another --out"


def data_hash(ann: AnnotationSet) -> str:
    """16 hex digits naming the content of an annotation set: its categories, images (file name and
    size) and instances (ids, category, visible and amodal masks, depth), whatever file or format
    they were read from."""
    h = hashlib.sha1()
    for k in sorted(ann.categories):
        h.update(f"c{k}={ann.categories[k]}\n".encode())
    for k in sorted(ann.images):
        im = ann.images[k]
        h.update(f"i{k}={im.get('file_name')}:{im.get('height')}x{im.get('width')}\n".encode())
    for i in ann.instances:
        h.update(f"a{i.id}:{i.image_id}:{i.category_id}:{i.height}x{i.width}:{i.depth}:".encode())
        for rle in (i.visible, i.amodal):
            counts = b"-" if rle is None else rle["counts"]
            h.update(counts if isinstance(counts, bytes) else str(counts).encode())
            h.update(b"|")
    return h.hexdigest()[:16]


def settings(model: str, annotations: AnnotationSet, *, profile: Optional[str] = None, seed: int = 0,
             steps: Optional[int] = None, val_annotations: Optional[AnnotationSet] = None,
             options: Optional[dict] = None, overrides: Optional[dict] = None) -> dict:
    """What makes a run, as :func:`hold` records and compares it: ``{"model", "profile", "data",
    "validation", "seed", "steps", "options", "overrides"}``, with the files the data came from
    under ``"files"`` (named in messages, never compared). ``options``: {command-line flag: value}
    of the family's own options (a file by its resolved path); ``overrides``: other settings by
    name (e.g. ``stage1_steps``); None values are the defaults and left out."""
    out = {"model": model, "profile": resolve_profile(profile), "data": data_hash(annotations),
           "validation": None if val_annotations is None else data_hash(val_annotations),
           "seed": int(seed), "steps": None if steps is None else int(steps),
           "options": {k: v for k, v in sorted((options or {}).items()) if v is not None},
           "overrides": json.loads(json.dumps({k: v for k, v in sorted((overrides or {}).items()) if v is not None},
                                              default=str))}
    out["files"] = {"data": str(annotations.path),
                    "validation": None if val_annotations is None else str(val_annotations.path)}
    return out


# --------------------------------------------------------------------------- the record
def record(run_dir) -> Optional[dict]:
    """What ``run_dir/run.json`` records ({"format", "settings", "created", "command"}), or None."""
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"not a run record ({type(e).__name__}); {REMEDY}") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("settings"), dict):
        raise CheckpointError(path, f"not a run record (no 'settings'); {REMEDY}")
    return rec


def run_files(run_dir, keep: Sequence[str] = ()) -> list:
    """The files of a run in ``run_dir`` (:data:`RUN_FILES`; the record included), but ``keep``."""
    found = {p for pattern in RUN_FILES for p in Path(run_dir).glob(pattern) if p.is_file()}
    return sorted(p for p in found if p.name not in keep)


def difference(recorded: dict, asked: dict) -> Optional[str]:
    """The first setting ``asked`` gives that ``recorded`` (a record's settings) does not share, in
    words (None when they agree); only the keys ``asked`` has are compared."""
    for key in KEYS:
        if key not in asked or recorded.get(key) == asked[key]:
            continue
        was, now = recorded.get(key), asked[key]
        if key == "model":
            return f"its run is of --model {was}, not {now}"
        if key in ("profile", "seed"):
            return f"its run was made with --{key} {was}, not {now}"
        if key == "steps":
            return f"its run was made with {_steps(was)}, not {_steps(now)}"
        if key in ("data", "validation"):
            was, now = (_file(h, (s.get("files") or {}).get(key)) for h, s in ((was, recorded), (now, asked)))
            if key == "data":
                return f"its run was trained on {was}, not {now}"
            if None in (was, now):
                return (f"its run was made with --val-annotations {was}, not without" if now is None else
                        f"its run was made without --val-annotations, not with {now}")
            return f"its run was validated on {was}, not {now}"
        was, now = was or {}, now or {}
        name = next(k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k))
        return f"its run was made with {_option(name, was.get(name))}, not {_option(name, now.get(name))}"
    return None


def _steps(n) -> str:
    return "the profile's steps" if n is None else f"--steps {n}"


def _file(digest: Optional[str], path: Optional[str]) -> Optional[str]:
    return None if digest is None else f"{Path(path).name if path else 'data'} (hash {digest[:8]})"


def _option(name: str, value) -> str:
    if value is None:
        return f"no {name}" if name.startswith("--") else f"the profile's {name}"
    return f"{name} {value}" if name.startswith("--") else f"{name}={value}"


# --------------------------------------------------------------------------- holding a folder
@contextmanager
def hold(run_dir, asked: dict, *, resume: bool = True, keep: Sequence[str] = (), adopt: bool = False,
         command: str = "") -> Iterator[dict]:
    """Hold ``run_dir`` (created if needed) for one training with the settings ``asked``
    (:func:`settings`); yields the record. See the module docstring: the lock, then a folder made
    with other settings (or holding an unrecorded run, unless ``adopt``) refused with
    :class:`~amodal_lib.errors.OtherRunError` when ``resume``, else started over: its run files
    removed but ``keep`` (the earlier stages a ``--stage`` run starts from, which must then be of
    the same settings). Under torchrun only rank 0 locks, removes and writes; every rank checks."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    main = int(os.environ.get("RANK", "0")) == 0
    with folder_lock(run_dir / LOCK_NAME, run_dir, command) if main else nullcontext():
        try:
            rec = record(run_dir)
        except CheckpointError:
            if resume:
                raise
            rec = None             # started over below, unread
        if rec is not None:
            other = difference(rec["settings"], asked)
        elif run_files(run_dir) and not adopt:
            other = f"it holds a run with no {RECORD} saying what settings made it"
        else:
            other = None
        where = f" ({RECORD})" if rec is not None else ""   # where the folder says so
        if other and resume:
            raise OtherRunError(run_dir, f"{other}{where}; {REMEDY}")
        kept = [p.name for p in run_dir.glob("*") if p.name in keep]
        if other and kept:
            raise OtherRunError(run_dir, f"{other}{where}, and starting over here would keep its {kept[0]}: start "
                                         "every stage over (no --stage) with --no-resume, or use another --out")
        if rec is None or other or not resume:
            if not resume and main:
                for p in run_files(run_dir, keep):
                    p.unlink()
            rec = {"format": FORMAT, "settings": asked, "command": command,
                   "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
            if main:
                atomic_write_json(run_dir / RECORD, rec)
        yield rec

