"""Dataset builders: metadata tables → `datasets.Dataset` of ECG–report records, and the published
label splits (MERL `data_split`).

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

import ast
import csv
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import datasets
import numpy as np
import pandas as pd
import wfdb
from tqdm.auto import tqdm

from ecglang.errors import ConfigError, EcgReadError
from ecglang.record.io import parse_header_comments
from ecglang.text.reports import clean_mimic_report, count_words, decode_report, normalize_report

PathLike = str | Path

# CPSC 2018 REFERENCE.csv classes (challenge description, Liu et al. 2018): 1 normal, 2 atrial
# fibrillation, 3 first-degree AV block, 4 left bundle branch block, 5 right bundle branch block,
# 6 premature atrial contraction, 7 premature ventricular contraction, 8 ST-segment depression,
# 9 ST-segment elevation.
CPSC2018_CLASSES: dict[int, str] = {
    1: "Normal", 2: "AF", 3: "I-AVB", 4: "LBBB", 5: "RBBB", 6: "PAC", 7: "PVC", 8: "STD", 9: "STE",
}  # fmt: skip

# MERL label-split tasks → file pattern under the split root (`{part}` is train/val/test).
LABEL_SPLIT_FILES: dict[str, str] = {
    "ptbxl_super_class": "ptbxl/super_class/ptbxl_super_class_{part}.csv",
    "ptbxl_sub_class": "ptbxl/sub_class/ptbxl_sub_class_{part}.csv",
    "ptbxl_form": "ptbxl/form/ptbxl_form_{part}.csv",
    "ptbxl_rhythm": "ptbxl/rhythm/ptbxl_rhythm_{part}.csv",
    "icbeb": "icbeb/icbeb_{part}.csv",
    "chapman": "chapman/chapman_{part}.csv",
}
SPLIT_PARTS = ("train", "val", "test")
# Integer 0/1 columns of the split files that are metadata, not labels (icbeb's `sex` is 0/1).
_SPLIT_METADATA_COLUMNS = frozenset(
    {"ecg_id", "patient_id", "strat_fold", "age", "sex", "validation", "height", "weight", "nurse", "site"}
)
# Record key of each task's files, matching the builders' `id` (CPSC record names for icbeb).
_SPLIT_KEY_COLUMN = {"icbeb": "filename", "chapman": "ecg_path"}  # PTB-XL tasks: ecg_id

_MIMIC_REPORT_COLUMNS = [f"report_{i}" for i in range(18)]

_COMMON_FEATURES = {
    "id": datasets.Value("string"),
    "path": datasets.Value("string"),
    "report": datasets.Value("string"),
    "report_original": datasets.Value("string"),
    "report_empty": datasets.Value("bool"),
    "labels": datasets.Sequence(datasets.Value("string")),
    "fold": datasets.Value("int32"),
    "source": datasets.Value("string"),
}


# ---------------------------------------------------------------------------------------------------
# results


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
    dataset: datasets.Dataset
    report: BuildReport


class _RowSink:
    """Collects rows into Arrow tables `batch_size` at a time (Python memory stays O(batch))."""

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


def _features(**extra: Any) -> datasets.Features:
    return datasets.Features({**_COMMON_FEATURES, **extra})


def _read_csv(path: Path, what: str, **kwargs: Any) -> pd.DataFrame:
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


def _require_columns(df: pd.DataFrame, columns: Iterable[str], path: Path, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise EcgReadError(path, f"{what} lacks column(s) {missing}; found {list(df.columns)}")


def _missing_wfdb_files(record: Path) -> str | None:
    """Reason a WFDB record is not on disk (header or its signal file), else None. Stats files only."""
    hea = record.with_name(record.name + ".hea")
    if not hea.is_file():
        return f"file missing: {hea}"
    dat = record.with_name(record.name + ".dat")
    mat = record.with_name(record.name + ".mat")
    if not (dat.is_file() or mat.is_file()):
        return f"file missing: signal file {dat.name} (or {mat.name}) next to {hea.name}"
    return None


def _float_or_none(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


# ---------------------------------------------------------------------------------------------------
# PTB-XL


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
    db = _read_csv(db_path, "PTB-XL database file ptbxl_database.csv")
    _require_columns(
        db,
        ["ecg_id", "report", "scp_codes", "strat_fold", "filename_lr", "filename_hr"],
        db_path,
        "ptbxl_database.csv",
    )
    scp = _read_csv(scp_path, "PTB-XL statements file scp_statements.csv", index_col=0)
    _require_columns(scp, ["diagnostic", "diagnostic_class", "diagnostic_subclass"], scp_path, "scp_statements.csv")
    diagnostic = scp[scp["diagnostic"] == 1]
    superclass_of = diagnostic["diagnostic_class"].dropna().to_dict()
    subclass_of = diagnostic["diagnostic_subclass"].dropna().to_dict()

    fold_set = None if folds is None else {int(f) for f in folds}
    file_column = "filename_hr" if sampling_rate == 500 else "filename_lr"
    features = _features(
        scp_codes=datasets.Value("string"),
        superclass=datasets.Sequence(datasets.Value("string")),
        subclass=datasets.Sequence(datasets.Value("string")),
        age=datasets.Value("float32"),
        sex=datasets.Value("string"),
        patient_id=datasets.Value("int64"),
        filename_hr=datasets.Value("string"),
        filename_lr=datasets.Value("string"),
    )
    sink = _RowSink(features)
    report = BuildReport(source="ptbxl")
    n_other_folds = n_empty = 0
    for row in tqdm(db.itertuples(index=False), total=len(db), desc="PTB-XL metadata", disable=not progress):
        report.n_rows += 1
        ecg_id = str(int(row.ecg_id))
        fold = int(row.strat_fold) if _float_or_none(row.strat_fold) is not None else -1
        if fold_set is not None and fold not in fold_set:
            n_other_folds += 1
            continue
        rel = getattr(row, file_column)
        record = root / str(rel)
        if not isinstance(rel, str) or not rel.strip():
            report.fail(ecg_id, record, f"no {file_column} in ptbxl_database.csv")
            continue
        if check_files and (reason := _missing_wfdb_files(record)):
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
        sex = {0: "M", 1: "F"}.get(int(row.sex)) if _float_or_none(getattr(row, "sex", None)) is not None else None
        patient = _float_or_none(getattr(row, "patient_id", None))
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
                "age": _float_or_none(getattr(row, "age", None)),
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


# ---------------------------------------------------------------------------------------------------
# MERL label splits


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


def _infer_label_columns(df: pd.DataFrame) -> list[str]:
    cols = []
    for col in df.columns:
        if col in _SPLIT_METADATA_COLUMNS or not pd.api.types.is_integer_dtype(df[col]):
            continue
        values = set(np.unique(df[col].to_numpy()).tolist())
        if values <= {0, 1}:
            cols.append(col)
    return cols


def load_label_split(split_root: PathLike, task: str, part: str) -> LabelSplit:
    """Load a MERL label split (`split_root` is the `data_split` folder).

    Tasks: `ptbxl_super_class`, `ptbxl_sub_class`, `ptbxl_form`, `ptbxl_rhythm`, `icbeb`, `chapman`;
    parts: `train`, `val`, `test`. Label columns are the integer columns holding only 0/1, except
    known metadata (`sex`, `age`, ids, fold).
    """
    if task not in LABEL_SPLIT_FILES:
        raise ConfigError(f"unknown label-split task {task!r}; expected one of {list(LABEL_SPLIT_FILES)}")
    if part not in SPLIT_PARTS:
        raise ConfigError(f"unknown split part {part!r}; expected one of {list(SPLIT_PARTS)}")
    path = Path(split_root).expanduser() / LABEL_SPLIT_FILES[task].format(part=part)
    df = _read_csv(path, f"label split file for {task}/{part}")
    key = _SPLIT_KEY_COLUMN.get(task, "ecg_id")
    if key not in df.columns:
        raise EcgReadError(path, f"no record key column {key!r}; found {list(df.columns)}")
    labels = _infer_label_columns(df)
    if not labels:
        raise EcgReadError(path, "no multi-hot (0/1 integer) label columns found")
    return LabelSplit(frame=df, label_columns=labels, task=task, part=part, key_column=key, path=str(path))


# ---------------------------------------------------------------------------------------------------
# MIMIC-IV-ECG


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
    records = _read_csv(rl_path, "MIMIC-IV-ECG record list record_list.csv")
    _require_columns(records, ["subject_id", "study_id", "path"], rl_path, "record_list.csv")
    records = records.drop_duplicates("study_id").set_index("study_id")
    if not mm_path.is_file():
        raise EcgReadError(mm_path, "MIMIC-IV-ECG machine_measurements.csv not found")

    features = _features(
        subject_id=datasets.Value("int64"),
        study_id=datasets.Value("int64"),
        ecg_time=datasets.Value("string"),
    )
    sink = _RowSink(features)
    report = BuildReport(source="mimic-iv-ecg", n_rows=len(records))
    seen: set[int] = set()
    n_short = 0
    try:
        chunks = pd.read_csv(mm_path, chunksize=chunksize, encoding="utf-8", encoding_errors="replace", dtype=str)
        for chunk in tqdm(chunks, desc="MIMIC-IV-ECG reports", unit="chunk", disable=not progress):
            _require_columns(chunk, ["study_id"], mm_path, "machine_measurements.csv")
            present = [c for c in _MIMIC_REPORT_COLUMNS if c in chunk.columns]
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
                if check_files and (reason := _missing_wfdb_files(record)):
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


# ---------------------------------------------------------------------------------------------------
# PhysioNet/CinC folders and CPSC 2018


def load_snomed_mapping(path: PathLike | None = None) -> dict[str, tuple[str, str]]:
    """SNOMED CT code → (abbreviation, name), from a CSV with columns `Dx, SNOMEDCTCode, Abbreviation`
    (the format of the CinC 2020/2021 `dx_mapping_*.csv`). Default: the bundled
    `resources/snomed_ct_ecg.csv` (the 133 CinC 2020/2021 scored and unscored classes)."""
    if path is None:
        text = resources.files("ecglang").joinpath("resources", "snomed_ct_ecg.csv").read_text(encoding="utf-8")
        rows = list(csv.DictReader(text.splitlines()))
        where: PathLike = "ecglang/resources/snomed_ct_ecg.csv"
    else:
        where = Path(path)
        rows = _read_csv(Path(path), "SNOMED CT mapping", dtype=str).to_dict("records")
    mapping: dict[str, tuple[str, str]] = {}
    for row in rows:
        try:
            mapping[str(row["SNOMEDCTCode"]).strip()] = (
                str(row["Abbreviation"]).strip(),
                str(row["Dx"]).strip(),
            )
        except KeyError as exc:
            raise EcgReadError(where, f"SNOMED mapping needs columns Dx, SNOMEDCTCode, Abbreviation ({exc})") from exc
    return mapping


def build_physionet_folder(
    root: PathLike,
    source: str = "physionet",
    snomed_map: PathLike | Mapping[str, tuple[str, str]] | None = None,
    check_files: bool = True,
    progress: bool = True,
) -> BuildResult:
    """A PhysioNet/CinC 2020/2021 folder of WFDB records whose headers carry `# Dx:` SNOMED CT codes.

    Headers are found recursively and read with `wfdb.rdheader` (no signal is loaded). `labels` are
    the abbreviations of the codes (`load_snomed_mapping`); a code missing from the mapping is kept
    as the code itself and counted in `notes["unmapped_codes"]`. These folders have no free-text
    report: `report` is `""` and `report_empty` True.

    Extra columns: `snomed` (codes), `label_names` (full names, the code when unmapped), `age`,
    `sex` ("M"/"F"/None), `fs`, `n_samples`, `n_leads`.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise EcgReadError(root, "folder not found")
    mapping = snomed_map if isinstance(snomed_map, Mapping) else load_snomed_mapping(snomed_map)
    features = _features(
        snomed=datasets.Sequence(datasets.Value("string")),
        label_names=datasets.Sequence(datasets.Value("string")),
        age=datasets.Value("float32"),
        sex=datasets.Value("string"),
        fs=datasets.Value("float32"),
        n_samples=datasets.Value("int64"),
        n_leads=datasets.Value("int32"),
    )
    sink = _RowSink(features)
    report = BuildReport(source=source)
    unmapped: Counter[str] = Counter()
    headers = sorted(root.rglob("*.hea"))
    for hea in tqdm(headers, desc=f"{source} headers", disable=not progress):
        report.n_rows += 1
        record = hea.with_suffix("")
        if check_files and (reason := _missing_wfdb_files(record)):
            report.fail(record.name, record, reason)
            continue
        try:
            header = wfdb.rdheader(str(record))
        except Exception as exc:  # wfdb raises bare ValueError/IndexError/... on bad headers
            report.fail(record.name, record, f"unreadable header: {type(exc).__name__}: {exc}")
            continue
        meta = parse_header_comments(header.comments or [])
        codes = meta.get("snomed") or []
        labels, names = [], []
        for code in codes:
            if code in mapping:
                labels.append(mapping[code][0])
                names.append(mapping[code][1])
            else:
                unmapped[code] += 1
                labels.append(code)
                names.append(code)
        sink.add(
            {
                "id": record.name,
                "path": str(record),
                "report": "",
                "report_original": "",
                "report_empty": True,
                "labels": labels,
                "fold": -1,
                "source": source,
                "snomed": codes,
                "label_names": names,
                "age": meta.get("age"),
                "sex": meta.get("sex"),
                "fs": float(header.fs),
                "n_samples": int(header.sig_len or 0),
                "n_leads": int(header.n_sig or 0),
            }
        )
    report.n_records = sink.n
    report.notes.update({"n_report_empty": sink.n, "unmapped_codes": dict(unmapped)})
    return BuildResult(sink.finish(), report)


