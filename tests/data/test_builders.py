"""Dataset builders on the real sample data and on MIMIC/PTB-XL/CinC-shaped folders generated in tmp."""

from __future__ import annotations

import ast
import csv
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecglang.data.cinc import build_physionet_folder
from ecglang.data.cpsc import CPSC2018_CLASSES, build_cpsc2018
from ecglang.data.mimic import build_mimic_ecg
from ecglang.data.ptbxl import build_ptbxl
from ecglang.data.registry import LABEL_SPLIT_FILES, SPLIT_PARTS
from ecglang.data.splits import load_label_split
from ecglang.errors import ConfigError, EcgReadError
from ecglang.record.leads import CANONICAL_LEADS

COMMON = ["id", "path", "report", "report_original", "report_empty", "labels", "fold", "source"]


def write_record(folder: Path, name: str, n: int = 1000, fs: int = 500, comments: list[str] | None = None) -> Path:
    """A small 12-lead WFDB record (16-bit .dat); returns the record path without extension."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / fs
    sig = np.stack([0.5 * np.sin(2 * np.pi * (1 + i / 10) * t) for i in range(12)], axis=1)
    wfdb.wrsamp(
        name, fs=fs, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS), p_signal=sig, fmt=["16"] * 12,
        write_dir=str(folder), comments=comments or [],
    )  # fmt: skip
    return folder / name


@pytest.fixture(scope="module")
def ptbxl(ptbxl_dir):
    return build_ptbxl(ptbxl_dir, progress=False)


# --- PTB-XL -----------------------------------------------------------------------------------------


def test_ptbxl_sample_columns_and_values(ptbxl, ptbxl_dir):
    ds, report = ptbxl
    assert len(ds) == 353 and report.n_rows == 353 and report.failures == []
    extras = ["scp_codes", "superclass", "subclass", "age", "sex", "filename_hr", "filename_lr"]
    assert {*COMMON, *extras} <= set(ds.column_names)
    first = ds[0]
    assert first["id"] == "1"
    assert first["path"] == str((ptbxl_dir / "records500/00000/00001_hr").resolve())
    assert Path(first["path"] + ".hea").is_file()
    assert first["report_original"] == "sinusrhythmus periphere niederspannung"
    assert first["report"] == "sinus rhythm. low limb lead voltage."
    assert json.loads(first["scp_codes"]) == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    assert first["labels"] == ["NORM", "LVOLT", "SR"]
    assert first["superclass"] == ["NORM"] and first["subclass"] == ["NORM"]
    assert first["fold"] == 3 and first["sex"] == "F" and first["age"] == 56.0
    assert set(ds["fold"]) == set(range(1, 9))
    # The blank report of the sample is kept and flagged, and counted.
    empty = [r for r in ds if r["report_empty"]]
    assert len(empty) == 1 and empty[0]["report"] == "" and report.notes["n_report_empty"] == 1


def test_ptbxl_superclass_matches_published_merl_labels(ptbxl, shared_data):
    """Our diagnostic aggregation reproduces the MERL split labels for every record in both."""
    ds, _ = ptbxl
    ours = dict(zip(ds["id"], zip(ds["superclass"], ds["subclass"], strict=True), strict=True))
    n = 0
    for task, col in (("ptbxl_super_class", "super_class"), ("ptbxl_sub_class", "sub_class")):
        split = load_label_split(shared_data / "merl" / "data_split", task, "train")
        for rid, labels in zip(split.record_ids, split.frame[col], strict=True):
            if rid in ours:
                n += 1
                mine = ours[rid][0] if col == "super_class" else sorted(s.strip("_") for s in ours[rid][1])
                assert sorted(ast.literal_eval(labels)) == mine, rid
    assert n > 600  # 343 sample records are in the MERL training split, checked for both tasks


def test_ptbxl_folds_and_rate(ptbxl_dir):
    ds, report = build_ptbxl(ptbxl_dir, sampling_rate=100, folds=[1, 2], progress=False)
    assert set(ds["fold"]) == {1, 2}
    assert len(ds) + report.notes["n_other_folds"] == 353
    assert all("/records100/" in p and p.endswith("_lr") for p in ds["path"])
    with pytest.raises(ConfigError, match="100 or 500"):
        build_ptbxl(ptbxl_dir, sampling_rate=250)


def test_ptbxl_missing_files_and_bad_rows_are_reported(tmp_path, ptbxl_dir):
    db = pd.read_csv(ptbxl_dir / "ptbxl_database.csv").head(4).copy()
    db.loc[3, "scp_codes"] = "{'NORM': oops"
    db.to_csv(tmp_path / "ptbxl_database.csv", index=False)
    (tmp_path / "scp_statements.csv").write_bytes((ptbxl_dir / "scp_statements.csv").read_bytes())
    for rel in db["filename_hr"].iloc[[0, 3]]:
        write_record(tmp_path / Path(rel).parent, Path(rel).name)
    # Record 3 has a header but no signal file.
    rec2 = write_record(tmp_path / Path(db["filename_hr"].iloc[2]).parent, Path(db["filename_hr"].iloc[2]).name)
    os.remove(str(rec2) + ".dat")

    ds, report = build_ptbxl(tmp_path, progress=False)
    assert ds["id"] == ["1"]
    reasons = {f.record_id: f.reason for f in report.failures}
    assert set(reasons) == {"2", "3", "4"}
    assert reasons["2"].startswith("file missing") and "00002_hr.hea" in reasons["2"]
    assert reasons["3"].startswith("file missing") and "00003_hr.dat" in reasons["3"]
    assert reasons["4"].startswith("bad scp_codes")
    assert report.failure_counts()["file missing"] == 2

    out = report.write_csv(tmp_path / "fail" / "failures.csv")
    rows = list(csv.DictReader(out.open()))
    assert [r["record_id"] for r in rows] == ["2", "3", "4"]
    assert rows[0]["path"].endswith("00002_hr")
    assert "4 metadata rows → 1 records, 3 left out" in report.summary()


def test_ptbxl_missing_or_bad_metadata_is_a_typed_error(tmp_path):
    with pytest.raises(EcgReadError, match=r"ptbxl_database\.csv not found"):
        build_ptbxl(tmp_path)
    (tmp_path / "ptbxl_database.csv").write_bytes(b"")
    with pytest.raises(EcgReadError, match="cannot parse"):
        build_ptbxl(tmp_path)
    (tmp_path / "ptbxl_database.csv").write_bytes(b"ecg_id,report\n1,sinusrhythmus \xfcberdrehter linkstyp\n")
    with pytest.raises(EcgReadError, match=r"lacks column\(s\) \['scp_codes'"):
        build_ptbxl(tmp_path)  # cp1252 bytes are read; the missing columns are named


# --- label splits -----------------------------------------------------------------------------------

EXPECTED_LABELS = {
    "ptbxl_super_class": 5, "ptbxl_sub_class": 23, "ptbxl_form": 19, "ptbxl_rhythm": 12,
    "icbeb": 9, "chapman": 38,
}  # fmt: skip


@pytest.mark.parametrize("task", list(LABEL_SPLIT_FILES))
def test_load_label_split_real_files(shared_data, task):
    root = shared_data / "merl" / "data_split"
    sizes = {}
    for part in SPLIT_PARTS:
        split = load_label_split(root, task, part)
        assert len(split.label_columns) == EXPECTED_LABELS[task]
        assert not {"sex", "age", "ecg_id", "patient_id", "strat_fold"} & set(split.label_columns)
        labels = split.labels
        assert labels.shape == (len(split.frame), EXPECTED_LABELS[task])
        assert set(np.unique(labels)) <= {0, 1}
        if task != "chapman":  # the published Chapman file has records whose only diagnosis has no column
            assert labels.sum(axis=1).min() >= 1
        if task.startswith("ptbxl_"):  # the multi-hot columns agree with the file's own label-list column
            listed = split.frame[task.removeprefix("ptbxl_")].map(ast.literal_eval)
            for row, names in zip(labels, listed, strict=True):
                assert {c for c, v in zip(split.label_columns, row, strict=True) if v} == set(names)
        ids = split.record_ids
        assert len(set(ids)) == len(ids)
        sizes[part] = len(ids)
    assert sizes["train"] > sizes["val"] > 0 and sizes["test"] > 0
    key = {"icbeb": "filename", "chapman": "ecg_path"}.get(task, "ecg_id")
    assert split.key_column == key
    if task == "icbeb":
        assert all(i.startswith("A") for i in ids)
    if task == "chapman":
        assert all(i.startswith("JS") for i in ids)


def test_load_label_split_bad_arguments(shared_data, tmp_path):
    root = shared_data / "merl" / "data_split"
    with pytest.raises(ConfigError, match="unknown label-split task"):
        load_label_split(root, "ptbxl_everything", "train")
    with pytest.raises(ConfigError, match="unknown split part"):
        load_label_split(root, "icbeb", "dev")
    with pytest.raises(EcgReadError, match="label split file"):
        load_label_split(tmp_path, "icbeb", "train")


def test_load_label_split_takes_the_label_set_names(shared_data):
    """`load_label_split(root, "ptbxl_super", ...)` was "unknown task": the prompt set, the label set and the CLI
    say `ptbxl_super`, MERL's files `ptbxl_super_class`."""
    root = shared_data / "merl" / "data_split"
    for name, task in (("ptbxl_super", "ptbxl_super_class"), ("ptbxl_sub", "ptbxl_sub_class"), ("cpsc2018", "icbeb")):
        split = load_label_split(root, name, "test")
        assert split.task == task and split.frame.equals(load_label_split(root, task, "test").frame)


