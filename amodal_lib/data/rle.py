"""Compressed RLE read and written one box at a time: a mask's pixels inside a window of its image,
without the full frame.

COCO's RLE lists run lengths of alternating 0s and 1s down the columns of the image (column-major),
starting with 0s; the compressed form packs them in a LEB128-like code of characters '0'..'o',
each run after the second stored as the difference to the run two before. pycocotools decodes
only whole frames (height x width bytes per mask), so what a crop or a paste needs here is read and
written from the runs directly:

- :func:`runs`: the run lengths of a compressed string (vectorised; :func:`runs_total`, their sum,
  is the reader's check that an RLE covers its image);
- :func:`decode_window`: the (rows, cols) window of a mask, cost proportional to the window's
  columns times the image height (a strip of whole columns), never to the image;
- :func:`encode_windows`: masks that are 0 outside a window, given as that window, to compressed
  RLE (pycocotools compresses the runs), byte-identical to ``mask_utils.encode`` of the full
  frame: the runs of a mask are unique.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from pycocotools import mask as mask_utils

_LARGE = 1 << 40   # beyond any image (2**26 pixels at most): left to the exact Python check
_CHUNK = 256       # strings per vectorised pass of runs_totals


def _decode_counts(counts: bytes) -> list:
    """The run lengths of a compressed counts string, read one character at a time (exact for any
    input, with the reason when it is not an RLE)."""
    if counts and (min(counts) < 48 or max(counts) > 111):
        c = next(c for c in counts if not 48 <= c <= 111)
        raise ValueError(f"character {chr(c)!r} is outside the RLE alphabet '0'..'o'")
    out: list = []
    i, n = 0, len(counts)
    while i < n:
        x, k, more = 0, 0, True
        while more:
            if i >= n:
                raise ValueError("the counts string ends inside a number")
            if k >= 13:
                raise ValueError("a run length over 2**64")
            c = counts[i] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        if x < 0:
            raise ValueError("negative run length")
        out.append(x)
    return out


def _parse(strings: Sequence[bytes]) -> tuple:
    """The numbers of many compressed strings in one vectorised pass: ``(runs, first, count, bad)``:
    the run lengths of every string one after the other (int64), the index of each string's first
    run and its number of runs, and which strings are not plainly valid (a character
    outside the code, a number cut short or over 12 characters, a negative or huge run; their runs
    are meaningless: :func:`_decode_counts` reads them exactly)."""
    n = len(strings)
    lens = np.fromiter((len(s) for s in strings), np.int64, n)
    if not lens.sum():
        return np.zeros(0, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, bool)
    c = np.frombuffer(b"".join(strings), np.uint8).astype(np.int64) - 48
    sid = np.repeat(np.arange(n), lens)                  # the string of each character

    def any_of(owner, flags):                            # per string: is any flag of its own set?
        return np.bincount(owner, weights=flags, minlength=n) > 0

    last = np.cumsum(lens)[lens > 0] - 1                 # each non-empty string's last character
    bad = any_of(sid, (c < 0) | (c > 63))
    more = (c & 0x20) != 0
    bad[sid[last[more[last]]]] = True                    # ends inside a number
    more[last] = False                                   # so that no number runs into the next string
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    k = ends - starts + 1
    num_sid = sid[ends]
    bad |= any_of(num_sid, k >= 13)
    place = np.minimum(np.arange(len(c)) - np.repeat(starts, k), 11)   # a character's place in its number
    k = np.minimum(k, 12)
    x = np.add.reduceat((c & 0x1F) << (5 * place), starts)
    neg = (c[ends] & 0x10) != 0
    x[neg] -= np.left_shift(1, 5 * k[neg])
    bad |= any_of(num_sid, np.abs(x) > _LARGE)
    first = np.searchsorted(num_sid, np.arange(n))       # each string's first number
    j = np.arange(len(x)) - first[num_sid]               # a number's place in its string
    out = x.copy()
    for parity, lowest in ((1, 1), (0, 2)):              # run j > 2 is stored as run j - 2 plus it
        member = (j % 2 == parity) & (j >= lowest)
        cs = np.cumsum(np.where(member, x, 0))
        before = np.where(first > 0, cs[np.maximum(first - 1, 0)], 0)
        out = np.where(member, cs - before[num_sid], out)
    bad |= any_of(num_sid, out < 0)
    return out, first, np.bincount(num_sid, minlength=n), bad


def _strings(counts_list: Sequence) -> list:
    return [c.encode("ascii") if isinstance(c, str) else c for c in counts_list]


def runs_many(counts_list: Sequence) -> list:
    """:func:`runs` of many RLEs' ``counts`` (compressed strings or lists), parsed together."""
    out: list = [None] * len(counts_list)
    strings, where = [], []
    for k, c in enumerate(counts_list):
        if isinstance(c, (list, tuple, np.ndarray)):
            out[k] = np.asarray(c, dtype=np.int64)
        else:
            strings.append(c)
            where.append(k)
    strings = _strings(strings)
    for s in range(0, len(strings), _CHUNK):   # a few hundred strings at a time stay in the cache
        part = strings[s:s + _CHUNK]
        r, first, count, bad = _parse(part)
        for j, k in enumerate(where[s:s + _CHUNK]):
            out[k] = np.asarray(_decode_counts(part[j]), np.int64) if bad[j] else r[first[j]:first[j] + count[j]]
    return out


