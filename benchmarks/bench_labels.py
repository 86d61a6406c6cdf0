"""10,000 free-text labels with knowledge retrieval on, through the real `ecglang zero-shot` command.

The labels are `bench_knowledge.many_labels`: SNOMED CT names, abbreviations and snippet aliases with hedges,
qualifiers and places, and some words that name no ECG finding (deterministic). Two PTB-XL sample records are
scored with the bundled checkpoint and the bundled knowledge base, in a fresh process: start-up, retrieval
for every label, prompt embedding and scoring are all inside the time; the knowledge index is loaded from the
harness's cache (`work_dir/cache`, built by an earlier run, as a user's first run leaves it). Target (issue 14):
under 60 s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench_knowledge import many_labels
from bench_memory import cli_command, cli_env

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext

TARGET_S = 60.0


def bench_labels(ctx: BenchContext) -> list[dict[str, Any]]:
    n = 300 if ctx.quick else 10_000
    labels = many_labels(n)
    records = ctx.record_files(2)
    out = ctx.work("labels") / f"scores-{n}.csv"
    cmd = [*cli_command(), "zero-shot", *map(str, records), "--labels", *labels, "--quiet", "--out", str(out)]
    stats = ctx.run_process(cmd, env=cli_env(ctx))
    if stats.returncode != 0:
        raise RuntimeError(f"ecglang zero-shot exited with {stats.returncode}:\n{stats.output[-3000:]}")
    header = out.read_text(encoding="utf-8").splitlines()[0]
    if header.count(",") < n:  # one column per label, beside the record id
        raise RuntimeError(f"the score table has {header.count(',')} label columns, not {n}")
    met = "quick run" if ctx.quick else stats.wall < TARGET_S
    if ctx.quick:
        ctx.note(f"labels --quick: {n} labels (the target is for 10,000)")
    return [
        {
            "case": f"{n} labels (many_labels), 2 records, knowledge default",
            "ours": "ecglang zero-shot (subprocess)",
            "ours s": stats.wall,
            "note": f"CPU {stats.cpu:.0f} s, peak RSS {stats.peak_rss / 1e9:.2f} GB",
            **ctx.target_columns(f"10,000 labels < {TARGET_S:g} s", f"{stats.wall:.1f} s", met),
        }
    ]


BENCHMARKS = {"labels": bench_labels}
