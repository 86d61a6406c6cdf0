"""CPSC 2018 (the China Physiological Signal Challenge; MERL's `icbeb`): `REFERENCE.csv` + `A0001.mat`, ...
→ a builder table (`ecglang.data.tables`) with the challenge's nine classes."""

from __future__ import annotations

import re
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from ecglang.data.tables import BuildReport, BuildResult, CsvRows, PathLike, RowSink, builder_features

# CPSC 2018 REFERENCE.csv classes (challenge description, Liu et al. 2018): 1 normal, 2 atrial
# fibrillation, 3 first-degree AV block, 4 left bundle branch block, 5 right bundle branch block,
# 6 premature atrial contraction, 7 premature ventricular contraction, 8 ST-segment depression,
# 9 ST-segment elevation.
CPSC2018_CLASSES: dict[int, str] = {
    1: "Normal", 2: "AF", 3: "I-AVB", 4: "LBBB", 5: "RBBB", 6: "PAC", 7: "PVC", 8: "STD", 9: "STE",
}  # fmt: skip
_CLASS_TEXT = re.compile(r"[0-9]+(?:\.0*)?")  # 3, 3.0


def build_cpsc2018(root: PathLike, reference_csv: PathLike, progress: bool = True) -> BuildResult:
    """CPSC 2018 (`root` holds `A0001.mat`, ...; `reference_csv` is the challenge's REFERENCE.csv).

    REFERENCE.csv columns `Recording, First_label, Second_label, Third_label`; classes 1–9 map to
    `CPSC2018_CLASSES` (Normal, AF, I-AVB, LBBB, RBBB, PAC, PVC, STD, STE). The file is read a row at a time
    (`ecglang.data.tables.CsvRows`, every cell as text). Left out with the reason:
    rows that cannot be read (bad quoting, more cells than the header), rows without a Recording, rows whose
    `.mat` is missing, rows with no class or a class that is not one of the integers 1–9 (`10`, `1.7`, `inf`),
    and a second row for a Recording (the first row keeps it); `.mat` files without a REFERENCE row are listed
    too. CPSC has no report (`report_empty` True); age and sex live inside the `.mat` next to the signal and are
    read by `ecglang.record.io.load_ecg`, not here.

    Extra column: `label_codes` (the numeric classes, first label first).
    """
    root = Path(root).expanduser().resolve()
    ref_path = Path(reference_csv).expanduser()
    label_cols = ("First_label", "Second_label", "Third_label")
    features = builder_features(label_codes=datasets.Sequence(datasets.Value("int32")))
    sink = RowSink(features)
    report = BuildReport(source="cpsc2018")
    first_row: dict[str, str] = {}  # Recording → the line of the row that has it
    rows = CsvRows(ref_path, "CPSC 2018 REFERENCE.csv", ["Recording", *label_cols], ["Recording", "First_label"],
                   "cp1252")  # fmt: skip
    with rows:
        for row in tqdm(rows, desc="CPSC 2018 reference", disable=not progress):
            report.n_rows += 1
            if row.problem:  # as the MIMIC builder lists its rows that cannot be read
                report.fail(f"REFERENCE.csv {row.where}", ref_path, f"bad REFERENCE.csv row: {row.problem}")
                continue
            name = (row.cells["Recording"] or "").strip()
            if not name:
                report.fail(f"REFERENCE.csv {row.where}", ref_path, "no Recording")
                continue
            record = root / name
            if name in first_row:
                first = first_row[name]
                report.fail(
                    name, record, f"duplicate id: {name!r} in REFERENCE.csv {row.where} was first used in {first}"
                )
                continue
            first_row[name] = row.where
            if not record.with_suffix(".mat").is_file():
                report.fail(name, record, f"file missing: {record.with_suffix('.mat')}")
                continue
            codes: list[int] = []
            bad = None
            for col in label_cols:
                value = (row.cells.get(col) or "").strip()
                if not value:
                    continue
                code = _class_code(value)
                if code is None:
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
        if mat.stem not in first_row:
            report.fail(mat.stem, mat.with_suffix(""), "no REFERENCE.csv row")
    report.n_records = sink.n
    report.notes["n_report_empty"] = sink.n
    return BuildResult(sink.finish(), report)


def _class_code(text: str) -> int | None:
    """A REFERENCE.csv class cell as its class (`3`, or `3.0` as a float column writes it), else None: a fraction
    (`1.7`), `inf`, `nan` or a number outside 1–9 is no class (`int(float(...))` made 1.7 class 1)."""
    if not _CLASS_TEXT.fullmatch(text):
        return None
    code = int(text.split(".")[0])
    return code if code in CPSC2018_CLASSES else None
