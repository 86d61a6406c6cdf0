"""Hostile rows of `ptbxl_database.csv`: each one is a listed build failure with its reason, the other rows are
built, and `ecglang data build` exits 1. The roots are small copies of the real sample (the CSV's first rows,
`scp_statements.csv` and a few records), built in tmp_path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ecglang.cli.main import main as cli
from ecglang.data.ptbxl import build_ptbxl

pytestmark = pytest.mark.shared_data


def _copy_record(sample: Path, root: Path, rel: str) -> None:
    for suffix in (".hea", ".dat"):
        target = root / (rel + suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample / (rel + suffix), target)


def _root(sample: Path, root: Path, n_rows: int, records: int | None = None) -> pd.DataFrame:
    """`root` with `scp_statements.csv` and the records of the sample CSV's first `records` rows; returns the
    CSV's first `n_rows` rows (as read, ids and folds numeric) for the test to edit and `_write`."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sample / "scp_statements.csv", root / "scp_statements.csv")
    db = pd.read_csv(sample / "ptbxl_database.csv").head(n_rows).copy()
    for rel in db["filename_hr"].head(n_rows if records is None else records):
        _copy_record(sample, root, rel)
    return db


def _write(db: pd.DataFrame, root: Path) -> None:
    db.to_csv(root / "ptbxl_database.csv", index=False)


def test_bad_rows_are_listed_and_the_rest_is_built(ptbxl_dir: Path, tmp_path: Path, capsys) -> None:
    root = (tmp_path / "ptbxl").resolve()
    db = _root(ptbxl_dir, root, 7)
    db[["ecg_id", "strat_fold"]] = db[["ecg_id", "strat_fold"]].astype(object)
    db.loc[1, "ecg_id"] = "abc"  # row 2: not an integer (was a ValueError traceback ending the build)
    db.loc[2, "strat_fold"] = "1e400"  # row 3: read as inf (was an OverflowError ending the build)
    db.loc[3, "ecg_id"] = 1  # row 4: the id of row 1 again (was kept silently: two records with one id)
    # Row 5 points at a real record outside the root (was read silently).
    _copy_record(ptbxl_dir, tmp_path / "outside", "records500/00000/00005_hr")
    db.loc[4, "filename_hr"] = "../outside/records500/00000/00005_hr"
    db.loc[5, "scp_codes"] = "{'NORM': 100.0, 'X': '" + "A" * 200_000 + "'}"  # row 6: 200 KB cell
    _write(db, root)

    ds, report = build_ptbxl(root, progress=False)
    assert ds["id"] == ["1", "7"]
    assert report.n_rows == 7 and report.n_records == 2 and len(report.failures) == 5
    reasons = {f.record_id: f.reason for f in report.failures}
    assert list(reasons) == ["row 2", "3", "1", "5", "6"]
    assert reasons["row 2"] == "bad ecg_id: 'abc' in data row 2 is not an integer"
    assert reasons["3"].startswith("bad strat_fold: inf is not an integer")
    assert reasons["1"] == "duplicate ecg_id: 1 in data row 4 was first used in data row 1"
    assert reasons["5"].startswith("path outside the root: filename_hr '../outside/")
    assert str(tmp_path / "outside" / "records500") in reasons["5"]
    assert reasons["6"].startswith("bad scp_codes: \"{'NORM': 100.0, 'X': 'AAA")
    assert reasons["6"].endswith("… (200024 characters) is over the limit of 10000 characters")
    assert all(len(f.reason) < 1000 and len(f.path) < 1000 for f in report.failures)
    assert report.failure_counts() == {
        "bad ecg_id": 1,
        "bad strat_fold": 1,
        "duplicate ecg_id": 1,
        "path outside the root": 1,
        "bad scp_codes": 1,
    }

    # The CLI: the same five listed on stderr and in build_failures.csv, exit status 1, no traceback.
    out = tmp_path / "built"
    assert cli(["data", "build", "ptbxl", str(root), "--out", str(out), "--no-cache"]) == 1
    captured = capsys.readouterr()
    assert "7 metadata rows → 2 records, 5 left out" in captured.out
    assert "5 record(s) left out of the dataset" in captured.err and "row 2: bad ecg_id" in captured.err
    assert "Traceback" not in captured.err and "A" * 300 not in captured.err
    listed = pd.read_csv(out / "build_failures.csv", dtype=str, keep_default_na=False)
    assert listed["record_id"].tolist() == ["row 2", "3", "1", "5", "6"]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("strat_fold", "abc", "bad strat_fold: 'abc' is not an integer"),  # was fold -1, silently
        ("strat_fold", "2.5", "bad strat_fold: 2.5 is not an integer"),  # was fold 2, silently
        ("strat_fold", "99999999999", "bad strat_fold: 99999999999 is outside"),  # int32 column: crashed the batch
        ("patient_id", "1e400", "bad patient_id: inf is not an integer"),  # was an OverflowError
        ("patient_id", "abc", "bad patient_id: 'abc' is not an integer"),  # was patient_id None, silently
        ("ecg_id", "", "bad ecg_id: nan in data row 2 is empty"),
        ("scp_codes", "{'NORM': [100.0]}", "bad scp_codes: \"{'NORM': [100.0]}\" gives code 'NORM' the likelihood"),
        ("scp_codes", "{'NORM': 1e400}", "not a finite number"),  # was stored as inf
        ("scp_codes", "['NORM']", "is a list, not a dict"),
        ("filename_hr", "/etc/passwd", "path outside the root: filename_hr '/etc/passwd'"),
        ("filename_hr", "records500/../../x", "path outside the root"),
    ],
)
def test_one_bad_cell_is_one_listed_failure(
    ptbxl_dir: Path, tmp_path: Path, column: str, value: str, reason: str
) -> None:
    root = (tmp_path / "ptbxl").resolve()
    db = _root(ptbxl_dir, root, 3).astype(str)  # cells as text, the way a hand-edited CSV has them
    db.loc[1, column] = value
    _write(db, root)
    ds, report = build_ptbxl(root, progress=False)
    assert ds["id"] == ["1", "3"]
    assert [f.record_id for f in report.failures] == ["row 2" if column == "ecg_id" else "2"]
    assert reason in report.failures[0].reason


