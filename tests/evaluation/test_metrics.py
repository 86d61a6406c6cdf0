"""Evaluation metrics: hand-computed cases (ties included), brute-force oracles, bootstrap behaviour."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecglang.errors import ConfigError
from ecglang.evaluation.metrics import (
    CI,
    EvalResult,
    auroc,
    bootstrap_ci,
    evaluate_scores,
    macro_accuracy,
    macro_auroc,
    macro_max_f1,
    max_f1,
    per_class_auroc,
    retrieval_recall,
    roc_curve,
)

# --- independent oracles ---------------------------------------------------------------------------------


def pairwise_auroc(y, s) -> float:
    """Count every (positive, negative) pair: 1 for a win, 1/2 for a tie."""
    pos = [si for yi, si in zip(y, s, strict=True) if yi]
    neg = [si for yi, si in zip(y, s, strict=True) if not yi]
    if not pos or not neg:
        return math.nan
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def brute_max_f1(y, s) -> tuple[float, float, float]:
    """Try every distinct score as threshold (positive when score >= t); highest t wins ties."""
    y = np.asarray(y, bool)
    s = np.asarray(s, float)
    best = (-1.0, math.nan, math.nan)
    for t in sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        tp = int((pred & y).sum())
        fp = int((pred & ~y).sum())
        fn = int((~pred & y).sum())
        f1 = 2 * tp / (2 * tp + fp + fn)
        if f1 > best[0]:
            best = (f1, t, float((pred == y).mean()))
    return best


def reference_macro(y, s) -> float:
    """Macro AUROC over classes holding both values, from the pairwise oracle."""
    vals = [pairwise_auroc(y[:, j], s[:, j]) for j in range(y.shape[1])]
    vals = [v for v in vals if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def synthetic(n: int, c: int, seed: int, signal: float = 1.0, decimals: int = 1):
    """Labels with varied prevalence and rounded (hence tied) scores that carry some signal."""
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < rng.uniform(0.05, 0.4, c)
    s = np.round(signal * y + rng.normal(size=(n, c)), decimals)
    return y.astype(int), s


# --- AUROC ----------------------------------------------------------------------------------------------


def test_auroc_hand_computed():
    # pairs: 0.35 beats 0.1 but loses to 0.4; 0.8 beats both negatives → 3 of 4
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auroc_tied_positive_and_negative_earn_half():
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    # 0.5(pos) vs 0.1: 1, 0.5(pos) vs 0.5(neg): 1/2, 0.9 vs both: 2 → 3.5 / 4
    assert auroc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(0.875)
    assert auroc([1, 0, 1, 0], [3, 3, 3, 3]) == pytest.approx(0.5)


def test_auroc_single_valued_is_nan():
    assert math.isnan(auroc([0, 0, 0], [0.1, 0.2, 0.3]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4)), min_size=2, max_size=25))
def test_auroc_matches_pairwise_count_and_trapezoid(pairs):
    y = [p[0] for p in pairs]
    s = [float(p[1]) for p in pairs]  # few distinct values → many ties
    expected = pairwise_auroc(y, s)
    got = auroc(y, s)
    if math.isnan(expected):
        assert math.isnan(got)
        return
    assert got == pytest.approx(expected, abs=1e-12)
    fpr, tpr, thr = roc_curve(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected, abs=1e-12)
    assert thr[0] == np.inf and np.all(np.diff(thr) < 0)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)


def test_per_class_auroc_skips_and_lists_single_valued_classes():
    y = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1], [0, 0, 1], [1, 1, 1]])
    s = np.array([[0.1, 0.2, 0.3], [0.4, 0.9, 0.2], [0.35, 0.1, 0.5], [0.8, 0.8, 0.9], [0.2, 0.3, 0.1],
                  [0.9, 0.3, 0.4]])  # fmt: skip
    y = np.column_stack([y, np.zeros(6, int)])
    s = np.column_stack([s, np.linspace(0, 1, 6)])
    names = ["AFIB", "LBBB", "ALL", "NONE"]
    values, skipped = per_class_auroc(y, s, names)
    assert set(values) == {"AFIB", "LBBB"}
    assert skipped == {
        "ALL": "only positives (6 positives of 6)",
        "NONE": "only negatives (0 positives of 6)",
    }
    assert values["AFIB"] == pytest.approx(pairwise_auroc(y[:, 0], s[:, 0]))
    assert values["LBBB"] == pytest.approx(pairwise_auroc(y[:, 1], s[:, 1]))
    assert macro_auroc(y, s, names) == pytest.approx((values["AFIB"] + values["LBBB"]) / 2)


def test_macro_auroc_nan_when_every_class_single_valued():
    assert math.isnan(macro_auroc(np.zeros((4, 2)), np.random.default_rng(0).random((4, 2))))


def test_dataframe_labels_name_the_classes():
    y = pd.DataFrame({"NORM": [0, 1, 0, 1], "MI": [0, 0, 0, 0]})
    values, skipped = per_class_auroc(y, [[0.1, 0.2], [0.9, 0.1], [0.2, 0.3], [0.8, 0.4]])
    assert values == {"NORM": 1.0}
    assert list(skipped) == ["MI"]


# --- max-F1 ---------------------------------------------------------------------------------------------


def test_max_f1_hand_computed():
    # t=0.8: F1 2/3; t=0.4: 1/2; t=0.35: TP 2, FP 1 → 4/5, accuracy 3/4; t=0.1: 2/3
    f1, thr, acc = max_f1([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert (f1, thr, acc) == pytest.approx((0.8, 0.35, 0.75))


def test_max_f1_never_splits_tied_scores():
    # Splitting the tie at 0.5 (positive in, negative out) would give F1 = 1; the correct best is 0.8.
    f1, thr, acc = max_f1([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1])
    assert (f1, thr, acc) == pytest.approx((0.8, 0.5, 0.75))


def test_max_f1_single_valued_is_nan():
    assert all(math.isnan(v) for v in max_f1([1, 1, 1], [0.1, 0.2, 0.3]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=25))
def test_max_f1_matches_brute_force(pairs):
    y = [p[0] for p in pairs]
    s = [float(p[1]) for p in pairs]
    if len(set(y)) < 2:
        return
    assert max_f1(y, s) == pytest.approx(brute_max_f1(y, s))


def test_macro_f1_and_accuracy_average_the_per_class_values():
    y, s = synthetic(60, 3, seed=3)
    per = [brute_max_f1(y[:, j], s[:, j]) for j in range(3)]
    assert macro_max_f1(y, s) == pytest.approx(np.mean([p[0] for p in per]))
    assert macro_accuracy(y, s) == pytest.approx(np.mean([p[2] for p in per]))


# --- bootstrap ------------------------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_contains_the_point():
    y, s = synthetic(300, 5, seed=1)
    a = bootstrap_ci(macro_auroc, y, s, n_resamples=300, seed=7)
    b = bootstrap_ci(macro_auroc, y, s, n_resamples=300, seed=7)
    c = bootstrap_ci(macro_auroc, y, s, n_resamples=300, seed=8)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.point == pytest.approx(reference_macro(y, s))
    assert a.low < a.point < a.high
    assert a.n_valid == 300


def test_bootstrap_width_shrinks_with_n():
    widths = []
    for n in (150, 3000):
        y, s = synthetic(n, 4, seed=2)
        ci = bootstrap_ci(macro_auroc, y, s, n_resamples=300, seed=0)
        widths.append(ci.high - ci.low)
    # CI width scales ~ 1/sqrt(N): 20x the records → about 4.5x narrower
    assert widths[1] < widths[0] / 3


def test_bootstrap_perfect_classifier_gives_one_one():
    y, _ = synthetic(200, 3, seed=4)
    s = y + 0.01 * np.random.default_rng(0).random(y.shape)
    ci = bootstrap_ci(macro_auroc, y, s, n_resamples=200)
    assert (ci.point, ci.low, ci.high) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("metric", [macro_auroc, macro_max_f1, macro_accuracy])
def test_batched_bootstrap_equals_per_resample_loop(metric):
    # class 2 has 2 positives in 25 records: many resamples lose them and must skip that class there only
    y, s = synthetic(25, 3, seed=5)
    y[:, 2] = 0
    y[[3, 17], 2] = 1
    fast = bootstrap_ci(metric, y, s, n_resamples=200, seed=3)
    slow = bootstrap_ci(lambda yy, ss: metric(yy, ss), y, s, n_resamples=200, seed=3)  # no .batched
    assert fast.point == pytest.approx(slow.point, abs=1e-12)
    assert fast.low == pytest.approx(slow.low, abs=1e-12)
    assert fast.high == pytest.approx(slow.high, abs=1e-12)
    assert fast.n_valid == slow.n_valid == 200


def test_bootstrap_skips_single_valued_class_within_a_resample():
    # the pairwise oracle (its own skip rule) on the very same resamples gives the same interval
    y, s = synthetic(30, 3, seed=6)
    y[:, 1] = 0
    y[4, 1] = 1
    fast = bootstrap_ci(macro_auroc, y, s, n_resamples=150, seed=11)
    oracle = bootstrap_ci(reference_macro, y, s, n_resamples=150, seed=11)
    assert (fast.low, fast.high) == pytest.approx((oracle.low, oracle.high), abs=1e-12)


def test_bootstrap_counts_only_defined_resamples():
    # one positive in 8 records: resamples without it have no AUROC at all
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    s = np.arange(8.0)[::-1]
    ci = bootstrap_ci(macro_auroc, y, s, n_resamples=400, seed=0)
    p_missing = (7 / 8) ** 8  # chance a resample misses record 0
    assert 0 < ci.n_valid < 400
    assert ci.n_valid / 400 == pytest.approx(1 - p_missing, abs=0.08)
    assert ci.point == 1.0


def test_bootstrap_bad_arguments():
    y, s = synthetic(20, 2, seed=0)
    with pytest.raises(ConfigError, match="alpha"):
        bootstrap_ci(macro_auroc, y, s, alpha=1.5)
    with pytest.raises(ConfigError, match="n_resamples"):
        bootstrap_ci(macro_auroc, y, s, n_resamples=-1)


def test_bootstrap_of_2000_records_23_classes_gives_every_resample():
    """At the size of PTB-XL's sub-class test split (its speed: benchmarks/bench_evaluation.py)."""
    y, s = synthetic(2000, 23, seed=9, decimals=2)
    res = evaluate_scores(y, s, n_boot=1000, seed=0)
    assert res.macro_auroc.n_valid == 1000
    assert res.macro_auroc.low < res.macro_auroc.point < res.macro_auroc.high