def runs(counts) -> np.ndarray:
    """The run lengths (int64) of an RLE's ``counts``: a compressed string (bytes or str) or a list.
    A ValueError with the reason when the string is not a valid code."""
    if isinstance(counts, (list, tuple, np.ndarray)):
        return np.asarray(counts, dtype=np.int64)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    c = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    if not len(c):
        return np.zeros(0, np.int64)
    more = (c & 0x20) != 0
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    k = ends - starts + 1
    if c.min() < 0 or c.max() > 63 or more[-1] or k.max() >= 13:
        return np.asarray(_decode_counts(counts), dtype=np.int64)   # the exact reason, or big numbers
    x = np.add.reduceat((c & 0x1F) << (5 * (np.arange(len(c)) - np.repeat(starts, k))), starts)
    neg = (c[ends] & 0x10) != 0
    x[neg] -= np.left_shift(1, 5 * k[neg])
    if np.abs(x).max() > _LARGE:
        return np.asarray(_decode_counts(counts), dtype=np.int64)
    x[1::2] = np.cumsum(x[1::2])            # run j > 2 is stored as its difference to run j - 2
    x[2::2] = np.cumsum(x[2::2])
    if x.min() < 0:
        raise ValueError("negative run length")
    return x


def runs_total(counts) -> int:
    """The number of pixels an RLE's runs cover (its image's, when the RLE is whole)."""
    return int(runs(counts).sum())


def runs_totals(strings: Sequence[bytes]) -> np.ndarray:
    """:func:`runs_total` of many compressed strings in one vectorised pass (a reader checks every
    mask of a file with it): int64, -1 where a string is not plainly valid, which the caller then
    reads with :func:`runs_total` for the exact answer or reason."""
    strings = _strings(strings)
    out = np.full(len(strings), -1, np.int64)
    for s in range(0, len(strings), _CHUNK):
        r, first, count, bad = _parse(strings[s:s + _CHUNK])
        has = count > 0
        sums = np.zeros(len(first), np.int64)
        if has.any():
            sums[has] = np.add.reduceat(r, first[has])          # exact: int64
        sums[bad] = -1
        out[s:s + len(first)] = sums
    return out


def decode_window(rle: dict, r0: int, r1: int, c0: int, c1: int, run_lengths: Optional[np.ndarray] = None
                  ) -> np.ndarray:
    """The (r1 - r0, c1 - c0) uint8 window of a mask, rows ``r0:r1`` and columns ``c0:c1`` of its
    image (inside the image): the runs over the window's columns repeated out (C speed), never the
    whole image.
    ``run_lengths``: the RLE's :func:`runs`, when already parsed (:func:`runs_many` parses many
    masks at once)."""
    h = int(rle["size"][0])
    rh, rw = r1 - r0, c1 - c0
    if rh <= 0 or rw <= 0:
        return np.zeros((max(rh, 0), max(rw, 0)), np.uint8)
    r = runs(rle["counts"]) if run_lengths is None else run_lengths
    ends = np.cumsum(r)
    lo, hi = c0 * h, c1 * h                              # the window's columns, whole, in column-major order
    i0, i1 = np.searchsorted(ends, lo, "right"), np.searchsorted(ends - r, hi, "left")
    lengths = np.minimum(ends[i0:i1], hi) - np.maximum(ends[i0:i1] - r[i0:i1], lo)
    strip = np.repeat((np.arange(i0, i1) % 2).astype(np.uint8), lengths)   # runs alternate 0s and 1s
    if len(strip) != rw * h:
        raise ValueError(f"an RLE of {len(r)} runs covers {int(ends[-1]) if len(r) else 0} pixels, not its image's")
    return np.ascontiguousarray(strip.reshape(rw, h)[:, r0:r1].T)


def decode_windows(rles: Sequence[dict], windows: Sequence[tuple]) -> list:
    """:func:`decode_window` of each RLE in its window ``(r0, r1, c0, c1)``, the RLEs parsed together."""
    parsed = runs_many([r["counts"] for r in rles])
    return [decode_window(r, *w, run_lengths=p) for r, w, p in zip(rles, windows, parsed)]


def window_counts(window: np.ndarray, r0: int, c0: int, height: int, width: int) -> np.ndarray:
    """The run lengths of the (height, width) mask that is ``window`` (bool or 0/1) at rows
    ``r0:``, columns ``c0:`` and 0 elsewhere; the cost follows the window, not the image."""
    rh, rw = window.shape
    if rh == 0 or rw == 0 or not window.any():
        return np.array([height * width], np.int64)
    padded = np.zeros((rw, rh + 2), np.int8)             # each column of the window, 0 above and below
    padded[:, 1:-1] = window.T != 0
    step = np.diff(padded, axis=1)
    col, row = np.nonzero(step == 1)                     # in column-major order, as the image's runs
    starts = (c0 + col) * height + r0 + row
    col, row = np.nonzero(step == -1)
    ends = (c0 + col) * height + r0 + row
    joined = ends[:-1] == starts[1:]                     # a run down one column into the top of the next
    if joined.any():
        starts, ends = starts[np.concatenate([[True], ~joined])], ends[np.concatenate([~joined, [True]])]
    out = np.empty(2 * len(starts) + 1, np.int64)
    out[0] = starts[0]
    out[1:-1:2] = ends - starts
    out[2:-1:2] = starts[1:] - ends[:-1]
    out[-1] = height * width - ends[-1]
    return out if out[-1] else out[:-1]


def encode_windows(windows: Sequence[np.ndarray], origins: Sequence[tuple], height: int, width: int) -> list:
    """Compressed RLEs of (height, width) masks, each ``windows[k]`` at ``origins[k]`` = (r0, c0)
    and 0 elsewhere: the same bytes as ``mask_utils.encode`` of the full frames."""
    if not len(windows):
        return []
    objs = [{"size": [height, width], "counts": window_counts(w, r0, c0, height, width)}
            for w, (r0, c0) in zip(windows, origins)]
    return mask_utils.frPyObjects(objs, height, width)
