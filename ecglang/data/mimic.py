"""MIMIC-IV-ECG: `record_list.csv` + `machine_measurements.csv` → a builder table of ECG–report pairs
(`ecglang.data.tables`); the machine reports are cleaned by `ecglang.text.reports.clean_mimic_report`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

import datasets
from tqdm.auto import tqdm

from ecglang.data.tables import (
    BuildReport,
    BuildResult,
    CsvRows,
    PathLike,
    RowSink,
    builder_features,
    missing_wfdb_files,
    root_path,
)
from ecglang.errors import EcgReadError, clip_text
from ecglang.text.reports import clean_mimic_report, count_words

MIMIC_REPORT_COLUMNS = [f"report_{i}" for i in range(18)]
RECORD_LIST_COLUMNS = ["subject_id", "study_id", "path", "ecg_time"]

_MAX_QUOTED = 200  # characters of a CSV value quoted in a failure reason
_MAX_MESSAGE = 1000  # characters of a failure's path or reason
_MAX_PATH_CHARS = 4096
_INT64_MAX = 2**63 - 1
_INT_TEXT = re.compile(r"[+-]?[0-9]+(?:\.0*)?")  # 12, 12.0 (an id column once read as floats)
# Cells pandas reads as missing (`pandas._libs.parsers.STR_NA_VALUES`): report parts and ecg_time as before.
_NA_TEXT = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
     "NULL", "NaN", "None", "n/a", "nan", "null"}
)  # fmt: skip


class _Record(NamedTuple):
    subject_id: int
    path: str  # not a Path: held for every record until its report is read, and a Path costs ~8x the str
    ecg_time: str | None


def build_mimic_ecg(
    root: PathLike,
    min_words: int = 4,
    check_files: bool = True,
    chunksize: int = 50_000,
    progress: bool = True,
) -> BuildResult:
    """MIMIC-IV-ECG (`record_list.csv` + `machine_measurements.csv` in `root`).

    `record_list.csv` (`subject_id, study_id, file_name, ecg_time, path`) gives the records;
    `machine_measurements.csv` (`subject_id, study_id, ..., report_0..report_17`) is joined on
    `study_id`. Both are read a row at a time (`ecglang.data.tables.CsvRows`), only the columns used;
    `chunksize` is the number of report rows between progress updates. Reports are cleaned by
    `ecglang.text.reports.clean_mimic_report`; `report_original` holds the non-empty parts joined by
    newlines.

    A bad row never stops the build: it is left out and listed in the report's failures with the reason
    (record id `record_list.csv line N` / `machine_measurements.csv line N` where the study id is unusable).
    Left out: record_list rows that cannot be read (more cells than the header, bad quoting), whose study_id
    or subject_id is not an integer, whose study_id an earlier row already has (the first row keeps it), or
    whose path is empty, leads outside `root` (`..` or an absolute path) or is not a usable file name;
    measurements rows that cannot be read or whose study_id is not an integer; records without a
    measurements row, records whose files are missing (`check_files`), reports under `min_words` words (0
    disables). Measurements rows for a study without a usable record, and second rows for one study (the
    first is used), are not records: they are counted in `notes`. A file that is missing, empty, lacks its
    key columns (or every report column) or names a used column twice is an `EcgReadError` naming it.

    Extra columns: `subject_id`, `study_id` (int), `ecg_time` (str). `labels` is empty, `fold` -1.
    """
    root = root_path(root, "MIMIC-IV-ECG folder")
    rl_path, mm_path = root / "record_list.csv", root / "machine_measurements.csv"
    report = BuildReport(source="mimic-iv-ecg")

    def fail(record_id: object, path: object, reason: str) -> None:
        report.fail(record_id, clip_text(str(path), _MAX_MESSAGE), clip_text(reason, _MAX_MESSAGE))

    records: dict[int, _Record] = {}
    first_row: dict[int, str] = {}  # study_id → where the row that claimed it is (bad rows claim theirs too)
    features = builder_features(
        subject_id=datasets.Value("int64"),
        study_id=datasets.Value("int64"),
        ecg_time=datasets.Value("string"),
    )
    sink = RowSink(features)
    seen: set[int] = set()
    n_short = n_without_record = n_repeated = 0
    # Both headers are checked before the first row is read.
    record_list = CsvRows(rl_path, "MIMIC-IV-ECG record list record_list.csv", RECORD_LIST_COLUMNS,
                          RECORD_LIST_COLUMNS[:3], "cp1252")  # fmt: skip
    with record_list, CsvRows(mm_path, "MIMIC-IV-ECG machine_measurements.csv", ["study_id", *MIMIC_REPORT_COLUMNS],
                              ["study_id"], "replace") as measurements:  # fmt: skip
        present = [c for c in MIMIC_REPORT_COLUMNS if c in measurements.positions]
        if not present:
            found = clip_text(str(measurements.header), 300)
            problem = f"machine_measurements.csv has none of the columns report_0..report_17; found {found}"
            raise EcgReadError(mm_path, problem)
        for row in record_list:
            report.n_rows += 1
            where = f"record_list.csv {row.where}"
            if row.problem:
                fail(where, rl_path, f"bad record_list.csv row: {row.problem}")
                continue
            cells = row.cells
            try:
                study_id = _integer(cells["study_id"])
            except ValueError as exc:
                fail(where, rl_path, f"bad study_id: {_quote(cells['study_id'])} in {where} {exc}")
                continue
            if study_id in first_row:
                first = first_row[study_id]
                fail(study_id, rl_path, f"duplicate study_id: {study_id} in {where} was first used in {first}")
                continue
            first_row[study_id] = row.where
            try:
                subject_id = _integer(cells["subject_id"])
            except ValueError as exc:
                fail(study_id, rl_path, f"bad subject_id: {_quote(cells['subject_id'])} in {where} {exc}")
                continue
            record, problem = _record_path(root, cells["path"], where)
            if record is None:
                fail(study_id, rl_path, problem)
                continue
            ecg_time = cells.get("ecg_time")
            records[study_id] = _Record(
                subject_id, str(record), None if ecg_time is None or ecg_time in _NA_TEXT else ecg_time
            )

        bar, step, n = tqdm(desc="MIMIC-IV-ECG reports", unit="row", disable=not progress), max(1, chunksize), 0
        for n, row in enumerate(measurements, start=1):
            if n % step == 0:
                bar.update(step)
            where = f"machine_measurements.csv {row.where}"
            if row.problem:
                fail(where, mm_path, f"bad machine_measurements.csv row: {row.problem}")
                continue
            study = row.cells["study_id"]
            try:
                study_id = _integer(study)
            except ValueError as exc:
                fail(where, mm_path, f"bad study_id: {_quote(study)} in {where} {exc}")
                continue
            if study_id not in records:
                # a report without a usable record is not a record (a record_list row left out is listed above)
                n_without_record += study_id not in first_row
                continue
            if study_id in seen:
                n_repeated += 1  # a second row for one study: the first is used
                continue
            seen.add(study_id)
            meta = records[study_id]
            if check_files and (reason := missing_wfdb_files(Path(meta.path))):
                fail(study_id, meta.path, reason)
                continue
            parts = [None if (p := row.cells[c]) is None or p in _NA_TEXT else p for c in present]
            text = clean_mimic_report(parts)
            words = count_words(text)
            if words < min_words:
                n_short += 1
                fail(study_id, meta.path, f"report too short: {words} word(s) < min_words={min_words}")
                continue
            original = "\n".join(p for p in parts if isinstance(p, str) and p.strip())
            sink.add(
                {
                    "id": str(study_id),
                    "path": meta.path,
                    "report": text,
                    "report_original": original,
                    "report_empty": False,
                    "labels": [],
                    "fold": -1,
                    "source": "mimic-iv-ecg",
                    "subject_id": meta.subject_id,
                    "study_id": study_id,
                    "ecg_time": meta.ecg_time,
                }
            )
        bar.update(n % step)
        bar.close()
    for study_id in sorted(records.keys() - seen):
        fail(study_id, records[study_id].path, "no machine_measurements.csv row")
    report.n_records = sink.n
    report.notes.update({"n_report_too_short": n_short, "min_words": min_words})
    report.notes.update({"n_reports_without_record": n_without_record, "n_repeated_study_rows": n_repeated})
    return BuildResult(sink.finish(), report)


def _quote(value: str | None) -> str:
    """`repr(value)` cut to `_MAX_QUOTED` characters: a reason never echoes a whole oversized cell."""
    if value is None:
        return "None"
    shown = repr(value[:_MAX_QUOTED])
    return shown if len(value) <= _MAX_QUOTED else f"{shown}… ({len(value)} characters)"


def _integer(text: str | None) -> int:
    """A non-negative integer cell (`12`, `12.0`, `" 12 "`); `ValueError` with the reason (the caller quotes
    the cell) for anything else: empty, a fraction, an exponent, inf/nan, over 2**63 - 1."""
    if text is None or not text.strip():
        raise ValueError("is empty")
    text = text.strip()
    if not _INT_TEXT.fullmatch(text):
        raise ValueError("is not an integer")
    digits = text.split(".")[0].lstrip("+-").lstrip("0")
    if len(digits) > len(str(_INT64_MAX)) or not 0 <= (number := int(text.split(".")[0])) <= _INT64_MAX:
        raise ValueError(f"is outside 0..{_INT64_MAX}")
    return number


def _record_path(root: Path, rel: str | None, where: str) -> tuple[Path | None, str]:
    """(`root / rel` normalised, "") or (None, reason) for an empty path, one that leaves `root` (`..`, an
    absolute path) or one no file system takes (NUL, too long). The check is on the path as written, not on
    where symlinks lead (a `files/` folder may be a symlink to another disk)."""
    if rel is None or not rel.strip():
        return None, f"no path in {where}"
    if "\0" in rel:
        return None, f"bad path: {_quote(rel)} in {where} contains a NUL character"
    if len(rel) > _MAX_PATH_CHARS:
        return None, f"bad path: {_quote(rel)} in {where} is over the limit of {_MAX_PATH_CHARS} characters"
    record = Path(os.path.normpath(root / rel))
    if record == root or not record.is_relative_to(root):
        return None, f"path outside the root: {_quote(rel)} in {where} leads to {_quote(str(record))}, not under {root}"
    return record, ""
