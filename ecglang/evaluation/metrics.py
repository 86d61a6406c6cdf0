"""Evaluation metrics on score arrays: tie-aware AUROC, max-F1, bootstrap CIs, retrieval recall.

Everything here works on plain arrays (or DataFrames) and knows nothing about models or datasets:

* `y_true` is `[N, C]` with values in {0, 1} (bool is fine), `scores` is `[N, C]` finite floats where
  larger means "more likely positive". A 1-D pair is treated as one class. Two DataFrames are paired by
  column and index names (`check_pair`), arrays by position.
* A class whose evaluated records hold a single value (only negatives or only positives) has no AUROC;
  it is *skipped* and listed with the reason, and macro figures average over the remaining classes.
* AUROC is the Mann–Whitney U statistic with average ranks (`scipy.stats.rankdata`), so a tied
  positive/negative pair earns 1/2 — exactly the trapezoidal area under the ROC curve.
* Max-F1 predicts "positive" when `score >= threshold` and tries only the distinct score values as
  thresholds (records with equal scores always fall on the same side).

Bootstrap resampling works on multiplicities: drawing N records with replacement is the same as giving
record i the weight "number of times it was drawn". Sorting each class once and taking cumulative sums
of weights lets AUROC and max-F1 of a whole batch of resamples be computed with a few `[B, N]` array
operations instead of B sorts (`macro_auroc.batched`, `macro_max_f1.batched`, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata
from tqdm.auto import tqdm

from ecglang.errors import ConfigError
from ecglang.evaluation.alignment import aligned_scores

__all__ = [
    "CI",
    "EvalResult",
    "auroc",
    "bootstrap_ci",
    "evaluate_scores",
    "macro_accuracy",
    "macro_auroc",
    "macro_max_f1",
    "max_f1",
    "per_class_auroc",
    "retrieval_recall",
    "roc_curve",
]

# Bootstrap chunks hold at most this many [resample, record] cells (float64: 8 bytes each), which
# bounds memory to some tens of MB whatever N is.
_CHUNK_CELLS = 2_000_000

MetricFn = Callable[[np.ndarray, np.ndarray], float]


# ---------------------------------------------------------------------------------------------------------
# input checks


def label_names_from(y_true: Any, n_classes: int, label_names: Sequence[str] | None) -> list[str]:
    """The class names: `label_names` (checked against `n_classes`), a DataFrame's columns, or `class_<i>`."""
    if label_names is None:
        columns = getattr(y_true, "columns", None)  # a DataFrame names its own columns
        names = [str(c) for c in columns] if columns is not None else [f"class_{i}" for i in range(n_classes)]
    else:
        names = [str(n) for n in label_names]
    if len(names) != n_classes:
        raise ConfigError(f"label_names has {len(names)} names but the arrays have {n_classes} classes")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"label_names must be unique; repeated: {dup}")
    return names


def as_labels(y_true: Any, name: str = "y_true") -> np.ndarray:
    """`y_true` as a bool `[N, C]` array; anything but 0/1 is an error (NaN included)."""
    y = np.asarray(y_true)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ConfigError(f"{name} must be [N, C] (or [N] for one class), got shape {y.shape}")
    if y.dtype == bool:
        return y
    if not np.issubdtype(y.dtype, np.number):
        raise ConfigError(f"{name} must be numeric 0/1 or bool, got dtype {y.dtype}")
    ok = (y == 0) | (y == 1)
    if not ok.all():
        bad = np.unique(y[~ok])[:5]
        raise ConfigError(f"{name} must hold only 0/1 values; found {bad.tolist()} in {int((~ok).sum())} cells")
    return y == 1


def _as_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """`scores` as a finite float64 `[N, C]` array."""
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a numeric array: {exc}") from None
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2:
        raise ConfigError(f"{name} must be [N, C] (or [N] for one class), got shape {s.shape}")
    finite = np.isfinite(s)
    if not finite.all():
        cols = np.flatnonzero(~finite.all(axis=0))
        raise ConfigError(
            f"{name} hold {int((~finite).sum())} non-finite values (NaN/inf) in class columns "
            f"{cols[:10].tolist()}; scores must be finite"
        )
    return s


