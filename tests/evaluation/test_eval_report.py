"""Report writers: JSON trees, Markdown tables, ROC and probe figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from ecglang.errors import ConfigError
from ecglang.evaluation.metrics import CI, EvalResult, evaluate_scores
from ecglang.evaluation.writers import markdown_table, plot_probe_curve, plot_roc_curves, write_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scores_for(y: np.ndarray, signal: float, seed: int) -> np.ndarray:
    return signal * y + np.random.default_rng(seed).normal(size=y.shape)


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 5)) < [0.4, 0.3, 0.2, 0.1, 0.05]).astype(int)
    y[:, 4] = 0  # a class absent from the evaluated records
    return y, ["NORM", "MI", "STTC", "CD", "WPW"]


@pytest.fixture(scope="module")
def results(labels):
    y, names = labels
    return {
        src: (evaluate_scores(y, scores_for(y, 2.0, i), names, n_boot=100),
              evaluate_scores(y, scores_for(y, 0.0, 10 + i), names, n_boot=100))
        for i, src in enumerate(["class names", "clinical prompts"])
    }  # fmt: skip


def test_markdown_table_nested_with_baseline(results):
    model = {"superdiagnostic": {src: r[0] for src, r in results.items()}}
    base = {"superdiagnostic": {src: r[1] for src, r in results.items()}}
    model["rhythm"] = {"class names": results["class names"][0]}  # a missing cell
    md = markdown_table(model, base)
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| label set"))
    assert header.split(" | ")[1:] == [
        "class names · model", "class names · random encoder",
        "clinical prompts · model", "clinical prompts · random encoder |",
    ]  # fmt: skip
    assert "macro AUROC (95 % CI)" in md
    sup = next(line for line in lines if line.startswith("| superdiagnostic"))
    for m, b in results.values():
        assert m.macro_auroc.format() in sup and b.macro_auroc.format() in sup
        assert f"{m.macro_auroc.point:.3f} ({m.macro_auroc.low:.3f}–{m.macro_auroc.high:.3f})" in sup
    rhythm = next(line for line in lines if line.startswith("| rhythm"))
    assert rhythm.count("—") == 3
    assert "- superdiagnostic: WPW (only negatives (0 positives of 200))" in md
    assert "- rhythm: WPW" in md
    # a trained model beats the no-signal baseline, as the numbers say
    assert results["class names"][0].macro_auroc.low > results["class names"][1].macro_auroc.high


def test_markdown_table_flat_and_other_metric(results):
    m, b = results["class names"]
    md = markdown_table({"PTB-XL": m}, {"PTB-XL": b}, metric="macro_max_f1", footnotes=False)
    assert "| label set | model | random encoder |" in md
    assert m.macro_max_f1.format() in md and b.macro_max_f1.format() in md
    assert "macro max-F1" in md and "skipped" not in md
    md2 = markdown_table({"retrieval R@1": CI(0.4123, 0.39, 0.43, 100), "plain": 0.5})
    assert "0.412 (0.390–0.430)" in md2 and "| plain | 0.500 |" in md2
    with pytest.raises(ConfigError, match="metric"):
        markdown_table({"x": m}, metric="auprc")
    with pytest.raises(ConfigError, match="both be flat or both nested"):
        markdown_table({"x": m}, {"x": {"a": b}})


def test_write_json_round_trip(tmp_path, results):
    m, b = results["clinical prompts"]
    tree = {
        "zero_shot": {"model": m, "random encoder": b},
        "probe": {0.01: m, 1.0: b},
        "retrieval": {"recall@1": np.float32(0.25), "ranks": np.arange(3), "nan": math.nan},
        "checkpoint": Path("/tmp/x"),
    }
    out = write_json(tree, tmp_path / "deep" / "results.json")
    data = json.loads(out.read_text())
    assert EvalResult.from_dict(data["zero_shot"]["model"]) == m
    assert set(data["probe"]) == {"0.01", "1.0"}
    assert data["retrieval"] == {"recall@1": 0.25, "ranks": [0, 1, 2], "nan": None}
    assert data["checkpoint"] == "/tmp/x"
    assert not list(out.parent.glob(".*.tmp"))
    with pytest.raises(ConfigError, match=r"\$\.bad"):
        write_json({"bad": object()}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def check_png(path: Path, min_bytes: int = 8000) -> np.ndarray:
    assert path.is_file()
    raw = path.read_bytes()
    assert raw[:8] == PNG_MAGIC
    assert len(raw) > min_bytes
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    assert img[..., :3].std() > 0.05  # not a blank canvas
    return img


def test_plot_roc_curves(tmp_path, labels):
    y, names = labels
    out = plot_roc_curves(
        y,
        {"model": scores_for(y, 2.0, 1), "random encoder": scores_for(y, 0.0, 2)},
        names,
        tmp_path / "figs" / "roc_superdiagnostic.png",
        title="PTB-XL superdiagnostic",
    )
    img = check_png(out, min_bytes=20000)
    assert img.shape[1] > img.shape[0] * 0.8  # a grid, not one tall column
    with pytest.raises(ConfigError, match="source 'bad'"):
        plot_roc_curves(y, {"bad": np.zeros((3, 5))}, names, tmp_path / "x.png")


def test_plot_probe_curve(tmp_path, results):
    m, b = results["class names"]
    curves = {"model": {0.01: b, 0.1: m, 1.0: m}, "random encoder": {0.01: b, 0.1: b, 1.0: b}}
    check_png(plot_probe_curve(curves, tmp_path / "probe.png", title="PTB-XL linear probe"))
    single = plot_probe_curve({0.1: m.macro_auroc, 1.0: CI(0.9, math.nan, math.nan, 0)}, tmp_path / "one.png")
    check_png(single)
    with pytest.raises(ConfigError, match="fractions"):
        plot_probe_curve({"model": {"ten": m}}, tmp_path / "bad.png")


def test_reusing_an_output_folder_removes_the_earlier_runs_files_only(tmp_path: Path) -> None:
    """`evaluate --out DIR` run twice left the first run's `roc_<set>.png` and score tables beside the second
    run's results, as if they were its own. The files the earlier results.json lists go; nothing else does."""
    import json

    from ecglang.evaluation.writers import remove_previous_outputs

    for name in ("roc_ptbxl_form.png", "scores_ptbxl_form.csv", "notes.txt", "keep.csv"):
        (tmp_path / name).write_text("x")
    (tmp_path.parent / "outside.txt").write_text("x")
    outputs = {"roc_ptbxl_form": "roc_ptbxl_form.png", "scores": "scores_ptbxl_form.csv", "bad": "../outside.txt"}
    (tmp_path / "results.json").write_text(json.dumps({"outputs": outputs}))
    remove_previous_outputs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.csv", "notes.txt", "results.json"]
    assert (tmp_path.parent / "outside.txt").exists()  # a name with a path is never followed
    (tmp_path / "results.json").write_text("[not json")
    remove_previous_outputs(tmp_path)  # not one of ours: nothing happens
    assert (tmp_path / "keep.csv").exists()


