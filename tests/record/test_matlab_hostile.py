"""Hostile MATLAB (CPSC 2018) records: what a variable declares must not drive memory. A deflated MAT v5 file
of about 1 MB can declare a [12, 10^8] int8 matrix that scipy inflates and the reader turns into 9 GB of float64;
its headers are now walked as a stream and the variable refused before any sample is read. The scan must also
agree with scipy on every layout that scipy writes, so that no real record is refused. Files are built here in
tmp_path, the hostile ones by a streaming writer that never holds what they declare."""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ecglang.errors import EcgReadError
from ecglang.record.io import load_ecg
from ecglang.record.matlab_reader import MAX_ARRAYS, MAX_MATLAB_VALUES, scan_matlab_variable

MI_INT8, MI_INT32, MI_UINT32, MI_DOUBLE, MI_MATRIX, MI_COMPRESSED = 1, 5, 6, 9, 14, 15
MX_CELL, MX_STRUCT, MX_DOUBLE, MX_INT8 = 1, 2, 6, 8


def _element(mdtype: int, payload: bytes) -> bytes:
    return struct.pack("<II", mdtype, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _array_head(klass: int, dims: tuple[int, ...], name: bytes = b"") -> bytes:
    return (
        _element(MI_UINT32, struct.pack("<II", klass, 0))
        + _element(MI_INT32, struct.pack(f"<{len(dims)}i", *dims))
        + _element(MI_INT8, name)
    )


def _zeros(n: int) -> Iterator[bytes]:
    block = b"\0" * (1 << 20)
    while n > 0:
        yield block[: min(n, len(block))]
        n -= len(block)


def _numeric(dims: tuple[int, ...], data_bytes: int, klass: int = MX_INT8, mdtype: int = MI_INT8) -> list[bytes]:
    """An array element whose data element holds `data_bytes` zero bytes, as a list of chunks (never joined)."""
    head = _array_head(klass, dims)
    padded = data_bytes + (-data_bytes % 8)
    return [
        struct.pack("<II", MI_MATRIX, len(head) + 8 + padded),
        head,
        struct.pack("<II", mdtype, data_bytes),
        *_zeros(padded),
    ]


def _struct(name: bytes, fields: dict[bytes, list[bytes]]) -> list[bytes]:
    width = 32
    names = b"".join(f.ljust(width, b"\0") for f in fields)
    head = _array_head(MX_STRUCT, (1, 1), name) + struct.pack("<HHi", MI_INT32, 4, width) + _element(MI_INT8, names)
    size = len(head) + sum(len(c) for chunks in fields.values() for c in chunks)
    return [struct.pack("<II", MI_MATRIX, size), head, *(c for chunks in fields.values() for c in chunks)]


def _write_mat(path: Path, variables: list[list[bytes]]) -> None:
    """A MAT v5 file of deflated variables, each compressed as a stream of its chunks."""
    text = b"MATLAB 5.0 MAT-file, written by ecglang tests".ljust(116, b" ")
    with path.open("wb") as fp:
        fp.write(text + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM")
        for chunks in variables:
            deflate = zlib.compressobj(6)
            blob = b"".join([*(deflate.compress(c) for c in chunks), deflate.flush()])
            fp.write(struct.pack("<II", MI_COMPRESSED, len(blob)) + blob)


def _ecg(data: list[bytes]) -> list[bytes]:
    age = [struct.pack("<II", MI_MATRIX, 0)]  # an empty field, as CPSC files have
    return _struct(b"ECG", {b"data": data, b"age": age})


def _refused(path: Path, *words: str) -> EcgReadError:
    started = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(EcgReadError) as info:
            load_ecg(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5.0
    assert peak < 16e6, peak
    assert info.value.path == str(path)
    for word in words:
        assert word in info.value.problem, info.value.problem
    return info.value


def test_a_deflated_bomb_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    """72 M int8 zeros in a 70 KB file: scipy inflated 72 MB and the reader asked for 576 MB of float64 (at 10^8
    samples, 1.9 GB RSS and a MemoryError); now refused from the headers, under 16 MB traced."""
    n = MAX_MATLAB_VALUES // 12 + 1000
    path = tmp_path / "A9001.mat"
    _write_mat(path, [_ecg(_numeric((12, n), 12 * n))])
    assert path.stat().st_size < 200_000
    _refused(path, "declares", str(12 * n), "values", "WFDB or NPY")


def test_a_data_element_larger_than_its_array_is_refused(tmp_path: Path) -> None:
    """A [12, 100] array whose data element holds 64 MB: scipy reads the whole element before it checks."""
    path = tmp_path / "A9002.mat"
    _write_mat(path, [_ecg(_numeric((12, 100), 64 << 20))])
    _refused(path, "data element", str(64 << 20), "1200 values")


def test_too_many_sub_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "A9003.mat"
    cells = [b for _ in range(MAX_ARRAYS + 1) for b in _numeric((1, 1), 8, MX_DOUBLE, MI_DOUBLE)]
    head = _array_head(MX_CELL, (1, MAX_ARRAYS + 1))
    cell = [struct.pack("<II", MI_MATRIX, len(head) + sum(map(len, cells))), head, *cells]
    _write_mat(path, [_ecg(cell)])
    _refused(path, "sub-arrays")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "A9004.mat"
    inner = _numeric((12, 10), 120)
    for _ in range(40):
        inner = _struct(b"", {b"x": inner})
    _write_mat(path, [_struct(b"ECG", {b"data": inner})])
    _refused(path, "nests more than")


def test_a_truncated_variable_is_a_read_error(tmp_path: Path) -> None:
    path = tmp_path / "A9005.mat"
    _write_mat(path, [_ecg(_numeric((12, 5000), 60_000))])
    path.write_bytes(path.read_bytes()[:200])
    _refused(path, "truncated")


def test_a_huge_other_variable_is_skipped_unread(tmp_path: Path) -> None:
    """Only the ECG struct is read: a deflated bomb beside it costs nothing (loadmat(variable_names=...))."""
    path = tmp_path / "A9006.mat"
    junk = _numeric((1, 400 << 20), 400 << 20)
    junk[1] = _array_head(MX_INT8, (1, 400 << 20), b"junk")
    signal = np.arange(12 * 50, dtype=np.float64)
    ecg = _ecg([*_numeric((12, 50), 12 * 50 * 8, MX_DOUBLE, MI_DOUBLE)[:3], signal.tobytes("F")])
    _write_mat(path, [junk, ecg])
    tracemalloc.start()
    try:
        record = load_ecg(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16e6, peak
    np.testing.assert_array_equal(record.signal, signal.reshape(12, 50, order="F"))


@pytest.mark.parametrize(
    ("fmt", "compress", "extra"),
    [
        ("5", True, {}),
        ("5", False, {}),
        ("5", True, {"note": "free text", "cells": np.array([[1.0, 2.0], [3.0, 4.0]], dtype=object)}),
        ("5", True, {"z": np.ones((3, 4)) * (1 + 2j), "names": np.array(["I", "II"], dtype=object)}),
        ("4", False, {}),
    ],
    ids=["v5-deflated", "v5-plain", "v5-char-and-cells", "v5-complex-and-strings", "v4"],
)
def test_the_scan_agrees_with_scipy_on_what_scipy_writes(
    tmp_path: Path, fmt: str, compress: bool, extra: dict[str, object]
) -> None:
    """Every layout scipy writes is walked to the same number of values scipy reads, and still loads."""
    rng = np.random.default_rng(0)
    data = rng.integers(-500, 500, size=(12, 700)).astype(np.int16)
    path = tmp_path / "A0001.mat"
    if fmt == "4":
        variables: dict[str, object] = {"before": np.zeros((3, 3)), "ECG": data.astype(np.float64)}
    else:
        variables = {"before": np.zeros((3, 3)), "ECG": {"data": data, "age": 61.0, "sex": "Female", **extra}}
    scipy.io.savemat(path, variables, format=fmt, do_compression=compress)
    found = scan_matlab_variable(path, ("ECG",))
    assert found is not None
    scanned = found[0]
    assert scanned.name == "ECG" and scanned.version == int(fmt)
    read = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=False, variable_names=["ECG"])["ECG"]
    assert scanned.n_values == _values(read)
    record = load_ecg(path)
    np.testing.assert_array_equal(record.signal, data.astype(np.float64))


def _values(value: object) -> int:
    """Values of every numeric and char array in what scipy read (structs and cells opened)."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return sum(_values(v) for v in value.flat)
    if isinstance(value, scipy.io.matlab.mat_struct):
        return sum(_values(getattr(value, f)) for f in value._fieldnames)
    arr = np.asarray(value)
    return int(arr.size) if arr.dtype.kind != "U" else sum(len(s) for s in arr.flat)


def test_the_cpsc_samples_scan_as_they_read(shared_data: Path) -> None:
    paths = sorted((shared_data / "formats" / "cpsc2018").glob("*.mat"))
    assert len(paths) >= 2, paths  # the samples moved or gone: this checked nothing
    for path in paths:
        found = scan_matlab_variable(path, ("ECG",))
        read = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=False, variable_names=["ECG"])["ECG"]
        assert found is not None and found[0].n_values == _values(read), path.name