# --- MIMIC-IV-ECG -----------------------------------------------------------------------------------


def make_mimic(root: Path) -> None:
    studies = {
        40000001: ["Sinus rhythm", "Normal ECG", None],
        40000002: ["*** Sinus tachycardia ***", "Abnormal EKG..", "Abnormal EKG..", "Left axis deviation"],
        40000003: ["Atrial fibrillation", "Abnormal ECG"],  # its files are missing on disk
        40000004: ["Normal ECG", None],  # 2 words: too short
        40000005: ["Sinus bradycardia", "Otherwise normal ECG"],  # no machine_measurements row below
    }
    rl, mm = [], []
    for i, (study, parts) in enumerate(studies.items()):
        subject = 10000000 + i
        rel = f"files/p1000/p{subject}/s{study}/{study}"
        if study != 40000003:
            write_record(root / Path(rel).parent, str(study))
        rl.append(
            {
                "subject_id": subject,
                "study_id": study,
                "file_name": study,
                "ecg_time": f"2180-07-2{i} 10:00:00",
                "path": rel,
            }
        )
        if study != 40000005:
            row = {"subject_id": subject, "study_id": study, "cart_id": 6848296, "bandwidth": "0.005-150Hz"}
            row.update({f"report_{k}": (parts[k] if k < len(parts) else None) for k in range(18)})
            row["rr_interval"] = 800
            mm.append(row)
    mm.append({"subject_id": 1, "study_id": 49999999, "report_0": "Sinus rhythm and more words"})  # no record
    pd.DataFrame(rl).to_csv(root / "record_list.csv", index=False)
    pd.DataFrame(mm).to_csv(root / "machine_measurements.csv", index=False)


