"""Cost of the contrastive losses per process: `local_loss` false (every process scores the whole gathered batch,
`B × B`) against true (its own rows and columns only, `b × B + B × b` with `b = B / N`), on CPU, one thread.

The gathered batch is simulated: random embeddings of the shapes the towers give (`D` = 256, 12 beats of 12
leads per ECG, 4 sentences and 48 tokens per report), so no process group is needed; what is timed is each score
function of `ecglang.encoders.loss` and its backward, for the token (FILIP), beat (GLoRIA) and rhythm (CLIP)
losses. Median of 3 (1 for the largest).

    python benchmarks/run.py --only loss         # B = 32, 64, 128; N = 1, 2, 4, 8
    python benchmarks/bench_loss.py               # standalone, prints the rows
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import torch

from ecglang.encoders.loss import beat_scores, rhythm_scores, token_scores

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext

D, BEATS, LEADS, SENTENCES, TOKENS = 256, 12, 12, 4, 48
BATCHES, QUICK_BATCHES = (32, 64, 128), (16, 32)
WORLDS = (1, 2, 4, 8)
TARGET_SAVING = 3.0  # local rows at N = 8 should save at least N/2 - 1 of the token loss


def inputs(b: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).requires_grad_(True)

    return {
        "rhythm_e": r(b, D), "text": r(b, D),
        "beats": r(b, BEATS, D), "beat_mask": torch.ones(b, BEATS, dtype=torch.bool),
        "sent": r(b, SENTENCES, D), "sent_mask": torch.ones(b, SENTENCES, dtype=torch.bool),
        "tok": r(b, BEATS * LEADS, D), "tok_mask": torch.ones(b, BEATS * LEADS, dtype=torch.bool),
        "words": r(b, TOKENS, D), "word_mask": torch.ones(b, TOKENS, dtype=torch.bool),
    }  # fmt: skip


def score(kind: str, e: dict[str, torch.Tensor], t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "rhythm":
        return rhythm_scores(e["rhythm_e"], t["text"])
    if kind == "beat":
        return beat_scores(e["beats"], e["beat_mask"], t["sent"], t["sent_mask"])
    return token_scores(e["tok"], e["tok_mask"], t["words"], t["word_mask"])


def step_time(kind: str, all_: dict[str, torch.Tensor], b: int, local: bool, repeats: int) -> float:
    """Seconds of one forward + backward of `kind`'s scores for one process."""
    mine = {k: v[:b] for k, v in all_.items()}
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        if local:  # its ECGs against all reports, and all ECGs against its reports
            s_e, _ = score(kind, mine, all_)
            _, s_t = score(kind, all_, mine)
            total = s_e.sum() + s_t.sum()
        else:
            s_e, s_t = score(kind, all_, all_)
            total = s_e.sum() + s_t.sum()
        total.backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(batches: tuple[int, ...], worlds: tuple[int, ...] = WORLDS) -> list[dict[str, Any]]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for big_b in batches:
            data = inputs(big_b, gen)
            for kind in ("token", "beat", "rhythm"):
                repeats = 1 if big_b >= 128 and kind != "rhythm" else 3
                full = step_time(kind, data, big_b, False, repeats)
                for n in worlds:
                    b = big_b // n
                    local = full if n == 1 else step_time(kind, data, b, True, repeats)
                    row = {"loss": kind, "global_batch": big_b, "world": n, "full_s": round(full, 4),
                           "local_s": round(local, 4), "full_over_local": round(full / local, 2)}  # fmt: skip
                    if kind == "token" and n == max(worlds):  # what `train.local_loss: auto` is for
                        ratio = full / local
                        row.update(
                            target=f"token loss >= {TARGET_SAVING:g}x cheaper local at N={n}",
                            measured=f"{ratio:.1f}x",
                            met="yes" if ratio >= TARGET_SAVING else "no",
                        )
                    rows.append(row)
    finally:
        torch.set_num_threads(before)
    return rows


def bench_loss(ctx: BenchContext) -> list[dict[str, Any]]:
    ctx.note("loss: seconds per process of one forward+backward of each loss's scores, 1 CPU thread")
    return measure(QUICK_BATCHES if ctx.quick else BATCHES)


BENCHMARKS = {"loss": bench_loss}

if __name__ == "__main__":
    for row in measure(BATCHES):
        print(row)
