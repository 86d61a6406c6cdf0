"""Bad input end to end: every case is generated here (tmp_path) and pushed through the entry points that
users hit (`load_ecg`, `preprocess`, `tokenize_beats`, `EcgProcessor`, `ZeroShotClassifier`, the CLI).

Each case ends in a typed error from `ecglang.errors` naming the file and the problem, or in a documented
handling (a flagged/masked lead, a crop, a pad). Batch runs go on past bad records, list them on screen and in
a machine-readable file, exit non-zero, and account for every record given (scored + failed == given).
docs/RELIABILITY.md lists every case with the test that checks it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
import wfdb

from ecglang.beats.tokenize import tokenize_beats
from ecglang.cli.main import main as cli
from ecglang.data.builders import build_ptbxl
from ecglang.data.cache import SignalCache
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.encoders.modeling import EcgLangModel
from ecglang.encoders.registry import create_model
from ecglang.errors import EcgQualityError, EcgReadError, KnowledgeError, ModelLoadError, PromptError
from ecglang.record.io import load_ecg
from ecglang.record.leads import CANONICAL_LEADS, LEAD_INDEX
from ecglang.scores.classifier import ZeroShotClassifier
from ecglang.signal.preprocess import preprocess
from ecglang.text.reports import normalize_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: steady timings on shared cores

LABELS = ["sinus rhythm", "atrial fibrillation", "left bundle branch block"]

# P, Q, R, S, T amplitudes (mV) per canonical lead: a plausible normal 12-lead pattern.
_AMPS = np.array([
    [0.08, -0.05, 0.70, -0.10, 0.20], [0.12, -0.08, 1.10, -0.20, 0.30], [0.05, -0.05, 0.40, -0.15, 0.10],
    [-0.10, 0.05, -0.85, 0.15, -0.25], [0.03, -0.03, 0.35, -0.05, 0.08], [0.09, -0.06, 0.75, -0.18, 0.20],
    [0.05, 0.00, 0.20, -0.90, -0.10], [0.06, 0.00, 0.50, -1.20, 0.40], [0.06, -0.05, 0.90, -0.80, 0.45],
    [0.07, -0.08, 1.40, -0.50, 0.45], [0.07, -0.10, 1.30, -0.25, 0.35], [0.06, -0.08, 1.00, -0.15, 0.25],
])  # fmt: skip
_WAVE_OFFSET_S = np.array([-0.16, -0.025, 0.0, 0.03, 0.28])
_WAVE_WIDTH_S = np.array([0.025, 0.01, 0.012, 0.012, 0.05])


def synth_ecg(
    fs: float, duration: float, bpm: float = 72.0, seed: int = 0, rtimes: np.ndarray | None = None
) -> np.ndarray:
    """A 12-lead ECG `[12, n]` in mV with Gaussian P-Q-R-S-T waves at `bpm` (or at `rtimes`) plus a little noise."""
    n = round(duration * fs)
    t = np.arange(n) / fs
    rt = np.arange(0.35, duration, 60.0 / bpm) if rtimes is None else np.asarray(rtimes, dtype=float)
    sig = np.zeros((12, n))
    for w in range(5):
        wave = np.exp(-0.5 * ((t[None, :] - (rt[:, None] + _WAVE_OFFSET_S[w])) / _WAVE_WIDTH_S[w]) ** 2).sum(0)
        sig += _AMPS[:, w, None] * wave[None, :]
    return sig + np.random.default_rng(seed).normal(0, 0.01, sig.shape)


def write_wfdb(folder: Path, name: str, sig: np.ndarray, fs: float, names: list[str] | None = None) -> Path:
    """Write a WFDB record (format 16, 1 µV resolution); returns the `.hea` path."""
    names = list(CANONICAL_LEADS) if names is None else names
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(names), sig_name=names, p_signal=np.asarray(sig, np.float64).T,
                fmt=["16"] * len(names), adc_gain=[1000.0] * len(names), baseline=[0] * len(names),
                write_dir=str(folder))  # fmt: skip
    return folder / f"{name}.hea"


def _edit_header(hea: Path, edit) -> None:
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join(edit(lines)) + "\n")


def _rename_lead(lines: list[str], old: str, new: str) -> list[str]:
    return [" ".join([*ln.split()[:-1], new]) if ln.split() and ln.split()[-1] == old else ln for ln in lines]


@dataclass(frozen=True)
class Case:
    """One generated input and what must happen to it.

    stage: "ok" (scored), "read" (`EcgReadError` from `load_ecg`) or "process" (`EcgQualityError` from
    preprocessing/beats). message: a regex the error must match. quality: expected lead flags when ok."""

    path: Path
    stage: str
    message: str = ""
    quality: dict[str, list[str]] | None = None


def _make_cases(folder: Path) -> dict[str, Case]:
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Case] = {}

    for fs in (100, 250, 257, 360, 1000):  # every rate works end to end (resampled to 500 Hz)
        cases[f"fs{fs}"] = Case(write_wfdb(folder, f"fs{fs}", synth_ecg(fs, 10.0, seed=fs), fs), "ok", quality={})

    sig = synth_ecg(500, 10.0)
    sig[[0, 1], 1000:1040] = np.nan  # 80 ms gaps: interpolated
    cases["nan_short_gap"] = Case(write_wfdb(folder, "nan_short_gap", sig, 500), "ok",
                                  quality={"I": ["nan_interpolated"], "II": ["nan_interpolated"]})  # fmt: skip
    sig = synth_ecg(500, 10.0)
    sig[LEAD_INDEX["V3"]] = np.nan  # a whole lead lost: masked, the others still scored
    cases["nan_lead"] = Case(write_wfdb(folder, "nan_lead", sig, 500), "ok", quality={"V3": ["nan_gap"]})
    sig = synth_ecg(500, 10.0)
    sig[LEAD_INDEX["aVR"], [10, 2000, 2001]] = [np.inf, -np.inf, np.inf]  # WFDB cannot store inf: NPZ
    np.savez(folder / "inf_samples.npz", signal=sig, fs=500.0, leads=np.array(CANONICAL_LEADS))
    cases["inf_samples"] = Case(folder / "inf_samples.npz", "ok", quality={"aVR": ["nan_interpolated"]})
    sig = synth_ecg(500, 10.0)
    sig[LEAD_INDEX["III"]] = 0.4  # disconnected electrode: a constant
    cases["flat_lead"] = Case(write_wfdb(folder, "flat_lead", sig, 500), "ok", quality={"III": ["flat"]})
    sig = synth_ecg(500, 10.0)
    v2 = LEAD_INDEX["V2"]
    sig[v2] = np.clip(sig[v2] * 40 + 5 * np.sin(np.linspace(0, 20, sig.shape[1])), -3.0, 3.0)  # clipped amplifier
    cases["saturated_lead"] = Case(write_wfdb(folder, "saturated_lead", sig, 500), "ok", quality={"V2": ["saturated"]})
    cases["one_second_fast"] = Case(  # 1 s at 150 bpm holds 2 beats: scored (zero-padded to 10 s)
        write_wfdb(folder, "one_second_fast", synth_ecg(500, 1.0, bpm=150), 500), "ok", quality={}
    )
    cases["sixty_seconds"] = Case(  # cropped to the first 10 s
        write_wfdb(folder, "sixty_seconds", synth_ecg(500, 60.0), 500), "ok", quality={}
    )

    (folder / "corrupt_header.hea").write_bytes(b"\x89PNG\r\n\x1a\n this is not a WFDB header \xff\xfe\n")
    cases["corrupt_header"] = Case(folder / "corrupt_header.hea", "read", r"corrupt header")
    hea = write_wfdb(folder, "mismatched_header", synth_ecg(500, 10.0), 500)
    _edit_header(hea, lambda ls: [ls[0].replace(" 500 5000", " 500 4000"), *ls[1:]])
    cases["mismatched_header"] = Case(hea, "read", r"sample count mismatch: header says 4000 samples")
    hea = write_wfdb(folder, "missing_signal_line", synth_ecg(500, 10.0), 500)
    _edit_header(hea, lambda ls: ls[:-1])
    cases["missing_signal_line"] = Case(hea, "read", r"declares 12 signals but 11 signal lines follow")
    hea = write_wfdb(folder, "truncated_dat", synth_ecg(500, 10.0), 500)
    dat = hea.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:30_000])
    cases["truncated_dat"] = Case(hea, "read", r"truncated signal file truncated_dat\.dat")
    hea = write_wfdb(folder, "unknown_lead", synth_ecg(500, 10.0), 500)
    _edit_header(hea, lambda ls: _rename_lead(ls, "V6", "FOO"))
    cases["unknown_lead"] = Case(hea, "read", r"unknown lead name\(s\) \['FOO'\]")
    hea = write_wfdb(folder, "duplicate_lead", synth_ecg(500, 10.0), 500)
    _edit_header(hea, lambda ls: _rename_lead(ls, "III", "II"))  # wfdb.wrsamp refuses duplicates: edit
    cases["duplicate_lead"] = Case(hea, "read", r"duplicate lead 'II'")

    cases["all_nan"] = Case(write_wfdb(folder, "all_nan", np.full((12, 5000), np.nan), 500), "process",
                            r"no usable lead left after quality checks: .*nan_gap")  # fmt: skip
    cases["all_flat"] = Case(write_wfdb(folder, "all_flat", np.zeros((12, 5000)), 500), "process",
                             r"no usable lead left after quality checks: .*flat")  # fmt: skip
    cases["one_beat"] = Case(  # fewer than 2 beats
        write_wfdb(folder, "one_beat", synth_ecg(500, 3.0, rtimes=np.array([1.5])), 500),
        "process", r"found 1 beat\(s\) in 3\.00 s, need at least 2",
    )  # fmt: skip
    cases["one_second"] = Case(  # 1 s at 60 bpm: one beat; the message gives the record's real length
        write_wfdb(folder, "one_second", synth_ecg(500, 1.0, bpm=60), 500),
        "process", r"found 1 beat\(s\) in 1\.00 s, need at least 2",
    )  # fmt: skip
    return cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:
    return _make_cases(tmp_path_factory.mktemp("bad") / "records")


@pytest.fixture(scope="module")
def model(model_dir) -> EcgLangModel:
    return EcgLangModel.from_pretrained(model_dir)


def _stem(path: str | Path) -> str:
    return Path(path).name.split(".")[0]


def _one_error_line(err: str) -> str:
    """The CLI's answer to a typed error: exactly one `error:` line and no traceback."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------- single records
