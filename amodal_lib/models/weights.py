"""Checkpoint files, every network's weights on disk: written atomically, read without running code.

``save_checkpoint(path, state)``
    ``torch.save`` through a temporary file and a rename (:func:`amodal_lib.io.atomic_write`): a
    reader never sees half a file.
``load_checkpoint(path, map_location="cpu")``
    ``torch.load(weights_only=True)``: a file that would need a full unpickle (Python objects) is
    refused, and so is a bare pickle (``pickle.dump``'s). A file that is missing, empty, truncated,
    not a checkpoint, or refused raises :class:`~amodal_lib.errors.CheckpointError` naming the
    file, in one line, and nothing more is said: the loader's own warnings are not passed on.

What a training checkpoint holds is :mod:`amodal_lib.train.engine`'s; the networks that read a
local weights file (a ResNet backbone) read it here.
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch

from ..errors import CheckpointError, MissingCheckpointError
from ..io import atomic_write


def save_checkpoint(path, state: dict) -> Path:
    """Write ``state`` atomically with ``torch.save`` (a reader never sees half a file)."""
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: loading never runs code.

    Raises :class:`~amodal_lib.errors.CheckpointError` naming the file, in one line, for a file
    that is missing (``MissingCheckpointError``, also a ``FileNotFoundError``), empty,
    truncated or otherwise corrupt, refused (it holds Python objects that only an unsafe full
    unpickle could load), or holds something other than a dict."""
    path = Path(path)
    if not path.exists():
        raise MissingCheckpointError(path, "no such checkpoint")
    if not path.is_file():
        raise CheckpointError(path, "not a checkpoint file (a folder or a special file)")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "empty file (0 bytes): not a checkpoint")
    try:
        # torch's loader warns about what it meets on the way (a pickle protocol torch.save does not
        # write, ...): the file is then refused in one line below, or was plain data; never noise
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ck = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise  # the file system's refusal (permission...): reported as such
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if found:
            raise CheckpointError(path, f"refused: it holds a Python object ({found.group(1)}) that only an unsafe "
                                        "full unpickle could load; checkpoints of this project hold tensors and "
                                        "plain types only") from None
        protocol = _pickle_protocol(path)
        if protocol is not None:
            raise CheckpointError(path, f"refused: a bare pickle (protocol {protocol}), not a torch.save checkpoint; it "
                                        "is not opened, since unpickling it could run code") from None
        raise CheckpointError(path, "not a PyTorch checkpoint (unreadable data)") from None
    except Exception as e:  # torch raises several types for a damaged file
        first = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:160]   # its first sentence
        detail = f"{type(e).__name__}: {first}" if first else type(e).__name__
        raise CheckpointError(path, f"truncated or corrupt checkpoint ({detail})") from None
    if not isinstance(ck, dict):
        raise CheckpointError(path, f"holds a {type(ck).__name__}, not a checkpoint (a dict)")
    return ck


def _pickle_protocol(path: Path):
    """The protocol of a bare pickle file (``pickle.dump``'s; torch.save writes a zip, or protocol 2
    in its legacy format), else None."""
    with open(path, "rb") as f:
        head = f.read(2)
    return head[1] if len(head) == 2 and head[0] == 0x80 and 3 <= head[1] <= pickle.HIGHEST_PROTOCOL else None
