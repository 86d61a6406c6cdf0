"""MATLAB record files (CPSC 2018 ``.mat``): what a variable declares, checked before scipy reads it.

scipy's `loadmat` allocates whatever a file's array headers declare, and a MAT v5 variable is usually
deflated: a 1 MB file of compressed zeros can declare a [12, 10^8] int8 matrix, which scipy inflates
(1.2 GB) and the reader then turns into float64 (9 GB). Here the variable's headers are walked as a stream,
decompressed a block at a time and never kept, and its size is refused before any sample is read when it
declares more than `MAX_MATLAB_VALUES` values, or data elements larger than their arrays, or more nesting
or sub-arrays than an ECG struct has. Only the variable that the reader needs is walked, and only it is read
(`loadmat(variable_names=...)` skips the rest without inflating it).

The layouts are those of MathWorks' "MAT-File Format" (level 5, and level 4 for files that scipy reads as
v4); level 7.3 files are HDF5, which scipy refuses and the reader reports.

A WFDB record's `.mat` signal file (PhysioNet/CinC) is read by wfdb, not scipy: wfdb takes the values at the
WFDB header's byte offset as they are stored. `read_matrix_header` reads what its matrix header declares (value
type, rows × columns, where the values start) so that the WFDB reader can check it against the WFDB header.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import scipy.io

from ecglang.errors import EcgReadError

__all__ = [
    "MAX_MATLAB_VALUES",
    "WFDB_FORMAT_VALUE_TYPES",
    "MatlabVariable",
    "MatrixHeader",
    "check_wfdb_matrix",
    "load_matlab_variable",
    "read_matrix_header",
    "scan_matlab_variable",
]

# 2**26 values (512 MiB as the reader's float64): 1.5 h of 12 leads at 1 kHz, far beyond a CPSC record
# (at most 144 s at 500 Hz, 0.9 M values). Longer recordings belong in WFDB or NPY, which are read
# through a window.
MAX_MATLAB_VALUES = 1 << 26
MAX_DEPTH = 16  # struct-in-cell-in-struct nesting; an ECG struct has 1 level
MAX_ARRAYS = 4096  # sub-arrays (struct fields, cells) walked in one variable
MAX_NAME_BYTES = 1 << 16  # array and field names (MATLAB names are at most 63 characters)
_BLOCK = 1 << 16

# Level 5 data types (type code → bytes per item) and array classes, from the MAT-file format.
MI_INT8, MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED = 1, 5, 6, 14, 15
MX_CELL, MX_STRUCT, MX_OBJECT, MX_CHAR, MX_SPARSE = 1, 2, 3, 4, 5
NUMERIC_CLASSES = frozenset(range(6, 16))  # double, single, int8 … uint64
# How values are stored: level 4 precision digit, and level 5 data element type, to a numpy type code.
V4_VALUE_TYPES = {0: "f8", 1: "f4", 2: "i4", 3: "i2", 4: "u2", 5: "u1"}
V5_VALUE_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}


@dataclass(frozen=True)
class MatlabVariable:
    """What one top-level variable declares: its name, the values of all its arrays, and its version."""

    name: str
    n_values: int
    version: int


class _Truncated(Exception):
    pass


class _Stream:
    """Exact reads from a file region, inflated on the fly when `compressed`. What is read is kept: the walk
    reads one variable's headers (and all of it only when it is the one wanted, after its size is checked)."""

    def __init__(self, fp: BinaryIO, length: int, compressed: bool, prefix: bytes = b"") -> None:
        self._fp, self._left = fp, length
        self._inflate = zlib.decompressobj() if compressed else None
        self._buffer = prefix
        self.kept: list[bytes] = []
        self.n_kept = 0

    def _fill(self, need: int) -> None:
        while len(self._buffer) < need:
            if self._inflate is None:
                chunk = self._fp.read(min(self._left, max(need - len(self._buffer), _BLOCK)))
                self._left -= len(chunk)
                if not chunk:
                    raise _Truncated
                self._buffer += chunk
                continue
            if self._inflate.unconsumed_tail:
                src = self._inflate.unconsumed_tail
            else:
                src = self._fp.read(min(self._left, _BLOCK))
                self._left -= len(src)
                if not src:
                    raise _Truncated
            # max_length bounds what one call inflates: a deflated run of zeros stays a block at a time
            self._buffer += self._inflate.decompress(src, _BLOCK)

    def read(self, n: int) -> bytes:
        self._fill(n)
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        self.kept.append(out)
        self.n_kept += len(out)
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            step = min(n, _BLOCK)
            self.read(step)
            n -= step


