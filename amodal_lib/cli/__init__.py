"""The ``amodal`` command line (also ``python -m amodal_lib``): all of its glue lives in this package.

    amodal synth    --out DIR [--num-images N] [--seed S] [--profile P]
    amodal train    --model amodal-vae|pcnet-m [--stage 1|2|3] --annotations ANN.json [--images DIR]
                    --out RUN_DIR [--profile P] [--seed S] [--device D] [--steps N] [--no-resume]
                    [--val-annotations VAL.json]
    amodal complete --model visible|convex-hull|amodal-vae|pcnet-m --annotations ANN.json --out PRED.json
                    [--checkpoint RUN_DIR_OR_FILE] [--box predicted|amodal-gt] [--frame fit|transformer]
                    [--threshold T] [--samples K] [--seed S] [--device D]
    amodal evaluate --annotations ANN.json --predictions PRED.json [--out METRICS.json] [--allow-missing]
    amodal train    --model resnet-psp --annotations ANN.json --images DIR --out RUN_DIR [--crop-box amodal|visible]
                    [--backbone-weights BACKBONE.pth] [...]
    amodal segment  --checkpoint RUN_DIR --annotations ANN.json [--images DIR] --out MASKS.json
                    [--crop-box amodal|visible] [--threshold T] [--device D]
    amodal complete ... --visible MASKS.json   (complete those visible masks instead of the file's)
    amodal edit     --image IMG --annotations ANN.json --remove ID[,ID] --out OUT.png [--runs DIR]
                    [--vae-checkpoint RUN] [--background-checkpoint RUN] [--instance-checkpoint RUN]
                    [--masks-out NEW.json] [--dilate PX] [--threshold T] [--device D]
    (train also takes --model inpaint-background|inpaint-instance [--vgg-weights FILE]: scene editing)
    amodal train    --model spade --annotations ANN.json [--images DIR] --out RUN_DIR [...]
    amodal render   --checkpoint RUN_DIR_OR_FILE --image IMG --annotations ANN.json --id ID --mask NEW_MASK.png
                    --out OUT.png [--device D]

Every command also takes ``--debug`` (before or after its name); ``amodal --version`` prints the
version. One vocabulary throughout (:mod:`.parser`: ``--model``, ``--checkpoint``, ``--images``...);
the spellings it replaced (``complete --method``, ``synth --images N``, ``edit --vae``...) still
work. Models are reached by name through :mod:`amodal_lib.registry`. The package, by command group: :mod:`.parser` (every
command's arguments), :mod:`.checks` (what every command checks before any work),
:mod:`.training` (``synth``, ``train``), :mod:`.completion` (``complete``, ``evaluate``: masks in,
masks out), :mod:`.images` (``segment``, ``render``, ``edit``: the commands that read pixels),
:mod:`.progress` (progress bars on a terminal, a line every few seconds in a log).

What it guarantees on bad input:

- A user's mistake (a missing or malformed file or record, a bad checkpoint, a flag out of
  range, an unsafe output path) is one line on stderr naming the file, the record and the
  field, and exit code 2; never a traceback (``--debug`` shows it). Every such error is an
  :class:`amodal_lib.errors.UserError`, and so is a refusal of the file system (an ``OSError``:
  permission, disk full).
- Ctrl-C exits with 130; anything else is a bug: its traceback, and exit code 1.
- An output is never one of the inputs (compared as resolved paths, through symbolic and hard
  links), is checked to be writable before any work, and is written atomically: an
  interrupted or failed command leaves the earlier file (or ``amodal synth`` data set) whole.
- A run folder holds one run: ``train`` records the settings that made it (``run.json``) and
  refuses to resume a folder made with others, naming the difference
  (:mod:`amodal_lib.train.folder`); ``train`` and ``synth`` lock their folder while they write it,
  so that a second process into it is refused, naming the holder.
"""
from __future__ import annotations

import sys
import traceback
from functools import partial

from ..errors import UserError
from . import parser, progress


# Each command group's module is imported when one of its commands runs, deferred on purpose:
# parsing, --help and argparse's own errors answer at once, and `complete` with a rule and
# `evaluate` never import torch (seconds; the reading tests run them under a memory limit that
# torch's import would exceed).
def _training(name: str, ns) -> int:
    from . import training   # deferred: see above
    return getattr(training, name)(ns)


def _completion(name: str, ns) -> int:
    from . import completion   # deferred: see above
    return getattr(completion, name)(ns)


def _images(name: str, ns) -> int:
    from . import images   # deferred: see above
    return getattr(images, name)(ns)


# every command's function (``COMMANDS[name](ns) -> exit code``), in its command group's module
COMMANDS = {name: partial(group, name) for group, names in ((_training, ("synth", "train")),
                                                            (_completion, ("complete", "evaluate")),
                                                            (_images, ("segment", "render", "edit")))
            for name in names}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_message(e: OSError) -> str:
    if e.filename is not None and e.strerror:
        names = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 is not None else "")
        return f"{names}: {e.strerror}"
    return str(e) or type(e).__name__


def main(argv=None) -> int:
    """Run one command; returns the exit code: 0 done, 2 a user's mistake (one line on stderr),
    130 interrupted, 1 a bug (with its traceback). Progress bars are drawn on a terminal only;
    in a log they are a line every few seconds (:mod:`.progress`)."""
    ns = parser.build().parse_args(argv)
    with progress.readable_in_logs():
        return _run(ns)


def _run(ns) -> int:
    try:
        return COMMANDS[ns.command](ns)
    except (UserError, OSError) as e:  # OSError: the file system refused (permission, disk full...)
        if ns.debug:
            traceback.print_exc()
        msg = str(e) if isinstance(e, UserError) else _os_message(e)
        print(f"amodal {ns.command}: error: {_one_line(msg)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"amodal {ns.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(f"amodal {ns.command}: internal error: this is a bug, not a problem with your input; "
              "please report it with the traceback above", file=sys.stderr)
        return 1
