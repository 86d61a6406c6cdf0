"""Absurd records rejected when read: sampling rates outside the physical range, unsupported WFDB formats,
empty records, complex CPSC data, headerless ``.dat`` files; and errors that name the file once, absolutely.
Every record is built here in tmp_path (issue 13, items 5 and 8)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import wfdb

from ecglang.errors import EcgReadError
from ecglang.record.io import load_ecg, scan_records
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.record.window import MAX_FS_HZ, MIN_FS_HZ, ReadWindow

ABSURD_RATES = ["0.001", "0.05", "-500", "0", "nan", "1e6"]


def _wfdb_record(folder: Path, name: str = "rec", fs: float = 500.0, n: int = 2000) -> Path:
    """A 12-lead format-16 WFDB record of noise; returns the header path."""
    rng = np.random.default_rng(0)
    digital = (rng.standard_normal((n, 12)) * 200).astype(np.int16)
    wfdb.wrsamp(
        name, fs=fs, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS), d_signal=digital,
        fmt=["16"] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(folder),
    )  # fmt: skip
    return folder / f"{name}.hea"


def _set_record_field(hea: Path, index: int, value: str) -> None:
    lines = hea.read_text().splitlines()
    fields = lines[0].split()
    fields[index] = value
    lines[0] = " ".join(fields)
    hea.write_text("\n".join(lines) + "\n")


def _problem(exc: pytest.ExceptionInfo[EcgReadError]) -> str:
    return exc.value.problem


# ------------------------------------------------------------------------------------------------------
# Item 5: sampling rates
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", ABSURD_RATES)
def test_wfdb_header_with_absurd_rate_is_rejected(tmp_path: Path, rate: str) -> None:
    hea = _wfdb_record(tmp_path)
    _set_record_field(hea, 2, rate)
    with pytest.raises(EcgReadError) as exc:
        load_ecg(hea)
    assert exc.value.path == str(hea)
    assert "sampling rate" in _problem(exc) and "header" in _problem(exc)
    assert str(hea) not in _problem(exc)


def test_negative_rate_is_not_read_as_250_hz(tmp_path: Path) -> None:
    """wfdb turns "-500" into its 250 Hz default; the record must fail instead of being scored at 250 Hz."""
    hea = _wfdb_record(tmp_path)
    _set_record_field(hea, 2, "-500")
    assert wfdb.rdheader(str(hea.with_suffix(""))).fs == 250  # what wfdb alone does
    with pytest.raises(EcgReadError, match=r"-500 Hz"):
        load_ecg(hea)


def test_wfdb_rate_with_counter_frequency_is_checked(tmp_path: Path) -> None:
    hea = _wfdb_record(tmp_path)
    _set_record_field(hea, 2, "0.05/1000")
    with pytest.raises(EcgReadError, match="outside the supported range"):
        load_ecg(hea)
    _set_record_field(hea, 2, "500/1000")
    assert load_ecg(hea).fs == 500


@pytest.mark.parametrize("rate", [1e-3, 0.05, -500.0, 0.0, float("nan"), float("inf"), 1e6])
def test_npz_with_absurd_rate_is_rejected(tmp_path: Path, rate: float) -> None:
    path = tmp_path / "rec.npz"
    np.savez(path, signal=np.random.default_rng(0).standard_normal((12, 5000)), fs=rate)
    with pytest.raises(EcgReadError) as exc:
        load_ecg(path)
    assert "'fs' key" in _problem(exc) and exc.value.path == str(path)


@pytest.mark.parametrize("rate", [1e-3, -500.0, 0.0, float("nan"), 1e6])
@pytest.mark.parametrize("fmt", ["npy", "cpsc"])
def test_fs_argument_with_absurd_rate_is_rejected(tmp_path: Path, rate: float, fmt: str) -> None:
    signal = np.random.default_rng(0).standard_normal((12, 5000))
    if fmt == "npy":
        path = tmp_path / "rec.npy"
        np.save(path, signal)
        kwargs = {"leads": list(CANONICAL_LEADS)}
    else:
        path = tmp_path / "A0001.mat"
        scipy.io.savemat(path, {"ECG": {"data": signal, "sex": "Male", "age": 50}})
        kwargs = {}
    with pytest.raises(EcgReadError, match="fs argument"):
        load_ecg(path, fs=rate, **kwargs)


@pytest.mark.shared_data
@pytest.mark.parametrize("rate", ["0.001", "-500", "0"])
def test_cinc_mat_header_with_absurd_rate_is_rejected(shared_data: Path, tmp_path: Path, rate: str) -> None:
    for suffix in (".hea", ".mat"):
        shutil.copy(shared_data / "formats" / "cinc2021" / f"E07500{suffix}", tmp_path)
    hea = tmp_path / "E07500.hea"
    assert load_ecg(hea).fs == 500  # the copy reads
    _set_record_field(hea, 2, rate)
    with pytest.raises(EcgReadError, match="sampling rate"):
        load_ecg(tmp_path / "E07500.mat")


def test_physical_range_edges_are_accepted(tmp_path: Path) -> None:
    for rate in (MIN_FS_HZ, MAX_FS_HZ):
        path = tmp_path / f"r{rate:g}.npz"
        np.savez(path, signal=np.ones((12, 100)), fs=rate, leads=np.array(CANONICAL_LEADS))
        assert load_ecg(path).fs == rate


# ------------------------------------------------------------------------------------------------------
# Item 8: clear read errors
# ------------------------------------------------------------------------------------------------------


def test_unsupported_wfdb_format_is_a_clear_error(tmp_path: Path) -> None:
    hea = _wfdb_record(tmp_path)
    hea.write_text(hea.read_text().replace(" 16 200", " 99 200"))
    with pytest.raises(EcgReadError) as exc:
        load_ecg(hea)
    assert "unsupported WFDB storage format 99" in _problem(exc)
    assert not isinstance(exc.value.__cause__, KeyError)


@pytest.mark.parametrize("how", ["header_says_0", "empty_dat_no_count", "empty_dat_count_0"])
def test_zero_length_record_is_a_clear_error(tmp_path: Path, how: str) -> None:
    hea = _wfdb_record(tmp_path)
    if how == "header_says_0":
        _set_record_field(hea, 3, "0")
        (tmp_path / "rec.dat").write_bytes(b"")
    else:
        (tmp_path / "rec.dat").write_bytes(b"")
        lines = hea.read_text().splitlines()
        fields = lines[0].split()
        lines[0] = " ".join(fields[:3] + (["0"] if how == "empty_dat_count_0" else []))
        hea.write_text("\n".join(lines) + "\n")
    with pytest.raises(EcgReadError) as exc:
        load_ecg(hea)
    assert "empty record" in _problem(exc)
    assert "sampto" not in _problem(exc)


def test_header_without_sample_count_reads_the_whole_file(tmp_path: Path) -> None:
    hea = _wfdb_record(tmp_path, n=1500)
    lines = hea.read_text().splitlines()
    lines[0] = " ".join(lines[0].split()[:3])
    hea.write_text("\n".join(lines) + "\n")
    assert load_ecg(hea).n_samples == 1500
    assert load_ecg(hea, window=ReadWindow(1.0)).n_samples == 500


@pytest.mark.parametrize("fields", [3, 2])  # with the rate; without it (wfdb's 250 Hz)
def test_a_window_of_a_record_without_sample_count_reads_only_the_window(tmp_path: Path, fields: int) -> None:
    """Memory follows what is used: without a sample count in the header, wfdb read the whole signal file for a
    1 s window (10 min of 12 leads: 58 MB as float64; a 6 h Holter record, 2 GB)."""
    import tracemalloc

    fs = 500.0 if fields == 3 else 250.0
    hea = _wfdb_record(tmp_path, fs=fs, n=int(600 * fs))
    counted = load_ecg(hea, window=ReadWindow(1.0))  # the header gives the count: wfdb reads the part
    lines = hea.read_text().splitlines()
    lines[0] = " ".join(lines[0].split()[:fields])
    hea.write_text("\n".join(lines) + "\n")
    tracemalloc.start()
    try:
        part = load_ecg(hea, window=ReadWindow(1.0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4e6, peak
    assert part.fs == fs and part.n_samples == int(fs)
    np.testing.assert_array_equal(part.signal, counted.signal)
    assert part.metadata["read_offset"] == counted.metadata["read_offset"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.dat", "rec.hea"]  # nothing left beside the record


@pytest.mark.parametrize("fmt", ["cpsc", "npz"])
def test_complex_samples_are_rejected_in_cpsc_like_npz(tmp_path: Path, fmt: str) -> None:
    data = np.random.default_rng(0).standard_normal((12, 5000)) * (1 + 1j)
    if fmt == "cpsc":
        path = tmp_path / "A0001.mat"
        scipy.io.savemat(path, {"ECG": {"data": data, "sex": "Male", "age": 50}})
    else:
        path = tmp_path / "rec.npz"
        np.savez(path, signal=data, fs=500.0, leads=np.array(CANONICAL_LEADS))
    with pytest.raises(EcgReadError, match="complex"):
        load_ecg(path)


def test_read_errors_name_the_file_once_and_absolutely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hea = _wfdb_record(tmp_path)
    hea.write_text(hea.read_text().replace(" 16 200", " 99 200"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EcgReadError) as exc:
        load_ecg("rec.hea")  # relative
    assert exc.value.path == str(tmp_path / "rec.hea")
    assert os.path.isabs(exc.value.path)
    assert str(exc.value) == f"{exc.value.path}: {exc.value.problem}"
    assert "rec.hea" not in exc.value.problem


def test_headerless_dat_is_a_scan_failure(tmp_path: Path) -> None:
    hea = _wfdb_record(tmp_path)
    hea.unlink()
    (tmp_path / "notes.txt").write_text("not a record")
    scan = scan_records(tmp_path)
    assert scan.records == []
    failures = scan.failures()
    assert len(failures) == 1  # notes.txt is skipped, not a failure
    failure = failures[0]
    assert failure.stage == "scan" and failure.record == str(tmp_path / "rec.dat")
    assert "no .hea header" in failure.reason and str(tmp_path) not in failure.reason
    assert str(failure) == f"[scan] {tmp_path / 'rec.dat'}: {failure.reason}"
    with pytest.raises(EcgReadError, match="without its header"):
        load_ecg(tmp_path / "rec.dat")