# --- retrieval ------------------------------------------------------------------------------------------


def test_retrieval_recall_hand_made_with_tie():
    sim = np.array([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.3, 0.8, 0.7]])
    # query 0: rank 1; query 1: tied with item 0 → rank 1 or 2, half a hit at k = 1, rank 1.5; query 2: item 1
    # higher → rank 2
    r = retrieval_recall(sim, k=(1, 2))
    assert r["recall@1"] == pytest.approx(1.5 / 3)
    assert r["recall@2"] == pytest.approx(1.0)
    assert r["median_rank"] == 1.5 and r["mean_rank"] == pytest.approx(4.5 / 3)
    # the other direction: query 1 (column 1) now loses to item 2 (0.8); others rank first
    rt = retrieval_recall(sim.T, k=(1,))
    assert rt["recall@1"] == pytest.approx(2 / 3)


def test_retrieval_constant_similarity_scores_chance():
    """Ties are broken at random in expectation: an encoder whose embeddings collapsed scores k/N, chance level.
    Counting ties against the query gave 0 for k < N: below chance (printed beside it), and so below a random
    encoder's continuous scores."""
    r = retrieval_recall(np.ones((10, 10)), k=(1, 5, 10), n_resamples=0)
    assert (r["recall@1"], r["recall@5"], r["recall@10"]) == pytest.approx((0.1, 0.5, 1.0))
    assert r["median_rank"] == 5.5 and r["n_items"] == 10
    # Many embeddings the same, the rest apart: tied candidates above the correct one are never counted as hits.
    sim = np.eye(6) * 0.5 + 0.5  # each query's match 1.0, the others 0.5
    sim[0, 1:4] = 1.0  # query 0 tied with 3 others
    r = retrieval_recall(sim, k=(1, 2, 4), n_resamples=0)
    assert r["recall@1"] == pytest.approx((5 + 1 / 4) / 6) and r["recall@2"] == pytest.approx((5 + 2 / 4) / 6)
    assert r["recall@4"] == pytest.approx(1.0)


