"""`bounded_map`: `Executor.map` that keeps at most `window` items in flight.

`Executor.map` submits every item before it yields the first result (Python < 3.14 has no `buffersize`): over
800,000 records that is 800,000 futures with their arguments (measured: +147 MB for 200,000 records' arguments),
and the results the workers finish ahead of a slow consumer pile up in memory. Here the input is read lazily and
memory is bounded by `window`, whatever its length. Items go to the workers `chunksize` at a time, as
`Executor.map` does, so that small tasks do not pay one round trip each.
"""

from __future__ import annotations

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


__all__ = ["apply_each", "bounded_map"]
