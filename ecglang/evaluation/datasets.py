"""Label sets for evaluation: a published label split (or any labels CSV) joined with records on disk.

A *label set* is what one row of the evaluation tables is about: a list of label codes, the multi-hot
ground truth of a list of records, and the prompt set whose codes are those labels. Two kinds:

* the MERL label splits (`merl/data_split`), named by their prompt set: `ptbxl_super`, `ptbxl_sub`,
  `ptbxl_form`, `ptbxl_rhythm` (records from a PTB-XL root through `build_ptbxl`, falling back to the
  split's own `filename_hr`), `cpsc2018` (alias `icbeb`; records `<root>/<filename>.mat`) and `chapman`
  (records `<root>/<ecg_path>`, with or without the leading `chapman/` folder);
* `cinc2021` (alias `cinc`): a PhysioNet/CinC folder of WFDB records labelled by the SNOMED CT codes of their
  own `# Dx:` header comments (`load_header_label_set`), no split file;
* any folder of records plus a labels CSV (`load_labels_csv`): a record-id column and 0/1 columns.

Nothing is dropped silently. Split rows whose record is not on disk are *missing*: counted, listed with
the reason (`LabelSetData.missing`) and written to `missing.csv` by the runner. Records cut by `limit`
are counted too. Files are only stat-ed here; reading happens in the runner, whose read/process failures
are reported separately.
"""

from __future__ import annotations

import bisect
import csv
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecglang.data.builders import SPLIT_PARTS, build_ptbxl, load_label_split
from ecglang.data.snomed import load_snomed_mapping
from ecglang.data.splits import zero_one_column
from ecglang.errors import ConfigError, EcgReadError, PromptError, RecordFailure
from ecglang.evaluation.config import PARTS
from ecglang.record.io import scan_records
from ecglang.record.wfdb_reader import MAX_HEADER_BYTES, parse_header_comments, read_text, split_header
from ecglang.scores.prompts import PromptSet, load_prompt_set

__all__ = ["DATASETS", "LABEL_SETS", "LabelSetData", "PtbxlIndex", "load_header_label_set", "load_label_set",
           "load_labels_csv", "parse_data_roots", "ptbxl_index", "resolve_label_set", "sample_limit"]  # fmt: skip

log = logging.getLogger(__name__)

#: The "task" of a label set whose labels come from the records' own headers (`load_header_label_set`).
HEADER_LABELS = "headers"

# Published label sets: name → (prompt set, MERL task of `builders.load_label_split`, dataset of the records).
LABEL_SETS: dict[str, tuple[str, str, str]] = {
    "ptbxl_super": ("ptbxl_super", "ptbxl_super_class", "ptbxl"),
    "ptbxl_sub": ("ptbxl_sub", "ptbxl_sub_class", "ptbxl"),
    "ptbxl_form": ("ptbxl_form", "ptbxl_form", "ptbxl"),
    "ptbxl_rhythm": ("ptbxl_rhythm", "ptbxl_rhythm", "ptbxl"),
    "cpsc2018": ("cpsc2018", "icbeb", "cpsc2018"),
    "chapman": ("chapman", "chapman", "chapman"),
    # No split file: the labels are the SNOMED CT codes in the records' own `# Dx:` header comments.
    "cinc2021": ("cinc2021", HEADER_LABELS, "cinc2021"),
}
_ALIASES = {
    "icbeb": "cpsc2018",
    "cpsc": "cpsc2018",
    "ptbxl_super_class": "ptbxl_super",
    "ptbxl_sub_class": "ptbxl_sub",
    "cinc": "cinc2021",
    "physionet2021": "cinc2021",
}
DATASETS = ("ptbxl", "cpsc2018", "chapman", "cinc2021")

# Columns of a labels CSV that hold 0/1 integers but are not labels.
_METADATA_COLUMNS = frozenset(
    {"ecg_id", "patient_id", "strat_fold", "fold", "age", "sex", "validation", "height", "weight", "nurse", "site"}
)
_ID_COLUMNS = ("record_id", "record", "id", "ecg_id", "filename", "file", "path", "ecg_path", "name")
_FOLD_COLUMNS = ("strat_fold", "fold")


def _missing(record_id: str, path: str, reason: str) -> RecordFailure:
    """A labelled row whose record is not on disk (or not usable as a path), and why."""
    return RecordFailure(record_id, "missing", reason, path=path)


