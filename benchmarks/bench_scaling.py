"""Scaling of cache-backed zero-shot: time and memory at 1k, 10k and 100k records.

One `SignalCache` is built with as many rows as the largest size (the 1,000 generated `.npz` records of
`BenchContext.record_files`, cycled under distinct ids; 100k rows are a 12 GB file under `work_dir`), and
each size scores its first N rows with `ZeroShotClassifier.score_cache` (the `ptbxl_super` prompt set,
no knowledge retrieval) in a fresh process, this file run as a child:

    python benchmarks/bench_scaling.py --child CACHE_DIR N CHECKPOINT

so that each size's memory peak is its own. Time is the scoring call alone (the child reports it; model
loading is excluded), with its CPU time (steadier than wall time on a shared machine); memory is the
child's exact peak RSS and the sampled peak PSS of its process tree (the DataLoader workers included: on
at most 4 cores each prepares and encodes its own batches).
Linear time: the wall time per record stays within 25 % across sizes. Flat memory: the peak at the
largest size is within 25 % (+ 50 MB of per-record metadata: ids, scores) of the smallest.

Sizes: 1,000 / 10,000 / 100,000 (`--quick`: 32 / 64). `ECGLANG_BENCH_SCALING=1000,10000,30000` picks
others (the 100k cache takes a while to build and 12 GB of disk).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext

SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (32, 64)
TOLERANCE = 1.25
METADATA_SLACK = 50e6  # bytes: ids and scores of 100k records
GB = 1e9


def sizes(quick: bool) -> tuple[int, ...]:
    chosen = os.environ.get("ECGLANG_BENCH_SCALING")
    if chosen:
        return tuple(sorted(int(v) for v in chosen.split(",")))
    return QUICK_SIZES if quick else SIZES


def build_cache(ctx: BenchContext, n: int) -> tuple[Any, float | None]:
    """The scaling cache of `n` rows (built, or reused from an earlier run) and its build time (None: reused)."""
    from ecglang.data.cache import SignalCache
    from ecglang.errors import EcgReadError

    folder = ctx.work_dir / f"cache-scaling-{n}"
    try:
        cache = SignalCache(folder)
        if len(cache) == n:
            return cache, None
    except EcgReadError:  # not built yet, or interrupted: build (resumes an interrupted build)
        pass
    files = ctx.record_files(min(n, 64 if ctx.quick else 1000))
    pairs = [(f"r{i:07d}", str(files[i % len(files)])) for i in range(n)]
    t0 = time.perf_counter()
    cache = SignalCache.build(pairs, folder, batch_size=256, num_workers=2, progress=not ctx.quick)
    return cache, time.perf_counter() - t0


def bench_scaling(ctx: BenchContext) -> list[dict[str, Any]]:
    chosen = sizes(ctx.quick)
    cache, build_s = build_cache(ctx, max(chosen))
    checkpoint = ctx.checkpoint("ecglang-small")
    rows: list[dict[str, Any]] = []
    results = []
    for n in chosen:
        stats = ctx.run_process([sys.executable, __file__, "--child", str(cache.directory), str(n), str(checkpoint)])
        if stats.returncode != 0:
            raise RuntimeError(f"scaling child for {n} records exited with {stats.returncode}:\n{stats.output}")
        child = json.loads(stats.output.strip().splitlines()[-1])
        results.append((n, child, stats))
        rows.append({
            "case": f"score_cache, first {n} of {len(cache)} cache rows",
            "ours": "ZeroShotClassifier.score_cache (child process)",
            "ours s": child["seconds"],
            "ms/record": 1e3 * child["seconds"] / n,
            "CPU ms/record": 1e3 * child["cpu"] / n,
            "records/s": n / child["seconds"],
            "peak RSS GB": stats.peak_rss / GB,
            "tree PSS GB": stats.tree_pss / GB,
            "note": f"child {stats.wall:.0f} s with start-up; {child['failures']} failures",
        })  # fmt: skip
    (n0, c0, m0), (n1, c1, m1) = results[0], results[-1]
    time_ratio = (c1["seconds"] / n1) / (c0["seconds"] / n0)
    cpu_ratio = (c1["cpu"] / n1) / (c0["cpu"] / n0)
    memory = {"peak RSS": (m0.peak_rss, m1.peak_rss), "tree PSS": (m0.tree_pss, m1.tree_pss)}
    worst_name, (small, large) = max(memory.items(), key=lambda kv: kv[1][1] / max(kv[1][0], 1))
    flat = all(b <= TOLERANCE * a + METADATA_SLACK for a, b in memory.values())
    span = f"{n0} → {n1} records"
    rows.append({
        "case": span,
        "ours": "time per record, largest / smallest size",
        "ratio": time_ratio,
        "ratio (CPU)": cpu_ratio,
        **ctx.target_columns("time linear (per-record time within 25 %)",
                             f"{time_ratio:.2f}× per record (CPU {cpu_ratio:.2f}×)", time_ratio <= TOLERANCE),
    })  # fmt: skip
    rows.append({
        "case": span,
        "ours": "peak memory, largest / smallest size",
        "ratio": large / max(small, 1),
        **ctx.target_columns("memory flat (within 25 % + 50 MB)",
                             f"{worst_name} {small / GB:.2f} → {large / GB:.2f} GB", flat),
    })  # fmt: skip
    if build_s is not None:
        rate = len(cache) / build_s
        ctx.note(f"scaling: built the {len(cache)}-row cache in {build_s:.0f} s ({rate:.0f} rows/s, 2 workers)")
    else:
        ctx.note(f"scaling: reused the {len(cache)}-row cache of an earlier run ({cache.directory}; delete it to time "
                 "the build)")  # fmt: skip
    if chosen != SIZES:
        ctx.note(f"scaling: sizes {', '.join(map(str, chosen))} (full mode: {', '.join(map(str, SIZES))})")
    return rows


def child_main(argv: list[str] | None = None) -> int:
    """Score the first N rows of a cache; print `{"seconds", "cpu", "records", "failures"}` as JSON (CPU of
    this process and of its exited DataLoader workers during the scoring call)."""
    parser = argparse.ArgumentParser(description="scaling benchmark child")
    parser.add_argument("--child", required=True, metavar="CACHE_DIR")
    parser.add_argument("n", type=int)
    parser.add_argument("checkpoint")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ecglang.data.cache import SignalCache
    from ecglang.encoders.modeling import load_model
    from ecglang.scores.classifier import ZeroShotClassifier

    clf = ZeroShotClassifier(load_model(args.checkpoint, device="cpu"), knowledge=None)
    cache = SignalCache(args.child)
    clf.score_cache(cache, "ptbxl_super", rows=np.arange(64), progress=False)  # warm-up: prompts embedded
    workers_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, c0 = time.perf_counter(), time.process_time()
    result = clf.score_cache(cache, "ptbxl_super", rows=np.arange(args.n), progress=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # DataLoader workers, once they have exited
    cpu_workers = (workers.ru_utime + workers.ru_stime) - (workers_before.ru_utime + workers_before.ru_stime)
    print(json.dumps({"seconds": seconds, "cpu": cpu + cpu_workers, "records": len(result.scores),
                      "failures": len(result.failures)}))  # fmt: skip
    return 0


BENCHMARKS = {"scaling": bench_scaling}

if __name__ == "__main__":
    sys.exit(child_main())
