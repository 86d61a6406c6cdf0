"""The published label splits (MERL `data_split`): one CSV per task and part, multi-hot label columns and a
record key that joins them with the builders' `id`."""

from __future__ import annotations

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


def infer_label_columns(df: pd.DataFrame) -> list[str]:
    cols = []
    for col in df.columns:
        if col in METADATA_COLUMNS or not pd.api.types.is_integer_dtype(df[col]):
            continue
        values = set(np.unique(df[col].to_numpy()).tolist())
        if values <= {0, 1}:
            cols.append(col)
    return cols


# The label-set names of the prompt sets and `ecglang evaluate` → MERL's file-name tasks.
SPLIT_TASK_ALIASES = {"ptbxl_super": "ptbxl_super_class", "ptbxl_sub": "ptbxl_sub_class", "cpsc2018": "icbeb"}


def load_label_split(split_root: PathLike, task: str, part: str) -> LabelSplit:
    """Load a MERL label split (`split_root` is the `data_split` folder).

    Tasks: `ptbxl_super_class`, `ptbxl_sub_class`, `ptbxl_form`, `ptbxl_rhythm`, `icbeb`, `chapman` (the label-set
    names the prompt sets and `ecglang evaluate` use, `ptbxl_super`, `ptbxl_sub`, `cpsc2018`, are taken too);
    parts: `train`, `val`, `test`. Label columns are the integer columns holding only 0/1, except
    known metadata (`sex`, `age`, ids, fold).
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
    labels = infer_label_columns(df)
    if not labels:
        raise EcgReadError(path, "no multi-hot (0/1 integer) label columns found")
    return LabelSplit(frame=df, label_columns=labels, task=task, part=part, key_column=key, path=str(path))
