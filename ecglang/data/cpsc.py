"""CPSC 2018 (the China Physiological Signal Challenge; MERL's `icbeb`): `REFERENCE.csv` + `A0001.mat`, ...
→ a builder table (`ecglang.data.tables`) with the challenge's nine classes."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from ecglang.data.tables import BuildReport, BuildResult, PathLike, RowSink, builder_features, read_csv, require_columns

# CPSC 2018 REFERENCE.csv classes (challenge description, Liu et al. 2018): 1 normal, 2 atrial
# fibrillation, 3 first-degree AV block, 4 left bundle branch block, 5 right bundle branch block,
# 6 premature atrial contraction, 7 premature ventricular contraction, 8 ST-segment depression,
# 9 ST-segment elevation.
CPSC2018_CLASSES: dict[int, str] = {
    1: "Normal", 2: "AF", 3: "I-AVB", 4: "LBBB", 5: "RBBB", 6: "PAC", 7: "PVC", 8: "STD", 9: "STE",
}  # fmt: skip


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
    ref = read_csv(ref_path, "CPSC 2018 REFERENCE.csv", dtype=str)
    require_columns(ref, ["Recording", "First_label"], ref_path, "REFERENCE.csv")
    label_cols = [c for c in ("First_label", "Second_label", "Third_label") if c in ref.columns]
    features = builder_features(label_codes=datasets.Sequence(datasets.Value("int32")))
    sink = RowSink(features)
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
