"""NumPy records (``.npy``, ``.npz``): the array header is read and checked before any sample is.

An array file's header declares a shape and a dtype, and numpy allocates what it declares: a 200-byte ``.npy``
can ask for terabytes, and a deflated ``.npz`` member of a few MB can expand to gigabytes. Here the declared
size is checked against the bytes that the file (or the zip member) holds, object (pickled) arrays are refused
before anything is unpickled, and only the samples inside the read window come into memory: an ``.npy`` is
memory-mapped and sliced, an ``.npz`` member is decompressed as a stream of which only the window is kept.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ecglang.errors import EcgReadError

# The 'fs' and 'leads' members of an NPZ record: a number and a dozen names. Anything larger is not what the
# format stores there, and is refused before it is decompressed.
MAX_SMALL_MEMBER_BYTES = 1 << 16
_SKIP_STEP = 1 << 20


@dataclass(frozen=True)
class ArrayHeader:
    """What an NPY header declares, and where its data starts (`offset` bytes into the file or member)."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        return f"shape {self.shape} {self.dtype} ({_size_text(self.nbytes)})"


def _size_text(n: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n} bytes, {n / scale:.3g} {unit}"
    return f"{n} bytes"


def _read_header(path: Path, fp: IO[bytes], what: str, fmt: str) -> ArrayHeader:
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:  # 3.0 only adds UTF-8 field names of structured dtypes, which are no ECG signal
            raise EcgReadError(path, f"{what}: unsupported NPY format version {version[0]}.{version[1]}")
    except EcgReadError:
        raise
    except Exception as exc:  # ValueError on bad magic or header syntax, EOFError on a cut header
        raise EcgReadError(path, f"cannot read {fmt} file: {what} is not a NumPy array: {exc}") from exc
    if any(d < 0 for d in shape):
        raise EcgReadError(path, f"cannot read {fmt} file: {what} declares a negative shape {shape}")
    header = ArrayHeader(tuple(int(d) for d in shape), bool(fortran), dtype, fp.tell())
    if dtype.hasobject:  # numpy stores object arrays as pickles, which can run code when read
        raise EcgReadError(
            path, f"cannot read {fmt} file: {what} holds Python objects (dtype {dtype}): pickles are not loaded "
            "(allow_pickle=False)",
        )  # fmt: skip
    return header


def _check_held(path: Path, header: ArrayHeader, held: int, what: str) -> None:
    """Refuse, before allocating, an array whose header declares more data than the file holds."""
    if header.nbytes > held:
        raise EcgReadError(
            path,
            f"file too short: {what} declares {header.describe()} but the file holds only {max(held, 0)} bytes "
            "of data (truncated file or corrupt header)",
        )


def check_numeric(path: Path, dtype: np.dtype) -> None:
    """Refuse a signal dtype that is no sample values: complex (a cast would drop the imaginary part without a
    word), bool, strings, objects."""
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise EcgReadError(path, f"signal array must be numeric, got dtype {dtype}")


def samples_axis_first(path: Path, shape: tuple[int, ...], n_leads: int) -> bool:
    """Whether an array of `shape` is [samples, leads] (to be transposed); [leads, samples] as stored, or a
    square array, is not. A 1-D array is one lead."""
    if len(shape) == 1 and n_leads == 1:
        return False
    if len(shape) != 2:
        raise EcgReadError(path, f"signal must be 2-D [leads, samples], got shape {shape}")
    if shape[0] == n_leads:
        return False
    if shape[1] == n_leads:
        return True
    raise EcgReadError(path, f"signal shape {shape} does not match {n_leads} lead names")


def leads_by_samples(data: np.ndarray, transposed: bool) -> np.ndarray:
    """`data` as [leads, samples] (a view): a 1-D array is one lead; `transposed` (`samples_axis_first`) flips it."""
    return data[None, :] if data.ndim == 1 else (data.T if transposed else data)


def _skip_to(fp: IO[bytes], position: int) -> None:
    """Move a zip member stream forward to `position`, decompressing and discarding in 1 MiB steps (the
    stream's own `seek` discards in 16 MiB steps)."""
    while (left := position - fp.tell()) > 0:
        if not fp.read(min(left, _SKIP_STEP)):
            return  # the end of the member: the read that follows reports the file as too short