def test_integer_cells_written_as_floats_and_symlinked_record_folders_are_fine(ptbxl_dir: Path, tmp_path: Path):
    """PTB-XL stores patient_id as `15709.0`; and records500/ may be a symlink to another disk: the root check
    is on the file name as written, not on where a symlink leads."""
    root = (tmp_path / "ptbxl").resolve()
    db = _root(ptbxl_dir, root, 3, records=0)
    os.symlink(ptbxl_dir / "records500", root / "records500")
    db["strat_fold"] = db["strat_fold"].astype(float)
    _write(db, root)
    ds, report = build_ptbxl(root, progress=False)
    assert report.failures == [] and ds["id"] == ["1", "2", "3"]
    assert ds["fold"] == [3, 2, 5] and ds["patient_id"] == [15709, 13243, 20372]
    assert ds["path"][0] == str(root / "records500/00000/00001_hr")


def test_duplicates_in_other_folds_still_claim_their_id(ptbxl_dir: Path, tmp_path: Path) -> None:
    """Building only some folds must not keep a record whose id another fold already uses (split leakage)."""
    root = (tmp_path / "ptbxl").resolve()
    db = _root(ptbxl_dir, root, 3)
    db.loc[1, "ecg_id"] = 1  # row 2 (fold 2) repeats row 1 (fold 3)
    _write(db, root)
    ds, report = build_ptbxl(root, folds=[2], progress=False)
    assert len(ds) == 0 and report.notes["n_other_folds"] == 2
    assert [(f.record_id, f.reason) for f in report.failures] == [
        ("1", "duplicate ecg_id: 1 in data row 2 was first used in data row 1")
    ]


def test_a_first_row_with_one_cell_too_many_is_an_error_not_a_shifted_table(ptbxl_dir: Path, tmp_path: Path) -> None:
    """pandas took the first column as the index when the first data row had one cell more than the header, and
    read every column one to the left (here: no ecg_id column at all); now the table is refused, naming it."""
    from ecglang.errors import EcgReadError

    root = (tmp_path / "ptbxl").resolve()
    _write(_root(ptbxl_dir, root, 3), root)
    lines = (root / "ptbxl_database.csv").read_text(encoding="utf-8").splitlines()
    lines[1] += ",extra"
    (root / "ptbxl_database.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(EcgReadError) as info:
        build_ptbxl(root, progress=False)
    assert info.value.path == str(root / "ptbxl_database.csv")
    assert "a row has more cells than the header" in info.value.problem
