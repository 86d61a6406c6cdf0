"""PTB-XL (Wagner et al. 2020): `ptbxl_database.csv` + `scp_statements.csv` → a builder table
(`ecglang.data.tables`) with the SCP codes, diagnostic super/subclasses and the English report."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from ecglang.data.tables import (
    BuildReport,
    BuildResult,
    PathLike,
    RowSink,
    builder_features,
    float_or_none,
    missing_wfdb_files,
    read_csv,
    require_columns,
)
from ecglang.errors import ConfigError
from ecglang.record.demographics import ptbxl_sex
from ecglang.text.reports import decode_report, normalize_report


def build_ptbxl(
    root: PathLike,
    sampling_rate: int = 500,
    folds: Iterable[int] | None = None,
    check_files: bool = True,
    progress: bool = True,
) -> BuildResult:
    """PTB-XL (`ptbxl_database.csv` + `scp_statements.csv` in `root`).

    Args:
        root: the PTB-XL folder (with `records500/` and/or `records100/`).
        sampling_rate: 500 (`filename_hr`) or 100 (`filename_lr`) selects the `path` column.
        folds: keep only these `strat_fold` values (e.g. 1–8 train, 9 val, 10 test); others are not
            failures, they are counted in `notes["n_other_folds"]`.
        check_files: list records whose header or signal file is missing on disk as failures.

    Extra columns: `scp_codes` (JSON object code → likelihood), `superclass` and `subclass` (sorted
    `diagnostic_class` / `diagnostic_subclass` of the codes whose statement has `diagnostic == 1`, as
    in PTB-XL's example code; likelihood 0 codes included), `age` (float; PTB-XL stores ages over 89
    as 300), `sex` ("M"/"F" from PTB-XL's 0 = male, 1 = female), `patient_id`, `filename_hr`,
    `filename_lr`. `labels` lists every SCP code of the record.
    """
    root = Path(root).expanduser().resolve()
    if sampling_rate not in (100, 500):
        raise ConfigError(f"PTB-XL sampling_rate must be 100 or 500, got {sampling_rate}")
    db_path, scp_path = root / "ptbxl_database.csv", root / "scp_statements.csv"
    db = read_csv(db_path, "PTB-XL database file ptbxl_database.csv")
    require_columns(
        db,
        ["ecg_id", "report", "scp_codes", "strat_fold", "filename_lr", "filename_hr"],
        db_path,
        "ptbxl_database.csv",
    )
    scp = read_csv(scp_path, "PTB-XL statements file scp_statements.csv", index_col=0)
    require_columns(scp, ["diagnostic", "diagnostic_class", "diagnostic_subclass"], scp_path, "scp_statements.csv")
    diagnostic = scp[scp["diagnostic"] == 1]
    superclass_of = diagnostic["diagnostic_class"].dropna().to_dict()
    subclass_of = diagnostic["diagnostic_subclass"].dropna().to_dict()

    fold_set = None if folds is None else {int(f) for f in folds}
    file_column = "filename_hr" if sampling_rate == 500 else "filename_lr"
    features = builder_features(
        scp_codes=datasets.Value("string"),
        superclass=datasets.Sequence(datasets.Value("string")),
        subclass=datasets.Sequence(datasets.Value("string")),
        age=datasets.Value("float32"),
        sex=datasets.Value("string"),
        patient_id=datasets.Value("int64"),
        filename_hr=datasets.Value("string"),
        filename_lr=datasets.Value("string"),
    )
    sink = RowSink(features)
    report = BuildReport(source="ptbxl")
    n_other_folds = n_empty = 0
    for row in tqdm(db.itertuples(index=False), total=len(db), desc="PTB-XL metadata", disable=not progress):
        report.n_rows += 1
        ecg_id = str(int(row.ecg_id))
        fold = int(row.strat_fold) if float_or_none(row.strat_fold) is not None else -1
        if fold_set is not None and fold not in fold_set:
            n_other_folds += 1
            continue
        rel = getattr(row, file_column)
        record = root / str(rel)
        if not isinstance(rel, str) or not rel.strip():
            report.fail(ecg_id, record, f"no {file_column} in ptbxl_database.csv")
            continue
        if check_files and (reason := missing_wfdb_files(record)):
            report.fail(ecg_id, record, reason)
            continue
        try:
            codes = ast.literal_eval(row.scp_codes) if isinstance(row.scp_codes, str) else {}
            if not isinstance(codes, dict):
                raise ValueError("not a dict")
            codes = {str(k): float(v) for k, v in codes.items()}
        except (ValueError, SyntaxError) as exc:
            report.fail(ecg_id, record, f"bad scp_codes {row.scp_codes!r}: {exc}")
            continue
        original = decode_report(row.report)
        text = normalize_report(original, source="ptbxl")
        n_empty += not text
        sex = ptbxl_sex(getattr(row, "sex", None))
        patient = float_or_none(getattr(row, "patient_id", None))
        sink.add(
            {
                "id": ecg_id,
                "path": str(record),
                "report": text,
                "report_original": original,
                "report_empty": not text,
                "labels": list(codes),
                "fold": fold,
                "source": "ptbxl",
                "scp_codes": json.dumps(codes),
                "superclass": sorted({superclass_of[c] for c in codes if c in superclass_of}),
                "subclass": sorted({subclass_of[c] for c in codes if c in subclass_of}),
                "age": float_or_none(getattr(row, "age", None)),
                "sex": sex,
                "patient_id": None if patient is None else int(patient),
                "filename_hr": str(row.filename_hr),
                "filename_lr": str(row.filename_lr),
            }
        )
    report.n_records = sink.n
    report.notes.update({"n_report_empty": n_empty, "sampling_rate": sampling_rate})
    if fold_set is not None:
        report.notes["n_other_folds"] = n_other_folds
    return BuildResult(sink.finish(), report)