class NpyRecord:
    """A ``.npy`` record, its header checked against the file size; `window` maps the file and copies the part."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as fp:
            self.header = _read_header(path, fp, "the array", "NPY")
            size = fp.seek(0, 2)
        _check_held(path, self.header, size - self.header.offset, "its header")

    def window(self, transposed: bool, start: int, stop: int) -> np.ndarray:
        try:
            data = np.load(self.path, allow_pickle=False, mmap_mode="r")
        except ValueError:  # e.g. an empty array cannot be mapped; its size was checked against the file above
            data = np.load(self.path, allow_pickle=False)
        return np.array(leads_by_samples(data, transposed)[:, start:stop])  # copies only the window


class NpzRecord:
    """An ``.npz`` record: its small members read, the header of its 'signal' member checked against the member's
    size; `window` decompresses the member as a stream and keeps only the part asked for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with zipfile.ZipFile(path) as zf:
            self._members = {name.removesuffix(".npy"): zf.getinfo(name) for name in zf.namelist()}
            if "signal" not in self._members:
                raise EcgReadError(path, f"NPZ file has no 'signal' array (keys: {sorted(self._members)})")
            info = self._members["signal"]
            with zf.open(info) as fp:
                self.header = _read_header(path, fp, "member 'signal'", "NPZ")
            _check_held(path, self.header, info.file_size - self.header.offset, "member 'signal'")
            self.fs = self._small(zf, "fs")
            self.leads = self._small(zf, "leads")

    def _small(self, zf: zipfile.ZipFile, key: str) -> np.ndarray | None:
        info = self._members.get(key)
        if info is None:
            return None
        with zf.open(info) as fp:
            header = _read_header(self.path, fp, f"member {key!r}", "NPZ")
        _check_held(self.path, header, info.file_size - header.offset, f"member {key!r}")
        if header.nbytes > MAX_SMALL_MEMBER_BYTES:
            raise EcgReadError(
                self.path, f"member {key!r} declares {header.describe()}; expected a number or a few lead names"
            )
        with zf.open(info) as fp:
            return np.lib.format.read_array(fp, allow_pickle=False)

    def file_fs(self) -> Any:
        if self.fs is None:
            return None
        if self.fs.size != 1:
            raise EcgReadError(self.path, f"'fs' must be one number, got an array of shape {self.fs.shape}")
        return self.fs.item()

    def file_leads(self) -> list[str] | None:
        if self.leads is None:
            return None
        # names saved as bytes (np.array([b"I", ...]), an 'S' array) are text: str(b"I") is "b'I'", no lead name
        return [x.decode("ascii", "replace") if isinstance(x, bytes) else str(x) for x in self.leads.ravel().tolist()]

    def window(self, transposed: bool, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of each lead as [leads, stop - start], in the stored dtype."""
        h = self.header
        shape = h.shape if len(h.shape) == 2 else (1, h.shape[0])
        fortran = h.fortran and len(h.shape) == 2
        rows, cols = (shape[1], shape[0]) if fortran else shape  # the bytes are rows x cols in C order
        size = h.dtype.itemsize
        width = stop - start
        with zipfile.ZipFile(self.path) as zf, zf.open(self._members["signal"]) as fp:
            if fortran == transposed:  # a stored row is a lead: read its [start, stop) part, row after row
                out = np.empty((rows, width), dtype=h.dtype)
                for r in range(rows):
                    _skip_to(fp, h.offset + (r * cols + start) * size)
                    out[r] = np.frombuffer(self._exact(fp, width * size), dtype=h.dtype)
                return out
            # a stored row is a sample of every lead: rows [start, stop) are one contiguous run
            _skip_to(fp, h.offset + start * cols * size)
            return np.frombuffer(self._exact(fp, width * cols * size), dtype=h.dtype).reshape(width, cols).T

    def _exact(self, fp: IO[bytes], n: int) -> bytes:
        data = fp.read(n)
        if len(data) != n:
            raise EcgReadError(
                self.path, f"file too short: member 'signal' ends before the {self.header.describe()} it declares"
            )
        return data
