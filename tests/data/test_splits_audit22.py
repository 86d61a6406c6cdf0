"""Label columns of MERL split CSVs with a blank or non-0/1 cell (audit 22, finding 1).

One empty cell made pandas read the column as floats; `infer_label_columns` took integer columns only, so the
class dropped out of every figure of `ecglang evaluate` without a word. Now such a column is an `EcgReadError`
naming the file, the column and the lines, as the labels-CSV loader already did. Real published split files,
copied into tmp_path and edited there."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecglang.data.registry import LABEL_SPLIT_FILES, METADATA_COLUMNS, SPLIT_PARTS
from ecglang.data.splits import load_label_split
from ecglang.errors import EcgReadError

SUPER_TRAIN = "ptbxl/super_class/ptbxl_super_class_train.csv"


def _edited_split(shared_data: Path, tmp_path: Path, edits: dict[str, str], column: str = "HYP") -> tuple[Path, dict]:
    """A split root holding the super-class train CSV with `column` set to `edits[ecg_id]` in those rows, edited as
    text (a spreadsheet round-trip); returns the root and ecg_id → its 1-based line number in the file."""
    text = (shared_data / "merl" / "data_split" / SUPER_TRAIN).read_text()
    rows = list(csv.reader(text.splitlines()))
    assert len(rows) == len(text.splitlines())  # one line per row: row k is line k + 1
    at = rows[0].index(column)
    numbers = {}
    for k, cells in enumerate(rows):
        if cells[0] in edits:
            cells[at] = edits[cells[0]]
            numbers[cells[0]] = k + 1
    assert set(numbers) == set(edits)
    out = tmp_path / "split" / SUPER_TRAIN
    out.parent.mkdir(parents=True)
    with out.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return tmp_path / "split", numbers


def _ids(shared_data: Path, positions: list[int]) -> list[str]:
    frame = pd.read_csv(shared_data / "merl" / "data_split" / SUPER_TRAIN)
    return [str(frame["ecg_id"].iloc[p]) for p in positions]


def test_one_empty_label_cell_is_an_error_naming_the_file_column_and_line(shared_data, tmp_path) -> None:
    """The auditor's case: HYP blank in the row of ecg_id 21836. HYP was silently no label column."""
    root, line = _edited_split(shared_data, tmp_path, {"21836": ""})
    with pytest.raises(EcgReadError) as err:
        load_label_split(root, "ptbxl_super_class", "train")
    text = str(err.value)
    assert SUPER_TRAIN in text
    assert f"column 'HYP' holds 0/1 labels but line {line['21836']} holds an empty cell; fix the value" in text


def test_every_bad_cell_of_a_label_column_is_counted_and_the_first_named(shared_data, tmp_path) -> None:
    """A 2, a 'yes' and blanks in one column: the first three lines named with what they hold, the rest counted."""
    ids = _ids(shared_data, [9000, 100, 17000, 5000, 12000])  # not in file order
    root, line = _edited_split(shared_data, tmp_path, dict(zip(ids, ["2", "", "yes", "", ""], strict=True)))
    with pytest.raises(EcgReadError) as err:
        load_label_split(root, "ptbxl_super", "train")
    first = sorted(ids, key=line.get)
    shown = dict(zip(ids, ["'2'", "an empty cell", "'yes'", "an empty cell", "an empty cell"], strict=True))
    expected = ", ".join(f"line {line[i]} holds {shown[i]}" for i in first[:3])
    expected += f" and 2 more lines (the last: {line[first[-1]]}) hold neither 0 nor 1; fix the values"
    assert f"column 'HYP' holds 0/1 labels but {expected}" in str(err.value)


def test_a_float_one_is_the_label_one_as_in_a_labels_csv(shared_data, tmp_path) -> None:
    """A column re-saved as 1.0/0.0 holds 0/1 labels: kept (it was dropped, being float), read as int8."""
    one, zero = _ids(shared_data, [10, 20])
    root, _ = _edited_split(shared_data, tmp_path, {one: "1.0", zero: "0.0"})
    split = load_label_split(root, "ptbxl_super", "train")
    assert "HYP" in split.label_columns
    row = {str(k): i for i, k in enumerate(split.frame["ecg_id"])}
    hyp = split.labels[:, split.label_columns.index("HYP")]
    assert hyp.dtype == np.int8 and hyp[row[one]] == 1 and hyp[row[zero]] == 0
    original = pd.read_csv(shared_data / "merl" / "data_split" / SUPER_TRAIN)["HYP"].to_numpy()
    assert hyp.sum() == original.sum() + 1 - original[10] - original[20]


def test_a_column_the_prompt_set_names_is_refused_even_when_mostly_blank(shared_data, tmp_path) -> None:
    """A label column that most rows leave blank is not "mostly 0/1", but the caller's prompt set names it
    (`label_names`): an error, not a class that quietly has no column."""
    frame = pd.read_csv(shared_data / "merl" / "data_split" / SUPER_TRAIN)
    blanks = {str(k): "" for k in frame["ecg_id"].iloc[: int(len(frame) * 0.6)]}
    root, _ = _edited_split(shared_data, tmp_path, blanks)
    assert "HYP" not in load_label_split(root, "ptbxl_super", "train").label_columns  # no prompt set: not a label
    with pytest.raises(EcgReadError, match=r"column 'HYP' holds 0/1 labels but line 2 holds an empty cell, line 3"):
        load_label_split(root, "ptbxl_super", "train", label_names=["NORM", "MI", "STTC", "CD", "HYP"])


@pytest.mark.parametrize("task", list(LABEL_SPLIT_FILES))
def test_the_published_splits_keep_their_label_columns(shared_data, task) -> None:
    """No published split file holds a blank or other cell in a label column (icbeb's blanks are in `age`, which
    is metadata): every part loads, with the label columns of the old rule (integer columns of 0/1 only)."""
    for part in SPLIT_PARTS:
        path = shared_data / "merl" / "data_split" / LABEL_SPLIT_FILES[task].format(part=part)
        raw = pd.read_csv(path)
        old = [c for c in raw.columns if c not in METADATA_COLUMNS and pd.api.types.is_integer_dtype(raw[c])
               and set(np.unique(raw[c]).tolist()) <= {0, 1}]  # fmt: skip
        split = load_label_split(shared_data / "merl" / "data_split", task, part, label_names=old)
        assert split.label_columns == old, path
        assert np.array_equal(split.labels, raw[old].to_numpy(dtype=np.int8))
        blank = [c for c in raw.columns if raw[c].isna().any()]
        assert set(blank) <= {"age"}, (path, blank)
