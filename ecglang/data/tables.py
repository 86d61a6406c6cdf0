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
A reason reads `kind: details`, optionally after the row's position (`line 5: not UTF-8 text: ...`);
`BuildReport.summary` counts failures by kind.

Builders that read users' CSV files row by row use `CsvRows`: every cell is text (no type guessing), one row is
in memory at a time and of it only the columns asked for, and a row that cannot be read (more cells than the
header, bad quoting, bytes that are not UTF-8, a line over `MAX_LINE_CHARS`) is a `SourceRow` with its problem
and line, for the builder to list, instead of an error that stops the build (or, for a first row longer than
the header, pandas' silent shift of every column).

Empty reports are a documented choice: PTB-XL, CinC and CPSC records with an empty report are kept
(they still carry labels) and flagged `report_empty=True`; MIMIC-IV-ECG, which is used for
ECG–text pretraining only, drops reports shorter than `min_words` (empty ones included) with the
reason listed.
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import datasets
import pandas as pd

from ecglang.errors import EcgReadError, clip_text

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


_DEFAULT_ID = re.compile(r"(line|row)-(\d+)")  # the id a pairs row without one gets (`ecglang.data.pairs`)


def failure_text(record_id: str, reason: str) -> str:
    """A failure as one listing line, `id: reason`; only the reason when the id is a row's default id
    (`line-5`, `row-3`) and the reason starts with that place already, so that the place is said once."""
    m = _DEFAULT_ID.fullmatch(record_id)
    if m and reason.startswith((f"{m[1]} {m[2]}:", f"{m[1]}s {m[2]}-")):
        return reason
    return f"{record_id}: {reason}"


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
        """Failures per kind of reason: the text before the first ':', after the row's position if the reason
        starts with one (`row 3: line 5: not UTF-8 text: ...` counts as "not UTF-8 text")."""
        return Counter(
            clip_text(_POSITION.sub("", f.reason, count=1).split(":", 1)[0], _MAX_KIND) for f in self.failures
        )

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
    """Read a metadata CSV; UTF-8 first, cp1252 as the fallback for old exports.

    A first data row with one cell more than the header made pandas take the first column as the row index
    and shift every column one to the left (ids read as folds, paths as reports) without a word; here the
    columns stay where the header puts them (`index_col=False` unless the caller gives one) and such a row
    is an `EcgReadError`, as a later row with too many cells already was (pandas' ParserError)."""
    if not path.is_file():
        raise EcgReadError(path, f"{what} not found")
    kwargs.setdefault("index_col", False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            try:
                return pd.read_csv(path, encoding="utf-8", **kwargs)
            except UnicodeDecodeError:
                return pd.read_csv(path, encoding="cp1252", **kwargs)
    except pd.errors.ParserWarning as exc:
        raise EcgReadError(path, f"cannot parse {what}: a row has more cells than the header ({exc})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise EcgReadError(path, f"cannot parse {what}: {exc}") from exc


def require_columns(df: pd.DataFrame, columns: Iterable[str], path: Path, what: str) -> None:
    """`EcgReadError` naming `path` when `df` lacks any of `columns`."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise EcgReadError(path, f"{what} lacks column(s) {missing}; found {list(df.columns)}")


def absent_file(path: Path) -> str | None:
    """Why `path` is not a file that can be read (missing, a folder, a device or pipe), else None.
    A FIFO or /dev/zero exists but is no record: "file missing" said the wrong thing, reading one never ends."""
    if path.is_file():
        return None
    return f"not a regular file: {path} (a folder, device or pipe)" if path.exists() else f"file missing: {path}"


def missing_wfdb_files(record: Path) -> str | None:
    """Reason a WFDB record is not on disk (header or its signal file), else None. Stats files only; a name the
    file system refuses (a part over 255 bytes, no permission to look) is a reason too, not an `OSError`."""
    hea = record.with_name(record.name + ".hea")
    try:
        if problem := absent_file(hea):
            return problem
        dat = record.with_name(record.name + ".dat")
        mat = record.with_name(record.name + ".mat")
        if not (dat.is_file() or mat.is_file()):
            if dat.exists() or mat.exists():
                return absent_file(dat if dat.exists() else mat)
            return f"file missing: signal file {dat.name} (or {mat.name}) next to {hea.name}"
    except OSError as exc:
        return f"unreadable path: {clip_text(str(hea), _MAX_KIND * 4)}: {exc.strerror or exc}"
    return None


def user_path(value: PathLike, base: Path | None = None) -> Path:
    """`value` (a path a user wrote: a dataset root, a record path of a pairs file) made absolute: `~` expanded,
    taken from `base` when relative (else from the current folder), symlinks resolved. `ValueError` with the
    reason for a path no file system takes: a NUL character, `~name` of a user this machine does not know, a
    symlink loop, a name the system refuses (a part over 255 bytes)."""
    text = str(value)
    if "\0" in text:
        raise ValueError(f"{clip_text(repr(text), 200)} contains a NUL character")
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        raise ValueError(f"{clip_text(repr(text), 200)} starts with '~' but no home folder is known for it") from None
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        return path.resolve()
    except RuntimeError as exc:  # a symlink loop
        raise ValueError(f"{clip_text(repr(text), 200)}: {exc}") from None
    except OSError as exc:
        raise ValueError(f"{clip_text(repr(text), 200)}: {exc.strerror or exc}") from None


def root_path(value: PathLike, what: str) -> Path:
    """`user_path(value)` for a builder's root; `EcgReadError` naming it (and `what`) when it is unusable."""
    try:
        return user_path(value)
    except ValueError as exc:
        raise EcgReadError(None, f"{what}: {exc}") from None


def float_or_none(value: Any) -> float | None:
    """`float(value)`, or None for missing, non-numeric and NaN values."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


# ------------------------------------------------------------------------------------------ row-wise CSV

#: Longest line read from a metadata CSV or JSONL file (characters). Far over any real row (MIMIC's are under
#: 1,000 characters, a pairs row with a long report a few thousand), so that one runaway line (a file that is
#: not text, a cell of gigabytes) is listed as a bad row and never held in memory.
MAX_LINE_CHARS = 1_000_000
_SKIP_CHARS = 1 << 16  # characters read at a time past the end of an over-long line
_MAX_KIND = 80  # characters of a failure kind in `BuildReport.summary`
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, under errors="surrogateescape"
_POSITION = re.compile(r"^(?:(?:row|line|lines) \d+(?:-\d+)?: )+")  # "row 3: line 5: " before a reason

Undecodable = Literal["fail", "replace", "cp1252"]


@dataclass
class SourceRow:
    """One data row of a metadata file. `index`: its number among the data rows, from 0 (blank lines do not
    count); `where`: its place in the file ("line 5", "lines 5-6"; "" in a file without lines); `cells`: the
    columns asked for (None where the row has no cell); `problem`: "" or why the row cannot be read, starting
    with `where` (its `cells` are then empty)."""

    index: int
    where: str
    cells: dict[str, Any]
    problem: str = ""


class TextLines:
    """The lines of a text file opened with `errors="surrogateescape"`, for `csv.reader` or a line parser.

    `number` is the number of the line last given (from 1). A line over `limit` characters is read past
    without keeping it, given as a bare newline and noted in `problems` (line number → reason); so is a line
    with bytes that are not UTF-8 when `undecodable` is "fail" ("replace" puts U+FFFD for each such byte and
    notes nothing; "cp1252" reads the whole line as cp1252, the fallback for old exports)."""

    def __init__(self, fh: IO[str], undecodable: Undecodable = "fail", limit: int = MAX_LINE_CHARS) -> None:
        self.fh, self.undecodable, self.limit = fh, undecodable, limit
        self.number = 0
        self.problems: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        while line := self.fh.readline(self.limit + 1):
            self.number += 1
            if len(line) > self.limit and not line.endswith(("\n", "\r")):
                while (rest := self.fh.readline(_SKIP_CHARS)) and not rest.endswith(("\n", "\r")):
                    pass
                self.problems[self.number] = f"line too long: over {self.limit} characters"
                yield "\n"
                continue
            bad = _ESCAPED.search(line)
            if bad is not None:
                if self.undecodable == "cp1252":
                    line = line.encode("utf-8", "surrogateescape").decode("cp1252", "replace")
                else:
                    if self.undecodable == "fail":
                        byte = ord(bad.group()) - 0xDC00
                        self.problems[self.number] = f"not UTF-8 text: byte 0x{byte:02x} at column {bad.start() + 1}"
                    line = _ESCAPED.sub("\ufffd", line)
            yield line


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"bad CSV: a cell is longer than {csv.field_size_limit()} characters"
    if "unexpected end of data" in text:
        return "bad CSV: a quoted cell is not closed before the end of the file"
    if "expected after" in text:  # `"abc"def`: pandas glued the parts; it is more often a quote left unpaired
        return 'bad CSV: text after the closing quote of a cell (write a quote inside a quoted cell as "")'
    return f"bad CSV: {clip_text(text, _MAX_KIND)}"


class CsvRows:
    """The data rows of a CSV file, one `SourceRow` at a time (use as a context manager, iterate once).

    Every cell is text, as written. Only `columns` are kept of a row, so memory holds one row whatever the file's
    width or length. The header (the first line that is not blank) is checked when the object is made:
    `EcgReadError` naming the file for a file that is missing or empty, a header that cannot be read, a
    `required` column it lacks, or one of `columns` named twice (pandas would read the first and rename the
    other). Rows are not errors: a row with more non-empty cells than the header, bad quoting, a cell over
    `csv.field_size_limit()` characters, a line over `MAX_LINE_CHARS` or (with `undecodable="fail"`) bytes
    that are not UTF-8 comes with its `problem`; the rows after it are read as usual. A row with fewer cells
    than the header has None for the missing ones. `what` names the file in errors ("record_list.csv")."""

    def __init__(
        self,
        path: Path,
        what: str,
        columns: Sequence[str],
        required: Sequence[str] = (),
        undecodable: Undecodable = "fail",
    ) -> None:
        self.path, self.what = Path(path), what
        if not self.path.is_file():
            raise EcgReadError(self.path, f"{what} not found")
        try:
            self._fh = self.path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
        except OSError as exc:
            raise EcgReadError(self.path, f"cannot open the {what}: {exc.strerror or exc}") from None
        try:
            self._lines = TextLines(self._fh, undecodable)
            self._reader = csv.reader(self._lines, strict=True)
            self.header = self._read_header()
            found = clip_text(str(self.header), 300)
            missing = [c for c in required if c not in self.header]
            if missing:
                raise EcgReadError(self.path, f"{what} lacks column(s) {missing}; found {found}")
            for column in columns:
                if (n := self.header.count(column)) > 1:
                    problem = f"column {column!r} appears {n} times in the header; rename or remove the extra ones"
                    raise EcgReadError(self.path, f"{what}: {problem}")
        except BaseException:
            self.close()
            raise
        self.positions = {c: self.header.index(c) for c in columns if c in self.header}

    def _read_header(self) -> list[str]:
        while True:
            try:
                row = next(self._reader)
            except StopIteration:
                raise EcgReadError(self.path, f"{self.what} is empty: no header line") from None
            except csv.Error as exc:
                raise EcgReadError(self.path, f"line {self._reader.line_num}: {_csv_problem(exc)}") from None
            number = self._reader.line_num
            if number in self._lines.problems:
                raise EcgReadError(self.path, f"line {number} (the header): {self._lines.problems[number]}")
            if row:
                return row

    def __iter__(self) -> Iterator[SourceRow]:
        width, index = len(self.header), 0
        while True:
            first = self._reader.line_num + 1
            try:
                row: list[str] | None = next(self._reader)
                problem = ""
            except StopIteration:
                return
            except csv.Error as exc:
                row, problem = None, _csv_problem(exc)
            last = self._reader.line_num
            notes = [(n, self._lines.problems.pop(n)) for n in range(first, last + 1) if n in self._lines.problems]
            if row == [] and not notes:
                continue  # a blank line
            where = f"line {first}" if first >= last else f"lines {first}-{last}"
            if notes:
                problem = "; ".join(f"line {n}: {note}" for n, note in notes)
            elif problem:
                problem = f"{where}: {problem}"
            elif row is not None and len(row) > width and any(cell.strip() for cell in row[width:]):
                problem = f"{where}: bad CSV: {len(row)} cells, the header has {width}"
            cells = (
                {}
                if problem or row is None
                else {c: row[i] if i < len(row) else None for c, i in self.positions.items()}
            )
            yield SourceRow(index, where, cells, problem)
            index += 1

    def close(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()

    def __enter__(self) -> CsvRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
