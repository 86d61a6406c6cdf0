"""`bounded_map`: `Executor.map` that keeps at most `window` items in flight.

`Executor.map` submits every item before it yields the first result (Python < 3.14 has no `buffersize`): over
800,000 records that is 800,000 futures with their arguments (measured: +147 MB for 200,000 records' arguments),
and the results the workers finish ahead of a slow consumer pile up in memory. Here the input is read lazily and
memory is bounded by `window`, whatever its length. Items go to the workers `chunksize` at a time, as
`Executor.map` does, so that small tasks do not pay one round trip each.

`exit_with_parent`: for a pool's worker initializer, so that workers die with the process that started them
(a builder stopped by SIGKILL or an OOM kill left its workers running for good, each holding its memory).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def apply_each(fn: Callable[[T], R], chunk: list[T]) -> list[R]:
    """`[fn(x) for x in chunk]`: one task of `bounded_map` (module level, so process pools can pickle it)."""
    return [fn(x) for x in chunk]


def bounded_map(
    executor: Executor | None, fn: Callable[[T], R], items: Iterable[T], window: int, chunksize: int = 1
) -> Iterator[R]:
    """`fn(item)` for each item, results in input order, at most `window` items (rounded up to whole chunks)
    submitted and not yet consumed. Without an executor, a plain lazy `map`. When the consumer stops early (the
    generator is closed or dropped), the tasks not yet started are cancelled, as `Executor.map` does."""
    if window < 1 or chunksize < 1:
        raise ValueError(f"window and chunksize must be >= 1, got {window}, {chunksize}")
    if executor is None:
        yield from map(fn, items)
        return
    source = iter(items)
    chunks = iter(lambda: list(islice(source, chunksize)), [])
    in_flight: deque[Future[list[R]]] = deque()
    try:
        for chunk in chunks:
            in_flight.append(executor.submit(apply_each, fn, chunk))
            if len(in_flight) * chunksize >= window:
                break
        while in_flight:
            results = in_flight.popleft().result()
            chunk = next(chunks, None)  # refill before yielding, so the workers stay busy while the consumer writes
            if chunk is not None:
                in_flight.append(executor.submit(apply_each, fn, chunk))
            yield from results
    finally:  # the consumer stopped early (break, error, Ctrl-C): as `Executor.map`, the tasks not started go
        for future in in_flight:
            future.cancel()


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 1.0


def exit_with_parent() -> None:
    """In a worker process (a pool's initializer): end this process when its parent dies, however it dies.

    On Linux the kernel sends SIGTERM at the parent's death (`prctl(PR_SET_PDEATHSIG)`; strictly, at the death of
    the parent's thread that started this process: pools start theirs from the thread that submits). Elsewhere,
    or when `prctl` is refused, a daemon thread checks every `PARENT_POLL_S` seconds that the parent is the one
    this process had when this was called. SIGTERM gets its default action back: a handler the parent had
    installed (a build that stops gracefully on SIGTERM) came along with `fork`; raising in a task, it would make
    the signal that task's error, and the worker would live on.
    """
    parent = os.getppid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not _parent_death_signal(signal.SIGTERM):
        threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent", daemon=True).start()
    elif os.getppid() != parent:  # the parent died before prctl took effect: no signal will come
        _end_now()


def _parent_death_signal(signum: int) -> bool:
    """Ask Linux to send `signum` to this process when its parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no C library to load, or no prctl in it (another libc)
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    _end_now()  # orphaned (reparented to init or a subreaper): nobody reads this worker's results


def _end_now() -> None:
    """End this process at once: SIGKILL, or SIGTERM (its default action) where there is none (Windows)."""
    signal.raise_signal(getattr(signal, "SIGKILL", signal.SIGTERM))


__all__ = ["apply_each", "bounded_map", "exit_with_parent"]
