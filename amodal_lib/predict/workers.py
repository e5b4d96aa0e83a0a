"""Batches of a prediction run on several processor cores, their results in order.

A completion's batches are independent, and much of their work (masks read and written inside
their boxes) is small numpy steps that one Python thread runs one at a time. :func:`ordered_map`
therefore runs the batches on ``workers`` forked processes, each single-threaded, and yields the
results in the batches' order, as one process would (the same bits: each batch is computed as it
would be alone). Fork shares what the parent has loaded (the annotations, the model) without
copying it; where fork is not available, or for one worker, the batches run in this process.

Memory stays flat along a long file: the parent's objects are frozen out of the workers' garbage
collections before the fork (a collection would write into every object and so copy its page),
and after each batch the memory it freed is given back to the system (:func:`release_memory`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import multiprocessing as mp
import os
from typing import Callable, Iterable, Iterator

import torch

_JOB: Callable | None = None   # the function the forked workers call (inherited, never pickled)


def default_workers() -> int:
    """One worker per thread torch may use here (``OMP_NUM_THREADS``, else the cores)."""
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def _single_threaded() -> None:
    torch.set_num_threads(1)


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_C = _libc()


def release_memory() -> None:
    """Give the memory a batch freed back to the system (glibc's ``malloc_trim``; nothing elsewhere).
    A batch's many small, differently sized buffers (masks decoded in their boxes, the networks'
    batches of varying size) leave the heap fragmented: without this, a process's resident memory
    grows with every batch, and with it the peak of a long file."""
    trim = getattr(_C, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _call(item):
    try:
        return _JOB(item)
    finally:
        release_memory()


def ordered_map(fn: Callable, items: Iterable, workers: int = 1) -> Iterator:
    """``fn(item)`` of each item, in order; on ``workers`` forked processes when that is more than
    one (and there is more than one item), each with one torch thread."""
    items = list(items)
    if workers <= 1 or len(items) <= 1 or "fork" not in mp.get_all_start_methods():
        for item in items:
            out = fn(item)
            release_memory()
            yield out
        return
    global _JOB
    if _JOB is not None:
        raise RuntimeError("ordered_map: another run is in progress in this process")
    _JOB = fn
    gc.collect()
    gc.freeze()   # the parent's objects stay out of the workers' collections: their pages stay shared
    try:
        with mp.get_context("fork").Pool(min(workers, len(items)), initializer=_single_threaded) as pool:
            yield from pool.imap(_call, items)
    finally:
        gc.unfreeze()
        _JOB = None