def test_retrieval_recall_ci_brackets_the_point_and_collapses_when_every_query_agrees():
    rng = np.random.default_rng(3)
    sim = rng.normal(size=(40, 40)) + 1.5 * np.eye(40)  # about half the queries rank their match first
    r = retrieval_recall(sim, k=(1, 5), n_resamples=500, seed=1)
    for k in (1, 5):
        low, high = r[f"recall@{k}_ci"]
        assert low <= r[f"recall@{k}"] <= high and high - low > 0.05  # 40 queries: a wide interval
    # an oracle: the same percentile bootstrap of the per-query hits, written out
    rank = (sim >= np.diag(sim)[:, None]).sum(1)
    draws = np.random.default_rng(1).integers(0, 40, size=(500, 40))
    boot = (rank[draws] <= 1).mean(1)
    assert r["recall@1_ci"] == pytest.approx(list(np.percentile(boot, [2.5, 97.5])))
    perfect = retrieval_recall(np.eye(8) + 0.0, k=(1,))
    assert perfect["recall@1_ci"] == [1.0, 1.0]
    assert "recall@1_ci" not in retrieval_recall(sim, k=(1,), n_resamples=0)


def test_retrieval_with_distractors_and_errors():
    sim = np.eye(3, 5)
    sim[0, 4] = 2.0  # a distractor beats query 0's match
    assert retrieval_recall(sim, k=(1,))["recall@1"] == pytest.approx(2 / 3)
    with pytest.raises(ConfigError, match="only 3 items"):
        retrieval_recall(np.eye(5, 3))
    with pytest.raises(ConfigError, match="k must be positive"):
        retrieval_recall(np.eye(3), k=(0,))
    with pytest.raises(ConfigError, match="2-D"):
        retrieval_recall(np.ones(3))


