"""Atomic file writes (a reader never sees half a file, and an interrupted write loses nothing) and
folder locks (one process at a time writes an output folder)."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from .errors import FolderInUseError

LOCK_NAME = ".amodal.lock"   # a run folder's lock file (amodal_lib.train.folder)


def atomic_write(path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_default))


def _default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------- folder locks
@contextmanager
def folder_lock(lock, folder, command: str = "", say: Optional[Callable[[str], None]] = None) -> Iterator[Optional[dict]]:
    """Hold the lock file ``lock`` while the ``with`` block writes ``folder``; yields the holder a
    killed process left behind (None when there was none).

    The lock is the kernel's (``flock`` on ``lock``, released when its process ends, however it
    ends), and the file says who holds it: ``{"pid", "host", "since", "command"}``. A second
    process is refused with :class:`~amodal_lib.errors.FolderInUseError`, one line naming the
    holder. A file whose process is gone (killed: a process that ends normally removes it) is
    taken over, and ``say`` (default: a line on stderr) says so. Where the file system has no
    ``flock``, a holder counts as alive while its PID runs on this host."""
    lock, folder = Path(lock), Path(folder)
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd, wait=1.0)   # it may be writing its name just now
            os.close(fd)
            raise FolderInUseError(folder, f"in use by {_describe(holder)}: wait for it to end, or use another "
                                           "--out") from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                os.close(fd)
                raise
            holder = _holder(fd)             # no flock here: judge by the PID
            if holder and holder.get("host") == socket.gethostname() and _alive(holder.get("pid")):
                os.close(fd)
                raise FolderInUseError(folder, f"in use by {_describe(holder)}: wait for it to end, or use "
                                               "another --out") from None
        try:   # the file we locked is still the one at the path (not removed by a holder that just ended)
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        left = _holder(fd)
        if left:
            say(f"{folder}: taking over the lock left by {_describe(left)}, which is gone")
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), "command": command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        yield left
    finally:
        try:
            os.unlink(lock)   # while still holding it: a waiting process then sees a new file
        except FileNotFoundError:
            pass
        os.close(fd)


def _holder(fd: int, wait: float = 0.0) -> Optional[dict]:
    """Who the lock file says holds it ({} when it says nothing readable; None when it is empty)."""
    end = time.monotonic() + wait
    while True:
        raw = os.pread(fd, 4096, 0)
        if raw or time.monotonic() >= end:
            break
        time.sleep(0.05)
    if not raw:
        return None
    try:
        h = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return {}
    return h if isinstance(h, dict) else {}


def _describe(holder: Optional[dict]) -> str:
    if not holder:
        return "another process"
    text = f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"
    if holder.get("command"):
        text += f" ({holder['command']})"
    return text + (f" since {holder['since']}" if holder.get("since") else "")


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
