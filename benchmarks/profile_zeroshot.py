"""Where the zero-shot time goes: the two pipeline stages profiled on one thread.

    python benchmarks/profile_zeroshot.py [--n 64] [--top 15] [--precision fp32|bf16]

- preparation (preprocessing + beat tokens, the DataLoader worker's job): `cProfile`, by own time;
- encoder (the beat tower on the prepared batch, 16 ECGs per call as `score_arrays` runs it on CPU):
  `torch.profiler`, by op, with each op's share and, for the matmuls, the GFLOP/s they reach against this
  machine's matmul peak. Inputs are `BenchContext.ecg_arrays` (jittered real PTB-XL records).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from pathlib import Path

import torch

from ecglang.embeddings.pipeline import CPU_CHUNK, BatchPreparer, encode_rhythm, encoding
from ecglang.embeddings.sources import ArraySource
from ecglang.scores.classifier import ZeroShotClassifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="ECGs profiled (default 64)")
    parser.add_argument("--top", type=int, default=15, help="rows per table (default 15)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--data", type=Path, help="data folder (default: ../shared/data beside the repo)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from run import DEFAULT_WORK_DIR, BenchContext  # the harness's inputs (this script's folder)

    from ecglang.core.paths import shared_data_dir

    torch.set_num_threads(1)
    ctx = BenchContext(quick=False, data_dir=args.data or shared_data_dir(), repeats=3, work_dir=DEFAULT_WORK_DIR)
    signals = ctx.ecg_arrays(args.n, seed=2)
    clf = ZeroShotClassifier(ctx.model("ecglang-small"), knowledge=None, precision=args.precision)
    preparer = BatchPreparer(ArraySource(signals, 500.0), clf.processor, args.n)
    batch = preparer[0].tensors  # warm-up
    profiler = cProfile.Profile()
    t0 = time.process_time()
    profiler.runcall(preparer.__getitem__, 0)
    prep_ms = 1e3 * (time.process_time() - t0) / args.n
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
    print(f"== preparation: {prep_ms:.2f} ms CPU per ECG (cProfile adds overhead)")
    print(out.getvalue().split("\n\n", 1)[-1].strip())

    from torch.profiler import ProfilerActivity, profile

    chunks = [{k: v[s : s + CPU_CHUNK] for k, v in batch.items()} for s in range(0, args.n, CPU_CHUNK)]

    def encode() -> None:
        with encoding(clf.model.device.type, clf.precision):
            for chunk in chunks:
                encode_rhythm(clf.model, chunk)

    encode()  # warm-up
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        encode()
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    peak = ctx.matmul_peak()
    print(f"\n== encoder: {total_us / 1e3 / args.n:.2f} ms CPU per ECG ({args.precision}, 1 thread, "
          f"{CPU_CHUNK} ECGs per call); fp32 matmul peak here {peak:.0f} GFLOP/s")  # fmt: skip
    print(f"{'op':<32} {'share':>6} {'ms/ECG':>7} {'GFLOP/s':>8}")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        rate = f"{e.flops / e.self_cpu_time_total / 1e3:.0f}" if e.flops else ""
        share = 100 * e.self_cpu_time_total / total_us
        print(f"{e.key:<32} {share:5.1f}% {e.self_cpu_time_total / 1e3 / args.n:7.3f} {rate:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