# --- evaluate_scores + input errors ---------------------------------------------------------------------


def test_evaluate_scores_result_and_json_round_trip():
    y, s = synthetic(120, 3, seed=10)
    y = np.column_stack([y, np.zeros(120, int)])
    s = np.column_stack([s, np.zeros(120)])
    names = ["A", "B", "C", "EMPTY"]
    res = evaluate_scores(y, s, names, n_boot=200, seed=1)
    assert res.skipped == {"EMPTY": "only negatives (0 positives of 120)"}
    assert set(res.per_class_auroc) == {"A", "B", "C"} and res.n_positives["EMPTY"] == 0
    assert res.per_class_auroc["B"] == pytest.approx(pairwise_auroc(y[:, 1], s[:, 1]))
    assert (res.per_class_max_f1["C"], res.per_class_threshold["C"], res.per_class_accuracy["C"]) == (
        pytest.approx(brute_max_f1(y[:, 2], s[:, 2]))
    )
    assert res.macro_auroc.point == pytest.approx(reference_macro(y, s))
    assert res.macro_auroc == bootstrap_ci(macro_auroc, y[:, :3], s[:, :3], n_resamples=200, seed=1)
    for ci in (res.macro_auroc, res.macro_max_f1, res.macro_accuracy):
        assert ci.low <= ci.point <= ci.high and ci.n_valid == 200
    text = json.dumps(res.to_dict(), allow_nan=False)
    back = EvalResult.from_dict(json.loads(text))
    assert back == res


def test_evaluate_scores_without_bootstrap_and_format():
    y, s = synthetic(50, 2, seed=12)
    res = evaluate_scores(y, s, n_boot=0)
    assert res.macro_auroc.n_valid == 0 and math.isnan(res.macro_auroc.low)
    assert res.macro_auroc.format() == f"{res.macro_auroc.point:.3f}"
    assert res.to_dict()["macro_auroc"]["low"] is None
    assert CI(0.8534, 0.8321, 0.8712, 10).format() == "0.853 (0.832–0.871)"


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        (np.zeros((4, 2)), np.zeros((4, 3)), "must match"),
        (np.array([[0], [2]]), np.zeros((2, 1)), "only 0/1"),
        (np.array([[0], [np.nan]]), np.zeros((2, 1)), "only 0/1"),
        (np.array([[0, 1], [1, 0]]), np.array([[0.1, np.nan], [0.2, 0.3]]), r"non-finite .* \[1\]"),
        (np.zeros((0, 2)), np.zeros((0, 2)), "no records"),
        (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), "must be \\[N, C\\]"),
    ],
)
def test_bad_inputs_raise_config_error(y, s, match):
    with pytest.raises(ConfigError, match=match):
        evaluate_scores(y, s, n_boot=0)


