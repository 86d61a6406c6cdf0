"""A synthetic folder shaped like MIMIC-IV-ECG, for benchmarks and tests of data preparation at scale.

    write_mimic_like(root, n_records=4000)

writes what `ecglang.data.mimic.build_mimic_ecg` reads: `record_list.csv` (`subject_id, study_id, file_name,
ecg_time, path`), `machine_measurements.csv` (`subject_id, study_id, report_0..report_17`) and one WFDB record
per study under `files/p<first 4 digits>/p<subject_id>/s<study_id>/<study_id>.{hea,dat}`: 12 leads, 500 Hz,
5000 samples, format 16, gain 200 adu/mV (MIMIC's layout). Signals are a random walk plus a periodic spike train
(not clinical ECGs: they exercise reading and preprocessing, not morphology).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ecglang.record.leads import CANONICAL_LEADS

FS = 500
N_SAMPLES = 5000
GAIN = 200.0  # adu per mV, as in MIMIC-IV-ECG headers
REPORTS = (
    ("Sinus rhythm", "Normal ECG"),
    ("Sinus tachycardia", "Nonspecific T wave abnormality", "Abnormal ECG"),
    ("Sinus bradycardia", "Left axis deviation", "Borderline ECG"),
    ("Atrial fibrillation with rapid ventricular response", "Abnormal ECG"),
)


def synthetic_signal(rng: np.random.Generator, n_samples: int = N_SAMPLES, fs: int = FS) -> np.ndarray:
    """`[12, n_samples]` float mV: a slow random walk plus one spike per beat at a random heart rate."""
    walk = np.cumsum(rng.normal(0.0, 0.01, size=(len(CANONICAL_LEADS), n_samples)), axis=1)
    walk -= walk.mean(axis=1, keepdims=True)
    rr = int(fs * 60.0 / rng.uniform(50, 110))
    beats = np.zeros(n_samples)
    beats[rng.integers(0, rr) :: rr] = 1.0
    qrs = np.convolve(beats, np.hanning(25), mode="same")
    amplitude = rng.uniform(0.5, 1.5, size=(len(CANONICAL_LEADS), 1))
    return walk + amplitude * qrs[None, :]


def write_wfdb_record(base: Path, signal: np.ndarray, fs: int = FS) -> None:
    """Write `base.hea` + `base.dat` (format 16, gain `GAIN`, units mV) for a `[12, n]` mV signal."""
    digital = np.clip(np.round(signal * GAIN), -32767, 32767).astype("<i2")
    base.parent.mkdir(parents=True, exist_ok=True)
    digital.T.tofile(base.with_name(base.name + ".dat"))  # interleaved samples, as WFDB format 16 stores them
    n = signal.shape[1]
    lines = [f"{base.name} {len(CANONICAL_LEADS)} {fs} {n}"]
    for lead, row in zip(CANONICAL_LEADS, digital, strict=True):
        first, checksum = int(row[0]), int(row.astype(np.int64).sum()) % 65536
        checksum = checksum - 65536 if checksum > 32767 else checksum
        lines.append(f"{base.name}.dat 16 {GAIN:g}(0)/mV 16 0 {first} {checksum} 0 {lead}")
    base.with_name(base.name + ".hea").write_text("\n".join(lines) + "\n", encoding="ascii")


def write_mimic_like(root: str | Path, n_records: int, seed: int = 0, n_subjects: int | None = None) -> Path:
    """Write a MIMIC-IV-ECG-shaped folder of `n_records` studies under `root` (see the module docstring)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_subjects = n_subjects or max(1, n_records // 3)
    records, reports = [], []
    for i in range(n_records):
        subject = 10_000_000 + int(i % n_subjects)
        study = 40_000_000 + i
        rel = Path("files") / f"p{str(subject)[:4]}" / f"p{subject}" / f"s{study}" / str(study)
        write_wfdb_record(root / rel, synthetic_signal(rng))
        records.append((subject, study, study, f"2180-01-01 00:{i % 60:02d}:00", rel.as_posix()))
        parts = REPORTS[int(rng.integers(len(REPORTS)))]
        reports.append((subject, study, *parts, *[""] * (18 - len(parts))))
    with (root / "record_list.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", "study_id", "file_name", "ecg_time", "path"])
        w.writerows(records)
    with (root / "machine_measurements.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", "study_id", *[f"report_{k}" for k in range(18)]])
        w.writerows(reports)
    return root


__all__ = ["FS", "GAIN", "N_SAMPLES", "synthetic_signal", "write_mimic_like", "write_wfdb_record"]