def test_mimic_builder(tmp_path):
    make_mimic(tmp_path)
    ds, report = build_mimic_ecg(tmp_path, chunksize=2, progress=False)
    assert ds["id"] == ["40000001", "40000002"]
    assert ds["report"] == [
        "sinus rhythm. normal ecg.",
        "sinus tachycardia. abnormal ecg. left axis deviation.",
    ]
    assert ds[1]["report_original"].splitlines()[0] == "*** Sinus tachycardia ***"
    assert ds[0]["study_id"] == 40000001 and ds[0]["subject_id"] == 10000000
    assert ds[0]["labels"] == [] and ds[0]["fold"] == -1 and ds[0]["source"] == "mimic-iv-ecg"
    assert Path(ds[0]["path"] + ".hea").is_file()
    reasons = {f.record_id: f.reason for f in report.failures}
    assert reasons["40000003"].startswith("file missing")
    assert reasons["40000004"] == "report too short: 2 word(s) < min_words=4"
    assert reasons["40000005"] == "no machine_measurements.csv row"
    assert len(reasons) == 3 and report.notes["n_report_too_short"] == 1
    assert report.n_rows == 5 and report.n_records == 2

    ds_all, rep_all = build_mimic_ecg(tmp_path, min_words=0, progress=False)
    assert "40000004" in ds_all["id"] and rep_all.notes["n_report_too_short"] == 0


