"""Failures joined back to their inputs (audit 19, F08): a failed file was named by its path while scored files
are named by their stem, so `ranked(stem)` of a failed record could not say why it had no scores; every in-memory
`Ecg` without an id failed as "<record>" and the scored ones were numbered in scoring order, so nobody could tell
which of the inputs failed; and `to_dict()` dropped the failed record's file. A failed file keeps its file as its
`record` (the CLI prints and writes it so: tests/cli/test_zero_shot_outputs.py); `failure_ids` gives its would-be
row id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecglang.cli.main import main as cli
from ecglang.record.ecg import Ecg
from ecglang.record.io import load_ecg

LABELS = ["atrial fibrillation", "sinus rhythm"]


@pytest.fixture
def folder(records, tmp_path) -> Path:
    """Two good records and one truncated (`bad_hr`: its signal file cut short), copied into one folder."""
    out = tmp_path / "in"
    out.mkdir()
    for rec in records:
        for suffix in (".hea", ".dat"):
            shutil.copy(rec.with_suffix(suffix), out)
    shutil.copy(records[0].with_suffix(".hea"), out / "bad_hr.hea")
    header = (out / "bad_hr.hea").read_text().replace(records[0].stem + ".dat", "bad_hr.dat")
    (out / "bad_hr.hea").write_text(header)
    (out / "bad_hr.dat").write_bytes(records[0].with_suffix(".dat").read_bytes()[:3000])
    return out


@pytest.mark.parametrize("explain", [False, True])
def test_a_failed_file_is_named_by_the_id_it_would_have_had(clf, folder, records, explain) -> None:
    result = clf(folder, labels=LABELS, progress=False, explain=explain)
    assert sorted(result.scores.index) == sorted(p.stem for p in records)
    (failure,) = result.failures
    assert result.failure_ids == ["bad_hr"] and failure.stage == "read"  # the id its row would have had
    assert Path(failure.record).resolve() == Path(failure.path).resolve() == (folder / "bad_hr.hea").resolve()
    with pytest.raises(KeyError, match=r"no scores for record 'bad_hr' \(it failed: .*truncated"):
        result.ranked("bad_hr")  # said only "no scores", as for a typo
    with pytest.raises(KeyError, match=r"\(it failed: "):
        result.ranked(failure.path)  # the file finds it too
    with pytest.raises(KeyError) as typo:
        result.ranked("bad_hx")
    assert "it failed" not in str(typo.value)


def test_to_dict_gives_each_failure_its_file(clf, folder) -> None:
    data = json.loads(json.dumps(clf(folder, labels=LABELS, progress=False).to_dict()))
    (row,) = data["failures"]
    assert list(row) == ["record", "path", "stage", "error"]  # the columns of the CLI's failures CSV
    assert row["record"] == "bad_hr" and Path(row["path"]).name == "bad_hr.hea"
    arrays = clf([np.zeros((12, 5000), np.float32)], labels=LABELS, fs=500, progress=False).to_dict()
    assert arrays["failures"][0]["record"] == "array0" and arrays["failures"][0]["path"] is None  # in memory


@pytest.mark.parametrize("explain", [False, True])
def test_in_memory_records_without_an_id_are_named_by_their_position(clf, records, explain) -> None:
    good = load_ecg(records[0])
    flat = Ecg(np.zeros((12, 5000), np.float32), 500)  # no usable lead: a processing failure
    unnamed = Ecg(good.signal, good.fs)
    result = clf([flat, unnamed, flat, good], labels=LABELS, progress=False, explain=explain)
    assert list(result.scores.index) == ["record1", good.record_id]  # was record0: numbered as scored
    assert [(f.record, f.stage) for f in result.failures] == [("record0", "process"), ("record2", "process")]
    assert result.failure_ids == ["record0", "record2"] and all(f.path == "" for f in result.failures)  # "<record>"
    with pytest.raises(KeyError, match=r"'record2' \(it failed: no usable lead"):
        result.ranked("record2")
    if explain:
        assert set(result.explanations) == {"record1", good.record_id}


def test_a_repeated_stem_is_numbered_over_every_input_scored_or_not(clf, folder, records, tmp_path) -> None:
    """Two folders hold `bad_hr`; the first one's is truncated. The second is `bad_hr#2` whether the first was
    scored or not, so that each id names one input."""
    other = tmp_path / "other"
    other.mkdir()
    for suffix in (".hea", ".dat"):
        shutil.copy(records[1].with_suffix(suffix), other / f"bad_hr{suffix}")
    header = (other / "bad_hr.hea").read_text().replace(records[1].stem + ".dat", "bad_hr.dat")
    (other / "bad_hr.hea").write_text(header)
    result = clf([folder / "bad_hr.hea", other / "bad_hr.hea"], labels=LABELS, progress=False)
    assert result.failure_ids == ["bad_hr"] and list(result.scores.index) == ["bad_hr#2"]
    assert result.source_of("bad_hr#2") == str((other / "bad_hr.hea").resolve())


def test_the_cli_failures_csv_keeps_its_layout_and_the_file_as_record(model_dir, folder, tmp_path, capsys) -> None:
    out = tmp_path / "scores.csv"
    args = ["zero-shot", str(folder), "--labels", *LABELS, "--model", str(model_dir), "--knowledge", "off"]
    assert cli([*args, "--out", str(out)]) == 1
    failures = pd.read_csv(out.with_suffix(".failures.csv"))
    assert list(failures.columns) == ["record", "path", "stage", "error"]
    assert [Path(r).name for r in failures["record"]] == ["bad_hr.hea"]
    assert failures["path"].tolist() == [str((folder / "bad_hr.hea").resolve())]
    assert "bad_hr.hea" in capsys.readouterr().err
