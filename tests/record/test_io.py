"""ECG file reading: real PhysioNet/CinC/CPSC files from ../shared/data; damaged files made in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import wfdb

from ecglang.errors import EcgReadError
from ecglang.record.io import (
    find_records,
    load_ecg,
    load_ecgs,
    parse_header_comments,
    scan_records,
)
from ecglang.record.leads import CANONICAL_LEADS, LEAD_INDEX

# ------------------------------------------------------------------------------------------------------
# Real data
# ------------------------------------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("folder", "suffix", "fs", "n"), [("records500", "_hr", 500, 5000), ("records100", "_lr", 100, 1000)]
)
def test_every_ptbxl_record_reads(ptbxl_dir: Path, folder: str, suffix: str, fs: int, n: int) -> None:
    records = find_records(ptbxl_dir / folder)
    headers = sorted((ptbxl_dir / folder).rglob("*.hea"))
    assert records == headers and len(records) == 353  # the sample's folds 1-8
    result = load_ecgs(records, progress=False)
    assert result.failures == []
    for ecg in result.ecgs:
        assert ecg.record_id.endswith(suffix)
        assert ecg.fs == fs and ecg.signal.shape == (12, n) and ecg.signal.dtype == np.float32
        assert ecg.lead_mask.all()
        assert ecg.metadata["format"] == "wfdb" and ecg.metadata["n_nonfinite"] == 0
        peak = np.abs(ecg.signal).max()
        assert 0.05 < peak < 20, f"{ecg.record_id}: implausible amplitude {peak} mV"


@pytest.mark.shared_data
@pytest.mark.parametrize("ecg_id", ["00001", "00002", "00003"])
def test_ptbxl_100hz_is_the_500hz_record_downsampled(ptbxl_dir: Path, ecg_id: str) -> None:
    hr = load_ecg(ptbxl_dir / "records500" / "00000" / f"{ecg_id}_hr").signal
    lr = load_ecg(ptbxl_dir / "records100" / "00000" / f"{ecg_id}_lr").signal
    for lead in range(12):  # same lead in the same row in both versions
        assert np.corrcoef(hr[lead, ::5], lr[lead])[0, 1] > 0.9, CANONICAL_LEADS[lead]


@pytest.mark.shared_data
def test_wfdb_values_match_rdrecord(ptbxl_dir: Path) -> None:
    base = ptbxl_dir / "records500" / "00000" / "00001_hr"
    rec = wfdb.rdrecord(str(base))
    ecg = load_ecg(base)
    for col, name in enumerate(rec.sig_name):  # PTB-XL spells them "AVR", "AVL", "AVF"
        row = LEAD_INDEX[{"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}.get(name, name)]
        np.testing.assert_allclose(ecg.signal[row], rec.p_signal[:, col], rtol=1e-6, atol=1e-6)


@pytest.mark.shared_data
@pytest.mark.parametrize("form", ["", ".hea", ".dat"])
def test_wfdb_path_with_or_without_extension(ptbxl_dir: Path, form: str) -> None:
    base = ptbxl_dir / "records500" / "00000" / "00001_hr"
    ecg = load_ecg(str(base) + form)
    assert ecg.record_id == "00001_hr"
    np.testing.assert_array_equal(ecg.signal, load_ecg(base.with_suffix(".hea")).signal)


@pytest.mark.shared_data
def test_cinc2021_records(shared_data: Path) -> None:
    folder = shared_data / "formats" / "cinc2021"
    records = find_records(folder)
    assert [p.name for p in records] == [f"E0750{i}.hea" for i in range(5)]
    for hea in records:
        ecg = load_ecg(hea)
        assert ecg.metadata["format"] == "wfdb-mat"
        assert ecg.fs == 500 and ecg.n_samples == 5000 and ecg.lead_mask.all()
        assert ecg.metadata["snomed"] and all(code.isdigit() for code in ecg.metadata["snomed"])
        assert ecg.metadata["age"] is not None and ecg.metadata["sex"] in ("M", "F")
        assert np.abs(ecg.signal).max() < 20
        # Independent read: the raw 'val' matrix with the header's gain and baseline.
        val = scipy.io.loadmat(hea.with_suffix(".mat"))["val"].astype(np.float64)
        header = wfdb.rdheader(str(hea.with_suffix("")))
        expected = (val - np.array(header.baseline)[:, None]) / np.array(header.adc_gain)[:, None]
        np.testing.assert_allclose(ecg.signal, expected, atol=1e-6)

    e0 = load_ecg(folder / "E07500.mat")  # the .mat path finds its header
    assert e0.record_id == "E07500"
    assert e0.metadata["snomed"] == ["67741000119109", "426177001"]
    assert e0.metadata["age"] == 78.0 and e0.metadata["sex"] == "M"
    assert e0.metadata["rx"] == "Unknown" and e0.metadata["hx"] == "Unknown"


@pytest.mark.shared_data
@pytest.mark.parametrize(("name", "n"), [("A1980", 5000), ("A1981", 7950)])
def test_cpsc2018_records(shared_data: Path, name: str, n: int) -> None:
    path = shared_data / "formats" / "cpsc2018" / f"{name}.mat"
    ecg = load_ecg(path)
    assert ecg.metadata["format"] == "cpsc-mat"
    assert ecg.fs == 500 and ecg.signal.shape == (12, n) and ecg.lead_mask.all()
    assert ecg.metadata["sex"] in ("M", "F") and 0 < ecg.metadata["age"] < 120
    raw = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["ECG"]
    np.testing.assert_allclose(ecg.signal, raw.data.astype(np.float32))
    assert load_ecg(path.with_suffix("")).n_samples == n  # record name without extension


@pytest.mark.shared_data
def test_mitbih_two_leads(shared_data: Path) -> None:
    ecg = load_ecg(shared_data / "mitbih" / "100")
    assert ecg.fs == 360 and ecg.n_samples == 650000
    assert ecg.present_leads == ["II", "V5"]  # MLII -> II
    assert ecg.metadata["source_leads"] == ["MLII", "V5"]
    rec = wfdb.rdrecord(str(shared_data / "mitbih" / "100"), sampto=2000)
    np.testing.assert_allclose(ecg.signal[LEAD_INDEX["II"], :2000], rec.p_signal[:, 0], atol=1e-6)
    np.testing.assert_allclose(ecg.signal[LEAD_INDEX["V5"], :2000], rec.p_signal[:, 1], atol=1e-6)
    assert not ecg.signal[~ecg.lead_mask].any()  # missing leads are zero rows
    assert ecg.metadata["age"] == 69.0 and ecg.metadata["sex"] == "M"  # "# 69 M 1085 1629 x1"
    # leads by name, in the header's spelling or the canonical one; a lead the record lacks is named
    np.testing.assert_array_equal(ecg.lead("MLII"), ecg.signal[LEAD_INDEX["II"]])
    assert np.shares_memory(ecg.lead("v5"), ecg.signal)  # a view, not a copy
    with pytest.raises(KeyError, match="record 100 has no lead V1 \\(present: II, V5\\)"):
        ecg.lead("V1")
    with pytest.raises(KeyError, match="'X' is not one of the 12 leads"):
        ecg.lead("X")


@pytest.mark.shared_data
def test_ptbdb_drops_frank_leads(shared_data: Path) -> None:
    ecg = load_ecg(shared_data / "ptbdb" / "s0010_re.hea")
    assert ecg.fs == 1000 and ecg.n_samples == 38400 and ecg.lead_mask.all()
    assert ecg.metadata["dropped_leads"] == ["vx", "vy", "vz"]
    assert ecg.metadata["age"] == 81.0 and ecg.metadata["sex"] == "F"
    assert any("Myocardial infarction" in c for c in ecg.metadata["comments"])
    rec = wfdb.rdrecord(str(shared_data / "ptbdb" / "s0010_re"), channel_names=["avl"])
    np.testing.assert_allclose(ecg.signal[LEAD_INDEX["aVL"]], rec.p_signal[:, 0], atol=1e-6)


@pytest.mark.shared_data
def test_ptbdb_xyz_file_belongs_to_its_record(shared_data: Path) -> None:
    scan = scan_records(shared_data / "ptbdb")
    assert [p.name for p in scan.records] == ["s0010_re.hea"]
    assert scan.skipped == []  # .dat and .xyz are both named in the header


# ------------------------------------------------------------------------------------------------------
# Generated records
# ------------------------------------------------------------------------------------------------------


def _write_wfdb(
    folder: Path,
    name: str = "rec",
    leads: tuple[str, ...] = ("I", "II", "V1"),
    n: int = 1000,
    units: str = "mV",
    comments: tuple[str, ...] = ("Age: 50", "Sex: F"),
    signal: np.ndarray | None = None,
) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    sig = rng.normal(0, 0.5, (n, len(leads))) if signal is None else signal
    wfdb.wrsamp(
        name, fs=500, units=[units] * len(leads), sig_name=list(leads), p_signal=sig,
        fmt=["16"] * len(leads), comments=list(comments), write_dir=str(folder),
    )  # fmt: skip
    return folder / f"{name}.hea", sig


def _edit_header(hea: Path, old: str, new: str) -> None:
    text = hea.read_text()
    assert old in text
    hea.write_text(text.replace(old, new))


def test_generated_record_rows_land_in_canonical_slots(tmp_path: Path) -> None:
    leads = ("V6", "aVF", "I", "V2")
    hea, sig = _write_wfdb(tmp_path, leads=leads)
    ecg = load_ecg(hea)
    assert ecg.present_leads == ["I", "aVF", "V2", "V6"]
    for col, name in enumerate(leads):
        np.testing.assert_allclose(ecg.signal[LEAD_INDEX[name]], sig[:, col], atol=1e-3)
    assert ecg.metadata["age"] == 50.0 and ecg.metadata["sex"] == "F"
    assert ecg.record_id == "rec" and Path(ecg.metadata["source_path"]) == hea


def test_microvolt_units_become_mv(tmp_path: Path) -> None:
    sig = np.random.default_rng(1).normal(0, 500.0, (800, 2))  # µV
    hea, _ = _write_wfdb(tmp_path, leads=("I", "II"), units="uV", signal=sig, n=800)
    np.testing.assert_allclose(load_ecg(hea).signal[:2], sig.T / 1000, atol=1e-3)
    # The micro sign (UTF-8 here): wfdb reads headers as ASCII and would drop it, leaving volts.
    _edit_header(hea, "/uV", "/µV")
    assert wfdb.rdrecord(str(tmp_path / "rec")).units[0] == "V"
    ecg = load_ecg(hea)
    np.testing.assert_allclose(ecg.signal[:2], sig.T / 1000, atol=1e-3)
    assert ecg.metadata["units_in_file"] == ["µV", "µV"]
    hea.write_bytes(hea.read_bytes().replace("µV".encode(), b"\xb5V"))  # the same in Latin-1
    np.testing.assert_allclose(load_ecg(hea).signal[:2], sig.T / 1000, atol=1e-3)


def test_non_voltage_units_on_an_ecg_lead(tmp_path: Path) -> None:
    hea, _ = _write_wfdb(tmp_path, leads=("I", "II"), units="mmHg")
    with pytest.raises(EcgReadError) as info:
        load_ecg(hea)
    _assert_read_error(info.value, "rec.hea", "unsupported units", "mmhg")


def test_nan_is_kept_and_counted(tmp_path: Path) -> None:
    sig = np.random.default_rng(2).normal(0, 0.5, (500, 2))
    sig[10:15, 1] = np.nan
    hea, _ = _write_wfdb(tmp_path, leads=("I", "II"), signal=sig, n=500)
    ecg = load_ecg(hea)
    assert ecg.metadata["n_nonfinite"] == 5
    assert np.isnan(ecg.signal[LEAD_INDEX["II"], 10:15]).all()


def test_non_utf8_comment_does_not_crash(tmp_path: Path) -> None:
    hea, _ = _write_wfdb(tmp_path)
    hea.write_bytes(hea.read_bytes() + b"# Befund: Sinusrhythmus, \xfcberdreht (Latin-1)\n")
    ecg = load_ecg(hea)
    assert ecg.metadata["age"] == 50.0
    assert any("\ufffd" in c and c.startswith("Befund") for c in ecg.metadata["comments"])


def test_leads_argument_renames_stored_signals(tmp_path: Path) -> None:
    hea, _ = _write_wfdb(tmp_path, leads=("ECG1", "ECG2"), n=600, signal=np.ones((600, 2)) * [1.0, 2.0])
    with pytest.raises(EcgReadError, match="unknown lead"):
        load_ecg(hea)
    ecg = load_ecg(hea, leads=["V2", "II"])
    assert ecg.present_leads == ["II", "V2"]
    assert ecg.signal[LEAD_INDEX["V2"]].mean() == pytest.approx(1.0, abs=1e-3)


def test_generated_cinc_mat_record(tmp_path: Path) -> None:
    # MAT v4 as in the CinC challenges: a 24-byte preamble then int16 samples, interleaved by channel.
    val = np.random.default_rng(3).integers(-3000, 3000, (3, 400)).astype(np.int16)
    scipy.io.savemat(tmp_path / "Q0001.mat", {"val": val}, format="4")
    lines = ["Q0001 3 500 400"]
    for v, name in zip(val, ["I", "II", "V1"], strict=True):
        lines.append(f"Q0001.mat 16x1+24 1000.0(0)/mV 16 0 {v[0]} 0 0 {name}")
    lines += ["# Age: 60", "# Sex: Female", "# Dx: 164889003, 59118001", "# Rx: Unknown", "# Hx: Unknown"]
    (tmp_path / "Q0001.hea").write_text("\n".join(lines) + "\n")
    ecg = load_ecg(tmp_path / "Q0001.mat")
    assert ecg.metadata["format"] == "wfdb-mat" and ecg.present_leads == ["I", "II", "V1"]
    np.testing.assert_allclose(ecg.signal[[0, 1, 6]], val / 1000.0, atol=1e-6)
    assert ecg.metadata["snomed"] == ["164889003", "59118001"] and ecg.metadata["sex"] == "F"


def test_multi_segment_record_reads_as_one(tmp_path: Path) -> None:
    _, s1 = _write_wfdb(tmp_path, name="seg1", leads=("I", "II"), n=700)
    _, s2 = _write_wfdb(tmp_path, name="seg2", leads=("I", "II"), n=300, signal=np.ones((300, 2)))
    (tmp_path / "multi.hea").write_text("multi/2 2 500 1000\nseg1 700\nseg2 300\n# Age: 33\n")
    ecg = load_ecg(tmp_path / "multi")
    assert ecg.n_samples == 1000 and ecg.metadata["age"] == 33.0
    np.testing.assert_allclose(ecg.signal[:2, :700], s1.T, atol=1e-3)
    np.testing.assert_allclose(ecg.signal[:2, 700:], s2.T, atol=1e-3)
    assert [p.name for p in find_records(tmp_path)] == ["multi.hea"]  # segments belong to the master


# NPY / NPZ --------------------------------------------------------------------------------------------


def test_npy_needs_fs_and_leads(tmp_path: Path) -> None:
    path = tmp_path / "sig.npy"
    np.save(path, np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(EcgReadError, match=r"without its sampling rate \(fs\): pass fs=/leads=") as info:
        load_ecg(path, leads=["I", "II"])
    assert "sig.npy" in str(info.value) and "--fs" in str(info.value) and "lead names" not in str(info.value)
    with pytest.raises(EcgReadError, match=r"without its lead names \(leads\)") as info:
        load_ecg(path, fs=250)
    assert "sampling rate" not in str(info.value)  # the rate was given: only what is missing is named
    ecg = load_ecg(path, fs=250, leads=["I", "II"])
    assert ecg.fs == 250 and ecg.present_leads == ["I", "II"] and ecg.metadata["format"] == "npy"


def test_npy_samples_by_leads_is_transposed(tmp_path: Path) -> None:
    data = np.random.default_rng(4).normal(size=(300, 3)).astype(np.float32)
    np.save(tmp_path / "t.npy", data)
    ecg = load_ecg(tmp_path / "t.npy", fs=100, leads=["V1", "I", "aVL"])
    assert ecg.metadata["transposed"] is True
    np.testing.assert_array_equal(ecg.signal[LEAD_INDEX["V1"]], data[:, 0])
    np.testing.assert_array_equal(ecg.signal[LEAD_INDEX["aVL"]], data[:, 2])
    with pytest.raises(EcgReadError, match="does not match 2 lead names"):
        load_ecg(tmp_path / "t.npy", fs=100, leads=["I", "II"])


def test_npz_keys_and_arguments_that_only_fill_in(tmp_path: Path) -> None:
    data = np.random.default_rng(5).normal(size=(12, 1000)).astype(np.float32)
    data[3, :7] = np.nan
    np.savez(tmp_path / "r.npz", signal=data, fs=np.float64(500), leads=np.array(CANONICAL_LEADS))
    ecg = load_ecg(tmp_path / "r.npz")
    assert ecg.fs == 500 and ecg.lead_mask.all() and ecg.metadata["format"] == "npz"
    assert ecg.metadata["n_nonfinite"] == 7
    np.testing.assert_array_equal(ecg.signal[:, 10:], data[:, 10:])
    # the arguments fill in what the file lacks; they no longer replace what it stores (CLI audit 20, finding 1)
    with pytest.raises(EcgReadError, match="'fs' key says 500 Hz but fs=250"):
        load_ecg(tmp_path / "r.npz", fs=250)
    with pytest.raises(EcgReadError, match="lead names conflict"):
        load_ecg(tmp_path / "r.npz", leads=list(CANONICAL_LEADS)[::-1])
    np.savez(tmp_path / "bare.npz", signal=data)
    with pytest.raises(EcgReadError, match=r"sampling rate \(fs\) and lead names \(leads\).*'fs'/'leads' arrays"):
        load_ecg(tmp_path / "bare.npz")
    np.savez(tmp_path / "nosig.npz", x=data)
    with pytest.raises(EcgReadError, match="no 'signal' array"):
        load_ecg(tmp_path / "nosig.npz")


# ------------------------------------------------------------------------------------------------------
# Bad inputs: typed error naming the file and the problem
# ------------------------------------------------------------------------------------------------------


def _assert_read_error(exc: EcgReadError, file_name: str, *words: str) -> None:
    message = str(exc)
    assert file_name in message, message
    for word in words:  # in the problem text alone: tmp_path carries the test's name
        assert word in exc.problem.lower(), message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EcgReadError) as info:
        load_ecg(tmp_path / "nothing.hea")
    _assert_read_error(info.value, "nothing.hea", "not found")
    with pytest.raises(EcgReadError) as info:
        load_ecg(tmp_path / "nothing")
    _assert_read_error(info.value, "nothing", "not found")


@pytest.mark.parametrize(
    ("old", "new", "word"),
    [
        (None, "this is not a header\x00\x01 at all\n", "corrupt"),
        ("rec 3 500 1000", "rec 3 fivehundred 1000", "sampling rate"),  # wfdb alone would read 250 Hz
        ("rec 3 500 1000", "rec 5 500 1000", "declares 5 signals"),
        ("16 0 ", "sixteen 0 ", "adc resolution"),  # wfdb alone would read it as part of the lead name
        ("(", "(baseline ", "gain field"),
        ("rec.dat 16 ", "rec.dat sixteen ", "storage format"),
        ("rec 3 500 1000", "", "empty"),
    ],
)
def test_corrupt_header(tmp_path: Path, old: str | None, new: str, word: str) -> None:
    hea, _ = _write_wfdb(tmp_path)
    if old is None:
        hea.write_text(new)
    elif old == "rec 3 500 1000" and new == "":
        hea.write_text("\n# only a comment\n")
    else:
        _edit_header(hea, old, new)
    with pytest.raises(EcgReadError) as info:
        load_ecg(hea)
    _assert_read_error(info.value, "rec.hea", word)


def test_truncated_dat(tmp_path: Path) -> None:
    hea, _ = _write_wfdb(tmp_path)
    dat = tmp_path / "rec.dat"
    dat.write_bytes(dat.read_bytes()[:2500])
    with pytest.raises(EcgReadError) as info:
        load_ecg(hea)
    _assert_read_error(info.value, "rec.dat", "truncated", "1000 samples")


def test_missing_dat(tmp_path: Path) -> None:
    hea, _ = _write_wfdb(tmp_path)
    (tmp_path / "rec.dat").unlink()
    with pytest.raises(EcgReadError) as info:
        load_ecg(hea)
    _assert_read_error(info.value, "rec.dat", "missing signal file")


def test_header_sample_count_mismatch(tmp_path: Path) -> None:
    hea, _ = _write_wfdb(tmp_path)
    _edit_header(hea, "rec 3 500 1000", "rec 3 500 400")
    with pytest.raises(EcgReadError) as info:
        load_ecg(hea)
    _assert_read_error(info.value, "rec.dat", "mismatch", "400 samples", "1000 samples")


def test_fs_argument_disagrees_with_header(tmp_path: Path) -> None:
    hea, _ = _write_wfdb(tmp_path)
    assert load_ecg(hea, fs=500).fs == 500
    with pytest.raises(EcgReadError) as info:
        load_ecg(hea, fs=100)
    _assert_read_error(info.value, "rec.hea", "sampling rate mismatch", "500 hz")


def test_unknown_lead_name(tmp_path: Path) -> None:
    hea, _ = _write_wfdb(tmp_path, leads=("I", "FOO", "V1"))
    with pytest.raises(EcgReadError) as info:
        load_ecg(hea)
    _assert_read_error(info.value, "rec.hea", "unknown lead", "foo")


def test_duplicate_lead(tmp_path: Path) -> None:
    hea, _ = _write_wfdb(tmp_path, leads=("I", "II", "MLII"))
    with pytest.raises(EcgReadError) as info:
        load_ecg(hea)
    _assert_read_error(info.value, "rec.hea", "duplicate lead")


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "ecg.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(EcgReadError) as info:
        load_ecg(path)
    _assert_read_error(info.value, "ecg.csv", "unsupported file type")


def test_mat_without_val_or_ecg(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "other.mat", {"signal": np.zeros((12, 10))})
    with pytest.raises(EcgReadError) as info:
        load_ecg(tmp_path / "other.mat")
    _assert_read_error(info.value, "other.mat", "neither", "'val'", "'ecg'")
    scipy.io.savemat(tmp_path / "orphan.mat", {"val": np.zeros((12, 10), dtype=np.int16)})
    with pytest.raises(EcgReadError) as info:
        load_ecg(tmp_path / "orphan.mat")
    _assert_read_error(info.value, "orphan.mat", "no wfdb header", "orphan.hea")


def test_garbage_mat_is_wrapped_with_cause(tmp_path: Path) -> None:
    (tmp_path / "junk.mat").write_bytes(b"\x00garbage" * 20)
    with pytest.raises(EcgReadError) as info:
        load_ecg(tmp_path / "junk.mat")
    _assert_read_error(info.value, "junk.mat", "matlab")
    assert info.value.__cause__ is not None  # scipy's own exception is kept for debugging


# ------------------------------------------------------------------------------------------------------
# Header comments
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comments", "age", "sex"),
    [
        (["Age: 78", "Sex: Male"], 78.0, "M"),
        (["Age: NaN", "Sex: Unknown"], None, None),
        (["age: 81", "sex: female"], 81.0, "F"),
        (["69 M 1085 1629 x1", "Aldomet, Inderal"], 69.0, "M"),
        (["? F 1234"], None, "F"),
        (["Reason for admission: Myocardial infarction"], None, None),
    ],
)
def test_parse_header_comments(comments: list[str], age: float | None, sex: str | None) -> None:
    meta = parse_header_comments(comments)
    assert meta["age"] == age and meta["sex"] == sex


def test_parse_dx_without_space() -> None:
    assert parse_header_comments(["Dx:164889003,59118001 "])["snomed"] == ["164889003", "59118001"]


# ------------------------------------------------------------------------------------------------------
# Folders
# ------------------------------------------------------------------------------------------------------


def test_find_records_mixed_folder(tmp_path: Path) -> None:
    _write_wfdb(tmp_path, name="wf")
    (tmp_path / "wf.atr").write_bytes(b"\x00\x01")  # annotations beside a record
    (tmp_path / "orphan.dat").write_bytes(b"\x00" * 12)
    (tmp_path / "notes.txt").write_text("junk")
    scipy.io.savemat(
        tmp_path / "A0001.mat",
        {"ECG": {"sex": "Female", "age": 40, "data": np.zeros((12, 2500))}},
    )
    np.save(tmp_path / "arr.npy", np.zeros((12, 500)))
    np.savez(tmp_path / "arr2.npz", signal=np.zeros((12, 500)), fs=500, leads=np.array(CANONICAL_LEADS))
    sub = tmp_path / "sub"
    sub.mkdir()
    _write_wfdb(sub, name="deep")

    scan = scan_records(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in scan.records] == [
        "A0001.mat", "arr.npy", "arr2.npz", "sub/deep.hea", "wf.hea",
    ]  # fmt: skip
    reasons = {s.path.name: s.reason for s in scan.skipped}
    assert set(reasons) == {"wf.atr", "orphan.dat", "notes.txt"}
    assert "no .hea header" in reasons["orphan.dat"]
    assert "wf.hea" in reasons["wf.atr"]
    assert "unsupported" in reasons["notes.txt"]
    assert find_records(tmp_path) == scan.records
    assert "sub/deep.hea" not in [p.relative_to(tmp_path).as_posix() for p in find_records(tmp_path, False)]

    # A batch goes past the record it cannot read (a bare .npy has no fs/leads) and names it.
    result = load_ecgs(scan.records, progress=False)
    assert [e.record_id for e in result.ecgs] == ["A0001", "arr2", "deep", "wf"]
    assert result.ecgs[0].metadata["sex"] == "F" and result.ecgs[0].metadata["age"] == 40.0
    assert [(p.name, "fs" in str(err)) for p, err in result.failures] == [("arr.npy", True)]


def test_find_records_rejects_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(EcgReadError) as info:
        find_records(tmp_path / "absent")
    _assert_read_error(info.value, "absent", "folder not found")