class _Walker:
    """Walks one level-5 miMATRIX element, adding up the values its arrays declare (see the module doc)."""

    def __init__(self, path: Path, stream: _Stream, endian: str, limit: int) -> None:
        self.path, self.stream, self.endian, self.limit = path, stream, endian, limit
        self.values = 0
        self.arrays = 0
        self.declared = 0  # bytes that the top array element declares

    def fail(self, problem: str) -> EcgReadError:
        return EcgReadError(self.path, problem)

    def tag(self) -> tuple[int, int, bytes | None]:
        """(type, size, inline data) of the next data element; small elements carry their data in the tag."""
        raw = self.stream.read(8)
        first, second = struct.unpack(self.endian + "II", raw)
        if first >> 16:  # small data element: size in the upper half, at most 4 bytes inline
            size, mdtype = first >> 16, first & 0xFFFF
            if size > 4:
                raise self.fail(f"corrupt MATLAB file: small data element of {size} bytes (at most 4)")
            return mdtype, size, raw[4 : 4 + size]
        return first, second, None

    def element(self, max_bytes: int, what: str) -> tuple[int, bytes]:
        mdtype, size, inline = self.tag()
        if inline is not None:
            return mdtype, inline
        if size > max_bytes:
            raise self.fail(f"corrupt MATLAB file: {what} of {size} bytes (at most {max_bytes})")
        data = self.stream.read(size)
        self.stream.skip(-size % 8)
        return mdtype, data

    def header(self) -> tuple[int, bool, int, str] | None:
        """(class, complex, number of values, name) of the next array element; None for an empty array."""
        mdtype, size, inline = self.tag()
        if mdtype != MI_MATRIX or inline is not None:
            raise self.fail(f"corrupt MATLAB file: expected an array element (type 14), got type {mdtype}")
        if self.arrays == 0:
            self.declared = size
        if size == 0:  # an empty array has no sub-elements
            return None
        self.arrays += 1
        _, flags = self.element(8, "array flags")
        if len(flags) < 4:
            raise self.fail("corrupt MATLAB file: array flags shorter than 4 bytes")
        word = struct.unpack(self.endian + "I", flags[:4])[0]
        _, dims_raw = self.element(4 * 64, "dimensions")
        dims = struct.unpack(f"{self.endian}{len(dims_raw) // 4}i", dims_raw[: len(dims_raw) // 4 * 4])
        if any(d < 0 for d in dims):
            raise self.fail(f"corrupt MATLAB file: negative array dimension {dims}")
        _, name = self.element(MAX_NAME_BYTES, "array name")
        return word & 0xFF, bool(word & 0x0800), math.prod(dims), name.decode("latin-1")

    def matrix(self, depth: int) -> None:
        head = self.header()
        if head is not None:
            self.body(*head[:3], depth=depth)

    def body(self, klass: int, complex_: bool, count: int, depth: int) -> None:
        """Walk the sub-elements after an array's header, adding up values and refusing what is too large."""
        if depth > MAX_DEPTH or self.arrays > MAX_ARRAYS:
            raise self.fail(
                f"MATLAB variable nests more than {MAX_DEPTH} levels or holds more than {MAX_ARRAYS} arrays; "
                "a CPSC record is one struct of a few fields"
            )
        if klass in NUMERIC_CLASSES or klass == MX_CHAR:
            self.values += count
            self.check_values()
            for _ in range(2 if complex_ else 1):
                self.data(count)
        elif klass in (MX_STRUCT, MX_OBJECT):
            if klass == MX_OBJECT:
                self.element(MAX_NAME_BYTES, "class name")
            _, length_raw = self.element(4, "field name length")
            length = struct.unpack(self.endian + "i", length_raw.ljust(4, b"\0"))[0]
            _, names = self.element(MAX_NAME_BYTES, "field names")
            n_fields = len(names) // length if length > 0 else 0
            self.check_arrays(count * n_fields)
            for _ in range(count * n_fields):
                self.matrix(depth + 1)
        elif klass == MX_CELL:
            self.check_arrays(count)
            for _ in range(count):
                self.matrix(depth + 1)
        elif klass == MX_SPARSE:
            raise self.fail("MATLAB sparse matrices are not ECG signals")
        else:
            raise self.fail(f"MATLAB array class {klass} (function handle or opaque object) is not an ECG signal")

    def data(self, count: int) -> None:
        """Skip one data element of an array of `count` values; it may not hold more than 8 bytes a value."""
        _, size, inline = self.tag()
        if inline is not None:
            return
        if size > 8 * max(count, 1):
            raise self.fail(f"corrupt MATLAB file: a data element of {size} bytes for an array of {count} values")
        self.stream.skip(size + (-size % 8))

    def check_values(self) -> None:
        if self.values > self.limit:
            raise self.fail(_too_many(self.values, self.limit))

    def finish(self) -> None:
        """Read what the top array element declares beyond its sub-elements (nothing, in a well-formed file)."""
        rest = 8 + self.declared - self.stream.n_kept
        if not 0 <= rest <= MAX_NAME_BYTES:
            raise self.fail(f"corrupt MATLAB file: the variable's sub-elements and its size differ by {rest} bytes")
        self.stream.read(rest)

    def check_arrays(self, n: int) -> None:
        if n > MAX_ARRAYS:
            raise self.fail(f"MATLAB variable declares {n} sub-arrays (more than {MAX_ARRAYS})")


def scan_matlab_variable(
    path: str | Path, names: tuple[str, ...], limit: int = MAX_MATLAB_VALUES, seen: list[str] | None = None
) -> tuple[MatlabVariable, bytes | None] | None:
    """Check the first top-level variable of `path` named one of `names`, reading no more than it declares.

    Returns what it declares and, for level 5, a MAT file image that holds only that variable, uncompressed
    (None for level 4, which scipy reads from the file); None when no variable has one of the names or the file
    is not level 4 or 5 (which `scipy.io.loadmat` then reports). The names of the variables passed over are
    appended to `seen` when given. Raises `EcgReadError` naming the file when the
    variable declares more than `limit` values, or its headers are corrupt or truncated.
    """
    path = Path(path)
    try:
        with path.open("rb") as fp:
            head = fp.read(128)
            if len(head) >= 4 and 0 in head[:4]:  # level 4 begins with a small integer type code
                fp.seek(0)
                found = _scan_v4(path, fp, names, limit, seen if seen is not None else [])
                return None if found is None else (found, None)
            if len(head) < 128 or head[126:128] not in (b"IM", b"MI"):
                return None
            return _scan_v5(path, fp, head, names, limit, seen if seen is not None else [])
    except _Truncated:
        raise EcgReadError(path, "truncated MATLAB file: a variable ends before its declared size") from None
    except zlib.error as exc:
        raise EcgReadError(path, f"corrupt MATLAB file: a compressed variable does not inflate ({exc})") from None


def load_matlab_variable(
    path: str | Path, names: tuple[str, ...], limit: int = MAX_MATLAB_VALUES, seen: list[str] | None = None
) -> dict[str, Any]:
    """`scipy.io.loadmat` of the first variable of `path` named one of `names` (`{}` when there is none), once
    `scan_matlab_variable` has checked it; structs as objects, nothing squeezed. scipy's own errors propagate;
    `seen` collects the names of the other variables, as in `scan_matlab_variable`."""
    found = scan_matlab_variable(path, names, limit, seen)
    options: dict[str, Any] = {"squeeze_me": False, "struct_as_record": False}
    if found is None:  # not level 4 or 5 (v7.3 is HDF5): scipy says what it is, or finds nothing
        return scipy.io.loadmat(str(path), variable_names=list(names), **options)
    variable, image = found
    source: Any = str(path) if image is None else io.BytesIO(image)
    return scipy.io.loadmat(source, variable_names=[variable.name], **options)


def _scan_v5(
    path: Path, fp: BinaryIO, head: bytes, names: tuple[str, ...], limit: int, seen: list[str]
) -> tuple[MatlabVariable, bytes] | None:
    endian = "<" if head[126:128] == b"IM" else ">"
    while True:
        raw = fp.read(8)
        if len(raw) < 8:
            return None
        mdtype, size = struct.unpack(endian + "II", raw)
        start = fp.tell()
        if mdtype in (MI_COMPRESSED, MI_MATRIX):
            # a compressed variable inflates to a whole array element; an uncompressed one starts at its tag
            stream = _Stream(fp, size, mdtype == MI_COMPRESSED, prefix=raw if mdtype == MI_MATRIX else b"")
            walker = _Walker(path, stream, endian, limit)
            found = walker.header()
            if found is not None and found[3] in names:
                walker.body(*found[:3], depth=0)
                walker.finish()
                # the variable alone, uncompressed, behind the file's own header: scipy reads exactly this
                return MatlabVariable(found[3], walker.values, 5), b"".join([head, *stream.kept])
            seen.append("" if found is None else found[3])
        fp.seek(start + size)


def _scan_v4(path: Path, fp: BinaryIO, names: tuple[str, ...], limit: int, seen: list[str]) -> MatlabVariable | None:
    """Level 4: a 20-byte header (type, rows, columns, imaginary flag, name length) before each matrix."""
    item_bytes = {0: 8, 1: 4, 2: 4, 3: 2, 4: 2, 5: 1}
    while True:
        raw = fp.read(20)
        if len(raw) < 20:
            return None
        mopt = struct.unpack("<i", raw[:4])[0]
        endian = "<" if 0 <= mopt < 5000 else ">"
        mopt, rows, cols, imag, name_len = struct.unpack(endian + "5i", raw)
        precision = (mopt // 10) % 10
        if not 0 <= mopt < 5000 or precision not in item_bytes or min(rows, cols, name_len) < 0:
            return None  # not a level 4 header: scipy reports the file
        if name_len > MAX_NAME_BYTES:
            raise EcgReadError(path, f"corrupt MATLAB file: variable name of {name_len} bytes")
        name = fp.read(name_len).rstrip(b"\0").decode("latin-1")
        count = rows * cols
        if name in names:
            if count > limit:
                raise EcgReadError(path, _too_many(count, limit))
            return MatlabVariable(name, count, 4)
        seen.append(name)
        fp.seek(count * item_bytes[precision] * (2 if imag else 1), 1)


@dataclass(frozen=True)
class MatrixHeader:
    """How the first variable of a MAT file stores its values (`read_matrix_header`)."""

    version: int  # 4 or 5
    name: str
    dtype: np.dtype  # type and byte order of the stored values (a level 5 double may be stored as int16)
    rows: int
    cols: int
    data_offset: int  # byte of the file where the values start (column by column)


def read_matrix_header(path: str | Path) -> MatrixHeader:
    """The header of the first variable of a MAT file, for readers that take its values from the file as they are
    stored (wfdb reads a WFDB record's `.mat` at the WFDB header's byte offset): a real, full numeric 2-D matrix of
    level 4, or of level 5 stored uncompressed.

    Reads the file header and the variable's tags and name only (at most a few hundred bytes): the dimensions are
    returned, never allocated. Raises `EcgReadError` naming the file for anything else (not a MAT file, a
    compressed, complex, sparse, text or N-d variable, a corrupt or truncated header)."""
    path = Path(path)
    try:
        with path.open("rb") as fp:
            head = fp.read(128)
            if len(head) >= 20 and 0 in head[:4]:  # level 4 begins with a small integer type code
                return _matrix_header_v4(path, head)
            if len(head) == 128 and head[126:128] in (b"IM", b"MI"):
                return _matrix_header_v5(path, fp, "<" if head[126:128] == b"IM" else ">")
    except OSError as exc:
        raise EcgReadError(path, f"cannot read file: {exc.strerror or exc}") from exc
    raise EcgReadError(path, "not a MAT file: neither a level 4 matrix header nor a level 5 file header")


# WFDB storage formats whose samples a MATLAB matrix holds as they are (wfdb reads them at the WFDB header's byte
# offset), with the matrix's value type; no other format can be stored in a `.mat` signal file.
WFDB_FORMAT_VALUE_TYPES = {"16": "<i2", "61": ">i2", "32": "<i4", "80": "|u1", "160": "<u2"}


def check_wfdb_matrix(
    path: str | Path, formats: list[str], rows: int, n_signals: int, n_samples: int | None, byte_offset: int
) -> MatrixHeader:
    """Check the matrix of a WFDB record's `.mat` signal file (PhysioNet/CinC: MAT v4 'val', format 16x1+24)
    against what the WFDB header says of it: the `formats` of its signals, `rows` values a frame (its `n_signals`
    signals), `n_samples` frames (None: as many as the file holds) from `byte_offset`. The matrix is stored
    column by column, which is wfdb's interleaved layout: a value type, data offset or dimensions other than
    those make wfdb read other bytes, or other values, as samples. Reads only the matrix's header; raises
    `EcgReadError` naming `path` and what differs."""
    path = Path(path)
    mat = read_matrix_header(path)
    stored = WFDB_FORMAT_VALUE_TYPES.get(formats[0]) if len(formats) == 1 else None
    if stored is None:
        raise EcgReadError(
            path, f"a MATLAB matrix holds one value type; format(s) {', '.join(formats)} cannot be stored in it "
            f"(formats {', '.join(WFDB_FORMAT_VALUE_TYPES)} can)",
        )  # fmt: skip
    want = np.dtype(stored)
    where = f"matrix {mat.name!r} (MAT v{mat.version})"
    if mat.dtype != want:
        said = f"the header's format {formats[0]} is {_type_name(want)}"
        raise EcgReadError(path, f"{where} holds {_type_name(mat.dtype)} values, but {said}")
    if mat.data_offset != byte_offset:
        said = f"the header's byte offset is {byte_offset}"
        raise EcgReadError(path, f"{where} holds its values from byte {mat.data_offset}, but {said}")
    if n_samples is None:
        n_samples = max(0, path.stat().st_size - byte_offset) // (want.itemsize * rows)
    if (mat.rows, mat.cols) != (rows, n_samples):
        said = f"{rows} signals × {n_samples} samples" if rows == n_signals else f"{rows} values × {n_samples} frames"
        transposed = (mat.cols, mat.rows) == (rows, n_samples)
        flipped = " (stored transposed: a record's matrix is signals × samples)" if transposed else ""
        raise EcgReadError(path, f"{where} is {mat.rows} × {mat.cols}{flipped}, but the header describes {said}")
    return mat


def _type_name(dtype: np.dtype) -> str:
    return dtype.name + {">": " big-endian", "<": " little-endian"}.get(dtype.str[0], "")


def _matrix_header_v4(path: Path, head: bytes) -> MatrixHeader:
    """Level 4: type code (machine, 0, precision, kind digits), rows, columns, imaginary flag, name length, name."""
    mopt = struct.unpack("<i", head[:4])[0]
    endian = "<" if 0 <= mopt < 5000 else ">"
    mopt, rows, cols, imag, name_len = struct.unpack(endian + "5i", head[:20])
    machine, precision, kind = mopt // 1000, mopt // 10 % 10, mopt % 10
    if not 0 <= mopt < 5000 or mopt // 100 % 10 or precision not in V4_VALUE_TYPES or min(rows, cols, name_len) < 0:
        raise EcgReadError(path, f"not a MAT file: corrupt level 4 header (type code {mopt}, {rows} × {cols})")
    if machine > 1:
        number_format = ("VAX D-float", "VAX G-float", "Cray")[machine - 2]
        raise EcgReadError(path, f"MAT v4 matrix in {number_format} number format (only IEEE numbers are read)")
    if kind:
        raise EcgReadError(path, f"MAT v4 variable of kind {kind} ({'text' if kind == 1 else 'sparse'}), not a matrix")
    if imag:
        raise EcgReadError(path, "MAT v4 matrix of complex numbers, not samples")
    if name_len > MAX_NAME_BYTES:
        raise EcgReadError(path, f"corrupt MATLAB file: variable name of {name_len} bytes")
    name = head[20 : 20 + min(name_len, 63)].split(b"\0")[0].decode("latin-1")
    dtype = np.dtype("<>"[machine] + V4_VALUE_TYPES[precision])
    return MatrixHeader(4, name, dtype, rows, cols, 20 + name_len)


def _matrix_header_v5(path: Path, fp: BinaryIO, endian: str) -> MatrixHeader:
    """Level 5, after the 128-byte file header: the array element's tag, its flags, dimensions and name elements,
    and the tag of its real part, whose values follow."""

    def tag(what: str) -> tuple[int, int, bytes | None, int]:
        """(type, size, data of a small element or None, file offset of the data) of the next data element."""
        raw = fp.read(8)
        if len(raw) < 8:
            raise EcgReadError(path, f"truncated MATLAB file: it ends in the {what}")
        first, size = struct.unpack(endian + "II", raw)
        if first >> 16:  # small data element: type, size (at most 4) and data in the tag's 8 bytes
            if first >> 16 > 4:
                raise EcgReadError(path, f"corrupt MATLAB file: small data element of {first >> 16} bytes (at most 4)")
            return first & 0xFFFF, first >> 16, raw[4 : 4 + (first >> 16)], fp.tell() - 4
        return first, size, None, fp.tell()

    def element(max_bytes: int, what: str) -> bytes:
        _, size, inline, _ = tag(what)
        if inline is not None:
            return inline
        if size > max_bytes:
            raise EcgReadError(path, f"corrupt MATLAB file: {what} of {size} bytes (at most {max_bytes})")
        data = fp.read(size + (-size % 8))
        if len(data) < size:
            raise EcgReadError(path, f"truncated MATLAB file: it ends in the {what}")
        return data[:size]

    mdtype, _, _, _ = tag("variable's tag")
    if mdtype == MI_COMPRESSED:
        raise EcgReadError(
            path, "compressed MAT v5 variable: its values are deflated, not stored at a byte offset (save it "
            "uncompressed, or as MAT v4)"
        )  # fmt: skip
    if mdtype != MI_MATRIX:
        raise EcgReadError(path, f"corrupt MATLAB file: expected an array element (type 14), got type {mdtype}")
    word = struct.unpack(endian + "I", element(8, "array flags")[:4].ljust(4, b"\0"))[0]
    if word & 0xFF not in NUMERIC_CLASSES or word & 0x0800:
        what = "complex numbers" if word & 0x0800 else f"class {word & 0xFF}"
        raise EcgReadError(path, f"MAT v5 variable of {what}, not a real numeric matrix")
    dims_raw = element(4 * 64, "dimensions")
    dims = struct.unpack(f"{endian}{len(dims_raw) // 4}i", dims_raw[: len(dims_raw) // 4 * 4])
    if len(dims) != 2 or min(dims) < 0:
        raise EcgReadError(path, f"MAT v5 variable of dimensions {dims}, not a matrix")
    name = element(MAX_NAME_BYTES, "array name")[:63].decode("latin-1")
    mdtype, size, _, data_offset = tag("values' tag")
    if mdtype not in V5_VALUE_TYPES:
        raise EcgReadError(path, f"corrupt MATLAB file: values of data type {mdtype}")
    dtype = np.dtype(endian + V5_VALUE_TYPES[mdtype])
    if size != dims[0] * dims[1] * dtype.itemsize:
        raise EcgReadError(
            path, f"corrupt MATLAB file: {size} bytes of values for a {dims[0]} × {dims[1]} {dtype.name} matrix"
        )
    return MatrixHeader(5, name, dtype, dims[0], dims[1], data_offset)


def _too_many(count: int, limit: int) -> str:
    return (
        f"MATLAB variable declares {count} values, more than the {limit} that a .mat record may hold "
        "(read as a whole, without a window); convert long recordings to WFDB or NPY"
    )
