"""`data build pairs` with one ECG file in two rows (audit 20, finding 5): both rows were built, with different
reports and groups, so `data.val_group=group` could put one copy in training and the other in the held-out set.
Now the later row is a listed failure naming both lines, and the first usable row is kept. Real PTB-XL sample
records copied into tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ecglang.data.pairs import build_pairs


@pytest.fixture
def base(ptbxl_dir: Path, tmp_path: Path) -> Path:
    """`recs/A` and `recs/B` (two PTB-XL records), and `link` → `recs` (a second name for the same files)."""
    (tmp_path / "recs").mkdir()
    for name, hea in zip("AB", sorted(ptbxl_dir.glob("records500/*/*_hr.hea"))[:2], strict=True):
        shutil.copy(hea.with_suffix(".dat"), tmp_path / "recs" / f"{name}.dat")
        (tmp_path / "recs" / f"{name}.hea").write_text(hea.read_text().replace(hea.stem, name))
    (tmp_path / "link").symlink_to(tmp_path / "recs")
    return tmp_path


def test_the_same_record_in_two_rows_is_a_listed_failure_naming_both_lines(base: Path) -> None:
    pairs = base / "pairs.csv"
    pairs.write_text(
        "path,report,group\n"
        "recs/A.hea,sinus rhythm,9\n"  # line 2: kept
        "recs/B,sinus bradycardia,8\n"
        "recs/A,duplicate row of the first record,5\n"  # line 4: the same file without its extension
        "./recs/../recs/A.dat,again,6\n"  # line 5: another spelling
        "link/A,through a link,7\n"  # line 6: another name, the same file
    )
    ds, report = build_pairs(pairs)
    assert ds["id"] == ["line-2", "line-3"] and ds["report"] == ["sinus rhythm.", "sinus bradycardia."]
    record = base / "recs" / "A"
    assert [(f.record_id, f.path, f.reason) for f in report.failures] == [
        (f"line-{n}", str(record), f"line {n}: duplicate record: {record} was first used in line 2 (id 'line-2'); "
         "one ECG in two pairs could be on both sides of the held-out split: give it one row")
        for n in (4, 5, 6)
    ]  # fmt: skip
    assert report.failure_counts() == {"duplicate record": 3}


def test_a_repeated_record_is_kept_where_its_first_row_was_left_out(base: Path) -> None:
    """The first row with the file has an empty report (left out): the next row with it is the one built."""
    pairs = base / "pairs.csv"
    pairs.write_text("path,report,id\nrecs/A,,a1\nrecs/A,atrial fibrillation,a2\nrecs/B,normal ecg,b\n")
    ds, report = build_pairs(pairs)
    assert ds["id"] == ["a2", "b"]
    assert [f.reason for f in report.failures] == ["line 2: empty report"]
