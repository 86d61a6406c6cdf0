"""Reading ECG files into `Ecg` records (float32 mV, canonical 12-lead order).

Supported formats (the value of `metadata["format"]`):

- ``wfdb``: WFDB header ``.hea`` with binary ``.dat`` signal files (PTB-XL, MIT-BIH, PTB, MIMIC-IV-ECG).
- ``wfdb-mat``: WFDB header with a ``.mat`` signal file (PhysioNet/CinC 2020/2021, format ``16x1+24``).
  ``wfdb.rdrecord`` reads these directly: the ``.mat`` is a MAT v4 file whose 24-byte preamble the header
  skips through its byte offset.
- ``cpsc-mat``: CPSC 2018 MATLAB struct ``ECG`` (``data`` 12×N in mV, ``sex``, ``age``), 500 Hz.
  A ``.mat`` with no ``.hea`` beside it is read this way.
- ``npy``: a bare array; `fs` and `leads` must be given.
- ``npz``: keys ``signal`` and optionally ``fs`` and ``leads`` (arguments override them).

Every failure is an `EcgReadError` naming the file and the problem; exceptions raised inside wfdb, scipy or
numpy are wrapped (the original stays in ``__cause__``). Non-finite samples are not a read error:
preprocessing handles them, and their count is in ``metadata["n_nonfinite"]``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import wfdb
from tqdm.auto import tqdm

from ecglang.errors import EcgReadError
from ecglang.record.ecg import Ecg
from ecglang.record.leads import CANONICAL_LEADS, canonical_lead_name, to_canonical

try:  # bytes per sample of each WFDB storage format; 0 for the FLAC-compressed ones
    from wfdb.io._signal import BYTES_PER_SAMPLE as _WFDB_BYTES_PER_SAMPLE
except ImportError:  # a future wfdb that moves it: the size pre-check is then skipped, wfdb still reads
    _WFDB_BYTES_PER_SAMPLE = {}

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("wfdb", "wfdb-mat", "cpsc-mat", "npy", "npz")
RECORD_SUFFIXES: tuple[str, ...] = (".hea", ".dat", ".mat", ".npy", ".npz")
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
) -> Ecg:
    """Read one ECG record, detecting its format from the file name and contents.

    Args:
        path: a WFDB record with or without extension (``.../00001_hr``, ``.../00001_hr.hea`` or
            ``.../00001_hr.dat``), a ``.mat`` (CinC when a ``.hea`` is beside it, else CPSC 2018; the name
            without ``.mat`` works too), a ``.npy`` or a ``.npz``.
        fs: sampling rate in Hz. Required for ``.npy``; overrides the ``fs`` key of a ``.npz`` and the 500 Hz
            default of CPSC files. WFDB headers store the rate, so there a different value raises
            `EcgReadError` (it catches, e.g., a ``records100`` path where ``records500`` was meant).
        leads: lead name of each signal row. Required for ``.npy``; for other formats it replaces the names
            stored in the file (e.g. a WFDB header naming its leads ``ECG1, ECG2``) and must have one name
            per stored signal.
        record_id: identifier for the record; default the file name without extension.

    Array layout (NPY/NPZ): ``[leads, samples]``. An array of shape ``[samples, leads]`` (rows ≠ lead count,
    columns = lead count) is transposed and ``metadata["transposed"]`` is set; a square array is taken as
    ``[leads, samples]``. NPY/NPZ values are taken to be in mV.

    Returns:
        `Ecg` with a float32 ``[12, n]`` signal in mV in canonical lead order, the lead mask of the leads
        present, and metadata keys ``age`` (float or None), ``sex`` ("M"/"F"/None), ``comments`` (raw header
        comments), ``source_path``, ``format``, ``dropped_leads`` (known non-12-lead channels such as Frank
        vx/vy/vz), ``source_leads`` (names as stored), ``n_nonfinite``; CinC headers add ``snomed`` (list of
        str), ``rx``, ``hx``.

    Raises:
        EcgReadError: missing/unsupported/corrupt/truncated file, header sample count that disagrees with the
            signal file, rate mismatch, unknown or duplicate lead names, missing ``fs``/``leads`` for NPY.
    """
    fmt, file = _resolve(path)
    if fmt in ("wfdb", "wfdb-mat"):
        signal, names, rate, meta = _read_wfdb(file, fs, leads)
    elif fmt == "cpsc-mat":
        signal, names, rate, meta = _read_cpsc(file, fs)
    else:
        signal, names, rate, meta = _read_numpy(file, fmt, fs, leads)
    meta["format"] = fmt
    return _build_ecg(file, signal, names, rate, meta, leads, record_id)


@dataclass(frozen=True)
class SkippedFile:
    """A file found by `scan_records` that is not (part of) a readable record, and why."""

    path: Path
    reason: str


@dataclass
class RecordScan:
    """Result of `scan_records`: one path per record (sorted) and every other file with the reason."""

    records: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def scan_records(folder: PathLike, recursive: bool = True) -> RecordScan:
    """List every supported record in `folder` and every file that is not part of one.

    One path per record: a WFDB record is its ``.hea`` (the header wins over its ``.dat``/``.mat`` and over
    any other signal file it names, e.g. PTB's ``.xyz``); a ``.mat`` with no ``.hea`` beside it counts as a
    CPSC record; ``.npy``/``.npz`` are records. Files are not opened beyond the headers, so a record listed
    here may still fail in `load_ecg` (batch callers use `iter_ecgs`/`load_ecgs` to collect those).
    """
    root = Path(folder)
    if not root.exists():
        raise EcgReadError(root, "folder not found")
    if not root.is_dir():
        raise EcgReadError(root, "not a folder (use load_ecg for a single file)")
    files = sorted(p for p in (root.rglob("*") if recursive else root.iterdir()) if p.is_file())

    headers = {p for p in files if p.suffix.lower() == ".hea"}
    owner: dict[Path, Path] = {}  # signal file -> header of the record it belongs to
    segment_headers: set[Path] = set()
    for hea in sorted(headers):
        for suffix in (".dat", ".mat"):  # a header's same-name signal file is its own even if unnamed
            owner.setdefault(hea.with_suffix(suffix), hea)
        signal_files, segments = _header_references(hea)
        for f in signal_files:
            owner.setdefault(f, hea)
        segment_headers |= segments & headers

    scan = RecordScan()
    for p in files:
        suffix = p.suffix.lower()
        if p in segment_headers:
            continue  # a segment of a multi-segment record; the master header stands for it
        if suffix == ".hea":
            scan.records.append(p)
        elif p in owner:
            continue  # a signal file of a header's record
        elif suffix in (".mat", ".npy", ".npz"):
            scan.records.append(p)
        elif suffix == ".dat":
            scan.skipped.append(SkippedFile(p, "WFDB signal file with no .hea header naming it"))
        elif p.with_suffix(".hea") in headers:
            reason = f"not a signal file of WFDB record {p.with_suffix('.hea').name} (annotations or other data)"
            scan.skipped.append(SkippedFile(p, reason))
        else:
            scan.skipped.append(SkippedFile(p, f"unsupported file type {suffix or '(no extension)'!r}"))
    return scan


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


def parse_header_comments(comments: Sequence[str]) -> dict[str, Any]:
    """Age, sex and CinC fields from WFDB header comments.

    Understands ``Key: value`` comments (CinC ``Age: 78`` / ``Sex: Male`` / ``Dx: 164889003,59118001`` /
    ``Rx`` / ``Hx``; PTB ``age: 81`` / ``sex: female``) and the MIT-BIH first comment ``69 M 1085 1629 x1``
    (age, sex, ...). Returns ``age`` (float or None), ``sex`` ("M"/"F"/None) and, when present, ``snomed``
    (list of str), ``rx``, ``hx``.
    """
    out: dict[str, Any] = {"age": None, "sex": None}
    age_text: str | None = None
    sex_text: str | None = None
    for line in comments:
        m = _KEY_VALUE.match(line)
        if m:
            key, value = m.group(1).strip().lower(), m.group(2).strip()
            if key == "age" and age_text is None:
                age_text = value
            elif key in ("sex", "gender") and sex_text is None:
                sex_text = value
            elif key == "dx" and "snomed" not in out:
                out["snomed"] = [code.strip() for code in value.split(",") if code.strip()]
            elif key in ("rx", "hx") and key not in out:
                out[key] = value
            continue
        m = _MITBIH_PATIENT.match(line)
        if m and age_text is None and sex_text is None:
            age_text, sex_text = m.group(1), m.group(2)
    out["age"] = _parse_age(age_text)
    out["sex"] = _parse_sex(sex_text)
    return out


# --------------------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------------------


def _resolve(path: PathLike) -> tuple[str, Path]:
    """(format, file to read). For WFDB records the file is the ``.hea``."""
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if p.is_dir():
        raise EcgReadError(p, "is a folder, not a record file (use find_records to list its records)")
    if suffix in (".hea", ".dat"):
        hea = p.with_suffix(".hea")
        if not hea.is_file():
            if suffix == ".dat" and p.is_file():
                raise EcgReadError(p, f"WFDB signal file without its header: {hea.name} not found")
            raise EcgReadError(p, "file not found")
        return _wfdb_format(hea), hea
    if suffix == ".mat":
        hea = p.with_suffix(".hea")
        if hea.is_file():
            return _wfdb_format(hea), hea
        if not p.is_file():
            raise EcgReadError(p, "file not found")
        return "cpsc-mat", p
    if suffix in (".npy", ".npz"):
        if not p.is_file():
            raise EcgReadError(p, "file not found")
        return suffix[1:], p
    # No (known) extension: a WFDB record name such as ".../00001_hr" or ".../s0010_re".
    hea = p.with_name(p.name + ".hea")
    if hea.is_file():
        return _wfdb_format(hea), hea
    if p.with_name(p.name + ".mat").is_file():  # a CPSC record name such as ".../A0001"
        return "cpsc-mat", p.with_name(p.name + ".mat")
    if p.is_file():
        raise EcgReadError(
            p,
            f"unsupported file type {suffix or '(no extension)'!r}; expected one of {list(RECORD_SUFFIXES)}",
        )
    raise EcgReadError(p, f"file not found (nor {hea.name} or {p.name}.mat)")


def _wfdb_format(hea: Path) -> str:
    signal_files, _ = _header_references(hea)
    return "wfdb-mat" if any(f.suffix.lower() == ".mat" for f in signal_files) else "wfdb"


# --------------------------------------------------------------------------------------------------------
# WFDB
# --------------------------------------------------------------------------------------------------------

_KEY_VALUE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 _()/.-]*?)\s*:\s*(.*)$")
_MITBIH_PATIENT = re.compile(r"^\s*(\d{1,3}|\?)\s+([MFmf?])(?:\s|,|$)")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# WFDB record line: name[/n_seg] n_sig [fs[/counter_freq[(base_counter)]] [sig_len [base_time [base_date]]]]
_FS_FIELD = re.compile(rf"^{_NUMBER}(?:/{_NUMBER}(?:\({_NUMBER}\))?)?$")
# WFDB signal line fields: format such as 16, 212, 16x1+24 (samples per frame, skew, byte offset) and gain.
_SIGNAL_FORMAT = re.compile(r"^\d+(?:x\d+)?(?::\d+)?(?:\+\d+)?$")
_GAIN_FIELD = re.compile(rf"^{_NUMBER}(?:\(\s*[-+]?\d+\s*\))?(?:/\S*)?$")
_INTEGER = re.compile(r"^[-+]?\d+$")

# Scale from a header's units to mV. Units are compared case-insensitively on the prefix before "V".
# "\ufffd" is an undecodable byte: in a unit field before "V" that is a Latin-1 "µ" (0xB5).
_UNIT_PREFIX_TO_MV = {"": 1000.0, "m": 1.0, "u": 1e-3, "µ": 1e-3, "μ": 1e-3, "\ufffd": 1e-3, "n": 1e-6}


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EcgReadError(path, f"cannot read file: {exc.strerror or exc}") from exc
    # Headers are ASCII by the spec, but real ones carry Latin-1 or UTF-8 comments: never crash on them.
    return raw.decode("utf-8", errors="replace")


def _split_header(text: str) -> tuple[list[str], list[str]]:
    """(specification lines, comment lines without '#'). Blank lines are dropped."""
    spec: list[str] = []
    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comment = stripped[1:].strip()
            if comment:
                comments.append(comment)
        else:
            spec.append(stripped)
    return spec, comments


def _header_references(hea: Path) -> tuple[set[Path], set[Path]]:
    """(signal files, segment headers) that a header names; empty sets when it cannot be parsed (the
    header's problems are reported by `load_ecg`, not while listing a folder)."""
    try:
        spec, _ = _split_header(_read_text(hea))
        fields = spec[0].split()
        if "/" in fields[0]:  # multi-segment: lines are "segment_name n_samples"; "~" is a gap
            names = {line.split()[0] for line in spec[1:]}
            return set(), {hea.parent / f"{n}.hea" for n in names if n != "~"}
        n_sig = int(fields[1])
        names = {line.split()[0] for line in spec[1 : 1 + n_sig]}
        return {hea.parent / n for n in names if n != "~"}, set()
    except (EcgReadError, IndexError, ValueError):
        return set(), set()


def _validate_record_line(hea: Path, spec: list[str]) -> None:
    """Checks wfdb skips: it silently replaces an unparsable sampling rate with 250 Hz, and fails with a bare
    IndexError when signal lines are missing."""
    if not spec:
        raise EcgReadError(hea, "corrupt header: empty (no record line)")
    fields = spec[0].split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise EcgReadError(hea, f"corrupt header: garbled record line {spec[0][:80]!r}")
    if len(fields) >= 3 and not _FS_FIELD.match(fields[2]):
        raise EcgReadError(hea, f"corrupt header: sampling rate field {fields[2][:40]!r} is not a number")
    if len(fields) >= 4 and not fields[3].isdigit():
        raise EcgReadError(hea, f"corrupt header: sample count field {fields[3][:40]!r} is not an integer")
    if "/" in fields[0]:
        return  # multi-segment: the segment headers are checked when wfdb reads them
    n_sig = int(fields[1])
    if len(spec) - 1 < n_sig:
        raise EcgReadError(
            hea,
            f"corrupt header: record line declares {n_sig} signals but {len(spec) - 1} signal lines follow",
        )
    for number, line in enumerate(spec[1 : 1 + n_sig], start=1):
        problem = _signal_line_problem(line.split())
        if problem:
            raise EcgReadError(hea, f"corrupt header: signal line {number} ({line[:60]!r}): {problem}")


def _signal_line_problem(fields: list[str]) -> str | None:
    """Check the fixed fields of a signal line. wfdb does not: text where a number belongs silently
    becomes part of the lead description (and then an "unknown lead" error that hides the real problem)."""
    # file format [gain(baseline)/units [adc_res [adc_zero [init_value [checksum [block_size [descr]]]]]]]
    if len(fields) < 2 or not _SIGNAL_FORMAT.match(fields[1]):
        return f"storage format {fields[1] if len(fields) > 1 else ''!r} is not a WFDB format"
    if len(fields) > 2 and not _GAIN_FIELD.match(fields[2]):
        return f"gain field {fields[2][:30]!r} is not 'gain(baseline)/units'"
    names = ("ADC resolution", "ADC zero", "initial value", "checksum", "block size")
    for name, value in zip(names, fields[3:8], strict=False):
        if not _INTEGER.match(value):
            return f"{name} field {value[:30]!r} is not an integer"
    return None


def _raw_units(spec: list[str], n_sig: int) -> list[str] | None:
    """Units of each signal line as written (wfdb decodes headers as ASCII and drops the "µ" of "µV",
    which would turn microvolts into volts)."""
    units: list[str] = []
    for line in spec[1 : 1 + n_sig]:
        fields = line.split()
        if len(fields) < 3:
            return None
        gain_field = fields[2]
        units.append(gain_field.split("/", 1)[1] if "/" in gain_field else "mV")  # WFDB default: mV
    return units


def _unit_scale(unit: str) -> float | None:
    u = unit.strip()
    if not u.lower().endswith("v"):
        return None
    return _UNIT_PREFIX_TO_MV.get(u[:-1] if u[:-1] in ("µ", "μ", "\ufffd") else u[:-1].lower())


def _check_signal_files(hea: Path, header: wfdb.Record) -> None:
    """Compare each signal file's size with what the header promises, before wfdb reads it, so that a
    truncated or mismatched file gets a clear message rather than wfdb's "Samples were not loaded"."""
    sig_len = header.sig_len
    per_file: dict[str, list[int]] = {}
    for i, name in enumerate(header.file_name or []):
        per_file.setdefault(name, []).append(i)
    for name, channels in per_file.items():
        if name == "~":
            continue
        f = hea.parent / name
        if not f.is_file():
            raise EcgReadError(hea, f"missing signal file {name} (named in {hea.name})")
        if not sig_len:
            continue  # no sample count in the header: wfdb derives it from the file size
        try:
            frame = sum(_WFDB_BYTES_PER_SAMPLE[header.fmt[i]] * (header.samps_per_frame[i] or 1) for i in channels)
        except (KeyError, TypeError, IndexError):
            continue  # a format without a fixed size per sample
        if frame <= 0:
            continue  # compressed (FLAC) formats
        offset = int((header.byte_offset or [None] * len(header.file_name))[channels[0]] or 0)
        expected = offset + math.ceil(sig_len * frame)
        size = f.stat().st_size
        held = max(0, int((size - offset) // frame))
        duration = f"{sig_len / header.fs:g} s at {header.fs:g} Hz" if header.fs else f"{sig_len} samples"
        if size < expected:
            raise EcgReadError(
                hea,
                f"truncated signal file {name}: header promises {sig_len} samples ({duration}, "
                f"{expected} bytes) but the file holds {size} bytes (about {held} samples)",
            )
        if size - expected >= frame:  # more than a padding byte or two: header and data disagree
            raise EcgReadError(
                hea,
                f"sample count mismatch: header says {sig_len} samples ({duration}) but signal file "
                f"{name} holds {held} samples ({size} bytes)",
            )


def _read_wfdb(
    hea: Path, fs: float | None, leads: Sequence[str] | None
) -> tuple[np.ndarray, list[str], float, dict[str, Any]]:
    spec, comments = _split_header(_read_text(hea))
    _validate_record_line(hea, spec)
    base = str(hea.with_suffix(""))
    try:
        header = wfdb.rdheader(base)
    except Exception as exc:  # wfdb raises HeaderSyntaxError, ValueError, IndexError, ... on bad headers
        raise EcgReadError(hea, f"corrupt header: {type(exc).__name__}: {exc}") from exc
    multi = isinstance(header, wfdb.MultiRecord)
    if not multi:
        _check_signal_files(hea, header)
    if fs is not None and header.fs is not None and not math.isclose(float(fs), float(header.fs)):
        raise EcgReadError(hea, f"sampling rate mismatch: header says {header.fs:g} Hz but fs={fs:g} was requested")
    try:
        rec = wfdb.rdrecord(base, physical=True, m2s=True)
    except Exception as exc:  # anything wfdb raises while reading samples is about this record
        raise EcgReadError(hea, f"cannot read signal: {type(exc).__name__}: {exc}") from exc
    if rec.p_signal is None or rec.p_signal.ndim != 2 or rec.p_signal.shape[0] == 0:
        raise EcgReadError(hea, "no samples in the record")
    signal = np.asarray(rec.p_signal, dtype=np.float64).T  # [channels, samples]
    if header.sig_len and signal.shape[1] != header.sig_len:
        raise EcgReadError(hea, f"sample count mismatch: header says {header.sig_len} samples, read {signal.shape[1]}")
    names = [str(n) for n in rec.sig_name]
    raw_units = None if multi else _raw_units(spec, len(names))
    units = raw_units if raw_units else list(rec.units or ["mV"] * len(names))
    # Units matter only for channels that end up as ECG leads (under the caller's names when given).
    final_names = [str(n) for n in leads] if leads is not None and len(leads) == len(names) else names
    scales = np.ones(len(names))
    for i, (name, unit) in enumerate(zip(final_names, units, strict=True)):
        scale = _unit_scale(unit)
        if scale is None:
            if canonical_lead_name(name) is not None:  # other channels are dropped or rejected by name
                raise EcgReadError(hea, f"lead {name!r} has unsupported units {unit!r}; expected mV, µV/uV or V")
            scale = 1.0
        scales[i] = scale
    signal *= scales[:, None]
    meta: dict[str, Any] = parse_header_comments(comments)
    meta["comments"] = comments
    meta["units_in_file"] = units
    return signal, names, float(rec.fs), meta


# --------------------------------------------------------------------------------------------------------
# MATLAB (CPSC 2018) and NumPy
# --------------------------------------------------------------------------------------------------------


def _read_cpsc(path: Path, fs: float | None) -> tuple[np.ndarray, list[str], float, dict[str, Any]]:
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except NotImplementedError as exc:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise EcgReadError(path, "MATLAB v7.3 (HDF5) files are not supported; save with -v7") from exc
    except Exception as exc:  # scipy raises ValueError/MatReadError/TypeError on garbage
        raise EcgReadError(path, f"not a readable MATLAB file: {type(exc).__name__}: {exc}") from exc
    keys = sorted(k for k in mat if not k.startswith("__"))
    if "ECG" not in mat:
        if "val" in mat:
            hea = path.with_suffix(".hea").name
            raise EcgReadError(
                path,
                f"has a 'val' matrix (PhysioNet/CinC) but no WFDB header {hea} beside it "
                "to give gain, baseline and sampling rate",
            )
        raise EcgReadError(path, f"MATLAB file has neither a 'val' matrix nor an 'ECG' struct (keys: {keys})")
    ecg = mat["ECG"]
    data = getattr(ecg, "data", None)
    if data is None:
        raise EcgReadError(path, "corrupt CPSC file: the 'ECG' struct has no 'data' field")
    try:
        data = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EcgReadError(path, f"corrupt CPSC file: ECG.data is not numeric ({exc})") from exc
    data, transposed = _orient(path, data, len(CANONICAL_LEADS))
    meta: dict[str, Any] = {
        "age": _parse_age(_matlab_scalar(getattr(ecg, "age", None))),
        "sex": _parse_sex(_matlab_scalar(getattr(ecg, "sex", None))),
        "comments": [],
    }
    if transposed:
        meta["transposed"] = True
    return data, list(CANONICAL_LEADS), float(fs) if fs is not None else CPSC_FS, meta


def _matlab_scalar(value: Any) -> str | None:
    """squeeze_me turns a MATLAB scalar into a Python/NumPy scalar and an empty field into an empty array."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.size != 1:
        return None
    return str(arr.item())


def _read_numpy(
    path: Path, fmt: str, fs: float | None, leads: Sequence[str] | None
) -> tuple[np.ndarray, list[str], float, dict[str, Any]]:
    meta: dict[str, Any] = {"age": None, "sex": None, "comments": []}
    try:
        if fmt == "npy":
            data = np.load(path, allow_pickle=False)
            file_fs, file_leads = None, None
        else:
            with np.load(path, allow_pickle=False) as z:
                if "signal" not in z.files:
                    raise EcgReadError(path, f"NPZ file has no 'signal' array (keys: {sorted(z.files)})")
                data = z["signal"]
                file_fs = float(np.asarray(z["fs"]).item()) if "fs" in z.files else None
                file_leads = [str(x) for x in np.asarray(z["leads"]).ravel()] if "leads" in z.files else None
    except EcgReadError:
        raise
    except Exception as exc:  # ValueError (pickled objects, bad fs), OSError/BadZipFile (corrupt file)
        raise EcgReadError(path, f"cannot read {fmt.upper()} file: {type(exc).__name__}: {exc}") from exc
    rate = fs if fs is not None else file_fs
    names = list(leads) if leads is not None else file_leads
    missing = [what for what, v in (("fs", rate), ("leads", names)) if v is None]
    if missing:
        where = "arguments" if fmt == "npy" else "arguments or 'fs'/'leads' keys in the file"
        raise EcgReadError(
            path,
            f"{fmt.upper()} holds no sampling rate or lead names: missing {' and '.join(missing)} ({where})",
        )
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise EcgReadError(path, f"signal array must be numeric, got dtype {data.dtype}")
    data, transposed = _orient(path, np.asarray(data, dtype=np.float64), len(names))
    if transposed:
        meta["transposed"] = True
    return data, names, float(rate), meta


def _orient(path: Path, data: np.ndarray, n_leads: int) -> tuple[np.ndarray, bool]:
    """[leads, samples] as stored, or transposed from [samples, leads]; a square array is [leads, samples]."""
    if data.ndim == 1 and n_leads == 1:
        return data[None, :], False
    if data.ndim != 2:
        raise EcgReadError(path, f"signal must be 2-D [leads, samples], got shape {data.shape}")
    if data.shape[0] == n_leads:
        return data, False
    if data.shape[1] == n_leads:
        return data.T, True
    raise EcgReadError(path, f"signal shape {data.shape} does not match {n_leads} lead names")


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
    if not (math.isfinite(fs) and fs > 0):
        raise EcgReadError(path, f"invalid sampling rate {fs!r} Hz")
    if signal.shape[1] == 0:
        raise EcgReadError(path, "no samples in the record")
    signal12, mask, dropped = to_canonical(signal, names, path=str(path))
    meta["source_leads"] = list(names)
    meta["dropped_leads"] = dropped
    meta["n_nonfinite"] = int(np.count_nonzero(~np.isfinite(signal12[mask])))
    meta["source_path"] = os.path.abspath(path)
    return Ecg(
        signal=signal12,
        fs=fs,
        lead_mask=mask,
        record_id=record_id if record_id is not None else _stem(path),
        metadata=meta,
    )


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix.lower() in RECORD_SUFFIXES else path.name


def _parse_age(text: str | None) -> float | None:
    if text is None:
        return None
    m = re.match(r"^\s*(\d+(?:\.\d+)?)", str(text))
    if not m:
        return None  # "NaN", "Unknown", "?", ...
    age = float(m.group(1))
    return age if 0 <= age <= 130 else None


def _parse_sex(text: str | None) -> str | None:
    if text is None:
        return None
    t = str(text).strip().lower()
    if t in ("m", "male", "man"):
        return "M"
    if t in ("f", "female", "woman"):
        return "F"
    return None
