"""Users' own pairs, end to end: a CSV of record paths and reports → `ecglang data build pairs` → training on
`data.prepared` (the records themselves gone) → a checkpoint that `EcgLangModel.from_pretrained` loads."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ecglang.cli.main import main as cli
from ecglang.data.pairs import build_pairs, failures_as_records
from ecglang.data.ptbxl import build_ptbxl
from ecglang.encoders.modeling import EcgLangModel
from ecglang.training.config import load_config
from ecglang.training.trainer import train

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "smoke.yaml"
pytestmark = pytest.mark.shared_data


@pytest.fixture
def pairs_csv(ptbxl_dir: Path, tmp_path: Path) -> Path:
    """30 PTB-XL records copied next to a CSV of `path, report, id, group, age, sex`, plus 2 bad rows."""
    ds, _ = build_ptbxl(ptbxl_dir, progress=False)
    rows = []
    (tmp_path / "records").mkdir()
    for r in ds.select(range(30)):
        name = Path(r["path"]).name
        for ext in (".hea", ".dat"):
            shutil.copy(r["path"] + ext, tmp_path / "records" / (name + ext))
        rows.append([f"records/{name}.hea", r["report"], r["id"], str(r["patient_id"]), r["age"], r["sex"]])
    rows.append(["records/not_there.hea", "sinus rhythm. normal ecg.", "missing", "p1", 50, "M"])
    rows.append([f"records/{Path(ds[0]['path']).name}", "   ", "empty", "p2", 60, "F"])
    path = tmp_path / "pairs.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "report", "id", "group", "age", "sex"])
        w.writerows(rows)
    return path


def test_bad_rows_are_listed_not_dropped(pairs_csv: Path) -> None:
    ds, report = build_pairs(pairs_csv)
    assert len(ds) == 30 and report.n_rows == 32
    reasons = {f.record_id: f.reason for f in report.failures}
    assert set(reasons) == {"missing", "empty"}
    assert "file missing" in reasons["missing"] and "empty report" in reasons["empty"]
    assert ds[0]["path"].endswith(Path(ds[0]["path"]).name) and not ds[0]["path"].endswith(".hea")
    # The same pairs as parquet and JSONL give the same table.
    frame = pd.read_csv(pairs_csv, dtype=str, keep_default_na=False)
    frame.to_parquet(pairs_csv.parent / "p.parquet")
    frame.to_json(pairs_csv.parent / "p.jsonl", orient="records", lines=True)
    for name in ("p.parquet", "p.jsonl"):
        other, other_report = build_pairs(pairs_csv.parent / name)
        assert other["id"] == ds["id"] and other["report"] == ds["report"] and len(other_report.failures) == 2


def test_csv_of_pairs_to_a_checkpoint(pairs_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    prepared = tmp_path / "prepared"
    assert cli(["data", "build", "pairs", str(pairs_csv), "--out", str(prepared), "--model", "ecglang-small"]) == 1
    printed = capsys.readouterr()
    assert "2 record(s) left out of the dataset" in printed.err and "missing: line 32: file missing" in printed.err
    assert "30 ok, 0 failed" in printed.out
    failures = failures_as_records(prepared / "build_failures.csv", prepared / "cache_failures.csv")
    assert sorted((f.record, f.stage) for f in failures) == [("empty", "build"), ("missing", "build")]
    shutil.rmtree(pairs_csv.parent / "records")  # training reads the prepared cache only, never the records

    cfg = load_config(SMOKE, [
        f"data.prepared={prepared}", "data.limit=null", "data.val_group=group", "schedule.max_steps=2",
        "train.eval_every=2", "train.checkpoint_every=2",
    ])  # fmt: skip
    out = tmp_path / "run"
    result = train(cfg, output_dir=out)
    assert result.steps == 2
    assert result.failed == []  # the build listed its failures and exited 1; training does not count them again
    excluded = pd.read_csv(out / "excluded_records.csv", dtype=str)
    assert {"missing", "empty"} <= set(excluded.iloc[:, 0])
    model = EcgLangModel.from_pretrained(out / "final")
    assert model.config.projection["dim"] == 32


def test_a_run_that_could_not_read_records_lists_them_last_and_exits_1(
    pairs_csv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch run goes on past bad records, lists them at the end and exits non-zero: `ecglang pretrain` on pairs
    built in the run listed them only in excluded_records.csv and an INFO count, and exited 0."""
    import logging

    truncated = sorted((pairs_csv.parent / "records").glob("*.dat"))[0]
    truncated.write_bytes(truncated.read_bytes()[:1000])  # present, so the builder passes it; the cache cannot
    args = [
        "pretrain", "--config", str(SMOKE), "--output", str(tmp_path / "run"), "data.builder=pairs",
        f"data.root={pairs_csv}", "data.limit=null", "data.val_group=group", "schedule.max_steps=1",
        "train.eval_every=1", "train.checkpoint_every=1",
    ]  # fmt: skip
    with caplog.at_level(logging.INFO):
        assert cli(args) == 1
    assert (tmp_path / "run" / "final").is_dir()  # trained and saved without them
    last = caplog.records[-1]
    assert last.levelno == logging.ERROR
    said = last.getMessage()
    assert said.startswith("3 record(s) could not be used") and "excluded_records.csv" in said
    assert "\n  missing: " in said and "\n  empty: " in said and f"truncated signal file {truncated.name}" in said