CASE_NAMES = [
    "fs100", "fs250", "fs257", "fs360", "fs1000", "nan_short_gap", "nan_lead", "inf_samples", "flat_lead",
    "saturated_lead", "one_second_fast", "sixty_seconds", "corrupt_header", "mismatched_header",
    "missing_signal_line", "truncated_dat", "unknown_lead", "duplicate_lead", "all_nan", "all_flat", "one_beat",
    "one_second",
]  # fmt: skip


def test_case_list_is_complete(cases):
    assert sorted(cases) == sorted(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_case_through_load_preprocess_tokenize_and_processor(cases, name):
    case = cases[name]
    if case.stage == "read":
        with pytest.raises(EcgReadError, match=case.message) as err:
            load_ecg(case.path)
        assert str(case.path) in str(err.value)  # names the file
        return
    ecg = load_ecg(case.path)
    if case.stage == "process":
        with pytest.raises(EcgQualityError, match=case.message) as err:
            tokenize_beats(preprocess(ecg))
        assert str(case.path) in str(err.value)
        batch = EcgProcessor()([ecg], errors="collect")
        assert batch.indices == [] and len(batch.failures) == 1
        failure = batch.failures[0]  # the same problem, as the one failure record of every batch path
        assert failure.stage == "process" and re.search(case.message, failure.reason) and failure.path == str(case.path)
        return
    clean = preprocess(ecg)
    tokens = tokenize_beats(clean)
    assert clean.metadata["quality"] == case.quality
    assert clean.fs == 500.0 and clean.n_samples == 5000 and np.isfinite(clean.signal).all()
    assert tokens.n_beats >= 2 and np.isfinite(tokens.beats).all()
    for lead, flags in case.quality.items():
        if set(flags) & {"nan_gap", "flat", "saturated"}:  # unusable lead: masked and zero
            assert not clean.lead_mask[LEAD_INDEX[lead]] and not clean.signal[LEAD_INDEX[lead]].any()
    if name.startswith("fs") or name in ("sixty_seconds", "flat_lead", "saturated_lead", "nan_lead"):
        assert tokens.n_beats == 12  # every beat of 10 s at 72 bpm, whatever the rate or the lost lead
    if name == "sixty_seconds":
        assert clean.metadata["original_n_samples"] == 30_000 and clean.metadata["crop_offset"] == 0
    if name == "one_second_fast":
        assert clean.metadata["pad_samples"] == 4500 and tokens.rpeaks.max() < 500
    batch = EcgProcessor()([ecg], errors="collect")
    assert batch.indices == [0] and not batch.failures and batch["beats"].shape == (1, 40, 12, 96)


def test_cli_single_bad_record_is_one_error_line(cases, capsys):
    for name in ("corrupt_header", "truncated_dat", "duplicate_lead"):
        assert cli(["inspect", str(cases[name].path)]) == 1
        line = _one_error_line(capsys.readouterr().err)
        assert str(cases[name].path) in line and re.search(cases[name].message, line)


# ------------------------------------------------------------------------------------- batch runs
def test_zero_shot_goes_on_past_bad_records_and_accounts_for_all(model, cases):
    folder = cases["fs100"].path.parent
    result = ZeroShotClassifier(model, knowledge=None)(folder, labels=LABELS, progress=False)
    scored = set(result.scores.index)
    failed = {_stem(f.record): f for f in result.failures}
    assert scored == {n for n, c in cases.items() if c.stage == "ok"}
    assert set(failed) == {n for n, c in cases.items() if c.stage != "ok"}
    assert len(scored) + len(failed) == len(cases)  # nothing dropped, nothing counted twice
    assert np.isfinite(result.scores.to_numpy()).all()
    for name, f in failed.items():
        assert f.stage == cases[name].stage and re.search(cases[name].message, f.reason), (name, f)
        assert str(cases[name].path.with_suffix("")) in f.reason  # names the file


def test_cli_zero_shot_lists_failures_in_output_and_csv(model_dir, cases, tmp_path, capsys):
    folder = cases["fs100"].path.parent
    out = tmp_path / "scores.csv"
    argv = ["zero-shot", str(folder), "--labels", *LABELS, "--model", str(model_dir), "--knowledge", "off",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert cli(argv) == 1  # some records failed
    err = capsys.readouterr().err
    assert "Traceback" not in err
    bad = {n for n, c in cases.items() if c.stage != "ok"}
    assert f"{len(bad)} record(s) failed" in err
    for name in bad:
        assert re.search(rf"\[{cases[name].stage}\] \S*{name}\S*: ", err), name
    scores = pd.read_csv(out, index_col=0)
    failures = pd.read_csv(out.with_suffix(".failures.csv"))
    assert list(failures.columns) == ["record", "path", "stage", "error"]
    assert {Path(p).name for p in failures["path"]} == {cases[n].path.name for n in bad}  # the files that failed
    assert set(scores.index) == {n for n, c in cases.items() if c.stage == "ok"}
    assert {_stem(r) for r in failures["record"]} == bad
    assert len(scores) + len(failures) == len(cases)


def test_cli_evaluate_goes_on_past_bad_records(model_dir, cases, tmp_path, capsys):
    folder = cases["fs100"].path.parent
    ok = sorted(n for n, c in cases.items() if c.stage == "ok")
    bad = sorted(n for n, c in cases.items() if c.stage != "ok")
    rows = [{"record_id": n, "NORM": i % 2, "ABN": 1 - i % 2} for i, n in enumerate(ok + bad)]
    rows.append({"record_id": "not_on_disk", "NORM": 1, "ABN": 0})
    labels_csv = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(labels_csv, index=False)
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(model_dir), "--labels-csv", str(labels_csv), "--records", str(folder),
            "--sources", "names", "--n-boot", "20", "--out", str(out), "--no-progress"]  # fmt: skip
    assert cli(argv) == 1
    err = capsys.readouterr().err
    assert f"{len(bad)} record(s) failed" in err and "Traceback" not in err
    with open(out / "failures.csv", newline="") as fh:
        failures = {_stem(r["record"]): r for r in csv.DictReader(fh)}
    assert set(failures) == set(bad)
    for name in bad:
        assert failures[name]["stage"] == cases[name].stage
    counts = json.loads((out / "results.json").read_text())["label_sets"]["labels"]["records"]
    assert counts["rows"] == len(rows) == counts["evaluated"] + counts["failed"] + counts["missing"]
    assert (counts["evaluated"], counts["failed"], counts["missing"]) == (len(ok), len(bad), 1)


def test_cli_data_build_goes_on_past_bad_records(cases, tmp_path, capsys):
    """`ecglang data build physionet` on the generated folder: headers that cannot be read are build failures,
    records that cannot be read or preprocessed are cache failures; both are listed and counted."""
    folder = cases["fs100"].path.parent
    out = tmp_path / "built"
    assert cli(["data", "build", "physionet", str(folder), "--out", str(out), "--batch-size", "8"]) == 1
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err
    n_records = len(list(folder.glob("*.hea"))) + len(list(folder.glob("*.np[yz]")))
    ds = datasets.load_from_disk(str(out / "dataset"))
    build_failures = pd.read_csv(out / "build_failures.csv")
    assert len(ds) + len(build_failures) == n_records
    # only headers are read at this stage; an NPZ record is listed, not built (it was left out unsaid before)
    assert set(build_failures["record_id"]) == {"corrupt_header", "inf_samples"}
    cache = SignalCache.open(out / "cache")
    cache_failures = pd.read_csv(out / "cache_failures.csv")
    assert len(cache.ids) == len(ds) and len(cache.ok_rows) + len(cache_failures) == len(ds)
    # Preprocessing only (no beats): all but the unreadable and the unusable records are cached.
    expected_failed = {n for n, c in cases.items() if c.stage == "read" or n in ("all_nan", "all_flat")}
    assert set(cache_failures["id"]) == expected_failed - {"corrupt_header"}
    assert f"{len(cache.ok_rows)} ok, {len(cache_failures)} failed" in printed.out
    assert "2 record(s) left out of the dataset" in printed.err and "corrupt_header: file missing" in printed.err
    assert f"{len(cache_failures)} record(s) failed in the cache" in printed.err
    for name in cache_failures["id"]:
        assert f"  {name}: " in printed.err


# ------------------------------------------------------------------------------------- reports (text)
def _write_ptbxl(root: Path) -> dict[str, str]:
    """A PTB-XL-shaped folder whose database CSV is cp1252 (not UTF-8), with empty and odd reports."""
    (root / "records500" / "00000").mkdir(parents=True)
    reports = {
        "1": "sinusrhythmus. überdrehter linkstyp.",  # umlaut: cp1252 byte 0xfc in the file
        "2": "",
        "3": "   ",
        "4": "ó¬ edit: norm",  # device glyph + validation note only: normalises to ""
        "5": "sinus rhythm. normal ecg.",
        "6": "sinusrhythmus",  # its record files are missing
    }
    rows = []
    for ecg_id, report in reports.items():
        rel = f"records500/00000/{int(ecg_id):05d}_hr"
        if ecg_id != "6":
            write_wfdb(root / "records500" / "00000", Path(rel).name, synth_ecg(500, 10.0, seed=int(ecg_id)), 500)
        rows.append({"ecg_id": int(ecg_id), "patient_id": 1.0, "age": 50, "sex": 0, "report": report,
                     "scp_codes": "{'NORM': 100.0}", "strat_fold": 1, "filename_lr": rel.replace("500", "100")
                     .replace("_hr", "_lr"), "filename_hr": rel})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False, encoding="cp1252")
    pd.DataFrame(
        {"diagnostic": [1], "diagnostic_class": ["NORM"], "diagnostic_subclass": ["NORM"]}, index=["NORM"]
    ).to_csv(root / "scp_statements.csv")
    return reports


