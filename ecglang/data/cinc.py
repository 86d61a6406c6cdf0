"""PhysioNet/CinC 2020/2021 folders: WFDB headers with `# Dx:` SNOMED CT codes → a builder table
(`ecglang.data.tables`); codes are named through `ecglang.data.snomed`."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from ecglang.data.fastread import wfdb_header_fields
from ecglang.data.snomed import load_snomed_mapping
from ecglang.data.tables import BuildReport, BuildResult, PathLike, RowSink, builder_features, missing_wfdb_files
from ecglang.errors import EcgReadError
from ecglang.record.io import lower_case_header_problem, parse_header_comments

logger = logging.getLogger(__name__)

# The files the builder reads or lists as failures (extensions in any case): WFDB headers and signal files, and
# the NumPy records that `ecglang zero-shot FOLDER` scores but this builder cannot build.
_RECORD_SUFFIXES = (".hea", ".dat", ".mat", ".npy", ".npz")


def physionet_files(root: Path) -> list[Path]:
    """The header and signal files under `root` (``.hea``/``.dat``/``.mat``) whose records the PhysioNet-folder
    builder puts in its table, sorted: one walk of the tree, the prepared folder's input fingerprint. The files it
    only lists as failures (NumPy records, upper-case extensions) make no row, and are left out of it, so that a
    folder prepared before they were listed is not taken for a changed one."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix in (".hea", ".dat", ".mat"))


def _is_header(path: Path) -> bool:
    """A `.hea`, or a header of another case (`.HEA`) where the file system finds it as `.hea` too (wfdb opens
    `NAME.hea`: on a case-insensitive system that is the file)."""
    return path.suffix == ".hea" or (path.suffix.lower() == ".hea" and path.with_suffix(".hea").is_file())


def build_physionet_folder(
    root: PathLike,
    source: str = "physionet",
    snomed_map: PathLike | Mapping[str, tuple[str, str]] | None = None,
    check_files: bool = True,
    progress: bool = True,
) -> BuildResult:
    """A PhysioNet/CinC 2020/2021 folder of WFDB records whose headers carry `# Dx:` SNOMED CT codes.

    Headers are found recursively and read as `wfdb.rdheader` reads them (`data.fastread.wfdb_header_fields`:
    the package's parser, ~0.1 ms a header, and wfdb for what it does not take; no signal is loaded); a
    `.dat`/`.mat` signal file without its `.hea` header is a listed failure, as are a header whose extension is
    not lower case (``R001.HEA``: wfdb opens ``R001.hea`` only; the reason says to rename it) and a
    ``.npy``/``.npz`` record (no WFDB header, no `# Dx:` codes: `ecglang zero-shot FOLDER` scores those). Other
    files (README, annotations) are counted in `notes["other_files_skipped"]` with a few names, and logged. The id
    is the record's name: a second record of one name (in another subfolder; records are taken in path order) is a
    listed failure naming both paths. `labels` are the abbreviations of the codes (`load_snomed_mapping`); a code
    missing from the mapping is kept as the code itself and counted in `notes["unmapped_codes"]`. These folders
    have no free-text report: `report` is `""` and `report_empty` True.

    Extra columns: `snomed` (codes), `label_names` (full names, the code when unmapped), `age`,
    `sex` ("M"/"F"/None), `fs`, `n_samples`, `n_leads`.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise EcgReadError(root, "folder not found")
    mapping = snomed_map if isinstance(snomed_map, Mapping) else load_snomed_mapping(snomed_map)
    features = builder_features(
        snomed=datasets.Sequence(datasets.Value("string")),
        label_names=datasets.Sequence(datasets.Value("string")),
        age=datasets.Value("float32"),
        sex=datasets.Value("string"),
        fs=datasets.Value("float32"),
        n_samples=datasets.Value("int64"),
        n_leads=datasets.Value("int32"),
    )
    sink = RowSink(features)
    report = BuildReport(source=source)
    unmapped: Counter[str] = Counter()
    found = sorted(root.rglob("*"))  # one walk: the files read, and the others said
    files = [p for p in found if p.suffix.lower() in _RECORD_SUFFIXES]
    headers = [p for p in files if _is_header(p)]
    other_case = {p for p in files if p.suffix.lower() == ".hea" and not _is_header(p)}
    for hea in sorted(other_case):
        report.n_rows += 1
        report.fail(hea.stem, hea, lower_case_header_problem(hea))
    renamed = {p.with_suffix("") for p in other_case}  # their signal files: the header's failure stands for them
    # signal files that no header names are records the user meant to include: listed, never dropped silently
    for signal in (p for p in files if p.suffix.lower() in (".dat", ".mat")):
        if not signal.with_suffix(".hea").is_file() and signal.with_suffix("") not in renamed:
            report.n_rows += 1
            report.fail(signal.stem, signal, f"signal file {signal.name} has no .hea header beside it")
    for array in (p for p in files if p.suffix.lower() in (".npy", ".npz")):
        report.n_rows += 1
        report.fail(
            array.stem, array, f"not a WFDB record: {array.name} has no .hea header and its '# Dx:' codes, which "
            "this builder reads; `ecglang zero-shot FOLDER` scores NumPy records, `ecglang data build pairs` takes "
            "them with a report",
        )  # fmt: skip
    _note_other_files([p for p in found if p.suffix.lower() not in _RECORD_SUFFIXES and p.is_file()], report)
    first: dict[str, Path] = {}  # id (the file name) → the record in the table that has it
    for hea in tqdm(headers, desc=f"{source} headers", disable=not progress):
        report.n_rows += 1
        record = hea.with_suffix("")
        if record.name in first:  # the walk goes into subfolders: a name may be there twice
            report.fail(
                record.name, record, f"duplicate id: {record.name!r} of {record} was first used by {first[record.name]}"
            )
            continue
        if check_files and (reason := missing_wfdb_files(record)):
            report.fail(record.name, record, reason)
            continue
        try:
            header = wfdb_header_fields(record)
        except Exception as exc:  # wfdb raises bare ValueError/IndexError/... on bad headers
            report.fail(record.name, record, f"unreadable header: {type(exc).__name__}: {exc}")
            continue
        meta = parse_header_comments(header.comments)
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
        first[record.name] = record
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
                "fs": header.fs,
                "n_samples": header.sig_len,
                "n_leads": header.n_sig,
            }
        )
    report.n_records = sink.n
    report.notes.update({"n_report_empty": sink.n, "unmapped_codes": dict(unmapped)})
    return BuildResult(sink.finish(), report)


def _note_other_files(others: list[Path], report: BuildReport, shown: int = 5) -> None:
    """Count (in the notes) and log the files that are neither WFDB nor NumPy record files, so that none is
    left out unsaid."""
    if not others:
        return
    names = ", ".join(p.name for p in others[:shown]) + (", ..." if len(others) > shown else "")
    why = "not a WFDB header or signal file (.hea/.dat/.mat)"
    report.notes["other_files_skipped"] = f"{len(others)} ({why}: {names})"
    logger.info("%s: %d other file(s) skipped, %s: %s", report.source, len(others), why, names)