# --- PhysioNet/CinC and CPSC 2018 -------------------------------------------------------------------


def test_physionet_folder_real_cinc(shared_data):
    ds, report = build_physionet_folder(shared_data / "formats" / "cinc2021", progress=False)
    assert ds["id"] == ["E07500", "E07501", "E07502", "E07503", "E07504"]
    by_id = {r["id"]: r for r in ds}
    assert by_id["E07500"]["snomed"] == ["67741000119109", "426177001"]
    assert by_id["E07500"]["labels"] == ["LAE", "SB"]
    assert by_id["E07500"]["label_names"] == ["left atrial enlargement", "sinus bradycardia"]
    assert by_id["E07501"]["labels"] == ["LAA", "STach"]
    assert by_id["E07504"]["labels"] == ["LQT"]
    assert by_id["E07500"]["age"] == 78.0 and by_id["E07500"]["sex"] == "M"
    assert by_id["E07500"]["fs"] == 500.0 and by_id["E07500"]["n_samples"] == 5000 and by_id["E07500"]["n_leads"] == 12
    assert all(r["report_empty"] and r["report"] == "" for r in ds)
    assert report.failures == [] and report.notes["unmapped_codes"] == {}


def test_physionet_folder_failures_and_unmapped_codes(tmp_path):
    write_record(tmp_path / "g1", "R001", comments=["Age: 60", "Sex: Female", "Dx: 164889003,999999999"])
    write_record(tmp_path / "g1", "R002", comments=["Dx: 426783006"])
    os.remove(tmp_path / "g1" / "R002.dat")  # header without signal file
    (tmp_path / "g2").mkdir()
    (tmp_path / "g2" / "R003.hea").write_text("this is not a header\n")
    (tmp_path / "g2" / "R003.dat").write_bytes(b"\0" * 10)
    # A corrupt signal file is not the builder's business (it reads headers only): the cache reports it.
    write_record(tmp_path / "g2", "R004", comments=["Dx: 426783006"])
    (tmp_path / "g2" / "R004.dat").write_bytes(b"garbage")
    # signal files without a header: listed (they were skipped without a word, where zero-shot lists them)
    (tmp_path / "g2" / "orphan.dat").write_bytes(b"\0" * 10)
    (tmp_path / "g2" / "R005.mat").write_bytes(b"\0" * 10)

    ds, report = build_physionet_folder(tmp_path, source="georgia", progress=False)
    assert ds["id"] == ["R001", "R004"]
    assert report.n_rows == 6
    r1 = ds[0]
    assert r1["labels"] == ["AF", "999999999"] and r1["sex"] == "F" and r1["age"] == 60.0
    assert r1["source"] == "georgia"
    assert report.notes["unmapped_codes"] == {"999999999": 1}
    reasons = {f.record_id: f.reason for f in report.failures}
    assert reasons["R002"].startswith("file missing")
    assert reasons["R003"].startswith("unreadable header")
    assert reasons["orphan"] == "signal file orphan.dat has no .hea header beside it"
    assert reasons["R005"] == "signal file R005.mat has no .hea header beside it"


def test_cpsc2018_real_records(shared_data, tmp_path):
    root = shared_data / "formats" / "cpsc2018"
    ref = tmp_path / "REFERENCE.csv"
    ref.write_text(
        "Recording,First_label,Second_label,Third_label\n"
        "A1980,6,,\n"  # PAC, as in the published icbeb split
        "A1981,8,1,\n"
        "A9999,1,,\n"  # no such file
    )
    ds, report = build_cpsc2018(root, ref, progress=False)
    assert ds["id"] == ["A1980", "A1981"]
    assert ds["labels"] == [["PAC"], ["STD", "Normal"]]
    assert ds["label_codes"] == [[6], [8, 1]]
    assert ds[0]["path"] == str((root / "A1980").resolve())
    assert [(f.record_id, f.reason.split(":")[0]) for f in report.failures] == [("A9999", "file missing")]
    # The published split agrees with the class we wrote for A1980.
    icbeb = load_label_split(shared_data / "merl" / "data_split", "icbeb", "train")
    row = icbeb.frame[icbeb.frame["filename"] == "A1980"].iloc[0]
    assert row["PAC"] == 1 and CPSC2018_CLASSES[6] == "PAC"