@dataclass
class LabelSetData:
    """One label set joined with the records found on disk.

    `labels` is int8 `[n_records, n_labels]` in `label_codes` order, aligned with `record_ids`/`paths`
    (the records found on disk, in file order, at most `limit`). `folds` holds each record's fold
    (PTB-XL `strat_fold`; -1 where unknown). `names` maps each code to its readable name.
    """

    name: str
    dataset: str
    part: str
    label_codes: list[str]
    names: dict[str, str]
    prompt_set: PromptSet | None
    record_ids: list[str]
    paths: list[str]
    labels: np.ndarray
    folds: np.ndarray
    n_rows: int
    missing: list[RecordFailure] = field(default_factory=list)  # stage "missing": not on disk
    n_limited: int = 0
    task: str | None = None
    sources: list[str] = field(default_factory=list)  # split/labels files read
    notes: dict[str, Any] = field(default_factory=dict)
    # per record, what its file lacks and the dataset's table knows (PTB-XL age/sex); None: nothing
    metadata: list[dict[str, Any]] | None = None

    @property
    def n_found(self) -> int:
        return len(self.record_ids) + self.n_limited

    def subset(self, keep: np.ndarray, part: str | None = None) -> LabelSetData:
        """The same label set restricted to the records where `keep` (bool `[n]`) is True."""
        idx = np.flatnonzero(keep)
        return LabelSetData(
            name=self.name, dataset=self.dataset, part=part or self.part, label_codes=list(self.label_codes),
            names=dict(self.names), prompt_set=self.prompt_set, record_ids=[self.record_ids[i] for i in idx],
            paths=[self.paths[i] for i in idx], labels=self.labels[idx], folds=self.folds[idx],
            n_rows=self.n_rows, missing=list(self.missing), n_limited=self.n_limited, task=self.task,
            sources=list(self.sources), notes=dict(self.notes),
            metadata=None if self.metadata is None else [self.metadata[i] for i in idx],
        )  # fmt: skip

    def record_summary(self, max_examples: int = 10) -> dict[str, Any]:
        """Counts for the report: rows in the labels file, found on disk, missing (by reason), limited."""
        reasons = Counter(m.reason.split(":", 1)[0] for m in self.missing)
        return {
            "rows": self.n_rows,
            "found": self.n_found,
            "missing": len(self.missing),
            "missing_by_reason": dict(reasons.most_common()),
            "missing_examples": [m.record for m in self.missing[:max_examples]],
            "left_out_by_limit": self.n_limited,
            "selected": len(self.record_ids),
            "positives_selected": {c: int(v) for c, v in zip(self.label_codes, self.labels.sum(axis=0), strict=True)},
        }


# ---------------------------------------------------------------------------------------------------------
# names and roots


def resolve_label_set(name: str) -> tuple[str, PromptSet, str, str]:
    """`(canonical name, prompt set, MERL task, dataset)` of a published label set name or alias.

    The prompt set's codes must be the split's label columns; its `merl_split` has to name the task.
    """
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in LABEL_SETS:
        known = ", ".join([*LABEL_SETS, *_ALIASES])
        raise ConfigError(f"unknown label set {name!r}; known: {known} (or use --labels-csv FILE --records DIR)")
    prompt_name, task, dataset = LABEL_SETS[key]
    ps = load_prompt_set(prompt_name)
    if ps.merl_split is not None and ps.merl_split.replace("/", "_") != task:
        raise PromptError(ps.path, f"prompt set {prompt_name!r} names split {ps.merl_split!r}, expected task {task!r}")
    return key, ps, task, dataset


def parse_data_roots(items: Sequence[str | Path] | str | Path | None) -> dict[str, Path]:
    """Record roots from `DIR` (every dataset) and/or `DATASET=DIR` items (`ptbxl`, `cpsc2018`, `chapman`)."""
    if items is None:
        return {}
    if isinstance(items, (str, Path)):
        items = [items]
    roots: dict[str, Path] = {}
    for item in items:
        text = str(item)
        key, sep, value = text.partition("=")
        if sep and key.strip().lower() in (*DATASETS, "icbeb", "cpsc", "cinc"):
            dataset = {"icbeb": "cpsc2018", "cpsc": "cpsc2018", "cinc": "cinc2021"}.get(
                key.strip().lower(), key.strip().lower()
            )
            roots[dataset] = Path(value).expanduser()
        elif sep and not Path(text).exists():
            raise ConfigError(f"data root {text!r}: unknown dataset {key!r}; use one of {list(DATASETS)}=DIR")
        else:
            roots["default"] = Path(text).expanduser()
    for dataset, path in roots.items():
        if not path.is_dir():
            raise EcgReadError(path, f"data root for {dataset} is not a folder")
    return roots


