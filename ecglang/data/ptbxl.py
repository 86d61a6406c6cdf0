"""PTB-XL (Wagner et al. 2020): `ptbxl_database.csv` + `scp_statements.csv` → a builder table
(`ecglang.data.tables`) with the SCP codes, diagnostic super/subclasses and the English report."""

from __future__ import annotations

import ast
import json
import math
import numbers
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
from ecglang.errors import ConfigError, clip_text
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

    A bad row never stops the build: it is left out and listed in the report's failures with the reason
    (record id `row N` when its ecg_id is unusable), and the other rows are built. Bad rows are: an ecg_id,
    strat_fold or patient_id that is not an integer (or does not fit the column), an ecg_id already used by
    an earlier row (the first row keeps it), no file name, a file name that leads outside `root` (`..` or
    an absolute path; symlinks inside `root` are followed as usual), missing files (`check_files`), and an
    scp_codes cell that is not a dict literal of finite likelihoods. Values quoted in reasons are cut to
    200 characters. An empty strat_fold is fold -1, an empty patient_id None.

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

    def fail(record_id: str, path: object, reason: str) -> None:
        report.fail(
            clip_text(record_id, _MAX_QUOTED), clip_text(str(path), _MAX_MESSAGE), clip_text(reason, _MAX_MESSAGE)
        )

    first_row: dict[str, int] = {}  # ecg_id → the row that claimed it (rows of every fold: ids are global)
    n_other_folds = n_empty = 0
    rows = db.itertuples(index=False)
    for n, row in enumerate(tqdm(rows, total=len(db), desc="PTB-XL metadata", disable=not progress), start=1):
        report.n_rows += 1
        try:
            ecg_id, id_error = str(_int_value(row.ecg_id, 0, _INT64_MAX, required=True)), ""
            first_row.setdefault(ecg_id, n)
        except ValueError as exc:
            ecg_id, id_error = f"row {n}", f"bad ecg_id: {_quote(row.ecg_id)} in data row {n} {exc}"
        try:
            fold, fold_error = _int_value(row.strat_fold, _INT32_MIN, _INT32_MAX), ""
        except ValueError as exc:
            fold, fold_error = -1, f"bad strat_fold: {_quote(row.strat_fold)} {exc}"
        fold = -1 if fold is None else fold
        if not fold_error and fold_set is not None and fold not in fold_set:
            n_other_folds += 1
            continue
        rel = getattr(row, file_column)
        record, path_error = _record_path(root, rel, file_column)
        where = db_path if record is None else record
        if id_error or fold_error or path_error:
            fail(ecg_id, where, id_error or fold_error or path_error)
            continue
        if first_row[ecg_id] != n:
            fail(
                ecg_id,
                where,
                f"duplicate ecg_id: {ecg_id} in data row {n} was first used in data row {first_row[ecg_id]}",
            )
            continue
        if check_files and (reason := missing_wfdb_files(record)):
            fail(ecg_id, record, reason)
            continue
        try:
            codes = _scp_codes(row.scp_codes)
        except ValueError as exc:
            fail(ecg_id, record, f"bad scp_codes: {_quote(row.scp_codes)} {exc}")
            continue
        patient = getattr(row, "patient_id", None)
        try:
            patient = _int_value(patient, 0, _INT64_MAX)
        except ValueError as exc:
            fail(ecg_id, record, f"bad patient_id: {_quote(patient)} {exc}")
            continue
        original = decode_report(row.report)
        text = normalize_report(original, source="ptbxl")
        n_empty += not text
        sex = ptbxl_sex(getattr(row, "sex", None))
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
                "patient_id": patient,
                "filename_hr": str(row.filename_hr),
                "filename_lr": str(row.filename_lr),
            }
        )
    report.n_records = sink.n
    report.notes.update({"n_report_empty": n_empty, "sampling_rate": sampling_rate})
    if fold_set is not None:
        report.notes["n_other_folds"] = n_other_folds
    return BuildResult(sink.finish(), report)