def build_cpsc2018(root: PathLike, reference_csv: PathLike, progress: bool = True) -> BuildResult:
    """CPSC 2018 (`root` holds `A0001.mat`, ...; `reference_csv` is the challenge's REFERENCE.csv).

    REFERENCE.csv columns `Recording, First_label, Second_label, Third_label`; classes 1–9 map to
    `CPSC2018_CLASSES` (Normal, AF, I-AVB, LBBB, RBBB, PAC, PVC, STD, STE). Left out with the reason:
    rows whose `.mat` is missing, rows with a class outside 1–9 or no class; `.mat` files without a
    REFERENCE row are listed too. CPSC has no report (`report_empty` True); age and sex live inside
    the `.mat` next to the signal and are read by `ecglang.record.io.load_ecg`, not here.

    Extra column: `label_codes` (the numeric classes, first label first).
    """
    root = Path(root).expanduser().resolve()
    ref_path = Path(reference_csv).expanduser()
    ref = _read_csv(ref_path, "CPSC 2018 REFERENCE.csv", dtype=str)
    _require_columns(ref, ["Recording", "First_label"], ref_path, "REFERENCE.csv")
    label_cols = [c for c in ("First_label", "Second_label", "Third_label") if c in ref.columns]
    features = _features(label_codes=datasets.Sequence(datasets.Value("int32")))
    sink = _RowSink(features)
    report = BuildReport(source="cpsc2018")
    listed: set[str] = set()
    for row in tqdm(ref.to_dict("records"), desc="CPSC 2018 reference", disable=not progress):
        report.n_rows += 1
        name = str(row["Recording"]).strip()
        listed.add(name)
        record = root / name
        if not record.with_suffix(".mat").is_file():
            report.fail(name, record, f"file missing: {record.with_suffix('.mat')}")
            continue
        codes: list[int] = []
        bad = None
        for col in label_cols:
            value = row.get(col)
            if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
                continue
            try:
                code = int(float(value))
            except ValueError:
                code = -1
            if code not in CPSC2018_CLASSES:
                bad = f"unknown class {value!r} in {col} (expected 1-9)"
                break
            if code not in codes:
                codes.append(code)
        if bad or not codes:
            report.fail(name, record, bad or "no class in REFERENCE.csv")
            continue
        sink.add(
            {
                "id": name,
                "path": str(record),
                "report": "",
                "report_original": "",
                "report_empty": True,
                "labels": [CPSC2018_CLASSES[c] for c in codes],
                "fold": -1,
                "source": "cpsc2018",
                "label_codes": codes,
            }
        )
    for mat in sorted(root.glob("*.mat")):
        if mat.stem not in listed:
            report.fail(mat.stem, mat.with_suffix(""), "no REFERENCE.csv row")
    report.n_records = sink.n
    report.notes["n_report_empty"] = sink.n
    return BuildResult(sink.finish(), report)
