"""Progress that stays readable in a log.

On a terminal, tqdm's bars redraw in place. Written to a file or a pipe, every redraw (text after
a carriage return, ten a second) is one more line of the log: a default ``amodal train`` wrote
thousands. While a command runs with stderr not a terminal, :func:`readable_in_logs` puts
:class:`LogProgress` in front of it: whole lines pass through unchanged; a bar's redraws are held,
and the newest is written as a line of its own at most every :data:`MIN_INTERVAL_S` seconds (the
interval grows to a twentieth of the time since the command started, so an hour-long run logs a
few dozen lines, not thousands), and once more where the bar ends.
"""
from __future__ import annotations

import contextlib
import io
import re
import sys
import time

MIN_INTERVAL_S = 5.0   # at most one progress line this often
SHARE = 0.05           # ... or, later in a long run, this share of the time since the command began


class LogProgress(io.TextIOBase):
    """A text stream that passes lines through to ``stream`` and turns carriage-return redraws
    into a progress line every few seconds (see the module's docstring)."""

    def __init__(self, stream, min_interval: float = MIN_INTERVAL_S, share: float = SHARE, clock=time.monotonic):
        super().__init__()
        self.stream, self.min_interval, self.share, self.clock = stream, min_interval, share, clock
        self.start, self.last = clock(), None
        self.buf, self.in_bar = "", False    # the text since the last \r or \n; is it a bar's redraw?
        self.pending, self.shown = None, None

    # ---- the stream
    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")

    def write(self, text: str) -> int:
        for part in re.split(r"([\r\n])", text):
            if part == "\r":
                if self.in_bar or self.buf:
                    self._status(self.buf)
                self.buf, self.in_bar = "", True
            elif part == "\n":
                if self.in_bar:                       # a bar's last redraw, left on screen
                    self._status(self.buf, force=True)
                else:
                    self._emit(self.buf)
                self.buf, self.in_bar = "", False
            else:
                self.buf += part
        return len(text)

    def flush(self) -> None:
        if self.in_bar and self.buf.strip():
            self._status(self.buf)
        self.stream.flush()

    def close(self) -> None:
        """Write what is held: the newest redraw not yet shown, and an unfinished line."""
        if not self.closed:
            if self.in_bar:
                self._status(self.buf, force=True)
            elif self.buf:
                self._emit(self.buf)
            self.buf = ""
            self.stream.flush()
        super().close()

    # ---- redraws
    def _status(self, text: str, force: bool = False) -> None:
        text = text.strip()
        if not text:                                  # a bar cleared (closed): show where it ended
            force, text = True, self.pending
        if text is None:
            return
        self.pending = text
        now = self.clock()
        due = self.last is None or now - self.last >= max(self.min_interval, self.share * (now - self.start))
        if (force or due) and text != self.shown:
            self._emit(text)
            self.shown, self.last = text, now
        if force:
            self.pending = None

    def _emit(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


@contextlib.contextmanager
def readable_in_logs(stream_name: str = "stderr"):
    """Within the block, ``sys.stderr`` (where tqdm draws) is a :class:`LogProgress` unless it is a
    terminal; the stream is restored after it."""
    stream = getattr(sys, stream_name)
    if stream is None or _is_terminal(stream):
        yield
        return
    log = LogProgress(stream)
    setattr(sys, stream_name, log)
    try:
        yield
    finally:
        setattr(sys, stream_name, stream)
        log.close()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):   # a closed or odd stream: not a terminal
        return False
