"""scripts/ablation.py resumes from its results file and writes the table with the seed spread and its status.

The script runs in this process (its `main(argv)`), imported as `python scripts/ablation.py` would find it: a
subprocess per report imported torch again each time (~10 s each on 2 cores)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ablation.py"
LABEL_SETS = ("ptbxl_super", "ptbxl_sub", "ptbxl_form", "ptbxl_rhythm")


@pytest.fixture(autouse=True)
def scripts_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # `report_for` imports the script as a module


def row(variant: str, seed: int, point: float) -> dict:
    ci = {"point": point, "low": point - 0.1, "high": point + 0.1, "n_valid": 1000}
    rnd = {"point": 0.5, "low": 0.4, "high": 0.6, "n_valid": 1000}
    out = {"variant": variant, "seed": seed, "max_steps": 100, "train_s": 60.0}
    for name in LABEL_SETS:
        out[name] = {"model": ci, "random": rnd, "probe": {"model": ci, "random": rnd}}
    recall = {"e2r@1": 0.2, "e2r@5": 0.5}
    out["retrieval"] = {"model": recall, "random": recall}
    return out


def test_report_only_gives_means_spreads_and_says_what_is_missing(tmp_path: Path) -> None:
    rows = [row("ecglang-mini", s, p) for s, p in ((0, 0.70), (1, 0.74), (2, 0.72))] + [row("ssm", 0, 0.75)]
    text = report_for(tmp_path, rows)
    assert text.count("| ecglang-mini | ") == 4  # three runs and the mean line
    assert "| ecglang-mini | 3 | 0.720 ± 0.040 |" in text  # mean of the seeds and their max − min
    assert "**Incomplete:** resnet-baseline (0 seed(s)), neighbourhood (0 seed(s)), lead-group (0 seed(s))," in text
    assert "no default is chosen" in text
    # the same figures drawn: a PNG beside the table, linked from it
    assert (tmp_path / "ABLATION.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "seed](ABLATION.png)" in text


def test_runs_at_another_schedule_are_never_mixed_into_the_table(tmp_path: Path) -> None:
    short = [row("ecglang-mini", s, p) for s, p in ((0, 0.70), (1, 0.74), (2, 0.72))]
    longer = [{**row("ecglang-mini", 0, 0.90), "max_steps": 300}, {**row("ssm", 0, 0.95), "max_steps": 300}]
    text = report_for(tmp_path, short + longer)
    tables = text.split("## Notes")[0]
    assert "| ecglang-mini | 3 | 0.720 ± 0.040 |" in tables and "0.900" not in tables and "| ssm |" not in tables
    assert "| 300 |" not in tables
    assert "300 steps: ecglang-mini 1 seed(s) 0.900 ± 0.000; ssm 1 seed(s) 0.950 ± 0.000" in text


def test_knowledge_scores_are_a_supplementary_table_that_decides_nothing(tmp_path: Path) -> None:
    base = {"ecglang-mini": (0.70, 0.72, 0.74), "resnet-baseline": (0.62, 0.63, 0.64)}
    rows = every_variant(base)
    # ssm would win by far with knowledge, but the decision reads the prompts source only
    scored = [r if r["variant"] != "ssm" else row("ssm", 0, 0.95) for r in rows]
    knowledge = [{"variant": r["variant"], "seed": r["seed"], "max_steps": 100,
                  "knowledge": {n: r[n] for n in LABEL_SETS}} for r in scored]  # fmt: skip
    text = report_for(tmp_path, rows, knowledge)
    assert "**Default: ecglang-mini stays.**" in text
    section = text.split("## With knowledge")[1]
    assert "| ecglang-mini | 3 | 0.720 ± 0.040" in section and "| ssm | 1 | 0.950 ± 0.000" in section
    assert "| 0.950 ± 0.000 | 0.500 |" in section  # the random encoder's mean beside it


def report_for(tmp_path: Path, rows: list[dict], knowledge: list[dict] = ()) -> str:
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "knowledge.jsonl").write_text("".join(json.dumps(r) + "\n" for r in knowledge), encoding="utf-8")
    report = tmp_path / "ABLATION.md"
    argv = ["--runs", str(tmp_path), "--results", str(tmp_path / "results.jsonl"),
            "--knowledge-results", str(tmp_path / "knowledge.jsonl"), "--report-only",
            "--report", str(report)]  # fmt: skip
    assert importlib.import_module("ablation").main(argv) == 0
    return report.read_text(encoding="utf-8")


def every_variant(points: dict[str, tuple[float, ...]]) -> list[dict]:
    recipe = yaml.safe_load((SCRIPT.parents[1] / "configs" / "ablation.yaml").read_text(encoding="utf-8"))
    variants = list(recipe["variants"])  # every variant of the recipe: the decision waits for all of them
    return [row(v, s, p) for v in variants for s, p in enumerate(points.get(v, (0.60,)))]


def test_a_variant_becomes_default_only_past_the_spread_between_seeds(tmp_path: Path) -> None:
    base = {"ecglang-mini": (0.70, 0.72, 0.74), "resnet-baseline": (0.62, 0.63, 0.64)}
    # ssm's mean (0.75) beats ecglang-mini's (0.72) by 0.03: less than the spread (0.04) → mini stays
    text = report_for(tmp_path, every_variant(base | {"ssm": (0.73, 0.75, 0.77)}))
    assert "**Default: ecglang-mini stays.**" in text and "ssm: 3+ seeds" in text
    # 0.80 vs 0.72 with spreads 0.02 and 0.04: a real difference → ssm is the default
    text = report_for(tmp_path, every_variant(base | {"ssm": (0.79, 0.80, 0.81)}))
    assert "**Default: ssm**" in text
    # beside the rule, the difference of means with its Welch interval over seeds (0.08; by hand: se 0.0129,
    # 2.94 degrees of freedom, t 3.2); a variant with one seed has no interval
    assert "| ssm | 3 | +0.080 (+0.038..+0.122) | +0.170 (" in text
    assert "| neighbourhood |" not in text.split("(supplementary)")[1]
    # one seed that comes close is flagged for more seeds, never chosen
    text = report_for(tmp_path, every_variant(base | {"ssm": (0.90,)}))
    assert (
        "ssm: 1 seed(s), mean 0.900 — within ecglang-mini's spread or above it: needs three seeds" in text
        and "**Default: ecglang-mini stays.**" in text
    )
    assert "ssm score at or above ecglang-mini's mean so far: the default may change." in text


def test_seed_by_seed_differences_pair_runs_of_the_same_seed(tmp_path: Path) -> None:
    """A variant that is 0.01 better at every seed while the seeds differ by 0.04: the spread rule cannot see
    it, the paired table shows +0.010 at each seed and an interval of one point (no spread in the differences)."""
    base = {"ecglang-mini": (0.70, 0.74, 0.72), "resnet-baseline": (0.62, 0.66, 0.60)}
    rows = every_variant(base)
    rows = [r for r in rows if r["variant"] != "ssm"]
    rows += [row("ssm", s, p + 0.01) for s, p in enumerate(base["ecglang-mini"])]
    text = report_for(tmp_path, rows)
    section = text.split("## Seed by seed (supplementary)")[1].split("## ")[0]
    (ssm,) = [line for line in section.splitlines() if line.startswith("| ssm |")]
    assert "s0 +0.010, s1 +0.010, s2 +0.010 | +0.010 (+0.010..+0.010)" in ssm
    assert "s0 +0.090, s1 +0.090, s2 +0.130 | +0.103" in ssm  # against the ResNet, seed by seed
    assert "**Default: ecglang-mini stays.**" in text  # it decides nothing
    assert "| neighbourhood |" not in section  # one seed: nothing to pair