# ---------------------------------------------------------------------------------------------- row checks

_MAX_QUOTED = 200  # characters of a CSV value quoted in a failure message
_MAX_MESSAGE = 1000  # characters of a failure's path or reason
_MAX_SCP_CODES = 10_000  # characters of an scp_codes cell parsed (PTB-XL's longest holds under 200)
_INT32_MIN, _INT32_MAX, _INT64_MAX = -(2**31), 2**31 - 1, 2**63 - 1
_INT_TEXT = re.compile(r"[+-]?\d{1,19}(?:\.0*)?")


def _quote(value: Any) -> str:
    """`repr(value)`, cut to `_MAX_QUOTED` characters: a failure message never echoes a whole oversized cell."""
    if isinstance(value, str) and len(value) > _MAX_QUOTED:
        return f"{value[:_MAX_QUOTED]!r}… ({len(value)} characters)"
    return clip_text(repr(value), _MAX_QUOTED)


def _missing(value: Any) -> bool:
    """An empty CSV cell: None, NaN or blank text."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, float) and math.isnan(value))


def _int_value(value: Any, lo: int, hi: int, required: bool = False) -> int | None:
    """An integer CSV cell (`12`, `12.0`, `" 12 "`) in `lo..hi`; None when empty (unless `required`).
    Raises `ValueError` with the reason (the caller quotes the value) for anything else."""
    if _missing(value):
        if required:
            raise ValueError("is empty")
        return None
    if isinstance(value, bool):
        raise ValueError("is not an integer")
    if isinstance(value, numbers.Integral):
        number = int(value)
    elif isinstance(value, numbers.Real):
        if not math.isfinite(value) or not float(value).is_integer():
            raise ValueError("is not an integer")
        number = int(value)
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        number = int(value.strip().split(".")[0])
    else:
        raise ValueError("is not an integer")
    if not lo <= number <= hi:
        raise ValueError(f"is outside {lo}..{hi}")
    return number


def _record_path(root: Path, rel: Any, column: str) -> tuple[Path | None, str]:
    """(`root / rel` normalised, "") or (None, reason) for a missing file name, or one that leaves `root`.

    The check is on the path as written (`..` and absolute paths), not on where symlinks lead: a records
    folder that is a symlink to another disk is a normal setup."""
    if _missing(rel):
        return None, f"no {column} in ptbxl_database.csv"
    if not isinstance(rel, str):
        return None, f"bad {column}: {_quote(rel)} is not a file name"
    if "\0" in rel:
        return None, f"bad {column}: {_quote(rel)} contains a NUL character"
    record = Path(os.path.normpath(root / rel))
    if record == root or not record.is_relative_to(root):
        return None, f"path outside the root: {column} {_quote(rel)} leads to {_quote(str(record))}, not under {root}"
    return record, ""


def _scp_codes(value: Any) -> dict[str, float]:
    """An scp_codes cell (a Python dict literal `{'NORM': 100.0}`, read with `ast.literal_eval`: nothing runs)
    as code → likelihood; {} for an empty cell. Raises `ValueError` with the reason."""
    if _missing(value):
        return {}
    if not isinstance(value, str):
        raise ValueError(f"is a {type(value).__name__}, not a dict literal")
    if len(value) > _MAX_SCP_CODES:
        raise ValueError(f"is over the limit of {_MAX_SCP_CODES} characters")  # the quote gives the length
    try:
        codes = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"is not a dict literal ({type(exc).__name__}: {clip_text(str(exc), _MAX_QUOTED)})") from None
    if not isinstance(codes, dict):
        raise ValueError(f"is a {type(codes).__name__}, not a dict")
    out: dict[str, float] = {}
    for code, likelihood in codes.items():
        try:
            number = float(likelihood)
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        if isinstance(likelihood, bool) or not math.isfinite(number):
            raise ValueError(f"gives code {_quote(code)} the likelihood {_quote(likelihood)}, not a finite number")
        out[str(code)] = number
    return out
