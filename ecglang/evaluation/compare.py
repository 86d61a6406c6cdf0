"""Paired comparison of two prompt sources on the same records: the bootstrap of a metric's difference.

Two sources scored on the same records are not independent: their CIs overlap even when one is better on
almost every resample. The paired bootstrap resamples the records once per replicate and computes both
sources' metric on that *same* resample; the percentiles of the differences give the CI of the difference.
Two facts are reported:

* `point_ge_0`: the difference on the full sample is >= 0 (a point estimate, not a result on its own);
* `ci_contains_0`: the paired CI of the difference contains 0 (the sample cannot tell them apart).

`verdict` follows the CI alone: ``"better"`` (the whole CI lies above 0), ``"worse"`` (the whole CI lies
below 0), ``"not distinguishable"`` (the CI holds 0, whatever the sign of the point), or ``"undefined"``
(no point or no CI, e.g. fewer than `MIN_VERDICT_RESAMPLES` resamples).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ecglang.errors import ConfigError
from ecglang.evaluation.metrics import CI, bootstrap_ci, check_pair, macro_auroc

__all__ = [
    "MIN_VERDICT_RESAMPLES",
    "VERDICTS",
    "compare_sources",
    "focus_source",
    "paired_difference",
    "paired_metric",
    "verdict",
]


def paired_metric(metric_fn: Callable[[np.ndarray, np.ndarray], float], n_classes: int) -> Callable:
    """`metric(y2, s2) = metric_fn(y2[:, :C], s2[:, :C]) − metric_fn(y2[:, C:], s2[:, C:])` with `C = n_classes`.

    Fed to `bootstrap_ci` with the two sources' scores side by side, every resample draws the same records
    for both halves, so the bootstrap distribution is that of the paired difference. The vectorised twin
    (`metric_fn.batched`) is kept when the metric has one.
    """

    def diff(y2: np.ndarray, s2: np.ndarray) -> float:
        return float(metric_fn(y2[:, :n_classes], s2[:, :n_classes]) - metric_fn(y2[:, n_classes:], s2[:, n_classes:]))

    batched = getattr(metric_fn, "batched", None)
    if batched is not None:

        def diff_batched(y2: np.ndarray, s2: np.ndarray, w: np.ndarray) -> np.ndarray:
            c = n_classes
            return np.asarray(batched(y2[:, :c], s2[:, :c], w)) - np.asarray(batched(y2[:, c:], s2[:, c:], w))

        diff.batched = diff_batched  # type: ignore[attr-defined]
    return diff


#: Resamples a paired CI needs for a verdict: the 2.5th and 97.5th percentiles of fewer are not an interval
#: (one resample gave a "CI" of [+0.013, +0.013] around a point of −0.013, and the verdict "better").
MIN_VERDICT_RESAMPLES = 100

#: The verdicts `verdict` gives, and the rule of each (for reports that explain the column).
VERDICTS = {
    "better": "the whole paired CI lies above 0",
    "worse": "the whole paired CI lies below 0",
    "not distinguishable": "the CI holds 0, whatever the sign of the point difference",
    "undefined": f"no point difference or no CI (e.g. fewer than {MIN_VERDICT_RESAMPLES} resamples)",
}


def verdict(ci: CI) -> str:
    """`"better"`, `"worse"`, `"not distinguishable"` or `"undefined"`, from the CI alone (`VERDICTS`): a
    point difference inside the CI is not a result, so its sign decides nothing."""
    if not (np.isfinite(ci.point) and np.isfinite(ci.low) and np.isfinite(ci.high)):
        return "undefined"
    if ci.n_valid < MIN_VERDICT_RESAMPLES:
        return "undefined"
    if ci.low > 0:
        return "better"
    if ci.high < 0:
        return "worse"
    return "not distinguishable"


def paired_difference(
    y_true: Any,
    scores_a: Any,
    scores_b: Any,
    metric_fn: Callable[[np.ndarray, np.ndarray], float] = macro_auroc,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Paired bootstrap of `metric(A) − metric(B)` over the same resampled records.

    `y_true` is `[N, C]`, `scores_a` and `scores_b` `[N, C]` for the same records and classes. Returns
    `{"a": metric(A), "b": metric(B), "difference": CI dict, "point_ge_0", "ci_contains_0", "verdict"}`.
    Identical scores give a difference of exactly 0 with the CI [0, 0].
    """
    y, sa, _ = check_pair(y_true, scores_a)
    _, sb, _ = check_pair(y_true, scores_b)
    if sa.shape != sb.shape:
        raise ConfigError(f"the two sources' scores differ in shape: {sa.shape} vs {sb.shape}")
    c = y.shape[1]
    ci = bootstrap_ci(
        paired_metric(metric_fn, c), np.concatenate([y, y], axis=1), np.concatenate([sa, sb], axis=1),
        n_resamples=n_resamples, seed=seed, alpha=alpha,
    )  # fmt: skip
    contains = bool(np.isfinite(ci.low) and np.isfinite(ci.high) and ci.low <= 0 <= ci.high)
    return {
        "a": float(metric_fn(y, sa)),
        "b": float(metric_fn(y, sb)),
        "difference": ci.to_dict(),
        "point_ge_0": bool(np.isfinite(ci.point) and ci.point >= 0),
        "ci_contains_0": contains,
        "verdict": verdict(ci),
    }


def focus_source(keys: Sequence[str]) -> str | None:
    """The source the others are compared against: `knowledge` if evaluated, else `prompts`, else none."""
    for key in ("knowledge", "prompts"):
        if key in keys:
            return key
    return None


def compare_sources(
    y: np.ndarray,
    codes: Sequence[str],
    scores: dict[str, tuple[list[str], np.ndarray]],
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired macro-AUROC differences of the focus source (`focus_source`) against every other source.

    `scores` maps a source key to `(its scored codes, scores [N, len(codes)])`; `y` is `[N, len(codes)]` over
    `codes`. Each comparison uses the labels both sources scored (`labels`; the macro AUROC averages over
    those of them with both classes, `labels_with_both_classes`); the result is keyed ``"A − B"`` and holds the
    source names (`a`, `b`), their macro AUROCs (`a_macro_auroc`, `b_macro_auroc`) and `paired_difference`'s rest.
    """
    focus = focus_source(list(scores))
    out: dict[str, Any] = {}
    if focus is None:
        return out
    fcodes, fscores = scores[focus]
    for key, (ocodes, oscores) in scores.items():
        if key == focus:
            continue
        shared = [c for c in fcodes if c in ocodes]
        if not shared:
            continue
        yy = y[:, [list(codes).index(c) for c in shared]]
        a = fscores[:, [fcodes.index(c) for c in shared]]
        b = oscores[:, [ocodes.index(c) for c in shared]]
        res = paired_difference(yy, a, b, n_resamples=n_resamples, seed=seed)
        n_pos = yy.sum(axis=0)
        both = [c for c, p in zip(shared, n_pos, strict=True) if 0 < p < yy.shape[0]]  # the labels AUROC covers
        # `res` holds the two macro AUROCs as "a"/"b": renamed, so "a"/"b" stay the source names
        aurocs = {"a_macro_auroc": res.pop("a"), "b_macro_auroc": res.pop("b")}
        out[f"{focus} − {key}"] = {"a": focus, "b": key, **aurocs, "labels": shared, "labels_with_both_classes": both,
                                   **res}  # fmt: skip
    return out
