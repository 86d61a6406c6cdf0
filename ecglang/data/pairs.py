"""Users' own ECG–report pairs: a CSV, parquet or JSONL file, or a HF dataset folder (`save_to_disk`), with
columns `path, report` and optionally `id, group, age, sex` → a builder table (`ecglang.data.tables`).

    ecglang data build pairs my_pairs.csv --out prepared/      # then: ecglang pretrain ... data.prepared=prepared

`path` is a record `ecglang.record.io.load_ecg` reads without extra arguments: a WFDB record (with or without
`.hea`), a `.mat` (CinC with its `.hea`, or CPSC 2018) or a `.npz` with `fs` (and `leads`); not a bare `.npy`,
which carries no sampling rate. A relative path is taken from the pairs file's folder.
`report` is free English text (lower-cased and tidied by `normalize_report(source="english")`). A row without an
`id` gets `line-N` (N: the row's line in a CSV or JSONL file) or `row-N` (its 1-based row number in a parquet file
or dataset folder), never one of the file's own ids (a `.2` suffix where the file uses that name). `group` (e.g. a
patient id) keeps a patient's records on one side of the held-out split (`data.val_group=group`).

The file is read a row at a time, and of a row only these columns: memory does not grow with the file's width,
nor with a runaway line or cell. A CSV is read as UTF-8 text (every cell a string, as written); a JSONL file a
line at a time, each line parsed as checked JSON (`ecglang.core.jsonio.parse_json`: no NaN, no duplicate keys,
no deep nesting); parquet files and HF dataset folders in batches of Arrow rows.

Bad rows are listed, never dropped silently: a row without a path, whose record file is missing, whose format
is not readable here, with an empty report, or with a repeated id or record (the same file, however written: the
first usable row is kept) is left out and listed in
`BuildReport.failures` (written to `build_failures.csv` by `ecglang data build`); so is a row that cannot be read
(more cells than the header, bad quoting, bytes that are not UTF-8, a JSONL line that is not a JSON object, a
line over `MAX_LINE_CHARS`) and one whose cell has the wrong type or size (a path or report that is not text,
a path with a NUL or over `MAX_PATH_CHARS`, an id or group over `MAX_ID_CHARS`, a report over
`MAX_REPORT_CHARS`). Each reason starts with the row's place, once: its line in a CSV or JSONL file (`line 5: ...`,
`lines 5-6: ...` for a quoted cell over two lines), its 1-based row number in a parquet file or dataset folder
(`row 3: ...`). Records that exist but cannot be read or preprocessed are listed by the signal cache
(`cache_failures.csv`). `failures_as_records` gives both as `ecglang.errors.RecordFailure`. A file that cannot
be read at all (missing, empty, no `path` or `report` column, a column named twice, not parquet) is an
`EcgReadError` naming it; a file none of whose rows is usable is a `ConfigError` with the counts per reason and
the first failures.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ecglang.core.jsonio import JsonInputError, parse_json
from ecglang.data.tables import (
    MAX_LINE_CHARS,
    BuildReport,
    BuildResult,
    CsvRows,
    PathLike,
    RowSink,
    SourceRow,
    TextLines,
    absent_file,
    builder_features,
    failure_text,
    float_or_none,
    missing_wfdb_files,
    root_path,
    user_path,
)
from ecglang.errors import ConfigError, EcgReadError, RecordFailure, clip_text
from ecglang.text.reports import normalize_report

REQUIRED_COLUMNS = ("path", "report")
OPTIONAL_COLUMNS = ("id", "group", "age", "sex")
COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
SINGLE_FILE_SUFFIXES = (".npz", ".mat")
WFDB_SUFFIXES = (".hea", ".dat")

#: Longest report kept (characters): ECG reports are a few hundred; the text tower reads far less.
MAX_REPORT_CHARS = 100_000
#: Longest id or group (characters).
MAX_ID_CHARS = 1_000
#: Longest record path (characters), as Linux's PATH_MAX.
MAX_PATH_CHARS = 4_096
_MAX_QUOTED = 200  # characters of a cell quoted in a failure reason
_MAX_JSON_BYTES = 10_000_000  # a HF dataset folder's state.json / dataset_info.json
_BATCH_ROWS = 10_000  # Arrow rows read at a time from parquet files and HF datasets
_FIRST_FAILURES = 5  # failures quoted in the error of a file without usable rows


@contextmanager
def open_pairs(source: PathLike) -> Iterator[Iterator[SourceRow]]:
    """The rows of a pairs file or HF dataset folder, each a `SourceRow` with the cells of `COLUMNS` it has (as
    stored: text for CSV, JSON values for JSONL, Python values of the Arrow types for parquet and datasets), or
    the problem that keeps it from being read. `EcgReadError` for a source that cannot be read at all."""
    path = root_path(source, "pairs file")
    if path.is_dir():
        yield _dataset_rows(path)
    elif not path.is_file():
        raise EcgReadError(path, "pairs file not found")
    else:
        suffix = path.suffix.lower()
        if suffix == ".csv":
            with CsvRows(path, "pairs file", COLUMNS, REQUIRED_COLUMNS) as rows:
                yield iter(rows)
        elif suffix in (".parquet", ".pq"):
            yield _parquet_rows(path)
        elif suffix in (".jsonl", ".json"):
            try:
                fh = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="\n")
            except OSError as exc:
                raise EcgReadError(path, f"cannot open the pairs file: {exc.strerror or exc}") from None
            with fh:
                yield _jsonl_rows(fh)
        else:
            raise EcgReadError(path, f"unsupported pairs file {suffix!r}: use .csv, .parquet, .jsonl or a folder")


def read_pairs_table(source: PathLike) -> pd.DataFrame:
    """All the pairs as a DataFrame of the cells as stored (see `open_pairs`); `EcgReadError` naming the file and
    the row for a row that cannot be read. `build_pairs` reads the rows one at a time instead."""
    path = root_path(source, "pairs file")
    with open_pairs(path) as rows:
        cells = []
        for row in rows:
            if row.problem:  # it starts with the row's line
                raise EcgReadError(path, row.problem)
            cells.append(row.cells)
    return pd.DataFrame(cells, columns=[c for c in COLUMNS if any(c in r for r in cells)] or list(REQUIRED_COLUMNS))


def record_problem(record: Path) -> str | None:
    """Why the record at `record` cannot be read (missing file, unknown format), else None. Stats files only."""
    suffix = record.suffix.lower()
    if suffix in WFDB_SUFFIXES:
        record = record.with_suffix("")
        suffix = ""
    try:
        if suffix in SINGLE_FILE_SUFFIXES:
            return absent_file(record)
        if suffix == ".npy":
            return "unreadable: a .npy record has no sampling rate or lead names; save it as .npz with fs and leads"
        if suffix == "" or record.with_name(record.name + ".hea").exists():
            return missing_wfdb_files(record)
    except OSError as exc:  # a name the file system refuses (a part over 255 bytes), no permission to look
        return f"unreadable path: {exc.strerror or exc}"
    return f"unreadable: unsupported record format {suffix!r}"


def build_pairs(root: PathLike, check_files: bool = True, progress: bool = False) -> BuildResult:
    """Users' own pairs (see the module docstring). `root` is the pairs file or dataset folder; `progress` shows a
    bar over its rows on stderr."""
    source = root_path(root, "pairs file")
    base = source if source.is_dir() else source.parent
    features = builder_features(group=datasets.Value("string"), age=datasets.Value("float32"),
                                sex=datasets.Value("string"))  # fmt: skip
    sink = RowSink(features)
    report = BuildReport(source="pairs")
    seen: dict[str, str] = {}  # id → where the row that has it is ("line 5")
    # record (resolved, without a WFDB extension) → (where, id) of the row built with it: one ECG in two rows could
    # land on both sides of the held-out split (other groups), and be its own negative in a batch
    seen_records: dict[Path, tuple[str, str]] = {}
    explicit, n_rows = _explicit_ids(source)
    with open_pairs(source) as rows:
        # the row checks (a resolve and a stat each) take ~0.3 ms a row: minutes at scale, so they show progress
        for row in tqdm(rows, total=n_rows, desc="pairs rows", unit="row", disable=not progress):
            report.n_rows += 1
            where = _where(row)
            default_id = _default_id(row, explicit)
            if row.problem:  # it starts with the row's line already
                report.fail(default_id, source, row.problem)
                continue
            values = row.cells
            try:
                record_id = _id_text(values.get("id")) or default_id
            except ValueError as exc:
                report.fail(default_id, source, f"{where}: bad id: {exc}")
                continue
            try:
                raw_path = _path_text(values.get("path"))
            except ValueError as exc:
                report.fail(record_id, "", f"{where}: bad path: {exc}")
                continue
            if not raw_path:
                report.fail(record_id, "", f"{where}: no path")
                continue
            record, problem = _record_path(base, raw_path)
            if record is None:
                report.fail(record_id, _quote(raw_path), f"{where}: bad path: {problem}")
                continue
            if record_id in seen:
                report.fail(
                    record_id,
                    record,
                    f"{where}: duplicate id: {_quote(record_id)} was first used in {seen[record_id]}",
                )
                continue
            if check_files and (problem := record_problem(record)):
                report.fail(record_id, record, f"{where}: {problem}")
                continue
            try:
                original = _report_text(values.get("report"))
            except ValueError as exc:
                report.fail(record_id, record, f"{where}: bad report: {exc}")
                continue
            text = normalize_report(original, source="english")
            if not text:
                report.fail(record_id, record, f"{where}: empty report")
                continue
            try:
                group = _id_text(values.get("group"))
            except ValueError as exc:
                report.fail(record_id, record, f"{where}: bad group: {exc}")
                continue
            # last: a row left out for its own fault says that fault
            same = record.with_suffix("") if record.suffix.lower() in WFDB_SUFFIXES else record
            if same in seen_records:
                first_where, first_id = seen_records[same]
                report.fail(record_id, same, f"{where}: duplicate record: {same} was first used in {first_where} (id "
                            f"{_quote(first_id)}); one ECG in two pairs could be on both sides of the held-out split: "
                            "give it one row")  # fmt: skip
                continue
            seen[record_id] = where
            seen_records[same] = (where, record_id)
            sex = _text(values.get("sex")).upper()[:1] or None
            sink.add({
                "id": record_id, "path": str(same), "report": text, "report_original": original,
                "report_empty": False, "labels": [], "fold": -1, "source": "pairs", "group": group or record_id,
                "age": float_or_none(values.get("age")), "sex": sex if sex in ("M", "F") else None,
            })  # fmt: skip
    report.n_records = sink.n
    report.notes["pairs file"] = str(source)
    if sink.n == 0:
        first = "; ".join(failure_text(f.record_id, f.reason) for f in report.failures[:_FIRST_FAILURES])
        raise ConfigError(f"{source}: no usable pairs ({report.summary()})" + (f"; first: {first}" if first else ""))
    return BuildResult(sink.finish(), report)


def _where(row: SourceRow) -> str:
    """Where a row is, for a reason: its line(s) in a text file ("line 5"), else its 1-based row number."""
    return row.where or f"row {row.index + 1}"


def _default_id(row: SourceRow, explicit: set[str]) -> str:
    """The id of a row that has none: `line-N` (the row's first line) or `row-N` (parquet, datasets), suffixed
    `.2`, `.3`, ... in the rare file whose own ids include it, so that it never collides with an explicit id."""
    base = f"line-{row.where.split()[1].split('-')[0]}" if row.where else f"row-{row.index + 1}"
    record_id, k = base, 1
    while record_id in explicit:
        k += 1
        record_id = f"{base}.{k}"
    return record_id


def _explicit_ids(source: Path) -> tuple[set[str], int]:
    """The ids the file gives, and its number of rows (the progress bar's total), read in a first pass: rows
    without an id get defaults none of these can equal, whatever the order of the rows (a row before its namesake,
    or after it)."""
    ids: set[str] = set()
    n_rows = 0
    with open_pairs(source) as rows:
        for row in rows:
            n_rows += 1
            try:
                if not row.problem and (text := _id_text(row.cells.get("id"))):
                    ids.add(text)
            except ValueError:
                pass  # listed by the build itself
    return ids, n_rows


def failures_as_records(
    build_failures_csv: PathLike, cache_failures_csv: PathLike | None = None
) -> list[RecordFailure]:
    """The rows a prepared pairs folder left out, as `RecordFailure`s (stage "build" or "cache"). `EcgReadError`
    naming the file (and line) for a list that lacks its columns or has a row that cannot be read."""
    out = [RecordFailure(r, "build", why, path=p) for r, p, why in _listing(build_failures_csv, "record_id")]
    if cache_failures_csv is not None and Path(cache_failures_csv).is_file():
        out += [RecordFailure(r, "cache", why, path=p) for r, p, why in _listing(cache_failures_csv, "id")]
    return out


# ------------------------------------------------------------------------------------------------ readers


def _listing(path: PathLike, key: str) -> Iterator[tuple[str, str, str]]:
    columns = (key, "path", "reason")
    with CsvRows(Path(path), Path(path).name, columns, columns) as rows:
        for row in rows:
            if row.problem:
                raise EcgReadError(path, row.problem)
            yield tuple(row.cells[c] or "" for c in columns)  # type: ignore[misc]


def _check_columns(path: Path, names: list[str]) -> list[str]:
    """The columns of `COLUMNS` in `names`; `EcgReadError` for a missing required one or one named twice."""
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        found = clip_text(str(names), 300)
        raise EcgReadError(path, f"pairs lack column(s) {missing}; need {list(REQUIRED_COLUMNS)}, found {found}")
    for column in COLUMNS:
        if names.count(column) > 1:
            raise EcgReadError(path, f"column {column!r} appears {names.count(column)} times; rename the extra ones")
    return [c for c in COLUMNS if c in names]


def _arrow_rows(path: Path, batches: Iterator[pa.RecordBatch | pa.Table]) -> Iterator[SourceRow]:
    index = 0
    try:
        for batch in batches:
            for cells in batch.to_pylist():
                yield SourceRow(index, "", cells)
                index += 1
    except (OSError, pa.ArrowException, ValueError) as exc:  # a corrupt page or shard: the rest cannot be read
        raise EcgReadError(path, f"cannot read the rows from row {index} on: {clip_text(str(exc), 300)}") from None


def _parquet_rows(path: Path) -> Iterator[SourceRow]:
    try:
        parquet = pq.ParquetFile(path)
        names = list(parquet.schema_arrow.names)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise EcgReadError(path, f"not a readable parquet file: {clip_text(str(exc), 300)}") from None
    columns = _check_columns(path, names)
    return _arrow_rows(path, parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns))


def _dataset_rows(path: Path) -> Iterator[SourceRow]:
    """A `save_to_disk` folder. Its JSON files are checked first (`parse_json`), so that a hostile one is an
    `EcgReadError` naming it rather than an error deep in `datasets`."""
    for name in ("state.json", "dataset_info.json", "dataset_dict.json"):
        meta = path / name
        if meta.is_file():
            if meta.stat().st_size > _MAX_JSON_BYTES:
                raise EcgReadError(meta, f"over {_MAX_JSON_BYTES} bytes: not a dataset's {name}")
            try:
                parse_json(meta.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise EcgReadError(meta, f"cannot read: {exc}") from None
            except JsonInputError as exc:
                raise EcgReadError(meta, f"invalid JSON: {exc}") from None
    try:
        ds = datasets.load_from_disk(str(path))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pa.ArrowException) as exc:
        # datasets' own errors for a folder it cannot load; KeyError/TypeError/AttributeError for JSON files of
        # the wrong shape ({} or [] where it expects its keys)
        raise EcgReadError(path, f"not a saved HF dataset: {type(exc).__name__}: {clip_text(str(exc), 300)}") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        raise EcgReadError(path, f"a dataset with splits {splits}: give one split's folder, e.g. {path / splits[0]}")
    columns = _check_columns(path, list(ds.column_names))
    return _arrow_rows(path, ds.select_columns(columns).with_format("arrow").iter(batch_size=_BATCH_ROWS))


def _jsonl_rows(fh: Any) -> Iterator[SourceRow]:
    """One JSON object a line (blank lines skipped), each parsed as checked JSON; a line that is not one is a
    row with its problem."""
    lines = TextLines(fh, "fail", MAX_LINE_CHARS)
    index = 0
    for line in lines:
        where = f"line {lines.number}"
        problem = lines.problems.pop(lines.number, "")
        obj: Any = None
        if not problem:
            if not line.strip():
                continue
            try:
                obj = parse_json(line)
            except JsonInputError as exc:
                problem = f"invalid JSON: {exc.in_line()}"
            else:
                if not isinstance(obj, dict):
                    problem = f"invalid JSON: {_kind(obj)}, not an object with {', '.join(REQUIRED_COLUMNS)}"
        if problem:
            yield SourceRow(index, where, {}, f"{where}: {problem}")
        else:
            yield SourceRow(index, where, {c: obj[c] for c in COLUMNS if c in obj})
        index += 1


# ------------------------------------------------------------------------------------------------- cells


def _kind(value: Any) -> str:
    """What a cell holds, for a reason: "a number", "a list of 3 items", ..."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object with {len(value)} keys"
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    return f"a {type(value).__name__}"


def _quote(value: Any) -> str:
    """A cell for a reason: text and numbers quoted (text cut to `_MAX_QUOTED` characters), anything else
    described (never its whole repr: a list of a million items is not printed)."""
    if isinstance(value, str):
        shown = repr(value[:_MAX_QUOTED])
        return shown if len(value) <= _MAX_QUOTED else f"{shown}… ({len(value)} characters)"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return clip_text(repr(value), _MAX_QUOTED)
    return _kind(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    return "" if _missing(value) else str(value).strip()


def _id_text(value: Any) -> str:
    """An id or group cell: text or a number (as text), "" when empty. `ValueError` with the reason otherwise."""
    if _missing(value):
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{_quote(value)} is not text or a number")
    text = str(value).strip()
    if len(text) > MAX_ID_CHARS:
        raise ValueError(f"{_quote(text)} is over the limit of {MAX_ID_CHARS} characters")
    return text


def _path_text(value: Any) -> str:
    """A path cell: text, "" when empty. `ValueError` with the reason otherwise."""
    if _missing(value):
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{_quote(value)} is not a file name")
    return value.strip()


def _report_text(value: Any) -> str:
    """A report cell: text (or UTF-8 bytes), "" when empty. `ValueError` with the reason otherwise."""
    if _missing(value):
        return ""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{_kind(value)} that are not UTF-8 text") from None
    if not isinstance(value, str):
        raise ValueError(f"{_quote(value)} is not text")
    if len(value) > MAX_REPORT_CHARS:
        raise ValueError(f"{_quote(value)} is over the limit of {MAX_REPORT_CHARS} characters")
    return value.strip()


def _record_path(base: Path, raw: str) -> tuple[Path | None, str]:
    """(the record's absolute path, "") or (None, why `raw` is not a usable path)."""
    if len(raw) > MAX_PATH_CHARS:
        return None, f"{_quote(raw)} is over the limit of {MAX_PATH_CHARS} characters"
    try:
        return user_path(raw, base), ""
    except ValueError as exc:
        return None, str(exc)


__all__ = ["COLUMNS", "MAX_ID_CHARS", "MAX_PATH_CHARS", "MAX_REPORT_CHARS", "OPTIONAL_COLUMNS", "REQUIRED_COLUMNS",
           "build_pairs", "failures_as_records", "open_pairs", "read_pairs_table", "record_problem"]  # fmt: skip
