"""Thread-count settings for a block of code, restored afterwards (torch, FAISS)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def thread_count(n: int | None, get: Callable[[], int], set_: Callable[[int], None]) -> Iterator[None]:
    """Run the block with `set_(n)` (None: unchanged), then restore `get()`'s value from before."""
    if n is None:
        yield
        return
    before = get()
    set_(n)
    try:
        yield
    finally:
        set_(before)


def torch_threads(n: int | None) -> contextlib.AbstractContextManager[None]:
    """torch's intra-op threads set to `n` inside the block. With workers busy on the other cores, more OpenMP
    threads than free cores spin-wait on each other and run slower."""
    import torch  # here, not at the top: the CLI's start-up must not pay for torch

    return thread_count(n, torch.get_num_threads, torch.set_num_threads)
