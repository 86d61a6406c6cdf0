"""Tables keyed by record: a CSV whose rows belong to records and carry side information (reports, age, sex).

Two layouts are read. PTB-XL's `ptbxl_database.csv` as it is: a row's ids are the record names of
`filename_hr` and `filename_lr` and its `ecg_id`. Any other CSV needs an `id` column (the record's id) or a
`path` column (the id is what the readers give the record there, `record_id_of`: a dot in a name is not a
suffix; `record_file_key` tells records of one name in two folders apart). Both the reports table of
`ecglang prototypes` and the demographics table of `zero-shot --metadata` read through here, so a record gets
the same id from either and from the reader.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ecglang.errors import ConfigError
from ecglang.record.ecg import record_id_of

__all__ = ["RecordRow", "RecordTable", "read_record_table", "record_file_key"]

PTBXL_COLUMNS = frozenset({"filename_hr", "filename_lr", "ecg_id"})


def record_file_key(path: str | os.PathLike, base: str | os.PathLike | None = None) -> str:
    """The record at `path` as one key, whichever way it is written: `~` expanded, taken from `base` when relative,
    symbolic links resolved, and without a record suffix (`record_id_of`: `a/rec.hea`, `a/rec.dat` and `a/rec` are
    one WFDB record). `ConfigError` for a path no file system takes (a NUL character, a symbolic link loop)."""
    try:
        full = Path(path).expanduser()
        if base is not None and not full.is_absolute():
            full = Path(base) / full
        full = full.resolve()
        return str(full.with_name(record_id_of(full)))
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a link loop or an unknown `~user`
        raise ConfigError(f"{str(path)!r:.200}: not a usable record path ({exc})") from None


@dataclass(frozen=True)
class RecordRow:
    """One row: its line in the file (for errors), the record ids it belongs to, and its cells (stripped)."""

    line: int
    ids: tuple[str, ...]
    cells: dict[str, str]


@dataclass(frozen=True)
class RecordTable:
    path: Path
    ptbxl: bool  # PTB-XL's database: its columns follow PTB-XL's conventions (e.g. sex 0 = male)
    rows: list[RecordRow]
    key: str | None = None  # the column rows are keyed by: "id" or "path" (None: PTB-XL's database)


def read_record_table(path: str | os.PathLike, what: str, needs_any: Iterable[str]) -> RecordTable:
    """Read `path` as a `what` ("reports table", ...) that must hold at least one of the `needs_any` columns.

    Raises `ConfigError` naming the file (and the line) for an unreadable file, missing columns or a row
    with no record id."""
    path = Path(path)
    needs = sorted(needs_any)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, strict=True)  # an unterminated quote is an error, not the rest of the file
            columns = set(reader.fieldnames or ())
            raw = [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc}") from None
    if not columns & set(needs):
        wanted = " or ".join(repr(c) for c in needs)
        article = "an" if needs[0][0] in "aeiou" else "a"
        raise ConfigError(f"{path}: a {what} needs {article} {wanted} column; found {sorted(columns)}")
    ptbxl = PTBXL_COLUMNS <= columns
    key = "id" if "id" in columns else "path" if "path" in columns else None
    if not ptbxl and key is None:
        raise ConfigError(f"{path}: a {what} needs an 'id' or 'path' column; found {sorted(columns)}")
    rows = []
    for line, cells in raw:
        if ptbxl:
            ids = [record_id_of(cells[c]) for c in ("filename_hr", "filename_lr") if cells.get(c)]
            ids += [cells["ecg_id"].split(".")[0]] if cells.get("ecg_id") else []
        else:
            record = cells.get(key, "")
            ids = [record if key == "id" else record_id_of(record)] if record else []
        if not ids:
            raise ConfigError(f"{path}, line {line}: no record id")
        rows.append(RecordRow(line, tuple(ids), cells))
    return RecordTable(path, ptbxl, rows, None if ptbxl else key)
