"""Cost of the evaluation's bootstrap: `evaluate_scores` (per-class AUROC, max-F1 and accuracy with 95 % bootstrap
CIs, resamples batched) against the plain way, scikit-learn's `roc_auc_score` per class per resample (macro AUROC
alone, so the baseline does less work). Synthetic labels and rounded (tied) scores of 2,000 records × 23 classes,
the size of PTB-XL's sub-class test split.

    python benchmarks/run.py --only evaluation
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ecglang.evaluation.metrics import evaluate_scores

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext

RECORDS, CLASSES = 2000, 23
SIDE_BY_SIDE_RESAMPLES = 100  # the plain loop is slow: both sides run this many for the ratio
TARGET_S = 10.0  # 1,000 resamples of the full figure set (it was a timed unit test; speed belongs here)


def synthetic(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < rng.uniform(0.05, 0.4, c)
    return y.astype(int), np.round(y + rng.normal(size=(n, c)), 2)


def sklearn_bootstrap(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int = 0) -> list[float]:
    from sklearn.metrics import roc_auc_score  # here: only the baseline needs scikit-learn

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        yb, sb = y[idx], s[idx]
        cols = [c for c in range(y.shape[1]) if 0 < yb[:, c].sum() < len(yb)]
        out.append(float(np.mean([roc_auc_score(yb[:, c], sb[:, c]) for c in cols])))
    return out


def bench_evaluation(ctx: BenchContext) -> list[dict[str, Any]]:
    n = 400 if ctx.quick else RECORDS
    y, s = synthetic(n, CLASSES, seed=9)
    ours, base = ctx.compare(
        lambda: evaluate_scores(y, s, n_boot=SIDE_BY_SIDE_RESAMPLES, seed=0),
        lambda: sklearn_bootstrap(y, s, SIDE_BY_SIDE_RESAMPLES),
        repeats=1 if ctx.quick else 3,
    )
    rows = [{"case": f"{n} records x {CLASSES} classes, {SIDE_BY_SIDE_RESAMPLES} resamples",
             "ours": "evaluate_scores (AUROC, max-F1, accuracy, batched)",
             "baseline": "sklearn roc_auc_score per class per resample (AUROC only)",
             **ctx.ratio_columns(ours, base)}]  # fmt: skip
    full = ctx.time(lambda: evaluate_scores(y, s, n_boot=1000, seed=0), repeats=1 if ctx.quick else 3)
    rows.append({"case": f"{n} records x {CLASSES} classes, 1000 resamples", "ours": "evaluate_scores",
                 "ours s": full.wall,
                 **ctx.target_columns(f"< {TARGET_S:g} s", f"{full.wall:.2f} s", full.wall < TARGET_S)})  # fmt: skip
    return rows


BENCHMARKS = {"evaluation": bench_evaluation}
