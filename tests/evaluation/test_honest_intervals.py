"""What the evaluation's figures claim, checked where an audit found them claiming more: probe classes that were
never trained, retrieval CIs that ignored --n-boot/--seed, verdicts from a handful of resamples, macro CIs that
average over fewer classes than their point, recall@k where k covers every item, reports repeated but for
punctuation, and a labels CSV's probe parts cut by the zero-shot --limit (each test failed before its fix)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecglang.evaluation.compare import MIN_VERDICT_RESAMPLES, paired_difference, verdict
from ecglang.evaluation.config import EvaluateConfig
from ecglang.evaluation.datasets import load_labels_csv
from ecglang.evaluation.metrics import CI, evaluate_scores
from ecglang.evaluation.probe import linear_probe, probe_parts
from ecglang.evaluation.retrieval import report_key, retrieval_metrics
from ecglang.evaluation.writers import markdown_table, recall_cell


def test_a_probe_class_without_a_training_positive_is_not_scored() -> None:
    """Its head never saw a positive: its test ranking is noise (AUROC 0.833 for PTB-XL form's TAB, 0 positives
    among folds 1-7), and it counted in the probe's macro AUROC."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = (x[:, :3] > 0).astype(int)
    train_y = y[:200].copy()
    train_y[:, 2] = 0  # class C: no positive in training; positives in the test part
    res = linear_probe(x[:200], train_y, x[200:], y[200:], fractions=(1.0,), epochs=20, n_boot=0,
                       label_names=["A", "B", "C"], seed=0, num_threads=1)[1.0]  # fmt: skip
    assert set(res.per_class_auroc) == {"A", "B"}
    assert res.skipped == {"C": "not trained: only negatives (0 positives of 200) in the probe's training subset"}
    assert res.macro_auroc.point == pytest.approx(np.mean([res.per_class_auroc["A"], res.per_class_auroc["B"]]))
    assert res.label_names == ["A", "B", "C"] and res.n_positives["C"] == int(y[200:, 2].sum())