def test_cpsc2018_unknown_class_and_unlisted_file(shared_data, tmp_path):
    root = tmp_path / "cpsc"
    root.mkdir()
    for name in ("A1980", "A1981"):
        (root / f"{name}.mat").symlink_to(shared_data / "formats" / "cpsc2018" / f"{name}.mat")
    ref = tmp_path / "REFERENCE.csv"
    ref.write_text("Recording,First_label,Second_label,Third_label\nA1980,12,,\n")
    ds, report = build_cpsc2018(root, ref, progress=False)
    assert len(ds) == 0 and ds.column_names[:8] == COMMON
    reasons = {f.record_id: f.reason for f in report.failures}
    assert reasons == {
        "A1980": "unknown class '12' in First_label (expected 1-9)",
        "A1981": "no REFERENCE.csv row",
    }


def test_physionet_folder_repeated_name_is_a_listed_failure(tmp_path, capsys):
    """Was: the table kept both records under one id and the cache stopped the whole build (and training with
    `data.unpaired_root`) with "duplicate record id 'R001'; ids must be unique", naming no file."""
    first = write_record(tmp_path / "a", "R001", comments=["Dx: 426783006"])
    write_record(tmp_path / "a", "R002", comments=["Dx: 426783006"])
    second = write_record(tmp_path / "b", "R001", comments=["Dx: 164889003"])
    write_record(tmp_path / "b", "R003", comments=["Dx: 164889003"])
    ds, report = build_physionet_folder(tmp_path, progress=False)
    assert ds["id"] == ["R001", "R002", "R003"] and ds[0]["path"] == str(first)
    assert [(f.record_id, f.path, f.reason) for f in report.failures] == [
        ("R001", str(second), f"duplicate id: 'R001' of {second} was first used by {first}")
    ]
    # the whole command: the rest is built and cached, the second R001 listed, exit 1
    from ecglang.cli.main import main as cli

    out = tmp_path / "out"
    assert cli(["data", "build", "physionet", str(tmp_path), "--out", str(out), "--no-progress"]) == 1
    printed = capsys.readouterr()
    assert "3 ok, 0 failed" in printed.out and f"R001: duplicate id: 'R001' of {second}" in printed.err


def test_cpsc2018_repeated_reference_row_is_a_listed_failure(shared_data, tmp_path):
    """Was: the same crash in the cache as a repeated PhysioNet name."""
    ref = tmp_path / "REFERENCE.csv"
    ref.write_text("Recording,First_label\nA1980,1\nA1981,2\n\nA1981,3\n")
    ds, report = build_cpsc2018(shared_data / "formats" / "cpsc2018", ref, progress=False)
    assert ds["id"] == ["A1980", "A1981"] and ds["labels"] == [["Normal"], ["AF"]]
    assert [(f.record_id, f.reason) for f in report.failures] == [
        ("A1981", "duplicate id: 'A1981' in REFERENCE.csv line 5 was first used in line 3")
    ]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1.7", "2.9", "1e0", "-1", "0", "10"])
def test_cpsc2018_a_class_that_is_not_1_to_9_is_listed(shared_data, tmp_path, value):
    """`inf` was an OverflowError traceback; `1.7` and `2.9` were read as classes 1 and 2 without a word."""
    ref = tmp_path / "REFERENCE.csv"
    ref.write_text(f"Recording,First_label,Second_label\nA1980,1,\nA1981,2,{value}\n")
    ds, report = build_cpsc2018(shared_data / "formats" / "cpsc2018", ref, progress=False)
    assert ds["id"] == ["A1980"]
    assert [(f.record_id, f.reason) for f in report.failures] == [
        ("A1981", f"unknown class {value!r} in Second_label (expected 1-9)")
    ]


def test_cpsc2018_a_class_written_as_a_float_is_read(shared_data, tmp_path):
    ref = tmp_path / "REFERENCE.csv"
    ref.write_text("Recording,First_label,Second_label\nA1980,1.0,\nA1981, 2 ,3.00\n")  # a float column's export
    ds, report = build_cpsc2018(shared_data / "formats" / "cpsc2018", ref, progress=False)
    assert ds["label_codes"] == [[1], [2, 3]] and report.failures == []