def test_non_utf8_and_empty_reports_through_builder_and_text_tower(model, tmp_path):
    raw = (tmp_path / "ptbxl").resolve()
    reports = _write_ptbxl(raw)
    with pytest.raises(UnicodeDecodeError):
        (raw / "ptbxl_database.csv").read_text(encoding="utf-8")  # really not UTF-8
    ds, report = build_ptbxl(raw, progress=False)
    assert report.n_rows == len(reports) == len(ds) + len(report.failures)
    assert [f.record_id for f in report.failures] == ["6"] and "file missing" in report.failures[0].reason
    by_id = {row["id"]: row for row in ds}
    assert by_id["1"]["report_original"] == reports["1"]  # decoded as cp1252, not mangled
    assert "left axis" in by_id["1"]["report"]  # and translated
    for ecg_id in ("2", "3", "4"):  # documented: kept with their labels, flagged empty
        assert by_id[ecg_id]["report"] == "" and by_id[ecg_id]["report_empty"]
    # Bytes that are neither UTF-8 nor fully cp1252 (0x81, 0x9d are undefined there) never raise.
    assert normalize_report(b"sinusrhythmus \xfc\x81\x9d").startswith("sinus rhythm. ü")

    texts = [by_id[i]["report"] for i in sorted(by_id)]  # two real reports and three empty strings
    with torch.no_grad():
        out = model.encode_text(texts)
        assert out.text_embeds.shape == (len(texts), 256) and torch.isfinite(out.text_embeds).all()
        assert torch.isfinite(out.sentence_embeds).all()
        # The pretraining forward pass with empty reports: a finite loss.
        batch = EcgProcessor()([load_ecg(p) for p in ds["path"]])
        assert torch.isfinite(model(**batch, texts=list(ds["report"])).loss)


