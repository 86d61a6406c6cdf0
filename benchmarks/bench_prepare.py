"""Data preparation throughput: signal-cache build records/s for 1 and 2 worker processes on a synthetic
MIMIC-IV-ECG-shaped folder (`ecglang.data.synthetic.write_mimic_like`: WFDB records in MIMIC's layout, 12 leads,
500 Hz, 10 s, format 16), through the same path as `ecglang data build mimic ROOT --out DIR --workers N`.

Per worker process the figure that matters is records per CPU-second of a worker (what each core adds when
there are as many cores as workers); wall-clock records/s is reported beside it, since on a machine shared with
other jobs the wall rate of 2 workers is capped by the free cores. Projection: 800,000 records (MIMIC-IV-ECG) on
16 cores: all CPU seconds the build used per record (workers + the parent that writes the shards) × 800k / 16.

    python benchmarks/run.py --only prepare          # 2,000 records; ECGLANG_BENCH_PREPARE=4000 for others
    python benchmarks/bench_prepare.py [N]           # standalone, prints the rows

Memory: the builder streams its pending rows to the workers; a row beside the throughput rows measures the
parent's peak RSS growth over 200,000 rows' arguments with `core.parallel.bounded_map` against
`ProcessPoolExecutor.map` (which submits every row before the first result), each in its own child process.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext

TARGET_PER_WORKER = 100.0  # records/s per worker process
MIMIC_RECORDS = 800_000
CORES = 16


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(work: Path, n: int, workers_list: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """Build the cache of `n` synthetic records with each worker count; one row per count."""
    from ecglang.data.mimic import build_mimic_ecg
    from ecglang.data.prepared import build_shards
    from ecglang.data.synthetic import write_mimic_like
    from ecglang.signal.preprocess import PreprocessConfig

    root = work / f"mimic-{n}"
    if not (root / "machine_measurements.csv").is_file():
        write_mimic_like(root, n, seed=0)
    table, _ = build_mimic_ecg(root, progress=False)
    rows = []
    for workers in workers_list:
        out = work / f"prepared-{n}-w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        (out).mkdir(parents=True)
        cpu0, child0, t0 = self_cpu(), children_cpu(), time.perf_counter()
        results = build_shards(out, table, PreprocessConfig(), workers=workers, batch_size=256, progress=False)
        wall = time.perf_counter() - t0
        # Worker processes are reaped at the end of each shard, so their CPU time is in RUSAGE_CHILDREN now.
        worker_cpu, parent_cpu = children_cpu() - child0, self_cpu() - cpu0
        if not workers:
            worker_cpu, parent_cpu = parent_cpu, 0.0
        n_done = sum(r.n_ok + r.n_failed for r in results)
        per_worker = n_done / worker_cpu  # each worker's records per second of its own CPU
        # All CPU the build used (workers + the writing parent) spread over 16 cores.
        hours = MIMIC_RECORDS * (worker_cpu + parent_cpu) / n_done / CORES / 3600
        rows.append({
            "records": n_done, "workers": workers, "wall_s": round(wall, 1),
            "records_per_s_wall": round(n_done / wall, 1), "worker_cpu_s": round(worker_cpu, 1),
            "parent_cpu_s": round(parent_cpu, 1),
            "records_per_s_per_worker": round(per_worker, 1), "load_1min": round(os.getloadavg()[0], 1),
            "projected_h_800k_16_cores": round(hours, 2),
            "target": f">= {TARGET_PER_WORKER:g} records/s per worker", "measured": round(per_worker, 1),
            "met": "yes" if per_worker >= TARGET_PER_WORKER else "no",
        })  # fmt: skip
        shutil.rmtree(out, ignore_errors=True)
    return rows


def _row_number(args: tuple) -> int:
    return args[0]


def _status_mb(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))


def stream_child(mode: str, n: int) -> None:
    """In a child process (its own peak RSS): `n` pending rows' arguments, shaped as the cache builder submits
    them, through 2 workers that only return the row number; prints the parent's peak RSS growth in MB."""
    from concurrent.futures import ProcessPoolExecutor

    from ecglang.core.parallel import bounded_map
    from ecglang.signal.preprocess import PreprocessConfig

    cfg = PreprocessConfig().to_dict()
    rows = ((i, f"/data/mimic-iv-ecg/files/p{1000 + i // 10000}/p{10**7 + i}/s{4 * 10**7 + i}/{4 * 10**7 + i}", cfg, 0)
            for i in range(n))  # fmt: skip
    before = _status_mb("VmRSS")
    with ProcessPoolExecutor(max_workers=2) as pool:
        if mode == "map":  # what the builder did before: every row submitted up front
            stream = pool.map(_row_number, rows, chunksize=4)
        else:
            stream = bounded_map(pool, _row_number, rows, window=2 * 64 + 8, chunksize=4)
        assert sum(1 for _ in stream) == n
    print(f"{_status_mb('VmHWM') - before:.1f}")


def stream_memory(n: int) -> dict[str, Any]:
    """Peak parent RSS growth streaming `n` pending rows: `bounded_map` against `Executor.map`, side by side."""
    import subprocess

    grown = {}
    for mode in ("bounded", "map"):
        out = subprocess.run([sys.executable, __file__, "--stream", mode, str(n)], capture_output=True, text=True,
                             check=True)  # fmt: skip
        grown[mode] = float(out.stdout.strip().splitlines()[-1])
    bounded, full = grown["bounded"], grown["map"]
    return {
        "records": n, "workers": 2, "case": "pending-row stream: parent peak RSS growth (MB)",
        "ours": f"bounded_map {bounded:.1f} MB", "baseline": f"Executor.map {full:.1f} MB",
        "target": "bounded: < 10 MB at any record count", "measured": round(bounded, 1),
        "met": "yes" if bounded < 10 else "no",
    }  # fmt: skip


def bench_prepare(ctx: BenchContext) -> list[dict[str, Any]]:
    n = int(os.environ.get("ECGLANG_BENCH_PREPARE", "60" if ctx.quick else "2000"))
    ctx.note(
        "prepare: records/s per worker = records / the workers' CPU seconds; wall rate beside it "
        "(capped by free cores on a shared machine)"
    )
    return [*measure(ctx.work("prepare"), n), stream_memory(20_000 if ctx.quick else 200_000)]


BENCHMARKS = {"prepare": bench_prepare}

if __name__ == "__main__":
    if sys.argv[1:2] == ["--stream"]:
        stream_child(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    import tempfile

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        for row in measure(Path(tmp), size):
            print(row)
