"""`bounded_map`: results in order, the input read lazily (at most `window` tasks ahead of the consumer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from ecglang.core.parallel import bounded_map


def _square(x: int) -> int:
    return x * x


def test_results_in_input_order_with_and_without_an_executor() -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert list(bounded_map(pool, _square, range(50), window=4)) == [x * x for x in range(50)]
        assert list(bounded_map(pool, _square, range(50), window=4, chunksize=3)) == [x * x for x in range(50)]
    assert list(bounded_map(None, _square, range(5), window=1)) == [0, 1, 4, 9, 16]
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert list(bounded_map(pool, _square, [], window=2)) == []


def test_input_is_read_at_most_window_items_ahead() -> None:
    """`Executor.map` reads (and submits) the whole input before the first result: 10,000 futures here."""
    pulled = 0
    lock = threading.Lock()

    def items() -> Iterator[int]:
        nonlocal pulled
        for i in range(10_000):
            with lock:
                pulled += 1
            yield i

    for window, chunksize in ((8, 1), (8, 3)):
        pulled = 0
        with ThreadPoolExecutor(max_workers=2) as pool:
            stream = bounded_map(pool, _square, items(), window=window, chunksize=chunksize)
            seen = []
            for _ in range(20):
                seen.append(next(stream))
                # the window, rounded up to whole chunks, plus the chunk being refilled
                assert pulled <= len(seen) + window + 2 * chunksize, (pulled, len(seen), chunksize)
            stream.close()
        assert seen == [x * x for x in range(20)]


def test_a_task_error_reaches_the_consumer() -> None:
    def fail_on_three(x: int) -> int:
        if x == 3:
            raise RuntimeError("bad record 3")
        return x

    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(RuntimeError, match="bad record 3"):
        list(bounded_map(pool, fail_on_three, range(10), window=2))
    with pytest.raises(ValueError, match="window"):
        next(bounded_map(None, _square, range(3), window=0))


@pytest.mark.parametrize("stop", ["close", "error"])
def test_a_consumer_that_stops_leaves_no_queued_work(stop: str) -> None:
    """As `Executor.map` does: when the consumer stops (a `break`, an exception while writing a batch), the
    tasks not started are cancelled, not run to the end of the window (here 40 items, one worker)."""
    calls = 0
    lock = threading.Lock()

    def slow(x: int) -> int:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.01)
        return x

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        if stop == "close":
            stream = bounded_map(pool, slow, range(1000), window=40)
            assert next(stream) == 0
            stream.close()
        else:
            with pytest.raises(RuntimeError, match="disk full"):
                for _ in bounded_map(pool, slow, range(1000), window=40):
                    raise RuntimeError("disk full")
    finally:
        pool.shutdown(wait=True)  # no cancel_futures: what is still queued runs
    assert calls <= 3, calls
