"""Peak memory of the real `ecglang zero-shot` command over 1,000 records.

The console script runs as a subprocess on a folder of 1,000 generated `.npz` records (jittered real
PTB-XL records, `BenchContext.record_files`) with a saved `ecglang-small` checkpoint, the `ptbxl_super`
prompt set and the bundled knowledge base (its index is built once into `work_dir/cache` and loaded from
there afterwards, as from a user's cache), writing the score table with `--out`. Reported: the exact
peak RSS of the command's process, and the sampled peaks of its process tree (the DataLoader workers
included: on at most 4 cores each prepares and encodes its own batches, with the model shared by fork):
summed RSS, PSS (the tree's real footprint) and anonymous memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext

TARGET_GB = 1.5
GB = 1e9


def bench_memory(ctx: BenchContext) -> list[dict[str, Any]]:
    n = 12 if ctx.quick else 1000
    paths = ctx.record_files(n)
    out = ctx.work("memory") / f"scores-{n}.csv"
    knowledge = "off" if ctx.quick else "default"
    cmd = [*ctx.cli_command(), "zero-shot", str(paths[0].parent), "--prompt-set", "ptbxl_super", "--model",
           str(ctx.checkpoint("ecglang-small")), "--knowledge", knowledge, "--quiet", "--out", str(out)]  # fmt: skip
    stats = ctx.run_process(cmd, env=ctx.cli_env())
    if stats.returncode != 0:
        raise RuntimeError(f"ecglang zero-shot exited with {stats.returncode}:\n{stats.output}")
    scored = len(pd.read_csv(out, index_col=0))
    if scored != n:
        raise RuntimeError(f"ecglang zero-shot scored {scored} of {n} records:\n{stats.output}")
    worst = max(stats.peak_rss, stats.tree_pss)
    rows = [
        {
            "case": f"{n} .npz records, ptbxl_super, knowledge {knowledge}",
            "ours": "ecglang zero-shot (subprocess)",
            "ours s": stats.wall,
            "peak RSS GB": stats.peak_rss / GB,
            "tree RSS GB": stats.tree_rss / GB,
            "tree PSS GB": stats.tree_pss / GB,
            "tree anon GB": stats.tree_anon / GB,
            "note": f"{n / stats.wall:.0f} records/s including start-up (model, knowledge), CPU {stats.cpu:.0f} s",
            **ctx.target_columns(f"peak ≤ {TARGET_GB:g} GB", f"{worst / GB:.2f} GB (max of process RSS, tree PSS)",
                                 worst <= TARGET_GB * GB),
        }
    ]  # fmt: skip
    if ctx.quick:
        ctx.note(f"memory --quick: {n} records, knowledge off")
    return rows


BENCHMARKS = {"memory": bench_memory}