def _root_for(roots: Mapping[str, Path], dataset: str) -> Path:
    root = roots.get(dataset) or roots.get("default")
    if root is None:
        raise ConfigError(f"no data root for {dataset}: pass --data-root DIR or --data-root {dataset}=DIR")
    return root


# ---------------------------------------------------------------------------------------------------------
# PTB-XL records


@dataclass
class PtbxlIndex:
    """The PTB-XL records of one root (from `build_ptbxl`): id → path, report, fold; and build failures."""

    root: Path
    paths: dict[str, str]
    reports: dict[str, str]
    folds: dict[str, int]
    failures: dict[str, str]
    n_database_rows: int
    # id -> {"age", "sex"} from ptbxl_database.csv (the WFDB headers carry neither), for towers that read them
    demographics: dict[str, dict[str, Any]] = field(default_factory=dict)


@cache
def _ptbxl_index_cached(root: str) -> PtbxlIndex:
    ds, rep = build_ptbxl(root, sampling_rate=500, check_files=True, progress=False)
    cols = ds.select_columns(["id", "path", "report", "fold", "age", "sex"]).to_dict()
    return PtbxlIndex(
        root=Path(root),
        paths=dict(zip(cols["id"], cols["path"], strict=True)),
        reports=dict(zip(cols["id"], cols["report"], strict=True)),
        folds={i: int(f) for i, f in zip(cols["id"], cols["fold"], strict=True)},
        failures={f.record_id: f.reason for f in rep.failures},
        n_database_rows=rep.n_rows,
        demographics={i: {"age": a, "sex": x} for i, a, x in zip(cols["id"], cols["age"], cols["sex"], strict=True)},
    )


def ptbxl_index(root: str | Path) -> PtbxlIndex:
    """`PtbxlIndex` of a PTB-XL root, built once per process (metadata only, no signals)."""
    return _ptbxl_index_cached(str(Path(root).expanduser().resolve()))


def _wfdb_on_disk(record: Path) -> str | None:
    """Why a WFDB record (path without extension) is not usable, or None when its files exist."""
    hea = record.with_name(record.name + ".hea")
    if not hea.is_file():
        if hea.is_symlink():
            return f"not on disk: {hea} is a broken link (to {hea.readlink()})"
        return f"not on disk: {hea}"
    if not (record.with_name(record.name + ".dat").is_file() or record.with_name(record.name + ".mat").is_file()):
        return f"not on disk: signal file of {hea}"
    return None


# ---------------------------------------------------------------------------------------------------------
# published splits


def sample_limit(limit: int | None, seed: int, *columns: list) -> tuple[list, ...]:
    """Keep a seeded random sample of `limit` entries of the parallel lists, in their original order."""
    if limit is None:
        return columns
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    n = len(columns[0])
    if n <= limit:
        return columns
    keep = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
    return tuple([col[i] for i in keep] for col in columns)


