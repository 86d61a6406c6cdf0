"""MIMIC-IV-ECG: `record_list.csv` + `machine_measurements.csv` → a builder table of ECG–report pairs
(`ecglang.data.tables`); the machine reports are cleaned by `ecglang.text.reports.clean_mimic_report`."""

from __future__ import annotations

from pathlib import Path

import datasets
import pandas as pd
from tqdm.auto import tqdm

from ecglang.data.tables import (
    BuildReport,
    BuildResult,
    PathLike,
    RowSink,
    builder_features,
    missing_wfdb_files,
    read_csv,
    require_columns,
)
from ecglang.errors import EcgReadError
from ecglang.text.reports import clean_mimic_report, count_words

MIMIC_REPORT_COLUMNS = [f"report_{i}" for i in range(18)]


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
    `study_id` and read in chunks of `chunksize` rows. Reports are cleaned by
    `ecglang.text.reports.clean_mimic_report`; `report_original` holds the non-empty parts joined by
    newlines. Left out, with the reason listed: records without a
    measurements row, records whose files are missing, reports under `min_words` words (0 disables).

    Extra columns: `subject_id`, `study_id` (int), `ecg_time` (str). `labels` is empty, `fold` -1.
    """
    root = Path(root).expanduser().resolve()
    rl_path, mm_path = root / "record_list.csv", root / "machine_measurements.csv"
    records = read_csv(rl_path, "MIMIC-IV-ECG record list record_list.csv")
    require_columns(records, ["subject_id", "study_id", "path"], rl_path, "record_list.csv")
    records = records.drop_duplicates("study_id").set_index("study_id")
    if not mm_path.is_file():
        raise EcgReadError(mm_path, "MIMIC-IV-ECG machine_measurements.csv not found")

    features = builder_features(
        subject_id=datasets.Value("int64"),
        study_id=datasets.Value("int64"),
        ecg_time=datasets.Value("string"),
    )
    sink = RowSink(features)
    report = BuildReport(source="mimic-iv-ecg", n_rows=len(records))
    seen: set[int] = set()
    n_short = 0
    try:
        chunks = pd.read_csv(mm_path, chunksize=chunksize, encoding="utf-8", encoding_errors="replace", dtype=str)
        for chunk in tqdm(chunks, desc="MIMIC-IV-ECG reports", unit="chunk", disable=not progress):
            require_columns(chunk, ["study_id"], mm_path, "machine_measurements.csv")
            present = [c for c in MIMIC_REPORT_COLUMNS if c in chunk.columns]
            rows = chunk[present].itertuples(index=False, name=None)
            for study, parts in zip(chunk["study_id"], rows, strict=True):
                try:
                    study_id = int(float(study))
                except (TypeError, ValueError):
                    report.fail(study, mm_path, f"bad study_id {study!r} in machine_measurements.csv")
                    continue
                if study_id not in records.index or study_id in seen:
                    continue  # reports without a record are not records; duplicates keep the first
                seen.add(study_id)
                meta = records.loc[study_id]
                record = root / str(meta["path"])
                if check_files and (reason := missing_wfdb_files(record)):
                    report.fail(study_id, record, reason)
                    continue
                parts = [None if isinstance(p, float) else p for p in parts]
                text = clean_mimic_report(parts)
                n = count_words(text)
                if n < min_words:
                    n_short += 1
                    report.fail(study_id, record, f"report too short: {n} word(s) < min_words={min_words}")
                    continue
                original = "\n".join(p for p in parts if isinstance(p, str) and p.strip())
                sink.add(
                    {
                        "id": str(study_id),
                        "path": str(record),
                        "report": text,
                        "report_original": original,
                        "report_empty": False,
                        "labels": [],
                        "fold": -1,
                        "source": "mimic-iv-ecg",
                        "subject_id": int(meta["subject_id"]),
                        "study_id": study_id,
                        "ecg_time": None if pd.isna(meta.get("ecg_time")) else str(meta.get("ecg_time")),
                    }
                )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise EcgReadError(mm_path, f"cannot parse machine_measurements.csv: {exc}") from exc
    for study_id in records.index.difference(list(seen)):
        report.fail(study_id, root / str(records.loc[study_id, "path"]), "no machine_measurements.csv row")
    report.n_records = sink.n
    report.notes.update({"n_report_too_short": n_short, "min_words": min_words})
    return BuildResult(sink.finish(), report)