def test_a_verdict_needs_enough_resamples() -> None:
    """One resample gave the 'CI' [+0.013, +0.013] around a point of −0.013, and the verdict 'better'."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (40, 3))
    a, b = y + rng.normal(0, 1.5, (40, 3)), y + rng.normal(0, 1.5, (40, 3))
    one = paired_difference(y, a, b, n_resamples=1, seed=0)
    assert one["difference"]["point"] < 0 < one["difference"]["low"]  # what one resample gives
    assert one["verdict"] == "undefined"
    assert paired_difference(y, a, b, n_resamples=MIN_VERDICT_RESAMPLES, seed=0)["verdict"] == "not distinguishable"
    assert verdict(CI(0.07, 0.03, 0.10, MIN_VERDICT_RESAMPLES - 1)) == "undefined"
    assert verdict(CI(0.07, 0.03, 0.10, MIN_VERDICT_RESAMPLES)) == "better"


def test_macro_cis_say_over_how_many_classes_their_resamples_averaged() -> None:
    """A class with one positive drops out of the ~37 % of resamples that do not draw it: the CI then averages
    over fewer classes than its point figure, and neither results.json nor results.md said so."""
    rng = np.random.default_rng(1)
    y = np.zeros((30, 4), dtype=int)
    y[:15, 0] = y[::2, 1] = y[::3, 2] = 1
    y[7, 3] = 1  # one positive
    s = y + rng.normal(0, 0.8, y.shape)
    res = evaluate_scores(y, s, ["A", "B", "C", "RARE"], n_boot=300, seed=0)
    counts = res.meta["classes_per_resample"]
    assert counts["of"] == 4 and counts["min"] == 3 and 3.4 < counts["mean"] < 3.9  # RARE in ~63 % of them
    table = markdown_table({"set": res})
    assert "- set: 3–4 of its 4 classes (mean 3." in table and "fewer classes than their point figure" in table
    common = evaluate_scores(y[:, :3], s[:, :3], ["A", "B", "C"], n_boot=300, seed=0)
    assert common.meta["classes_per_resample"] == {"of": 3, "min": 3, "mean": 3.0}
    assert "Classes per resample" not in markdown_table({"set": common})
    assert "classes_per_resample" not in evaluate_scores(y, s, n_boot=0).meta  # no resamples, nothing to say


def test_retrieval_cis_follow_n_boot_and_seed() -> None:
    """The recall CIs were always 1,000 resamples from seed 0, under a header saying '0 resamples, seed 3'."""
    rng = np.random.default_rng(2)
    ecg, text = rng.normal(size=(30, 16)), rng.normal(size=(30, 16))
    text += 0.5 * ecg  # about half the queries rank their match first: the CIs are wide
    none = retrieval_metrics(ecg, text, n_boot=0, seed=3)
    assert not any(key.endswith("_ci") for d in none.values() for key in d)
    three, three_again = (
        retrieval_metrics(ecg, text, n_boot=200, seed=3),
        retrieval_metrics(ecg, text, n_boot=200, seed=3),
    )
    assert three == three_again and three != retrieval_metrics(ecg, text, n_boot=200, seed=4)


def test_recall_at_k_covering_every_item_is_not_shown_as_a_result() -> None:
    """With 6 pairs, recall@10 = 1.000 (1.000–1.000) for the model and the random encoder alike."""
    m = {"recall@5": 0.5, "recall@5_ci": [0.2, 0.8], "recall@10": 1.0, "recall@10_ci": [1.0, 1.0], "n_items": 6}
    assert recall_cell(m, 5) == "0.500 (0.200–0.800)" and recall_cell(m, 10) == "—"
    assert recall_cell({"recall@10": 1.0}, 10) == "1.000"  # results written before n_items existed


def test_reports_that_differ_only_in_punctuation_are_one_report() -> None:
    assert report_key("Sinus rhythm. Normal ECG.") == report_key("sinus rhythm normal ecg") == "sinus rhythm normal ecg"
    assert report_key("sinus rhythm, left axis") != report_key("sinus rhythm, right axis")


@pytest.mark.shared_data
def test_a_labels_csv_probe_draws_its_parts_from_the_whole_table(ptbxl_dir: Path, tmp_path: Path) -> None:
    """--limit (zero-shot's sample) cut the probe's parts too, and --probe-limit was ignored for a labels CSV."""
    db = pd.read_csv(ptbxl_dir / "ptbxl_database.csv")
    on_disk = {p.name.split("_")[0] for p in ptbxl_dir.glob("records500/*/*_hr.hea")}
    db = db[db["ecg_id"].map(lambda i: f"{int(i):05d}" in on_disk)]
    table = pd.DataFrame({"record": [f"{int(i):05d}_hr" for i in db["ecg_id"]], "strat_fold": db["strat_fold"],
                          "NORM": db["scp_codes"].str.contains("'NORM'").astype(int)})  # fmt: skip
    csv_path = tmp_path / "labels.csv"
    table.to_csv(csv_path, index=False)
    n_train, n_test = int((table["strat_fold"] <= 7).sum()), int((table["strat_fold"] == 8).sum())
    assert n_train > 60 and n_test > 10

    def parts(limit: int | None, probe_limit: int | None) -> tuple[int, int]:
        cfg = EvaluateConfig(model="m", labels_csv=csv_path, records=ptbxl_dir, limit=limit, probe=True,
                             probe_limit=probe_limit, probe_train_folds=[1, 2, 3, 4, 5, 6, 7],
                             probe_test_folds=[8])  # fmt: skip
        data = load_labels_csv(csv_path, ptbxl_dir, limit=limit)
        train, test = probe_parts(data, cfg)
        assert not set(train.paths) & set(test.paths)
        return len(train.record_ids), len(test.record_ids)

    assert parts(None, None) == (n_train, n_test)
    assert parts(None, 10) == (10, 10)  # was: the whole table
    assert parts(60, None) == (60, min(60, n_test))  # was: the folds of the 60 zero-shot records
    assert parts(60, 200) == (min(200, n_train), min(200, n_test))
