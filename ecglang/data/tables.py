"""What every dataset builder returns and the helpers they share: metadata tables → `datasets.Dataset` of
ECG–report records. One module per source builds its table (`ptbxl`, `mimic`, `cinc`, `cpsc`);
`ecglang.data.registry` names them.

Every builder returns a `BuildResult(dataset, report)` (a named tuple, so `ds, rep = build_...(...)`).
The dataset has one row per usable record with at least these columns:

| column | type | meaning |
|---|---|---|
| `id` | str | record id (PTB-XL `ecg_id`, MIMIC `study_id`, CinC/CPSC record name) |
| `path` | str | absolute record path without extension (what `ecglang.record.io.load_ecg` takes) |
| `report` | str | English normalised report (`ecglang.text.reports`), `""` when there is none |
| `report_original` | str | the report as stored in the source |
| `report_empty` | bool | True when `report` is empty |
| `labels` | list[str] | dataset labels (PTB-XL SCP codes, CinC abbreviations, CPSC class names) |
| `fold` | int | the dataset's fold (PTB-XL `strat_fold`), -1 if none |
| `source` | str | dataset name |

plus builder-specific extras (see each builder). Builders read metadata only (CSV files and WFDB
headers), never signals, so memory does not grow with signal size; the rows are written to Arrow in
batches.

Nothing is dropped silently: a record that cannot be used (file missing on disk, unreadable header,
unknown label, MIMIC report too short) is left out of the dataset and listed in
`BuildReport.failures` as `(record_id, path, reason)`; `BuildReport.write_csv` saves that list.
Empty reports are a documented choice: PTB-XL, CinC and CPSC records with an empty report are kept
(they still carry labels) and flagged `report_empty=True`; MIMIC-IV-ECG, which is used for
ECG–text pretraining only, drops reports shorter than `min_words` (empty ones included) with the
reason listed.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import datasets
import pandas as pd

from ecglang.errors import EcgReadError

PathLike = str | Path

COMMON_FEATURES = {
    "id": datasets.Value("string"),
    "path": datasets.Value("string"),
    "report": datasets.Value("string"),
    "report_original": datasets.Value("string"),
    "report_empty": datasets.Value("bool"),
    "labels": datasets.Sequence(datasets.Value("string")),
    "fold": datasets.Value("int32"),
    "source": datasets.Value("string"),
}


@dataclass(frozen=True)
class BuildFailure:
    """A record left out of a built dataset, and why."""

    record_id: str
    path: str
    reason: str


@dataclass
class BuildReport:
    """What a builder did: rows read, records kept, failures (with reasons) and counters."""

    source: str
    n_rows: int = 0
    n_records: int = 0
    failures: list[BuildFailure] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def fail(self, record_id: Any, path: Any, reason: str) -> None:
        self.failures.append(BuildFailure(str(record_id), str(path), reason))

    def failure_counts(self) -> Counter[str]:
        """Failures per kind of reason (the text before the first ':')."""
        return Counter(f.reason.split(":", 1)[0] for f in self.failures)

    def summary(self) -> str:
        head = f"{self.source}: {self.n_rows} metadata rows → {self.n_records} records"
        lines = [f"{head}, {len(self.failures)} left out"]
        for reason, n in self.failure_counts().most_common():
            lines.append(f"  {n:6d}  {reason}")
        for key, value in self.notes.items():
            lines.append(f"  {key}: {value}")
        return "\n".join(lines)

    def write_csv(self, path: PathLike) -> Path:
        """Write the failures as CSV (`record_id,path,reason`); the file is written even when empty."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["record_id", "path", "reason"])
            writer.writerows((x.record_id, x.path, x.reason) for x in self.failures)
        return path


class BuildResult(NamedTuple):
    """What a builder returns: `ds, report = build_...(...)`."""

    dataset: datasets.Dataset
    report: BuildReport


class RowSink:
    """Builders' row buffer. Collects rows into Arrow tables `batch_size` at a time (Python memory stays O(batch))."""

    def __init__(self, features: datasets.Features, batch_size: int = 10_000) -> None:
        self.features = features
        self.batch_size = batch_size
        self._rows: list[dict[str, Any]] = []
        self._parts: list[datasets.Dataset] = []
        self.n = 0

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        self.n += 1
        if len(self._rows) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._parts.append(datasets.Dataset.from_list(self._rows, features=self.features))
            self._rows = []

    def finish(self) -> datasets.Dataset:
        self._flush()
        if not self._parts:
            return datasets.Dataset.from_dict({k: [] for k in self.features}, features=self.features)
        return self._parts[0] if len(self._parts) == 1 else datasets.concatenate_datasets(self._parts)


def builder_features(**extra: Any) -> datasets.Features:
    """The columns every builder writes (`COMMON_FEATURES`) plus a builder's own `extra` ones."""
    return datasets.Features({**COMMON_FEATURES, **extra})


def read_csv(path: Path, what: str, **kwargs: Any) -> pd.DataFrame:
    """Read a metadata CSV; UTF-8 first, cp1252 as the fallback for old exports."""
    if not path.is_file():
        raise EcgReadError(path, f"{what} not found")
    try:
        try:
            return pd.read_csv(path, encoding="utf-8", **kwargs)
        except UnicodeDecodeError:
            return pd.read_csv(path, encoding="cp1252", **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise EcgReadError(path, f"cannot parse {what}: {exc}") from exc


def require_columns(df: pd.DataFrame, columns: Iterable[str], path: Path, what: str) -> None:
    """`EcgReadError` naming `path` when `df` lacks any of `columns`."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise EcgReadError(path, f"{what} lacks column(s) {missing}; found {list(df.columns)}")


def missing_wfdb_files(record: Path) -> str | None:
    """Reason a WFDB record is not on disk (header or its signal file), else None. Stats files only."""
    hea = record.with_name(record.name + ".hea")
    if not hea.is_file():
        return f"file missing: {hea}"
    dat = record.with_name(record.name + ".dat")
    mat = record.with_name(record.name + ".mat")
    if not (dat.is_file() or mat.is_file()):
        return f"file missing: signal file {dat.name} (or {mat.name}) next to {hea.name}"
    return None


def float_or_none(value: Any) -> float | None:
    """`float(value)`, or None for missing, non-numeric and NaN values."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value
