"""The MATLAB header of a WFDB record's `.mat` signal file (PhysioNet/CinC: `val`, MAT v4, format 16x1+24) is
checked against the WFDB header before wfdb reads the samples at the header's byte offset: its value type, its
rows × columns (signals × samples) and where its data start. `load_ecg` read an int32 12×2500 `val` (the same
bytes as int16 12×5000) or a transposed 5000×12 one as a valid record, and zero-shot scored the garbage."""

from __future__ import annotations

import shutil
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ecglang.errors import EcgReadError
from ecglang.record.io import load_ecg

CINC = Path("formats") / "cinc2021" / "E07500"


@pytest.fixture
def cinc(shared_data: Path, tmp_path: Path) -> Path:
    """A copy of CinC 2021 record E07500 (12 × 5000, format 16x1+24); returns its header."""
    for suffix in (".hea", ".mat"):
        shutil.copy(shared_data / CINC.with_suffix(suffix), tmp_path)
    return tmp_path / "E07500.hea"


def _val(hea: Path) -> np.ndarray:
    return scipy.io.loadmat(hea.with_suffix(".mat"))["val"]


def _refused(hea: Path, *words: str) -> str:
    """load_ecg raises an EcgReadError that names the header and the .mat file, with each of `words`."""
    with pytest.raises(EcgReadError) as info:
        load_ecg(hea.with_suffix(".mat"))
    assert info.value.path == str(hea)
    problem = info.value.problem
    assert hea.with_suffix(".mat").name in problem, problem
    for word in words:
        assert word in problem, problem
    return problem


@pytest.mark.shared_data
def test_a_rewritten_int16_val_still_reads(cinc: Path) -> None:
    expected = load_ecg(cinc).signal
    scipy.io.savemat(cinc.with_suffix(".mat"), {"val": _val(cinc)}, format="4")
    np.testing.assert_array_equal(load_ecg(cinc).signal, expected)


@pytest.mark.shared_data
def test_int32_val_of_the_same_size_is_refused(cinc: Path) -> None:
    """int32 12×2500: the same 120,000 bytes as int16 12×5000, so the file-size check passed."""
    val = _val(cinc)
    as_int32 = np.ascontiguousarray(val.T).view(np.int32).reshape(2500, 12).T  # the same bytes, int32
    scipy.io.savemat(cinc.with_suffix(".mat"), {"val": as_int32}, format="4")
    assert cinc.with_suffix(".mat").stat().st_size == 120_024
    _refused(cinc, "int32", "int16", "format 16")


@pytest.mark.shared_data
def test_transposed_val_is_refused(cinc: Path) -> None:
    scipy.io.savemat(cinc.with_suffix(".mat"), {"val": _val(cinc).T.copy()}, format="4")
    _refused(cinc, "5000 × 12", "12 signals × 5000 samples", "transposed")


@pytest.mark.shared_data
def test_transposed_val_is_refused_when_the_header_has_no_sample_count(cinc: Path) -> None:
    lines = cinc.read_text().splitlines()
    cinc.write_text("\n".join(["E07500 12 500", *lines[1:]]) + "\n")
    assert load_ecg(cinc).n_samples == 5000  # the length comes from the file
    scipy.io.savemat(cinc.with_suffix(".mat"), {"val": _val(cinc).T.copy()}, format="4")
    _refused(cinc, "5000 × 12", "transposed")


def _v4_header(mopt: int, rows: int, cols: int, imag: int = 0, name: bytes = b"val\0", endian: str = "<") -> bytes:
    return struct.pack(f"{endian}5i", mopt, rows, cols, imag, len(name)) + name


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("header", "words"),
    [
        (_v4_header(30, 12, 10**9), ["12 × 1000000000", "12 signals × 5000 samples"]),
        (_v4_header(30, 2**31 - 1, 2**31 - 1), ["2147483647 × 2147483647"]),
        (_v4_header(1030, 12, 5000, endian=">"), ["big-endian"]),
        (_v4_header(30, 12, 5000, imag=1), ["complex"]),
        (_v4_header(0, 12, 5000), ["float64", "int16"]),
        (b"\0garbage" * 3, ["MAT"]),
    ],
    ids=["cols_1e9", "dims_2e9_squared", "big_endian", "complex", "float64", "not_mat"],
)  # fmt: skip
def test_a_mat_header_that_disagrees_with_the_wfdb_header_is_refused(cinc: Path, header: bytes, words) -> None:
    """Crafted MAT v4 headers in front of the record's own samples; a header's claims allocate nothing."""
    mat = cinc.with_suffix(".mat")
    assert len(header) == 24  # as the record's own: only what the header declares differs
    mat.write_bytes(header + mat.read_bytes()[24:])
    tracemalloc.start()
    try:
        _refused(cinc, *words)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8e6


@pytest.mark.shared_data
def test_byte_offset_that_is_not_where_the_data_start_is_refused(cinc: Path) -> None:
    text = cinc.read_text()
    cinc.write_text(text.replace("16x1+24", "16x1+26"))  # the file is then a byte short: the size check says so
    with pytest.raises(EcgReadError):
        load_ecg(cinc)
    mat = cinc.with_suffix(".mat")
    raw = mat.read_bytes()
    mat.write_bytes(raw[:24] + b"\0\0" + raw[24:])  # the size that the header wants
    _refused(cinc, "from byte 24", "byte offset is 26")


@pytest.mark.shared_data
def test_mat_v5_variable_is_checked_too(cinc: Path) -> None:
    """wfdb's own wfdb_to_mat writes MAT v5 (an uncompressed variable, data after its tag)."""
    expected = load_ecg(cinc).signal
    val = _val(cinc)
    mat = cinc.with_suffix(".mat")
    scipy.io.savemat(mat, {"val": val}, format="5", do_compression=False)
    offset = mat.stat().st_size - val.nbytes
    lines = cinc.read_text().splitlines()
    cinc.write_text("\n".join([lines[0], *(ln.replace("16x1+24", f"16x1+{offset}") for ln in lines[1:])]) + "\n")
    np.testing.assert_array_equal(load_ecg(cinc).signal, expected)
    scipy.io.savemat(mat, {"val": val.T.copy()}, format="5", do_compression=False)
    _refused(cinc, "5000 × 12", "transposed")
    as_int32 = np.ascontiguousarray(val.T).view(np.int32).reshape(2500, 12).T
    scipy.io.savemat(mat, {"val": as_int32}, format="5", do_compression=False)
    _refused(cinc, "int32", "int16")
    scipy.io.savemat(mat, {"val": val}, format="5", do_compression=True)
    _refused(cinc, "compressed")