def _run_with_scores(label_set: str):
    """A minimal `EvaluationRun` whose only output besides the fixed files is `scores_<label_set>.csv`."""
    from ecglang.evaluation.results import EvaluationRun, RecordScores

    tree = {
        "protocol": {"part": "test", "preprocess": "default", "score": "cosine", "ci": "95 %", "n_boot": 0,
                     "seed": 0, "limit": None, "leads": "all"},
        "model": {"source": "m", "ecg_tower": {"type": "t"}},
        "random_baseline": {"random_seed": 0},
        "label_sets": {},
    }  # fmt: skip
    scores = RecordScores(["r1"], ["A"], np.array([[1]], np.int8), {("names", "model"): (["A"], np.array([[0.5]]))})
    return EvaluationRun(tree, [], {}, {}, {}, {label_set: scores})


def test_reusing_an_output_folder_names_the_earlier_files_it_removes(tmp_path: Path, caplog) -> None:
    """A second `evaluate --out DIR` for another label set silently deleted the first run's scores table."""
    import logging

    from ecglang.evaluation.writers import write_outputs

    write_outputs(_run_with_scores("first"), tmp_path)
    (tmp_path / "mine.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="ecglang.evaluation.writers"):
        write_outputs(_run_with_scores("second"), tmp_path)
    assert not (tmp_path / "scores_first.csv").exists() and (tmp_path / "scores_second.csv").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "removed 1 file(s) of the earlier evaluation" in warnings[0]
    assert "scores_first.csv" in warnings[0] and "results.md" not in warnings[0]  # rewritten files go unsaid
    assert (tmp_path / "mine.txt").exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ecglang.evaluation.writers"):
        write_outputs(_run_with_scores("second"), tmp_path)  # the same outputs again: nothing to say
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
