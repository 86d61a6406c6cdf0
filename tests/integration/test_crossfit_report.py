"""scripts/crossfit.py pools the per-record scores of eight held-out folds into one comparison of prompt sources.

The script runs in this process (its `main(argv)`; it imports `ablation` by name, as `python scripts/crossfit.py`
allows), not in a subprocess that imported torch again."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crossfit.py"
LABEL_SETS = ("ptbxl_super", "ptbxl_sub", "ptbxl_form", "ptbxl_rhythm")
SOURCES = ("names", "prompts", "knowledge", "external:CKEPE_prompt")
CODES = ("A", "B", "C")


@pytest.fixture
def crossfit(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    return importlib.import_module("crossfit")


def write_fold(
    runs: Path,
    fold: int,
    rng: np.random.Generator,
    n: int = 30,
    variant: str = "ecglang-mini",
    signal_in=("knowledge",),
) -> pd.DataFrame:
    """A fold's `scores_<set>.csv` as `ecglang evaluate --save-scores` writes it. Each fold's model puts its scores
    on its own scale (offset 10 × fold): pooled raw, fold would beat the label; the knowledge source follows
    the truth, the others are noise."""
    truth = np.random.default_rng(fold).integers(0, 2, size=(n, len(CODES)))  # the fold's records: one truth
    truth[0], truth[1] = 0, 1  # both classes in every fold
    rows = []
    for source in SOURCES:
        for side in ("model", "random"):
            signal = 2.0 if (source in signal_in and side == "model") else 0.0
            scores = 10.0 * fold + 0.1 * (signal * truth + rng.normal(size=truth.shape))
            for i in range(n):
                for j, code in enumerate(CODES):
                    rows.append((f"{fold}{i:03d}", code, truth[i, j], source, side, scores[i, j]))
    df = pd.DataFrame(rows, columns=["record_id", "label", "truth", "source", "side", "score"])
    folder = runs / f"{variant}-s0-f{fold}" / "eval"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text("{}", encoding="utf-8")  # what marks a fold as scored
    for name in LABEL_SETS:
        df.to_csv(folder / f"scores_{name}.csv", index=False)
    return df


def test_folds_are_pooled_on_one_scale_and_the_sources_compared(crossfit, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [write_fold(tmp_path, fold, rng) for fold in range(1, 9)]
    report, results = tmp_path / "CROSSFIT.md", tmp_path / "crossfit.json"
    argv = ["--runs", str(tmp_path), "--report-only", "--n-boot", "200",
            "--report", str(report), "--results", str(results)]  # fmt: skip
    assert crossfit.main(argv) == 0
    pooled = json.loads(results.read_text(encoding="utf-8"))["label_sets"]["ptbxl_form"]
    assert pooled["records"] == 8 * 30 and pooled["labels"] == 3
    assert pooled["per_fold_records"] == {str(f): 30 for f in range(1, 9)}

    # Within a fold, z-scoring keeps the order, so the pooled AUROC is the AUROC of the within-fold z-scores.
    both = pd.concat(frames)
    know = both[(both.source == "knowledge") & (both.side == "model")].copy()
    know["z"] = know.groupby([know.record_id.str[0], "label"]).score.transform(lambda s: (s - s.mean()) / s.std())
    expected = np.mean([
        mannwhitneyu(g.z[g.truth == 1], g.z[g.truth == 0]).statistic / ((g.truth == 1).sum() * (g.truth == 0).sum())
        for _, g in know.groupby("label")
    ])  # fmt: skip
    assert pooled["sources"]["knowledge"]["model"]["point"] == pytest.approx(expected, abs=1e-9)
    # Raw pooling would rank records by fold (offset 10 × fold), not by label: the z-scores undo that.
    raw = np.mean([
        mannwhitneyu(g.score[g.truth == 1], g.score[g.truth == 0]).statistic
        / ((g.truth == 1).sum() * (g.truth == 0).sum())
        for _, g in know.groupby("label")
    ])  # fmt: skip
    assert expected > 0.9 and abs(raw - expected) > 0.1

    # The sources that carry no signal sit near 0.5; knowledge beats them, paired, with a CI above 0.
    assert abs(pooled["sources"]["names"]["model"]["point"] - 0.5) < 0.1
    diff = pooled["paired"]["knowledge − names"]
    assert diff["difference"]["low"] > 0.3 and diff["verdict"] == "better"
    # noise against noise: the CI holds 0, so "not distinguishable" whatever the sign of the point difference
    noise = pooled["paired"]["prompts − names"]
    assert noise["difference"]["low"] <= 0 <= noise["difference"]["high"] and noise["verdict"] == "not distinguishable"
    text = report.read_text(encoding="utf-8")
    assert "better or equal" not in text and "`better`: CI wholly above 0" in text
    assert "| ptbxl_form | 240 | 3 (3) |" in text and "knowledge − external:CKEPE_prompt" in text


def test_variants_trained_on_the_same_folds_are_compared_record_by_record(crossfit, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for fold in range(1, 9):
        write_fold(tmp_path, fold, rng)  # ecglang-mini: signal in knowledge only
        write_fold(tmp_path, fold, rng, variant="frozen-text", signal_in=("knowledge", "prompts"))
    for fold in range(1, 8):  # a variant with a fold missing is not compared
        write_fold(tmp_path, fold, rng, variant="ssm")
    report, results = tmp_path / "CROSSFIT.md", tmp_path / "crossfit.json"
    argv = ["--runs", str(tmp_path), "--report-only", "--n-boot", "200",
            "--report", str(report), "--results", str(results)]  # fmt: skip
    assert crossfit.main(argv) == 0
    variants = json.loads(results.read_text(encoding="utf-8"))["variants"]
    prompts = variants["prompts"]["ptbxl_sub"]
    assert set(prompts) == {"ecglang-mini", "frozen-text"}
    assert prompts["frozen-text"]["− ecglang-mini"]["low"] > 0.3  # signal against noise, paired
    assert "− ecglang-mini" not in prompts["ecglang-mini"]  # no difference from itself
    know = variants["knowledge"]["ptbxl_sub"]["frozen-text"]["− ecglang-mini"]
    assert know["low"] <= 0 <= know["high"]  # both carry the signal there: no difference
    text = report.read_text(encoding="utf-8")
    assert "## Variants, `prompts` source" in text and "| ssm |" not in text
