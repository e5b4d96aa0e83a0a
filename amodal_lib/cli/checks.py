"""What every command checks before any work: flags in range, outputs that never overwrite an
input and can be written, run folders, and the input files read once (one line naming the file,
the record and the field when they are wrong: :class:`amodal_lib.errors.UserError`)."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data import load_annotations
from ..errors import ArgumentError, DataError, MissingFileError, UnsafeOutputError
from ..train.folder import RECORD


def at_least(ns, name: str, low: int) -> None:
    v = getattr(ns, name, None)
    if v is not None and v < low:
        raise ArgumentError(f"--{name.replace('_', '-')} must be >= {low}, got {v}")


def check_threshold(value) -> None:
    """A ``--threshold`` given must lie in (0, 1]."""
    if value is not None and not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ArgumentError(f"--threshold must lie in (0, 1], got {value}")


def same_file(a: Path, b: Path) -> bool:
    """Do two paths name one file (after symbolic links, or as hard links)?"""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, RuntimeError):  # a symlink loop: not the same as anything
        return False


def writable_folder(folder: Path, out: Path) -> None:
    """Refuse ``out`` unless a file can be created in ``folder`` (which exists): tried, not guessed."""
    if not folder.is_dir():
        raise UnsafeOutputError(out, f"{folder} is not a folder")
    if not folder.stat().st_mode & 0o222:
        raise UnsafeOutputError(out, f"the folder {folder} is read-only")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".amodal-write-test.")
    except OSError as e:
        raise UnsafeOutputError(out, f"cannot write in {folder} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(out, inputs: dict) -> Path:
    """Refuse an output file that is one of ``inputs`` ({label: path}), a folder, read-only, or in
    a folder that cannot be written; nothing is created."""
    p = Path(out)
    if p.is_dir():
        raise UnsafeOutputError(p, "is a folder: --out takes a file name")
    if p.exists() and not p.is_file():
        raise UnsafeOutputError(p, "exists and is not a regular file")
    for label, q in inputs.items():
        if q is not None and same_file(p, Path(q)):
            same = "" if str(q) == str(p) else f" ({q})"
            raise UnsafeOutputError(p, f"is the {label}{same}: an output never overwrites an input")
    if p.is_file() and not p.stat().st_mode & 0o222:
        raise UnsafeOutputError(p, "is read-only: refusing to replace it")
    folder = p.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent   # atomic_write creates the missing folders
    writable_folder(folder, p)
    return p


def check_run_folder(out) -> Path:
    """A run folder that exists (created if needed) and can be written, before any training step."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise UnsafeOutputError(p, "exists and is not a folder: --out takes a run folder")
    if not p.exists():
        folder = p.absolute().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        writable_folder(folder, p)
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UnsafeOutputError(p, f"cannot create the run folder ({e.strerror or e})") from None
    writable_folder(p, p)
    return p


def load(path, images=None):
    """The annotation file, read once and checked before any work; ``images`` (a folder) is
    checked to exist and attached to it."""
    if images is not None and not Path(images).is_dir():
        raise ArgumentError(f"--images {images}: no such image folder")
    return load_annotations(path, images_dir=images)


def checkpoint_inputs(checkpoint) -> dict:
    """The files a learned method may read from ``--checkpoint`` (a file, or a run folder's)."""
    ck = Path(checkpoint) if checkpoint is not None else None
    if ck is None or not ck.is_dir():
        return {} if ck is None else {"checkpoint": ck}
    # deferred on purpose: thresholds.py imports torch, which the checks of a command never need otherwise
    from ..thresholds import FILE
    files = [q for q in [*sorted(ck.glob("*.pt")), ck / FILE, ck / RECORD] if q.is_file()]
    return {f"file {q.name} of the checkpoint folder": q for q in files}


def read_picture(path, what: str, mode: str):
    """A picture as a numpy array (Pillow ``mode``), or one DataError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(p, None, "", f"{what}: no such file")
    try:
        with Image.open(p) as im:
            if im.width * im.height > 2 ** 26:
                raise DataError(f"{p}: {what} of {im.width}x{im.height} pixels is too large")
            return np.array(im.convert(mode))   # a writable copy
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{p}: {what} is not a readable image ({type(e).__name__}: {str(e)[:120]})") from None
