"""Hostile NumPy and MATLAB records: an array header's declared shape must not drive memory (checked against the
bytes the file holds, and for a compressed NPZ only the read window is decompressed into memory), and a
one-sample CPSC record reads like the same NPZ. Files are built here in tmp_path; none allocates gigabytes."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ecglang.errors import EcgReadError
from ecglang.record.io import load_ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.record.window import ReadWindow

LEADS = np.array(CANONICAL_LEADS)


def _npy_bytes(shape: tuple[int, ...], payload: bytes, descr: str = "<f8") -> bytes:
    """An NPY file whose header declares `shape` whatever `payload` holds."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def _npy_of(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _refused(path: Path, *words: str, window: ReadWindow | None = None, **kwargs: object) -> EcgReadError:
    started = time.perf_counter()
    with pytest.raises(EcgReadError) as info:
        load_ecg(path, window=window, **kwargs)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 5.0
    assert info.value.path == str(path)
    for word in words:
        assert word in info.value.problem, info.value.problem
    return info.value


def test_npy_declaring_more_than_the_file_holds_is_too_short(tmp_path: Path) -> None:
    """Was: "Unable to allocate 8.73 TiB" (the memory map fails, and the plain load then allocated)."""
    path = tmp_path / "rec.npy"
    path.write_bytes(_npy_bytes((12, 10**11), b"\0" * 64))
    _refused(path, "file too short", "(12, 100000000000)", "only 64 bytes", fs=500, leads=list(LEADS))


def test_npz_member_declaring_more_than_it_holds_is_too_short(tmp_path: Path) -> None:
    path = tmp_path / "rec.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("signal.npy", _npy_bytes((12, 10**11), b"\0" * 64))
        z.writestr("fs.npy", _npy_of(np.array(500.0)))
        z.writestr("leads.npy", _npy_of(LEADS))
    _refused(path, "file too short", "member 'signal'", window=ReadWindow(10.0))


def _zip_bomb(path: Path, n: int) -> int:
    """An NPZ whose 'signal' member is [12, n] float64 zeros, deflated (12 * n * 8 bytes in ~1/1000 of that)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("signal.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (12, n)})
            row = b"\0" * (n * 8)
            for _ in range(12):
                f.write(row)
        z.writestr("fs.npy", _npy_of(np.array(500.0)))
        z.writestr("leads.npy", _npy_of(LEADS))
    return 12 * n * 8


def test_npz_bomb_read_through_a_window_costs_the_window(tmp_path: Path) -> None:
    """A 4.6 MB NPZ decompressed to 4.47 GiB whatever the window; now the member is streamed and only the window
    is kept. Here 192 MB of declared samples, read through a 10 s window (at most 6000 samples), under 16 MB."""
    path = tmp_path / "bomb.npz"
    declared = _zip_bomb(path, 2_000_000)
    assert path.stat().st_size < declared / 100
    tracemalloc.start()
    try:
        for where, n in (("start", 5500), ("center", 6000)):  # the margin on one side or on both
            ecg = load_ecg(path, window=ReadWindow(10.0, where, 1.0))
            assert ecg.n_samples == n and ecg.metadata["n_samples_in_file"] == 2_000_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16e6, peak


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("layout", ["leads_samples", "samples_leads"])
@pytest.mark.parametrize("compressed", [False, True])
def test_npz_window_reads_the_same_samples_as_a_whole_read(
    tmp_path: Path, order: str, layout: str, compressed: bool
) -> None:
    data = np.random.default_rng(1).standard_normal((12, 3000)).astype(np.float32)
    stored = np.asarray(data if layout == "leads_samples" else data.T, order=order)
    path = tmp_path / "rec.npz"
    (np.savez_compressed if compressed else np.savez)(path, signal=stored, fs=500.0, leads=LEADS)
    whole = load_ecg(path)
    np.testing.assert_array_equal(whole.signal, data)
    for window in (ReadWindow(2.0), ReadWindow(2.0, "center", 0.5)):
        part = load_ecg(path, window=window)
        start = part.metadata["read_offset"]
        np.testing.assert_array_equal(part.signal, data[:, start : start + part.n_samples])
        assert part.metadata.get("transposed", False) == (layout == "samples_leads")


def test_one_lead_1d_npz_reads_through_a_window(tmp_path: Path) -> None:
    data = np.arange(2000, dtype=np.int16)
    path = tmp_path / "rec.npz"
    np.savez_compressed(path, signal=data, fs=500, leads=np.array(["II"]))
    ecg = load_ecg(path, window=ReadWindow(1.0, "center"))
    assert ecg.present_leads == ["II"]
    np.testing.assert_array_equal(ecg.signal[1], data[750:1250])


def test_lead_names_saved_as_bytes_read_as_names(tmp_path: Path) -> None:
    """`leads=np.array([b"I", b"II"])` (an 'S' array, as h5py and older code write) was refused as unknown lead
    names ["b'I'", "b'II'"]."""
    data = np.arange(2 * 1000, dtype=np.float32).reshape(2, 1000)
    path = tmp_path / "rec.npz"
    np.savez(path, signal=data, fs=500, leads=np.array([b"I", b"II"]))
    ecg = load_ecg(path)
    assert ecg.present_leads == ["I", "II"]
    np.testing.assert_array_equal(ecg.signal[1], data[1])


def test_npz_small_members_are_checked(tmp_path: Path) -> None:
    signal = np.zeros((12, 1000))
    path = tmp_path / "rec.npz"
    np.savez(path, signal=signal, fs=np.array([500.0, 250.0]), leads=LEADS)
    _refused(path, "'fs' must be one number", "(2,)")
    np.savez(path, signal=signal, fs=500.0, leads=np.array(["I"] * 100_000))
    _refused(path, "member 'leads'", "expected a number or a few lead names")
    np.savez(path, signal=signal, fs=np.array([print], dtype=object), leads=LEADS)
    _refused(path, "member 'fs'", "allow_pickle=False")


def test_npz_that_is_not_a_zip_is_a_read_error(tmp_path: Path) -> None:
    path = tmp_path / "rec.npz"
    np.save(tmp_path / "x.npy", np.zeros((12, 100)))
    path.write_bytes((tmp_path / "x.npy").read_bytes())
    _refused(path, "cannot read NPZ file", "BadZipFile")


def test_one_sample_cpsc_mat_reads_like_the_npz(tmp_path: Path) -> None:
    """squeeze_me turned a [12, 1] record into 12 values: "signal must be 2-D". Now it is [12, 1] like the NPZ,
    and what to do with one sample is left to the quality checks."""
    data = np.arange(12, dtype=np.float64)[:, None]
    scipy.io.savemat(tmp_path / "A0001.mat", {"ECG": {"data": data, "sex": "Female", "age": 61}})
    np.savez(tmp_path / "A0001.npz", signal=data, fs=500.0, leads=LEADS)
    mat, npz = load_ecg(tmp_path / "A0001.mat"), load_ecg(tmp_path / "A0001.npz")
    assert mat.signal.shape == npz.signal.shape == (12, 1)
    np.testing.assert_array_equal(mat.signal, npz.signal)
    assert mat.metadata["age"] == 61.0 and mat.metadata["sex"] == "F"