def test_bad_label_names():
    y, s = synthetic(10, 2, seed=0)
    with pytest.raises(ConfigError, match="2 classes"):
        per_class_auroc(y, s, ["A"])
    with pytest.raises(ConfigError, match="unique"):
        per_class_auroc(y, s, ["A", "A"])


def test_dataframes_are_paired_by_label_and_record_name_not_position():
    """A label split orders its columns unlike a prompt set (HYP, NORM, … against NORM, MI, …); pairing by
    position scored one label's truth against another's scores and gave a wrong macro AUROC silently."""
    rng = np.random.default_rng(0)
    records = [f"r{i}" for i in range(60)]
    y = pd.DataFrame(rng.integers(0, 2, size=(60, 3)), index=records, columns=["HYP", "NORM", "MI"])
    scores = y.astype(float) + rng.normal(0, 0.3, size=y.shape)  # informative scores under the right names
    shuffled = scores.loc[records[::-1], ["NORM", "MI", "HYP"]]  # rows and columns in another order
    assert macro_auroc(y, shuffled) == pytest.approx(macro_auroc(y.values, scores.values))
    assert per_class_auroc(y, shuffled)[0] == pytest.approx(per_class_auroc(y, scores)[0])
    with pytest.raises(ConfigError, match=r"different label columns: missing from scores \[HYP\]"):
        macro_auroc(y, shuffled.rename(columns={"HYP": "LVH"}))
    with pytest.raises(ConfigError, match="different records"):
        macro_auroc(y, shuffled.rename(index={"r0": "x0"}))
    # two naming schemes (a split's ecg_id against the records' file stems): said as such
    with pytest.raises(ConfigError, match=r"name their records differently .*no record is in both"):
        macro_auroc(y.set_axis(range(100, 160)), scores)
    # a default 0..N-1 index names no records: paired by position, as arrays are
    assert macro_auroc(y, scores.reset_index(drop=True)) == pytest.approx(macro_auroc(y.values, scores.values))
    # a list of labels beside a score table is paired by position (a list's .index is a method, not names)
    assert macro_auroc(y.values.tolist(), scores) == pytest.approx(macro_auroc(y.values, scores.values))


def test_a_reordered_score_frame_beside_a_default_index_is_paired_by_label():
    """A label frame with the default 0..N-1 index and a score frame holding the same index labels in another
    order (`sort_values`, `sample`, a groupby result) were paired by position: another AUROC, no error."""
    rng = np.random.default_rng(0)
    y = pd.DataFrame(rng.integers(0, 2, size=(60, 4)), columns=list("ABCD"))
    scores = pd.DataFrame(np.round(rng.normal(size=(60, 4)) + 0.8 * y.to_numpy(), 1), columns=list("ABCD"))
    expected = macro_auroc(y.to_numpy(), scores.to_numpy())
    for reordered in (scores.sample(frac=1, random_state=1), scores.sort_values("A"), scores.iloc[::-1]):
        assert macro_auroc(y, reordered) == pytest.approx(expected)
        assert evaluate_scores(y, reordered, n_boot=0).macro_auroc.point == pytest.approx(expected)
    # the same the other way round: a shuffled label frame beside scores in 0..N-1 order
    assert macro_auroc(y.sample(frac=1, random_state=2), scores) == pytest.approx(expected)
    # a 0..N-1 index beside integer labels sharing only some of its values: ambiguous, an error
    with pytest.raises(ConfigError, match="share some records but not all"):
        macro_auroc(y, scores.set_axis(range(30, 90)))
    # arrays and a 0..N-1 index beside record names still pair by position
    assert macro_auroc(y, scores.set_axis([f"r{i}" for i in range(60)])) == pytest.approx(expected)
    assert macro_auroc(y, scores.sample(frac=1, random_state=1).to_numpy()) != pytest.approx(expected)
