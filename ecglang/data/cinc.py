"""PhysioNet/CinC 2020/2021 folders: WFDB headers with `# Dx:` SNOMED CT codes → a builder table
(`ecglang.data.tables`); codes are named through `ecglang.data.snomed`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import datasets
import wfdb
from tqdm.auto import tqdm

from ecglang.data.snomed import load_snomed_mapping
from ecglang.data.tables import BuildReport, BuildResult, PathLike, RowSink, builder_features, missing_wfdb_files
from ecglang.errors import EcgReadError
from ecglang.record.io import parse_header_comments


def physionet_files(root: Path) -> list[Path]:
    """The header and signal files under `root` that the PhysioNet-folder builder reads, sorted: one walk of the
    tree (the prepared folder's input fingerprint lists the same files)."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix in (".hea", ".dat", ".mat"))


def build_physionet_folder(
    root: PathLike,
    source: str = "physionet",
    snomed_map: PathLike | Mapping[str, tuple[str, str]] | None = None,
    check_files: bool = True,
    progress: bool = True,
) -> BuildResult:
    """A PhysioNet/CinC 2020/2021 folder of WFDB records whose headers carry `# Dx:` SNOMED CT codes.

    Headers are found recursively and read with `wfdb.rdheader` (no signal is loaded); a `.dat`/`.mat` signal
    file without its `.hea` header is a listed failure. The id is the record's name: a second record of one name
    (in another subfolder; records are taken in path order) is a listed failure naming both paths. `labels` are
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
    files = physionet_files(root)
    headers = [p for p in files if p.suffix == ".hea"]
    # signal files that no header names are records the user meant to include: listed, never dropped silently
    for signal in (p for p in files if p.suffix != ".hea"):
        if not signal.with_suffix(".hea").is_file():
            report.n_rows += 1
            report.fail(signal.stem, signal, f"signal file {signal.name} has no .hea header beside it")
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
                "fs": float(header.fs),
                "n_samples": int(header.sig_len or 0),
                "n_leads": int(header.n_sig or 0),
            }
        )
    report.n_records = sink.n
    report.notes.update({"n_report_empty": sink.n, "unmapped_codes": dict(unmapped)})
    return BuildResult(sink.finish(), report)
