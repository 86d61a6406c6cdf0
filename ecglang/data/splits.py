"""The published label splits (MERL `data_split`): one CSV per task and part, multi-hot label columns and a
record key that joins them with the builders' `id`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecglang.data.registry import LABEL_SPLIT_FILES, METADATA_COLUMNS, SPLIT_KEY_COLUMNS, SPLIT_PARTS
from ecglang.data.tables import PathLike, read_csv
from ecglang.errors import ConfigError, EcgReadError


@dataclass
class LabelSplit:
    """One published label split file: the table, its multi-hot label columns and the record key.

    `key_column` is `ecg_id` (PTB-XL tasks), `filename` (icbeb = CPSC 2018) or `ecg_path` (chapman);
    `record_ids` turns it into the `id` used by the builders (str(ecg_id), the CPSC record name, the
    Chapman file stem) for joining.
    """

    frame: pd.DataFrame
    label_columns: list[str]
    task: str
    part: str = ""
    key_column: str = ""
    path: str = ""

    @property
    def labels(self) -> np.ndarray:
        """Multi-hot matrix `[n_records, n_labels]` (int8) in `label_columns` order."""
        return self.frame[self.label_columns].to_numpy(dtype=np.int8)

    @property
    def record_ids(self) -> list[str]:
        keys = self.frame[self.key_column]
        if self.key_column == "ecg_id":
            return [str(int(k)) for k in keys]
        if self.key_column == "ecg_path":
            return [Path(str(k)).stem for k in keys]
        return [str(k) for k in keys]


def zero_one_column(
    series: pd.Series, column: str, path: PathLike, label: bool = False, hint: str = ""
) -> pd.Series | None:
    """`series` as int8 0/1 labels when every cell is 0 or 1 ("1", 1.0 and True are the 1 they are); None when it
    is not a label column: empty, or most cells hold something else and `label` is False.

    A column whose cells are mostly 0/1 (or any column `label` says is one) with another cell in it is a label
    column with a mistake: an `EcgReadError` naming `path`, the column and its first bad lines (the header is
    line 1; `hint` ends the message), never a column silently left out of the evaluation. pandas reads a column
    with one empty cell as floats, so a test of the dtype alone loses that column."""
    if series.empty:
        return None
    numeric = pd.to_numeric(series, errors="coerce")
    is01 = numeric.isin([0, 1]).to_numpy()
    if is01.all():
        return numeric.astype(np.int8)
    if not label and is01.mean() < 0.5:
        return None
    rows = np.flatnonzero(~is01)

    def held(row: int) -> str:
        value = series.iloc[row]  # an empty cell is NaN to pandas: its repr, np.float64(nan), is not in the file
        return "an empty cell" if pd.isna(value) else f"{str(value)!r:.40}"

    shown = ", ".join(f"line {r + 2} holds {held(r)}" for r in rows[:3])
    more = f" and {len(rows) - 3} more lines (the last: {rows[-1] + 2}) hold neither 0 nor 1" if len(rows) > 3 else ""
    fix = "fix the value" if len(rows) == 1 else "fix the values"
    raise EcgReadError(path, f"column {column!r} holds 0/1 labels but {shown}{more}; {fix}{hint}")


def infer_label_columns(df: pd.DataFrame, path: PathLike = "<table>", labels: Iterable[str] = ()) -> list[str]:
    """The 0/1 label columns of a split table, known metadata aside; each is made int8 in `df`.

    A column of mostly 0/1 cells, or one named in `labels` (the prompt set's codes), with a blank or other cell
    is an `EcgReadError` naming `path`, the column and the lines (`zero_one_column`)."""
    named = set(labels)
    cols = []
    for col in df.columns:
        if col in METADATA_COLUMNS:
            continue
        column = zero_one_column(df[col], str(col), path, label=col in named)
        if column is not None:
            df[col] = column
            cols.append(col)
    return cols


# The label-set names of the prompt sets and `ecglang evaluate` → MERL's file-name tasks.
SPLIT_TASK_ALIASES = {"ptbxl_super": "ptbxl_super_class", "ptbxl_sub": "ptbxl_sub_class", "cpsc2018": "icbeb"}


def load_label_split(split_root: PathLike, task: str, part: str, label_names: Iterable[str] = ()) -> LabelSplit:
    """Load a MERL label split (`split_root` is the `data_split` folder).

    Tasks: `ptbxl_super_class`, `ptbxl_sub_class`, `ptbxl_form`, `ptbxl_rhythm`, `icbeb`, `chapman` (the label-set
    names the prompt sets and `ecglang evaluate` use, `ptbxl_super`, `ptbxl_sub`, `cpsc2018`, are taken too);
    parts: `train`, `val`, `test`. Label columns are the columns holding only 0/1, except known metadata (`sex`,
    `age`, ids, fold). A column of mostly 0/1 cells with a blank or other cell in it, or such a column among
    `label_names` (the codes of the prompt set the caller scores), is an `EcgReadError` naming the file, the column
    and the lines: pandas reads it as floats, and it used to drop out of every figure without a word.
    """
    task = SPLIT_TASK_ALIASES.get(task, task)
    if task not in LABEL_SPLIT_FILES:
        raise ConfigError(f"unknown label-split task {task!r}; expected one of {list(LABEL_SPLIT_FILES)}")
    if part not in SPLIT_PARTS:
        raise ConfigError(f"unknown split part {part!r}; expected one of {list(SPLIT_PARTS)}")
    path = Path(split_root).expanduser() / LABEL_SPLIT_FILES[task].format(part=part)
    df = read_csv(path, f"label split file for {task}/{part}")
    key = SPLIT_KEY_COLUMNS.get(task, "ecg_id")
    if key not in df.columns:
        raise EcgReadError(path, f"no record key column {key!r}; found {list(df.columns)}")
    labels = infer_label_columns(df, path, label_names)
    if not labels:
        raise EcgReadError(path, "no multi-hot (0/1 integer) label columns found")
    return LabelSplit(frame=df, label_columns=labels, task=task, part=part, key_column=key, path=str(path))