def _read_parts(
    split_root: Path, task: str, part: str, codes: Sequence[str]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """`(table, label columns, files)` of `part`; `all` concatenates train, val and test. The table gains
    `_record_id` (the builders' record id) and `_part` columns. A column named by `codes` (the prompt set's) that
    holds anything but 0/1 is an `EcgReadError` naming the file, column and lines (`load_label_split`)."""
    if part not in PARTS:
        raise ConfigError(f"unknown split part {part!r}; expected one of {list(PARTS)}")
    frames, files, columns = [], [], None
    for p in list(SPLIT_PARTS) if part == "all" else [part]:
        split = load_label_split(split_root, task, p, label_names=codes)
        if columns is not None and set(split.label_columns) != set(columns):
            raise EcgReadError(split.path, f"label columns differ from the other parts: {split.label_columns}")
        # The same labels in another column order (ptbxl_sub's train split) are fine: labels are read by name
        # (pd.concat aligns the columns), in the first part's order.
        columns = columns if columns is not None else split.label_columns
        frame = split.frame.copy()
        frame["_record_id"] = split.record_ids
        frame["_part"] = p
        frames.append(frame)
        files.append(split.path)
    return pd.concat(frames, ignore_index=True), list(columns or []), files


def _chapman_candidates(root: Path, ecg_path: str) -> list[Path]:
    rel = Path(str(ecg_path).lstrip("/\\"))
    out = [root / rel]
    if rel.parts and rel.parts[0].lower() == "chapman":  # the split stores '/chapman/WFDBRecords/...'
        out.append(root.joinpath(*rel.parts[1:]))
    return out


def _locate(dataset: str, root: Path, row: Any, rid: str, index: PtbxlIndex | None) -> tuple[str | None, str, str]:
    """`(record path or None, the path looked for, reason when None)` of one split row
    (`index` is the PTB-XL index for PTB-XL rows, None for the other datasets)."""
    if index is not None:
        if rid in index.paths:
            return index.paths[rid], index.paths[rid], ""
        fname = getattr(row, "filename_hr", None)
        if not (isinstance(fname, str) and fname.strip()):
            return None, "", index.failures.get(rid, f"not on disk: ecg_id not in {root / 'ptbxl_database.csv'}")
        record = root / fname.strip()
        reason = _wfdb_on_disk(record)
        if reason is None:  # on disk although ptbxl_database.csv lacks it: the split's own path is enough
            return str(record), str(record), ""
        return None, str(record), index.failures.get(rid, reason)
    if dataset == "cpsc2018":
        record = root / str(row.filename).strip()
        mat = record.with_suffix(".mat")
        return (str(record), str(record), "") if mat.is_file() else (None, str(mat), f"not on disk: {mat}")
    candidates = _chapman_candidates(root, str(row.ecg_path))
    for mat in candidates:
        if mat.is_file():
            return str(mat), str(mat), ""
    return None, str(candidates[0]), f"not on disk: {candidates[0]}"


def load_label_set(
    name: str,
    split_root: str | Path,
    data_roots: Mapping[str, Path] | Sequence[str] | str | Path,
    part: str = "test",
    limit: int | None = None,
    folds: Iterable[int] | None = None,
    seed: int = 0,
) -> LabelSetData:
    """A published label set (`ptbxl_super`, ..., `cpsc2018`, `chapman`) joined with records on disk.

    Args:
        split_root: the MERL `data_split` folder.
        data_roots: `parse_data_roots` output (or its input): the PTB-XL root, the CPSC 2018 folder of
            `.mat` files, the Chapman root.
        part: `train`, `val`, `test` or `all`.
        limit: keep at most this many found records, a seeded random sample (`seed`) kept in file order
            (the first rows of a file are often not typical: PTB-XL's first ids are mostly normal); the
            rest are counted in `n_limited`.
        folds: keep only rows of these PTB-XL `strat_fold`s (rows of other folds are not counted at all).
    """
    key, ps, task, dataset = resolve_label_set(name)
    roots = data_roots if isinstance(data_roots, Mapping) else parse_data_roots(data_roots)
    root = _root_for(roots, dataset)
    if task == HEADER_LABELS:
        if folds is not None:
            raise ConfigError(f"{key}: its records carry no folds; leave out --folds")
        return load_header_label_set(root, ps, name=key, limit=limit, seed=seed)
    frame, columns, files = _read_parts(Path(split_root).expanduser(), task, part, ps.codes)
    fold_filter = None if folds is None else {int(f) for f in folds}
    if fold_filter is not None:
        if "strat_fold" not in frame.columns:
            raise ConfigError(f"{files[0]}: no strat_fold column, so folds cannot be selected for {key}")
        frame = frame[frame["strat_fold"].isin(fold_filter)].reset_index(drop=True)
    codes = [c for c in ps.codes if c in columns]
    notes: dict[str, Any] = {}
    if set(columns) - set(codes):
        notes["columns_without_prompts"] = [c for c in columns if c not in codes]
    if set(ps.codes) - set(columns):
        notes["prompts_without_column"] = [c for c in ps.codes if c not in columns]
    if fold_filter is not None:
        notes["folds"] = sorted(fold_filter)
    if part == "all":
        notes["rows_per_part"] = {str(k): int(v) for k, v in frame["_part"].value_counts(sort=False).items()}
    index = ptbxl_index(root) if dataset == "ptbxl" else None
    if index is not None and index.n_database_rows == 0:
        log.warning("%s: ptbxl_database.csv has no rows", root)

    found_rows, paths, ids, missing = [], [], [], []
    for i, row in enumerate(frame.itertuples(index=False)):
        rid = frame["_record_id"].iat[i]
        path, expected, reason = _locate(dataset, root, row, rid, index)
        if path is None:
            missing.append(_missing(rid, expected, reason))
            continue
        found_rows.append(i)
        paths.append(path)
        ids.append(rid)
    n_found = len(found_rows)
    found_rows, paths, ids = sample_limit(limit, seed, found_rows, paths, ids)
    sel = frame.iloc[found_rows]
    fold_values = (
        sel["strat_fold"].fillna(-1).astype(int).to_numpy() if "strat_fold" in sel.columns else np.full(len(sel), -1)
    )
    data = LabelSetData(
        name=key, dataset=dataset, part=part, label_codes=codes,
        names={c: ps.labels[c].name for c in codes}, prompt_set=ps, record_ids=ids, paths=paths,
        labels=sel[codes].to_numpy(dtype=np.int8).reshape(len(sel), len(codes)), folds=fold_values,
        n_rows=len(frame), missing=missing, n_limited=n_found - len(ids), task=task, sources=files, notes=notes,
        metadata=None if index is None else [index.demographics.get(r, {}) for r in ids],
    )  # fmt: skip
    log.info(
        "%s (%s%s): %d split rows, %d found on disk under %s, %d missing%s",
        key, part, "" if fold_filter is None else f", folds {sorted(fold_filter)}", len(frame), n_found, root,
        len(missing),
        f", {data.n_limited} left out by limit={limit}" if data.n_limited else "",
    )  # fmt: skip
    return data


# ---------------------------------------------------------------------------------------------------------
# any folder + labels CSV


def _label_columns(df: pd.DataFrame, id_column: str, csv_path: Path) -> tuple[list[str], dict[str, str]]:
    """The 0/1 label columns of a labels CSV, and the other columns with why each is not one (for the report).

    A column whose values are mostly 0/1 is taken to be a label column with a mistake in it: an error naming
    its first bad lines (`zero_one_column`, as for split files), never a column silently left out."""
    cols, others = [], {}
    for col in df.columns:
        if col == id_column or str(col).lower() in _METADATA_COLUMNS or str(col).startswith("_"):
            continue
        series = df[col]
        if pd.api.types.is_bool_dtype(series):
            cols.append(col)
            continue
        # "1" and 1.0 are the 1 they are; a mostly-0/1 column with another cell is an error (as in split files)
        labels = zero_one_column(series, str(col), csv_path, hint=" (a column whose name starts with '_' is left out)")
        if labels is not None:
            df[col] = labels
            cols.append(col)
        else:  # as the file shows them: 71, not numpy's np.int64(71)
            shown = (repr(v) if isinstance(v, str) else str(v) for v in series.dropna().unique()[:3])
            others[str(col)] = "not 0/1 values (e.g. " + ", ".join(s[:20] for s in shown) + ")"
    return cols, others


def _why_no_label_column(df: pd.DataFrame, id_column: str, others: Mapping[str, str]) -> str:
    """Each column of a labels CSV with no 0/1 column, and why it is not one (for the error)."""
    whys = [f"{c!r}: " + (others.get(str(c)) or ("its name starts with '_'" if str(c).startswith("_") else
                                                 "a metadata column (age, sex, fold... are never labels)"))
            for c in df.columns if c != id_column]  # fmt: skip
    tail = "; write each label as 0 or 1 (1: the record has it), one column per label"
    return "; ".join(whys) + tail if whys else "the labels CSV has no other column"


def load_labels_csv(
    labels_csv: str | Path,
    records_dir: str | Path,
    id_column: str | None = None,
    label_columns: Sequence[str] | None = None,
    prompt_set: str | Path | PromptSet | None = None,
    limit: int | None = None,
    name: str | None = None,
    seed: int = 0,
) -> LabelSetData:
    """A label set from any folder of records plus a CSV with a record-id column and 0/1 label columns.

    Record ids match a record's path relative to `records_dir` without extension, or its file stem
    (a path-like id matches by its stem too). `id_column` defaults to the first of `record_id, record, id,
    ecg_id, filename, file, path, ecg_path, name` present, else the first column; label columns default to
    every 0/1 integer (or bool) column that is not known metadata (age, sex, fold...).

    With `prompt_set`, only the label columns that are codes of the set are evaluated (the others are
    listed in `notes`) and names come from the set; without it each column name is its label's name and
    prompt. `limit` and `seed` work as in `load_label_set`.
    """
    csv_path = Path(labels_csv).expanduser()
    folder = Path(records_dir).expanduser()
    if not csv_path.is_file():
        raise EcgReadError(csv_path, "labels CSV not found")
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            names = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EcgReadError(csv_path, f"cannot parse the labels CSV: {exc}") from None
    # pandas renames a repeated column ("af" → "af.1") and names an empty one "Unnamed: 1": both were scored as
    # labels of those made-up names
    repeated = sorted({n for n in names if names.count(n) > 1})
    unnamed = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if repeated or unnamed:
        problem = f"column(s) named twice: {repeated}" if repeated else f"column(s) {unnamed} have no name"
        raise EcgReadError(csv_path, f"{problem}; give every column one name of its own")
    try:
        if id_column is None:
            id_column = next((c for c in _ID_COLUMNS if c in names), names[0] if names else None)
        # Ids are names, not numbers: read as text, "00012" would become 12 and match no record 00012.hea.
        df = pd.read_csv(csv_path, dtype=None if id_column not in names else {id_column: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise EcgReadError(csv_path, f"cannot parse the labels CSV: {exc}") from None
    if df.empty:
        raise EcgReadError(csv_path, "the labels CSV has no rows")
    if id_column not in df.columns:
        raise EcgReadError(csv_path, f"no id column {id_column!r}; columns: {list(df.columns)}")
    not_labels: dict[str, str] = {}
    if label_columns is None:
        columns, not_labels = _label_columns(df, id_column, csv_path)
    else:
        absent = [c for c in label_columns if c not in df.columns]
        if absent:
            raise EcgReadError(csv_path, f"label column(s) {absent} not found; columns: {list(df.columns)}")
        columns = list(label_columns)
        bad = [c for c in columns if not set(pd.unique(df[c].dropna())) <= {0, 1}]
        if bad or df[columns].isna().any().any():
            raise EcgReadError(csv_path, f"label column(s) {bad or columns} must hold only 0/1 values")
    if not columns:
        why = _why_no_label_column(df, id_column, not_labels)
        raise EcgReadError(csv_path, f"no 0/1 label columns found besides the id column {id_column!r}: {why}")
    ps = prompt_set if prompt_set is None or isinstance(prompt_set, PromptSet) else load_prompt_set(prompt_set)
    notes: dict[str, Any] = {"id_column": id_column}
    if not_labels:
        notes["columns_not_labels"] = not_labels
    if ps is not None:
        codes = [c for c in columns if c in ps.labels]
        if len(codes) < len(columns):  # not evaluated: said in results.md and on stderr (writers.left_out_columns)
            notes["columns_without_prompts"] = [c for c in columns if c not in ps.labels]
            notes["prompt_set"] = ps.name
        if not codes:
            raise PromptError(ps.path, f"none of the label columns {columns} is a code of prompt set {ps.name!r}")
        names = {c: ps.labels[c].name for c in codes}
    else:
        codes = columns
        names = {c: str(c) for c in codes}

    scan = scan_records(folder)
    by_rel = {rec.relative_to(folder).with_suffix("").as_posix(): rec for rec in scan.records}
    by_stem: dict[str, list[Path]] = {}
    for rec in scan.records:
        by_stem.setdefault(rec.stem, []).append(rec)

    def find(raw: Any) -> tuple[str, str, Path | list[Path] | None]:
        """`(id, key, record)` of one id cell: the record, the records sharing its stem (ambiguous), or None."""
        rid = "" if pd.isna(raw) else str(raw).strip()
        key = rid[:-4] if rid.lower().endswith((".hea", ".dat", ".mat", ".npy", ".npz")) else rid
        rec = by_rel.get(key.lstrip("/"))
        if rec is not None or not key:
            return rid, key, rec
        same_stem = by_stem.get(Path(key).name, [])
        return rid, key, (same_stem if len(same_stem) > 1 else same_stem[0] if same_stem else None)

    matched_rows, paths, ids, missing = [], [], [], []
    seen: set[Path] = set()
    stems, near_matches = sorted(by_stem), {}
    for i, raw in enumerate(df[id_column].tolist()):
        rid, key, rec = find(raw)
        if isinstance(rec, list):
            where = ", ".join(str(p) for p in rec[:3])
            missing.append(_missing(rid, where, f"ambiguous: {len(rec)} records named {Path(key).name!r}"))
            continue
        if rec is None:
            near = _near_match(Path(key).name, stems)  # a bisect: cheap for any folder
            if near and len(near_matches) < 5:
                near_matches[rid] = near
            hint = f" (near match: {near!r})" if near else ""
            missing.append(_missing(rid, str(folder / key), f"not on disk: no record {rid!r} in {folder}{hint}"))
            continue
        if rec in seen:
            missing.append(_missing(rid, str(rec), f"duplicate: a second labels row for {rec}"))
            continue
        seen.add(rec)
        matched_rows.append(i)
        paths.append(str(rec))
        ids.append(rid)
    n_found = len(matched_rows)
    if n_found == 0 and scan.records:
        # said in the label set's status (results.md, and the CLI's closing message)
        notes["no_match"] = _no_match_hint(df, id_column, columns, scan.records[0], folder, find)
    if near_matches:
        notes["near_matches"] = near_matches  # id → a record name it may mean, for the CLI's warning
    matched_rows, paths, ids = sample_limit(limit, seed, matched_rows, paths, ids)
    notes["records_in_folder_without_row"] = len(scan.records) - len(seen)
    if scan.skipped:
        notes["files_skipped_in_folder"] = len(scan.skipped)
    sel = df.iloc[matched_rows]
    fold_col = next((c for c in _FOLD_COLUMNS if c in sel.columns), None)
    folds = sel[fold_col].fillna(-1).astype(int).to_numpy() if fold_col else np.full(len(sel), -1)
    return LabelSetData(
        name=name or csv_path.stem, dataset="folder", part="all", label_codes=list(codes), names=names,
        prompt_set=ps, record_ids=ids, paths=paths,
        labels=sel[codes].astype(int).to_numpy(dtype=np.int8).reshape(len(sel), len(codes)), folds=folds,
        n_rows=len(df), missing=missing, n_limited=n_found - len(ids), sources=[str(csv_path)], notes=notes,
    )  # fmt: skip


def _near_match(name: str, stems: Sequence[str]) -> str | None:
    """A record name of sorted `stems` that `name` begins, up to a '_', '-' or '.' ('00001' → '00001_hr')."""
    i = bisect.bisect_left(stems, name)
    for stem in stems[i : i + 50] if name else ():
        if not stem.startswith(name):
            break
        if stem[len(name) : len(name) + 1] in ("_", "-", "."):
            return stem
    return None


def _no_match_hint(df: pd.DataFrame, id_column: str, label_columns: Sequence[str], example: Path, folder: Path,
                   find: Any) -> str:  # fmt: skip
    """Why no row of a labels CSV named a record of `folder`, and which other column would match (e.g. a
    PTB-XL split's `filename_hr` where `ecg_id` was guessed)."""
    first = df[id_column].iloc[0]
    text = (f"no row's {id_column!r} value names a record in {folder} (e.g. {first!r} against the record "
            f"{example.relative_to(folder).with_suffix('').as_posix()!r}); ids match a record's path without "
            "extension, or its file stem")  # fmt: skip
    counts = {}
    for col in df.columns:
        if col == id_column or col in label_columns:
            continue
        found = sum(1 for raw in df[col].astype(str).tolist() if isinstance(find(raw)[2], Path))
        if found:
            counts[col] = found
    if counts:
        n = max(counts.values())
        best = " or ".join(f"--id-column {c}" for c, k in counts.items() if k == n)  # PTB-XL: filename_lr/_hr tie
        return f"{text}; {best} matches {n} of {len(df)} rows"
    return f"{text}; choose the id column with --id-column (columns: {', '.join(map(str, df.columns))})"


def load_header_label_set(
    root: str | Path, prompt_set: PromptSet | str = "cinc2021", name: str | None = None,
    limit: int | None = None, seed: int = 0,
) -> LabelSetData:  # fmt: skip
    """A PhysioNet/CinC folder whose WFDB headers carry SNOMED CT codes in `# Dx:` comments.

    Each header's codes are mapped to the prompt set's labels (`PromptSet.code_map`: a label's own code
    and the codes it groups, e.g. CRBBB and RBBB as one CinC class). Codes of no label (the unscored CinC
    classes, such as left atrial enlargement) are counted by code and name in `notes["codes_without_label"]`,
    never silently dropped. Headers without a signal file are *missing*.

    The folder is listed by `scan_records` (segment headers of a multi-segment record are not records). A
    ``.dat``/``.mat`` signal file without its header has no labels but is a record the folder holds: it is
    handed to the runner under its (absent) header's path, whose read fails and lists it (exit status 1), as
    zero-shot lists it; never evaluated with made-up labels. A header is read no further than
    `MAX_HEADER_BYTES` (the readers' cap): a larger or unreadable one gets no labels and is kept, so that the
    runner's read, which refuses it likewise, lists it. Such records are kept whatever `limit` samples.
    ``.npy``/``.npz`` records (no header, so no labels) and other files are counted in `notes`.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise EcgReadError(folder, "records folder not found")
    ps = prompt_set if isinstance(prompt_set, PromptSet) else load_prompt_set(prompt_set)
    code_map = ps.code_map()
    names = load_snomed_mapping()
    codes = ps.codes
    scan = scan_records(folder)
    headers = [p for p in scan.records if p.suffix.lower() == ".hea"]
    # signal files whose header is absent, by that header: .dat files no header names, .mat files with no
    # header beside them (a .mat that another header names is that header's signal file, not listed here)
    orphans: dict[Path, list[Path]] = {}
    for p in [*(s.path for s in scan.skipped if s.failed and s.path.suffix.lower() == ".dat"),
              *(p for p in scan.records if p.suffix.lower() == ".mat")]:  # fmt: skip
        orphans.setdefault(p.with_suffix(".hea"), []).append(p)
    # (header, path, id, labels, sampled): `sampled` False for the records whose read is known to fail (kept
    # whatever `limit` samples); in header order, the order the records had before any of them were kept
    found: list[tuple[Path, str, str, np.ndarray, bool]] = []
    missing = []
    unlabelled: Counter[str] = Counter()
    for hea in headers:
        record = hea.with_suffix("")
        reason = _wfdb_on_disk(record)
        if reason is not None:
            missing.append(_missing(record.name, str(hea), reason))
            continue
        row = np.zeros(len(codes), dtype=np.int8)
        try:
            _, comments = split_header(read_text(hea, MAX_HEADER_BYTES))
        except EcgReadError as exc:  # the runner's read refuses it too, and lists it
            log.warning("%s: no labels read: %s", hea, exc.problem)
            found.append((hea, str(record), record.name, row, False))
            continue
        for code in parse_header_comments(comments).get("snomed") or []:
            if code in code_map:
                row[codes.index(code_map[code])] = 1
            else:
                unlabelled[code] += 1
        found.append((hea, str(record), record.name, row, True))
    for hea, signals in orphans.items():
        log.warning("%s: signal file(s) without their header %s", ", ".join(map(str, signals)), hea.name)
        found.append((hea, str(hea), hea.stem, np.zeros(len(codes), dtype=np.int8), False))
    found.sort(key=lambda entry: entry[0])
    labelled = [i for i, entry in enumerate(found) if entry[4]]
    (sampled,) = sample_limit(limit, seed, labelled)
    keep = sorted({*sampled, *(i for i, entry in enumerate(found) if not entry[4])})
    notes: dict[str, Any] = {"labels_from": "SNOMED CT codes in the headers' '# Dx:' comments"}
    if unlabelled:
        notes["codes_without_label"] = {
            f"{c} ({names[c][1] if c in names else 'unknown code'})": n for c, n in unlabelled.most_common()
        }
    if orphans:
        notes["signal_files_without_header"] = sum(len(signals) for signals in orphans.values())  # listed failures
    arrays = [p for p in scan.records if p.suffix.lower() in (".npy", ".npz")]
    if arrays:
        notes["records_without_header_labels"] = len(arrays)
    if any(not s.failed for s in scan.skipped):
        notes["files_skipped_in_folder"] = sum(not s.failed for s in scan.skipped)
    labels = np.stack([found[i][3] for i in keep]) if keep else np.zeros((0, len(codes)), np.int8)
    return LabelSetData(
        name=name or ps.name, dataset="cinc2021", part="all", label_codes=list(codes),
        names={c: ps.labels[c].name for c in codes}, prompt_set=ps, record_ids=[found[i][2] for i in keep],
        paths=[found[i][1] for i in keep], labels=labels, folds=np.full(len(keep), -1),
        n_rows=len(headers) + len(orphans), missing=missing, n_limited=len(found) - len(keep), task=HEADER_LABELS,
        sources=[str(folder)], notes=notes,
    )  # fmt: skip
