"""The errors that a user's mistake raises, defined once: every one is a :class:`UserError`.

The command line (:func:`amodal_lib.cli.main`) prints a ``UserError`` as one line on stderr
and exits with code 2; any other exception is a bug and keeps its traceback (exit code 1).
Each message names what is wrong and where: the file, the record and the field for a data
file, the flag for an argument, the path for an output.

=========================  ===========================================================
``AnnotationError``        a malformed annotation file or record (file, annotation id, field)
``PredictionError``        the same, in a predictions (COCO results) file
``MissingFileError``       an input file that does not exist
``CheckpointError``        a checkpoint (or ``threshold.json``) that cannot be used
``MissingCheckpointError`` a checkpoint that does not exist
``ArgumentError``          a flag's value out of range, or flags that do not go together
``UnsafeOutputError``      an output path that would overwrite an input, or cannot be written
``FolderInUseError``       an output folder another process is writing (names it: PID, host, since when)
``OtherRunError``          a run folder that holds a run made with other settings (names the difference)
``DataError``              readable data that give nothing to work on (no training example)
=========================  ===========================================================

Most also derive from the built-in type that code written before them caught (``ValueError``,
``FileNotFoundError``), so that ``except ValueError`` keeps working.
"""
from __future__ import annotations

from typing import Any


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting a bad value in a one-line message."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


class UserError(Exception):
    """A mistake in what the user gave (a file, a flag, a path); the message says what and where."""


class AnnotationError(UserError, ValueError):
    """A record of an annotation file that cannot be read: names the file, record and field."""

    record_name = "annotation"

    def __init__(self, path: Any, record: Any, field: str, message: str):
        self.path, self.record, self.field, self.reason = str(path), record, field, message
        where = f"{self.path}"
        if record is not None:
            where += f": {self.record_name} {record}"
        if field:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class PredictionError(AnnotationError):
    """A record of a predictions file (COCO results JSON) that cannot be read."""

    record_name = "prediction for annotation"


class MissingFileError(AnnotationError, FileNotFoundError):
    """An input data file (or folder) that does not exist."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file (or a file stored beside one) that cannot be used: names the file."""

    def __init__(self, path: Any, message: str):
        self.path, self.reason = str(path), message
        super().__init__(f"{self.path}: {message}")


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """A checkpoint file or run folder that does not exist."""


class ArgumentError(UserError, ValueError):
    """A command-line or function argument out of range, or arguments that do not go together."""


class UnsafeOutputError(UserError):
    """An output path that is one of the inputs, or that cannot be written: nothing was written."""

    def __init__(self, path: Any, message: str):
        self.path, self.reason = str(path), message
        super().__init__(f"{self.path}: {message}")


class FolderInUseError(UnsafeOutputError):
    """An output folder that another live process holds (:func:`amodal_lib.io.folder_lock`)."""


class OtherRunError(UnsafeOutputError):
    """A run folder holding a run made with other settings than the ones asked for."""


class DataError(UserError, ValueError):
    """Readable data that give nothing to work on (e.g. no training example)."""
