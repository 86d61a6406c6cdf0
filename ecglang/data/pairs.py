"""Users' own ECG–report pairs: a CSV, parquet or JSONL file, or a HF dataset folder (`save_to_disk`), with
columns `path, report` and optionally `id, group, age, sex` → a builder table (`ecglang.data.tables`).

    ecglang data build pairs my_pairs.csv --out prepared/      # then: ecglang pretrain ... data.prepared=prepared

`path` is a record `ecglang.record.io.load_ecg` reads without extra arguments: a WFDB record (with or without
`.hea`), a `.mat` (CinC with its `.hea`, or CPSC 2018) or a `.npz` with `fs` (and `leads`); not a bare `.npy`,
which carries no sampling rate. A relative path is taken from the pairs file's folder.
`report` is free English text (lower-cased and tidied by `normalize_report(source="english")`). `id` defaults to
the row number; `group` (e.g. a patient id) keeps a patient's records on one side of the held-out split
(`data.val_group=group`).

Bad rows are listed, never dropped silently: a row without a path, whose record file is missing, whose format
is not readable here, with an empty report, or with a repeated id is left out and listed in
`BuildReport.failures` (written to `build_failures.csv` by `ecglang data build`); records that exist but cannot be
read or preprocessed are listed by the signal cache (`cache_failures.csv`). `failures_as_records` gives both as
`ecglang.errors.RecordFailure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pandas as pd

from ecglang.data.tables import (
    BuildReport,
    BuildResult,
    PathLike,
    RowSink,
    builder_features,
    float_or_none,
    missing_wfdb_files,
)
from ecglang.errors import ConfigError, EcgReadError, RecordFailure
from ecglang.text.reports import normalize_report

REQUIRED_COLUMNS = ("path", "report")
OPTIONAL_COLUMNS = ("id", "group", "age", "sex")
SINGLE_FILE_SUFFIXES = (".npz", ".mat")
WFDB_SUFFIXES = (".hea", ".dat")


def read_pairs_table(source: PathLike) -> pd.DataFrame:
    """The pairs as a DataFrame of strings: `.csv`, `.parquet`, `.jsonl`/`.json` (one object a line), or a folder
    written by `datasets.Dataset.save_to_disk`."""
    path = Path(source).expanduser()
    if path.is_dir():
        try:
            frame = datasets.load_from_disk(str(path)).to_pandas()
        except (FileNotFoundError, ValueError) as exc:
            raise EcgReadError(path, f"not a saved HF dataset: {exc}") from exc
    elif not path.is_file():
        raise EcgReadError(path, "pairs file not found")
    else:
        suffix = path.suffix.lower()
        try:
            if suffix == ".csv":
                frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
            elif suffix in (".parquet", ".pq"):
                frame = pd.read_parquet(path)
            elif suffix in (".jsonl", ".json"):
                frame = pd.read_json(path, lines=True, dtype=False)
            else:
                raise EcgReadError(path, f"unsupported pairs file {suffix!r}: use .csv, .parquet, .jsonl or a folder")
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise EcgReadError(path, f"cannot parse the pairs file: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise EcgReadError(path, f"pairs lack column(s) {missing}; need {list(REQUIRED_COLUMNS)}, found {list(frame)}")
    return frame


def record_problem(record: Path) -> str | None:
    """Why the record at `record` cannot be read (missing file, unknown format), else None. Stats files only."""
    suffix = record.suffix.lower()
    if suffix in WFDB_SUFFIXES:
        record = record.with_suffix("")
        suffix = ""
    if suffix in SINGLE_FILE_SUFFIXES:
        return None if record.is_file() else f"file missing: {record}"
    if suffix == ".npy":
        return "unreadable: a .npy record has no sampling rate or lead names; save it as .npz with fs and leads"
    if suffix == "" or record.with_name(record.name + ".hea").exists():
        return missing_wfdb_files(record)
    return f"unreadable: unsupported record format {suffix!r}"


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()


def build_pairs(root: PathLike, check_files: bool = True, progress: bool = False) -> BuildResult:
    """Users' own pairs (see the module docstring). `root` is the pairs file or dataset folder."""
    source = Path(root).expanduser().resolve()
    frame = read_pairs_table(source)
    base = source if source.is_dir() else source.parent
    features = builder_features(group=datasets.Value("string"), age=datasets.Value("float32"),
                                sex=datasets.Value("string"))  # fmt: skip
    sink = RowSink(features)
    report = BuildReport(source="pairs", n_rows=len(frame))
    seen: set[str] = set()
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in frame.columns]
    for i, row in enumerate(frame[columns].itertuples(index=False, name=None)):
        values = dict(zip(columns, row, strict=True))
        record_id = _text(values.get("id")) or str(i)
        raw_path = _text(values.get("path"))
        if not raw_path:
            report.fail(record_id, "", f"row {i}: no path")
            continue
        record = Path(raw_path).expanduser()
        record = (record if record.is_absolute() else base / record).resolve()
        if record_id in seen:
            report.fail(record_id, record, f"row {i}: id {record_id!r} repeats an earlier row")
            continue
        if check_files and (problem := record_problem(record)):
            report.fail(record_id, record, f"row {i}: {problem}")
            continue
        original = _text(values.get("report"))
        text = normalize_report(original, source="english")
        if not text:
            report.fail(record_id, record, f"row {i}: empty report")
            continue
        seen.add(record_id)
        if record.suffix.lower() in WFDB_SUFFIXES:
            record = record.with_suffix("")
        sex = _text(values.get("sex")).upper()[:1] or None
        sink.add({
            "id": record_id, "path": str(record), "report": text, "report_original": original, "report_empty": False,
            "labels": [], "fold": -1, "source": "pairs", "group": _text(values.get("group")) or record_id,
            "age": float_or_none(values.get("age")), "sex": sex if sex in ("M", "F") else None,
        })  # fmt: skip
    report.n_records = sink.n
    report.notes["pairs file"] = str(source)
    if sink.n == 0:
        raise ConfigError(f"{source}: no usable pairs ({len(report.failures)} rows left out: {report.summary()})")
    return BuildResult(sink.finish(), report)


def failures_as_records(
    build_failures_csv: PathLike, cache_failures_csv: PathLike | None = None
) -> list[RecordFailure]:
    """The rows a prepared pairs folder left out, as `RecordFailure`s (stage "build" or "cache")."""
    out = []
    frame = pd.read_csv(build_failures_csv, dtype=str, keep_default_na=False)
    out += [RecordFailure(r, "build", why, path=p) for r, p, why in frame[["record_id", "path", "reason"]].to_numpy()]
    if cache_failures_csv is not None and Path(cache_failures_csv).is_file():
        frame = pd.read_csv(cache_failures_csv, dtype=str, keep_default_na=False)
        out += [RecordFailure(r, "cache", why, path=p) for r, p, why in frame[["id", "path", "reason"]].to_numpy()]
    return out


__all__ = ["OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "build_pairs", "failures_as_records", "read_pairs_table",
           "record_problem"]  # fmt: skip