def check_pair(
    y_true: Any, scores: Any, label_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`(labels [N, C] bool, scores [N, C] float, class names)` checked to match in shape and be finite.

    When both are pandas objects, `scores` is lined up with `y_true` by name first: its columns in
    `y_true`'s order, its rows in `y_true`'s index order (a label split orders its columns unlike a prompt
    set, so pairing by position would score one label's truth against another label's scores)."""
    scores = aligned_scores(y_true, scores)
    y = as_labels(y_true)
    s = _as_scores(scores)
    if y.shape != s.shape:
        raise ConfigError(f"y_true has shape {y.shape} but scores has shape {s.shape}; they must match")
    if y.shape[0] == 0:
        raise ConfigError("no records to evaluate (y_true is empty)")
    return y, s, label_names_from(y_true, y.shape[1], label_names)


def skip_reason(n_pos: int, n: int) -> str | None:
    """Why a class with `n_pos` positives among `n` records has no AUROC (None when it has one)."""
    if n_pos == 0:
        return f"only negatives (0 positives of {n})"
    if n_pos == n:
        return f"only positives ({n} positives of {n})"
    return None


# ---------------------------------------------------------------------------------------------------------
# single-class metrics


def auroc(y_true_c: Any, scores_c: Any) -> float:
    """Area under the ROC curve of one class; NaN when the class holds a single value.

    Computed as the Mann–Whitney U with average ranks: every (positive, negative) pair counts 1 when
    the positive scores higher and 1/2 when they tie.
    """
    y, s, _ = check_pair(y_true_c, scores_c)
    if y.shape[1] != 1:
        raise ConfigError(f"auroc takes one class ([N] arrays), got {y.shape[1]} classes")
    return float(_auroc_columns(y, s)[0])


def _auroc_columns(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUROC of every column of validated arrays (NaN for single-valued columns)."""
    n_pos = y.sum(axis=0).astype(np.float64)
    n_neg = y.shape[0] - n_pos
    ranks = rankdata(s, axis=0)  # average ranks: ties share the mean rank
    u = (ranks * y).sum(axis=0) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        out = u / (n_pos * n_neg)
    out[(n_pos == 0) | (n_neg == 0)] = np.nan
    return out


def max_f1(y_true_c: Any, scores_c: Any) -> tuple[float, float, float]:
    """Best F1 over thresholds for one class: `(f1, threshold, accuracy_at_threshold)`.

    A record is predicted positive when `score >= threshold`; only distinct score values are tried.
    When several thresholds reach the same F1 the highest one is returned. A single-valued class gives
    `(nan, nan, nan)` (it is skipped like for AUROC).
    """
    y, s, _ = check_pair(y_true_c, scores_c)
    if y.shape[1] != 1:
        raise ConfigError(f"max_f1 takes one class ([N] arrays), got {y.shape[1]} classes")
    st = _class_kernel(y[:, 0], s[:, 0], np.ones((1, y.shape[0])), want_auroc=False)
    return float(st["f1"][0]), float(st["thr"][0]), float(st["acc"][0])


def roc_curve(y_true_c: Any, scores_c: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of one class: `(fpr, tpr, thresholds)`, thresholds decreasing, starting at `(0, 0, inf)`.

    Point k is the operating point of "positive when score >= thresholds[k]"; tied scores make a single
    (diagonal) step, so the trapezoidal area equals `auroc`.
    """
    y, s, _ = check_pair(y_true_c, scores_c)
    if y.shape[1] != 1:
        raise ConfigError(f"roc_curve takes one class ([N] arrays), got {y.shape[1]} classes")
    y1 = y[:, 0]
    reason = skip_reason(int(y1.sum()), y1.size)
    if reason:
        raise ConfigError(f"ROC curve undefined: the class has {reason}")
    order = np.argsort(-s[:, 0], kind="stable")
    s_desc = s[order, 0]
    # one operating point per distinct score: the last record of each run of equal scores
    ends = np.flatnonzero(np.r_[s_desc[1:] != s_desc[:-1], True])
    tp = np.cumsum(y1[order])[ends]
    fp = (ends + 1) - tp
    fpr = np.r_[0.0, fp / fp[-1]]
    tpr = np.r_[0.0, tp / tp[-1]]
    return fpr, tpr, np.r_[np.inf, s_desc[ends]]


# ---------------------------------------------------------------------------------------------------------
# weighted (bootstrap) kernels


def _class_kernel(
    y_c: np.ndarray, s_c: np.ndarray, w: np.ndarray, *, want_auroc: bool = True, want_f1: bool = True
) -> dict[str, np.ndarray]:
    """AUROC and max-F1 (with its accuracy and threshold) of one class under B record weightings.

    Args:
        y_c: bool `[N]`; s_c: float `[N]`; w: `[B, N]` record weights (bootstrap multiplicities, or ones).
    Returns:
        `{"auroc", "f1", "acc", "thr"}` → `[B]` (only the keys asked for), NaN where the weighted class is
        single-valued.

    Positives and negatives are sorted once; one cumulative sum of negative weights then answers, for
    every positive, "how much negative weight lies strictly below / at my score" (`searchsorted`), which
    gives the Mann–Whitney U with ties counting 1/2. The best F1 threshold always sits at a positive's
    score (moving down onto a value holding only negatives adds false positives and nothing else), so only
    the distinct positive scores are tried; the highest maximiser is kept.
    """
    b = w.shape[0]
    pos_idx = np.flatnonzero(y_c)
    neg_idx = np.flatnonzero(~y_c)
    keys = (["auroc"] if want_auroc else []) + (["f1", "acc", "thr"] if want_f1 else [])
    if pos_idx.size == 0 or neg_idx.size == 0:
        return {k: np.full(b, np.nan) for k in keys}
    neg_order = neg_idx[np.argsort(s_c[neg_idx], kind="stable")]
    pos_order = pos_idx[np.argsort(s_c[pos_idx], kind="stable")]
    neg_sorted = s_c[neg_order]
    pos_sorted = s_c[pos_order]
    left = np.searchsorted(neg_sorted, pos_sorted, "left")  # negatives strictly below each positive
    wp = w[:, pos_order]
    cum_neg = np.zeros((b, neg_order.size + 1))
    np.cumsum(w[:, neg_order], axis=1, out=cum_neg[:, 1:])
    n_neg = cum_neg[:, -1]
    n_pos = wp.sum(axis=1)
    single = (n_pos == 0) | (n_neg == 0)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if want_auroc:
            right = np.searchsorted(neg_sorted, pos_sorted, "right")  # ... below or tied
            # strictly below counts 1, tied counts 1/2: (below + below_or_tied) / 2
            u = (wp * (0.5 * (cum_neg[:, left] + cum_neg[:, right]))).sum(axis=1)
            out["auroc"] = np.where(single, np.nan, u / (n_pos * n_neg))
        if want_f1:
            # thresholds: the distinct positive scores
            starts = np.flatnonzero(np.r_[True, pos_sorted[1:] != pos_sorted[:-1]])
            tp = np.cumsum(wp[:, ::-1], axis=1)[:, ::-1][:, starts]  # positive weight with score >= threshold
            fp = n_neg[:, None] - cum_neg[:, left[starts]]  # negative weight with score >= threshold
            f1s = np.nan_to_num(2 * tp / (tp + fp + n_pos[:, None]), nan=0.0)
            best = starts.size - 1 - np.argmax(f1s[:, ::-1], axis=1)  # highest threshold among equal F1
            rows = np.arange(b)
            acc = (tp[rows, best] + n_neg - fp[rows, best]) / (n_pos + n_neg)
            out["f1"] = np.where(single, np.nan, f1s[rows, best])
            out["acc"] = np.where(single, np.nan, acc)
            out["thr"] = np.where(single, np.nan, pos_sorted[starts][best])
    return out


def _class_stats_weighted(y: np.ndarray, s: np.ndarray, w: np.ndarray, want: Sequence[str]) -> dict:
    """Per-class stats of B weightings: `{"auroc"|"f1"|"acc": [B, C]}`, NaN where a class is single-valued."""
    b, c = w.shape[0], y.shape[1]
    out = {k: np.empty((b, c)) for k in want}
    for j in range(c):
        st = _class_kernel(y[:, j], s[:, j], w, want_auroc="auroc" in out, want_f1="f1" in out or "acc" in out)
        for k in out:
            out[k][:, j] = st[k]
    return out


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Row means over the non-NaN entries; NaN for an all-NaN row (no warning)."""
    valid = ~np.isnan(a)
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(valid, a, 0.0).sum(axis=1) / n, np.nan)


# ---------------------------------------------------------------------------------------------------------
# per-class and macro figures


def per_class_auroc(
    y_true: Any, scores: Any, label_names: Sequence[str] | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """AUROC of each class. Returns `(auroc by label, skipped label → reason)`.

    A class with a single value among the evaluated records is left out of the first dict and listed in
    the second, e.g. `{"WPW": "only negatives (0 positives of 37)"}`.
    """
    y, s, names = check_pair(y_true, scores, label_names)
    values = _auroc_columns(y, s)
    n_pos = y.sum(axis=0)
    result: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for j, name in enumerate(names):
        reason = skip_reason(int(n_pos[j]), y.shape[0])
        if reason:
            skipped[name] = reason
        else:
            result[name] = float(values[j])
    return result, skipped


def macro_auroc(y_true: Any, scores: Any, label_names: Sequence[str] | None = None) -> float:
    """Mean AUROC over the classes that hold both values (NaN when none does)."""
    y, s, _ = check_pair(y_true, scores, label_names)
    return float(_nanmean_rows(_auroc_columns(y, s)[None])[0])


def _max_f1_columns(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f1, thr, acc = np.full(y.shape[1], np.nan), np.full(y.shape[1], np.nan), np.full(y.shape[1], np.nan)
    ones = np.ones((1, y.shape[0]))
    for j in range(y.shape[1]):
        st = _class_kernel(y[:, j], s[:, j], ones, want_auroc=False)
        f1[j], thr[j], acc[j] = st["f1"][0], st["thr"][0], st["acc"][0]
    return f1, thr, acc


def macro_max_f1(y_true: Any, scores: Any, label_names: Sequence[str] | None = None) -> float:
    """Mean per-class max-F1 over the classes that hold both values (NaN when none does)."""
    y, s, _ = check_pair(y_true, scores, label_names)
    return float(_nanmean_rows(_max_f1_columns(y, s)[0][None])[0])


def macro_accuracy(y_true: Any, scores: Any, label_names: Sequence[str] | None = None) -> float:
    """Mean per-class accuracy at each class's max-F1 threshold (classes holding both values)."""
    y, s, _ = check_pair(y_true, scores, label_names)
    return float(_nanmean_rows(_max_f1_columns(y, s)[2][None])[0])


def _batched(stat: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    def fn(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
        return _nanmean_rows(_class_stats_weighted(y, s, w, (stat,))[stat])

    return fn


# `bootstrap_ci` uses `metric_fn.batched(y bool [N,C], s float [N,C], weights [B,N]) -> [B]` when present:
# the metric of B resamples at once, each given as record multiplicities.
macro_auroc.batched = _batched("auroc")  # type: ignore[attr-defined]
macro_max_f1.batched = _batched("f1")  # type: ignore[attr-defined]
macro_accuracy.batched = _batched("acc")  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------------------
# bootstrap


@dataclass(frozen=True)
class CI:
    """A point estimate with a percentile-bootstrap confidence interval.

    `n_valid` counts the resamples in which the metric was defined (a resample where every class became
    single-valued has no macro figure and does not enter the percentiles).
    """

    point: float
    low: float
    high: float
    n_valid: int

    def format(self, digits: int = 3) -> str:
        """`"0.853 (0.832–0.871)"`; `"n/a"` for an undefined point; no interval without resamples."""
        if math.isnan(self.point):
            return "n/a"
        p = f"{self.point:.{digits}f}"
        if math.isnan(self.low) or math.isnan(self.high):
            return p
        return f"{p} ({self.low:.{digits}f}–{self.high:.{digits}f})"

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "point": _json_float(self.point),
            "low": _json_float(self.low),
            "high": _json_float(self.high),
            "n_valid": int(self.n_valid),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CI:
        point, low, high = (_from_json_float(d[k]) for k in ("point", "low", "high"))
        return cls(point, low, high, int(d["n_valid"]))


def _json_float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _from_json_float(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _check_bootstrap_args(n_resamples: int, seed: int, alpha: float) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 0:
        raise ConfigError(f"n_resamples must be a non-negative integer, got {n_resamples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha!r}")


def _resample_chunks(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Record indices `[b, n]` of successive resample chunks from one seeded Generator.

    The chunk size depends only on n, so the batched and the per-resample paths see the same resamples.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, _CHUNK_CELLS // n))
    for start in range(0, n_resamples, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_resamples - start), n))


def _multiplicities(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each record appears in each resample: `[b, n]` float64."""
    b = idx.shape[0]
    flat = (idx + (np.arange(b) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def _bootstrap_values(
    batched: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None,
    plain: MetricFn | None,
    y: np.ndarray,
    s: np.ndarray,
    n_resamples: int,
    seed: int,
    progress: bool | None,
) -> np.ndarray:
    """Metric values of every resample: `[n_resamples]` or `[n_resamples, K]` (NaN where undefined)."""
    n = y.shape[0]
    parts = []
    disable = None if progress is None else not progress  # None: tqdm shows a bar only on a terminal
    with tqdm(total=n_resamples, desc="bootstrap", unit="resample", disable=disable, leave=False) as bar:
        for idx in _resample_chunks(n, n_resamples, seed):
            if batched is not None:
                parts.append(np.asarray(batched(y, s, _multiplicities(idx, n)), dtype=np.float64))
            elif plain is not None:
                parts.append(np.array([plain(y[i], s[i]) for i in idx], dtype=np.float64))
            else:
                raise ConfigError("bootstrap needs a metric function")
            bar.update(idx.shape[0])
    return np.concatenate(parts, axis=-1 if parts and parts[0].ndim > 1 else 0) if parts else np.empty(0)


def _ci_from(point: float, values: np.ndarray, alpha: float) -> CI:
    valid = values[~np.isnan(values)]
    if valid.size == 0:
        return CI(float(point), math.nan, math.nan, 0)
    low, high = np.percentile(valid, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return CI(float(point), float(low), float(high), int(valid.size))


def bootstrap_ci(
    metric_fn: MetricFn,
    y_true: Any,
    scores: Any,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    progress: bool | None = False,
) -> CI:
    """Percentile-bootstrap confidence interval of `metric_fn(y_true, scores)`.

    Records (rows) are resampled with replacement `n_resamples` times with `numpy.random.default_rng(seed)`;
    the interval is the `[alpha/2, 1 - alpha/2]` percentiles of the resampled values. A metric returning
    NaN for a resample (undefined) is left out and `n_valid` says how many counted.

    For the macro metrics of this module a class that becomes single-valued within a resample is skipped
    *in that resample only* — its macro value averages over the classes still holding both values.

    `metric_fn(y bool [N, C], scores float [N, C]) -> float` may carry a vectorised twin
    `metric_fn.batched(y, scores, weights [B, N]) -> [B]` (weights are the record multiplicities of B
    resamples); `macro_auroc`, `macro_max_f1` and `macro_accuracy` do. Either path sees the same resamples.

    Args:
        progress: show a tqdm bar (None: only on a terminal).
    """
    y, s, _ = check_pair(y_true, scores)
    _check_bootstrap_args(n_resamples, seed, alpha)
    point = float(metric_fn(y, s))
    values = _bootstrap_values(getattr(metric_fn, "batched", None), metric_fn, y, s, n_resamples, seed, progress)
    return _ci_from(point, values, alpha)


# ---------------------------------------------------------------------------------------------------------
# retrieval


def hit_rate(_y: np.ndarray, hits: np.ndarray) -> float:
    """Mean of the single score column, per-query hits in 0..1 (`bootstrap_ci` metric: recall@k; the labels are
    not read)."""
    return float(hits[:, 0].mean())


def _hit_rate_batched(_y: np.ndarray, hits: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ hits[:, 0].astype(np.float64)) / hits.shape[0]


hit_rate.batched = _hit_rate_batched  # type: ignore[attr-defined]


def retrieval_recall(
    sim: Any, k: Sequence[int] = (1, 5, 10), n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any]:
    """Recall@k of a similarity matrix whose correct match for query i is item i.

    `sim` is `[N_q, N_d]` with `N_d >= N_q` (items beyond N_q are distractors). ECG→report uses
    `sim`, report→ECG uses `sim.T` (square case).

    Ties are broken at random, in expectation: with `g` items above the correct one and `t` others tied with
    it, the correct item is equally likely at each rank g+1 .. g+t+1, so recall@k counts `(k − g) / (t + 1)`
    of a hit (clipped to 0..1) and its rank is the middle one. A constant similarity matrix scores recall@k =
    k / N_d, chance level (counting ties against the query gave 0, below chance, for an encoder whose
    embeddings collapsed). `n_items` is N_d: for k ≥ N_d recall@k is 1 by construction.

    `recall@k_ci` is the percentile-bootstrap `[low, high]` of recall@k over resampled queries (the
    gallery stays whole, as in the evaluation itself); `n_resamples=0` leaves the CIs out.

    Returns:
        `{"recall@1": ..., "recall@1_ci": [low, high], ..., "median_rank": ..., "mean_rank": ...,
        "n_queries": ...}`; ranks are 1-based.
    """
    if np.ndim(sim) != 2:
        raise ConfigError(f"sim must be a 2-D [N_queries, N_items] matrix, got shape {np.shape(sim)}")
    m = _as_scores(sim, "sim")
    n_q, n_d = m.shape
    if n_q == 0:
        raise ConfigError("sim has no queries")
    if n_d < n_q:
        raise ConfigError(f"sim has {n_q} queries but only {n_d} items; query i must match item i")
    ks = list(k)
    if not ks or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1 for x in ks):
        raise ConfigError(f"k must be positive integers, got {k!r}")
    correct = m[np.arange(n_q), np.arange(n_q)][:, None]
    above = (m > correct).sum(axis=1)
    tied = (m == correct).sum(axis=1) - 1  # others scoring exactly as the correct item
    rank = above + 1 + tied / 2  # 1-based; the middle of the tied ranks
    out: dict[str, Any] = {}
    hits_at = {x: np.clip((x - above) / (tied + 1), 0.0, 1.0) for x in ks}  # expected hit under random tie-breaks
    for x in ks:
        out[f"recall@{int(x)}"] = float(np.mean(hits_at[x]))
    if n_resamples > 0:
        for x in ks:  # the same seed: every k sees the same resampled queries
            hits = hits_at[x][:, None]
            ci = bootstrap_ci(hit_rate, np.ones_like(hits, dtype=bool), hits, n_resamples, seed, alpha)
            out[f"recall@{int(x)}_ci"] = [ci.low, ci.high]
    out["median_rank"] = float(np.median(rank))
    out["mean_rank"] = float(np.mean(rank))
    out["n_queries"] = int(n_q)
    out["n_items"] = int(n_d)
    return out


# ---------------------------------------------------------------------------------------------------------
# everything at once


@dataclass
class EvalResult:
    """Per-class and macro figures of one score matrix against its labels.

    Per-class dicts hold only evaluated classes; `skipped` lists the others with the reason. The macro
    figures carry a percentile-bootstrap CI (`n_resamples` resamples from `seed`, level `1 - alpha`).
    `meta` is free-form context set by callers (e.g. the linear probe's training-subset size).
    """

    label_names: list[str]
    n_records: int
    n_positives: dict[str, int]
    per_class_auroc: dict[str, float]
    per_class_max_f1: dict[str, float]
    per_class_threshold: dict[str, float]
    per_class_accuracy: dict[str, float]
    skipped: dict[str, str]
    macro_auroc: CI
    macro_max_f1: CI
    macro_accuracy: CI
    n_resamples: int
    seed: int
    alpha: float
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN becomes None)."""
        return {
            "label_names": list(self.label_names),
            "n_records": int(self.n_records),
            "n_positives": {k: int(v) for k, v in self.n_positives.items()},
            "per_class_auroc": {k: _json_float(v) for k, v in self.per_class_auroc.items()},
            "per_class_max_f1": {k: _json_float(v) for k, v in self.per_class_max_f1.items()},
            "per_class_threshold": {k: _json_float(v) for k, v in self.per_class_threshold.items()},
            "per_class_accuracy": {k: _json_float(v) for k, v in self.per_class_accuracy.items()},
            "skipped": dict(self.skipped),
            "macro_auroc": self.macro_auroc.to_dict(),
            "macro_max_f1": self.macro_max_f1.to_dict(),
            "macro_accuracy": self.macro_accuracy.to_dict(),
            "n_resamples": int(self.n_resamples),
            "seed": int(self.seed),
            "alpha": float(self.alpha),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalResult:
        """Inverse of `to_dict`."""
        keys = ("per_class_auroc", "per_class_max_f1", "per_class_threshold", "per_class_accuracy")
        f = {k: {n: _from_json_float(v) for n, v in d[k].items()} for k in keys}
        return cls(
            label_names=list(d["label_names"]),
            n_records=int(d["n_records"]),
            n_positives={k: int(v) for k, v in d["n_positives"].items()},
            skipped=dict(d["skipped"]),
            macro_auroc=CI.from_dict(d["macro_auroc"]),
            macro_max_f1=CI.from_dict(d["macro_max_f1"]),
            macro_accuracy=CI.from_dict(d["macro_accuracy"]),
            n_resamples=int(d["n_resamples"]),
            seed=int(d["seed"]),
            alpha=float(d["alpha"]),
            meta=dict(d.get("meta", {})),
            **f,
        )


def _all_macros_batched(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """`[4, B]`: macro AUROC, max-F1 and accuracy of B weightings in one pass over the sorted classes, and how
    many classes each resample averaged (a class that drew no positive, or no negative, drops out of it)."""
    st = _class_stats_weighted(y, s, w, ("auroc", "f1", "acc"))
    counted = (~np.isnan(st["auroc"])).sum(axis=1).astype(np.float64)
    return np.stack([_nanmean_rows(st["auroc"]), _nanmean_rows(st["f1"]), _nanmean_rows(st["acc"]), counted])


def evaluate_scores(
    y_true: Any,
    scores: Any,
    label_names: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    alpha: float = 0.05,
    progress: bool | None = False,
    skip: Mapping[str, str] | None = None,
) -> EvalResult:
    """Per-class AUROC / max-F1 / accuracy at max-F1 plus macro figures with bootstrap CIs.

    Single-valued classes are skipped (listed in `skipped`) and left out of every macro figure, as are the
    classes of `skip` (name → the caller's reason, e.g. the linear probe's classes without a training
    positive); the three macro CIs share the same resamples. `n_boot=0` gives points without intervals.
    `meta["classes_per_resample"]` says over how many classes the resamples averaged (`of` classes in the
    point figure; `min` and `mean` over the resamples: see `bootstrap_ci` on classes that drop out).
    The max-F1 thresholds (and the accuracies at them) are chosen on these labels: an oracle operating point.
    """
    y, s, names = check_pair(y_true, scores, label_names)
    _check_bootstrap_args(n_boot, seed, alpha)
    au = _auroc_columns(y, s)
    f1, thr, acc = _max_f1_columns(y, s)
    n_pos = y.sum(axis=0)
    skipped = {name: str(reason) for name, reason in (skip or {}).items() if name in names}
    for j, name in enumerate(names):
        reason = skip_reason(int(n_pos[j]), y.shape[0])
        if reason and name not in skipped:
            skipped[name] = reason
    kept = [j for j, name in enumerate(names) if name not in skipped]
    points = [float(_nanmean_rows(a[None, kept])[0]) for a in (au, f1, acc)]
    # Only kept classes enter the resamples: skipped ones would be NaN in every resample anyway.
    values = _bootstrap_values(_all_macros_batched, None, y[:, kept], s[:, kept], n_boot if kept else 0, seed, progress)
    values = values.reshape(4, -1)
    cis = [_ci_from(p, v, alpha) for p, v in zip(points, values[:3], strict=True)]
    meta: dict[str, Any] = {}
    if values.shape[1]:
        meta["classes_per_resample"] = {"of": len(kept), "min": int(values[3].min()), "mean": float(values[3].mean())}
    return EvalResult(
        label_names=names,
        n_records=int(y.shape[0]),
        n_positives={name: int(n_pos[j]) for j, name in enumerate(names)},
        per_class_auroc={names[j]: float(au[j]) for j in kept},
        per_class_max_f1={names[j]: float(f1[j]) for j in kept},
        per_class_threshold={names[j]: float(thr[j]) for j in kept},
        per_class_accuracy={names[j]: float(acc[j]) for j in kept},
        skipped=skipped,
        macro_auroc=cis[0],
        macro_max_f1=cis[1],
        macro_accuracy=cis[2],
        n_resamples=int(n_boot),
        seed=int(seed),
        alpha=float(alpha),
        meta=meta,
    )
