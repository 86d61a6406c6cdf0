"""Reading ECG files into `Ecg` records (float32 mV, canonical 12-lead order).

Supported formats (the value of `metadata["format"]`):

- ``wfdb``: WFDB header ``.hea`` with binary ``.dat`` signal files (PTB-XL, MIT-BIH, PTB, MIMIC-IV-ECG).
- ``wfdb-mat``: WFDB header with a ``.mat`` signal file (PhysioNet/CinC 2020/2021, format ``16x1+24``).
  ``wfdb.rdrecord`` reads these directly: the ``.mat`` is a MAT v4 file whose 24-byte preamble the header
  skips through its byte offset.
- ``cpsc-mat``: CPSC 2018 MATLAB struct ``ECG`` (``data`` 12×N in mV, ``sex``, ``age``), 500 Hz.
  A ``.mat`` with no ``.hea`` beside it is read this way.
- ``npy``: a bare array; `fs` and `leads` must be given.
- ``npz``: keys ``signal`` and optionally ``fs`` and ``leads``; the arguments fill in only a key the file lacks
  (each of the two must come from the file or the arguments), and one that differs from the stored value is an
  `EcgReadError` naming both.

Every failure is an `EcgReadError` naming the file (as an absolute path, in ``.path``) and the problem (in
``.problem``, without the path); exceptions raised inside wfdb, scipy or numpy are wrapped (the original stays
in ``__cause__``). Non-finite samples are not a read error:
preprocessing handles them, and their count is in ``metadata["n_nonfinite"]``.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ecglang.errors import EcgReadError, RecordFailure
from ecglang.record.demographics import parse_age, parse_sex
from ecglang.record.ecg import RECORD_SUFFIXES, Ecg, record_id_of
from ecglang.record.leads import CANONICAL_LEADS, same_leads, to_canonical
from ecglang.record.matlab_reader import load_matlab_variable, scan_matlab_variable
from ecglang.record.numpy_reader import NpyRecord, NpzRecord, check_numeric, leads_by_samples, samples_axis_first
from ecglang.record.wfdb_reader import (
    header_references,
    parse_header_comments,
    read_wfdb,
    wfdb_format,
)
from ecglang.record.window import ReadWindow, check_sampling_rate

logger = logging.getLogger(__name__)

__all__ = [
    "CPSC_FS", "FORMATS", "RECORD_SUFFIXES", "LoadResult", "ReadWindow", "RecordScan", "SkippedFile",
    "find_records", "header_in_other_case", "iter_ecgs", "load_ecg", "load_ecgs", "lower_case_header_problem",
    "parse_header_comments", "record_file", "scan_records",
]  # fmt: skip

FORMATS: tuple[str, ...] = ("wfdb", "wfdb-mat", "cpsc-mat", "npy", "npz")
CPSC_FS = 500.0  # CPSC 2018 .mat files do not store their rate; the challenge data is all 500 Hz

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------


def load_ecg(
    path: PathLike,
    fs: float | None = None,
    leads: Sequence[str] | None = None,
    record_id: str | None = None,
    *,
    window: ReadWindow | None = None,
) -> Ecg:
    """Read one ECG record, detecting its format from the file name and contents.

    Args:
        path: a WFDB record with or without extension (``.../00001_hr``, ``.../00001_hr.hea`` or
            ``.../00001_hr.dat``), a ``.mat`` (CinC when a ``.hea`` is beside it, else CPSC 2018; the name
            without ``.mat`` works too), a ``.npy`` or a ``.npz``.
        fs: sampling rate in Hz. Required for ``.npy``; fills in the rate of a ``.npz`` without an ``fs`` key and
            replaces the 500 Hz default of CPSC files. WFDB headers and ``.npz`` ``fs`` keys store the rate, so
            there a different value raises `EcgReadError` (it catches, e.g., a ``records100`` path where
            ``records500`` was meant, or a batch's ``--fs`` meant for its ``.npy`` files only).
        leads: lead name of each signal row. Required for ``.npy``; fills in the names of a ``.npz`` without a
            ``leads`` key (stored names that name other leads, or another number of them, raise `EcgReadError`;
            another spelling of the same leads, ``Lead I`` for ``I``, does not); for WFDB and MATLAB records it
            replaces the names stored in the file (e.g. a WFDB header naming its leads ``ECG1, ECG2``) and must
            have one name per stored signal.
        record_id: identifier for the record; default the file name without extension.
        window: read only this part of a long record (`ReadWindow`: seconds at the start or centre, plus a
            margin). ``PreprocessConfig.read_window()`` gives the part that preprocessing uses, so that a
            24-hour Holter record costs the memory of its used seconds. WFDB (all formats, CinC ``.mat``
            included) reads only those samples from disk; ``.npy`` is memory-mapped and sliced; an ``.npz``
            member is decompressed as a stream of which only the window is kept; CPSC ``.mat`` is read whole,
            then sliced. None (default) reads the whole record.
            ``metadata["read_offset"]`` and ``metadata["n_samples_in_file"]`` say which part was read.

    Sampling rate: every rate (from a header, an NPZ ``fs`` key, the CPSC default or the ``fs`` argument) must
    be a finite number in [50, 20000] Hz (`ecglang.record.window.MIN_FS_HZ`/`MAX_FS_HZ`, the range of real
    electrocardiographs); anything else (0, negative, NaN, 0.001, 1e6) is an `EcgReadError`. A WFDB header
    with no rate field gets the WFDB default of 250 Hz.

    Array layout (NPY/NPZ): ``[leads, samples]``. An array of shape ``[samples, leads]`` (rows ≠ lead count,
    columns = lead count) is transposed and ``metadata["transposed"]`` is set; a square array is taken as
    ``[leads, samples]``. NPY/NPZ values are taken to be in mV.

    Returns:
        `Ecg` with a float32 ``[12, n]`` signal in mV in canonical lead order, the lead mask of the leads
        present, and metadata keys ``age`` (float or None), ``sex`` ("M"/"F"/None), ``comments`` (raw header
        comments), ``source_path``, ``format``, ``dropped_leads`` (known non-12-lead channels such as Frank
        vx/vy/vz), ``source_leads`` (names as stored), ``n_nonfinite``; CinC headers add ``snomed`` (list of
        str), ``rx``, ``hx``.

    Limits (refused before anything is allocated, so that a few bytes of header cannot drive memory): a WFDB
    header over 1 MiB; a WFDB skew over 1 s or not less than the record's length; a multi-segment record
    without its total length, whose segment lengths disagree with the master header or the segment files, with
    a gap ('~') in a fixed layout, or whose part read would fill over 2**27 values of gap with NaN (read a
    window); a baseline outside the 32-bit range; non-ASCII WFDB names (wfdb drops those characters); an
    NPY/NPZ array whose header declares more data than the file holds, or object (pickled) arrays.

    Raises:
        EcgReadError: missing/unsupported/corrupt/truncated/empty file, header sample count that disagrees with
            the signal file, unsupported WFDB storage format, sampling rate outside [50, 20000] Hz, rate
            mismatch (a WFDB header's or an NPZ ``fs`` key's rate against `fs`; NPZ ``leads`` against `leads`),
            complex or non-numeric samples, unknown or duplicate lead names, missing
            ``fs``/``leads`` for NPY, any of the limits above.
    """
    fmt, file = _resolve(path)
    if fs is not None:
        fs = check_sampling_rate(file, fs, "fs argument")
    if fmt in ("wfdb", "wfdb-mat"):
        signal, names, rate, meta = read_wfdb(file, fs, leads, window)
    elif fmt == "cpsc-mat":
        signal, names, rate, meta = _read_cpsc(file, fs, window)
    else:
        signal, names, rate, meta = _read_numpy(file, fmt, fs, leads, window)
    meta["format"] = fmt
    # the NumPy reader settled the names (given, or stored and agreeing); the others rename the stored signals
    return _build_ecg(file, signal, names, rate, meta, None if fmt in ("npy", "npz") else leads, record_id)


@dataclass(frozen=True)
class SkippedFile:
    """A file found by `scan_records` that is not (part of) a readable record, and why.

    `failed` is True for a file that looks like (part of) a record but cannot be read as one (a ``.dat`` with
    no ``.hea`` naming it): batch commands report those as failures (`RecordScan.failures`), where the other
    skipped files (annotations, README, CSV) are only logged.
    """

    path: Path
    reason: str
    failed: bool = False


@dataclass
class RecordScan:
    """Result of `scan_records`: one path per record (sorted) and every other file with the reason."""

    records: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def failures(self) -> list[RecordFailure]:
        """The skipped files that look like records but cannot be read, as stage-"scan" `RecordFailure`s
        (absolute path as `record`, the reason without the path)."""
        return [
            RecordFailure(str(s.path.absolute()), "scan", s.reason, path=str(s.path.absolute()))
            for s in self.skipped
            if s.failed
        ]


def scan_records(folder: PathLike, recursive: bool = True) -> RecordScan:
    """List every supported record in `folder` and every file that is not part of one.

    One path per record: a WFDB record is its ``.hea`` (the header wins over its ``.dat``/``.mat`` and over
    any other signal file it names, e.g. PTB's ``.xyz``); a ``.mat`` with no ``.hea`` beside it counts as a
    CPSC record, even when a header of another name names it as its signal file if it holds a CPSC ``ECG``
    struct (no WFDB signal file); ``.npy``/``.npz`` are records. The segment headers of a multi-segment record
    are left to its master header; a header is never a segment of itself, and a multi-segment header is never
    a segment (wfdb reads single-segment segments only), so neither vanishes: `load_ecg` says what is wrong.
    Broken links (and link loops) are listed like the files they stand for, so a batch read reports them
    ("broken link ..."), or, for a ``.dat`` no header names, a failed `SkippedFile`. Files are not opened beyond
    the headers (and the ``.mat`` files that a header of another name names), so a record listed here may still
    fail in `load_ecg` (batch callers use `iter_ecgs`/`load_ecgs` to collect those).
    """
    root = Path(folder)
    if not root.exists():
        raise EcgReadError(root, "folder not found")
    if not root.is_dir():
        raise EcgReadError(root, "not a folder (use load_ecg for a single file)")
    entries = sorted(root.rglob("*") if recursive else root.iterdir())
    # `is_file()` is False for a dangling link: kept here, so that it is reported instead of vanishing
    files = [p for p in entries if p.is_file() or _is_broken_link(p)]
    # named pipes, sockets, devices: never opened (a pipe would block the scan), but said
    others = [p for p in entries if not (p.is_file() or p.is_dir() or _is_broken_link(p))]

    headers = {p for p in files if p.suffix.lower() == ".hea"}
    owner: dict[Path, Path] = {}  # signal file -> header of the record it belongs to
    segments_of: dict[Path, set[Path]] = {}  # multi-segment (master) header -> the segment headers it names
    for hea in sorted(headers):
        for suffix in (".dat", ".mat"):  # a header's same-name signal file is its own even if unnamed
            owner.setdefault(hea.with_suffix(suffix), hea)
        signal_files, segments = header_references(hea)
        for f in signal_files:
            owner.setdefault(f, hea)
        if segments:
            segments_of[hea] = segments
    # A segment is a single-segment header that a master names: a master naming itself ("loop/1 ... loop 5000")
    # or another master is not one of them, else both would vanish with nothing standing for them.
    segment_headers = {s for segs in segments_of.values() for s in segs if s in headers and s not in segments_of}

    scan = RecordScan()
    for p in files:
        suffix = p.suffix.lower()
        if p in segment_headers:
            continue  # a segment of a multi-segment record; the master header stands for it
        if suffix == ".hea":
            scan.records.append(p)
        elif suffix in (".npy", ".npz"):
            scan.records.append(p)  # load_ecg reads them as arrays whatever a header names
        elif p in owner and not _cpsc_named_by_another_header(p, headers):
            continue  # a signal file of a header's record
        elif suffix == ".mat":
            scan.records.append(p)
        elif suffix == ".dat":
            reason = f"WFDB signal file with no .hea header naming it ({p.with_suffix('.hea').name} not found)"
            if _is_broken_link(p):
                reason = f"{_missing_file(p)}; {reason}"
            scan.skipped.append(SkippedFile(p, reason, failed=True))
        elif p.with_suffix(".hea") in headers:
            reason = f"not a signal file of WFDB record {p.with_suffix('.hea').name} (annotations or other data)"
            scan.skipped.append(SkippedFile(p, reason))
        else:
            reason = f"unsupported file type {suffix or '(no extension)'!r}"
            scan.skipped.append(SkippedFile(p, f"{_missing_file(p)}; {reason}" if _is_broken_link(p) else reason))
    for p in others:
        failed = p.suffix.lower() in RECORD_SUFFIXES
        scan.skipped.append(SkippedFile(p, "not a regular file (a pipe, socket or device): not read", failed=failed))
    return scan


def _is_broken_link(path: Path) -> bool:
    """A symbolic link whose target does not exist (or a link loop)."""
    return path.is_symlink() and not path.exists()


def _missing_file(path: Path) -> str:
    """Why `path` cannot be opened: a broken link (naming its target) or no file at all."""
    if _is_broken_link(path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"broken link: it points to {target}, which does not exist (or is a link loop)"
    return "file not found"


def _cpsc_named_by_another_header(mat: Path, headers: set[Path]) -> bool:
    """A ``.mat`` with no same-name header (so `load_ecg` reads it as CPSC) that holds a CPSC ``ECG`` struct: a
    record of its own even where a header of another name names it as its signal file, which it cannot be."""
    if mat.suffix.lower() != ".mat" or mat.with_suffix(".hea") in headers:
        return False
    try:
        return scan_matlab_variable(mat, ("ECG",)) is not None
    except Exception:  # unreadable, corrupt or not MATLAB at all: left to the header that names it
        return False


def find_records(folder: PathLike, recursive: bool = True) -> list[Path]:
    """Sorted paths of every supported record in `folder` (see `scan_records`, which also returns the
    files skipped and why; here their count is logged so that nothing disappears unnoticed)."""
    scan = scan_records(folder, recursive=recursive)
    if scan.skipped:
        logger.info(
            "%s: %d record(s) found, %d other file(s) skipped (e.g. %s: %s)",
            folder, len(scan.records), len(scan.skipped), scan.skipped[0].path.name, scan.skipped[0].reason,
        )  # fmt: skip
    return scan.records


def iter_ecgs(
    paths: Iterable[PathLike],
    fs: float | None = None,
    leads: Sequence[str] | None = None,
    progress: bool = True,
) -> Iterator[tuple[Path, Ecg | EcgReadError]]:
    """Read records one at a time, yielding ``(path, Ecg)`` or ``(path, EcgReadError)`` for a bad record,
    so that a batch goes on past unreadable files and the caller can report them."""
    paths = list(paths)
    for p in tqdm(paths, desc="reading ECGs", unit="rec", disable=not progress):
        try:
            yield Path(p), load_ecg(p, fs=fs, leads=leads)
        except EcgReadError as exc:
            yield Path(p), exc


@dataclass
class LoadResult:
    """Result of `load_ecgs`: the records read and the failures (path, error), in input order."""

    ecgs: list[Ecg] = field(default_factory=list)
    failures: list[tuple[Path, EcgReadError]] = field(default_factory=list)


def load_ecgs(
    paths: Iterable[PathLike],
    fs: float | None = None,
    leads: Sequence[str] | None = None,
    progress: bool = True,
) -> LoadResult:
    """Read many records into memory; unreadable ones are collected in `LoadResult.failures`."""
    result = LoadResult()
    for p, item in iter_ecgs(paths, fs=fs, leads=leads, progress=progress):
        if isinstance(item, EcgReadError):
            result.failures.append((p, item))
        else:
            result.ecgs.append(item)
    return result


# --------------------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------------------


def record_file(path: PathLike) -> Path | None:
    """The file the reader reads for `path` (absolute, links not followed), found without opening any file: a
    WFDB record's ``.hea`` (given as its ``.hea``, ``.dat``, CinC ``.mat`` or its name without extension), a CPSC
    ``.mat``, an ``.npy``/``.npz``; None where there is none (`load_ecg` says why)."""
    p = Path(path).expanduser().absolute()
    if p.is_dir():
        return None
    suffix = p.suffix.lower()
    if suffix in (".hea", ".dat"):
        candidates = [p.with_suffix(".hea")]
    elif suffix == ".mat":
        candidates = [p.with_suffix(".hea"), p]  # a header beside it makes it a CinC (WFDB) record
    elif suffix in (".npy", ".npz"):
        candidates = [p]
    else:  # no (known) extension: a WFDB record name such as ".../00001_hr", or a CPSC one such as ".../A0001"
        candidates = [p.with_name(p.name + ".hea"), p.with_name(p.name + ".mat")]
    return next((f for f in candidates if f.is_file()), None)


def _resolve(path: PathLike) -> tuple[str, Path]:
    """(format, file to read). For WFDB records the file is the ``.hea``; where `record_file` finds none, the
    `EcgReadError` that says why."""
    file = record_file(path)
    if file is not None:
        suffix = file.suffix.lower()
        return (wfdb_format(file), file) if suffix == ".hea" else ("cpsc-mat" if suffix == ".mat" else suffix[1:], file)
    p = Path(path).expanduser().absolute()  # read errors name files as absolute paths, like processing errors
    suffix = p.suffix.lower()
    if p.is_dir():
        raise EcgReadError(
            p, "is a folder, not a record file (pass one of its records; `ecglang zero-shot` and "
            "`ecglang.record.io.find_records` take folders)",
        )  # fmt: skip
    if suffix not in (".mat", ".npy", ".npz"):  # a header named 00108_HR.HEA (Windows exports): wfdb opens .hea only
        other = header_in_other_case(p.with_suffix("") if suffix in (".hea", ".dat") else p)
        if other is not None:
            raise EcgReadError(other, lower_case_header_problem(other))
    if suffix in (".hea", ".dat"):
        hea = p.with_suffix(".hea")
        if suffix == ".dat" and p.is_file():
            raise EcgReadError(p, f"WFDB signal file without its header: {hea.name} not found")
        signals = [f.name for f in (p.with_suffix(".dat"), p.with_suffix(".mat")) if f.is_file() or f.is_symlink()]
        if suffix == ".hea" and signals and not _is_broken_link(p):  # a signal file whose header is missing
            raise EcgReadError(
                p, f"file not found: the WFDB header of {' and '.join(signals)}, which is here without it"
            )
        raise EcgReadError(p, _missing_file(p))
    if suffix in (".mat", ".npy", ".npz"):
        raise EcgReadError(p, _missing_file(p))
    hea = p.with_name(p.name + ".hea")
    if p.is_file():
        raise EcgReadError(
            p,
            f"unsupported file type {suffix or '(no extension)'!r}; expected one of {list(RECORD_SUFFIXES)}",
        )
    for f in (hea, p.with_name(p.name + ".mat")):
        if _is_broken_link(f):
            raise EcgReadError(f, _missing_file(f))
    raise EcgReadError(p, f"file not found (nor {hea.name} or {p.name}.mat)")


def header_in_other_case(base: Path) -> Path | None:
    """The WFDB header of record `base` (a path without extension) whose extension is not all lower case
    (``00108_HR.HEA``), where no ``.hea`` is: wfdb opens a record's header as ``NAME.hea`` only, so on a
    case-sensitive file system it cannot read it. None when there is none. Stats up to 7 names, opens nothing."""
    for ext in map("".join, itertools.product(*zip("hea", "HEA", strict=True))):
        header = base.with_name(f"{base.name}.{ext}")
        if ext != "hea" and header.is_file():
            return header
    return None


def lower_case_header_problem(header: Path) -> str:
    """What to do with a header whose extension is not lower case (`header_in_other_case`)."""
    return (
        f"WFDB needs a lower-case .hea extension (wfdb opens a record's header as NAME.hea): rename {header.name} "
        f"to {header.stem}.hea"
    )


# --------------------------------------------------------------------------------------------------------
# MATLAB (CPSC 2018) and NumPy
# --------------------------------------------------------------------------------------------------------


def _read_cpsc(
    path: Path, fs: float | None, window: ReadWindow | None
) -> tuple[np.ndarray, list[str], float, dict[str, Any]]:
    others: list[str] = []  # the names of the variables that are neither
    try:
        # the variable's declared size is checked before scipy allocates it (a deflated .mat can declare GBs);
        # nothing is squeezed: that would turn a one-sample [12, 1] record into a 1-D array of 12 values
        mat = load_matlab_variable(path, ("ECG", "val"), seen=others)
    except EcgReadError:
        raise
    except NotImplementedError as exc:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise EcgReadError(path, "MATLAB v7.3 (HDF5) files are not supported; save with -v7") from exc
    except Exception as exc:  # scipy raises ValueError/MatReadError/TypeError on garbage
        raise EcgReadError(path, f"not a readable MATLAB file: {type(exc).__name__}: {exc}") from exc
    if "ECG" not in mat:
        if "val" in mat:
            hea = path.with_suffix(".hea").name
            if (other := header_in_other_case(path.with_suffix(""))) is not None:
                raise EcgReadError(other, lower_case_header_problem(other))
            raise EcgReadError(
                path,
                f"has a 'val' matrix (PhysioNet/CinC) but no WFDB header {hea} beside it "
                "to give gain, baseline and sampling rate",
            )
        raise EcgReadError(path, f"MATLAB file has neither a 'val' matrix nor an 'ECG' struct (keys: {sorted(others)})")
    ecg = _matlab_item(mat["ECG"])
    data = ecg if isinstance(ecg, np.ndarray) else _matlab_item(getattr(ecg, "data", None))  # bare matrix: data
    if data is None:
        raise EcgReadError(path, "corrupt CPSC file: the 'ECG' struct has no 'data' field")
    data = np.asarray(data)
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        # complex samples included: casting would drop the imaginary part (NumPy only warns), as NPZ rejects
        raise EcgReadError(path, f"corrupt CPSC file: ECG.data must be real numbers, got dtype {data.dtype}")
    data, transposed = _orient(path, data, len(CANONICAL_LEADS))
    rate = fs if fs is not None else CPSC_FS
    meta: dict[str, Any] = {}
    data = _apply_window(data, rate, window, meta)
    meta.update(
        age=parse_age(_matlab_scalar(getattr(ecg, "age", None))),
        sex=parse_sex(_matlab_scalar(getattr(ecg, "sex", None))),
        comments=[],
    )
    if transposed:
        meta["transposed"] = True
    return np.asarray(data, dtype=np.float64), list(CANONICAL_LEADS), rate, meta


def _matlab_item(value: Any) -> Any:
    """scipy reads a MATLAB struct as a 1x1 object array of it: the struct itself (other values unchanged)."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.item()
    return value


def _matlab_scalar(value: Any) -> str | None:
    """A MATLAB scalar or string (a 1x1 array, a 1-element char array) as text; None when empty or not one."""
    if value is None:
        return None
    arr = np.asarray(_matlab_item(value))
    if arr.size != 1:
        return None
    return str(arr.item())


def _read_numpy(
    path: Path, fmt: str, fs: float | None, leads: Sequence[str] | None, window: ReadWindow | None
) -> tuple[np.ndarray, list[str], float, dict[str, Any]]:
    """NPY/NPZ: the header's shape and dtype are checked before any sample is read, and only the window's
    samples come into memory (see `ecglang.record.numpy_reader`)."""
    meta: dict[str, Any] = {"age": None, "sex": None, "comments": []}
    try:
        if fmt == "npy":
            source: NpyRecord | NpzRecord = NpyRecord(path)
            file_fs, file_leads = None, None
        else:
            source = NpzRecord(path)
            file_fs, file_leads = source.file_fs(), source.file_leads()
    except EcgReadError:
        raise
    except Exception as exc:  # ValueError (bad fs, string arrays), OSError/BadZipFile (corrupt file)
        raise EcgReadError(path, f"cannot read {fmt.upper()} file: {type(exc).__name__}: {exc}") from exc
    # The arguments fill in what the file lacks: a batch's --fs/--leads are for its bare .npy files, and a stored
    # value they replaced unseen turned a 1000 Hz record into 20 s at half its heart rate, or relabelled its leads.
    if file_fs is not None:
        file_fs = check_sampling_rate(path, file_fs, "'fs' key")
        if fs is not None and not math.isclose(float(fs), file_fs):
            raise EcgReadError(
                path, f"sampling rate conflict: the file's 'fs' key says {file_fs:g} Hz but fs={fs:g} was given "
                f"(CLI: --fs); {_FILL_ONLY}",
            )  # fmt: skip
    rate = file_fs if file_fs is not None else fs
    if file_leads is not None and leads is not None and not same_leads(file_leads, leads):
        raise EcgReadError(
            path, f"lead names conflict: the file's 'leads' key stores {len(file_leads)} lead names {file_leads} but "
            f"{len(leads)} were given: {[str(n) for n in leads]} (CLI: --leads); {_FILL_ONLY}",
        )  # fmt: skip
    names = file_leads if file_leads is not None else (list(leads) if leads is not None else None)
    missing = [what for what, v in (("sampling rate (fs)", rate), ("lead names (leads)", names)) if v is None]
    if missing:
        where = "" if fmt == "npy" else ", or store 'fs'/'leads' arrays in the file"
        raise EcgReadError(
            path,
            f"{fmt.upper()} file without its {' and '.join(missing)}: pass fs=/leads= (CLI: --fs, --leads){where}",
        )
    check_numeric(path, source.header.dtype)
    shape = source.header.shape
    transposed = samples_axis_first(path, shape, len(names))
    start, stop = _window_bounds(shape[0] if transposed else shape[-1], rate, window, meta)
    try:
        data = np.asarray(source.window(transposed, start, stop), dtype=np.float64)
    except EcgReadError:
        raise
    except Exception as exc:  # zlib/CRC errors of a corrupt member, OSError
        raise EcgReadError(path, f"cannot read {fmt.upper()} file: {type(exc).__name__}: {exc}") from exc
    if transposed:
        meta["transposed"] = True
    return data, names, rate, meta


_FILL_ONLY = (
    "fs/leads only fill in what an NPZ file lacks: read this file without them (in a separate call), or correct "
    "the key if it is the file that is wrong"
)


def _window_bounds(n: int, fs: float, window: ReadWindow | None, meta: dict[str, Any]) -> tuple[int, int]:
    """Samples [start, stop) of a record of `n` samples inside `window` (all of them without one), noted in
    `meta` when a window is given."""
    if window is None:
        return 0, n
    start, stop = window.bounds(n, fs)
    meta["read_offset"], meta["n_samples_in_file"] = start, int(n)
    return start, stop


def _apply_window(data: np.ndarray, fs: float, window: ReadWindow | None, meta: dict[str, Any]) -> np.ndarray:
    """The part of `data` [leads, samples] inside `window` (a view), noting it in `meta`."""
    start, stop = _window_bounds(data.shape[1], fs, window, meta)
    return data[:, start:stop]


def _orient(path: Path, data: np.ndarray, n_leads: int) -> tuple[np.ndarray, bool]:
    """[leads, samples] as stored, or transposed from [samples, leads]; a square array is [leads, samples]."""
    transposed = samples_axis_first(path, data.shape, n_leads)
    return leads_by_samples(data, transposed), transposed


# --------------------------------------------------------------------------------------------------------
# Common
# --------------------------------------------------------------------------------------------------------


def _build_ecg(
    path: Path,
    signal: np.ndarray,
    names: list[str],
    fs: float,
    meta: dict[str, Any],
    leads: Sequence[str] | None,
    record_id: str | None,
) -> Ecg:
    if leads is not None:
        leads = [str(n) for n in leads]
        if len(leads) != signal.shape[0]:
            raise EcgReadError(path, f"{len(leads)} lead names given for {signal.shape[0]} stored signals")
        names = leads
    fs = check_sampling_rate(path, fs, "record")  # each reader checked its source; this is the last guard
    if signal.shape[1] == 0:
        raise EcgReadError(path, "empty record: no samples")
    signal12, mask, dropped = to_canonical(signal, names, path=str(path))
    meta["source_leads"] = list(names)
    meta["dropped_leads"] = dropped
    meta["n_nonfinite"] = int(np.count_nonzero(~np.isfinite(signal12[mask])))
    meta["source_path"] = os.path.abspath(path)
    return Ecg(
        signal=signal12,
        fs=fs,
        lead_mask=mask,
        record_id=record_id if record_id is not None else record_id_of(path),
        metadata=meta,
    )