def test_cli_data_build_ptbxl_counts_add_up(tmp_path, capsys):
    raw = (tmp_path / "ptbxl").resolve()
    _write_ptbxl(raw)
    hea = raw / "records500" / "00000" / "00005_hr.hea"
    dat = hea.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:1000])  # the dataset builder reads headers only; the cache finds this
    out = tmp_path / "built"
    assert cli(["data", "build", "ptbxl", str(raw), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    printed = captured.out
    assert "6 metadata rows → 5 records, 1 left out" in printed
    assert "4 ok, 1 failed" in printed
    assert "  6: file missing" in captured.err and "  5: " in captured.err and "truncated" in captured.err
    cache_failures = pd.read_csv(out / "cache_failures.csv", dtype=str)
    assert list(cache_failures["id"]) == ["5"] and "truncated signal file" in cache_failures["reason"][0]
    assert pd.read_csv(out / "build_failures.csv", dtype=str)["record_id"].tolist() == ["6"]


# ------------------------------------------------------------------------------------- labels
def test_empty_and_duplicate_label_lists(model, cases, model_dir, capsys):
    clf = ZeroShotClassifier(model, knowledge=None)
    ecg = load_ecg(cases["fs250"].path)
    with pytest.raises(PromptError, match="the label list is empty"):
        clf(ecg, labels=[], progress=False)
    with pytest.raises(PromptError, match=r"duplicate label 'atrial fibrillation'"):
        clf(ecg, labels=["Atrial fibrillation", "atrial fibrillation"], progress=False)
    argv = ["zero-shot", str(cases["fs250"].path), "--model", str(model_dir), "--knowledge", "off", "--labels"]
    assert cli([*argv, "AF", "af", "--quiet"]) == 2  # the command line alone is wrong: a usage error
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ecglang zero-shot: error: duplicate label 'af'" in err


def test_a_thousand_labels_complete(model, cases):
    """1,000 labels: four batches of the prompt embedder (256 each, the last one ragged), which is what
    10,000 exercised too; the 10,000-label scale is timed in benchmarks/ (`labels`)."""
    labels = [f"finding {i}" for i in range(1_000)]
    ecgs = [load_ecg(cases[n].path) for n in ("fs250", "fs360")]
    batches: list[int] = []
    original = model.encode_text
    model.encode_text = lambda texts: batches.append(len(texts)) or original(texts)
    try:
        t0 = time.perf_counter()
        result = ZeroShotClassifier(model, knowledge=None)(ecgs, labels=labels, progress=False)
        elapsed = time.perf_counter() - t0
    finally:
        del model.encode_text
    assert sum(batches) >= 1_000 and len(batches) >= 4 and batches[0] == 256 and min(batches) < 256, batches
    assert result.scores.shape == (2, 1_000) and list(result.scores.columns) == labels
    assert np.isfinite(result.scores.to_numpy()).all()
    # Label embeddings differ (each prompt really went through the text tower).
    assert result.scores.nunique(axis=1).min() > 900
    print(f"1,000 labels x 2 records: {elapsed:.1f} s")


# ------------------------------------------------------------------------------------- knowledge files
def test_missing_and_malformed_knowledge_files(model, model_dir, cases, tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(KnowledgeError, match="knowledge base file or folder not found") as err:
        ZeroShotClassifier(model, knowledge=missing)
    assert str(missing) in str(err.value)
    bad = tmp_path / "bad.jsonl"
    good_line = json.dumps({"id": "af-1", "title": "Atrial fibrillation", "text": "Irregular RR intervals, no "
                            "P waves.", "source": "Test source, 2024"})  # fmt: skip
    bad.write_text(good_line + "\n{'id': 'x', not json}\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"line 2: invalid JSON") as err:
        ZeroShotClassifier(model, knowledge=bad)
    assert str(bad) in str(err.value)

    for kb in (missing, bad):
        assert cli(["knowledge", "build", "--kb", str(kb), "--out", str(tmp_path / "index")]) == 1
        assert str(kb) in _one_error_line(capsys.readouterr().err)
        argv = ["zero-shot", str(cases["fs250"].path), "--labels", "AF", "--model", str(model_dir), "--knowledge"]
        assert cli([*argv, str(kb), "--quiet"]) == 1
        assert str(kb) in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "index").exists()


# ------------------------------------------------------------------------------------- faults
def test_checkpoint_with_a_missing_weight_file_is_refused(model_dir, tmp_path):
    for name in ("model.safetensors", "text_adapter/adapter_model.safetensors"):
        folder = tmp_path / name.replace("/", "_")
        shutil.copytree(model_dir, folder)
        (folder / name).unlink()
        with pytest.raises(ModelLoadError, match=r"listed in checksums\.json but missing") as err:
            EcgLangModel.from_pretrained(folder)
        assert str(folder / name) in str(err.value)


_KILL_AFTER_WEIGHTS = textwrap.dedent(
    """
    import os, signal, sys, torch
    import ecglang.encoders.checkpoint
    from ecglang.encoders.registry import create_model

    out = sys.argv[1]
    torch.manual_seed(1)
    a = create_model("ecglang-small").eval()
    torch.manual_seed(2)
    b = create_model("ecglang-small").eval()
    a.save_pretrained(out)
    a.save_pretrained(out + "-a")  # a reference copy of the checkpoint that must survive
    real = ecglang.encoders.checkpoint.save_file

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)  # the new weights file is complete on disk ...
        os.kill(os.getpid(), signal.SIGKILL)  # ... and the process dies before the rest of the save

    ecglang.encoders.checkpoint.save_file = save_then_die
    b.save_pretrained(out)
    """
)


def _same_weights(x: EcgLangModel, y: EcgLangModel) -> bool:
    sx, sy = x.state_dict(), y.state_dict()
    return sx.keys() == sy.keys() and all(torch.equal(v, sy[k]) for k, v in sx.items())


def test_save_pretrained_killed_after_writing_weights_keeps_the_old_checkpoint(tmp_path):
    """SIGKILL at the worst moment of an overwrite (new weights written, adapter/tokenizer/checksums not yet):
    the folder still holds the complete old checkpoint, which loads and verifies."""
    out = tmp_path / "ckpt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", _KILL_AFTER_WEIGHTS, str(out)], capture_output=True, text=True,
                         env=env, timeout=120)  # fmt: skip
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert _same_weights(EcgLangModel.from_pretrained(out), EcgLangModel.from_pretrained(f"{out}-a"))


class _Interrupted(BaseException):
    """Raised by the tracer at a chosen line: nothing after it in the save runs, as after a SIGKILL."""


_SAVE_FUNCTIONS = frozenset({"save_pretrained", "_move_into_place", "_carry_over"})


def _stop_at_line(k: int) -> tuple[object, list[int]]:
    """A `sys.settrace` function raising `_Interrupted` at the k-th line executed by the save code of
    ecglang/modeling.py (k=0: never; the count of lines executed is in the returned list)."""
    import ecglang.encoders.checkpoint

    count = [0]

    def local(frame, event, arg):
        if event == "line":
            count[0] += 1
            if count[0] == k:
                raise _Interrupted
        return local

    def tracer(frame, event, arg):
        code = frame.f_code
        return (
            local
            if code.co_filename == ecglang.encoders.checkpoint.__file__ and code.co_name in _SAVE_FUNCTIONS
            else None
        )

    return tracer, count


def _checkpoint_digest(folder: Path) -> tuple[str, str]:
    from ecglang.core.checksums import sha256_file, verify_checksums

    verify_checksums(folder, required=True)  # complete and consistent
    return sha256_file(folder / "model.safetensors"), sha256_file(folder / "text_adapter" / "adapter_model.safetensors")


def test_save_pretrained_interrupted_at_random_lines_never_leaves_a_mix(model, tmp_path):
    """Stop an overwriting save at random lines of its code (12 of the ~100 it executes): the folder
    is always the old or the new complete checkpoint. The one point between the two renames of the swap
    leaves no folder, and the old checkpoint complete beside it (`.ckpt.old`), which the next save cleans up."""
    torch.manual_seed(5)
    other = create_model("ecglang-small").eval()
    out = tmp_path / "ckpt"
    digests = {}
    for name, m in (("old", model), ("new", other)):
        m.save_pretrained(tmp_path / name)
        digests[_checkpoint_digest(tmp_path / name)] = name
    tracer, count = _stop_at_line(0)
    model.save_pretrained(out)
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        other.save_pretrained(out)
    finally:
        sys.settrace(previous)
    n_lines = count[0]
    outcomes = []
    for k in sorted(np.random.default_rng().choice(np.arange(1, n_lines + 1), size=min(12, n_lines), replace=False)):
        model.save_pretrained(out)
        tracer, _ = _stop_at_line(int(k))
        sys.settrace(tracer)
        try:
            other.save_pretrained(out)
        except _Interrupted:
            pass
        finally:
            sys.settrace(previous)
        if out.exists():
            outcomes.append(digests.get(_checkpoint_digest(out), "mixed"))
        else:  # between the two renames
            assert digests[_checkpoint_digest(tmp_path / ".ckpt.old")] == "old"
            with pytest.raises(ModelLoadError, match=r"a save into it was interrupted; the previous complete"):
                EcgLangModel.from_pretrained(out)
            outcomes.append("swapping")
    assert set(outcomes) <= {"old", "new", "swapping"}, outcomes
    model.save_pretrained(out)
    assert digests[_checkpoint_digest(out)] == "old" and not (tmp_path / ".ckpt.old").exists()


def test_save_pretrained_keeps_other_files_and_drops_stale_ones(model, tmp_path):
    out = tmp_path / "ckpt"
    model.save_pretrained(out)
    (out / "notes.txt").write_text("my training notes")
    (out / "stale_weights.safetensors").write_bytes(b"")  # not a checkpoint file name: the user's, kept
    (out / "tokenizer_extra.json").write_text("{}")  # a tokenizer file of an older save: replaced, not kept
    model.save_pretrained(out)
    assert (out / "notes.txt").read_text() == "my training notes"
    assert (out / "stale_weights.safetensors").exists() and not (out / "tokenizer_extra.json").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    EcgLangModel.from_pretrained(out)
