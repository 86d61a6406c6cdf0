"""Paired bootstrap of the difference between two prompt sources (`ecglang.evaluation.compare`)."""

from __future__ import annotations

import numpy as np

from ecglang.evaluation.compare import compare_sources, paired_difference, verdict
from ecglang.evaluation.metrics import CI, macro_auroc
from ecglang.evaluation.writers import paired_markdown


def _data(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.random((n, 3)) < 0.4
    good = y + rng.normal(0, 0.5, y.shape)  # informative scores
    bad = rng.normal(0, 1, y.shape)  # noise
    return y, good, bad


def test_identical_sources_differ_by_exactly_zero():
    y, good, _ = _data()
    res = paired_difference(y, good, good.copy(), n_resamples=300, seed=1)
    assert res["difference"]["point"] == 0.0
    assert res["difference"]["low"] == 0.0 and res["difference"]["high"] == 0.0
    assert res["difference"]["n_valid"] == 300
    assert res["point_ge_0"] and res["ci_contains_0"] and res["verdict"] == "not distinguishable"


def test_known_difference_is_the_point_and_the_paired_ci_excludes_zero():
    y, good, bad = _data()
    res = paired_difference(y, good, bad, n_resamples=500, seed=2)
    expected = macro_auroc(y, good) - macro_auroc(y, bad)
    assert res["a"] == macro_auroc(y, good) and res["b"] == macro_auroc(y, bad)
    assert abs(res["difference"]["point"] - expected) < 1e-12
    assert expected > 0.3
    assert 0 < res["difference"]["low"] <= expected <= res["difference"]["high"]
    assert not res["ci_contains_0"] and res["verdict"] == "better"
    # The other way round: the same resamples, the difference negated, and the whole CI below zero.
    rev = paired_difference(y, bad, good, n_resamples=500, seed=2)
    assert abs(rev["difference"]["low"] + res["difference"]["high"]) < 1e-12
    assert rev["verdict"] == "worse" and not rev["point_ge_0"]


def test_paired_ci_is_narrower_than_the_unpaired_gap_suggests():
    """A constant shift of one label's scores for one source changes nothing: same ranks, difference 0."""
    y, good, _ = _data()
    shifted = good.copy()
    shifted[:, 0] += 5.0
    res = paired_difference(y, good, shifted, n_resamples=200)
    assert res["difference"]["low"] == res["difference"]["high"] == 0.0


def test_the_verdict_follows_the_ci_not_the_sign_of_the_point():
    """+0.010 and −0.010 with the same CI (−0.073 to +0.074) got opposite verdicts ("better or equal" and "not
    distinguishable"): the point's sign decided, inside a CI that cannot tell the sources apart."""
    assert verdict(CI(0.010, -0.073, 0.074, 100)) == verdict(CI(-0.010, -0.073, 0.074, 100)) == "not distinguishable"
    assert verdict(CI(0.175, -0.017, 0.255, 100)) == "not distinguishable"
    assert verdict(CI(0.0, -0.01, 0.01, 100)) == "not distinguishable"
    assert verdict(CI(0.0, 0.0, 0.0, 100)) == "not distinguishable"  # identical sources
    assert verdict(CI(0.070, 0.036, 0.105, 100)) == "better"
    assert verdict(CI(-0.05, -0.09, -0.01, 100)) == "worse"
    assert verdict(CI(0.02, 0.0, 0.04, 100)) == "not distinguishable"  # a CI touching 0 holds it
    assert verdict(CI(float("nan"), float("nan"), float("nan"), 0)) == "undefined"
    assert verdict(CI(0.05, float("nan"), float("nan"), 0)) == "undefined"  # no resamples: no CI to judge by


def test_compare_sources_uses_the_labels_both_scored():
    y, good, bad = _data()
    codes = ["A", "B", "C"]
    scores = {"names": (codes, bad), "knowledge": (codes, good), "external:x": (["C", "A"], good[:, [2, 0]])}
    out = compare_sources(y, codes, scores, n_resamples=100)
    assert set(out) == {"knowledge − names", "knowledge − external:x"}
    assert out["knowledge − external:x"]["labels"] == ["A", "C"]
    assert out["knowledge − external:x"]["difference"]["point"] == 0.0
    assert out["knowledge − names"]["difference"]["point"] > 0


def test_paired_table_in_results_markdown():
    y, good, bad = _data()
    codes = ["A", "B", "C"]
    paired = compare_sources(y, codes, {"names": (codes, bad), "knowledge": (codes, good)}, n_resamples=100)
    lines = paired_markdown({"label_sets": {"set1": {"paired": paired}, "set2": {}}})
    row = next(line for line in lines if line.startswith("| set1 |"))
    assert "knowledge − names" in row and "| 3 of 3 |" in row and row.endswith("| yes | no | better |")
    # a CI holding 0: "not distinguishable", while the point column still shows the sign
    tied = compare_sources(y, codes, {"names": (codes, good + 1e-3 * bad), "knowledge": (codes, good)}, n_resamples=100)
    d = tied["knowledge − names"]["difference"]
    assert d["low"] <= 0 <= d["high"], d
    row = next(line for line in paired_markdown({"label_sets": {"s": {"paired": tied}}}) if line.startswith("| s |"))
    assert row.endswith(f"| {'yes' if d['point'] >= 0 else 'no'} | yes | not distinguishable |")
    assert paired_markdown({"label_sets": {"set2": {}}}) == []
